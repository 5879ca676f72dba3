//! A plan phase's gates: the evidence of the phase (from the route's `evidence` record) held
//! against the thresholds, each gate passing, failing or without a verdict for lack of data,
//! and the whole recorded as the [`StepEvidence`] that justifies a step.
//!
//! No data is no verdict (Argo Rollouts #1905: an empty metric must neither promote nor roll
//! back): a gate whose side saw fewer than `min_requests` requests (comparisons, for mismatch
//! gates) says nothing, and a phase with such a gate cannot pass — but a gate that has its data
//! and fails, fails at once.
//!
//! The hold's mismatch gate judges the current cohort: comparisons of requests the new side
//! answered (the users already moved), not those of users still on legacy mirrored to new —
//! which users the next step moves is the pre-flight's question.
//!
//! Relative gates compare the new side with legacy over the same window: the new side's 5xx
//! share may be `max_error_rate_ratio` times legacy's, its p99 `max_p99_ratio` times legacy's.
//! Legacy's share is floored at one error in its window (`1 / requests`), so a legacy that made
//! no error does not make a single new-side error an infinite ratio.

use serde::{Deserialize, Serialize};

use super::config::PlanConfig;
use crate::evidence::{SideEvidence, Totals, PLAN};

/// One gate's value against its threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateValue {
    /// `error_rate`, `error_rate_ratio`, `p99_ms`, `p99_ratio`, `mismatch_rate`,
    /// `preflight_mismatch_rate`, `preflight_error_rate`, `preflight_error_rate_ratio`.
    pub gate: String,
    /// The value over the window (`None`: no data).
    pub value: Option<f64>,
    /// The configured threshold.
    pub threshold: f64,
    /// `Some(true)` passed, `Some(false)` failed, `None` not enough data for a verdict.
    pub pass: Option<bool>,
}

/// The pre-flight cohort's part of the evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct CohortEvidence {
    /// The cohort: keys whose bucket is in `[from_percent, to_percent)`.
    pub from_percent: f64,
    /// See `from_percent`.
    pub to_percent: f64,
    /// Cohort requests mirrored to the new side whose mirror ended (compared or failed).
    pub mirrored: u64,
    /// Of those, compared.
    pub compared: u64,
    /// Mismatches (after learned noise).
    pub mismatched: u64,
    /// Differences that were only learned noise (not mismatches).
    pub noise_excluded: u64,
    /// Mirrors the new side failed or answered 5xx.
    pub errors: u64,
}

/// What a phase's verdict rests on: recorded with the step (audit `detail`) and shown by
/// `ficus rollout plan status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StepEvidence {
    /// `hold` or `preflight`.
    pub phase: String,
    /// The window judged, in seconds (the phase so far, at most the evidence's reach).
    pub window_s: u64,
    /// The new side's requests, 5xx share, p99.
    pub new: SideEvidence,
    /// Legacy's, over the same window.
    pub legacy: SideEvidence,
    /// Shadow comparisons of the current cohort (requests the new side answered).
    pub compared: u64,
    /// Their mismatch share (after learned noise).
    pub mismatch_rate: Option<f64>,
    /// Of them, those that differed only in learned noise.
    pub noise_excluded: u64,
    /// The pre-flight cohort, in a pre-flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort: Option<CohortEvidence>,
    /// Every configured gate of the phase.
    pub gates: Vec<GateValue>,
}

/// A phase's verdict.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Every gate passed.
    Pass,
    /// A gate failed: which, and the numbers.
    Fail { gate: String, detail: String },
    /// Some gate has no verdict yet (thin traffic): what is missing.
    Wait(String),
}

fn gate(name: &str, value: Option<f64>, threshold: f64, enough: bool) -> GateValue {
    GateValue {
        gate: name.into(),
        value,
        threshold,
        pass: match (enough, value) {
            (true, Some(v)) => Some(v <= threshold),
            _ => None,
        },
    }
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

/// Legacy's 5xx share floored at one error in its window.
fn legacy_floor(t: &Totals) -> Option<f64> {
    let l = t.legacy();
    (l.requests > 0).then(|| l.errors.max(1) as f64 / l.requests as f64)
}

fn base(phase: &str, t: &Totals, window_s: u64) -> StepEvidence {
    StepEvidence {
        phase: phase.into(),
        window_s,
        new: t.new_side().into(),
        legacy: t.legacy().into(),
        compared: t.current_compared,
        mismatch_rate: ratio(t.current_mismatched, t.current_compared),
        noise_excluded: t.current_noise,
        cohort: None,
        gates: Vec::new(),
    }
}

/// The verdict of a set of gates.
fn verdict(gates: &[GateValue], min_requests: u64) -> Verdict {
    if let Some(g) = gates.iter().find(|g| g.pass == Some(false)) {
        let v = g.value.unwrap_or(f64::NAN);
        return Verdict::Fail {
            gate: g.gate.clone(),
            detail: format!("{} {v:.4} > {}", g.gate, g.threshold),
        };
    }
    let waiting: Vec<&str> = gates
        .iter()
        .filter(|g| g.pass.is_none())
        .map(|g| g.gate.as_str())
        .collect();
    if waiting.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Wait(format!(
            "fewer than min_requests = {min_requests} behind {}",
            waiting.join(", ")
        ))
    }
}

/// The gates of a step's hold: the current cohort on the new side against legacy.
/// `sampled`: the route's shadow mode samples its traffic (`sample > 0`); without it the
/// route's comparisons come only from pre-flights, and the hold has no mismatch gate.
pub fn judge_hold(
    cfg: &PlanConfig,
    t: &Totals,
    window_s: u64,
    sampled: bool,
) -> (Verdict, StepEvidence) {
    let mut ev = base("hold", t, window_s);
    let (n, l) = (t.new_side(), t.legacy());
    let min = cfg.min_requests;
    let new_ok = n.requests >= min;
    let both_ok = new_ok && l.requests >= min;
    if let Some(max) = cfg.max_error_rate {
        ev.gates
            .push(gate("error_rate", n.error_rate(), max, new_ok));
    }
    if let Some(r) = cfg.max_error_rate_ratio {
        let value = n.error_rate().zip(legacy_floor(t)).map(|(a, b)| a / b);
        ev.gates.push(gate("error_rate_ratio", value, r, both_ok));
    }
    if let Some(max) = cfg.max_p99_ms {
        // Exact: p99 > max exactly when more than 1 % of the requests were slower than max.
        let mut g = gate("p99_ms", n.p99_ms(), max as f64, new_ok);
        if new_ok {
            g.pass = Some(n.slow[PLAN] * 100 <= n.requests);
        }
        ev.gates.push(g);
    }
    if let Some(r) = cfg.max_p99_ratio {
        let value = n.p99_ms().zip(l.p99_ms()).map(|(a, b)| a / b.max(0.001));
        ev.gates.push(gate("p99_ratio", value, r, both_ok));
    }
    if let Some(max) = cfg.max_mismatch_rate.filter(|_| sampled) {
        ev.gates.push(gate(
            "mismatch_rate",
            ratio(t.current_mismatched, t.current_compared),
            max,
            t.current_compared >= min,
        ));
    }
    (verdict(&ev.gates, min), ev)
}

/// The gates of a pre-flight: the next cohort's mirrors to the new side (legacy still
/// answering them), for `[lo, hi)` basis points.
pub fn judge_preflight(
    cfg: &PlanConfig,
    t: &Totals,
    window_s: u64,
    (lo, hi): (u32, u32),
) -> (Verdict, StepEvidence) {
    let mut ev = base("preflight", t, window_s);
    let min = cfg.min_requests;
    ev.cohort = Some(CohortEvidence {
        from_percent: f64::from(lo) / 100.0,
        to_percent: f64::from(hi) / 100.0,
        mirrored: t.cohort_mirrored,
        compared: t.cohort_compared,
        mismatched: t.cohort_mismatched,
        noise_excluded: t.cohort_noise,
        errors: t.cohort_errors,
    });
    if let Some(max) = cfg.max_mismatch_rate {
        ev.gates.push(gate(
            "preflight_mismatch_rate",
            ratio(t.cohort_mismatched, t.cohort_compared),
            max,
            t.cohort_compared >= min,
        ));
    }
    let cohort_rate = ratio(t.cohort_errors, t.cohort_mirrored);
    let cohort_ok = t.cohort_mirrored >= min;
    if let Some(max) = cfg.max_error_rate {
        ev.gates
            .push(gate("preflight_error_rate", cohort_rate, max, cohort_ok));
    }
    if let Some(r) = cfg.max_error_rate_ratio {
        let value = cohort_rate.zip(legacy_floor(t)).map(|(a, b)| a / b);
        let both = cohort_ok && t.legacy().requests >= min;
        ev.gates
            .push(gate("preflight_error_rate_ratio", value, r, both));
    }
    (verdict(&ev.gates, min), ev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::plan::{from_raw, RawPlan};
    use crate::evidence::{Compared, Evidence, EvidenceSpec};
    use ficus_core::{ManualClock, Side};
    use std::time::Duration;

    fn cfg(extra: &str) -> PlanConfig {
        let r: RawPlan =
            toml::from_str(&format!("steps = [10, 100]\nmin_requests = 100\n{extra}")).unwrap();
        from_raw(&r).unwrap()
    }

    fn evidence(slow_ms: u64) -> Evidence {
        let spec = EvidenceSpec {
            span: Duration::from_secs(60),
            resolution: Duration::from_secs(3),
            slow_ms: [u64::MAX, slow_ms],
        };
        Evidence::new(spec, ManualClock::new())
    }

    fn hits(e: &Evidence, side: Side, n: u64, errors: u64, ms: u64) {
        for i in 0..n {
            let status = if i < errors { 500 } else { 200 };
            e.request(side, status, Duration::from_millis(ms));
        }
    }

    #[test]
    fn thin_traffic_is_no_verdict_either_way() {
        let c = cfg("max_error_rate = 0.01");
        let e = evidence(u64::MAX);
        hits(&e, Side::New, 99, 99, 1);
        let (v, ev) = judge_hold(&c, &e.totals(Duration::from_secs(60), 0), 60, true);
        assert!(matches!(v, Verdict::Wait(_)), "{v:?}");
        assert_eq!(ev.gates[0].pass, None);
        hits(&e, Side::New, 1, 1, 1);
        let (v, _) = judge_hold(&c, &e.totals(Duration::from_secs(60), 0), 60, true);
        assert!(
            matches!(v, Verdict::Fail { ref gate, .. } if gate == "error_rate"),
            "{v:?}"
        );
    }

    #[test]
    fn relative_gates_compare_with_legacy_over_the_same_window() {
        let c = cfg("max_error_rate_ratio = 1.5\nmax_p99_ratio = 2.0");
        let e = evidence(u64::MAX);
        hits(&e, Side::Legacy, 1000, 20, 10);
        hits(&e, Side::New, 100, 2, 15);
        let (v, ev) = judge_hold(&c, &e.totals(Duration::from_secs(60), 0), 60, true);
        assert_eq!(v, Verdict::Pass, "{ev:?}");
        // Same share of errors as legacy, three times its latency.
        hits(&e, Side::New, 100, 2, 45);
        let (v, _) = judge_hold(&c, &e.totals(Duration::from_secs(60), 0), 60, true);
        assert!(
            matches!(v, Verdict::Fail { ref gate, .. } if gate == "p99_ratio"),
            "{v:?}"
        );
        // An error-free legacy is floored at one error in its window.
        let e = evidence(u64::MAX);
        hits(&e, Side::Legacy, 1000, 0, 10);
        hits(&e, Side::New, 1000, 1, 10);
        let (v, _) = judge_hold(&c, &e.totals(Duration::from_secs(60), 0), 60, true);
        assert_eq!(v, Verdict::Pass);
        let e = evidence(u64::MAX);
        hits(&e, Side::Legacy, 1000, 0, 10);
        hits(&e, Side::New, 1000, 2, 10);
        let (v, _) = judge_hold(&c, &e.totals(Duration::from_secs(60), 0), 60, true);
        assert!(matches!(v, Verdict::Fail { ref gate, .. } if gate == "error_rate_ratio"));
    }

    #[test]
    fn preflight_judges_the_cohort_only() {
        let c = cfg("max_mismatch_rate = 0.01\npreflight = \"1m\"");
        let e = evidence(u64::MAX);
        for _ in 0..200 {
            e.compared(Compared::Match, true, false, false);
        }
        for i in 0..100 {
            let o = if i < 5 {
                Compared::Mismatch
            } else {
                Compared::Noise
            };
            e.compared(o, false, true, false);
        }
        let t = e.totals(Duration::from_secs(60), 0);
        let (v, ev) = judge_preflight(&c, &t, 60, (1000, 2500));
        assert!(
            matches!(v, Verdict::Fail { ref gate, .. } if gate == "preflight_mismatch_rate"),
            "{v:?}"
        );
        let cohort = ev.cohort.unwrap();
        assert_eq!(
            (cohort.compared, cohort.mismatched, cohort.noise_excluded),
            (100, 5, 95)
        );
        assert_eq!(ev.mismatch_rate, Some(0.0), "the current cohort is clean");
    }
}
