#!/usr/bin/env bash
# Migration benchmark: pgloader vs `ficus migrate run` on the gen_taskdb.py database, into the
# same throwaway PostgreSQL, in one run; then `ficus migrate verify` beside a raw scan of both
# sides. Prints wall time and peak RSS of each and their ratios.
#
# usage: bench/migrate.sh [--tasks N] [--keep]
#   needs: python3, pgloader (apt-get install -y pgloader), PostgreSQL server binaries,
#          sqlite3 CLI, /usr/bin/time. Builds ficus in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TASKS=200000
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --tasks) TASKS=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
GEN=${GEN:-$ROOT/../shared/bench/gen_taskdb.py}
[ -f "$GEN" ] || GEN=/work/shared/bench/gen_taskdb.py
. "$ROOT/bench/lib.sh"
need_tools pgloader:pgloader sqlite3:sqlite3 /usr/bin/time:time

WORK=$(mktemp -d /tmp/ficus-bench-XXXXXX)
chmod 755 "$WORK"
cleanup() {
  pg_stop
  [ "$KEEP" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
pg_start "$WORK"

DB=$WORK/taskdb.sqlite
python3 "$GEN" "$DB" --tasks "$TASKS"
ficus_binary "$ROOT"

psql "$PG/postgres" -qc "create database peer_pgloader" -c "create database peer_ficus"
# Warm the page cache for both.
cat "$DB" >/dev/null

measure() { # name, command...  (sets ${name}_wall, ${name}_rss, ${name}_ok)
  local name=$1; shift
  local ok=1
  /usr/bin/time -f "%e %M" -o "$WORK/$name.time" "$@" >"$WORK/$name.log" 2>&1 || ok=0
  read -r WALL RSS < <(tail -1 "$WORK/$name.time")
  eval "${name}_wall=$WALL ${name}_rss=$RSS ${name}_ok=$ok"
  printf "%-22s wall %7.2f s   peak RSS %8.1f MB%s\n" "$name" "$WALL" "$(echo "$RSS/1024" | bc -l)" \
    "$([ $ok = 1 ] || echo "   FAILED: $(grep -m1 -iE 'error|exhausted' "$WORK/$name.log" | cut -c1-100)")"
}

echo "== load (same PostgreSQL, one after the other)"
measure pgloader pgloader "sqlite://$DB" "$PG/peer_pgloader"
if [ "$pgloader_ok" = 0 ]; then
  # pgloader's 1 GB Lisp heap sometimes runs out on this database: give it a second chance.
  psql "$PG/postgres" -qc "drop database peer_pgloader" -c "create database peer_pgloader"
  measure pgloader pgloader "sqlite://$DB" "$PG/peer_pgloader"
fi
# --allow-partial: a quarantined row makes run exit 2; the benchmark measures the load.
measure ficus "$FICUS" migrate run --quiet --allow-partial --source "$DB" --target "$PG/peer_ficus"
echo "   ficus: $(grep -m1 'rows copied' "$WORK/ficus.log")"
for t in tasks task_events; do
  printf "   %-12s rows: pgloader %s  ficus %s\n" "$t" \
    "$(psql "$PG/peer_pgloader" -tAc "select count(*) from $t" 2>/dev/null || echo '?')" \
    "$(psql "$PG/peer_ficus" -tAc "select count(*) from $t")"
done
echo "   pgloader NOT NULL columns kept: $(psql "$PG/peer_pgloader" -tAc "select count(*) from information_schema.columns where table_schema='public' and is_nullable='NO'")," \
     "ficus: $(psql "$PG/peer_ficus" -tAc "select count(*) from information_schema.columns where table_schema='public' and is_nullable='NO'")"

echo "== verify vs raw scan of both sides"
raw_scan() {
  for t in tasks task_events; do sqlite3 "$DB" "select * from $t" >/dev/null; done
  for t in tasks task_events; do psql "$PG/peer_ficus" -qc "copy $t to stdout (format binary)" >/dev/null; done
}
export -f raw_scan; export DB PG
measure raw_scan bash -c raw_scan
measure verify "$FICUS" migrate verify --quiet --source "$DB" --target "$PG/peer_ficus"
echo "   verify: $(tail -1 "$WORK/verify.log")"
measure rerun "$FICUS" migrate run --quiet --allow-partial --source "$DB" --target "$PG/peer_ficus"
echo "   re-run: $(head -1 "$WORK/rerun.log")"

echo "== summary"
printf "load:   pgloader %.2f s / ficus %.2f s = %.2fx faster;  peak RSS pgloader %.0f MB, ficus %.0f MB\n" \
  "$pgloader_wall" "$ficus_wall" "$(echo "$pgloader_wall/$ficus_wall" | bc -l)" \
  "$(echo "$pgloader_rss/1024" | bc -l)" "$(echo "$ficus_rss/1024" | bc -l)"
printf "verify: %.2f s vs raw scan of both sides %.2f s = %.2fx;  verify peak RSS %.0f MB\n" \
  "$verify_wall" "$raw_scan_wall" "$(echo "$verify_wall/$raw_scan_wall" | bc -l)" "$(echo "$verify_rss/1024" | bc -l)"
