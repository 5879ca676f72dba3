//! Zero-downtime cut-over and live rollback, end to end: a legacy app on SQLite, the new
//! service on PostgreSQL, a ficus proxy in front of both, `ficus migrate run --follow` keeping
//! PostgreSQL current — and 4 writers at full speed through the proxy while
//! `ficus migrate cutover` moves the write route to new, and later while
//! `ficus migrate rollback --live` moves it back (a row deleted on new is deleted in SQLite).
//! No answer other than the apps' own; the longest write latency within --max-hold-ms; verify
//! clean; every acknowledged write on both sides. Then the failure cases: a drain that cannot
//! finish (follower stopped) releases to legacy and exits 1, and an orchestrator killed mid-hold
//! leaves a hold the proxy ends by itself.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ficus_proxy::config::Secret;
use ficus_proxy::{Config, Proxy, ProxyHandle};
use serde_json::json;
use testkit::{Http, TempDir};

const FICUS: &str = env!("CARGO_BIN_EXE_ficus");
const TOKEN: &str = "cutover-test-token";
const ROUTE: &str = "tasks-write";
const MAX_HOLD_MS: u64 = 2000;

struct World {
    dir: TempDir,
    db: PathBuf,
    pg: testkit::pgtemp::TestDatabase,
    /// Kept alive for the proxy's backends.
    _legacy: ficus_taskapp::Server,
    _new: ficus_taskapp::Server,
    proxy: ProxyHandle,
    follower: Option<Child>,
}

impl World {
    async fn new(name: &str) -> World {
        let dir = testkit::temp_dir(name);
        let db = dir.path().join("legacy.db");
        ficus_taskapp::seed_sqlite(&db, &ficus_taskapp::seed_tasks(300, 3)).unwrap();
        let pg = testkit::pgtemp::fresh_database(name).unwrap();
        let legacy = ficus_taskapp::serve_legacy(&db, testkit::backend::listener().await, vec![])
            .await
            .unwrap();
        // The follower first: it installs capture, copies, follows (the new service's own
        // `CREATE TABLE IF NOT EXISTS` then finds ficus's tables).
        let mut follower = None;
        start_follower(&dir, &db, &pg.url, &mut follower);
        wait_following(&dir, &pg.url).await;
        let new = ficus_taskapp::serve_new(&pg.url, testkit::backend::listener().await, vec![])
            .await
            .unwrap();
        World {
            follower,
            proxy: proxy(&dir, &legacy, &new),
            _new: new,
            _legacy: legacy,
            dir,
            db,
            pg,
        }
    }

    fn stop_follower(&mut self) {
        if let Some(mut f) = self.follower.take() {
            let _ = f.kill();
            let _ = f.wait();
        }
    }

    fn log(&self) -> String {
        follower_log(&self.dir)
    }

    fn ficus(&self, args: &[&str]) -> std::process::Output {
        Command::new(FICUS)
            .args(args)
            .args([
                "--source",
                self.db.to_str().unwrap(),
                "--target",
                &self.pg.url,
            ])
            .env("FICUS_ADMIN_TOKEN", TOKEN)
            .output()
            .unwrap()
    }

    /// Every acknowledged create is in SQLite and in PostgreSQL.
    async fn assert_on_both_sides(&self, created: &[(String, String)]) {
        let (s, p) = (task_ids_sqlite(&self.db), task_ids_pg(&self.pg.url).await);
        for (id, side) in created {
            assert!(
                s.contains(id) && p.contains(id),
                "{id} (acknowledged by {side}) is not on both sides"
            );
        }
    }

    /// The write route as the proxy reports it now.
    fn route(&self) -> ficus_proxy::RouteStatus {
        self.proxy
            .routes()
            .unwrap()
            .into_iter()
            .find(|r| r.name == ROUTE)
            .unwrap()
    }

    fn admin(&self) -> String {
        format!("http://{}", self.proxy.admin_addr())
    }

    /// Waits until the follower (whichever way it runs) has applied everything logged.
    async fn drained(&self) {
        let c = testkit::pg::connect(&self.pg.url).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (dir, pos): (String, i64) = c
                .query_one(
                    "SELECT direction, position FROM ficus.follow WHERE target_schema = 'public'",
                    &[],
                )
                .await
                .map(|r| (r.get(0), r.get(1)))
                .unwrap();
            let sqlite = rusqlite::Connection::open(&self.db).unwrap();
            let done = if dir == "forward" {
                let last: i64 = sqlite
                    .query_row("SELECT coalesce(max(id), 0) FROM _ficus_changes", [], |r| {
                        r.get(0)
                    })
                    .unwrap();
                pos >= last
            } else {
                let rpos: i64 = sqlite
                    .query_row(
                        "SELECT CAST(coalesce((SELECT value FROM _ficus_capture WHERE name = 'reverse_position'), 0) AS INTEGER)",
                        [],
                        |r| r.get(0),
                    )
                    .unwrap();
                let last: i64 = c
                    .query_one(
                        "SELECT coalesce(max(id), 0) FROM ficus.reverse_changes WHERE target_schema = 'public'",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                rpos >= last
            };
            if done {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not drained ({dir}):\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn verify(&self) {
        let v = self.ficus(&["migrate", "verify"]);
        assert_eq!(
            v.status.code(),
            Some(0),
            "{}{}",
            String::from_utf8_lossy(&v.stdout),
            String::from_utf8_lossy(&v.stderr)
        );
    }
}

fn proxy(
    dir: &TempDir,
    legacy: &ficus_taskapp::Server,
    new: &ficus_taskapp::Server,
) -> ProxyHandle {
    let new_url = new.url();
    let toml = format!(
        r#"
[proxy]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
state = {state:?}
[backends.legacy]
url = "{legacy}"
timeout_ms = 5000
[backends.new]
url = "{new_url}"
timeout_ms = 5000
[[routes]]
name = "{ROUTE}"
methods = ["POST"]
path = "/api/tasks/*"
[[routes]]
name = "tasks-read"
methods = ["GET"]
path = "/api/tasks/*"
"#,
        state = dir.path().join("state.db"),
        legacy = legacy.url(),
    );
    let mut config = Config::from_toml_str(&toml).unwrap();
    config.proxy.admin_token = Some(Secret(TOKEN.into()));
    Proxy::start(config, None).unwrap()
}

/// What the writers saw.
#[derive(Default)]
struct Tally {
    /// (task id, side that acknowledged the create)
    created: Mutex<Vec<(String, String)>>,
    writes: AtomicU64,
    /// Answers not from an app: 5xx or anything the proxy made up.
    foreign: Mutex<Vec<String>>,
    max_latency_ms: AtomicU64,
}

impl Tally {
    /// Every answer came from an app: no 5xx, nothing the proxy made up.
    fn assert_only_app_answers(&self) {
        let foreign = self.foreign.lock().unwrap();
        assert!(foreign.is_empty(), "{foreign:?}");
    }

    /// No write waited longer than the hold allows.
    fn assert_within_hold(&self) {
        assert!(self.max_latency_ms.load(Ordering::Relaxed) <= MAX_HOLD_MS);
    }
}

fn writers(
    entry: String,
    tag: &'static str,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..4u32)
        .map(|w| {
            let (entry, stop, tally) = (entry.clone(), stop.clone(), tally.clone());
            tokio::spawn(async move {
                let http = Http::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let (path, body) = if n % 2 == 1 {
                        let id = format!("{tag}-{w}-{n}");
                        ("/api/tasks/".to_string(), json!({"task_id": id, "title": "written through the proxy", "priority": "LOW"}))
                    } else {
                        (
                            format!("/api/tasks/TASK-{}/update-notes", 101 + (u64::from(w) * 50 + n) % 200),
                            json!({"notes": format!("{tag} note {n}")}),
                        )
                    };
                    let r = http.call(&entry, "POST", &path, Some(&body.to_string())).await;
                    tally.writes.fetch_add(1, Ordering::Relaxed);
                    tally
                        .max_latency_ms
                        .fetch_max(r.elapsed.as_millis() as u64, Ordering::Relaxed);
                    let side = r.header("x-ficus-backend").to_string();
                    if r.status >= 500 || !(side == "legacy" || side == "new") {
                        tally
                            .foreign
                            .lock()
                            .unwrap()
                            .push(format!("{path}: {} {side} {}", r.status, r.text()));
                    }
                    if n % 2 == 1 && r.status == 201 {
                        let id = body["task_id"].as_str().unwrap_or_default().to_string();
                        tally.created.lock().unwrap().push((id, side));
                    }
                }
            })
        })
        .collect()
}

fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn task_ids_sqlite(db: &Path) -> BTreeSet<String> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut st = c.prepare("SELECT task_id FROM tasks").unwrap();
    st.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

async fn task_ids_pg(url: &str) -> BTreeSet<String> {
    testkit::pg::connect(url)
        .await
        .query("SELECT task_id FROM tasks", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Runs `args` (a cut-over or a live rollback) while 4 writers write through the proxy;
/// returns its output and what the writers saw.
async fn under_load(
    w: &World,
    tag: &'static str,
    args: &[&str],
) -> (std::process::Output, Arc<Tally>) {
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let entry = format!("http://{}", w.proxy.listen_addr());
    let ws = writers(entry, tag, stop.clone(), tally.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let (db, pg) = (w.db.clone(), w.pg.url.clone());
    let o = tokio::task::spawn_blocking(move || {
        Command::new(FICUS)
            .args(&args)
            .args(["--source", db.to_str().unwrap(), "--target", &pg])
            .env("FICUS_ADMIN_TOKEN", TOKEN)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    for h in ws {
        h.await.unwrap();
    }
    (o, tally)
}

fn pause_ms(o: &std::process::Output) -> f64 {
    let text = out(o);
    text.lines()
        .find_map(|l| l.strip_prefix("write pause: "))
        .and_then(|l| l.trim_end_matches(" ms").parse().ok())
        .unwrap_or_else(|| panic!("no write pause in:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cutover_and_live_rollback_under_load_lose_nothing() {
    let mut w = World::new("cutover_e2e").await;
    let admin = w.admin();

    // A dry run checks the preconditions and changes nothing.
    let o = w.ficus(&[
        "migrate",
        "cutover",
        "--admin",
        &admin,
        "--routes",
        ROUTE,
        "--dry-run",
    ]);
    assert_eq!(o.status.code(), Some(0), "dry run:\n{}", out(&o));
    assert!(out(&o).contains("nothing changed (dry run)"), "{}", out(&o));
    let route = w.route();
    assert_eq!((route.percent, route.held), (0.0, false));
    assert!(w
        .proxy
        .audit(20)
        .unwrap()
        .iter()
        .all(|a| a.action != "hold"));

    // Cut over while writing.
    let (o, tally) = under_load(
        &w,
        "A",
        &[
            "migrate",
            "cutover",
            "--admin",
            &admin,
            "--routes",
            ROUTE,
            "--max-hold-ms",
            "2000",
        ],
    )
    .await;
    assert_eq!(
        o.status.code(),
        Some(0),
        "cutover:\n{}\nfollower:\n{}",
        out(&o),
        w.log()
    );
    let pause = pause_ms(&o);
    eprintln!(
        "cut-over pause {pause:.1} ms; {} writes, longest {} ms",
        tally.writes.load(Ordering::Relaxed),
        tally.max_latency_ms.load(Ordering::Relaxed)
    );
    tally.assert_only_app_answers();
    tally.assert_within_hold();
    let created = tally.created.lock().unwrap().clone();
    assert!(
        created.iter().any(|(_, s)| s == "legacy") && created.iter().any(|(_, s)| s == "new"),
        "writes before and after the switch: {created:?}"
    );
    let route = w.route();
    assert_eq!(route.percent, 100.0);
    assert!(!route.held);
    let audit = w.proxy.audit(20).unwrap();
    assert!(
        audit
            .iter()
            .any(|a| a.actor == "cutover" && a.action == "set" && a.to_bp == 10_000),
        "{audit:?}"
    );
    assert!(
        audit.iter().any(|a| a.action == "hold") && audit.iter().any(|a| a.action == "release")
    );

    // Legacy stays warm: the new side's writes reach SQLite; both sides hold every create.
    w.drained().await;
    w.verify();
    w.assert_on_both_sides(&created).await;

    // A row deleted on new (an admin, straight in PostgreSQL) is deleted in SQLite too.
    let pg = testkit::pg::connect(&w.pg.url).await;
    pg.batch_execute(
        "DELETE FROM task_events WHERE task_id = 'TASK-300'; DELETE FROM tasks WHERE task_id = 'TASK-300'",
    )
    .await
    .unwrap();

    // Roll back live while writing.
    let (o, tally) = under_load(
        &w,
        "B",
        &["migrate", "rollback", "--live", "--admin", &admin],
    )
    .await;
    assert_eq!(
        o.status.code(),
        Some(0),
        "rollback --live:\n{}\nfollower:\n{}",
        out(&o),
        w.log()
    );
    eprintln!(
        "rollback pause {:.1} ms; longest write {} ms",
        pause_ms(&o),
        tally.max_latency_ms.load(Ordering::Relaxed)
    );
    tally.assert_only_app_answers();
    tally.assert_within_hold();
    let created = tally.created.lock().unwrap().clone();
    assert!(
        created.iter().any(|(_, s)| s == "new") && created.iter().any(|(_, s)| s == "legacy"),
        "writes before and after the rollback: {created:?}"
    );
    let route = w.route();
    assert_eq!(route.percent, 0.0);
    assert!(
        !task_ids_sqlite(&w.db).contains("TASK-300"),
        "the row deleted on new is still in SQLite"
    );
    // The follower runs forward again: legacy's writes reach PostgreSQL.
    w.drained().await;
    w.verify();
    w.assert_on_both_sides(&created).await;
    w.stop_follower();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drain_that_cannot_finish_releases_to_legacy_and_a_killed_orchestrators_hold_expires() {
    let mut w = World::new("cutover_fail").await;
    let admin = w.admin();
    // The follower stops: its record still looks alive for a few seconds, the drain cannot
    // finish once a write lands in SQLite's log.
    w.stop_follower();
    let (o, tally) = under_load(
        &w,
        "C",
        &[
            "migrate",
            "cutover",
            "--admin",
            &admin,
            "--routes",
            ROUTE,
            "--max-hold-ms",
            "800",
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("FAILED at drain"), "{}", out(&o));
    tally.assert_only_app_answers();
    let route = w.route();
    assert_eq!(
        (route.percent, route.held),
        (0.0, false),
        "routes unchanged, released"
    );
    assert!(tally
        .created
        .lock()
        .unwrap()
        .iter()
        .all(|(_, s)| s == "legacy"));

    // The orchestrator killed mid-hold: the proxy ends the hold by itself at max_ms.
    let mut child = Command::new(FICUS)
        .args([
            "migrate",
            "cutover",
            "--admin",
            &admin,
            "--routes",
            ROUTE,
            "--max-hold-ms",
            "1500",
        ])
        .args([
            "--source",
            w.db.to_str().unwrap(),
            "--target",
            &w.pg.url,
            "--max-lag-ms",
            "600000",
        ])
        .env("FICUS_ADMIN_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = w.route();
        if r.held {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cut-over never held the route"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL
    let _ = child.wait();
    // A write sent now waits for the hold, then goes through.
    let r = Http::new()
        .call(
            &format!("http://{}", w.proxy.listen_addr()),
            "POST",
            "/api/tasks/TASK-101/update-notes",
            Some(r#"{"notes":"after the orchestrator died"}"#),
        )
        .await;
    assert_eq!((r.status, r.header("x-ficus-backend")), (200, "legacy"));
    let r = w.route();
    assert!(!r.held);
    assert!(w
        .proxy
        .audit(10)
        .unwrap()
        .iter()
        .any(|a| a.action == "hold-expired"));
}

fn follower_log(dir: &TempDir) -> String {
    std::fs::read_to_string(dir.path().join("follower.log")).unwrap_or_default()
}

fn start_follower(dir: &TempDir, db: &Path, pg_url: &str, slot: &mut Option<Child>) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("follower.log"))
        .unwrap();
    *slot = Some(
        Command::new(FICUS)
            .args(["migrate", "run", "--follow", "--quiet", "--source"])
            .arg(db)
            .args(["--target", pg_url])
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap(),
    );
}

async fn wait_following(dir: &TempDir, pg_url: &str) {
    let c = testkit::pg::connect(pg_url).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(Some(_)) = c
            .query_opt(
                "SELECT 1 FROM ficus.follow WHERE target_schema = 'public'",
                &[],
            )
            .await
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the follower never followed:\n{}",
            follower_log(dir)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
