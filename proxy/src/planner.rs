//! The step planner: runs the routes' step plans (see `plan`) under the control lock. Once a
//! second (the admin thread) it judges every running plan — the phase's evidence from the
//! route's `evidence` record against the gates — and persists what the engine says (a
//! pre-flight begun, a step taken, a rollback or pause) with the evidence that justified it,
//! before applying it to traffic. Operators start, pause, resume and abort plans through the
//! same path (`ficus rollout plan …`, `/admin/routes/{name}/plan`).
//!
//! Several replicas on one PostgreSQL store: every replica judges on its own traffic; a step is
//! a compare-and-set on the plan's version, in one transaction with the percentage change and
//! its audit row, so it is taken once — by whichever replica's evidence sufficed first — and
//! every replica follows (the rollout follower applies the percentage; [`sync`] the cohort).
//! A replica compares the plan with the percentage the *store* gives the route, never with
//! what it has applied so far, so a follower a notification behind does not mistake another
//! replica's step for an outside change.
//!
//! A percentage changed outside the plan (an operator, the guard) stops it: to 0 % it is
//! `failed`, otherwise `paused` until resumed (from wherever the route is then).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::{bp_to_percent, RouteConfig};
use crate::control::{Control, Locked};
use crate::error::ProxyError;
use crate::plan::{
    judge_hold, judge_preflight, next, CohortMismatch, Next, OnFail, Phase, PlanConfig, PlanState,
    Status, StepEvidence, Verdict,
};
use crate::table::Route;
use ficus_core::stamp::rfc3339;
use ficus_state::{Change, PlanWrite};

/// A route's plan as the admin API reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlanStatus {
    /// Route name.
    pub route: String,
    /// The percentage in force.
    pub percent: f64,
    /// The configured steps (percent).
    pub steps: Vec<f64>,
    /// The plan's durable state; `None` before the first `start`.
    pub plan: Option<PlanState>,
    /// The next step's percentage, while there is one.
    pub next_percent: Option<f64>,
    /// How long the current phase has run (seconds, proxy clock).
    pub phase_seconds: Option<f64>,
    /// What a running plan waits for now.
    pub waiting: Option<String>,
    /// The running phase's evidence so far (this replica's traffic).
    pub live: Option<StepEvidence>,
    /// The running pre-flight's cohort mismatches so far (this replica's).
    #[serde(default)]
    pub cohort_mismatches: Vec<CohortMismatch>,
}

/// What a judge did to one plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanEvent {
    /// Route name.
    pub route: String,
    /// The audit action (`plan-promote`, `plan-preflight`, `plan-rollback:<gate>`, ...).
    pub action: String,
}

/// Evidence recorded with a step (audit `detail`): the judged evidence and, after a pre-flight,
/// the cohort's first mismatches.
fn detail(ev: Option<&StepEvidence>, mismatches: &[CohortMismatch], why: Option<&str>) -> String {
    let listed: Vec<&CohortMismatch> = mismatches.iter().take(20).collect();
    json!({ "evidence": ev, "cohort_mismatches": listed, "reason": why }).to_string()
}

fn planned(l: &Locked<'_>, route: &str) -> Result<(RouteConfig, PlanConfig), ProxyError> {
    let rc = l
        .config()
        .route(route)
        .cloned()
        .ok_or_else(|| ProxyError::UnknownRoute(route.to_string()))?;
    let cfg = rc.plan.clone().ok_or_else(|| ProxyError::Plan {
        route: route.to_string(),
        message: "has no [routes.plan] in the configuration".into(),
    })?;
    Ok((rc, cfg))
}

/// The stored plan of `route` and its version (0: none).
fn stored(l: &Locked<'_>, route: &str) -> Result<(i64, Option<PlanState>), ProxyError> {
    let Some(row) = l
        .state_ref()
        .plans()?
        .into_iter()
        .find(|r| r.route == route)
    else {
        return Ok((0, None));
    };
    let state = serde_json::from_str(&row.state).map_err(|e| ProxyError::Plan {
        route: route.to_string(),
        message: format!("stored plan is unreadable ({e}); `ficus rollout plan start` replaces it"),
    })?;
    Ok((row.version, Some(state)))
}

/// One plan write: the new state with its changes and audit row; `false` when another replica
/// wrote first.
struct Write<'a> {
    route: &'a str,
    version: i64,
    state: &'a PlanState,
    change: Option<(u32, u32, u32)>,
    note_bp: u32,
    actor: &'a str,
    action: String,
    detail: String,
}

fn write(l: &mut Locked<'_>, w: Write<'_>) -> Result<bool, ProxyError> {
    let state = serde_json::to_string(w.state).map_err(|e| ProxyError::Plan {
        route: w.route.to_string(),
        message: format!("cannot encode the plan: {e}"),
    })?;
    let changes = w
        .change
        .map(|(from, to, config_bp)| Change {
            route: w.route.to_string(),
            from_bp: from,
            to_bp: to,
            keep_override: Some(config_bp),
        })
        .into_iter()
        .collect();
    Ok(l.state().write_plan(&PlanWrite {
        route: w.route.to_string(),
        expected_version: w.version,
        state,
        changes,
        note_bp: w.note_bp,
        actor: w.actor.to_string(),
        action: w.action,
        detail: Some(w.detail),
    })?)
}

/// The running phase's verdict and evidence, and how long it has run (µs).
fn evaluate(
    route: &Route,
    cfg: &PlanConfig,
    s: &PlanState,
    now_us: i64,
) -> (Verdict, StepEvidence, i64) {
    let elapsed_us = (now_us - s.phase_since_us).max(0);
    let Some(e) = route.evidence.as_ref() else {
        return (
            Verdict::Wait("no evidence record".into()),
            StepEvidence::default(),
            elapsed_us,
        );
    };
    let since_ms = e.now_ms().saturating_sub((elapsed_us / 1000) as u64);
    let span = cfg.span();
    let t = e.totals(span, since_ms);
    let window_s = Duration::from_micros(elapsed_us as u64).min(span).as_secs();
    let (v, ev) = match (s.phase, s.cohort()) {
        (Phase::Preflight, Some(c)) => judge_preflight(cfg, &t, window_s, c),
        _ => judge_hold(
            cfg,
            &t,
            window_s,
            route.plan.as_ref().is_some_and(|p| p.sampled),
        ),
    };
    (v, ev, elapsed_us)
}

/// Judges every running plan now and takes the steps their evidence allows. One call at a
/// time per process (the admin thread's loop, or [`crate::ProxyHandle::check_plans`]); it
/// holds the control lock per route.
pub(crate) fn judge(control: &Control) -> Vec<PlanEvent> {
    let table = control.shared.table.load_full();
    let mut events = Vec::new();
    for route in table.routes.iter().filter(|r| r.plan.is_some()) {
        match judge_route(control, route) {
            Ok(Some(ev)) => events.push(ev),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(route = %route.name, error = %e, "plan: cannot judge; will retry")
            }
        }
    }
    events
}

fn judge_route(control: &Control, route: &Route) -> Result<Option<PlanEvent>, ProxyError> {
    let mut l = control.locked();
    let (rc, cfg) = planned(&l, &route.name)?;
    let (version, state) = stored(&l, &route.name)?;
    let run = route.plan.as_ref();
    let mut s = match state {
        Some(s) if s.status == Status::Running => s,
        other => {
            if let Some(r) = run {
                r.set_cohort(None);
            }
            publish(control, route, other.as_ref(), None);
            return Ok(None);
        }
    };
    let now_us = control.clock().unix_us();
    let name = route.name.to_string();
    let stored_bp = l.stored_bp(&rc)?;
    if stored_bp != s.at_bp {
        // Changed outside the plan: the plan stops.
        let to_zero = stored_bp == 0;
        s.status = if to_zero {
            Status::Failed
        } else {
            Status::Paused
        };
        s.reason = Some(format!(
            "the route's percentage changed outside the plan: {}% (the plan had {}%)",
            bp_to_percent(stored_bp),
            bp_to_percent(s.at_bp)
        ));
        let action = if to_zero {
            "plan-rollback:outside"
        } else {
            "plan-pause:outside"
        };
        let det = detail(None, &[], s.reason.as_deref());
        if write(
            &mut l,
            Write {
                route: &name,
                version,
                state: &s,
                change: None,
                note_bp: stored_bp,
                actor: "plan",
                action: action.into(),
                detail: det,
            },
        )? {
            tracing::warn!(route = %name, reason = ?s.reason, "plan stopped");
            return Ok(Some(done(control, route, &s, action)));
        }
        return Ok(None);
    }
    let (verdict, ev, elapsed_us) = evaluate(route, &cfg, &s, now_us);
    let decision = next(&cfg, &s, &verdict, elapsed_us);
    let was_preflight = s.phase == Phase::Preflight;
    let mismatches = match (was_preflight, run) {
        (true, Some(r)) => r.mismatches(),
        _ => Vec::new(),
    };
    let (action, change) = match &decision {
        Next::Wait(why) => {
            publish(control, route, Some(&s), Some((&ev, why, elapsed_us)));
            return Ok(None);
        }
        Next::Preflight { .. } => {
            s.phase = Phase::Preflight;
            s.phase_since_us = now_us;
            s.reason = None;
            ("plan-preflight".to_string(), None)
        }
        Next::Promote { from, to, done } => {
            if was_preflight {
                s.cohort_mismatches = mismatches.clone();
            }
            s.at_bp = *to;
            s.next += 1;
            s.phase = Phase::Hold;
            s.phase_since_us = now_us;
            s.step_since_us = now_us;
            s.reason = None;
            if *done {
                s.status = Status::Done;
            }
            (
                "plan-promote".to_string(),
                Some((*from, *to, rc.percent_bp)),
            )
        }
        Next::Fail {
            on_fail,
            gate,
            detail: why,
        } => {
            if was_preflight {
                s.cohort_mismatches = mismatches.clone();
            }
            s.reason = Some(format!("{} gate failed: {why}", s.phase.as_str()));
            match on_fail {
                OnFail::Rollback => {
                    s.status = Status::Failed;
                    let from = s.at_bp;
                    s.at_bp = 0;
                    (
                        format!("plan-rollback:{gate}"),
                        Some((from, 0, rc.percent_bp)),
                    )
                }
                OnFail::Pause => {
                    s.status = Status::Paused;
                    (format!("plan-pause:{gate}"), None)
                }
            }
        }
    };
    s.last = Some(ev.clone());
    let det = detail(Some(&ev), &mismatches, s.reason.as_deref());
    let ok = write(
        &mut l,
        Write {
            route: &name,
            version,
            state: &s,
            change,
            note_bp: s.at_bp,
            actor: "plan",
            action: action.clone(),
            detail: det,
        },
    )?;
    if !ok {
        return Ok(None);
    }
    if let Some((_, to, _)) = change {
        l.apply(&name, to);
        control.shared.metrics.rollout_changed(&name, "plan");
        if to == 0 {
            control.shared.metrics.rollbacks.inc();
        }
    }
    tracing::info!(route = %name, action = %action, percent = bp_to_percent(s.at_bp), reason = ?s.reason, "plan step");
    Ok(Some(done(control, route, &s, &action)))
}

/// After a recorded event: the cohort and the metrics follow the new state.
fn done(control: &Control, route: &Route, s: &PlanState, action: &str) -> PlanEvent {
    if let Some(r) = &route.plan {
        r.set_cohort(s.cohort());
    }
    let short = action
        .strip_prefix("plan-")
        .and_then(|a| a.split(':').next())
        .unwrap_or(action);
    control.shared.metrics.plan.step(&route.name, short);
    if s.status == Status::Done {
        control.shared.metrics.plan.step(&route.name, "done");
    }
    publish(control, route, Some(s), None);
    PlanEvent {
        route: route.name.to_string(),
        action: action.to_string(),
    }
}

/// The plan's gauges: status, step, time at the step, pre-flight, gate values.
fn publish(
    control: &Control,
    route: &Route,
    s: Option<&PlanState>,
    live: Option<(&StepEvidence, &str, i64)>,
) {
    let m = &control.shared.metrics.plan;
    let name: &str = &route.name;
    let Some(s) = s else { return };
    for st in Status::ALL {
        if let Ok(g) = m.status.get_metric_with_label_values(&[name, st.as_str()]) {
            g.set(i64::from(st == s.status));
        }
    }
    if let Ok(g) = m.step_percent.get_metric_with_label_values(&[name]) {
        g.set(bp_to_percent(s.at_bp));
    }
    let now_us = control.clock().unix_us();
    if let Ok(g) = m.step_seconds.get_metric_with_label_values(&[name]) {
        g.set((now_us - s.step_since_us).max(0) as f64 / 1e6);
    }
    if let Ok(g) = m.preflight_active.get_metric_with_label_values(&[name]) {
        g.set(i64::from(s.cohort().is_some()));
    }
    let ev = live.map(|(e, _, _)| e).or(s.last.as_ref());
    for gv in ev.map(|e| e.gates.as_slice()).unwrap_or_default() {
        if let Ok(g) = m
            .gate_threshold
            .get_metric_with_label_values(&[name, &gv.gate])
        {
            g.set(gv.threshold);
        }
        if let (Some(v), Ok(g)) = (
            gv.value,
            m.gate_value.get_metric_with_label_values(&[name, &gv.gate]),
        ) {
            g.set(v);
        }
    }
}

/// Sets every planned route's pre-flight cohort from the stored plans (after another
/// replica's change, at start).
pub(crate) fn sync(control: &Control) -> Result<(), ProxyError> {
    let table = control.shared.table.load_full();
    let l = control.locked();
    let rows = l.state_ref().plans()?;
    for route in &table.routes {
        let Some(run) = &route.plan else { continue };
        let s: Option<PlanState> = rows
            .iter()
            .find(|r| *r.route == *route.name)
            .and_then(|r| serde_json::from_str(&r.state).ok());
        run.set_cohort(s.as_ref().and_then(PlanState::cohort));
        publish(control, route, s.as_ref(), None);
    }
    Ok(())
}

/// `ficus rollout plan status ROUTE`.
pub(crate) fn status(control: &Control, route: &str) -> Result<PlanStatus, ProxyError> {
    let table = control.shared.table.load_full();
    let l = control.locked();
    let (rc, cfg) = planned(&l, route)?;
    let (_, s) = stored(&l, route)?;
    let percent = bp_to_percent(l.stored_bp(&rc)?);
    drop(l);
    let r = table.route(route);
    let now_us = control.clock().unix_us();
    let running = s.as_ref().filter(|s| s.status == Status::Running);
    let (live, waiting, phase_seconds) = match (running, r) {
        (Some(s), Some(r)) => {
            let (v, ev, elapsed) = evaluate(r, &cfg, s, now_us);
            let waiting = match next(&cfg, s, &v, elapsed) {
                Next::Wait(w) => Some(w),
                _ => None,
            };
            (Some(ev), waiting, Some(elapsed as f64 / 1e6))
        }
        _ => (None, None, None),
    };
    Ok(PlanStatus {
        route: route.to_string(),
        percent,
        steps: cfg.steps.iter().map(|&b| bp_to_percent(b)).collect(),
        next_percent: running.and_then(|s| s.next_bp()).map(bp_to_percent),
        cohort_mismatches: match (
            running.and_then(|s| s.cohort()),
            r.and_then(|r| r.plan.as_ref()),
        ) {
            (Some(_), Some(p)) => p.mismatches(),
            _ => Vec::new(),
        },
        plan: s,
        phase_seconds,
        waiting,
        live,
    })
}

/// What an operator asks of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanCommand {
    /// Start the route's plan from where the route is (refused while one runs or is paused).
    Start,
    /// Stop a running plan at its step.
    Pause,
    /// Run a paused plan again, from wherever the route is, with fresh evidence.
    Resume,
    /// End the plan; the route stays where it is.
    Abort,
}

use PlanCommand as Command;

impl PlanCommand {
    /// `start`, `pause`, `resume` or `abort`.
    pub fn parse(s: &str) -> Option<PlanCommand> {
        Some(match s {
            "start" => Command::Start,
            "pause" => Command::Pause,
            "resume" => Command::Resume,
            "abort" => Command::Abort,
            _ => return None,
        })
    }

    /// `start`, `pause`, `resume` or `abort`.
    pub fn as_str(self) -> &'static str {
        self.action().trim_start_matches("plan-")
    }

    fn action(self) -> &'static str {
        match self {
            Command::Start => "plan-start",
            Command::Pause => "plan-pause",
            Command::Resume => "plan-resume",
            Command::Abort => "plan-abort",
        }
    }
}

/// `ficus rollout plan start|pause|resume|abort ROUTE` on behalf of `actor`: persisted (and
/// audited) before it takes effect.
pub(crate) fn command(
    control: &Control,
    route: &str,
    cmd: Command,
    actor: &str,
) -> Result<PlanStatus, ProxyError> {
    {
        let mut l = control.locked();
        let (rc, cfg) = planned(&l, route)?;
        let (version, state) = stored(&l, route)?;
        let bp = l.stored_bp(&rc)?;
        let now_us = control.clock().unix_us();
        let refuse = |m: String| ProxyError::Plan {
            route: route.to_string(),
            message: m,
        };
        let status = state.as_ref().map(|s| s.status);
        let s = match (cmd, state) {
            (Command::Start, Some(s)) if !s.status.ended() => {
                return Err(refuse(format!(
                    "a plan is {} (at {}%); pause, resume or abort it",
                    s.status.as_str(),
                    bp_to_percent(s.at_bp)
                )))
            }
            (Command::Start, _) => {
                let mut s =
                    PlanState::start(&cfg, bp, actor, rfc3339(control.clock().utc()), now_us);
                s.reason = (s.status == Status::Done)
                    .then(|| "the route is at or past the last step".into());
                s
            }
            (Command::Pause, Some(mut s)) if s.status == Status::Running => {
                s.status = Status::Paused;
                s.reason = Some(format!("paused by {actor}"));
                s
            }
            (Command::Resume, Some(mut s)) if s.status == Status::Paused => {
                // From wherever the route is now, with fresh evidence.
                let again = PlanState::start(&cfg, bp, actor, s.started_at.clone(), now_us);
                (s.status, s.phase, s.at_bp, s.next, s.steps) =
                    (again.status, Phase::Hold, bp, again.next, again.steps);
                s.phase_since_us = now_us;
                s.step_since_us = now_us;
                s.reason = None;
                s
            }
            (Command::Abort, Some(mut s)) if !s.status.ended() => {
                s.status = Status::Aborted;
                s.reason = Some(format!("aborted by {actor} at {}%", bp_to_percent(bp)));
                s
            }
            (c, _) => {
                return Err(refuse(format!(
                    "cannot {} a plan that is {}",
                    c.as_str(),
                    status.map_or("not started", Status::as_str)
                )))
            }
        };
        let det = detail(None, &[], s.reason.as_deref());
        let w = Write {
            route,
            version,
            state: &s,
            change: None,
            note_bp: bp,
            actor,
            action: cmd.action().into(),
            detail: det,
        };
        if !write(&mut l, w)? {
            return Err(refuse(
                "another replica changed the plan at the same moment; try again".into(),
            ));
        }
        drop(l);
        let table = control.shared.table.load_full();
        if let Some(r) = table.route(route) {
            done(control, r, &s, cmd.action());
        }
        tracing::info!(route, actor, action = cmd.action(), "plan");
    }
    status(control, route)
}
