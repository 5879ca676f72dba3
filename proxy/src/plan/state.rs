//! A plan's durable state (stored as JSON in the state store's `plan` table) and the engine
//! that moves it: given the state, the configuration, the phase's verdict and the time, what
//! happens next. Pure: no I/O, no clock of its own — `planner` reads the evidence, asks
//! [`next`], and persists what it says before applying it.
//!
//! A plan runs through its steps: at each step it *holds* (at least `hold`, with the gates
//! passing over the step's evidence), then — with `preflight` on — *pre-flights* the next
//! cohort (the keys whose bucket is in `[this step, next step)`, shadowed to the new side for
//! at least `preflight`), then moves to the next step. Reaching the last step ends it (`done`;
//! the route's guard, if any, keeps watching). A failed gate rolls the route back to 0 %
//! (`failed`) or pauses the plan, as `on_fail` says. A plan starting at 0 % has nothing to hold
//! at: it pre-flights (or moves to) its first step at once.

use serde::{Deserialize, Serialize};

use super::config::{OnFail, PlanConfig};
use super::gates::{StepEvidence, Verdict};

/// Where a plan stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Judged once a second; moves on evidence.
    Running,
    /// Stopped at its step (by an operator, a failed gate with `on_fail = "pause"`, or a
    /// percentage changed outside the plan) until resumed or aborted.
    Paused,
    /// Reached its last step.
    Done,
    /// A gate failed and the route was rolled back.
    Failed,
    /// Ended by an operator.
    Aborted,
}

impl Status {
    /// `running`, `paused`, `done`, `failed`, `aborted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Done => "done",
            Status::Failed => "failed",
            Status::Aborted => "aborted",
        }
    }

    /// Every status, in metric order.
    pub const ALL: [Status; 5] = [
        Status::Running,
        Status::Paused,
        Status::Done,
        Status::Failed,
        Status::Aborted,
    ];

    /// Whether the plan is over (a new one may start).
    pub fn ended(self) -> bool {
        matches!(self, Status::Done | Status::Failed | Status::Aborted)
    }
}

/// What a running plan is doing at its step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Staying at the step, gathering the step's evidence.
    Hold,
    /// Shadowing the next cohort to the new side.
    Preflight,
}

impl Phase {
    /// `hold` or `preflight`.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Hold => "hold",
            Phase::Preflight => "preflight",
        }
    }
}

/// A mismatch of the pre-flight cohort (its diff is in the shadow store under `request_id`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CohortMismatch {
    /// The proxy's request id (`ficus shadow show`, the admin page's mismatches).
    pub request_id: String,
    /// Method and path (with query) of the request.
    pub request: String,
    /// The request's sticky key.
    pub key: String,
    /// The new side's status, when it answered.
    pub new_status: Option<u16>,
}

/// A plan's durable state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanState {
    /// Where it stands.
    pub status: Status,
    /// What it does at its step.
    pub phase: Phase,
    /// The percentage the plan put the route at (basis points).
    pub at_bp: u32,
    /// The steps (basis points) as configured when the plan started.
    pub steps: Vec<u32>,
    /// Index in `steps` of the next step.
    pub next: usize,
    /// When the phase began (µs since 1970 on the proxy's clock).
    pub phase_since_us: i64,
    /// When the plan moved the route to its step (µs since 1970).
    #[serde(default)]
    pub step_since_us: i64,
    /// Who started it, and when (RFC 3339).
    pub started_by: String,
    /// See `started_by`.
    pub started_at: String,
    /// Why it paused, failed or waits.
    #[serde(default)]
    pub reason: Option<String>,
    /// The evidence of its last verdict.
    #[serde(default)]
    pub last: Option<StepEvidence>,
    /// The mismatches of the cohort of the last pre-flight (at most [`MAX_LISTED`]).
    #[serde(default)]
    pub cohort_mismatches: Vec<CohortMismatch>,
}

/// Cohort mismatches kept with a plan.
pub const MAX_LISTED: usize = 50;

impl PlanState {
    /// A plan starting with the route at `at_bp`.
    pub fn start(cfg: &PlanConfig, at_bp: u32, by: &str, at: String, now_us: i64) -> PlanState {
        let next = cfg
            .steps
            .iter()
            .position(|&s| s > at_bp)
            .unwrap_or(cfg.steps.len());
        PlanState {
            status: if next == cfg.steps.len() {
                Status::Done
            } else {
                Status::Running
            },
            phase: Phase::Hold,
            at_bp,
            steps: cfg.steps.clone(),
            next,
            phase_since_us: now_us,
            step_since_us: now_us,
            started_by: by.into(),
            started_at: at,
            reason: None,
            last: None,
            cohort_mismatches: Vec::new(),
        }
    }

    /// The next step's percentage (basis points), while there is one.
    pub fn next_bp(&self) -> Option<u32> {
        self.steps.get(self.next).copied()
    }

    /// The cohort a pre-flight shadows: `[at_bp, next step)`, while pre-flighting.
    pub fn cohort(&self) -> Option<(u32, u32)> {
        (self.status == Status::Running && self.phase == Phase::Preflight)
            .then(|| Some((self.at_bp, self.next_bp()?)))
            .flatten()
    }
}

/// What the engine says to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Nothing yet (with what it waits for).
    Wait(String),
    /// Begin shadowing the next cohort.
    Preflight { lo: u32, hi: u32 },
    /// Move the route to the next step (`done`: it is the last).
    Promote { from: u32, to: u32, done: bool },
    /// A gate failed: roll back or pause, as configured.
    Fail {
        on_fail: OnFail,
        gate: String,
        detail: String,
    },
}

/// What a running plan does next, from its phase's verdict and how long the phase has run.
pub fn next(cfg: &PlanConfig, s: &PlanState, verdict: &Verdict, elapsed_us: i64) -> Next {
    let Some(to) = s.next_bp() else {
        return Next::Wait("no step left".into());
    };
    let promote = Next::Promote {
        from: s.at_bp,
        to,
        done: s.next + 1 >= s.steps.len(),
    };
    let after_hold = if cfg.preflight.is_zero() {
        promote.clone()
    } else {
        Next::Preflight {
            lo: s.at_bp,
            hi: to,
        }
    };
    // Nothing runs on the new side at 0 %: there is nothing to hold at.
    if s.phase == Phase::Hold && s.at_bp == 0 {
        return after_hold;
    }
    let (needed, then) = match s.phase {
        Phase::Hold => (cfg.hold, after_hold),
        Phase::Preflight => (cfg.preflight, promote),
    };
    match verdict {
        Verdict::Fail { gate, detail } => Next::Fail {
            on_fail: cfg.on_fail,
            gate: gate.clone(),
            detail: detail.clone(),
        },
        Verdict::Wait(why) => Next::Wait(why.clone()),
        Verdict::Pass if elapsed_us < needed.as_micros() as i64 => Next::Wait(format!(
            "{} for {} s more",
            s.phase.as_str(),
            (needed.as_micros() as i64 - elapsed_us + 999_999) / 1_000_000
        )),
        Verdict::Pass => then,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::plan::{from_raw, RawPlan};

    fn cfg(extra: &str) -> PlanConfig {
        let r: RawPlan =
            toml::from_str(&format!("steps = [10, 50, 100]\nhold = \"1m\"\n{extra}")).unwrap();
        from_raw(&r).unwrap()
    }

    const MIN: i64 = 60_000_000;

    #[test]
    fn a_plan_holds_then_pre_flights_then_promotes() {
        let c = cfg("max_mismatch_rate = 0.01\npreflight = \"30s\"");
        let mut s = PlanState::start(&c, 0, "alice", "t".into(), 0);
        assert_eq!((s.status, s.next), (Status::Running, 0));
        // At 0 % there is nothing to hold at: pre-flight the first cohort at once.
        assert_eq!(
            next(&c, &s, &Verdict::Wait("thin".into()), 0),
            Next::Preflight { lo: 0, hi: 1000 }
        );
        s.phase = Phase::Preflight;
        assert_eq!(s.cohort(), Some((0, 1000)));
        assert!(
            matches!(next(&c, &s, &Verdict::Pass, MIN / 4), Next::Wait(_)),
            "30 s at least"
        );
        assert!(
            matches!(
                next(&c, &s, &Verdict::Wait("thin".into()), MIN),
                Next::Wait(_)
            ),
            "no data, no verdict"
        );
        assert_eq!(
            next(&c, &s, &Verdict::Pass, MIN / 2),
            Next::Promote {
                from: 0,
                to: 1000,
                done: false
            }
        );
        (s.at_bp, s.next, s.phase) = (1000, 1, Phase::Hold);
        assert!(
            matches!(next(&c, &s, &Verdict::Pass, MIN - 1), Next::Wait(_)),
            "hold"
        );
        assert_eq!(
            next(&c, &s, &Verdict::Pass, MIN),
            Next::Preflight { lo: 1000, hi: 5000 }
        );
        let fail = Verdict::Fail {
            gate: "error_rate".into(),
            detail: "x".into(),
        };
        assert!(
            matches!(
                next(&c, &s, &fail, 1),
                Next::Fail {
                    on_fail: OnFail::Rollback,
                    ..
                }
            ),
            "a failure acts at once"
        );
        (s.at_bp, s.next) = (5000, 2);
        let c = cfg("max_p99_ms = 5");
        assert_eq!(
            next(&c, &s, &Verdict::Pass, MIN),
            Next::Promote {
                from: 5000,
                to: 10_000,
                done: true
            }
        );
    }

    #[test]
    fn a_plan_starts_at_the_first_step_above_the_route() {
        let c = cfg("max_p99_ms = 5");
        let s = PlanState::start(&c, 2000, "a", "t".into(), 0);
        assert_eq!((s.next_bp(), s.status), (Some(5000), Status::Running));
        let s = PlanState::start(&c, 10_000, "a", "t".into(), 0);
        assert_eq!(s.status, Status::Done);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<PlanState>(&json).unwrap(), s);
    }
}
