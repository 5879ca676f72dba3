#!/usr/bin/env python3
"""Static checks of the ficus Grafana dashboard and of the PromQL in the Prometheus rules.

    python3 dashboards/check_dashboard.py [--promtool PATH] [--dashboard F] [--rules F] [--rules-test F]

Dashboard (dashboards/grafana/ficus.json):
  - schemaVersion >= 36; a `datasource` template variable of type prometheus and a `route`
    variable from label_values(ficus_rollout_percent, route);
  - every panel (rows excepted) has the `${datasource}` datasource, at least one target and a
    non-empty `expr` in each, unique ids, a grid position inside 24 columns, no overlap;
  - exprs use no Grafana variable but `$__rate_interval` and `$route` (the latter only as
    `route=~"$route"`), only known ficus metric names, label names each metric has, and the
    fixed label values the sources use (backend, class, result, phase, ...);
  - each expr, with `$__rate_interval` -> 1m and `$route` -> .*, parses: they are written into a
    temporary rule file as recording rules and put through `promtool check rules`.
Rules (dashboards/prometheus/rules.yml, when PyYAML is available):
  - the same metric, label and value checks on every expr;
  - every alert has a `severity` label and `summary`, `description`, `runbook` annotations;
  - rules_test.yml has, for every alert, a case where it fires and one where it must not.
Sources: each metric not marked pending must appear as a string literal in the Rust sources.

Exit status 1 on any failure.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DASHBOARD = os.path.join(HERE, "grafana", "ficus.json")
RULES = os.path.join(HERE, "prometheus", "rules.yml")
RULES_TEST = os.path.join(HERE, "prometheus", "rules_test.yml")

# The metrics ficus exports: name -> (type, labels, fixed label values).
# Sources: proxy/src/metrics.rs, shadow/src/metrics.rs, migrator/src/metrics.rs; the drift,
# guard and dual-write metrics are the names agreed for issue 6 ("pending" until exported).
_PLAN_GATES = {"error_rate", "error_rate_ratio", "p99_ms", "p99_ratio", "mismatch_rate",
               "preflight_mismatch_rate", "preflight_error_rate", "preflight_error_rate_ratio"}
_SHADOW_KINDS = {"status", "header", "missing", "extra", "type", "value", "array_length", "order", "text"}
METRICS = {
    # proxy
    "ficus_requests_total": ("counter", {"route", "backend", "class"},
                             {"backend": {"legacy", "new"}, "class": {"1xx", "2xx", "3xx", "4xx", "5xx"}}),
    "ficus_request_duration_seconds": ("histogram", {"route", "backend"}, {"backend": {"legacy", "new"}}),
    "ficus_upstream_errors_total": ("counter", {"route", "backend", "kind"},
                                    {"backend": {"legacy", "new"}, "kind": {"connect", "timeout", "upstream_io"}}),
    "ficus_upstream_connections_opened_total": ("counter", {"backend"}, {"backend": {"legacy", "new"}}),
    "ficus_rollout_percent": ("gauge", {"route"}, {}),
    "ficus_rollout_changes_total": ("counter", {"route", "action"},
                                    {"action": {"set", "rollback", "reset", "config"}}),
    "ficus_rollbacks_total": ("counter", set(), {}),
    "ficus_override_attempts_total": ("counter", {"route", "result"}, {"result": {"honoured", "rejected"}}),
    "ficus_sticky_key_missing_total": ("counter", {"route"}, {}),
    "ficus_config_reloads_total": ("counter", {"result"}, {"result": {"success", "failure"}}),
    "ficus_inflight_requests": ("gauge", set(), {}),
    # shadow
    "ficus_shadow_requests_total": ("counter", {"route", "result"},
                                    {"result": {"match", "mismatch", "noise", "error", "dropped", "skipped"}}),
    "ficus_shadow_mismatches_total": ("counter", {"route", "kind"}, {"kind": _SHADOW_KINDS}),
    "ficus_shadow_mirror_duration_seconds": ("histogram", {"route"}, {}),
    "ficus_shadow_store_errors_total": ("counter", set(), {}),
    # migrator
    "ficus_migrate_rows_copied_total": ("counter", {"table"}, {}),
    "ficus_migrate_rows_quarantined_total": ("counter", {"table"}, {}),
    "ficus_migrate_rows_per_second": ("gauge", {"table"}, {}),
    "ficus_migrate_source_rows": ("gauge", {"table"}, {}),
    "ficus_migrate_phase": ("gauge", {"phase"},
                            {"phase": {"plan", "copy", "postload", "verify", "done", "failed"}}),
    "ficus_migrate_verify_rows": ("gauge", {"table", "outcome"},
                                  {"outcome": {"quarantined", "missing", "extra", "differs"}}),
    # issue 6 (pending)
    "ficus_drift_rows": ("gauge", {"table", "class"},
                         {"class": {"missing_in_new", "missing_in_legacy", "value_differs"}}),
    "ficus_drift_keys_checked_total": ("counter", {"table"}, {}),
    "ficus_drift_verify_lag_seconds": ("gauge", set(), {}),
    "ficus_drift_last_sweep_timestamp_seconds": ("gauge", set(), {}),
    "ficus_guard_rollbacks_total": ("counter", {"route", "reason"},
                                    {"reason": {"error_rate", "p99", "mismatch_rate"}}),
    "ficus_dual_write_divergent_total": ("counter", {"route"}, {}),
    # step plans (issue 16)
    "ficus_plan_status": ("gauge", {"route", "status"},
                          {"status": {"running", "paused", "done", "failed", "aborted"}}),
    "ficus_plan_step_percent": ("gauge", {"route"}, {}),
    "ficus_plan_step_seconds": ("gauge", {"route"}, {}),
    "ficus_plan_preflight_active": ("gauge", {"route"}, {}),
    "ficus_plan_gate_value": ("gauge", {"route", "gate"}, {"gate": _PLAN_GATES}),
    "ficus_plan_gate_threshold": ("gauge", {"route", "gate"}, {"gate": _PLAN_GATES}),
    "ficus_plan_steps_total": ("counter", {"route", "action"},
                               {"action": {"start", "preflight", "promote", "done", "rollback", "pause",
                                           "resume", "abort"}}),
    "ficus_plan_preflight_requests_total": ("counter", {"route"}, {}),
    "ficus_plan_preflight_mismatches_total": ("counter", {"route"}, {}),
}
PENDING = {
    "ficus_drift_rows", "ficus_drift_keys_checked_total", "ficus_drift_verify_lag_seconds",
    "ficus_drift_last_sweep_timestamp_seconds", "ficus_guard_rollbacks_total",
    "ficus_dual_write_divergent_total",
}
TARGET_LABELS = {"job", "instance"}  # added by the scrape
ALLOWED_VARS = {"__rate_interval", "route"}

NAME_RE = re.compile(r"(?<![\w:])(ficus_\w+)(?![\w:])")
SELECTOR_RE = re.compile(r"(?<![\w:])(ficus_\w+)\s*\{([^}]*)\}")
MATCHER_RE = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
GROUPING_RE = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
VAR_RE = re.compile(r"\$\{?(\w+)")

errors = []
notes = []


def fail(msg):
    errors.append(msg)


def metric_of(name):
    """The family a series name belongs to, and whether it is a histogram's `le`-bearing part."""
    if name in METRICS:
        return name, False
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)]
        if name.endswith(suffix) and METRICS.get(base, ("",))[0] == "histogram":
            return base, suffix == "_bucket"
    return None, False


def check_expr(where, expr, recorded=frozenset(), dashboard=True):
    if not isinstance(expr, str) or not expr.strip():
        fail(f"{where}: empty expr")
        return
    for var in VAR_RE.findall(expr):
        if not dashboard or var not in ALLOWED_VARS:
            fail(f"{where}: variable ${var} not allowed (only $__rate_interval and $route in dashboards)")
    if "$route" in expr.replace('route=~"$route"', ""):
        fail(f'{where}: $route must be used as route=~"$route" (multi-value, All = .*)')
    if dashboard and re.search(r"\w:\w", re.sub(r'"[^"]*"|\[[^\]]*\]', "", expr)):
        fail(f"{where}: dashboards must not depend on recorded series (rules may not be loaded)")
    families, labels_in_expr = [], set(TARGET_LABELS)
    for name in NAME_RE.findall(expr):
        fam, bucket = metric_of(name)
        if fam is None:
            if name not in recorded:
                fail(f"{where}: unknown metric {name}")
            continue
        families.append(fam)
        labels_in_expr |= METRICS[fam][1] | ({"le"} if bucket else set())
    for name, body in SELECTOR_RE.findall(expr):
        fam, bucket = metric_of(name)
        if fam is None:
            continue
        _, labels, values = METRICS[fam]
        for label, op, value in MATCHER_RE.findall(body):
            if label not in labels | TARGET_LABELS | ({"le"} if bucket else set()):
                fail(f"{where}: {name} has no label {label!r}")
                continue
            if label in values and "$" not in value and op in ("=", "=~", "!=", "!~"):
                if op in ("=~", "!~"):
                    if not re.fullmatch(r"[\w|]+", value):
                        continue  # a real regex; cannot enumerate
                    wanted = value.split("|")
                else:
                    wanted = [value]
                for v in wanted:
                    if v not in values[label]:
                        fail(f"{where}: {name}{{{label}}} never takes the value {v!r} "
                             f"(values: {', '.join(sorted(values[label]))})")
    for _, body in GROUPING_RE.findall(expr):
        for label in (x.strip() for x in body.split(",")):
            if label and families and label not in labels_in_expr:
                fail(f"{where}: grouping label {label!r} is not a label of {', '.join(sorted(set(families)))}")


def substituted(expr):
    return expr.replace("$__rate_interval", "1m").replace("${route}", ".*").replace("$route", ".*")


def walk_panels(panels):
    for p in panels:
        yield p
        yield from walk_panels(p.get("panels", []) or [])


def check_dashboard():
    with open(DASHBOARD, encoding="utf-8") as f:
        d = json.load(f)
    exprs = []  # (where, expr)
    if not isinstance(d.get("schemaVersion"), int) or d["schemaVersion"] < 36:
        fail("dashboard: schemaVersion must be >= 36")
    if not d.get("uid") or not d.get("title"):
        fail("dashboard: uid and title are required")
    tvars = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
    ds = tvars.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        fail("dashboard: needs a template variable `datasource` of type datasource, query prometheus")
    route = tvars.get("route")
    q = route and route.get("query")
    q = q.get("query") if isinstance(q, dict) else q
    if not route or route.get("type") != "query" or (q or "").replace(" ", "") != "label_values(ficus_rollout_percent,route)":
        fail("dashboard: needs a query variable `route` = label_values(ficus_rollout_percent, route)")
    elif (route.get("datasource") or {}).get("uid") != "${datasource}":
        fail("dashboard: the route variable must query ${datasource}")
    elif route.get("includeAll") and route.get("allValue") != ".*":
        fail('dashboard: the route variable\'s All value must be ".*"')
    for i, a in enumerate(d.get("annotations", {}).get("list", [])):
        if "expr" in a:
            if (a.get("datasource") or {}).get("uid") != "${datasource}":
                fail(f"annotation {a.get('name', i)!r}: datasource must be ${{datasource}}")
            exprs.append((f"annotation {a.get('name', i)!r}", a["expr"]))

    ids, cells, count = set(), {}, 0
    for p in walk_panels(d.get("panels", [])):
        title = p.get("title") or f"id {p.get('id')}"
        where = f"panel {title!r}"
        pid = p.get("id")
        if pid in ids:
            fail(f"{where}: duplicate id {pid}")
        ids.add(pid)
        g = p.get("gridPos") or {}
        if not all(isinstance(g.get(k), int) for k in ("h", "w", "x", "y")) or g["x"] + g["w"] > 24:
            fail(f"{where}: bad gridPos {g}")
        else:
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    if (x, y) in cells:
                        fail(f"{where}: overlaps panel {cells[(x, y)]!r}")
                        break
                    cells[(x, y)] = title
                else:
                    continue
                break
        if p.get("type") == "row":
            continue
        count += 1
        if (p.get("datasource") or {}).get("uid") != "${datasource}":
            fail(f"{where}: datasource must be ${{datasource}}")
        targets = p.get("targets") or []
        if not targets:
            fail(f"{where}: no targets")
        refs = set()
        for t in targets:
            ref = t.get("refId")
            if not ref or ref in refs:
                fail(f"{where}: missing or duplicate refId {ref!r}")
            refs.add(ref)
            tds = t.get("datasource")
            if tds is not None and tds.get("uid") != "${datasource}":
                fail(f"{where}/{ref}: target datasource must be ${{datasource}}")
            exprs.append((f"{where}/{ref}", t.get("expr")))
    if count == 0:
        fail("dashboard: no panels")
    for where, expr in exprs:
        check_expr(where, expr)
    return count, exprs


def promtool_parse(exprs, promtool):
    """Every expr must parse: promtool checks them as recording rules (JSON is valid YAML)."""
    rules = [{"record": f"ficus_dashboard:expr_{i}", "expr": substituted(e)}
             for i, (_, e) in enumerate(exprs) if isinstance(e, str) and e.strip()]
    doc = {"groups": [{"name": "dashboard-exprs", "rules": rules}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        json.dump(doc, f, indent=1)
        path = f.name
    try:
        r = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
    finally:
        os.unlink(path)
    if r.returncode != 0:
        out = (r.stdout + r.stderr).strip()
        # Map "ficus_dashboard:expr_N" back to the panel in the message when promtool names it.
        for i, (where, _) in enumerate(exprs):
            out = out.replace(f"ficus_dashboard:expr_{i}\"", f"ficus_dashboard:expr_{i}\" ({where})")
        fail(f"promtool rejects dashboard PromQL:\n{out}")


def check_rules():
    try:
        import yaml  # noqa: PLC0415
    except ImportError:
        notes.append("PyYAML missing: rule-file name/label and test-coverage checks skipped "
                     "(promtool still checks and tests the rules)")
        return 0
    with open(RULES, encoding="utf-8") as f:
        rules = yaml.safe_load(f)
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    alerts = {}
    for g in rules["groups"]:
        for r in g["rules"]:
            name = r.get("alert") or r.get("record")
            check_expr(f"rule {name}", r["expr"], recorded=recorded, dashboard=False)
            if "alert" in r:
                alerts[name] = r
                if r.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
                    fail(f"alert {name}: severity label must be critical, warning or info")
                for a in ("summary", "description", "runbook"):
                    if not r.get("annotations", {}).get(a):
                        fail(f"alert {name}: missing annotation {a}")
                if "ficus " not in r.get("annotations", {}).get("runbook", ""):
                    fail(f"alert {name}: the runbook should name the ficus command to run")
    with open(RULES_TEST, encoding="utf-8") as f:
        tests = yaml.safe_load(f)
    fires, silent = set(), set()
    for t in tests.get("tests", []):
        for case in t.get("alert_rule_test", []) or []:
            (fires if case.get("exp_alerts") else silent).add(case["alertname"])
    for name in alerts:
        if name not in fires:
            fail(f"rules_test.yml: no case where {name} fires")
        if name not in silent:
            fail(f"rules_test.yml: no case where {name} must stay silent")
    for name in (fires | silent) - set(alerts):
        fail(f"rules_test.yml: tests an alert that rules.yml does not define: {name}")
    return len(alerts)


def check_sources():
    """Names not marked pending must be exported by the Rust sources (when they are present)."""
    literals = set()
    found_any = False
    for top in ("proxy", "shadow", "migrator", "src"):
        base = os.path.join(ROOT, top)
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if d != "target"]
            for fn in filenames:
                if fn.endswith(".rs"):
                    found_any = True
                    with open(os.path.join(dirpath, fn), encoding="utf-8", errors="replace") as f:
                        literals.update(re.findall(r'"(ficus_\w+)"', f.read()))
    if not found_any:
        notes.append("Rust sources not found: metric names not cross-checked")
        return
    for name in sorted(METRICS):
        if name in literals:
            if name in PENDING:
                notes.append(f"{name} is now exported: drop it from PENDING")
        elif name not in PENDING:
            fail(f"{name} is not exported by the sources any more (renamed?)")
        else:
            notes.append(f"{name}: not exported yet (issue 6)")


def main():
    global DASHBOARD, RULES, RULES_TEST
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--promtool", default="promtool")
    ap.add_argument("--dashboard", default=DASHBOARD)
    ap.add_argument("--rules", default=RULES)
    ap.add_argument("--rules-test", default=RULES_TEST)
    a = ap.parse_args()
    DASHBOARD, RULES, RULES_TEST = a.dashboard, a.rules, a.rules_test
    try:
        panels, exprs = check_dashboard()
    except (OSError, ValueError) as e:
        print(f"check_dashboard: {DASHBOARD}: {e}", file=sys.stderr)
        return 1
    promtool_parse(exprs, a.promtool)
    n_alerts = check_rules()
    check_sources()
    for n in notes:
        print(f"  note: {n}")
    if errors:
        for e in errors:
            print(f"  FAIL: {e}", file=sys.stderr)
        print(f"check_dashboard: {len(errors)} problem(s)", file=sys.stderr)
        return 1
    print(f"check_dashboard: {panels} panels, {len(exprs)} exprs, {n_alerts} alerts: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
