//! Chapter 6, the dual-write period: concurrent writers through the proxy on the dual-write
//! routes — the primary side answers, the other gets the same write mirrored (stamped once with
//! `X-Ficus-Request-Time`), and the proxy logs each write in `dual_writes`. Also the check both
//! write chapters share ([`write_through`]): every write logged once, both sides agreeing.

use crate::narrator::Narrator;
use crate::proxy_config::{Phase, CREATE_ROUTE, WRITE_ROUTE};
use crate::stage::Stage;
use crate::stores::{dual_write_log, metric, DualWriteLog};
use crate::traffic::{run_writers, Shape, WritePlan};
use crate::DemoError;

pub async fn dual_writes(n: &mut Narrator<'_>, stage: &mut Stage) -> Result<(), DemoError> {
    n.step("Dual writes: concurrent writers through the proxy, legacy answers, v1 gets a copy");
    stage.reconfigure(Phase {
        new_url: stage.v1.url(),
        ..stage.phase().clone()
    })?;
    n.say("v2 is not ready, so [backends.new] goes back to v1; ficus.toml reloaded");
    n.say("each row's writes take turns in the proxy (key = task id; creates, whose ids each side");
    n.say("allocates, take turns per route: write_order = \"route\"), so both sides apply them in order");
    let shape = Shape {
        writers: 4,
        creates: 3,
        tasks: 2,
        rounds: 3,
    };
    let plan = WritePlan::new(shape, 9001, 111, "legacy");
    write_through(n, stage, &plan).await?;
    n.cli("sqlite3 ficus-state.db 'SELECT at, route, key, primary_side, legacy_status, new_status FROM dual_writes'");
    Ok(())
}

/// Runs `plan` through the proxy, then checks and tells what the proxy logged: one
/// `dual_writes` row per write, the plan's primary side in each, both sides with the same
/// status, nothing divergent, and every pair of answers alike.
pub async fn write_through(
    n: &mut Narrator<'_>,
    stage: &Stage,
    plan: &WritePlan,
) -> Result<DualWriteLog, DemoError> {
    let state = stage.ws.state();
    let before = dual_write_log(&state, 0).await?;
    let matched_before = write_matches(stage);
    let tally = run_writers(&stage.client, &stage.entry(), plan).await?;
    stage.proxy.flush_shadow().await;
    let log = dual_write_log(&state, before.last_id).await?;
    let matched = write_matches(stage) - matched_before;
    n.say(format!(
        "{}: {} writes in {:.1} s",
        plan.describe(),
        tally.writes,
        tally.seconds
    ));
    let (primary, mirror) = match plan.primary {
        "legacy" => ("legacy", "new"),
        _ => ("new", "legacy"),
    };
    let on_primary = if primary == "legacy" {
        log.primary_legacy
    } else {
        log.primary_new
    };
    n.say(format!(
        "every answer came from {primary} (primary); {mirror} got each write mirrored"
    ));
    n.say(format!(
        "dual_writes log: {} rows, {} with the same status on both sides, {} divergent",
        log.rows, log.agreed, log.divergent
    ));
    n.say(format!(
        "shadow compared each pair of answers: {matched} alike"
    ));
    let writes = tally.writes as i64;
    crate::expect(
        log.rows == writes && on_primary == writes && log.agreed == writes && log.divergent == 0,
        || format!("{writes} writes sent but the dual-write log says {log:?}"),
    )?;
    crate::expect(matched == writes, || {
        format!("{writes} writes, but only {matched} pairs of answers alike")
    })?;
    Ok(log)
}

/// Mirrored writes whose two answers matched, so far (`ficus_shadow_requests_total`).
fn write_matches(stage: &Stage) -> i64 {
    let text = stage.proxy.metrics_text();
    [CREATE_ROUTE, WRITE_ROUTE]
        .iter()
        .filter_map(|r| {
            metric(
                &text,
                &format!("ficus_shadow_requests_total{{result=\"match\",route=\"{r}\"}}"),
            )
        })
        .sum::<f64>() as i64
}
