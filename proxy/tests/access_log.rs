//! Issue 15, the access log: one structured line per request, to a file that is reopened on
//! request (SIGHUP/SIGUSR1), sampled with errors kept, routes opting out, a mirrored request's
//! line carrying shadow mode's outcome.

mod common;
mod raw;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::*;
use ficus_proxy::config::Secret;
use ficus_proxy::{Config, Proxy, ProxyHandle};
use serde_json::Value;
use testkit::ProxyToml;

const OVERRIDE: &str = "let-me-choose";

const ROUTES: &str = r#"
[[routes]]
name = "tasks"
path = "/api/tasks/*"
percent = 50.0
sticky = "header:X-User-Id"

[[routes]]
name = "health"
path = "/health"
target = "legacy"
access_log = false

[[routes]]
name = "down"
path = "/down/*"
target = "new"
"#;

fn start(legacy: SocketAddr, new: &str, access_log: &str, routes: &str) -> ProxyHandle {
    let toml = ProxyToml::new(&legacy, new)
        .proxy(&format!("[proxy.access_log]\n{access_log}"))
        .new_backend("connect_timeout_ms = 500")
        .routes(routes)
        .to_string();
    let mut c = Config::from_toml_str(&toml).unwrap();
    c.proxy.override_token = Some(Secret(OVERRIDE.into()));
    Proxy::start(c, None).unwrap()
}

fn path_line(p: &Path) -> String {
    format!("path = {:?}", p.display().to_string())
}

fn lines(p: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(p).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The lines keyed by request id.
fn by_id(p: &Path) -> HashMap<String, Value> {
    lines(p)
        .into_iter()
        .map(|v| (v["request_id"].as_str().unwrap().to_string(), v))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_line_per_request_with_route_decision_backend_status_bytes_and_latency() {
    let tmp = testkit::temp_dir("proxy-access-log");
    let file = tmp.path().join("access.log");
    let legacy = echo("legacy").await;
    let new = echo("new").await;
    let p = start(legacy, &new.to_string(), &path_line(&file), ROUTES);
    let a = p.listen_addr();

    let sticky = get(a, "/api/tasks/T1", &[("x-user-id", "alice")]).await;
    let no_key = get(a, "/api/tasks/T2", &[]).await;
    let forced = get(
        a,
        "/api/tasks/T3",
        &[
            ("x-user-id", "alice"),
            ("x-ficus-backend", "new"),
            ("x-ficus-override-token", OVERRIDE),
        ],
    )
    .await;
    let posted = send(a, "POST", "/api/tasks/T4?x=1", &[], "0123456789").await;
    let unmatched = get(a, "/elsewhere", &[]).await;
    let health = get(a, "/health", &[]).await;
    assert_eq!(health.status, 200);
    let refused = raw::raw(
        a,
        b"GET /../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(refused.status, 400);
    assert!(p.flush_access_log().await);

    let log = by_id(&file);
    assert_eq!(log.len(), 6, "health is left out: {log:#?}");
    let line = |r: &Resp| log[r.header("x-request-id")].clone();

    let l = line(&sticky);
    assert_eq!(l["route"], "tasks");
    assert_eq!(l["decision"], "sticky");
    assert_eq!(l["backend"], sticky.header("x-ficus-backend"));
    assert_eq!(l["method"], "GET");
    assert_eq!(l["path"], "/api/tasks/T1");
    assert_eq!(l["protocol"], "HTTP/1.1");
    assert_eq!(l["client"], "127.0.0.1");
    assert_eq!(l["status"], 200);
    assert_eq!(l["bytes_in"], 0);
    assert_eq!(l["bytes_out"], sticky.body.len() as u64);
    assert_eq!(l["shadow"], Value::Null);
    assert_eq!(l["complete"], true);
    let up = l["upstream_ms"].as_f64().unwrap();
    let total = l["total_ms"].as_f64().unwrap();
    assert!(
        up > 0.0 && total >= up,
        "upstream {up} ms, total {total} ms"
    );
    assert!(l["time"].as_str().unwrap().ends_with('Z'));

    assert_eq!(line(&no_key)["decision"], "percent");
    assert_eq!(line(&forced)["decision"], "override");
    assert_eq!(line(&forced)["backend"], "new");
    let l = line(&posted);
    assert_eq!(l["method"], "POST");
    assert_eq!(l["path"], "/api/tasks/T4?x=1");
    assert_eq!(l["bytes_in"], 10);
    let l = line(&unmatched);
    assert_eq!(l["route"], "_unmatched");
    assert_eq!(l["backend"], "legacy");

    // Refused before routing: no route, no backend, the reason.
    let l = &log[refused.header("x-request-id")];
    assert_eq!(l["status"], 400);
    assert_eq!(l["route"], Value::Null);
    assert_eq!(l["backend"], Value::Null);
    assert_eq!(l["error"], "bad_request");
    assert_eq!(l["upstream_ms"], Value::Null);

    let m = p.metrics_text();
    assert_eq!(metric(&m, "ficus_access_log_lines_total"), 6.0);
    assert_eq!(metric(&m, "ficus_access_log_dropped_total"), 0.0);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upstream_is_logged_with_its_error() {
    let tmp = testkit::temp_dir("proxy-access-log-error");
    let file = tmp.path().join("access.log");
    let legacy = echo("legacy").await;
    let dead = format!("http://{}", free_addr());
    let p = start(legacy, &dead, &path_line(&file), ROUTES);
    let r = get(p.listen_addr(), "/down/x", &[]).await;
    assert_eq!(r.status, 502);
    assert!(p.flush_access_log().await);
    let log = by_id(&file);
    let l = &log[r.header("x-request-id")];
    assert_eq!(l["status"], 502);
    assert_eq!(l["error"], "connect");
    assert_eq!(l["backend"], "new");
    assert_eq!(l["upstream_ms"], Value::Null);
    assert_eq!(l["bytes_out"], r.body.len() as u64);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_writes_a_share_and_keeps_every_error() {
    let tmp = testkit::temp_dir("proxy-access-log-sample");
    let legacy = echo("legacy").await;
    let dead = format!("http://{}", free_addr());

    // A vanishing sample: no success is written, every 502 is.
    let file = tmp.path().join("errors.log");
    let cfg = format!("{}\nsample = 0.000000001", path_line(&file));
    let p = start(legacy, &dead, &cfg, ROUTES);
    let mut c = Conn::connect(p.listen_addr()).await;
    for i in 0..100 {
        assert_eq!(c.get(&format!("/api/tasks/T{i}"), &[]).await.status, 200);
    }
    for _ in 0..20 {
        assert_eq!(get(p.listen_addr(), "/down/x", &[]).await.status, 502);
    }
    assert!(p.flush_access_log().await);
    let log = lines(&file);
    assert_eq!(log.len(), 20, "only the errors");
    assert!(log.iter().all(|l| l["status"] == 502));
    p.shutdown().await;

    // all_errors = false: errors are sampled like the rest.
    let file = tmp.path().join("none.log");
    let cfg = format!(
        "{}\nsample = 0.000000001\nall_errors = false",
        path_line(&file)
    );
    let p = start(legacy, &dead, &cfg, ROUTES);
    for _ in 0..20 {
        assert_eq!(get(p.listen_addr(), "/down/x", &[]).await.status, 502);
    }
    assert!(p.flush_access_log().await);
    assert_eq!(lines(&file).len(), 0);
    p.shutdown().await;

    // Half: about half of 2,000 (the chance of falling outside 800..1200 is below 1e-18).
    let file = tmp.path().join("half.log");
    let cfg = format!("{}\nsample = 0.5", path_line(&file));
    let p = start(legacy, &dead, &cfg, ROUTES);
    let mut c = Conn::connect(p.listen_addr()).await;
    for i in 0..2000 {
        assert_eq!(c.get(&format!("/api/tasks/T{i}"), &[]).await.status, 200);
    }
    assert!(p.flush_access_log().await);
    let n = lines(&file).len();
    assert!(
        (800..=1200).contains(&n),
        "{n} of 2000 written at sample = 0.5"
    );
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopens_after_rotation_and_writes_logfmt() {
    let tmp = testkit::temp_dir("proxy-access-log-rotate");
    let file = tmp.path().join("access.log");
    let rotated = tmp.path().join("access.log.1");
    let legacy = echo("legacy").await;
    let new = echo("new").await;
    let cfg = format!("{}\nformat = \"logfmt\"", path_line(&file));
    let p = start(legacy, &new.to_string(), &cfg, ROUTES);
    let a = p.listen_addr();
    let before = get(a, "/api/tasks/before", &[]).await;
    assert!(p.flush_access_log().await);
    // logrotate: move the file away, then signal.
    std::fs::rename(&file, &rotated).unwrap();
    let during = get(a, "/api/tasks/during", &[]).await;
    p.reopen_access_log();
    assert!(p.flush_access_log().await);
    let after = get(a, "/api/tasks/after", &[]).await;
    assert!(p.flush_access_log().await);

    let old = std::fs::read_to_string(&rotated).unwrap();
    let new_file = std::fs::read_to_string(&file).unwrap();
    let id = |r: &Resp| format!("request_id={}", r.header("x-request-id"));
    assert!(old.contains(&id(&before)), "{old}");
    // Finished between the move and the reopen: in one file or the other, never lost.
    assert_eq!(
        old.matches(&id(&during)).count() + new_file.matches(&id(&during)).count(),
        1,
        "{old}\n{new_file}"
    );
    assert!(new_file.contains(&id(&after)), "{new_file}");
    assert!(!new_file.contains(&id(&before)));
    let line = new_file.lines().find(|l| l.contains(&id(&after))).unwrap();
    assert!(line.starts_with("time="), "{line}");
    assert!(line.contains(" route=tasks "), "{line}");
    assert!(line.contains(" path=/api/tasks/after "), "{line}");
    assert!(line.contains(" status=200 "), "{line}");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirrored_request_line_carries_the_comparison() {
    let tmp = testkit::temp_dir("proxy-access-log-shadow");
    let file = tmp.path().join("access.log");
    let legacy = echo("legacy").await;
    let new = echo("new").await;
    let toml = ProxyToml::new(&legacy, &new)
        .proxy(&format!("[proxy.access_log]\n{}", path_line(&file)))
        .shadow(&tmp.path().join("shadow.db"), "")
        .routes("[[routes]]\nname = \"items\"\npath = \"/items/*\"\n[routes.shadow]\n")
        .to_string();
    let p = Proxy::start(Config::from_toml_str(&toml).unwrap(), None).unwrap();
    let r = get(p.listen_addr(), "/items/1", &[]).await;
    assert_eq!(r.status, 200);
    tokio::time::timeout(Duration::from_secs(20), p.flush_shadow())
        .await
        .unwrap();
    assert!(p.flush_access_log().await);
    let log = by_id(&file);
    let l = &log[r.header("x-request-id")];
    // The echo servers answer with their own names: the two sides differ.
    assert_eq!(l["shadow"], "mismatch", "{l}");
    assert_eq!(l["backend"], "legacy");
    p.shutdown().await;
}

#[test]
fn settings_are_checked_with_field_and_line() {
    let base = |extra: &str| {
        format!(
            "[proxy]\n[proxy.access_log]\n{extra}\n[backends.legacy]\nurl = \"http://127.0.0.1:1\"\n\
             [backends.new]\nurl = \"http://127.0.0.1:2\"\n"
        )
    };
    for (extra, field, line, says) in [
        (
            "path = \"-\"\nsample = 0.0",
            "proxy.access_log.sample",
            4,
            "not in (0, 1]",
        ),
        (
            "path = \"-\"\nsample = 1.5",
            "proxy.access_log.sample",
            4,
            "not in (0, 1]",
        ),
        ("sample = 0.5", "proxy.access_log.path", 2, "missing"),
        (
            "path = \"-\"\nformat = \"xml\"",
            "proxy.access_log.format",
            4,
            "\"json\" or \"logfmt\"",
        ),
        (
            "path = \"-\"\ncolour = true",
            "colour",
            4,
            "unknown field `colour`",
        ),
    ] {
        let e = Config::from_toml_str(&base(extra)).unwrap_err();
        assert!(e.field.starts_with(field), "{extra}: {e}");
        assert_eq!(e.line, Some(line), "{extra}: {e}");
        assert!(e.message.contains(says), "{extra}: {e}");
    }
    // A file that cannot be opened stops the start, naming it.
    let toml = base("path = \"/nonexistent-dir/access.log\"").replace(
        "[proxy]\n",
        "[proxy]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nstate = \":memory:\"\n",
    );
    let e = Proxy::start(Config::from_toml_str(&toml).unwrap(), None)
        .err()
        .expect("refused");
    let msg = e.to_string();
    assert!(msg.contains("/nonexistent-dir/access.log"), "{msg}");
    assert!(msg.contains("No such file"), "{msg}");
}
