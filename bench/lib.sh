# Shared by the bench scripts (source it): installing the peers, finding the ficus binary.

# need_tools CMD:PACKAGE...  — apt-get install the packages whose command is missing.
# A CMD starting with / is a path that must be executable.
need_tools() {
  local need=() c
  for c in "$@"; do
    case "${c%%:*}" in
      /*) [ -x "${c%%:*}" ] || need+=("${c#*:}") ;;
      *) command -v "${c%%:*}" >/dev/null || need+=("${c#*:}") ;;
    esac
  done
  if [ ${#need[@]} -gt 0 ]; then
    echo "bench: installing ${need[*]}" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
}

# ficus_binary ROOT — set FICUS to the release binary, building it, unless FICUS is set.
ficus_binary() {
  if [ -z "${FICUS:-}" ]; then
    echo "bench: building ficus (release)" >&2
    (cd "$1" && cargo build --release --bin ficus -q)
    FICUS="${CARGO_TARGET_DIR:-$1/target}/release/ficus"
  fi
}

# backends_conf DIR PORT1 BODY1 PORT2 BODY2 — write DIR/backends.conf: one nginx worker serving
# a fixed JSON body on each loopback port (pid in DIR/backends.pid). Start it with
# `nginx -c DIR/backends.conf`.
backends_conf() {
  cat > "$1/backends.conf" <<CONF
worker_processes 1; daemon on; pid $1/backends.pid; error_log $1/backends.err;
events { worker_connections 4096; }
http { access_log off;
  server { listen 127.0.0.1:$2; location / { default_type application/json; return 200 '$3'; } }
  server { listen 127.0.0.1:$4; location / { default_type application/json; return 200 '$5'; } }
}
CONF
}

# pg_start WORK — initdb + start a throwaway PostgreSQL (fsync off) under WORK on a free
# loopback port; sets PG (a postgresql:// URL without a database), PGBIN_DIR, and
# registers pg_stop for the caller's cleanup.
pg_start() {
  local work=$1 port
  PGBIN_DIR=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "${PGBIN:-}" ] && PGBIN_DIR=$PGBIN
  port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  if [ "$(id -u)" = 0 ]; then chown postgres "$work"; fi
  as_pg "$PGBIN_DIR/initdb" -D "$work/data" -U postgres --auth=trust -E UTF8 --locale=C --no-sync >/dev/null
  as_pg "$PGBIN_DIR/pg_ctl" -D "$work/data" -l "$work/server.log" -w -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=256MB -c max_wal_size=4GB -c checkpoint_timeout=30min" start >/dev/null
  PG="postgresql://postgres@127.0.0.1:$port"
  PG_WORK=$work
}

pg_stop() {
  [ -n "${PG_WORK:-}" ] && as_pg "$PGBIN_DIR/pg_ctl" -D "$PG_WORK/data" -m fast stop >/dev/null 2>&1 || true
}

as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
