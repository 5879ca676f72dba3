//! Helpers of the dual-write tests (watch, rollback): a legacy task database migrated into a
//! real PostgreSQL, the reference task apps on both stores over real HTTP (testkit's apps and
//! client, which stamps `X-Ficus-Request-Time`), and dual-write log records appended through
//! the proxy's own writer.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ficus_migrator::{MigrationConfig, Observer, RunOptions};
use ficus_taskapp::{seed_sqlite, seed_tasks, Options, Server};
use testkit::pg::TestDatabase;
use testkit::TempDir;

pub use testkit::Http;

/// Settings every test uses: the event log's ids are per side (each store numbers its own
/// events, and concurrent writers interleave differently on the two sides), so
/// `task_events` is compared as a multiset without them.
pub const BASE_CONFIG: &str = r#"
[watch.tables.task_events]
ignore_columns = ["id"]
"#;

/// The legacy database (`tasks` seeded tasks), migrated into a fresh PostgreSQL database.
pub struct Env {
    pub sqlite: PathBuf,
    pub state: PathBuf,
    pub config: MigrationConfig,
    pub pg: TestDatabase,
    pub dir: TempDir,
}

impl Env {
    pub async fn new(name: &str, tasks: usize, config: &str) -> Env {
        let dir = testkit::temp_dir(&format!("dw-{name}"));
        let sqlite = dir.path().join("legacy.db");
        seed_sqlite(&sqlite, &seed_tasks(tasks, 42)).unwrap();
        let pg = testkit::pg::fresh_database(name).unwrap();
        let config = MigrationConfig::parse(config, "test").unwrap();
        let plan = ficus_migrator::plan_for_run(&sqlite, &pg.url, "public", &config)
            .await
            .unwrap();
        let rep = ficus_migrator::run(
            &plan,
            &sqlite,
            &pg.url,
            &RunOptions::default(),
            &Arc::new(Observer::silent()),
        )
        .await
        .unwrap();
        assert_eq!(rep.rows_quarantined, 0);
        Env {
            sqlite,
            state: dir.path().join("ficus-state.db"),
            config,
            pg,
            dir,
        }
    }

    pub async fn legacy(&self) -> Server {
        testkit::apps::legacy_app(&self.sqlite, Options::default()).await
    }

    pub async fn new_side(&self) -> Server {
        testkit::apps::new_app(&self.pg.url, Options::default()).await
    }

    pub async fn pg(&self) -> tokio_postgres::Client {
        testkit::pg::connect(&self.pg.url).await
    }

    pub fn sqlite(&self) -> rusqlite::Connection {
        testkit::sqlite::open(&self.sqlite)
    }
}

/// Now as the proxy stamps it: `%Y-%m-%dT%H:%M:%S.%6fZ`.
pub fn stamp() -> String {
    ficus_core::stamp::request_time(time::OffsetDateTime::now_utc())
}

/// What the proxy appends for one write on a dual-write route.
pub struct DualWrite<'a> {
    pub at: &'a str,
    pub route: &'a str,
    pub key: &'a str,
    pub method: &'a str,
    pub primary: &'a str,
    pub legacy_status: Option<u16>,
    pub new_status: Option<u16>,
}

/// Appends `w` to the dual-write log of the SQLite state store at `state`, through the same
/// writer the proxy uses.
pub fn record(state: &Path, w: &DualWrite<'_>) {
    let c = |n: &str| prometheus::IntCounter::new(n, "test").unwrap();
    let counters = ficus_state::LogCounters {
        written: c("w"),
        dropped: c("d"),
        failed: c("f"),
    };
    let log = ficus_state::DualWriteLog::open(
        &ficus_state::StateLocation::from_path(state),
        counters.clone(),
    )
    .unwrap();
    log.record(ficus_state::DualWriteRecord {
        at: w.at.into(),
        route: w.route.into(),
        key: w.key.into(),
        method: w.method.parse().unwrap(),
        primary: ficus_core::Side::parse(w.primary).unwrap(),
        legacy_status: w.legacy_status,
        new_status: w.new_status,
    });
    assert!(log.flush_blocking(Duration::from_secs(10)));
    assert_eq!(counters.written.get(), 1);
}

/// The same write to both sides, as the proxy does it: stamped once, primary (legacy) first,
/// then recorded.
#[allow(clippy::too_many_arguments)]
pub async fn dual_write(
    http: &Http,
    legacy: &str,
    new: &str,
    state: &Path,
    route: &str,
    key: &str,
    path: &str,
    body: &str,
) -> (u16, u16) {
    let at = stamp();
    let l = http
        .call_at(legacy, "POST", path, Some(body), Some(&at))
        .await;
    let n = http.call_at(new, "POST", path, Some(body), Some(&at)).await;
    let (ls, ns) = (l.status, n.status);
    assert_eq!(ls, ns, "{path}: legacy {} new {}", l.text(), n.text());
    record(
        state,
        &DualWrite {
            at: &at,
            route,
            key,
            method: "POST",
            primary: "legacy",
            legacy_status: Some(ls),
            new_status: Some(ns),
        },
    );
    (ls, ns)
}

/// Options of a one-pass watch over `env`.
pub fn once(env: &Env, settle_ms: u64) -> ficus_migrator::WatchOptions {
    let mut o = ficus_migrator::WatchOptions::new(&env.sqlite, &env.pg.url);
    o.proxy_state = Some(env.state.clone());
    o.settle = Duration::from_millis(settle_ms);
    o.once = true;
    o.tick = Duration::from_millis(50);
    o
}

/// One watch pass; returns the summary, the events and the metrics text.
pub async fn watch_once(
    env: &Env,
    opts: &ficus_migrator::WatchOptions,
) -> (
    ficus_migrator::WatchSummary,
    Vec<ficus_migrator::WatchEvent>,
    String,
) {
    let metrics = ficus_migrator::Metrics::new().unwrap();
    let mut events = Vec::new();
    let s = ficus_migrator::watch(
        opts,
        &env.config,
        &metrics,
        std::future::pending(),
        |e: &ficus_migrator::WatchEvent| events.push(e.clone()),
    )
    .await
    .unwrap();
    (s, events, metrics.render())
}
