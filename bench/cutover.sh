#!/usr/bin/env bash
# Cut-over benchmark (`ficus migrate cutover` / `ficus migrate rollback --live`): the legacy
# Task API on a gen_taskdb.py database, the new one on PostgreSQL, `ficus proxy` in front,
# `ficus migrate run --follow` keeping PostgreSQL current, and open-loop writers
# (bench/writers.py) POSTing through the proxy at a fixed rate. At each rate (200 and 1,000
# writes/s by default) it cuts over and rolls back live CYCLES times and reports:
#   - the write pause the orchestrator measured (hold placed → released), p50 / p99 / max,
#   - the total time of each command (process start included),
#   - what the writers saw: latency from each write's scheduled time (p50 / p99 / max),
#     answers not from an app (5xx, refused, no x-ficus-backend), and
#   - `migrate verify` at the end.
# There is no peer to run beside: no other tool coordinates a proxy's traffic switch with a
# data catch-up (gh-ost's cut-over is a MySQL table lock + rename; pgcopydb/PeerDB stop the app).
#
# usage: bench/cutover.sh [--tasks N] [--rates "200 1000"] [--cycles C] [--keep]
#   needs: python3, sqlite3, curl, psql, PostgreSQL server binaries. Builds ficus (release).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TASKS=20000
RATES="200 1000"
CYCLES=10
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --tasks) TASKS=$2; shift 2 ;;
    --rates) RATES=$2; shift 2 ;;
    --cycles) CYCLES=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
GEN=${GEN:-$ROOT/../shared/bench/gen_taskdb.py}
[ -f "$GEN" ] || GEN=/work/shared/bench/gen_taskdb.py
. "$ROOT/bench/lib.sh"
need_tools sqlite3:sqlite3 curl:curl
ficus_binary "$ROOT"

WORK=$(mktemp -d /tmp/ficus-cutover-bench-XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  touch "$WORK/stop" 2>/dev/null || true
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pg_stop
  [ "$KEEP" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
pg_start "$WORK"
DB=$WORK/legacy.db
python3 "$GEN" "$DB" --tasks "$TASKS" >/dev/null
psql "$PG/postgres" -qc "create database live"
TARGET=$PG/live
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
LEGACY_PORT=$(free_port); NEW_PORT=$(free_port); PROXY_PORT=$(free_port); ADMIN_PORT=$(free_port)
export FICUS_ADMIN_TOKEN=bench-cutover-token
wait_http() { # URL NAME LOG
  for _ in $(seq 300); do curl -s -o /dev/null "$1" && return; sleep 0.1; done
  echo "bench: $2 did not start" >&2; cat "$3" >&2; exit 1
}

echo "== setup: $TASKS tasks; follower copies and follows; legacy, new and the proxy start"
"$FICUS" migrate run --follow --quiet --allow-partial --source "$DB" --target "$TARGET" > "$WORK/follow.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 600); do
  [ "$(psql "$TARGET" -Atqc "select count(*) from ficus.follow" 2>/dev/null || echo 0)" = 1 ] && break
  sleep 0.2
done
[ "$(psql "$TARGET" -Atqc "select count(*) from ficus.follow" 2>/dev/null || echo 0)" = 1 ] \
  || { echo "bench: the follower never followed" >&2; cat "$WORK/follow.log" >&2; exit 1; }
"$FICUS" taskapp legacy --sqlite "$DB" --listen "127.0.0.1:$LEGACY_PORT" > "$WORK/legacy.log" 2>&1 &
PIDS+=($!)
"$FICUS" taskapp new --postgres "$TARGET" --listen "127.0.0.1:$NEW_PORT" > "$WORK/new.log" 2>&1 &
PIDS+=($!)
cat > "$WORK/ficus.toml" <<TOML
[proxy]
listen = "127.0.0.1:$PROXY_PORT"
admin_listen = "127.0.0.1:$ADMIN_PORT"
state = "$WORK/state.db"
[backends.legacy]
url = "http://127.0.0.1:$LEGACY_PORT"
timeout_ms = 10000
[backends.new]
url = "http://127.0.0.1:$NEW_PORT"
timeout_ms = 10000
[[routes]]
name = "tasks-write"
methods = ["POST"]
path = "/api/tasks/*"
TOML
FICUS_LOG=warn "$FICUS" proxy --config "$WORK/ficus.toml" > "$WORK/proxy.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$LEGACY_PORT/api/tasks/TASK-101" legacy "$WORK/legacy.log"
wait_http "http://127.0.0.1:$NEW_PORT/api/tasks/TASK-101" new "$WORK/new.log"
wait_http "http://127.0.0.1:$ADMIN_PORT/admin/routes" proxy "$WORK/proxy.log"
FIRST=$((100 + $(sqlite3 "$DB" "select min(id) from tasks")))
ADMIN=http://127.0.0.1:$ADMIN_PORT

run_timed() { # OUT CMD... — run, keep output, append "total_ms" line
  local out=$1; shift
  local s e rc=0
  s=$(date +%s%N)
  "$@" > "$out" 2>&1 || rc=$?
  e=$(date +%s%N)
  echo "total_ms $(( (e - s) / 1000000 ))" >> "$out"
  return $rc
}

SUMMARY=()
for RATE in $RATES; do
  echo "== $RATE writes/s: $CYCLES cut-overs and $CYCLES live rollbacks"
  rm -f "$WORK/stop"
  python3 "$ROOT/bench/writers.py" "127.0.0.1:$PROXY_PORT" "$RATE" 32 "$WORK/w$RATE.txt" "$WORK/stop" "$FIRST" "$TASKS" &
  WPID=$!
  sleep 3
  : > "$WORK/cut$RATE"; : > "$WORK/back$RATE"
  for c in $(seq "$CYCLES"); do
    run_timed "$WORK/c.out" "$FICUS" migrate cutover --source "$DB" --target "$TARGET" --admin "$ADMIN" \
      --routes tasks-write --max-hold-ms 2000 \
      || { echo "bench: cut-over $c failed:" >&2; cat "$WORK/c.out" >&2; exit 1; }
    echo "$(awk '/^write pause:/ {print $3}' "$WORK/c.out") $(awk '/^total_ms/ {print $2}' "$WORK/c.out")" >> "$WORK/cut$RATE"
    sleep 1
    run_timed "$WORK/b.out" "$FICUS" migrate rollback --live --source "$DB" --target "$TARGET" --admin "$ADMIN" \
      --max-hold-ms 2000 \
      || { echo "bench: live rollback $c failed:" >&2; cat "$WORK/b.out" >&2; exit 1; }
    echo "$(awk '/^write pause:/ {print $3}' "$WORK/b.out") $(awk '/^total_ms/ {print $2}' "$WORK/b.out")" >> "$WORK/back$RATE"
    printf "   cycle %2d: cut-over pause %6s ms (total %5s ms)   rollback pause %6s ms (total %5s ms)\n" "$c" \
      $(tail -1 "$WORK/cut$RATE") $(tail -1 "$WORK/back$RATE")
    sleep 1
  done
  cp "$WORK/c.out" "$WORK/last-cutover-$RATE.out"
  touch "$WORK/stop"; wait "$WPID"
  line=$(python3 - "$WORK/cut$RATE" "$WORK/back$RATE" "$WORK/w$RATE.txt" "$RATE" <<'PY'
import math, sys
def pct(xs, p):  # nearest rank
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, math.ceil(p / 100 * len(xs)) - 1))]
def pairs(path):
    rows = [l.split() for l in open(path) if l.strip()]
    return [float(r[0]) for r in rows], [float(r[1]) for r in rows]
cp, ct = pairs(sys.argv[1]); bp, bt = pairs(sys.argv[2])
w = [l.split() for l in open(sys.argv[3]) if l.strip()]
lat = [float(r[1]) for r in w]
foreign = [r for r in w if not (r[2].isdigit() and int(r[2]) < 500 and r[3] in ("legacy", "new"))]
span = max(float(r[0]) for r in w) - min(float(r[0]) for r in w)
print(f"   cut-over: pause p50 {pct(cp,50):.1f} ms, p99 {pct(cp,99):.1f} ms, max {max(cp):.1f} ms; total p50 {pct(ct,50):.0f} ms, p99 {pct(ct,99):.0f} ms")
print(f"   rollback: pause p50 {pct(bp,50):.1f} ms, p99 {pct(bp,99):.1f} ms, max {max(bp):.1f} ms; total p50 {pct(bt,50):.0f} ms, p99 {pct(bt,99):.0f} ms")
print(f"   writers: {len(w)} writes in {span:.0f} s ({len(w)/span:.0f}/s offered {sys.argv[4]}/s); latency from schedule p50 {pct(lat,50):.1f} ms, p99 {pct(lat,99):.1f} ms, max {max(lat):.1f} ms; answers not from an app: {len(foreign)}")
print(f"SUMMARY {sys.argv[4]} writes/s: cut-over pause p50 {pct(cp,50):.1f} ms p99 {pct(cp,99):.1f} ms, total p50 {pct(ct,50):.0f} ms; rollback pause p99 {pct(bp,99):.1f} ms; writer latency max {max(lat):.0f} ms; foreign answers {len(foreign)}")
PY
)
  echo "$line" | grep -v '^SUMMARY'
  SUMMARY+=("$(echo "$line" | grep '^SUMMARY' | sed 's/^SUMMARY //')")
  echo "   last cut-over's steps:"; sed 's/^/     /' "$WORK/last-cutover-$RATE.out" | grep -v total_ms
done

echo "== verify (after the follower drained)"
sleep 2
"$FICUS" migrate verify --quiet --source "$DB" --target "$TARGET" 2>&1 | tail -2 | sed 's/^/   /'
echo "== summary (target: cut-over pause p99 <= 250 ms at 1000 writes/s)"
for s in "${SUMMARY[@]}"; do echo "$s"; done
