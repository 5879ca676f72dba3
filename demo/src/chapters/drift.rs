//! Chapters 7 and 8, drift between the stores while both take writes: `ficus migrate watch`
//! re-verifies every key the proxy logged plus a full checksum sweep and finds nothing; then
//! three edits made behind the apps' backs are found and classified (`value_differs` naming the
//! column, `missing_in_legacy`, `missing_in_new`), undone, and the watch is clean again.

use std::path::Path;
use std::time::Duration;

use ficus_migrator::DriftClass;
use ficus_migrator::{Metrics, WatchOptions, WatchSummary};

use crate::narrator::Narrator;
use crate::stage::Stage;
use crate::stores::{pg_execute, postgres, sqlite_execute};
use crate::DemoError;

/// The watch's settle window: how long after a write its key is re-verified.
const SETTLE_MS: u64 = 300;

/// Chapter 7.
pub async fn zero_drift(n: &mut Narrator<'_>, stage: &Stage) -> Result<(), DemoError> {
    n.step("Watch: SQLite and PostgreSQL agree on every written key and every row");
    no_drift(&watch_once(n, stage, true).await?)
}

/// One watch pass that must find no drift; prints its summary.
pub async fn watch_clean(n: &mut Narrator<'_>, stage: &Stage) -> Result<(), DemoError> {
    no_drift(&watch_once(n, stage, false).await?)
}

fn no_drift(s: &WatchSummary) -> Result<(), DemoError> {
    crate::expect(s.clean, || format!("the watch found drift:\n{}", s.text()))
}

/// One `ficus migrate watch --once` pass over the proxy's dual-write log; prints its summary.
/// With `show_routes`, also which table and column each route's keys name.
async fn watch_once(
    n: &mut Narrator<'_>,
    stage: &Stage,
    show_routes: bool,
) -> Result<WatchSummary, DemoError> {
    n.cli(format!(
        "ficus migrate watch --source legacy.db --config migration.toml --proxy-state ficus-state.db --once --settle-ms {SETTLE_MS}"
    ));
    let mut opts = WatchOptions::new(&stage.ws.legacy_db(), &stage.pg_url);
    opts.proxy_state = Some(stage.ws.state());
    opts.settle = Duration::from_millis(SETTLE_MS);
    opts.once = true;
    opts.tick = Duration::from_millis(50);
    let metrics = Metrics::new()?;
    let s = ficus_migrator::watch(
        &opts,
        &stage.migration,
        &metrics,
        std::future::pending(),
        |_| {},
    )
    .await?;
    if show_routes {
        for (route, mapped) in &s.routes {
            n.say(format!("route {route}: keys are {mapped}"));
        }
    }
    for w in &s.warnings {
        n.say(format!("warning: {w}"));
    }
    for d in &s.drift {
        n.say(ficus_migrator::drift_line(d));
    }
    if let Some(last) = s.text().lines().last() {
        n.say(last);
    }
    Ok(s)
}

/// The seeded task whose title is edited in PostgreSQL (no writer or read touches it
/// meanwhile).
const EDITED: &str = "TASK-160";
/// A row only SQLite gets, one only PostgreSQL gets.
const LEGACY_ONLY: &str = "TASK-8001";
const NEW_ONLY: &str = "TASK-8002";

/// Where a hand-made statement runs.
#[derive(Clone, Copy)]
enum On {
    Sqlite,
    Postgres,
}

impl On {
    fn name(self) -> &'static str {
        match self {
            On::Sqlite => "SQLite",
            On::Postgres => "PostgreSQL",
        }
    }
}

/// The two stores, opened for statements behind the apps' backs.
struct ByHand<'a> {
    db: &'a Path,
    pg: tokio_postgres::Client,
}

impl ByHand<'_> {
    async fn run(&self, on: On, sql: &str) -> Result<u64, DemoError> {
        match on {
            On::Sqlite => Ok(sqlite_execute(self.db, sql).await? as u64),
            On::Postgres => pg_execute(&self.pg, sql).await,
        }
    }
}

/// Chapter 8.
pub async fn injected_drift(n: &mut Narrator<'_>, stage: &Stage) -> Result<(), DemoError> {
    n.step("Drift made behind the apps' backs: found, classified, repaired");
    let db = stage.ws.legacy_db();
    let stores = ByHand {
        db: &db,
        pg: postgres(&stage.pg_url).await?,
    };
    let update = format!("UPDATE tasks SET title = 'edited by hand' WHERE task_id = '{EDITED}'");
    let edits = [
        (On::Postgres, update.clone(), update),
        (
            On::Postgres,
            format!(
                "INSERT INTO tasks (id, task_id, title, priority, status, completed, created_at, updated_at) \
                 SELECT max(id) + 1000, '{NEW_ONLY}', 'inserted by hand', 'LOW', 'pending', false, now(), now() FROM tasks"
            ),
            format!("INSERT INTO tasks … {NEW_ONLY} (a row only the new side has)"),
        ),
        (
            On::Sqlite,
            format!(
                "INSERT INTO tasks (task_id, title, priority, status, completed, created_at, updated_at) \
                 SELECT '{LEGACY_ONLY}', 'inserted by a cron job', 'LOW', 'pending', 0, created_at, updated_at \
                 FROM tasks WHERE task_id = 'TASK-101'"
            ),
            format!("INSERT INTO tasks … {LEGACY_ONLY} (a row only the legacy side has)"),
        ),
    ];
    for (on, sql, said) in &edits {
        let changed = stores.run(*on, sql).await?;
        crate::expect(changed == 1, || {
            format!("{}: {sql} changed {changed} rows", on.name())
        })?;
        n.say(format!("{:<10}  {said}", on.name()));
    }
    let s = watch_once(n, stage, false).await?;
    check_classified(&s)?;

    // Legacy is the source of truth while it is primary: make PostgreSQL hold what SQLite
    // holds, row by row, for every difference verify finds.
    n.cli("ficus migrate repair --source legacy.db --table tasks   # --dry-run lists first");
    let plan = ficus_migrator::plan_for(&db, &stage.pg_url, "public", &stage.migration).await?;
    let obs = std::sync::Arc::new(ficus_migrator::Observer::silent());
    let opts = ficus_migrator::repair::RepairOptions {
        table: Some("tasks".into()),
        dry_run: false,
    };
    let rep = ficus_migrator::repair::repair(&plan, &db, &stage.pg_url, &opts, &obs).await?;
    for line in rep.text().lines() {
        n.say(line);
    }
    crate::expect(
        rep.ok() && rep.rows.len() == 3 && rep.rows.iter().all(|r| r.table == "tasks"),
        || format!("repair did not put the three rows right:\n{}", rep.text()),
    )?;
    watch_clean(n, stage).await
}

/// The three edits, each reported once with its class (and the edited column).
fn check_classified(s: &WatchSummary) -> Result<(), DemoError> {
    let key = |t: &str| format!("{{\"task_id\":\"{t}\"}}");
    let found = |t: &str, class: DriftClass| {
        s.drift
            .iter()
            .any(|d| d.table == "tasks" && d.key == key(t) && d.class == class)
    };
    let title_named = s
        .drift
        .iter()
        .any(|d| d.key == key(EDITED) && d.columns.len() == 1 && d.columns[0].column == "title");
    crate::expect(
        s.drift.len() == 3
            && title_named
            && found(EDITED, DriftClass::ValueDiffers)
            && found(NEW_ONLY, DriftClass::MissingInLegacy)
            && found(LEGACY_ONLY, DriftClass::MissingInNew),
        || {
            format!(
                "expected exactly the three injected drifts, the watch says:\n{}",
                s.text()
            )
        },
    )
}
