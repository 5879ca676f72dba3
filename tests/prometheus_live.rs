//! A real Prometheus (Debian `prometheus`, `/usr/bin/prometheus`) scrapes a running ficus proxy
//! (traffic to both backends, 5xx, an upstream timeout, an override attempt, a missing sticky
//! key, rollout changes and a rollback; shadow mode comparing the two sides, a dual write that
//! succeeds on one side only, a guard that rolls a failing route back) and a migrator's metrics
//! endpoint (a run, a verify and one `migrate watch` pass over the proxy's dual writes) (a real run and
//! verify into PostgreSQL, with a quarantined row), every second, with the shipped rules
//! loaded. Then every dashboard panel query and annotation of `dashboards/grafana/ficus.json`
//! and every recording and alerting rule of `dashboards/prometheus/rules.yml` (as Prometheus
//! itself parsed them, from `/api/v1/rules`) is evaluated through `/api/v1/query`: any query
//! error fails, and so does a panel that returns no series — except the panels listed in
//! [`NOT_PRODUCED`], whose metrics this test does not produce, each with the reason.
//!
//! Then the same Prometheus serves `dashboards/` under `/user/` (`--web.user-assets`), and the
//! dashboard preview (`dashboards/preview/`, no Grafana) is opened in headless Chromium by
//! `tests/browser/dashboard_preview.mjs` (playwright-core): every panel must be drawn from the
//! live data, none empty or errored; the full-page screenshot goes to
//! `<target>/browser-test/dashboard-preview.png` (the README's `docs/dashboard-preview.png`).
//!
//! Skipped, loudly, only when Prometheus is not installed; the browser part, loudly, only when
//! `node` or Chromium is not installed.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use testkit::backend::{serve_async, Received};
use testkit::browser;
use testkit::{send, ProxyToml};

const TOKEN: &str = "prom-live-admin";
const ROUTE: &str = "tasks";

/// Dashboard panels (by title) allowed to return no series here, and why. Empty now that
/// every component is merged; a panel whose metrics this test cannot produce goes here with
/// the reason, so the gap stays visible.
const NOT_PRODUCED: &[(&str, &str)] = &[];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn prometheus_bin() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("FICUS_PROMETHEUS") {
        return Some(PathBuf::from(p));
    }
    let p = PathBuf::from("/usr/bin/prometheus");
    if p.exists() {
        return Some(p);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("prometheus"))
            .find(|p| p.is_file())
    })
}

/// A backend: `.../boom` answers 500, `/api/tasks/slow` waits 1.5 s, a claim of task 9 fails
/// on legacy only (a divergent dual write), anything else 200 with a body naming the backend
/// (so shadow comparisons mismatch).
async fn backend(name: &'static str) -> SocketAddr {
    serve_async(move |req: Received, _| async move {
        let path = req.path().to_string();
        let status = match path.as_str() {
            p if p.ends_with("/boom") => 500,
            "/api/tasks/slow" => {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                200
            }
            "/api/tasks/TASK-9/claim" if name == "legacy" => 500,
            _ => 200,
        };
        let body = format!("{{\"backend\":\"{name}\",\"path\":\"{path}\"}}");
        (status, vec![], body)
    })
    .await
    .addr
}

fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

struct Prom {
    child: std::process::Child,
    addr: SocketAddr,
}
impl Drop for Prom {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prom {
    async fn get(&self, path: &str) -> Value {
        let r = send(self.addr, "GET", path, &[], "").await;
        let (status, body) = (r.status, r.body);
        serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "prometheus {path}: HTTP {status}, not JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        })
    }

    /// Evaluates `expr` now: `Ok(number of series)` or `Err(error message)`.
    async fn query(&self, expr: &str) -> Result<usize, String> {
        let v = self
            .get(&format!("/api/v1/query?query={}", urlencode(expr)))
            .await;
        if v["status"] != "success" {
            return Err(format!("{}: {}", v["errorType"], v["error"]));
        }
        Ok(match &v["data"]["result"] {
            Value::Array(a) => a.len(),
            // Scalars and strings are one value.
            Value::Null => 0,
            _ => 1,
        })
    }
}

/// Every panel (rows' nested panels included) with its title and exprs.
fn panels(d: &Value) -> Vec<(String, Vec<String>)> {
    fn walk(ps: &Value, out: &mut Vec<(String, Vec<String>)>) {
        for p in ps.as_array().into_iter().flatten() {
            let exprs: Vec<String> = p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["expr"].as_str().map(str::to_string))
                .collect();
            if !exprs.is_empty() {
                out.push((p["title"].as_str().unwrap_or("?").to_string(), exprs));
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&d["panels"], &mut out);
    out
}

fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("${route}", ".*")
        .replace("$route", ".*")
}

/// Starts a proxy and drives traffic of every kind the proxy panels show.
async fn run_proxy(dir: &Path) -> ficus_proxy::ProxyHandle {
    let legacy = backend("legacy").await;
    let new = backend("new").await;
    let routes = format!(
        r#"
[[routes]]
name = "claims"
methods = ["POST"]
path = "/api/tasks/{{id}}/claim"
percent = 0.0
sticky = "path:id"
dual_write = true
key = "path:id"
[routes.shadow]
sample = 1.0
[[routes]]
name = "{ROUTE}"
path = "/api/tasks/*"
percent = 50.0
sticky = "header:X-User-Id"
[routes.shadow]
sample = 1.0
[[routes]]
name = "guarded"
path = "/api/guarded/*"
target = "new"
[routes.guard]
max_error_rate = 0.5
window_s = 60
min_requests = 5
[[routes]]
name = "planned"
path = "/api/planned/*"
percent = 10.0
sticky = "header:X-User-Id"
[routes.shadow]
sample = 0.0
[routes.plan]
steps = [10, 50, 100]
hold = "1s"
min_requests = 5
preflight = "1s"
max_error_rate = 0.5
max_mismatch_rate = 0.5
on_fail = "pause"
"#
    );
    let toml = ProxyToml::new(&legacy, &new)
        .state_file(&dir.join("state.db"))
        .workers(1)
        .new_backend("timeout_ms = 500")
        .shadow(&dir.join("shadow.db"), "timeout_ms = 1000")
        .routes(&routes)
        .to_string();
    let mut c = ficus_proxy::Config::from_toml_str(&toml).unwrap();
    c.proxy.admin_token = Some(ficus_proxy::config::Secret(TOKEN.into()));
    let p = ficus_proxy::Proxy::start(c, None).unwrap();
    // A step plan: held at 10 %, then the pre-flight of [10, 50) finds the two sides differ
    // (the backends name themselves) and pauses it — every plan panel has data.
    p.plan("planned", ficus_proxy::PlanCommand::Start, "prom-live")
        .unwrap();
    p
}

async fn traffic(p: &ficus_proxy::ProxyHandle, round: usize) {
    let a = p.listen_addr();
    for i in 0..60 {
        let user = format!("user-{i}");
        send(
            a,
            "GET",
            "/api/tasks/1",
            &[("x-user-id", user.as_str())],
            "",
        )
        .await;
    }
    // 5xx from both backends (users on either side of the split).
    for i in 0..20 {
        let user = format!("user-{i}");
        send(
            a,
            "GET",
            "/api/tasks/boom",
            &[("x-user-id", user.as_str())],
            "",
        )
        .await;
    }
    // The planned route: its hold's evidence, then its pre-flight cohort's.
    for i in 0..60 {
        let user = format!("user-{i}");
        send(
            a,
            "GET",
            "/api/planned/1",
            &[("x-user-id", user.as_str())],
            "",
        )
        .await;
    }
    p.flush_shadow().await;
    p.check_plans();
    // No sticky key (goes legacy by default), an override without a valid token.
    send(a, "GET", "/api/tasks/2", &[], "").await;
    send(a, "GET", "/api/tasks/3", &[("x-ficus-backend", "new")], "").await;
    // Dual writes: TASK-9's claim fails on legacy only.
    for id in ["TASK-8", "TASK-9"] {
        send(a, "POST", &format!("/api/tasks/{id}/claim"), &[], "{}").await;
    }
    if round == 0 {
        // The new side of "guarded" fails every request: its guard rolls it back.
        for _ in 0..10 {
            send(a, "GET", "/api/guarded/boom", &[], "").await;
        }
        // An upstream timeout on the new side (504): find a user the split sends there.
        for i in 0..40 {
            let user = format!("user-{i}");
            let s = send(
                a,
                "GET",
                "/api/tasks/slow",
                &[("x-user-id", user.as_str())],
                "",
            )
            .await
            .status;
            if s == 504 {
                break;
            }
        }
    }
}

struct Migrator {
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
    metrics: Arc<ficus_migrator::Metrics>,
    source: PathBuf,
}

async fn run_migrator(dir: &Path, db_url: &str) -> Migrator {
    let src = testkit::sqlite::create(
        dir,
        "app.db",
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, task_id TEXT NOT NULL UNIQUE, title TEXT);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
         INSERT INTO tasks SELECT i, 'TASK-' || i,
             CASE WHEN i = 7 THEN CAST(x'ff' AS TEXT) ELSE 'title ' || i END FROM n;",
    );
    let metrics = Arc::new(ficus_migrator::Metrics::new().unwrap());
    // The CLI serves --metrics-addr only while a command runs; serve the same registry here
    // for as long as the test needs it.
    let (addr, server) =
        ficus_proxy::serve_metrics("127.0.0.1:0".parse().unwrap(), metrics.registry.clone())
            .await
            .unwrap();
    let obs = Arc::new(ficus_migrator::Observer::new(metrics.clone(), true));
    let plan =
        ficus_migrator::Plan::build(&src, &ficus_migrator::MigrationConfig::default(), "public")
            .unwrap();
    ficus_migrator::run(
        &plan,
        &src,
        db_url,
        &ficus_migrator::RunOptions::default(),
        &obs,
    )
    .await
    .unwrap();
    ficus_migrator::verify(
        &plan,
        &src,
        db_url,
        &ficus_migrator::VerifyOptions::default(),
        &obs,
    )
    .await
    .unwrap();
    Migrator {
        addr,
        server,
        metrics,
        source: src,
    }
}

/// One `migrate watch` pass (the CLI's `--once`) over the proxy's dual writes, its drift
/// metrics in the migrator's registry.
async fn watch_once(m: &Migrator, db_url: &str, proxy_state: &Path) {
    let mut cfg = ficus_migrator::MigrationConfig::default();
    cfg.watch.routes.insert(
        "claims".into(),
        ficus_migrator::WatchRoute {
            table: Some("tasks".into()),
            column: Some("task_id".into()),
        },
    );
    let mut opts = ficus_migrator::WatchOptions::new(&m.source, db_url);
    opts.proxy_state = Some(proxy_state.to_path_buf());
    opts.once = true;
    opts.settle = Duration::from_millis(300);
    let mut events = Vec::new();
    let summary = ficus_migrator::watch(&opts, &cfg, &m.metrics, std::future::pending(), |e| {
        events.push(e.text())
    })
    .await
    .unwrap();
    println!("migrate watch --once: {}", summary.text().trim());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_rules_against_a_live_prometheus() {
    let Some(prometheus) = prometheus_bin() else {
        eprintln!(
            "\n\n*** SKIPPED dashboard_and_rules_against_a_live_prometheus: prometheus is not \
             installed (apt-get install prometheus; .ci/run does) ***\n\n"
        );
        return;
    };
    let dir = testkit::temp_dir("prom-live");
    let db = testkit::pg::fresh_database("prom_live").unwrap();
    let proxy = run_proxy(dir.path()).await;
    let mig = run_migrator(dir.path(), &db.url).await;
    let mig_addr = mig.addr;

    let port = testkit::free_addr().port();
    let rules = repo().join("dashboards/prometheus/rules.yml");
    let cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules:?}\n\
             scrape_configs:\n\
             \x20 - job_name: ficus\n    static_configs: [{{targets: [\"{admin}\"]}}]\n\
             \x20 - job_name: ficus-migrate\n    static_configs: [{{targets: [\"{mig_addr}\"]}}]\n",
            rules = rules.display().to_string(),
            admin = proxy.admin_addr(),
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let child = std::process::Command::new(&prometheus)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        // The dashboard preview: /user/preview/ and /user/grafana/ficus.json.
        .arg(format!(
            "--web.user-assets={}",
            repo().join("dashboards").display()
        ))
        .arg("--log.level=warn")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("prometheus starts");
    let prom = Prom {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    };

    // Ready, and the rules file loaded (a broken file would stop it here).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if tokio::net::TcpStream::connect(prom.addr).await.is_ok() {
            let s = send(prom.addr, "GET", "/-/ready", &[], "").await.status;
            if s == 200 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "prometheus not ready: {}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Scraped before anything happens, so every counter's first increase is seen.
    let deadline = Instant::now() + Duration::from_secs(30);
    while prom
        .query(r#"count_over_time(up{job="ficus"}[1m]) >= 2"#)
        .await
        .unwrap()
        == 0
    {
        assert!(Instant::now() < deadline, "proxy never scraped");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Where the dashboard preview's time range starts: about the first scrape.
    let started = unix_now() - 2;

    // Traffic with rollout changes in between, over several scrapes.
    let admin = proxy.admin_addr();
    let auth = format!("Bearer {TOKEN}");
    let h = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    traffic(&proxy, 0).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = send(
        admin,
        "PUT",
        &format!("/admin/routes/{ROUTE}/rollout"),
        &h,
        r#"{"percent": 75}"#,
    )
    .await
    .status;
    assert_eq!(s, 200);
    traffic(&proxy, 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = send(admin, "POST", "/admin/rollback", &h, "{}")
        .await
        .status;
    assert_eq!(s, 200);
    traffic(&proxy, 2).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = send(
        admin,
        "PUT",
        &format!("/admin/routes/{ROUTE}/rollout"),
        &h,
        r#"{"percent": 50}"#,
    )
    .await
    .status;
    assert_eq!(s, 200);
    traffic(&proxy, 3).await;
    tokio::time::timeout(Duration::from_secs(20), proxy.flush_shadow())
        .await
        .expect("shadow work flushed");
    let audit = proxy.audit(50).unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.route == "guarded" && a.actor == "guard"),
        "the guard rolled \"guarded\" back: {audit:?}"
    );
    watch_once(&mig, &db.url, &dir.path().join("state.db")).await;

    // Both targets up and scraped a few times since the last change.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = prom
            .query(r#"count_over_time(up{job=~"ficus|ficus-migrate"}[1m]) >= 4"#)
            .await
            .unwrap();
        let down = prom.query("up == 0").await.unwrap();
        if n == 2 && down == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "targets not scraped: {:?}",
            prom.get("/api/v1/targets").await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut failures: Vec<String> = Vec::new();
    let mut evaluated = 0;

    // Dashboard panels.
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("dashboards/grafana/ficus.json")).unwrap(),
    )
    .unwrap();
    let excused: BTreeSet<&str> = NOT_PRODUCED.iter().map(|(t, _)| *t).collect();
    let mut empty_excused = Vec::new();
    for (title, exprs) in panels(&dash) {
        let mut series = 0;
        for e in &exprs {
            evaluated += 1;
            match prom.query(&substitute(e)).await {
                Ok(n) => series += n,
                Err(m) => failures.push(format!("panel {title:?}: query error {m} in {e}")),
            }
        }
        match (series, excused.contains(title.as_str())) {
            (0, false) => failures.push(format!("panel {title:?} returned no series: {exprs:?}")),
            (0, true) => empty_excused.push(title),
            (_, true) => {
                println!("NOTE: panel {title:?} now returns series; remove it from NOT_PRODUCED")
            }
            (_, false) => {}
        }
    }
    // Annotations.
    for a in dash["annotations"]["list"].as_array().into_iter().flatten() {
        let (Some(name), Some(e)) = (a["name"].as_str(), a["expr"].as_str()) else {
            continue;
        };
        evaluated += 1;
        match prom.query(&substitute(e)).await {
            Ok(0) => failures.push(format!(
                "annotation {name:?} returned no series after rollout changes and a guard rollback: {e}"
            )),
            Ok(_) => {}
            Err(m) => failures.push(format!("annotation {name:?}: query error {m} in {e}")),
        }
    }
    // Rules, as Prometheus loaded them.
    let rules = prom.get("/api/v1/rules").await;
    let groups = rules["data"]["groups"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!groups.is_empty(), "no rule group loaded: {rules}");
    let mut alerts = 0;
    let mut records = 0;
    for g in &groups {
        for r in g["rules"].as_array().into_iter().flatten() {
            let name = r["name"].as_str().unwrap_or("?");
            let q = r["query"].as_str().unwrap_or("");
            if r["type"] == "alerting" {
                alerts += 1;
            } else {
                records += 1;
            }
            if r["health"] == "err" {
                failures.push(format!("rule {name}: {}", r["lastError"]));
            }
            evaluated += 1;
            if let Err(m) = prom.query(q).await {
                failures.push(format!("rule {name}: query error {m} in {q}"));
            }
        }
    }

    println!(
        "evaluated {evaluated} queries ({} panels, {alerts} alerts, {records} recording rules)",
        panels(&dash).len()
    );
    for (t, why) in NOT_PRODUCED {
        if empty_excused.iter().any(|e| e == t) {
            println!("GAP: panel {t:?} not checked for series: {why}");
        }
    }
    assert!(
        alerts >= 10,
        "expected every alert of rules.yml, got {alerts}"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    dashboard_preview(&prom, started, panels(&dash).len()).await;

    mig.server.abort();
    proxy.shutdown().await;
    drop(prom);
    drop(db);
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The dashboard preview, served by Prometheus itself (same origin as `/api/v1/`), drawn in
/// headless Chromium from the data the test produced since `started` (unix seconds).
async fn dashboard_preview(prom: &Prom, started: u64, panels: usize) {
    // Served: the page, its script and the dashboard it loads (`../grafana/ficus.json`).
    for (path, needle) in [
        ("/user/preview/", "ficus dashboard preview"),
        ("/user/preview/preview.js", "query_range"),
        ("/user/grafana/ficus.json", "\"panels\""),
    ] {
        let r = send(prom.addr, "GET", path, &[], "").await;
        let (s, body) = (r.status, r.body);
        assert_eq!(s, 200, "prometheus --web.user-assets serves {path}");
        assert!(
            String::from_utf8_lossy(&body).contains(needle),
            "{path} is the preview's file"
        );
    }

    let Some(browser) = browser::Browser::find("the dashboard preview in headless Chromium") else {
        return;
    };

    // Several points on every line: the last metrics to appear (the drift gauges of the
    // `migrate watch` pass) scraped a few more times.
    let deadline = Instant::now() + Duration::from_secs(60);
    while prom
        .query("min(count_over_time(ficus_drift_rows[1m])) >= 6")
        .await
        .unwrap()
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "drift metrics not scraped 6 times"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let out = browser::out_dir();
    let base = format!("http://{}", prom.addr);
    browser
        .run(
            "dashboard_preview.mjs",
            &[
                (
                    "FICUS_PREVIEW_URL",
                    format!("{base}/user/preview/?from={started}").into(),
                ),
                ("FICUS_PROMETHEUS_URL", base.into()),
                ("FICUS_PANELS", panels.to_string().into()),
                ("FICUS_MIN_POINTS", "3".into()),
            ],
            "dashboard preview test failed",
        )
        .await;
    assert!(out.join("dashboard-preview.png").exists());
    println!(
        "dashboard preview screenshot: {}",
        out.join("dashboard-preview.png").display()
    );
}
