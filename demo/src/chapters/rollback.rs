//! Chapter 12, cut-over and the way back: dual writes end (writes reach PostgreSQL only), then
//! `ficus migrate rollback` writes what the new side got since the cut-over back into SQLite in
//! the legacy's format, verifies it in reverse, and sets every route to legacy through the
//! admin API — and a task created on the new side is then served by legacy.

use ficus_migrator::RollbackOptions;
use ficus_migrator::{RollbackReport, RouteSwitch};

use crate::narrator::Narrator;
use crate::proxy_config::{Phase, Writes};
use crate::stage::Stage;
use crate::stores::{postgres, task_counts};
use crate::traffic::{read_as, run_writers, stamp, Shape, WritePlan};
use crate::DemoError;

pub async fn cut_over_and_roll_back(
    n: &mut Narrator<'_>,
    stage: &mut Stage,
) -> Result<(), DemoError> {
    n.step("Cut over, then roll the migration back, keeping the new side's writes");
    let since = stamp();
    stage.reconfigure(Phase {
        writes: Writes::Single,
        ..stage.phase().clone()
    })?;
    n.say(format!(
        "cut-over at {since}: dual_write removed from the write routes, ficus.toml reloaded;"
    ));
    n.say("writes now reach PostgreSQL only");
    let shape = Shape {
        writers: 2,
        creates: 3,
        tasks: 1,
        rounds: 1,
    };
    let plan = WritePlan::new(shape, 9201, 131, "new");
    let tally = run_writers(&stage.client, &stage.entry(), &plan).await?;
    let created = i64::from(shape.writers * shape.creates);
    let pg = postgres(&stage.pg_url).await?;
    let (legacy_tasks, new_tasks) = task_counts(&stage.ws.legacy_db(), &pg).await?;
    let first = plan
        .created()
        .next()
        .ok_or_else(|| DemoError::Step("the cut-over plan creates no task".into()))?;
    let on_legacy = stage
        .client
        .get(&format!("{}/api/tasks/{first}", stage.legacy.url()))
        .await?;
    n.say(format!(
        "{} writes ({created} of them creates), all answered by new",
        tally.writes
    ));
    n.say(format!(
        "tasks: {legacy_tasks} in SQLite, {new_tasks} in PostgreSQL; legacy answers {} for {first}",
        on_legacy.status
    ));
    crate::expect(
        new_tasks - legacy_tasks == created && on_legacy.status == 404,
        || {
            format!("after the cut-over: SQLite {legacy_tasks} tasks, PostgreSQL {new_tasks}, legacy GET {first}: {}", on_legacy.status)
        },
    )?;

    n.say("the new side has to go back; nothing written there may be lost:");
    n.cli(format!(
        "ficus migrate rollback --source legacy.db --config migration.toml --since {since} --admin $FICUS_ADMIN_URL"
    ));
    let mut opts = RollbackOptions::new(&stage.ws.legacy_db(), &stage.pg_url);
    opts.since = Some(since);
    opts.to_legacy = Some(std::sync::Arc::new(ficus_proxy::LegacySwitch {
        admin: Some(stage.admin()),
        token: Some(stage.admin_token().to_string()),
        state: Some(ficus_proxy::StateLocation::from_path(&stage.ws.state())),
        config: Some(stage.ws.path("ficus.toml")),
    }));
    let report = ficus_migrator::rollback(&opts, &stage.migration).await?;
    tell(n, &report);
    check(&report, created, u64::from(shape.writers * shape.tasks))?;

    let routes = stage.operator.routes().await?;
    n.say(format!(
        "routes: {}",
        routes
            .iter()
            .map(|r| format!("{} {}%", r.name, r.percent))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    crate::expect(routes.iter().all(|r| r.percent == 0.0), || {
        "a route is still above 0 % after the rollback".into()
    })?;
    let r = read_as(&stage.client, &stage.entry(), 0, first).await?;
    let (legacy_tasks, new_tasks) = task_counts(&stage.ws.legacy_db(), &pg).await?;
    n.say(format!(
        "GET {first} through the proxy: {} from {}: written on new, kept by the rollback",
        r.status,
        r.header("x-ficus-backend")
    ));
    n.say(format!(
        "tasks: {legacy_tasks} in SQLite, {new_tasks} in PostgreSQL"
    ));
    crate::expect(
        r.header("x-ficus-backend") == "legacy" && legacy_tasks == new_tasks,
        || {
            format!("after the rollback {first} came from {:?}; SQLite {legacy_tasks} tasks, PostgreSQL {new_tasks}", r.header("x-ficus-backend"))
        },
    )
}

/// The report, a line per table and one per outcome.
fn tell(n: &mut Narrator<'_>, r: &RollbackReport) {
    for t in &r.pass.tables {
        n.say(format!(
            "{:<12} {:>3} in scope: {} inserted, {} updated, {} unchanged; reverse verify {} rows: {}",
            t.table,
            t.in_scope,
            t.inserted,
            t.updated,
            t.unchanged,
            t.verified,
            if t.differences.is_empty() { "clean" } else { "DIFFERENT" }
        ));
    }
    let count =
        |f: fn(&ficus_migrator::TableRollback) -> u64| -> u64 { r.pass.tables.iter().map(f).sum() };
    n.say(format!(
        "SQLite: {} rows inserted, {} updated in one transaction; reverse verify {}",
        count(|t| t.inserted),
        count(|t| t.updated),
        if r.pass.verified_clean {
            "clean"
        } else {
            "FOUND DIFFERENCES"
        }
    ));
    n.say(match &r.routes {
        RouteSwitch::AdminApi { .. } => {
            "every route set to legacy through the admin API (audited)".to_string()
        }
        other => format!("routes NOT switched through the admin API: {other:?}"),
    });
    if let Some(c) = &r.catch_up {
        let more: u64 = c.tables.iter().map(|t| t.inserted + t.updated).sum();
        n.say(format!("catch-up pass after the switch: {more} more rows"));
    }
    n.say(format!(
        "rollback {} in {:.2} s",
        if r.ok { "complete" } else { "NOT complete" },
        r.seconds
    ));
}

/// Complete, clean, switched through the admin API, and the cut-over's tasks written back.
fn check(r: &RollbackReport, created: i64, updated: u64) -> Result<(), DemoError> {
    let tasks = r.pass.tables.iter().find(|t| t.table == "tasks");
    let (inserted, was_updated) = tasks.map_or((0, 0), |t| (t.inserted, t.updated));
    crate::expect(
        r.ok && r.pass.written
            && r.pass.verified_clean
            && matches!(r.routes, RouteSwitch::AdminApi { .. })
            && inserted == created as u64
            && was_updated == updated,
        || {
            format!(
                "expected {created} tasks inserted and {updated} updated, verified, routes switched:\n{}",
                r.text()
            )
        },
    )
}
