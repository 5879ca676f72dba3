//! Chapter 11, the rollback guard: build v3 of the new service ships with a slow query; with
//! `[routes.guard]` on the read route the proxy sees the new side's p99 break the limit and
//! sets the route to 0 % by itself — audited as actor `guard` with the reason, counted in
//! `/metrics`. Then v3 is withdrawn and an operator raises reads again (the guard re-arms).

use std::time::{Duration, Instant};

use ficus_proxy::config::bp_to_percent;
use serde::Deserialize;

use crate::narrator::Narrator;
use crate::proxy_config::{Guard, Phase, READ_ROUTE};
use crate::stage::{serve_new_build, Stage};
use crate::stores::metric;
use crate::traffic::{drive_reads, read_as, task};
use crate::DemoError;

/// v3's delay on every answer.
const SLOW_MS: u64 = 400;
/// The guard: p99 above 150 ms over 5 s, with at least 20 new-side requests behind it.
pub const GUARD: Guard = Guard {
    max_p99_ms: 150,
    window_s: 5,
    min_requests: 20,
};
/// Users reading at once from the slow build.
const USERS: u32 = 40;

pub async fn guard_rollback(n: &mut Narrator<'_>, stage: &mut Stage) -> Result<(), DemoError> {
    n.step("Guard: the proxy rolls a slow build back by itself");
    let v3 = serve_new_build(&stage.pg_url, &[&format!("slow:{SLOW_MS}")]).await?;
    n.say(format!(
        "new v3      (PostgreSQL)  {}   a slow query: every answer takes {SLOW_MS} ms",
        v3.url()
    ));
    stage.reconfigure(Phase {
        new_url: v3.url(),
        guard: Some(GUARD),
        ..stage.phase().clone()
    })?;
    n.say(format!(
        "[backends.new] → v3, and {READ_ROUTE} gets [routes.guard] max_p99_ms = {}, window_s = {}, min_requests = {}",
        GUARD.max_p99_ms, GUARD.window_s, GUARD.min_requests
    ));

    let started = Instant::now();
    slow_reads(stage).await?;
    n.say(format!(
        "{USERS} users read at once ({READ_ROUTE} is at 100 %): all answered by v3, slowly"
    ));
    let fired = stage
        .wait_for_percent(READ_ROUTE, 0.0, Duration::from_secs(10))
        .await?;
    crate::expect(fired.is_some(), || {
        format!("the guard did not roll {READ_ROUTE} back within 10 s")
    })?;
    n.say(format!(
        "{:.1} s after the first slow read the proxy had set {READ_ROUTE} to 0 % by itself",
        started.elapsed().as_secs_f64()
    ));
    show_audit(n, stage).await?;

    stage.reconfigure(Phase {
        new_url: stage.v1.url(),
        ..stage.phase().clone()
    })?;
    stage.proxy.flush_shadow().await;
    v3.shutdown().await;
    n.say("v3 withdrawn: [backends.new] → v1 again, ficus.toml reloaded");
    let back = drive_reads(&stage.client, &stage.entry(), 10).await?;
    crate::expect(back.on_new.is_empty(), || {
        format!(
            "{} reads still went to new after the guard fired",
            back.on_new.len()
        )
    })?;
    n.say(format!(
        "reads stay on legacy: {} of 10 answered by legacy",
        back.legacy
    ));
    let c = stage.operator.set_rollout(READ_ROUTE, 100.0).await?;
    n.say(format!(
        "an operator raises {} again: {}% → {}% (the guard re-arms with a fresh window)",
        c.route, c.from, c.to
    ));
    n.cli(format!("ficus rollout set {READ_ROUTE} 100"));
    Ok(())
}

/// `USERS` reads at once through the proxy; each must come from the new side.
async fn slow_reads(stage: &Stage) -> Result<(), DemoError> {
    let mut reads = tokio::task::JoinSet::new();
    for u in 0..USERS {
        let (client, entry) = (stage.client.clone(), stage.entry());
        reads.spawn(async move { read_as(&client, &entry, u, &task(101 + u)).await });
    }
    while let Some(r) = reads.join_next().await {
        let r = r??;
        crate::expect(r.header("x-ficus-backend") == "new", || {
            format!(
                "a read at 100 % was answered by {:?}",
                r.header("x-ficus-backend")
            )
        })?;
    }
    Ok(())
}

/// The rows of `GET /admin/audit` the demo shows.
#[derive(Deserialize)]
struct AuditPage {
    audit: Vec<AuditRow>,
}

#[derive(Deserialize)]
struct AuditRow {
    at: String,
    route: String,
    from_bp: u32,
    to_bp: u32,
    actor: String,
    action: String,
}

/// The guard's audit entry and metric, as an operator finds them.
async fn show_audit(n: &mut Narrator<'_>, stage: &Stage) -> Result<(), DemoError> {
    let page: AuditPage = stage
        .operator
        .call(http::Method::GET, "/admin/audit?limit=20", None)
        .await?;
    let entry = page
        .audit
        .iter()
        .find(|a| a.route == READ_ROUTE && a.actor == "guard")
        .ok_or_else(|| DemoError::Step(format!("no audit entry by the guard for {READ_ROUTE}")))?;
    n.cli("curl -s $FICUS_ADMIN_URL/admin/audit?limit=5");
    n.say(format!(
        "audit: {}  {}  {}% → {}%  actor {}  action {}",
        entry.at,
        entry.route,
        bp_to_percent(entry.from_bp),
        bp_to_percent(entry.to_bp),
        entry.actor,
        entry.action
    ));
    crate::expect(entry.action == "rollback:p99", || {
        format!(
            "the guard gave reason {:?}, expected rollback:p99",
            entry.action
        )
    })?;
    let series = format!("ficus_guard_rollbacks_total{{reason=\"p99\",route=\"{READ_ROUTE}\"}}");
    let count = metric(&stage.proxy.metrics_text(), &series).unwrap_or(0.0);
    n.say(format!("/metrics: {series} {count}"));
    crate::expect(count == 1.0, || format!("{series} is {count}, expected 1"))
}
