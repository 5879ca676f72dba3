//! Chapters 14 and 15, step plans. First a `[routes.plan]` takes reads from 0 to 100 % on v1
//! by itself: at each step it holds until its gates pass with enough requests behind them,
//! pre-flights the next cohort (the users the next step moves, shadowed to v1), then moves —
//! every step in the audit log with its evidence. Then the next build has a quirk only a few
//! accounts see (a feature flag left on for beta accounts), and those accounts all sit in the
//! cohort the step from 10 to 50 % would move: the current 10 % is clean (the hold judges the
//! requests v4 answered), the pre-flight finds
//! the quirk in the next cohort and the plan stops before a single one of those users moves.
//! Phases are a second each (the proxy judges once a second), so the chapters take seconds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ficus_proxy::plan::{PlanState, Status};
use ficus_proxy::split::bucket;
use ficus_proxy::PlanCommand;
use serde::Deserialize;

use crate::narrator::Narrator;
use crate::proxy_config::{Phase, Plan, PLAN_STEPS, READ_ROUTE};
use crate::stage::{serve_new_build, Stage};
use crate::traffic::task;
use crate::DemoError;

/// Users reading, each round.
const USERS: u32 = 200;
/// Beta accounts among them (all in the cohort of the step from 10 to 50 %).
const BETA: usize = 25;

/// Chapter 14.
pub async fn plan_promotes(n: &mut Narrator<'_>, stage: &mut Stage) -> Result<(), DemoError> {
    n.step("Plan: reads move to v1 step by step, on evidence, by themselves");
    stage.reconfigure(Phase {
        new_url: stage.v1.url(),
        plan: Some(Plan {
            min_requests: 10,
            pause: false,
        }),
        ..stage.phase().clone()
    })?;
    let c = stage.operator.set_rollout(READ_ROUTE, 0.0).await?;
    n.say(format!(
        "{READ_ROUTE} back to {}% by hand, then [routes.plan] steps = {PLAN_STEPS:?}, hold = \"1s\", \
         preflight = \"1s\", min_requests = 10, max_error_rate = 0.01, max_mismatch_rate = 0.01",
        c.to
    ));
    let started = Instant::now();
    stage.operator.plan(READ_ROUTE, PlanCommand::Start).await?;
    n.cli(format!("ficus rollout plan start {READ_ROUTE}"));
    let readers = Readers::start(stage, &[]);
    let end = wait_until(
        stage,
        |s| s.status != Status::Running,
        Duration::from_secs(60),
    )
    .await;
    readers.stop().await?;
    let s = end?;
    show_steps(n, stage).await?;
    crate::expect(s.status == Status::Done, || {
        format!("the plan ended {:?} ({:?})", s.status, s.reason)
    })?;
    let percent = stage.route(READ_ROUTE).await?.percent;
    crate::expect(percent == 100.0, || {
        format!("reads at {percent}%, not 100%")
    })?;
    n.say(format!(
        "{READ_ROUTE} at 100 % in {:.1} s, no operator involved",
        started.elapsed().as_secs_f64()
    ));
    n.cli(format!("ficus rollout plan status {READ_ROUTE}"));
    Ok(())
}

/// Chapter 15.
pub async fn preflight_stops(n: &mut Narrator<'_>, stage: &mut Stage) -> Result<(), DemoError> {
    n.step("Plan: the pre-flight stops a build whose quirk only the next users would meet");
    let v4 = serve_new_build(&stage.pg_url, &["beta-accounts"]).await?;
    n.say(format!(
        "new v4      (PostgreSQL)  {}   a flag left on: beta accounts (X-Account: beta) get an extra field",
        v4.url()
    ));
    stage.reconfigure(Phase {
        new_url: v4.url(),
        plan: Some(Plan {
            min_requests: 10,
            pause: true,
        }),
        ..stage.phase().clone()
    })?;
    stage.operator.set_rollout(READ_ROUTE, 10.0).await?;
    let beta = beta_users();
    n.say(format!(
        "{READ_ROUTE} at 10 % on v4; {BETA} of the {USERS} users are beta accounts, and the hash put \
         every one of them in buckets [10 %, 50 %): the users the next step would move"
    ));
    stage.operator.plan(READ_ROUTE, PlanCommand::Start).await?;
    n.say("plan started (on_fail = \"pause\")");
    let readers = Readers::start(stage, &beta);
    let end = wait_until(
        stage,
        |s| s.status != Status::Running,
        Duration::from_secs(30),
    )
    .await;
    readers.stop().await?;
    let s = end?;
    crate::expect(s.status == Status::Paused, || {
        format!(
            "the plan ended {:?} ({:?}), expected paused at its pre-flight",
            s.status, s.reason
        )
    })?;
    let percent = stage.route(READ_ROUTE).await?.percent;
    crate::expect(percent == 10.0, || format!("reads moved to {percent}%"))?;
    n.say(format!(
        "the plan paused at 10 %: {}",
        s.reason.as_deref().unwrap_or("?")
    ));
    let ev = s
        .last
        .as_ref()
        .ok_or_else(|| DemoError::Step("the paused plan has no evidence".into()))?;
    if let Some(c) = &ev.cohort {
        n.say(format!(
            "cohort [{}%, {}%): {} requests shadowed to v4, {} compared, {} mismatched",
            c.from_percent, c.to_percent, c.mirrored, c.compared, c.mismatched
        ));
    }
    n.say(format!(
        "the current cohort (the 10 % v4 answers): {} comparisons, mismatch rate {:.2} %",
        ev.compared,
        ev.mismatch_rate.unwrap_or(0.0) * 100.0
    ));
    crate::expect(ev.mismatch_rate.unwrap_or(0.0) == 0.0, || {
        "the current cohort was not clean".to_string()
    })?;
    let listed = &s.cohort_mismatches;
    crate::expect(!listed.is_empty(), || {
        "no cohort mismatch listed".to_string()
    })?;
    for m in listed.iter().take(3) {
        n.say(format!(
            "  mismatch: {}  user {}  request {}",
            m.request, m.key, m.request_id
        ));
    }
    crate::expect(listed.iter().all(|m| beta.contains(&m.key)), || {
        "a mismatch of a user who is not a beta account".to_string()
    })?;
    n.cli(format!("ficus rollout plan status {READ_ROUTE}   # the gate, the evidence, the cohort's mismatches"));

    // Back to where the story was: v1, reads at 100 %, no plan.
    stage.operator.plan(READ_ROUTE, PlanCommand::Abort).await?;
    stage.reconfigure(Phase {
        new_url: stage.v1.url(),
        plan: None,
        ..stage.phase().clone()
    })?;
    stage.proxy.flush_shadow().await;
    v4.shutdown().await;
    stage.operator.set_rollout(READ_ROUTE, 100.0).await?;
    n.say("plan aborted, v4 withdrawn: [backends.new] → v1, reads back at 100 %");
    n.cli(format!("ficus rollout plan abort {READ_ROUTE}"));
    Ok(())
}

/// `user-N` ids whose bucket is in [10 %, 50 %), the first [`BETA`] of them.
fn beta_users() -> Vec<String> {
    (0..USERS)
        .map(|u| format!("user-{u}"))
        .filter(|u| (1000..5000).contains(&bucket(u.as_bytes())))
        .take(BETA)
        .collect()
}

/// Users reading through the proxy in rounds until stopped; `beta` send `X-Account: beta`.
struct Readers {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<(), DemoError>>,
}

impl Readers {
    fn start(stage: &Stage, beta: &[String]) -> Readers {
        let stop = Arc::new(AtomicBool::new(false));
        let (client, entry, beta) = (stage.client.clone(), stage.entry(), beta.to_vec());
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            while !flag.load(Ordering::Relaxed) {
                for u in 0..USERS {
                    let user = format!("user-{u}");
                    let mut headers = vec![("x-user-id", user.as_str())];
                    if beta.contains(&user) {
                        headers.push(("x-account", "beta"));
                    }
                    let url = format!("{entry}/api/tasks/{}", task(101 + (u % 50)));
                    let r = client.send("GET", &url, None, &headers).await?;
                    crate::expect(r.status == 200, || format!("a read answered {}", r.status))?;
                }
            }
            Ok(())
        });
        Readers { stop, task }
    }

    async fn stop(self) -> Result<(), DemoError> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await?
    }
}

/// Polls the plan until `done` says so, up to `within`.
async fn wait_until(
    stage: &Stage,
    done: impl Fn(&PlanState) -> bool,
    within: Duration,
) -> Result<PlanState, DemoError> {
    let started = Instant::now();
    loop {
        let s = stage.operator.plan_status(READ_ROUTE).await?;
        if let Some(p) = s.plan.filter(|p| done(p)) {
            return Ok(p);
        }
        if started.elapsed() > within {
            return Err(DemoError::Step(format!(
                "the plan of {READ_ROUTE} did not get there within {within:?} (waiting: {:?})",
                s.waiting
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[derive(Deserialize)]
struct AuditPage {
    audit: Vec<AuditRow>,
}

#[derive(Deserialize)]
struct AuditRow {
    route: String,
    from_bp: u32,
    to_bp: u32,
    actor: String,
    action: String,
    detail: Option<String>,
}

/// The plan's audit rows since its start, oldest first, with their evidence.
async fn show_steps(n: &mut Narrator<'_>, stage: &Stage) -> Result<(), DemoError> {
    let page: AuditPage = stage
        .operator
        .call(http::Method::GET, "/admin/audit?limit=40", None)
        .await?;
    let mut rows: Vec<&AuditRow> = page
        .audit
        .iter()
        .filter(|a| a.route == READ_ROUTE)
        .take_while(|a| a.action != "plan-start")
        .filter(|a| a.actor == "plan")
        .collect();
    rows.reverse();
    for a in rows {
        let ev = a
            .detail
            .as_deref()
            .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
            .map(|d| d["evidence"].clone())
            .unwrap_or_default();
        let what = if let Some(c) = ev.get("cohort").filter(|c| !c.is_null()) {
            format!(
                "cohort [{}%, {}%): {} compared, {} mismatched",
                c["from_percent"], c["to_percent"], c["compared"], c["mismatched"]
            )
        } else {
            format!(
                "new {} requests, 5xx {}, p99 {} ms | legacy {} requests, p99 {} ms | {} comparisons",
                ev["new"]["requests"],
                ev["new"]["error_rate"],
                ev["new"]["p99_ms"],
                ev["legacy"]["requests"],
                ev["legacy"]["p99_ms"],
                ev["compared"]
            )
        };
        n.say(format!(
            "{:<15} {:>5}% → {:>5}%   {what}",
            a.action,
            f64::from(a.from_bp) / 100.0,
            f64::from(a.to_bp) / 100.0
        ));
    }
    n.cli("curl -s $FICUS_ADMIN_URL/admin/audit   # each step with its evidence (detail)");
    Ok(())
}
