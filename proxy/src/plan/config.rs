//! A route's `[routes.plan]` settings, validated (by `config::plan`, which reads them from
//! the file).

use std::time::Duration;

use serde::Deserialize;

/// What a failed gate does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFail {
    /// The route goes to 0 % and the plan ends `failed`.
    #[default]
    Rollback,
    /// The plan pauses at its step (the percentage stays) until an operator resumes or aborts.
    Pause,
}

impl OnFail {
    /// `rollback` or `pause`.
    pub fn as_str(self) -> &'static str {
        match self {
            OnFail::Rollback => "rollback",
            OnFail::Pause => "pause",
        }
    }
}

/// A route's step plan, as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanConfig {
    /// The percentages to go through, in basis points, strictly increasing.
    pub steps: Vec<u32>,
    /// How long the plan stays at each step at least.
    pub hold: Duration,
    /// Requests (and comparisons, for mismatch gates) a phase needs before any verdict.
    pub min_requests: u64,
    /// How long the next cohort is shadowed before it moves (zero: no pre-flight).
    pub preflight: Duration,
    /// Largest new-side 5xx share.
    pub max_error_rate: Option<f64>,
    /// Largest new-side 5xx share as a multiple of legacy's over the same window.
    pub max_error_rate_ratio: Option<f64>,
    /// Largest new-side p99 (time to response head), milliseconds.
    pub max_p99_ms: Option<u64>,
    /// Largest new-side p99 as a multiple of legacy's over the same window.
    pub max_p99_ratio: Option<f64>,
    /// Largest mismatch share of shadow comparisons (learned noise is not a mismatch).
    pub max_mismatch_rate: Option<f64>,
    /// What a failed gate does.
    pub on_fail: OnFail,
}

/// The longest `hold` or `preflight`.
pub const MAX_PHASE: Duration = Duration::from_secs(7 * 86_400);

impl PlanConfig {
    /// How far back a phase's evidence reaches: twice the longer phase (at least a minute), so
    /// a step that waits past its hold for thin traffic still judges the whole step.
    pub fn span(&self) -> Duration {
        (self.hold.max(self.preflight) * 2).max(Duration::from_secs(60))
    }
}
