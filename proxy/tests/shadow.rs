//! Shadow mode and dual writes through a real proxy, end to end over loopback: the reference
//! task apps on both sides (legacy on SQLite; new on a copy of it, or on PostgreSQL for the
//! dual-write story), recording servers where a test must see what a backend received.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use ficus_proxy::config::WriteOrderScope;
use ficus_proxy::{Config, ProxyHandle};
use ficus_shadow::{DiffKind, Store};
use ficus_taskapp::{seed_tasks, Options};
use testkit::apps::{pair, quirks, Pair};
use testkit::backend::{json, serve, TestServer};
use testkit::ProxyToml;

const READS: &[&str] = &[
    "/api/tasks/",
    "/api/tasks/ready",
    "/api/tasks/coordinator-data",
    "/api/tasks/TASK-101",
];

/// A proxy with the state and shadow store in `dir` and the given routes.
fn proxy(
    dir: &Path,
    legacy: SocketAddr,
    new: SocketAddr,
    shadow: &str,
    routes: &str,
) -> ProxyHandle {
    proxy_with_mirror_timeout(dir, legacy, new, 1000, shadow, routes)
}

/// [`proxy`] with the shadow `timeout_ms` given.
fn proxy_with_mirror_timeout(
    dir: &Path,
    legacy: SocketAddr,
    new: SocketAddr,
    timeout_ms: u64,
    shadow: &str,
    routes: &str,
) -> ProxyHandle {
    let toml = ProxyToml::new(&legacy, &new)
        .state_file(&dir.join("state.db"))
        .new_backend("timeout_ms = 2000")
        .shadow(
            &dir.join("shadow.db"),
            &format!("timeout_ms = {timeout_ms}\n{shadow}"),
        )
        .routes(routes);
    start_toml(&toml.to_string())
}

/// The reference task apps on copies of one seeded SQLite database, the new side with
/// `new_quirks`; the proxy's files go in the pair's directory.
async fn sqlite_sides(name: &str, new_quirks: &[&str]) -> Pair {
    pair(name)
        .new_on_sqlite()
        .new_side(Options::with_quirks(quirks(new_quirks)))
        .start()
        .await
}

const READ_ROUTE: &str = r#"
[[routes]]
name = "tasks-read"
methods = ["GET"]
path = "/api/tasks/*"
[routes.shadow]
"#;

/// (field, kind) of every stored mismatch.
fn diffs(store: &Path) -> BTreeSet<(String, DiffKind)> {
    let store = Store::open_existing(store).unwrap();
    let mut out = BTreeSet::new();
    for id in 1..=200 {
        if let Some(rec) = store.mismatch(id).unwrap() {
            out.extend(rec.diff.into_iter().map(|e| (e.field, e.kind)));
        }
    }
    out
}

/// Reads through the proxy; every answer is legacy's.
async fn read_all(p: &ProxyHandle) {
    let mut c = Conn::connect(p.listen_addr()).await;
    for path in READS {
        let r = c.get(path, &[("accept-encoding", "gzip")]).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("x-ficus-backend"), "legacy");
    }
    tokio::time::timeout(Duration::from_secs(20), p.flush_shadow())
        .await
        .expect("flush");
}

fn results(p: &ProxyHandle, route: &str, result: &str) -> f64 {
    metric(
        &p.metrics_text(),
        &format!("ficus_shadow_requests_total{{result=\"{result}\",route=\"{route}\"}}"),
    )
}

async fn quirk_diffs(quirk: &str, route: &str) -> (BTreeSet<(String, DiffKind)>, f64, f64) {
    let apps = sqlite_sides(&format!("proxy-shadow-{quirk}"), &[quirk]).await;
    let p = proxy(apps.dir.path(), apps.legacy.addr, apps.new.addr, "", route);
    read_all(&p).await;
    let out = (
        diffs(&apps.dir.path().join("shadow.db")),
        results(&p, "tasks-read", "match"),
        results(&p, "tasks-read", "mismatch"),
    );
    p.shutdown().await;
    out
}

fn is_timestamp(field: &str) -> bool {
    ["created_at", "updated_at", "last_heartbeat"]
        .iter()
        .any(|t| field.ends_with(&format!("/{t}")))
}

#[tokio::test]
async fn timestamp_precision_is_a_value_difference_on_timestamps() {
    let (d, _, mismatched) = quirk_diffs("timestamp-precision", READ_ROUTE).await;
    assert!(mismatched >= 2.0, "{mismatched}");
    assert!(d.iter().any(|(f, _)| f.starts_with("/*/")), "{d:?}");
    for (field, kind) in &d {
        assert_eq!(*kind, DiffKind::Value, "{field}");
        assert!(is_timestamp(field), "{field}");
    }
}

#[tokio::test]
async fn extra_field_is_an_extra_on_every_task() {
    let (d, matched, mismatched) = quirk_diffs("extra-field", READ_ROUTE).await;
    assert_eq!((matched, mismatched), (0.0, READS.len() as f64));
    assert!(
        d.contains(&("/*/service_version".into(), DiffKind::Extra)),
        "{d:?}"
    );
    assert!(
        d.contains(&("/service_version".into(), DiffKind::Extra)),
        "{d:?}"
    );
    for (field, kind) in &d {
        assert_eq!(*kind, DiffKind::Extra, "{field}");
        assert!(field.ends_with("/service_version"), "{field}");
    }
}

#[tokio::test]
async fn ready_order_is_one_order_difference_on_ready() {
    let (d, matched, mismatched) = quirk_diffs("ready-order", READ_ROUTE).await;
    assert_eq!(d, BTreeSet::from([(String::new(), DiffKind::Order)]));
    assert_eq!((matched, mismatched), (READS.len() as f64 - 1.0, 1.0));
}

#[tokio::test]
async fn ignore_rules_remove_exactly_their_fields_and_reload_rebuilds_the_rules() {
    let apps = sqlite_sides(
        "proxy-shadow-ignore",
        &["timestamp-precision", "ready-order", "extra-field"],
    )
    .await;
    let ignoring = format!(
        "{READ_ROUTE}ignore = [\"/**/created_at\", \"/**/updated_at\", \"/**/last_heartbeat\", \"/**/service_version\"]\n"
    );
    let p = proxy(
        apps.dir.path(),
        apps.legacy.addr,
        apps.new.addr,
        "",
        &ignoring,
    );
    read_all(&p).await;
    assert_eq!(
        diffs(&apps.dir.path().join("shadow.db")),
        BTreeSet::from([(String::new(), DiffKind::Order)]),
        "only the order is left"
    );
    assert_eq!(results(&p, "tasks-read", "mismatch"), 1.0);
    // A reload that also declares the lists unordered rebuilds the route's rules.
    let mut cfg = p.config();
    let shadow = cfg.routes[0].shadow.as_mut().unwrap();
    shadow.unordered_arrays = vec!["".into()];
    p.apply_config(cfg).unwrap();
    read_all(&p).await;
    assert_eq!(
        results(&p, "tasks-read", "mismatch"),
        1.0,
        "no new mismatch"
    );
    assert_eq!(results(&p, "tasks-read", "match"), READS.len() as f64 + 3.0);
    p.shutdown().await;
}

/// A JSON server whose `generated` field changes on every answer (legacy and new alike) and
/// whose new side also adds a field: noise learned from re-asking legacy hides the first,
/// never the second.
async fn noisy(extra: bool) -> TestServer {
    serve(
        Duration::ZERO,
        json(move |_, i| {
            let mut v = serde_json::json!({"id": 1, "name": "a", "generated": i});
            if extra {
                v["extra"] = 1.into();
            }
            v.to_string()
        }),
    )
    .await
}

#[tokio::test]
async fn learned_noise_hides_what_changes_between_two_legacy_answers() {
    let tmp = testkit::temp_dir("proxy-shadow-noise");
    let (legacy, new) = (noisy(false).await, noisy(true).await);
    let route =
        "[[routes]]\nname = \"items\"\npath = \"/items/*\"\n[routes.shadow]\nlearn_noise = 1.0\n";
    let p = proxy(tmp.path(), legacy.addr, new.addr, "", route);
    let mut c = Conn::connect(p.listen_addr()).await;
    for i in 0..5 {
        assert_eq!(c.get(&format!("/items/{i}"), &[]).await.status, 200);
        p.flush_shadow().await;
    }
    let d = diffs(&tmp.path().join("shadow.db"));
    // The first exchange may be judged before its probe taught anything; later ones not.
    assert!(d.contains(&("/extra".into(), DiffKind::Extra)), "{d:?}");
    let store = Store::open_existing(&tmp.path().join("shadow.db")).unwrap();
    let last = store.latest_mismatches(1, None).unwrap().remove(0);
    let fields: Vec<_> = last.diff.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        vec!["/extra"],
        "learned noise removed /generated only"
    );
    let noise = store.noise(Some("items")).unwrap();
    assert_eq!(noise.len(), 1, "{noise:?}");
    assert_eq!(noise[0].field, "/generated");
    p.shutdown().await;
}

/// A server answering `{"ok":true}` and recording what it received.
async fn recording() -> TestServer {
    serve(Duration::ZERO, json(|_, _| "{\"ok\":true}".into())).await
}

#[tokio::test]
async fn writes_are_mirrored_only_on_dual_write_routes_with_marker_and_idempotency_key() {
    let tmp = testkit::temp_dir("proxy-shadow-writes");
    let (legacy, new) = (recording().await, recording().await);
    let routes = format!(
        "[[routes]]\nname = \"plain\"\npath = \"/plain/{{id}}\"\n[routes.shadow]\n{DUAL_ROUTE}"
    );
    let p = proxy(tmp.path(), legacy.addr, new.addr, "", &routes);
    let mut c = Conn::connect(p.listen_addr()).await;
    let hdrs = [
        ("accept-encoding", "gzip, br"),
        ("content-type", "application/json"),
    ];
    assert_eq!(
        c.request("POST", "/plain/A-1", &hdrs, Bytes::from("{}"))
            .await
            .status,
        200
    );
    assert_eq!(c.get("/plain/A-2", &hdrs).await.status, 200);
    assert_eq!(
        c.request("POST", "/dual/B-1", &hdrs, Bytes::from("{\"x\":1}"))
            .await
            .status,
        200
    );
    p.flush_shadow().await;

    let new_got = new.received();
    let paths: Vec<_> = new_got
        .iter()
        .map(|r| format!("{} {}", r.method, r.path()))
        .collect();
    assert_eq!(
        paths,
        vec!["GET /plain/A-2", "POST /dual/B-1"],
        "the plain write is not mirrored"
    );
    let legacy_got = legacy.received();
    let primary = &legacy_got
        .iter()
        .find(|r| r.path() == "/dual/B-1")
        .unwrap()
        .headers;
    let mirror = &new_got[1].headers;
    assert_eq!(mirror["x-ficus-shadow"], "1");
    assert_eq!(mirror["idempotency-key"], primary["x-request-id"]);
    // One stamp per request, the same on both sides; none on the plain route.
    let stamp = primary["x-ficus-request-time"].to_str().unwrap();
    assert_eq!(mirror["x-ficus-request-time"], stamp);
    assert_eq!(stamp.len(), "2026-01-01T10:00:00.000000Z".len(), "{stamp}");
    assert!(
        stamp.ends_with('Z') && stamp.as_bytes()[19] == b'.',
        "{stamp}"
    );
    let plain = &legacy_got
        .iter()
        .find(|r| r.path() == "/plain/A-1")
        .unwrap()
        .headers;
    assert!(!plain.contains_key("x-ficus-request-time"));
    // Accept-Encoding is dropped from mirrored requests (both sides), kept otherwise.
    assert!(!primary.contains_key("accept-encoding"));
    assert!(!mirror.contains_key("accept-encoding"));
    assert_eq!(plain["accept-encoding"], "gzip, br");

    // The dual write is in the state store.
    let rows = dual_writes(&tmp.path().join("state.db"));
    assert_eq!(
        rows,
        vec![(
            stamp.to_string(),
            "dual".into(),
            "B-1".into(),
            "POST".into(),
            "legacy".into(),
            Some(200),
            Some(200),
            0
        )]
    );
    p.shutdown().await;
}

type DwRow = (
    String,
    String,
    String,
    String,
    String,
    Option<i64>,
    Option<i64>,
    i64,
);

fn dual_writes(state: &Path) -> Vec<DwRow> {
    testkit::sqlite::rows(
        state,
        "SELECT at, route, key, method, primary_side, legacy_status, new_status, divergent FROM dual_writes ORDER BY id",
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        },
    )
}

#[tokio::test]
async fn dual_writes_to_postgres_match_and_a_one_sided_write_is_flagged() {
    // The new side on its own system clock: only the proxy's stamp makes the times agree.
    let apps = pair("proxy_dual_write")
        .tasks(&seed_tasks(20, 3))
        .start()
        .await;
    let (tmp, legacy, new) = (apps.dir.path(), &apps.legacy, &apps.new);
    let routes = r#"
[[routes]]
name = "tasks-create"
methods = ["POST"]
path = "/api/tasks/"
dual_write = true
key = "header:X-Task-Id"
[routes.shadow]

[[routes]]
name = "tasks-write"
methods = ["POST"]
path = "/api/tasks/{task_id}/*"
dual_write = true
key = "path:task_id"
[routes.shadow]
ignore_headers = ["date"]
"#;
    let p = proxy(tmp, legacy.addr, new.addr, "", routes);
    let mut c = Conn::connect(p.listen_addr()).await;
    let json = [
        ("content-type", "application/json"),
        ("x-task-id", "TASK-900"),
    ];
    let r = c
        .request(
            "POST",
            "/api/tasks/",
            &json,
            Bytes::from(r#"{"task_id":"TASK-900","title":"dual","priority":"HIGH"}"#),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    p.flush_shadow().await;
    let r = c
        .request(
            "POST",
            "/api/tasks/TASK-900/claim",
            &json,
            Bytes::from(r#"{"agent_name":"agent-7"}"#),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    p.flush_shadow().await;
    // Same stored timestamps on both sides although their clocks differ.
    let on = |url: String| async move {
        let addr: SocketAddr = url.trim_start_matches("http://").parse().unwrap();
        get(addr, "/api/tasks/TASK-900", &[]).await.json()
    };
    let (lt, nt) = (on(legacy.url()).await, on(new.url()).await);
    assert_eq!(nt["assigned_agent"], "agent-7");
    for f in ["created_at", "updated_at", "last_heartbeat"] {
        assert_eq!(lt[f], nt[f], "{f}");
    }
    assert_eq!(
        results(&p, "tasks-write", "match"),
        1.0,
        "{}",
        p.metrics_text()
    );
    assert_eq!(results(&p, "tasks-create", "match"), 1.0);

    // A task only legacy has: the claim succeeds there and 404s on new → flagged at once.
    {
        let conn = testkit::sqlite::open(&apps.sqlite);
        conn.execute(
            "INSERT INTO tasks (task_id, title, priority, status, dependencies, completed, created_at, updated_at)
             SELECT 'TASK-901', title, priority, 'pending', '', 0, created_at, updated_at FROM tasks WHERE task_id = 'TASK-900'",
            [],
        )
        .unwrap();
    }
    let r = c
        .request(
            "POST",
            "/api/tasks/TASK-901/claim",
            &json,
            Bytes::from(r#"{"agent_name":"agent-7"}"#),
        )
        .await;
    assert_eq!(
        r.status, 200,
        "the client gets legacy's answer: {:?}",
        r.body
    );
    p.flush_shadow().await;
    let rows = dual_writes(&tmp.join("state.db"));
    let summary: Vec<_> = rows
        .iter()
        .map(|r| (r.1.as_str(), r.2.as_str(), r.5, r.6, r.7))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("tasks-create", "TASK-900", Some(201), Some(201), 0),
            ("tasks-write", "TASK-900", Some(200), Some(200), 0),
            ("tasks-write", "TASK-901", Some(200), Some(404), 1),
        ]
    );
    let text = p.metrics_text();
    assert_eq!(
        metric(
            &text,
            "ficus_dual_write_divergent_total{route=\"tasks-write\"}"
        ),
        1.0
    );
    assert!(
        text.contains("ficus_dual_write_divergent_total{route=\"tasks-create\"} 0"),
        "pre-created"
    );
    assert_eq!(
        metric(&text, "ficus_dual_write_records_total{result=\"written\"}"),
        3.0
    );
    p.shutdown().await;
    apps.shutdown().await;
}

#[tokio::test]
async fn a_down_or_slow_mirror_side_leaves_the_primary_alone() {
    let apps = sqlite_sides("proxy-shadow-down", &[]).await;
    let dead = free_addr();
    let p = proxy(apps.dir.path(), apps.legacy.addr, dead, "", READ_ROUTE);
    let mut c = Conn::connect(p.listen_addr()).await;
    for _ in 0..20 {
        let r = c.get("/api/tasks/TASK-101", &[]).await;
        assert_eq!((r.status, r.header("x-ficus-backend")), (200, "legacy"));
    }
    p.flush_shadow().await;
    assert_eq!(
        results(&p, "tasks-read", "error"),
        20.0,
        "every mirror counted as an error"
    );
    p.shutdown().await;

    // A mirror side that holds every request until the test lets it answer: all the primary
    // answers come while it holds them, then the mirrors are answered and compared. (A proxy
    // waiting for its mirror would never answer the first request: the mirror side answers
    // only after the twentieth.)
    let apps = sqlite_sides("proxy-shadow-slow", &[]).await;
    let mirror = Held::start().await;
    let p = proxy_with_mirror_timeout(
        apps.dir.path(),
        apps.legacy.addr,
        mirror.server.addr,
        30_000,
        "",
        READ_ROUTE,
    );
    let mut c = Conn::connect(p.listen_addr()).await;
    for _ in 0..20 {
        assert_eq!(c.get("/api/tasks/TASK-101", &[]).await.status, 200);
    }
    assert_eq!(mirror.answered.load(Ordering::SeqCst), 0);
    let ended: f64 = ["match", "mismatch", "noise", "error", "dropped", "skipped"]
        .iter()
        .map(|r| results(&p, "tasks-read", r))
        .sum();
    assert_eq!(
        ended, 0.0,
        "no mirror ended before the primaries were answered"
    );
    mirror.open();
    tokio::time::timeout(Duration::from_secs(20), p.flush_shadow())
        .await
        .expect("flush");
    assert_eq!(mirror.answered.load(Ordering::SeqCst), 20);
    assert_eq!(
        results(&p, "tasks-read", "match") + results(&p, "tasks-read", "mismatch"),
        20.0,
        "every mirror compared once its side answered"
    );
    p.shutdown().await;
}

/// A mirror side that holds every request until [`Held::open`]; then it answers `{}`.
struct Held {
    server: TestServer,
    gate: tokio::sync::watch::Sender<bool>,
    answered: Arc<AtomicU64>,
}

impl Held {
    async fn start() -> Held {
        let (gate, open) = tokio::sync::watch::channel(false);
        let answered = Arc::new(AtomicU64::new(0));
        let counter = answered.clone();
        let server = testkit::backend::serve_async(move |_, _| {
            let (mut open, counter) = (open.clone(), counter.clone());
            async move {
                let _ = open.wait_for(|o| *o).await;
                counter.fetch_add(1, Ordering::SeqCst);
                (
                    200,
                    vec![("content-type", "application/json".to_string())],
                    "{}".to_string(),
                )
            }
        })
        .await;
        Held {
            server,
            gate,
            answered,
        }
    }

    fn open(&self) {
        let _ = self.gate.send(true);
    }
}

#[test]
fn shadow_dual_write_and_guard_settings_are_validated_with_the_field_named() {
    let base = config_toml(
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
        "",
        "",
    );
    let err = |extra: &str| {
        let e = Config::from_toml_str(&format!("{base}{extra}")).unwrap_err();
        (e.field, e.line.is_some(), e.message)
    };
    let route = "[[routes]]\nname = \"w\"\npath = \"/t/{id}\"\n";
    let cases: &[(&str, &str)] = &[
        ("[shadow]\nqueue = 0\n", "shadow.queue"),
        ("[shadow]\nqeue = 1\n", "qeue"),
        (
            &format!("{route}[routes.shadow]\nsample = 2.0\n"),
            "routes[0].shadow.sample",
        ),
        (
            &format!("{route}[routes.shadow]\nignore = [\"nope\"]\n"),
            "routes[0].shadow.ignore[0]",
        ),
        (
            &format!("{route}dual_write = true\nkey = \"path:id\"\n"),
            "routes[0].dual_write",
        ),
        (
            &format!("{route}dual_write = true\n[routes.shadow]\n"),
            "routes[0].key",
        ),
        (
            &format!("{route}dual_write = true\nkey = \"path:nope\"\n[routes.shadow]\n"),
            "routes[0].key",
        ),
        (
            &format!("{route}dual_write = true\nkey = \"random\"\n[routes.shadow]\n"),
            "routes[0].key",
        ),
        (&format!("{route}key = \"path:id\"\n"), "routes[0].key"),
        (
            &format!("{route}write_order = \"route\"\n"),
            "routes[0].write_order",
        ),
        (
            &format!(
                "{route}dual_write = true\nkey = \"path:id\"\nwrite_order = \"row\"\n[routes.shadow]\n"
            ),
            "routes[0].write_order",
        ),
        (
            &format!(
                "{route}dual_write = true\nkey = \"path:id\"\n[routes.shadow]\nsample = 0.5\n"
            ),
            "routes[0].shadow.sample",
        ),
        (
            &format!("{route}[routes.guard]\nmax_error_rate = 1.5\n"),
            "routes[0].guard.max_error_rate",
        ),
        (
            &format!("{route}[routes.guard]\nmax_p99_ms = 100\nwindow_s = 0\n"),
            "routes[0].guard.window_s",
        ),
        (
            &format!("{route}[routes.guard]\nmax_p99_ms = 100\nmin_requests = 0\n"),
            "routes[0].guard.min_requests",
        ),
        (
            &format!("{route}[routes.guard]\nmax_mismatch_rate = 0.1\n"),
            "routes[0].guard.max_mismatch_rate",
        ),
        (
            &format!("{route}[routes.guard]\nmax_eror_rate = 0.1\n"),
            "max_eror_rate",
        ),
    ];
    for (extra, field) in cases {
        let (f, has_line, msg) = err(extra);
        assert_eq!(&f, field, "{extra}: {msg}");
        assert!(has_line, "{extra}: no line");
    }
    // And a valid one.
    let ok = format!(
        "{base}{route}dual_write = true\nkey = \"path:id\"\n[routes.shadow]\n[routes.guard]\nmax_error_rate = 0.02\nmax_p99_ms = 500\nmax_mismatch_rate = 0.01\n"
    );
    let c = Config::from_toml_str(&ok).unwrap();
    assert!(c.routes[0].dual_write && c.routes[0].guard.is_some());
    assert_eq!(c.routes[0].write_order, WriteOrderScope::Key, "the default");
    c.validate().unwrap();
    let ok = format!(
        "{base}{route}dual_write = true\nkey = \"header:X-Task-Id\"\nwrite_order = \"route\"\n[routes.shadow]\n"
    );
    let c = Config::from_toml_str(&ok).unwrap();
    assert_eq!(c.routes[0].write_order, WriteOrderScope::Route);
    c.validate().unwrap();
}

/// The commented shadow, dual-write, guard, plan and access-log examples of `config/ficus.toml`
/// are valid once uncommented.
#[test]
fn shipped_example_shadow_settings_are_valid_when_uncommented() {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/ficus.toml");
    let src = std::fs::read_to_string(p).unwrap();
    const KEYS: &[&str] = &[
        "store",
        "max_body_bytes",
        "queue",
        "concurrency",
        "timeout_ms",
        "keep",
        "keep_days",
        "redact_headers",
        "redact_fields",
        "sample",
        "ignore",
        "ignore_headers",
        "compare_headers",
        "unordered_arrays",
        "float_tolerance",
        "learn_noise",
        "dual_write",
        "key",
        "max_error_rate",
        "max_p99_ms",
        "max_mismatch_rate",
        "window_s",
        "min_requests",
        "path",
        "format",
        "all_errors",
        "access_log",
        "steps",
        "hold",
        "preflight",
        "max_error_rate_ratio",
        "max_p99_ratio",
        "on_fail",
    ];
    let mut uncommented = 0;
    let text: String = src
        .lines()
        .map(|l| {
            let Some(rest) = l.strip_prefix("# ") else {
                return l.to_string();
            };
            let example = [
                "[shadow]",
                "[routes.shadow]",
                "[routes.guard]",
                "[proxy.access_log]",
                "[routes.plan]",
            ]
            .contains(&rest.trim())
                || KEYS.iter().any(|k| rest.starts_with(&format!("{k} = ")));
            if example {
                uncommented += 1;
                rest.to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(uncommented >= 35, "{uncommented}");
    let c = Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let read = c.route("tasks-read").unwrap();
    assert!(read.shadow.is_some() && read.guard.is_some());
    assert!(!read.access_log);
    let log = c.proxy.access_log.as_ref().unwrap();
    assert_eq!((log.sample, log.all_errors), (1.0, true));
    let plan = read.plan.as_ref().unwrap();
    assert_eq!(plan.steps, vec![100, 1000, 2500, 5000, 10_000]);
    let claim = c.route("tasks-claim").unwrap();
    assert!(claim.dual_write && claim.key.is_some());
    assert_eq!(
        c.shadow.unwrap(),
        ficus_shadow::ShadowGlobalConfig {
            redact_headers: vec!["x-api-key".into()],
            redact_fields: vec!["password".into()],
            ..Default::default()
        }
    );
}

#[tokio::test]
async fn graceful_shutdown_commits_what_was_mirrored() {
    let apps = sqlite_sides("proxy-shadow-shutdown", &["extra-field"]).await;
    let p = proxy(
        apps.dir.path(),
        apps.legacy.addr,
        apps.new.addr,
        "",
        READ_ROUTE,
    );
    let mut c = Conn::connect(p.listen_addr()).await;
    for path in READS {
        assert_eq!(c.get(path, &[]).await.status, 200);
    }
    drop(c);
    // No flush: shutdown alone finishes the jobs in hand and commits the store.
    p.shutdown().await;
    let store = Store::open_existing(&apps.dir.path().join("shadow.db")).unwrap();
    assert_eq!(store.mismatch_count().unwrap(), READS.len() as u64);
}
