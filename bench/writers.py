#!/usr/bin/env python3
"""Open-loop writers for bench/cutover.sh: RATE writes/s through the proxy, spread over
THREADS keep-alive connections, each request sent at its scheduled time (or as soon as its
thread is free, so a pause shows as latency measured from the schedule: no coordinated
omission). Half the writes create a task, half update one of the seeded tasks' notes.

Writes one line per request to OUT: scheduled unix time, latency ms, status, backend header.
Runs until STOP (a file) exists.

usage: writers.py HOST:PORT RATE THREADS OUT STOP FIRST_TASK N_TASKS
"""
import http.client
import json
import os
import sys
import threading
import time

host, port = sys.argv[1].split(":")
rate, threads = float(sys.argv[2]), int(sys.argv[3])
out_path, stop_path = sys.argv[4], sys.argv[5]
first, n_tasks = int(sys.argv[6]), int(sys.argv[7])
lock = threading.Lock()
out = open(out_path, "w", buffering=1 << 16)
start = time.time() + 0.2
interval = threads / rate


def worker(w):
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    k = 0
    lines = []
    while not os.path.exists(stop_path):
        sched = start + w * (interval / threads) + k * interval
        k += 1
        now = time.time()
        if sched > now:
            time.sleep(sched - now)
        if k % 2:
            path = "/api/tasks/"
            body = {"task_id": f"BENCH-{w}-{k}-{int(start)}", "title": "bench", "priority": "LOW"}
        else:
            path = f"/api/tasks/TASK-{first + (w * 7919 + k) % n_tasks}/update-notes"
            body = {"notes": f"bench {w} {k}"}
        try:
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            status, side = r.status, r.getheader("x-ficus-backend", "-")
        except Exception as e:  # a refused or reset connection counts as a foreign answer
            status, side = 0, type(e).__name__
            conn.close()
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
        lines.append(f"{sched:.6f} {(time.time() - sched) * 1000:.3f} {status} {side}\n")
        if len(lines) >= 200:
            with lock:
                out.writelines(lines)
            lines = []
    with lock:
        out.writelines(lines)


ts = [threading.Thread(target=worker, args=(w,)) for w in range(threads)]
for t in ts:
    t.start()
for t in ts:
    t.join()
out.close()
