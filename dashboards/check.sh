#!/usr/bin/env bash
# Checks the shipped Prometheus rules and Grafana dashboard; called by .ci/run.
#   promtool check rules   dashboards/prometheus/rules.yml
#   promtool test rules    dashboards/prometheus/rules_test.yml   (unit tests of every alert)
#   python3 -m json.tool   dashboards/grafana/ficus.json
#   python3 dashboards/check_dashboard.py   (datasources, exprs, metric/label names, PromQL syntax)
# Installs the Debian `prometheus` package when promtool is missing. Runs every step, then exits
# non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1; then
  echo "check: promtool missing: installing the Debian prometheus package"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  { $sudo apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } ||
    { echo "check: could not install prometheus (promtool)" >&2; exit 1; }
fi
command -v python3 >/dev/null 2>&1 || { echo "check: python3 missing" >&2; exit 1; }

failed=()
step() {
  echo "check: $*"
  if ! "$@"; then
    failed+=("$*")
  fi
}

step promtool check rules dashboards/prometheus/rules.yml
step promtool test rules dashboards/prometheus/rules_test.yml
echo "check: python3 -m json.tool dashboards/grafana/ficus.json"
python3 -m json.tool dashboards/grafana/ficus.json >/dev/null || failed+=("json.tool dashboards/grafana/ficus.json")
step python3 dashboards/check_dashboard.py --promtool "$(command -v promtool)"

if [ ${#failed[@]} -gt 0 ]; then
  printf 'check: FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "check: dashboards OK"
