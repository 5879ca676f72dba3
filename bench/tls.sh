#!/usr/bin/env bash
# TLS termination, side by side, same machine, same run: nginx and `ficus proxy`, ONE worker
# each, the SAME certificate (ECDSA P-256, made here with openssl), the same plain-HTTP backend
# behind, the same wrk load. Two measurements per target, ROUNDS interleaved rounds (order
# rotated) so machine drift hits both alike; medians:
#   keep-alive: wrk over CONNS persistent TLS connections — requests/s, p50, p99;
#   handshakes: wrk with `Connection: close` — every request a new TCP connection and a full TLS
#               handshake (no session cache or tickets on nginx; rustls's resumption is off on
#               the ficus side for a fair count: see below) — requests/s = new handshakes/s.
# Prints ficus's ratios to nginx (target: >= 1.0 on both).
#
# usage: bench/tls.sh [seconds-per-target=5] [rounds=3]
# env:   FICUS=path/to/ficus (default: builds target/release/ficus)  CONNS=32  PIN=1 (taskset:
#        proxies on CPU 1, wrk and the backend on CPU 0)
# needs: nginx-light wrk openssl curl (installed with apt-get when missing)
set -euo pipefail
D=${1:-5}; R=${2:-3}; CONNS=${CONNS:-32}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d /tmp/ficus-bench-tls.XXXXXX)
trap 'cleanup' EXIT

. "$ROOT/bench/lib.sh"
need_tools nginx:nginx-light wrk:wrk openssl:openssl curl:curl
ficus_binary "$ROOT"

pin_proxy=""; pin_load=""
if [ "${PIN:-0}" = 1 ] && command -v taskset >/dev/null; then pin_proxy="taskset -c 1"; pin_load="taskset -c 0"; fi

cleanup() {
  for p in backends nginx; do [ -f "$W/$p.pid" ] && kill "$(cat "$W/$p.pid")" 2>/dev/null || true; done
  [ -n "${FP:-}" ] && kill "$FP" 2>/dev/null || true
  rm -rf "$W"
}

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$W/server.key" -out "$W/server.crt" 2>/dev/null

BODY='{"backend":"%s","task_id":"TASK-101","title":"Import comic metadata","status":"in_progress","priority":"HIGH","notes":"0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"}'
backends_conf "$W" 18181 "$(printf "$BODY" legacy)" 18182 "$(printf "$BODY" new)"
cat > "$W/nginx.conf" <<CONF
worker_processes 1; daemon on; pid $W/nginx.pid; error_log $W/nginx.err;
events { worker_connections 4096; }
http { access_log off;
  upstream legacy { server 127.0.0.1:18181; keepalive 64; }
  server { listen 127.0.0.1:18190 ssl http2;
    ssl_certificate $W/server.crt; ssl_certificate_key $W/server.key;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache off; ssl_session_tickets off;
    keepalive_requests 1000000;
    location / { proxy_pass http://legacy; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
CONF
cat > "$W/ficus.toml" <<CONF
[proxy]
listen = "127.0.0.1:18192"
admin_listen = "127.0.0.1:18193"
state = "$W/ficus-state.db"
workers = 1
watch_config = false
[proxy.tls]
cert_file = "$W/server.crt"
key_file = "$W/server.key"
[backends.legacy]
url = "http://127.0.0.1:18181"
[backends.new]
url = "http://127.0.0.1:18182"
[[routes]]
name = "tasks"
path = "/api/tasks/*"
target = "legacy"
CONF

$pin_load nginx -c "$W/backends.conf"
$pin_proxy nginx -c "$W/nginx.conf"
$pin_proxy "$FICUS" proxy --config "$W/ficus.toml" >"$W/ficus.log" 2>&1 & FP=$!
for port in 18181 18190 18192; do
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done
for port in 18190 18192; do
  curl -sf --cacert "$W/server.crt" "https://localhost:$port/api/tasks/TASK-101" >/dev/null ||
    { echo "bench: https on $port does not answer" >&2; cat "$W/ficus.log" >&2; exit 1; }
done

targets="nginx=18190 ficus=18192"
: > "$W/rows"
for r in $(seq "$R"); do
  set -- $targets; n=$#; k=$(( (r - 1) % n ))
  order="${*:k+1} ${*:1:k}"
  for t in $order; do
    name=${t%=*} port=${t#*=}
    $pin_load wrk -t1 -c"$CONNS" -d"${D}s" --latency "https://127.0.0.1:$port/api/tasks/TASK-101" |
      awk -v n="$name" '/Requests\/sec/{r=$2} /^ +50%/{p50=$2} /^ +99%/{p99=$2} / Non-2xx/{bad=$NF} END{print n, "keepalive", r, p50, p99, bad+0}' >> "$W/rows"
    $pin_load wrk -t1 -c"$CONNS" -d"${D}s" --latency -H "Connection: close" "https://127.0.0.1:$port/api/tasks/TASK-101" |
      awk -v n="$name" '/Requests\/sec/{r=$2} /^ +50%/{p50=$2} /^ +99%/{p99=$2} / Non-2xx/{bad=$NF} END{print n, "handshake", r, p50, p99, bad+0}' >> "$W/rows"
  done
done
python3 - "$W/rows" "$D" "$R" "$CONNS" <<'PY'
import statistics as st, sys
def us(v):
    for suf, k in (("us", 1), ("ms", 1e3), ("s", 1e6)):
        if v.endswith(suf): return float(v[:-len(suf)]) * k
rows = {}
for line in open(sys.argv[1]):
    n, kind, r, p50, p99, bad = line.split()
    rows.setdefault((n, kind), []).append((float(r), us(p50), us(p99), int(bad)))
print(f"TLS termination: wrk -t1 -c{sys.argv[4]} -d{sys.argv[2]}s, {sys.argv[3]} interleaved rounds, one worker each, same ECDSA P-256 certificate; medians")
med = {}
for (n, kind), v in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    med[(n, kind)] = (st.median(x[0] for x in v), st.median(x[1] for x in v), st.median(x[2] for x in v))
    errs = sum(x[3] for x in v)
    m = med[(n, kind)]
    print(f"{kind:9s} {n:6s} rps={m[0]:8.0f}  p50={m[1]:7.0f}us  p99={m[2]:7.0f}us" + (f"  non-2xx={errs}" if errs else ""))
for kind in ("keepalive", "handshake"):
    f, p = med.get(("ficus", kind)), med.get(("nginx", kind))
    if f and p:
        print(f"ficus/nginx {kind}: rps x{f[0]/p[0]:.2f}  p50 x{f[1]/p[1]:.2f}  p99 x{f[2]/p[2]:.2f}")
print("target: >= 1.0 x nginx on keep-alive rps and on new handshakes/s")
PY
