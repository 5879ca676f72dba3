//! End-to-end tests of the proxy library over real loopback servers.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use ficus_proxy::config::Secret;
use ficus_proxy::{Config, Proxy, ProxyHandle};

const TOKEN: &str = "s3cret-admin";
const OVERRIDE: &str = "let-me-choose";

fn start(toml: &str) -> ProxyHandle {
    let mut c = Config::from_toml_str(toml).unwrap();
    c.proxy.admin_token = Some(Secret(TOKEN.into()));
    c.proxy.override_token = Some(Secret(OVERRIDE.into()));
    Proxy::start(c, None).unwrap()
}

async fn backends() -> (std::net::SocketAddr, std::net::SocketAddr) {
    (echo("legacy").await, echo("new").await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_matching_and_headers() {
    let (l, n) = backends().await;
    let p = start(&config_toml(
        l,
        n,
        r#"trusted_proxies = ["127.0.0.1"]"#,
        r#"
[[routes]]
name = "one-task"
methods = ["GET"]
path = "/api/tasks/{task_id}"
target = "new"
[[routes]]
name = "claim"
methods = ["POST"]
path = "/api/tasks/{task_id}/claim"
target = "new"
[[routes]]
name = "tasks"
path = "/api/tasks/*"
target = "legacy"
"#,
    ));
    let a = p.listen_addr();
    let cases = [
        ("GET", "/api/tasks/TASK-1", "one-task", "new"),
        ("POST", "/api/tasks/TASK-1", "tasks", "legacy"),
        ("POST", "/api/tasks/TASK-1/claim", "claim", "new"),
        ("GET", "/api/tasks/TASK-1/claim", "tasks", "legacy"),
        ("GET", "/api/tasks/", "tasks", "legacy"),
        ("GET", "/api/tasks", "tasks", "legacy"),
        ("GET", "/api/tasks/ready?x=1", "one-task", "new"),
        ("GET", "/elsewhere", "_unmatched", "legacy"),
    ];
    for (m, path, route, backend) in cases {
        let r = send(a, m, path, &[], "").await;
        assert_eq!(r.status, 200, "{m} {path}");
        assert_eq!(r.header("x-ficus-route"), route, "{m} {path}");
        assert_eq!(r.header("x-ficus-backend"), backend, "{m} {path}");
        let j = r.json();
        assert_eq!(j["backend"], backend, "{m} {path}");
        assert_eq!(j["path"], path, "query string kept");
        assert!(
            r.headers.get("x-hop").is_none(),
            "hop-by-hop header named by Connection removed"
        );
        assert!(!r.header("x-request-id").is_empty());
    }
    // Forwarding headers seen by the backend.
    let r = get(
        a,
        "/api/tasks/7",
        &[
            ("x-forwarded-for", "10.0.0.1"),
            ("connection", "x-drop"),
            ("x-drop", "1"),
            ("x-request-id", "req-42"),
        ],
    )
    .await;
    let h = &r.json()["headers"];
    assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], a.to_string());
    assert_eq!(h["host"], n.to_string(), "Host rewritten to the backend");
    assert_eq!(h["x-request-id"], "req-42");
    assert!(h.get("x-drop").is_none() && h.get("connection").is_none());
    assert_eq!(r.header("x-request-id"), "req-42");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_ratio_stickiness_and_monotone_rollout() {
    let (l, n) = backends().await;
    let p = start(&config_toml(
        l,
        n,
        "",
        r#"
[[routes]]
name = "reads"
path = "/api/tasks/*"
percent = 25.0
sticky = "header:X-User-Id"
"#,
    ));
    let mut c = Conn::connect(p.listen_addr()).await;
    let keys = 10_000;
    let mut new_at_25 = vec![false; keys];
    for (k, slot) in new_at_25.iter_mut().enumerate() {
        let key = format!("user-{k}");
        let r = c.get("/api/tasks/1", &[("x-user-id", &key)]).await;
        *slot = r.header("x-ficus-backend") == "new";
        // The proxy's decision is the documented bucket rule.
        assert_eq!(
            *slot,
            ficus_proxy::split::bucket(key.as_bytes()) < 2500,
            "{key}"
        );
    }
    let share = new_at_25.iter().filter(|b| **b).count() as f64 / keys as f64 * 100.0;
    assert!((share - 25.0).abs() <= 2.0, "share to new at 25%: {share}");

    // Sticky: the same key always lands on the same side.
    for (k, &was_new) in new_at_25.iter().enumerate().take(50) {
        let key = format!("user-{k}");
        for _ in 0..5 {
            let r = c.get("/api/tasks/1", &[("x-user-id", &key)]).await;
            assert_eq!(r.header("x-ficus-backend") == "new", was_new);
        }
    }
    // Missing key: default policy is legacy, and it is counted.
    for _ in 0..20 {
        assert_eq!(
            c.get("/api/tasks/1", &[]).await.header("x-ficus-backend"),
            "legacy"
        );
    }
    assert_eq!(
        metric(
            &p.metrics_text(),
            r#"ficus_sticky_key_missing_total{route="reads"}"#
        ),
        20.0
    );

    // Raising the percentage only adds keys to new; lowering only removes.
    p.set_rollout("reads", 40.0, "test").unwrap();
    let mut at_40 = vec![false; 2000];
    for (k, slot) in at_40.iter_mut().enumerate() {
        let r = c
            .get("/api/tasks/1", &[("x-user-id", &format!("user-{k}"))])
            .await;
        *slot = r.header("x-ficus-backend") == "new";
        assert!(
            !new_at_25[k] || *slot,
            "user-{k} was new at 25% but not at 40%"
        );
    }
    p.set_rollout("reads", 10.0, "test").unwrap();
    for (k, was_new_at_40) in at_40.iter().enumerate() {
        let r = c
            .get("/api/tasks/1", &[("x-user-id", &format!("user-{k}"))])
            .await;
        if r.header("x-ficus-backend") == "new" {
            assert!(
                new_at_25[k] && *was_new_at_40,
                "user-{k} new at 10% but not at 25%/40%"
            );
        }
    }
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_sources_cookie_path_query() {
    let (l, n) = backends().await;
    let p = start(&config_toml(
        l,
        n,
        "",
        r#"
[[routes]]
name = "by-cookie"
path = "/c/*"
percent = 50.0
sticky = "cookie:uid"
[[routes]]
name = "by-path"
path = "/p/{task_id}"
percent = 50.0
sticky = "path:task_id"
[[routes]]
name = "by-query"
path = "/q"
percent = 50.0
sticky = "query:user"
missing_key = "new"
"#,
    ));
    let a = p.listen_addr();
    let mut c = Conn::connect(a).await;
    for k in 0..200 {
        let key = format!("k{k}");
        let expect = if ficus_proxy::split::bucket(key.as_bytes()) < 5000 {
            "new"
        } else {
            "legacy"
        };
        let cookie = format!("a=1; uid={key}; b=2");
        assert_eq!(
            c.get("/c/x", &[("cookie", &cookie)])
                .await
                .header("x-ficus-backend"),
            expect
        );
        assert_eq!(
            c.get(&format!("/p/{key}"), &[])
                .await
                .header("x-ficus-backend"),
            expect
        );
        assert_eq!(
            c.get(&format!("/q?a=1&user={key}"), &[])
                .await
                .header("x-ficus-backend"),
            expect
        );
    }
    assert_eq!(
        c.get("/q?a=1", &[]).await.header("x-ficus-backend"),
        "new",
        "missing_key = new"
    );
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn override_needs_token_and_is_counted() {
    let (l, n) = backends().await;
    let p = start(&config_toml(
        l,
        n,
        "",
        r#"
[[routes]]
name = "r"
path = "/*"
target = "legacy"
"#,
    ));
    let a = p.listen_addr();
    let r = get(a, "/x", &[("x-ficus-backend", "new")]).await;
    assert_eq!(r.header("x-ficus-backend"), "legacy", "no token: ignored");
    let r = get(
        a,
        "/x",
        &[
            ("x-ficus-backend", "new"),
            ("x-ficus-override-token", "nope"),
        ],
    )
    .await;
    assert_eq!(
        r.header("x-ficus-backend"),
        "legacy",
        "wrong token: ignored"
    );
    let r = get(
        a,
        "/x",
        &[
            ("x-ficus-backend", "new"),
            ("x-ficus-override-token", OVERRIDE),
        ],
    )
    .await;
    assert_eq!(r.header("x-ficus-backend"), "new", "valid token: honoured");
    let h = &r.json()["headers"];
    assert!(
        h.get("x-ficus-override-token").is_none() && h.get("x-ficus-backend").is_none(),
        "override headers not forwarded"
    );
    let m = p.metrics_text();
    assert_eq!(
        metric(
            &m,
            r#"ficus_override_attempts_total{result="rejected",route="r"}"#
        ),
        2.0
    );
    assert_eq!(
        metric(
            &m,
            r#"ficus_override_attempts_total{result="honoured",route="r"}"#
        ),
        1.0
    );
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_auth_matrix_and_api() {
    let (l, n) = backends().await;
    let p = start(&config_toml(
        l,
        n,
        "",
        r#"
[[routes]]
name = "a"
path = "/a/*"
percent = 10.0
[[routes]]
name = "b"
path = "/b/*"
percent = 20.0
"#,
    ));
    let adm = p.admin_addr();
    let put = r#"{"percent": 30}"#;
    let bearer = format!("Bearer {TOKEN}");
    // (method, path, body) x (no auth → 401, wrong → 403, right → 200)
    let mutations = [
        ("PUT", "/admin/routes/a/rollout", put),
        ("DELETE", "/admin/routes/a/rollout", ""),
        ("POST", "/admin/rollback", r#"{"route": "b"}"#),
        ("POST", "/admin/reload", ""),
    ];
    for (m, path, body) in mutations {
        assert_eq!(
            send(adm, m, path, &[], body).await.status,
            401,
            "{m} {path} without token"
        );
        assert_eq!(
            send(adm, m, path, &[("authorization", "Bearer wrong")], body)
                .await
                .status,
            403,
            "{m} {path} wrong token"
        );
        assert_eq!(
            send(adm, m, path, &[("authorization", &bearer)], body)
                .await
                .status,
            200,
            "{m} {path} right token"
        );
    }
    // Reads need no token.
    for path in [
        "/admin/routes",
        "/admin/audit",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert_eq!(get(adm, path, &[]).await.status, 200, "{path}");
    }
    let auth = [
        ("authorization", bearer.as_str()),
        ("x-ficus-actor", "alice"),
    ];
    assert_eq!(
        send(adm, "PUT", "/admin/routes/nope/rollout", &auth, put)
            .await
            .status,
        404
    );
    assert_eq!(
        send(
            adm,
            "PUT",
            "/admin/routes/a/rollout",
            &auth,
            r#"{"percent": 101}"#
        )
        .await
        .status,
        400
    );
    assert_eq!(
        send(
            adm,
            "PUT",
            "/admin/routes/a/rollout",
            &auth,
            r#"{"percent": 1.234}"#
        )
        .await
        .status,
        400
    );
    assert_eq!(
        send(adm, "PUT", "/admin/routes/a/rollout", &auth, "not json")
            .await
            .status,
        400
    );
    let r = send(
        adm,
        "PUT",
        "/admin/routes/a/rollout",
        &auth,
        r#"{"percent": 55.5}"#,
    )
    .await;
    assert_eq!(r.json()["to"], 55.5);
    let routes = get(adm, "/admin/routes", &[]).await.json();
    let a = &routes["routes"][0];
    assert_eq!(
        (
            a["name"].as_str(),
            a["percent"].as_f64(),
            a["config_percent"].as_f64()
        ),
        (Some("a"), Some(55.5), Some(10.0))
    );
    assert_eq!(a["source"], "runtime");
    assert_eq!(a["updated_by"], "alice");
    assert_eq!(a["sticky"], "random");

    // Rollback of everything at once.
    let r = send(adm, "POST", "/admin/rollback", &auth, "{}").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["rolled_back"].as_array().unwrap().len(), 2);
    for r in p.routes().unwrap() {
        assert_eq!(r.percent, 0.0, "{}", r.name);
    }
    let audit = get(adm, "/admin/audit?limit=2", &[]).await.json();
    assert_eq!(audit["audit"].as_array().unwrap().len(), 2);
    assert_eq!(audit["audit"][0]["action"], "rollback");
    assert_eq!(audit["audit"][0]["actor"], "alice");
    let m = p.metrics_text();
    assert_eq!(metric(&m, "ficus_rollbacks_total"), 2.0);
    assert_eq!(metric(&m, r#"ficus_rollout_percent{route="a"}"#), 0.0);
    // Traffic follows at once: all legacy.
    for k in 0..50 {
        let r = get(p.listen_addr(), "/a/x", &[("x", &k.to_string())]).await;
        assert_eq!(r.header("x-ficus-backend"), "legacy");
    }
    assert_eq!(get(adm, "/nope", &[]).await.status, 404);
    assert_eq!(
        send(adm, "POST", "/admin/routes", &[], "").await.status,
        405
    );
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_survives_restart_and_beats_reload() {
    let (l, n) = backends().await;
    let dir = testkit::temp_dir("proxy-persist");
    let state = dir.path().join("state.db");
    let cfg_path = dir.path().join("ficus.toml");
    let routes = |pct: f64| {
        format!("[[routes]]\nname = \"r\"\npath = \"/*\"\npercent = {pct:.1}\nsticky = \"header:x-user\"\n")
    };
    let extra = format!("state = {:?}", state.to_str().unwrap());
    let write = |pct: f64| {
        std::fs::write(
            &cfg_path,
            config_toml(l, n, "", &routes(pct))
                .replace("state = \":memory:\"\n", "")
                .replace("[proxy]\n", &format!("[proxy]\n{extra}\n")),
        )
        .unwrap()
    };
    write(25.0);
    let load = || {
        let mut c = Config::from_file(&cfg_path).unwrap();
        c.proxy.admin_token = Some(Secret(TOKEN.into()));
        c
    };
    let p = Proxy::start(load(), Some(cfg_path.clone())).unwrap();
    p.set_rollout("r", 40.0, "alice").unwrap();
    p.shutdown().await;

    // Restart: the operator's 40% is back, marked as run-time.
    let p = Proxy::start(load(), Some(cfg_path.clone())).unwrap();
    let r = &p.routes().unwrap()[0];
    assert_eq!(
        (r.percent, r.config_percent, r.source.as_str()),
        (40.0, 25.0, "runtime")
    );
    let new_share = {
        let mut c = Conn::connect(p.listen_addr()).await;
        let mut k = 0;
        for i in 0..2000 {
            if c.get("/x", &[("x-user", &format!("u{i}"))])
                .await
                .header("x-ficus-backend")
                == "new"
            {
                k += 1;
            }
        }
        k as f64 / 20.0
    };
    assert!((new_share - 40.0).abs() < 4.0, "{new_share}");

    // The file moves to 60%: the run-time 40% stays in force and the file's value is shown.
    write(60.0);
    let rep = p.reload().unwrap().expect("file changed");
    assert_eq!(rep.shadowed_by_runtime, vec!["r".to_string()]);
    let r = &p.routes().unwrap()[0];
    assert_eq!(
        (r.percent, r.config_percent, r.source.as_str()),
        (40.0, 60.0, "runtime")
    );
    // Reset hands the route back to the file.
    p.reset_rollout("r", "alice").unwrap();
    let r = &p.routes().unwrap()[0];
    assert_eq!((r.percent, r.source.as_str()), (60.0, "config"));
    // A file change without a run-time value applies and is audited.
    write(70.0);
    p.reload().unwrap();
    assert_eq!(p.routes().unwrap()[0].percent, 70.0);
    let audit = p.audit(10).unwrap();
    assert_eq!(
        (
            audit[0].action.as_str(),
            audit[0].actor.as_str(),
            audit[0].from_bp,
            audit[0].to_bp
        ),
        ("config", "config-reload", 6000, 7000)
    );
    assert_eq!(audit[1].action, "reset");
    assert_eq!(audit.last().unwrap().action, "set");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reload_is_rejected_and_old_config_stays() {
    let (l, n) = backends().await;
    let dir = testkit::temp_dir("proxy-reload");
    let cfg_path = dir.path().join("ficus.toml");
    let good = config_toml(
        l,
        n,
        "",
        "[[routes]]\nname = \"r\"\npath = \"/*\"\ntarget = \"new\"\n",
    )
    .replace("watch_config = false", "watch_config = true");
    std::fs::write(&cfg_path, &good).unwrap();
    let p = Proxy::start(
        Config::from_file(&cfg_path).unwrap(),
        Some(cfg_path.clone()),
    )
    .unwrap();
    let a = p.listen_addr();
    assert_eq!(get(a, "/x", &[]).await.header("x-ficus-backend"), "new");

    // Invalid: percent out of range. The error names file, line and field.
    let bad = good.replace("target = \"new\"", "target = \"split\"\npercent = 150");
    std::fs::write(&cfg_path, &bad).unwrap();
    let err = p.reload().unwrap_err().to_string();
    let line = bad.lines().position(|l| l.starts_with("percent")).unwrap() + 1;
    assert!(
        err.contains(&format!("ficus.toml:{line}: routes[0].percent")),
        "{err}"
    );
    assert_eq!(
        get(a, "/x", &[]).await.header("x-ficus-backend"),
        "new",
        "old config in force"
    );
    // Unknown key: rejected too.
    std::fs::write(
        &cfg_path,
        good.replace("target = \"new\"", "target = \"new\"\ncolour = \"red\""),
    )
    .unwrap();
    let err = p.reload().unwrap_err().to_string();
    assert!(err.contains("colour"), "{err}");
    let m = p.metrics_text();
    assert!(
        metric(&m, r#"ficus_config_reloads_total{result="failure"}"#) >= 2.0,
        "{m}"
    );

    // A valid change made on disk is picked up by the file watcher.
    std::fs::write(
        &cfg_path,
        good.replace("target = \"new\"", "target = \"legacy\""),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if get(a, "/x", &[]).await.header("x-ficus-backend") == "legacy" {
            break;
        }
        assert!(Instant::now() < deadline, "file change not picked up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        metric(
            &p.metrics_text(),
            r#"ficus_config_reloads_total{result="success"}"#
        ) >= 1.0
    );
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_down_is_502_and_slow_is_504() {
    let dead = free_addr();
    let n = echo("new").await;
    let toml = config_toml(
        dead,
        n,
        "",
        "[[routes]]\nname = \"slow\"\npath = \"/slow\"\ntarget = \"new\"\n",
    )
    .replace("timeout_ms = 2000", "timeout_ms = 300");
    let p = start(&toml);
    let a = p.listen_addr();
    let r = get(a, "/anything", &[]).await;
    assert_eq!(r.status, 502);
    let j = r.json();
    assert_eq!(
        (
            j["error"].as_str(),
            j["route"].as_str(),
            j["backend"].as_str()
        ),
        (Some("connect"), Some("_unmatched"), Some("legacy"))
    );
    assert_eq!(r.header("content-type"), "application/json");
    // The same slow request sent straight to the backend at the same time is the yardstick:
    // with its 300 ms timeout the proxy must give up (504) before the backend answers.
    let r = tokio::select! {
        biased;
        r = get(a, "/slow?ms=3000", &[]) => r,
        _ = get(n, "/slow?ms=3000", &[]) => panic!("the backend answered before the proxy timed out"),
    };
    assert_eq!(r.status, 504);
    let j = r.json();
    assert_eq!(
        (
            j["error"].as_str(),
            j["route"].as_str(),
            j["backend"].as_str()
        ),
        (Some("timeout"), Some("slow"), Some("new"))
    );
    let m = p.metrics_text();
    assert_eq!(
        metric(
            &m,
            r#"ficus_upstream_errors_total{backend="legacy",kind="connect",route="_unmatched"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            r#"ficus_upstream_errors_total{backend="new",kind="timeout",route="slow"}"#
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            r#"ficus_requests_total{backend="new",class="5xx",route="slow"}"#
        ),
        1.0
    );
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_body_limit_is_413() {
    let (l, n) = backends().await;
    let p = start(&config_toml(l, n, "max_request_bytes = 1000", ""));
    let a = p.listen_addr();
    let r = send(a, "POST", "/upload", &[], &"x".repeat(1000)).await;
    assert_eq!((r.status, r.json()["bytes"].as_u64()), (200, Some(1000)));
    let r = send(a, "POST", "/upload", &[], &"x".repeat(1001)).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"], "request_too_large");
    // Chunked (no Content-Length): counted while streaming.
    let mut c = Conn::connect(a).await;
    let req = http::Request::builder()
        .method("POST")
        .uri("/upload")
        .header("host", "x")
        .body(http_body_util::BodyExt::boxed(Generated::new(50_000)))
        .unwrap();
    let r = c.send(req).await;
    assert_eq!(r.status, 413, "{:?}", r.body);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_drains_in_flight() {
    let (l, n) = backends().await;
    let p = start(&config_toml(l, n, "", ""));
    let a = p.listen_addr();
    let adm = p.admin_addr();
    let sent = Instant::now();
    let inflight = tokio::spawn(async move { get(a, "/slow?ms=700", &[]).await });
    // Shut down only once the request is in the proxy (not merely sent).
    while metric(&p.metrics_text(), "ficus_inflight_requests") < 1.0 {
        assert!(!inflight.is_finished(), "the request ended before shutdown");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    p.shutdown().await;
    // Shutdown returned only after the backend answered, which it does 700 ms after the
    // request arrived, itself after `sent`.
    assert!(
        sent.elapsed() >= Duration::from_millis(700),
        "shutdown returned before the in-flight request was answered"
    );
    let r = inflight.await.unwrap();
    assert_eq!(r.status, 200, "in-flight request completed");
    assert!(
        tokio::net::TcpStream::connect(a).await.is_err(),
        "listener closed"
    );
    assert!(
        tokio::net::TcpStream::connect(adm).await.is_err(),
        "admin closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_is_passed_through() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (l, n) = backends().await;
    let p = start(&config_toml(
        l,
        n,
        "",
        "[[routes]]\nname = \"ws\"\npath = \"/ws\"\ntarget = \"new\"\n",
    ));
    let mut s = tokio::net::TcpStream::connect(p.listen_addr())
        .await
        .unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let k = s.read(&mut buf).await.unwrap();
        assert!(k > 0);
        got.extend_from_slice(&buf[..k]);
    }
    let head = String::from_utf8_lossy(&got).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("upgrade: echo") && head.contains("x-ficus-backend: new"),
        "{head}"
    );
    s.write_all(b"ping through the tunnel").await.unwrap();
    let mut echo = vec![0u8; 23];
    s.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"ping through the tunnel");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_exposition_passes_promtool() {
    let (l, n) = backends().await;
    let p = start(&config_toml(
        l,
        n,
        "",
        "[[routes]]\nname = \"r\"\npath = \"/*\"\npercent = 50.0\nsticky = \"header:u\"\n",
    ));
    for i in 0..20 {
        get(p.listen_addr(), "/x", &[("u", &i.to_string())]).await;
    }
    let text = get(p.admin_addr(), "/metrics", &[]).await;
    assert!(text.header("content-type").starts_with("text/plain"));
    let body = String::from_utf8(text.body.to_vec()).unwrap();
    for name in [
        "ficus_requests_total",
        "ficus_request_duration_seconds_bucket",
        "ficus_upstream_errors_total",
        "ficus_rollout_percent",
        "ficus_rollbacks_total",
        "ficus_override_attempts_total",
        "ficus_config_reloads_total",
    ] {
        assert!(body.contains(name), "{name} missing");
    }
    let sum = metric(
        &body,
        r#"ficus_requests_total{backend="legacy",class="2xx",route="r"}"#,
    ) + metric(
        &body,
        r#"ficus_requests_total{backend="new",class="2xx",route="r"}"#,
    );
    assert_eq!(sum, 20.0);
    testkit::metrics::promtool_check(&body);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_in_one_process_keep_separate_metrics() {
    let (l, n) = backends().await;
    let p1 = start(&config_toml(l, n, "", ""));
    let p2 = start(&config_toml(l, n, "", ""));
    for _ in 0..3 {
        get(p1.listen_addr(), "/x", &[]).await;
    }
    let series = r#"ficus_requests_total{backend="legacy",class="2xx",route="_unmatched"}"#;
    assert_eq!(metric(&p1.metrics_text(), series), 3.0);
    assert_eq!(metric(&p2.metrics_text(), series), 0.0);
    p1.shutdown().await;
    p2.shutdown().await;
}

#[test]
fn config_errors_name_field_and_line() {
    let base = "[backends.legacy]\nurl = \"http://127.0.0.1:1\"\n[backends.new]\nurl = \"http://127.0.0.1:2\"\n";
    let cases = [
        (
            "[[routes]]\nname = \"r\"\npath = \"/x\"\npercent = 12.345\n",
            8,
            "routes[0].percent",
        ),
        (
            "[[routes]]\nname = \"r\"\npath = \"x\"\n",
            7,
            "routes[0].path",
        ),
        (
            "[[routes]]\nname = \"r\"\npath = \"/x\"\nsticky = \"path:id\"\n",
            8,
            "routes[0].sticky",
        ),
        (
            "[[routes]]\nname = \"r\"\npath = \"/x\"\ntarget = \"both\"\n",
            8,
            "routes[0].target",
        ),
        (
            "[[routes]]\nname = \"r\"\npath = \"/x\"\n[[routes]]\nname = \"r\"\npath = \"/y\"\n",
            9,
            "routes[1].name",
        ),
        (
            "[[routes]]\nname = \"r\"\npath = \"/x\"\nmethods = [\"GE T\"]\n",
            8,
            "routes[0].methods",
        ),
        (
            "[[routes]]\nname = \"r\"\npath = \"/x\"\nweight = 3\n",
            8,
            "weight",
        ),
        (
            "[[routes]]\nname = \"r\"\npath = \"/x\"\npercent = \"ten\"\n",
            8,
            "percent",
        ),
    ];
    for (routes, line, field) in cases {
        let e = Config::from_toml_str(&format!("{base}{routes}")).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (Some(line), field), "{e}");
    }
    let e = Config::from_toml_str(
        "[backends.legacy]\nurl = \"ftp://x:1\"\n[backends.new]\nurl = \"http://x:2\"\n",
    )
    .unwrap_err();
    assert_eq!(
        (e.line, e.field.as_str()),
        (Some(2), "backends.legacy.url"),
        "{e}"
    );
    let e = Config::from_toml_str("[backends.legacy]\nurl = \"http://x:1\"\n").unwrap_err();
    assert_eq!(e.field, "backends.new", "{e}");
}

#[allow(dead_code)]
fn unused(_: Bytes) {}

#[test]
fn shipped_example_config_is_valid() {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/ficus.toml");
    let c = Config::from_file(&p).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.route("tasks-read").is_some());
    c.validate().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_proxy_on_a_taken_port_fails_to_start() {
    let (l, n) = backends().await;
    let p1 = start(&config_toml(l, n, "", ""));
    let taken = p1.listen_addr();
    let toml = config_toml(l, n, "", "").replacen(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"{taken}\""),
        1,
    );
    match Proxy::start(Config::from_toml_str(&toml).unwrap(), None) {
        Err(ficus_proxy::ProxyError::Bind { addr, .. }) => assert_eq!(addr, taken),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("joined a port another proxy serves (SO_REUSEPORT) instead of failing"),
    }
    p1.shutdown().await;
}
