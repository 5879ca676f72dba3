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
