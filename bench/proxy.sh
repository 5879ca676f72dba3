#!/usr/bin/env bash
# Proxy throughput, side by side, same machine, same run: the backend direct, nginx
# `split_clients`, haproxy consistent hash, and `ficus proxy` — each with ONE worker, the same
# 25 % sticky split on X-User-Id in front of the same two nginx backends, the same wrk load.
# ROUNDS interleaved rounds (order rotated each round) so machine drift hits every target alike;
# prints the median rps / p50 / p99 per target and ficus's ratios to nginx and haproxy.
#
# usage: bench/proxy.sh [seconds-per-target=5] [rounds=3]
# env:   FICUS=path/to/ficus (default: builds target/release/ficus)  CONNS=32  PIN=1 (taskset:
#        proxies on CPU 1, wrk and backends on CPU 0)
# needs: nginx-light haproxy wrk (installed with apt-get when missing)
set -euo pipefail
D=${1:-5}; R=${2:-3}; CONNS=${CONNS:-32}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d /tmp/ficus-bench.XXXXXX)
trap 'cleanup' EXIT

. "$ROOT/bench/lib.sh"
need_tools nginx:nginx-light haproxy:haproxy wrk:wrk
ficus_binary "$ROOT"

pin_proxy=""; pin_load=""
if [ "${PIN:-0}" = 1 ] && command -v taskset >/dev/null; then pin_proxy="taskset -c 1"; pin_load="taskset -c 0"; fi

BODY='{"backend":"%s","task_id":"TASK-101","title":"Import comic metadata","status":"in_progress","priority":"HIGH","notes":"0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"}'
backends_conf "$W" 18081 "$(printf "$BODY" legacy)" 18082 "$(printf "$BODY" new)"
cat > "$W/nginx.conf" <<EOF
worker_processes 1; daemon on; pid $W/nginx.pid; error_log $W/nginx.err;
events { worker_connections 4096; }
http { access_log off;
  upstream legacy { server 127.0.0.1:18081; keepalive 64; }
  upstream newsvc { server 127.0.0.1:18082; keepalive 64; }
  split_clients "\${http_x_user_id}" \$pool { 25% newsvc; * legacy; }
  server { listen 127.0.0.1:18090;
    location / { proxy_pass http://\$pool; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
EOF
cat > "$W/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend fe
  bind 127.0.0.1:18091
  default_backend split
backend split
  balance hdr(X-User-Id)
  hash-type consistent
  server legacy 127.0.0.1:18081 weight 75
  server newsvc 127.0.0.1:18082 weight 25
EOF
cat > "$W/ficus.toml" <<EOF
[proxy]
listen = "127.0.0.1:18092"
admin_listen = "127.0.0.1:18093"
state = "$W/ficus-state.db"
workers = 1
watch_config = false
[backends.legacy]
url = "http://127.0.0.1:18081"
[backends.new]
url = "http://127.0.0.1:18082"
[[routes]]
name = "tasks"
path = "/api/tasks/*"
percent = 25.0
sticky = "header:X-User-Id"
EOF
cat > "$W/users.lua" <<'EOF'
-- rotate a sticky user key so percentage/hash routing is exercised
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/api/tasks/TASK-101", { ["X-User-Id"] = "user-" .. (n % 10007) })
end
EOF

cleanup() {
  for p in backends nginx haproxy; do [ -f "$W/$p.pid" ] && kill "$(cat "$W/$p.pid")" 2>/dev/null || true; done
  [ -n "${FP:-}" ] && kill "$FP" 2>/dev/null || true
  rm -rf "$W"
}

$pin_load nginx -c "$W/backends.conf"
$pin_proxy nginx -c "$W/nginx.conf"
$pin_proxy haproxy -D -p "$W/haproxy.pid" -f "$W/haproxy.cfg"
$pin_proxy "$FICUS" proxy --config "$W/ficus.toml" >"$W/ficus.log" 2>&1 & FP=$!
for port in 18081 18090 18091 18092; do
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done

targets="direct=18081 nginx=18090 haproxy=18091 ficus=18092"
: > "$W/rows"
for r in $(seq "$R"); do
  set -- $targets; n=$#; k=$(( (r - 1) % n ))
  order="${*:k+1} ${*:1:k}"
  for t in $order; do
    name=${t%=*} port=${t#*=}
    $pin_load wrk -t1 -c"$CONNS" -d"${D}s" --latency -s "$W/users.lua" "http://127.0.0.1:$port" |
      awk -v n="$name" '/Requests\/sec/{r=$2} /^ +50%/{p50=$2} /^ +99%/{p99=$2} / Non-2xx/{bad=$NF} END{print n, r, p50, p99, bad+0}' >> "$W/rows"
  done
done
python3 - "$W/rows" "$D" "$R" "$CONNS" <<'PY'
import statistics as st, sys
def us(v):
    for suf, k in (("us", 1), ("ms", 1e3), ("s", 1e6)):
        if v.endswith(suf): return float(v[:-len(suf)]) * k
rows = {}
for line in open(sys.argv[1]):
    n, r, p50, p99, bad = line.split()
    rows.setdefault(n, []).append((float(r), us(p50), us(p99), int(bad)))
print(f"wrk -t1 -c{sys.argv[4]} -d{sys.argv[2]}s, {sys.argv[3]} interleaved rounds, one worker each; medians")
med = {}
for n, v in rows.items():
    med[n] = (st.median(x[0] for x in v), st.median(x[1] for x in v), st.median(x[2] for x in v))
    errs = sum(x[3] for x in v)
    print(f"{n:8s} rps={med[n][0]:8.0f}  p50={med[n][1]:7.0f}us  p99={med[n][2]:7.0f}us" + (f"  non-2xx={errs}" if errs else ""))
if "ficus" in med:
    f = med["ficus"]
    for peer in ("nginx", "haproxy"):
        if peer in med:
            p = med[peer]
            print(f"ficus/{peer}: rps x{f[0]/p[0]:.2f}  p50 x{f[1]/p[1]:.2f}  p99 x{f[2]/p[2]:.2f}")
    print("target: rps >= 1.15 x nginx and >= 1.00 x haproxy, p99 <= haproxy's")
PY
