#!/usr/bin/env bash
# Proxy throughput, side by side, same machine, same run: the backend direct, nginx
# `split_clients`, haproxy consistent hash, and `ficus proxy` — each with ONE worker, the same
# 25 % sticky split on X-User-Id in front of the same two nginx backends, the same wrk load.
# ROUNDS interleaved rounds (order rotated each round) so machine drift hits every target alike;
# prints the median rps / p50 / p99 per target and ficus's ratios to nginx and haproxy.
#
# Also measured in the same rounds: `ficus+log`, the same binary with the access log on (JSON
# lines to a file), and with BASE=path/to/another/ficus a `base` target (before/after a change).
# Beside rps and latency each proxy's CPU per request (utime+stime over its wrk run / requests).
#
# usage: bench/proxy.sh [seconds-per-target=5] [rounds=3]
# env:   FICUS=path/to/ficus (default: builds target/release/ficus)  CONNS=32  PIN=1 (taskset:
#        proxies on CPU 1, wrk and backends on CPU 0)  BASE=path/to/ficus (an older build)
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

# The same proxy with the access log on, and the base build, on ports of their own.
sed -e 's/18092/18094/; s/18093/18095/; s/ficus-state.db/ficus-log-state.db/' "$W/ficus.toml" > "$W/ficus-log.toml"
printf '[proxy.access_log]\npath = "%s"\n' "$W/access.log" > "$W/access.toml"
# [proxy.access_log] goes right after [proxy]'s own keys (before [backends.legacy]).
awk -v f="$W/access.toml" '/^\[backends.legacy\]/{while((getline l < f)>0) print l} {print}' "$W/ficus-log.toml" > "$W/t" && mv "$W/t" "$W/ficus-log.toml"
sed -e 's/18092/18096/; s/18093/18097/; s/ficus-state.db/ficus-base-state.db/' "$W/ficus.toml" > "$W/ficus-base.toml"

cleanup() {
  for p in backends nginx haproxy; do [ -f "$W/$p.pid" ] && kill "$(cat "$W/$p.pid")" 2>/dev/null || true; done
  for p in ${FP:-} ${FPL:-} ${FPB:-}; do kill "$p" 2>/dev/null || true; done
  rm -rf "$W"
}

$pin_load nginx -c "$W/backends.conf"
$pin_proxy nginx -c "$W/nginx.conf"
$pin_proxy haproxy -D -p "$W/haproxy.pid" -f "$W/haproxy.cfg"
$pin_proxy "$FICUS" proxy --config "$W/ficus.toml" >"$W/ficus.log" 2>&1 & FP=$!
$pin_proxy "$FICUS" proxy --config "$W/ficus-log.toml" >"$W/ficus-log.log" 2>&1 & FPL=$!
targets="direct=18081 nginx=18090 haproxy=18091 ficus=18092 ficus+log=18094"
ports="18081 18090 18091 18092 18094"
if [ -n "${BASE:-}" ]; then
  $pin_proxy "$BASE" proxy --config "$W/ficus-base.toml" >"$W/ficus-base.log" 2>&1 & FPB=$!
  targets="$targets base=18096"; ports="$ports 18096"
fi
for port in $ports; do
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done
nginx_worker=$(pgrep -P "$(cat "$W/nginx.pid")" | head -1)
haproxy_pid=$(cat "$W/haproxy.pid")

# cpu_ticks PID — utime+stime of the process, in clock ticks.
cpu_ticks() { [ -n "$1" ] && awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
pid_of() {
  case $1 in nginx) echo "$nginx_worker" ;; haproxy) echo "$haproxy_pid" ;; ficus) echo "$FP" ;;
    ficus+log) echo "$FPL" ;; base) echo "${FPB:-}" ;; *) echo "" ;; esac
}

: > "$W/rows"
for r in $(seq "$R"); do
  set -- $targets; n=$#; k=$(( (r - 1) % n ))
  order="${*:k+1} ${*:1:k}"
  for t in $order; do
    name=${t%=*} port=${t#*=}
    pid=$(pid_of "$name"); t0=$(cpu_ticks "$pid")
    out=$($pin_load wrk -t1 -c"$CONNS" -d"${D}s" --latency -s "$W/users.lua" "http://127.0.0.1:$port")
    t1=$(cpu_ticks "$pid")
    echo "$out" | awk -v n="$name" -v cpu=$((t1 - t0)) -v has="${pid:+1}" '/Requests\/sec/{r=$2} /^ +50%/{p50=$2} /^ +99%/{p99=$2} / Non-2xx/{bad=$NF} /requests in/{reqs=$1} END{print n, r, p50, p99, bad+0, (has ? cpu : -1), reqs}' >> "$W/rows"
  done
done
[ -f "$W/access.log" ] && echo "access log lines written by ficus+log: $(wc -l < "$W/access.log")"
python3 - "$W/rows" "$D" "$R" "$CONNS" "$(getconf CLK_TCK)" <<'PY'
import statistics as st, sys
def us(v):
    for suf, k in (("us", 1), ("ms", 1e3), ("s", 1e6)):
        if v.endswith(suf): return float(v[:-len(suf)]) * k
tck = float(sys.argv[5])
rows = {}
for line in open(sys.argv[1]):
    n, r, p50, p99, bad, cpu, reqs = line.split()
    # CPU microseconds per request (utime+stime over the run / requests answered).
    cpu_us = float(cpu) / tck * 1e6 / float(reqs.replace(",", "")) if int(cpu) >= 0 and float(reqs or 0) > 0 else float("nan")
    rows.setdefault(n, []).append((float(r), us(p50), us(p99), int(bad), cpu_us))
print(f"wrk -t1 -c{sys.argv[4]} -d{sys.argv[2]}s, {sys.argv[3]} interleaved rounds, one worker each; medians")
med = {}
for n, v in rows.items():
    med[n] = tuple(st.median(x[i] for x in v) for i in (0, 1, 2, 4))
    errs = sum(x[3] for x in v)
    cpu = "" if med[n][3] != med[n][3] else f"  cpu/req={med[n][3]:5.1f}us"
    print(f"{n:9s} rps={med[n][0]:8.0f}  p50={med[n][1]:7.0f}us  p99={med[n][2]:7.0f}us{cpu}" + (f"  non-2xx={errs}" if errs else ""))
if "ficus" in med:
    f = med["ficus"]
    for peer in ("nginx", "haproxy"):
        if peer in med:
            p = med[peer]
            print(f"ficus/{peer}: rps x{f[0]/p[0]:.2f}  p50 x{f[1]/p[1]:.2f}  p99 x{f[2]/p[2]:.2f}  cpu/req x{f[3]/p[3]:.2f}")
    print("target: rps >= 1.15 x nginx and >= 1.00 x haproxy, p99 <= haproxy's")
    if "ficus+log" in med:
        l = med["ficus+log"]
        print(f"ficus+log/ficus: rps x{l[0]/f[0]:.2f}  p99 x{l[2]/f[2]:.2f}  cpu/req x{l[3]/f[3]:.2f}   (target: rps >= 0.95)")
    if "base" in med:
        b = med["base"]
        print(f"ficus/base: rps x{f[0]/b[0]:.2f}  p99 x{f[2]/b[2]:.2f}  cpu/req x{f[3]/b[3]:.2f}")
PY
