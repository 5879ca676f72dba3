//! Dual-write verification end to end: a seeded legacy SQLite database migrated into a fresh
//! PostgreSQL by `ficus migrate run`, the reference task apps serving both stores, a ficus
//! proxy (SQLite state store) mirroring every task write from legacy to new, several clients
//! writing through the proxy at once — to the same rows, and creating tasks — and then
//! `ficus migrate watch --once` over what the proxy recorded: no drift, every recorded write
//! re-verified.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use ficus_taskapp::Options;
use serde_json::Value;
use testkit::cli::text as out;
use testkit::{Http, ProxyToml};

const FICUS: &str = env!("CARGO_BIN_EXE_ficus");
/// Writers through the proxy, and for how long.
const WRITERS: u32 = 4;
const WRITING: Duration = Duration::from_secs(3);
/// Seeded tasks every writer writes to (so writes to one row race each other).
const SHARED_TASKS: u32 = 8;

/// The watch's view of the two stores. `task_events.id` is numbered by each side itself
/// (`max(id) + 1` over the whole table); the proxy orders the writes to one row, not writes to
/// different rows, so two events appended at the same time for different tasks may be
/// numbered in a different order on each side: events are compared without their id.
/// `tasks.id` is compared: creates take turns on their route (`write_order = "route"`), so
/// both sides number them alike.
const MIGRATION_TOML: &str = r#"
[watch.tables.task_events]
ignore_columns = ["id"]

[watch.routes.tasks-create]
table = "tasks"
column = "task_id"

[watch.routes.tasks-write]
table = "tasks"
column = "task_id"
"#;

/// Creates are keyed by the task id the client names in a header; every write of the route
/// takes one turn (each side allocates the new row's id). Updates are keyed by the path.
const ROUTES: &str = r#"
[[routes]]
name = "tasks-create"
methods = ["POST"]
path = "/api/tasks/"
dual_write = true
key = "header:X-Task-Id"
write_order = "route"
[routes.shadow]
ignore_headers = ["date"]

[[routes]]
name = "tasks-write"
methods = ["POST"]
path = "/api/tasks/{task_id}/*"
dual_write = true
key = "path:task_id"
[routes.shadow]
ignore_headers = ["date"]
"#;

fn ficus(args: &[&str]) -> Output {
    testkit::cli::run(FICUS, args)
}

/// What one writer did: writes answered, keys it wrote, statuses seen.
#[derive(Default)]
struct Written {
    writes: u64,
    keys: BTreeSet<String>,
    statuses: BTreeMap<u16, u64>,
}

/// Writes through the proxy until `deadline`: creates (tasks nobody else touches) and
/// claim / heartbeat / update-notes / set-status / unclaim on the tasks all writers share.
async fn writer(http: Http, proxy: SocketAddr, w: u32, deadline: tokio::time::Instant) -> Written {
    let mut done = Written::default();
    let agent = format!("agent-{w}");
    let mut i = 0u32;
    while tokio::time::Instant::now() < deadline {
        i += 1;
        let shared = format!("TASK-{}", 101 + (i * 3 + w * 5) % SHARED_TASKS);
        let (path, body, key) = match i % 6 {
            0 => {
                let key = format!("TASK-{}", 5000 + w * 1000 + i);
                let body = format!(
                    r#"{{"task_id":"{key}","title":"made by {agent}","priority":"LOW","dependencies":"TASK-101"}}"#
                );
                ("/api/tasks/".to_string(), body, key)
            }
            1 => (
                format!("/api/tasks/{shared}/claim"),
                format!(r#"{{"agent_name":"{agent}","worktree":"wt/{agent}"}}"#),
                shared,
            ),
            2 => (
                format!("/api/tasks/{shared}/heartbeat"),
                format!(r#"{{"agent_name":"{agent}"}}"#),
                shared,
            ),
            3 => (
                format!("/api/tasks/{shared}/update-notes"),
                format!(r#"{{"notes":"step {i} by {agent} ✓"}}"#),
                shared,
            ),
            // Multi-key event payloads, non-ASCII text.
            4 => (
                format!("/api/tasks/{shared}/set-status"),
                match i % 3 {
                    0 => format!(
                        r#"{{"status":"blocked","blocked_reason":"wartet auf {agent} — Zoë","blocked_by":"TASK-102"}}"#
                    ),
                    1 => r#"{"status":"in_review"}"#.to_string(),
                    _ => r#"{"status":"pending"}"#.to_string(),
                },
                shared,
            ),
            _ => (
                format!("/api/tasks/{shared}/unclaim"),
                String::new(),
                shared,
            ),
        };
        let r = http
            .send(
                "POST",
                &format!("http://{proxy}{path}"),
                &[("content-type", "application/json"), ("x-task-id", &key)],
                body.clone(),
            )
            .await;
        let (status, reply) = (r.status, r.json_or_null());
        // Refusals of the business rules (409 claimed, 403 not the assignee) are fine: both
        // sides give them alike. 5xx are not (503 would be a write that never got its turn).
        assert!(status < 500, "{path} {body}: {status} {reply}");
        done.writes += 1;
        done.keys.insert(key);
        *done.statuses.entry(status).or_default() += 1;
    }
    done
}

/// `(task_id → (id, created_at, updated_at))` as a task app serves them.
async fn tasks(http: &Http, app: SocketAddr) -> BTreeMap<String, (i64, String, String)> {
    let r = http.call(&app, "GET", "/api/tasks/", None).await;
    assert_eq!(r.status, 200);
    r.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["task_id"].as_str().unwrap().to_string(),
                (
                    t["id"].as_i64().unwrap(),
                    t["created_at"].to_string(),
                    t["updated_at"].to_string(),
                ),
            )
        })
        .collect()
}

/// (route, key, legacy_status, new_status, divergent) of a `dual_writes` row.
type Recorded = (String, String, Option<i64>, Option<i64>, i64);

fn recorded_writes(state: &Path) -> Vec<Recorded> {
    testkit::sqlite::rows(
        state,
        "SELECT route, key, legacy_status, new_status, divergent FROM dual_writes ORDER BY id",
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_through_the_proxy_leave_no_drift() {
    let dir = testkit::temp_dir("e2e-dualwrite");
    let sqlite = dir.path().join("legacy.db");
    ficus_taskapp::seed_sqlite(&sqlite, &ficus_taskapp::seed_tasks(40, 17)).unwrap();
    let config = dir.path().join("migration.toml");
    std::fs::write(&config, MIGRATION_TOML).unwrap();
    let pg = testkit::pg::fresh_database("dualwrite_e2e").unwrap();
    let (src, cfg) = (sqlite.to_str().unwrap(), config.to_str().unwrap());
    let common = ["--source", src, "--target", &pg.url, "--config", cfg];
    let o = ficus(&[&["migrate", "run"][..], &common, &["--quiet"]].concat());
    assert!(o.status.success(), "{}", out(&o));

    // Both apps on the migrated stores, the proxy in front (legacy primary, new mirrored).
    let legacy = testkit::apps::legacy_app(&sqlite, Options::default()).await;
    let new = testkit::apps::new_app(&pg.url, Options::default()).await;
    let state = dir.path().join("ficus-state.db");
    let toml = ProxyToml::new(&legacy.url(), &new.url())
        .state_file(&state)
        .shadow(&dir.path().join("shadow.db"), "timeout_ms = 20000")
        .routes(ROUTES)
        .to_string();
    let proxy = ficus_proxy::Proxy::start(ficus_proxy::Config::from_toml_str(&toml).unwrap(), None)
        .unwrap();

    let http = Http::new();
    let deadline = tokio::time::Instant::now() + WRITING;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| tokio::spawn(writer(http.clone(), proxy.listen_addr(), w, deadline)))
        .collect();
    let mut writes = 0u64;
    let mut keys = BTreeSet::new();
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    for w in writers {
        let done = w.await.unwrap();
        writes += done.writes;
        keys.extend(done.keys);
        for (s, n) in done.statuses {
            *statuses.entry(s).or_default() += n;
        }
    }
    eprintln!(
        "{writes} writes through the proxy to {} keys, statuses {statuses:?}",
        keys.len()
    );
    assert!(
        writes >= 60,
        "only {writes} writes in {WRITING:?}: {statuses:?}"
    );
    assert!(
        statuses.get(&201).copied().unwrap_or(0) >= 4,
        "{statuses:?}"
    );
    assert!(
        statuses.get(&200).copied().unwrap_or(0) >= 20,
        "{statuses:?}"
    );
    // Every mirror done and every row committed: shutdown finishes the jobs in hand and
    // flushes the dual-write log.
    proxy.shutdown().await;

    // What the proxy recorded: one row per write, each side with the same answer.
    let rows = recorded_writes(&state);
    assert_eq!(rows.len() as u64, writes);
    let odd: Vec<_> = rows.iter().filter(|r| r.2 != r.3 || r.4 != 0).collect();
    assert!(odd.is_empty(), "writes answered differently: {odd:?}");

    // The two apps agree on every task's id (creates were numbered alike) and timestamps.
    let (l, n) = (
        tasks(&http, legacy.addr).await,
        tasks(&http, new.addr).await,
    );
    assert_eq!(l.len(), 40 + statuses[&201] as usize);
    assert_eq!(l, n);
    new.shutdown().await;
    legacy.shutdown().await;

    // The watch over the proxy's record: clean, every recorded write read and re-verified.
    let o = ficus(
        &[
            &["migrate", "watch"][..],
            &common,
            &[
                "--once",
                "--settle-ms",
                "500",
                "--proxy-state",
                state.to_str().unwrap(),
                "--format",
                "json",
            ],
        ]
        .concat(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let lines: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary = lines.last().unwrap();
    assert_eq!(summary["clean"], true, "{}", out(&o));
    assert_eq!(summary["drift"].as_array().unwrap().len(), 0);
    assert_eq!(summary["divergent_writes"], 0);
    assert_eq!(summary["written_keys"].as_u64(), Some(writes));
    assert_eq!(summary["sweeps"], 1);
    // Rows checked by the sweep, and the rest: the written keys, each checked.
    let swept: u64 = lines
        .iter()
        .filter(|e| e["event"] == "sweep")
        .map(|e| e["rows_checked"].as_u64().unwrap())
        .sum();
    let checked = summary["keys_checked"].as_u64().unwrap();
    assert!(
        checked >= swept + keys.len() as u64,
        "{checked} rows checked, {swept} by the sweep, {} distinct keys written",
        keys.len()
    );
    for route in ["tasks-create", "tasks-write"] {
        let mapped = summary["routes"][route].as_str().unwrap_or("");
        assert!(
            mapped.starts_with("tasks.task_id (configured"),
            "{route}: {mapped}"
        );
    }
}
