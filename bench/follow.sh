#!/usr/bin/env bash
# Live-migration benchmark (`ficus migrate run --follow`), on the gen_taskdb.py database:
#   1. the legacy app's write throughput with change capture off vs on (wrk POSTing
#      update-notes at full speed to `ficus taskapp legacy`; interleaved rounds, medians);
#   2. the follower's apply rate: one statement changes every task, then
#      `migrate run --follow --until-caught-up` applies them (changed rows / s);
#   3. the follower's lag under the writers: /metrics `ficus_migrate_follow_lag_seconds`
#      sampled every 100 ms while wrk writes at full speed (p50 / p99 / max).
#
# usage: bench/follow.sh [--tasks N] [--rounds R] [--seconds S] [--keep]
#   needs: python3, wrk, sqlite3, curl, PostgreSQL server binaries. Builds ficus (release).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TASKS=100000
ROUNDS=3
SECS=10
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --tasks) TASKS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --seconds) SECS=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
GEN=${GEN:-$ROOT/../shared/bench/gen_taskdb.py}
[ -f "$GEN" ] || GEN=/work/shared/bench/gen_taskdb.py
. "$ROOT/bench/lib.sh"
need_tools wrk:wrk sqlite3:sqlite3 curl:curl
ficus_binary "$ROOT"

WORK=$(mktemp -d /tmp/ficus-follow-bench-XXXXXX)
chmod 755 "$WORK"
APP_PID=
FOLLOW_PID=
cleanup() {
  [ -n "$APP_PID" ] && kill "$APP_PID" 2>/dev/null || true
  [ -n "$FOLLOW_PID" ] && kill "$FOLLOW_PID" 2>/dev/null || true
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
APP_PORT=$(free_port)
MPORT=$(free_port)
FIRST_ID=$(sqlite3 "$DB" "select min(task_id) from tasks")
cat > "$WORK/notes.lua" <<LUA
local first = $(sqlite3 "$DB" "select min(id) from tasks")
local n = $TASKS
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"notes":"written under load"}'
request = function()
  local id = first + math.random(0, n - 1)
  return wrk.format(nil, "/api/tasks/TASK-" .. (100 + id) .. "/update-notes")
end
LUA
# gen_taskdb numbers tasks TASK-<100+id>; check one exists.
sqlite3 "$DB" "select count(*) from tasks where task_id = 'TASK-' || (100 + (select min(id) from tasks))" | grep -q 1 \
  || { echo "bench: task ids are not TASK-<100+id> ($FIRST_ID)" >&2; exit 1; }

start_app() {
  "$FICUS" taskapp legacy --sqlite "$DB" --listen "127.0.0.1:$APP_PORT" >"$WORK/app.log" 2>&1 &
  APP_PID=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$APP_PORT/api/tasks/TASK-101" >/dev/null && return; sleep 0.1; done
  echo "bench: the legacy app did not start" >&2; cat "$WORK/app.log" >&2; exit 1
}
stop_app() { kill "$APP_PID"; wait "$APP_PID" 2>/dev/null || true; APP_PID=; }
rps() { # seconds → requests/s of one wrk run
  wrk -t2 -c8 -d"$1"s -s "$WORK/notes.lua" "http://127.0.0.1:$APP_PORT" > "$WORK/wrk.out"
  awk '/Requests\/sec/ {print $2}' "$WORK/wrk.out"
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

echo "== 1. legacy write throughput, capture off vs on ($ROUNDS interleaved rounds of ${SECS}s)"
start_app
: > "$WORK/off"; : > "$WORK/on"
for r in $(seq "$ROUNDS"); do
  "$FICUS" migrate capture remove --source "$DB" >/dev/null
  off=$(rps "$SECS"); echo "$off" >> "$WORK/off"
  "$FICUS" migrate capture install --source "$DB" >/dev/null
  on=$(rps "$SECS"); echo "$on" >> "$WORK/on"
  # The log grew with every write: empty it so rounds compare alike.
  sqlite3 "$DB" "delete from _ficus_changes"
  printf "   round %d: off %8.0f rps   on %8.0f rps\n" "$r" "$off" "$on"
done
stop_app
OFF=$(median < "$WORK/off"); ON=$(median < "$WORK/on")
printf "   median: off %.0f rps, on %.0f rps = %.3fx\n" "$OFF" "$ON" "$(echo "$ON/$OFF" | bc -l)"

echo "== 2. follower apply rate"
"$FICUS" migrate capture remove --source "$DB" >/dev/null
"$FICUS" migrate run --follow --until-caught-up --quiet --allow-partial --source "$DB" --target "$TARGET" > "$WORK/snapshot.log" 2>&1
tail -2 "$WORK/snapshot.log" | sed 's/^/   /'
CHANGED=$(sqlite3 "$DB" "update tasks set title = title || '.'; select changes();")
start=$(date +%s.%N)
"$FICUS" migrate run --follow --until-caught-up --quiet --allow-partial --source "$DB" --target "$TARGET" > "$WORK/apply.log" 2>&1
end=$(date +%s.%N)
APPLY_S=$(echo "$end - $start" | bc -l)
tail -1 "$WORK/apply.log" | sed 's/^/   /'
printf "   %d changed rows applied in %.2f s (process start included) = %.0f rows/s\n" \
  "$CHANGED" "$APPLY_S" "$(echo "$CHANGED/$APPLY_S" | bc -l)"

echo "== 3. lag under the writers (${SECS}s of wrk at full speed, lag sampled every 100 ms)"
start_app
"$FICUS" migrate run --follow --source "$DB" --target "$TARGET" --metrics-addr "127.0.0.1:$MPORT" > "$WORK/follow.log" 2>&1 &
FOLLOW_PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$MPORT/metrics" | grep -q follow_position && break; sleep 0.1; done
( wrk -t2 -c8 -d"$SECS"s -s "$WORK/notes.lua" "http://127.0.0.1:$APP_PORT" > "$WORK/wrk-lag.out" ) &
WRK=$!
: > "$WORK/lag"
while kill -0 "$WRK" 2>/dev/null; do
  curl -sf "http://127.0.0.1:$MPORT/metrics" | awk '/^ficus_migrate_follow_lag_seconds / {print $2}' >> "$WORK/lag" || true
  sleep 0.1
done
sleep 1
LAST=$(sqlite3 "$DB" "select coalesce(max(id),0) from _ficus_changes")
POS=$(curl -sf "http://127.0.0.1:$MPORT/metrics" | awk '/^ficus_migrate_follow_position / {print $2}')
kill -INT "$FOLLOW_PID"; wait "$FOLLOW_PID" || true; FOLLOW_PID=
stop_app
WRITES=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk-lag.out")
N=$(wc -l < "$WORK/lag")
read -r P50 P99 MAX < <(sort -g "$WORK/lag" | awk '{a[NR]=$1} END {i50=int(NR*0.5); i99=int(NR*0.99); if (i50<1) i50=1; if (i99<1) i99=1; print a[i50], a[i99], a[NR]}')
printf "   writes %.0f/s; %d samples: lag p50 %.3f s, p99 %.3f s, max %.3f s; 1 s after the writers stopped: position %s of %s\n" \
  "$WRITES" "$N" "$P50" "$P99" "$MAX" "$POS" "$LAST"
"$FICUS" migrate verify --quiet --source "$DB" --target "$TARGET" | tail -1 | sed 's/^/   verify: /'

echo "== summary"
printf "capture on/off write throughput %.3fx (target >= 0.85); apply %.0f rows/s (target >= 10000); lag p99 %.3f s (target <= 1)\n" \
  "$(echo "$ON/$OFF" | bc -l)" "$(echo "$CHANGED/$APPLY_S" | bc -l)" "$P99"
