#!/usr/bin/env bash
# Shadow mode's cost to the primary, same machine, same run: `ficus proxy` (one worker) in front
# of the same nginx legacy backend (every request served by legacy, 0 % rollout), in four setups:
#
#   noshadow  the route has no [routes.shadow]
#   shadow    100 % of GETs mirrored to an nginx "new" backend (same body) and compared
#   slow      100 % mirrored to a reference task app started with --quirk slow:5000 (the shadow
#             timeout is 5000 ms, so every mirror times out)
#   down      100 % mirrored to a port nothing listens on
#   split     the route at 10 % sticky on X-User-Id (every request a random user), no shadow
#   preflight the same route with a step plan (steps 10 -> 25 %) in its pre-flight: the keys of
#             buckets [10 %, 25 %) — 15 % of keys — mirrored to new at 100 % and compared
#             (shadow sample 0 otherwise); its cost is read against `split`
#
# ROUNDS interleaved rounds (order rotated each round) so machine drift hits every setup alike;
# prints median rps / p50 / p99 per setup, each setup's ratios to noshadow, then what each proxy
# counted (ficus_shadow_requests_total by result: dropped = refused by the full mirror queue)
# and its resident memory at the end, to show nothing queues without bound.
# Acceptance: slow and down within 10 % of noshadow on p99 (and rps); RSS flat. Every setup is
# driven with random X-User-Id headers (a wrk script), so the sticky setups see many keys.
#
# usage: bench/shadow.sh [seconds-per-setup=5] [rounds=3]
# env:   FICUS=path/to/ficus (default: builds the release binary)  CONNS=32
# needs: nginx-light wrk (installed with apt-get when missing)
set -euo pipefail
D=${1:-5}; R=${2:-3}; CONNS=${CONNS:-32}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
W=$(mktemp -d /tmp/ficus-shadow-bench.XXXXXX)
PIDS=()
cleanup() {
  [ -f "$W/backends.pid" ] && kill "$(cat "$W/backends.pid")" 2>/dev/null || true
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

. "$ROOT/bench/lib.sh"
need_tools nginx:nginx-light wrk:wrk
ficus_binary "$ROOT"

BODY='{"id":101,"task_id":"TASK-101","title":"Import comic metadata","status":"in_progress","priority":"HIGH","dependencies":"TASK-100","assigned_agent":"agent-7","updated_at":"2026-01-02T10:00:00","notes":"0123456789012345678901234567890123456789012345678901234567890123456789"}'
backends_conf "$W" 18181 "$BODY" 18182 "$BODY"
nginx -c "$W/backends.conf"

# The slow mirror side: the reference task app, every answer 5 s late.
"$FICUS" taskapp legacy --sqlite "$W/slow.db" --create --listen 127.0.0.1:18183 --quirk slow:5000 \
  >"$W/slow.log" 2>&1 & PIDS+=($!)

# name port admin new-url shadow? (2: the split route, 3: the split route with a plan)
setups="noshadow:18190:18195:http://127.0.0.1:18182:0
shadow:18191:18196:http://127.0.0.1:18182:1
slow:18192:18197:http://127.0.0.1:18183:1
down:18193:18198:http://127.0.0.1:18189:1
split:18194:18199:http://127.0.0.1:18182:2
preflight:18200:18201:http://127.0.0.1:18182:3"
export FICUS_BENCH_TOKEN=bench-token
cat > "$W/users.lua" <<'LUA'
request = function()
  return wrk.format("GET", "/api/tasks/TASK-101", { ["X-User-Id"] = "u" .. math.random(1, 1000000) })
end
LUA
for s in $setups; do
  IFS=: read -r name port admin _ host nport on <<<"$s"
  url="http:$host:$nport"
  {
    cat <<EOF
[proxy]
listen = "127.0.0.1:$port"
admin_listen = "127.0.0.1:$admin"
state = "$W/$name-state.db"
workers = 1
watch_config = false
admin_token_env = "FICUS_BENCH_TOKEN"
[backends.legacy]
url = "http://127.0.0.1:18181"
[backends.new]
url = "$url"
[[routes]]
name = "tasks"
methods = ["GET"]
path = "/api/tasks/*"
EOF
    case "$on" in
      0) echo 'percent = 0.0' ;;
      1) printf 'percent = 0.0\n[routes.shadow]\nsample = 1.0\n[shadow]\nstore = "%s"\ntimeout_ms = 5000\n' "$W/$name-shadow.db" ;;
      2) printf 'percent = 10.0\nsticky = "header:X-User-Id"\n' ;;
      3) printf 'percent = 10.0\nsticky = "header:X-User-Id"\n[routes.shadow]\nsample = 0.0\n'
         printf '[routes.plan]\nsteps = [10, 25]\nhold = "1s"\nmin_requests = 1\npreflight = "24h"\n'
         printf 'max_error_rate = 1.0\nmax_mismatch_rate = 1.0\n'
         printf '[shadow]\nstore = "%s"\ntimeout_ms = 5000\n' "$W/$name-shadow.db" ;;
    esac
  } > "$W/$name.toml"
  RUST_LOG=error "$FICUS" proxy --config "$W/$name.toml" >"$W/$name.log" 2>&1 & PIDS+=($!)
  echo "$name $!" >> "$W/pids"
done
for port in 18181 18182 18183 18190 18191 18192 18193 18194 18200; do
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done

# The plan: started at 10 %, it holds 1 s (gates that always pass), then pre-flights the next
# cohort for 24 h — the whole measurement.
"$FICUS" rollout plan start tasks --admin http://127.0.0.1:18201 --token-env FICUS_BENCH_TOKEN >/dev/null
wrk -t1 -c4 -d3s -s "$W/users.lua" http://127.0.0.1:18200/ >/dev/null
"$FICUS" rollout plan status tasks --admin http://127.0.0.1:18201 --json |
  python3 -c 'import json,sys; p=json.load(sys.stdin)["plan"]; assert p["phase"]=="preflight", p; print("bench: pre-flight running on [10 %, 25 %) of keys")'

: > "$W/rows"
names="noshadow shadow slow down split preflight"
for r in $(seq "$R"); do
  set -- $names; n=$#; k=$(( (r - 1) % n ))
  order="${*:k+1} ${*:1:k}"
  for name in $order; do
    port=$(grep "^$name:" <<<"$setups" | cut -d: -f2)
    wrk -t1 -c"$CONNS" -d"${D}s" --latency -s "$W/users.lua" "http://127.0.0.1:$port/api/tasks/TASK-101" |
      awk -v n="$name" '/Requests\/sec/{r=$2} /^ +50%/{p50=$2} /^ +99%/{p99=$2} / Non-2xx/{bad=$NF} END{print n, r, p50, p99, bad+0}' >> "$W/rows"
  done
done

# What each proxy counted, and its memory, after the load.
sleep 1
: > "$W/counts"
for s in $setups; do
  IFS=: read -r name _ admin _ <<<"$s"
  pid=$(awk -v n="$name" '$1==n{print $2}' "$W/pids")
  rss=$(ps -o rss= -p "$pid" | tr -d ' ')
  m=$(curl -s "http://127.0.0.1:$admin/metrics" || true)
  c() { awk -v r="$1" 'index($0, "ficus_shadow_requests_total{") == 1 && index($0, "result=\"" r "\"") {s += $NF} END{print s+0}' <<<"$m"; }
  cohort=$(awk 'index($0, "ficus_plan_preflight_requests_total{") == 1 {s += $NF} END{print s+0}' <<<"$m")
  echo "$name rss_kb=$rss match=$(c match) mismatch=$(c mismatch) error=$(c error) dropped=$(c dropped) skipped=$(c skipped) preflight_cohort=$cohort" >> "$W/counts"
done

python3 - "$W/rows" "$D" "$R" "$CONNS" "$W/counts" <<'PY'
import statistics as st, sys
def us(v):
    for suf, k in (("us", 1), ("ms", 1e3), ("s", 1e6)):
        if v.endswith(suf): return float(v[:-len(suf)]) * k
rows = {}
for line in open(sys.argv[1]):
    n, r, p50, p99, bad = line.split()
    rows.setdefault(n, []).append((float(r), us(p50), us(p99), int(bad)))
print(f"wrk -t1 -c{sys.argv[4]} -d{sys.argv[2]}s, {sys.argv[3]} interleaved rounds, ficus with one worker; medians")
med = {}
for n in ("noshadow", "shadow", "slow", "down", "split", "preflight"):
    v = rows.get(n, [])
    if not v: continue
    med[n] = (st.median(x[0] for x in v), st.median(x[1] for x in v), st.median(x[2] for x in v))
    errs = sum(x[3] for x in v)
    line = f"{n:9s} rps={med[n][0]:8.0f}  p50={med[n][1]:7.0f}us  p99={med[n][2]:7.0f}us"
    base = "split" if n == "preflight" else "noshadow"
    if n != base and base in med:
        b = med[base]
        line += f"   vs {base}: rps x{med[n][0]/b[0]:.2f}  p99 x{med[n][2]/b[2]:.2f}"
    print(line + (f"  non-2xx={errs}" if errs else ""))
print("p99 per round (us): " + "  ".join(f"{n}=" + ",".join(f"{x[2]:.0f}" for x in rows[n]) for n in med))
print()
print("what each proxy counted after the load (ficus_shadow_requests_total by result) and its RSS:")
for line in open(sys.argv[5]):
    print("  " + line.rstrip())
b = med.get("noshadow")
if b:
    ok = all(med[n][2] <= b[2] * 1.10 for n in ("slow", "down") if n in med)
    print("acceptance (slow/down p99 within 10% of noshadow):", "met" if ok else "NOT met")
PY
