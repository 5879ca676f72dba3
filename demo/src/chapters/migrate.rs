//! Chapters 1–3, the data before any traffic: a throwaway PostgreSQL for the new service, the
//! legacy monolith's SQLite database seeded, and the migration into PostgreSQL (plan, run,
//! verify) under the demo's `migration.toml`.

use std::sync::Arc;

use ficus_migrator::{MigrationConfig, Observer, Plan, RunOptions, VerifyOptions};

use crate::narrator::Narrator;
use crate::stage::Workspace;
use crate::DemoError;

/// `migration.toml`: how the dual-write tools (watch, rollback) see the task tables.
pub const MIGRATION_TOML: &str = r#"# ficus migrate: settings of the demo (written by `ficus demo`).
# The proxy's dual-write routes name rows by task_id.
[watch.routes.tasks-write]
table = "tasks"
column = "task_id"
[watch.routes.tasks-create]
table = "tasks"
column = "task_id"
# Each side numbers its own events: compare the event log without its ids.
[watch.tables.task_events]
ignore_columns = ["id"]
"#;

/// Chapter 1: PostgreSQL. Returns the cluster and the new service's database URL.
pub async fn start_postgres(
    n: &mut Narrator<'_>,
    ws: &Workspace,
) -> Result<(pgtemp::Cluster, String), DemoError> {
    n.step("Start PostgreSQL (a throwaway cluster for the new service)");
    let dir = ws.path("postgres");
    let (cluster, url) = tokio::task::spawn_blocking(move || {
        let cluster = pgtemp::Cluster::start(&dir)?;
        let url = cluster.create_database("tasks_new")?;
        Ok::<_, DemoError>((cluster, url))
    })
    .await??;
    n.say(format!(
        "PostgreSQL on 127.0.0.1:{}  ({url})",
        cluster.port()
    ));
    crate::stage::write_env(ws, &url, None)?;
    n.say(format!(
        "work directory {}; after `. {}` the commands shown below run as printed",
        ws.dir.display(),
        ws.path("env.sh").display()
    ));
    Ok((cluster, url))
}

/// Chapter 2: the legacy database.
pub async fn seed_legacy(n: &mut Narrator<'_>, ws: &Workspace) -> Result<(), DemoError> {
    n.step("Seed the legacy monolith's SQLite database");
    let db = ws.legacy_db();
    let tasks = ficus_taskapp::seed_tasks(ws.tasks, 42);
    let seeded = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || ficus_taskapp::seed_sqlite(&db, &tasks)).await??
    };
    crate::expect(seeded == ws.tasks, || {
        format!("seeded {seeded} tasks, asked for {}", ws.tasks)
    })?;
    n.say(format!(
        "{seeded} tasks (TASK-101 … TASK-{}) in {}",
        100 + seeded,
        db.display()
    ));
    Ok(())
}

/// Chapter 3: `ficus migrate plan`, `run` and `verify`. Returns the migration settings.
pub async fn migrate(
    n: &mut Narrator<'_>,
    ws: &Workspace,
    target: &str,
) -> Result<MigrationConfig, DemoError> {
    n.step("Migrate the legacy data into PostgreSQL: plan, run, verify");
    ws.write("migration.toml", MIGRATION_TOML)?;
    let config = MigrationConfig::parse(MIGRATION_TOML, "migration.toml")?;
    let source = ws.legacy_db();
    let obs = Arc::new(Observer::silent());
    let plan = {
        let (src, cfg) = (source.clone(), config.clone());
        tokio::task::spawn_blocking(move || Plan::build(&src, &cfg, "public")).await??
    };
    n.cli("ficus migrate plan --source legacy.db --config migration.toml");
    let example = plan.report();
    let example = example
        .lines()
        .find(|l| l.contains("last_heartbeat"))
        .map(|l| {
            let l = l.split(" [").next().unwrap_or(l);
            l.split_whitespace().collect::<Vec<_>>().join(" ")
        })
        .unwrap_or_default();
    n.say(format!("{} tables; e.g. {example}", plan.tables.len()));

    n.cli("ficus migrate run --source legacy.db --config migration.toml");
    let run = ficus_migrator::run(&plan, &source, target, &RunOptions::default(), &obs).await?;
    for t in &run.tables {
        n.say(format!(
            "copied {:<12} {:>6} of {:>6} rows, {} quarantined",
            t.table, t.rows_copied, t.source_rows, t.rows_quarantined
        ));
        crate::expect(t.rows_copied + t.rows_quarantined == t.source_rows, || {
            format!(
                "{}: copied {} of {} rows",
                t.table, t.rows_copied, t.source_rows
            )
        })?;
    }
    n.say(format!("run took {:.2} s", run.seconds));

    n.cli("ficus migrate verify --source legacy.db --config migration.toml");
    let verify =
        ficus_migrator::verify(&plan, &source, target, &VerifyOptions::default(), &obs).await?;
    n.say(format!(
        "verify: {} ({:.2} s, chunked checksums of every row on both sides)",
        if verify.clean { "clean" } else { "DIFFERENCES" },
        verify.seconds
    ));
    crate::expect(verify.clean, || {
        format!("verify found differences:\n{}", verify.text())
    })?;
    Ok(config)
}
