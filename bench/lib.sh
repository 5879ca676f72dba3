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
