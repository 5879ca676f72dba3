//! The rollback guard: per route, a sliding window over the new side's requests (5xx share,
//! p99 latency) and shadow comparisons (mismatch share); when a threshold is broken over the
//! window with at least `min_requests` behind the verdict, the proxy sets the route to 0 % by
//! itself through the control plane's rollback (persisted, audited as actor `guard` with action
//! `rollback:<reason>`), logs it and counts `ficus_guard_rollbacks_total{route,reason}`.
//!
//! ```toml
//! [routes.guard]
//! max_error_rate = 0.02      # new-side 5xx share (proxy-made 502/504 included)
//! max_p99_ms = 500           # p99 of the new side's time to response head
//! max_mismatch_rate = 0.01   # mismatch share of shadow comparisons (needs [routes.shadow])
//! window_s = 60
//! min_requests = 200         # no verdict on thin traffic
//! ```
//!
//! The window is read from the route's [`Evidence`] (the one record of what both sides
//! answered, shared with a step plan; see `evidence`): the guard judges the new side's
//! requests and the shadow comparisons of its last `window_s`. Its p99 test is exact: the
//! record counts the requests slower than the guard's `max_p99_ms`.
//!
//! The verdicts are made off the hot path, once a second on the admin thread
//! (`Control::judge_guards`, one judge at a time). After firing, a guard is disarmed and
//! judges only what comes after; it re-arms (with a fresh window) when an operator raises the
//! route's percentage above 0 again, so it never fires twice on one incident and stale samples
//! never trip it after a re-raise.
//!
//! Time comes from the proxy's [`Clock`](ficus_core::Clock) (the system clock unless a test
//! passes a `ManualClock`), through the evidence record, so a test moves the window, or makes
//! the new side slow, by advancing the clock instead of sleeping.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus::IntCounter;

use crate::evidence::{Evidence, Totals, GUARD};

/// Time buckets per window: the finest the route's evidence record is kept at for a guard.
pub(crate) const BUCKETS: u32 = 20;

/// A route's `[routes.guard]` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardConfig {
    /// Largest tolerated share of new-side 5xx responses (0..=1).
    pub max_error_rate: Option<f64>,
    /// Largest tolerated p99 of the new side's time to response head, in milliseconds.
    pub max_p99_ms: Option<u64>,
    /// Largest tolerated share of shadow comparisons that mismatch (0..=1).
    pub max_mismatch_rate: Option<f64>,
    /// The sliding window.
    pub window: Duration,
    /// Fewer requests (or comparisons, for the mismatch share) than this in the window: no
    /// verdict.
    pub min_requests: u64,
}

impl GuardConfig {
    /// Validates the settings as written; the error names the field (`guard.window_s`).
    pub fn new(
        max_error_rate: Option<f64>,
        max_p99_ms: Option<u64>,
        max_mismatch_rate: Option<f64>,
        window_s: Option<u64>,
        min_requests: Option<u64>,
    ) -> Result<GuardConfig, (String, String)> {
        let bad = |f: &str, m: String| Err((format!("guard.{f}"), m));
        for (f, v) in [
            ("max_error_rate", max_error_rate),
            ("max_mismatch_rate", max_mismatch_rate),
        ] {
            if let Some(v) = v {
                if !(0.0..=1.0).contains(&v) {
                    return bad(f, format!("{v} is not between 0 and 1"));
                }
            }
        }
        if max_p99_ms == Some(0) {
            return bad("max_p99_ms", "must be at least 1".into());
        }
        if max_error_rate.is_none() && max_p99_ms.is_none() && max_mismatch_rate.is_none() {
            return bad(
                "max_error_rate",
                "a guard needs at least one of max_error_rate, max_p99_ms, max_mismatch_rate"
                    .into(),
            );
        }
        let window_s = window_s.unwrap_or(60);
        if !(1..=86_400).contains(&window_s) {
            return bad("window_s", format!("{window_s} is not between 1 and 86400"));
        }
        let min_requests = min_requests.unwrap_or(200);
        if min_requests == 0 {
            return bad("min_requests", "must be at least 1".into());
        }
        Ok(GuardConfig {
            max_error_rate,
            max_p99_ms,
            max_mismatch_rate,
            window: Duration::from_secs(window_s),
            min_requests,
        })
    }
}

/// Why a guard fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Too many new-side 5xx.
    ErrorRate,
    /// New-side p99 latency too high.
    P99,
    /// Too many shadow mismatches.
    MismatchRate,
}

impl Reason {
    /// Every reason, in metric-index order.
    pub const ALL: [Reason; 3] = [Reason::ErrorRate, Reason::P99, Reason::MismatchRate];

    /// `error_rate`, `p99` or `mismatch_rate` (the metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ErrorRate => "error_rate",
            Reason::P99 => "p99",
            Reason::MismatchRate => "mismatch_rate",
        }
    }
}

/// A broken threshold: why, and the numbers behind it (for the log).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Verdict {
    pub reason: Reason,
    pub detail: String,
}

/// One route's guard: settings, the route's evidence, arming and its metric handles.
pub(crate) struct Guard {
    pub cfg: GuardConfig,
    evidence: Arc<Evidence>,
    /// Only buckets that began at or after this (evidence milliseconds) count: set past what
    /// was counted when the guard fires or re-arms.
    since_ms: AtomicU64,
    armed: AtomicBool,
    /// `ficus_guard_rollbacks_total{route,reason}`, by [`Reason::ALL`] index.
    pub fired: [IntCounter; 3],
}

impl Guard {
    /// A guard with `cfg` judging `evidence` (made with this guard's `max_p99_ms` as its
    /// [`GUARD`] threshold), counting its rollbacks in `fired` (by [`Reason::ALL`] index).
    pub fn new(cfg: GuardConfig, fired: [IntCounter; 3], evidence: Arc<Evidence>) -> Guard {
        Guard {
            cfg,
            evidence,
            since_ms: AtomicU64::new(0),
            armed: AtomicBool::new(true),
            fired,
        }
    }

    /// The route's evidence record.
    pub fn evidence(&self) -> &Arc<Evidence> {
        &self.evidence
    }

    /// Sums the window ending now.
    pub fn totals(&self) -> Totals {
        self.evidence
            .totals(self.cfg.window, self.since_ms.load(Ordering::Relaxed))
    }

    fn reset(&self) {
        self.since_ms
            .store(self.evidence.next_bucket_ms(), Ordering::Relaxed);
    }

    /// The first broken threshold over the window, if any.
    pub fn verdict(&self, t: Totals) -> Option<Verdict> {
        let c = &self.cfg;
        let window = c.window.as_secs();
        let n = t.new_side();
        let (requests, errors, slow) = (n.requests, n.errors, n.slow[GUARD]);
        if requests >= c.min_requests {
            let share = errors as f64 / requests as f64;
            if let Some(max) = c.max_error_rate {
                if share > max {
                    return Some(Verdict {
                        reason: Reason::ErrorRate,
                        detail: format!(
                            "new-side 5xx share {:.2}% > {:.2}% ({} of {} requests in {window} s)",
                            share * 100.0,
                            max * 100.0,
                            errors,
                            requests
                        ),
                    });
                }
            }
            if let Some(max) = c.max_p99_ms {
                // p99 > max  ⇔  more than 1 % of the requests took longer than max.
                if slow * 100 > requests {
                    return Some(Verdict {
                        reason: Reason::P99,
                        detail: format!(
                            "new-side p99 > {max} ms ({slow} of {requests} requests in {window} s slower)"
                        ),
                    });
                }
            }
        }
        if let Some(max) = c.max_mismatch_rate {
            if t.compared >= c.min_requests {
                let share = t.mismatched as f64 / t.compared as f64;
                if share > max {
                    return Some(Verdict {
                        reason: Reason::MismatchRate,
                        detail: format!(
                            "shadow mismatch share {:.2}% > {:.2}% ({} of {} comparisons in {window} s)",
                            share * 100.0,
                            max * 100.0,
                            t.mismatched,
                            t.compared
                        ),
                    });
                }
            }
        }
        None
    }

    /// One check: re-arms after an operator re-raised the percentage, else judges the window
    /// ending now. Returns the verdict to act on (the guard is then disarmed with a cleared
    /// window). Called by one judge at a time (`Control::judge_guards`).
    pub fn check(&self, percent_bp: u32) -> Option<Verdict> {
        if percent_bp == 0 {
            return None;
        }
        if !self.armed.load(Ordering::Relaxed) {
            // Only an operator (or a file/replica change) raises a route the guard set to 0.
            self.reset();
            self.armed.store(true, Ordering::Relaxed);
            return None;
        }
        let v = self.verdict(self.totals())?;
        self.armed.store(false, Ordering::Relaxed);
        self.reset();
        Some(v)
    }

    /// Arms the guard again after its verdict could not be acted on (the rollback was not
    /// persisted): the next check judges afresh.
    pub fn rearm(&self) {
        self.armed.store(true, Ordering::Relaxed);
    }

    /// Whether the guard may fire (it is not waiting for an operator).
    #[cfg(test)]
    pub fn armed(&self) -> bool {
        self.armed.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::{Compared, EvidenceSpec, PLAN};
    use ficus_core::{ManualClock, Side};

    /// A guard on an evidence record of its own.
    struct G(Guard);

    impl std::ops::Deref for G {
        type Target = Guard;
        fn deref(&self) -> &Guard {
            &self.0
        }
    }

    impl G {
        fn request(&self, status: u16, took: Duration) {
            self.0.evidence.request(Side::New, status, took);
        }
        fn compared(&self, mismatch: bool) {
            let o = if mismatch {
                Compared::Mismatch
            } else {
                Compared::Match
            };
            self.0.evidence.compared(o, false, false, false);
        }
        fn requests(&self) -> u64 {
            self.0.totals().new_side().requests
        }
    }

    fn guard(cfg: GuardConfig, clock: &Arc<ManualClock>) -> G {
        let c = || IntCounter::new("x", "x").unwrap();
        let mut slow_ms = [u64::MAX; 2];
        slow_ms[GUARD] = cfg.max_p99_ms.unwrap_or(u64::MAX);
        slow_ms[PLAN] = 1;
        let spec = EvidenceSpec {
            span: cfg.window,
            resolution: cfg.window / BUCKETS,
            slow_ms,
        };
        let e = Arc::new(Evidence::new(spec, clock.clone()));
        G(Guard::new(cfg, [c(), c(), c()], e))
    }

    fn cfg() -> GuardConfig {
        GuardConfig::new(Some(0.02), Some(500), Some(0.01), Some(60), Some(100)).unwrap()
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn validation_names_the_field() {
        let f = |r: Result<GuardConfig, (String, String)>| r.unwrap_err().0;
        assert_eq!(
            f(GuardConfig::new(Some(2.0), None, None, None, None)),
            "guard.max_error_rate"
        );
        assert_eq!(
            f(GuardConfig::new(None, Some(0), None, None, None)),
            "guard.max_p99_ms"
        );
        assert_eq!(
            f(GuardConfig::new(None, Some(5), None, Some(0), None)),
            "guard.window_s"
        );
        assert_eq!(
            f(GuardConfig::new(None, Some(5), None, None, Some(0))),
            "guard.min_requests"
        );
        assert!(GuardConfig::new(None, None, None, None, None).is_err());
        let d = GuardConfig::new(None, Some(5), None, None, None).unwrap();
        assert_eq!((d.window.as_secs(), d.min_requests), (60, 200));
    }

    #[test]
    fn thin_traffic_gets_no_verdict_and_thresholds_fire() {
        let clock = ManualClock::new();
        let g = guard(cfg(), &clock);
        for _ in 0..99 {
            g.request(500, MS);
        }
        assert_eq!(g.check(10_000), None, "99 < min_requests");
        clock.advance(Duration::from_secs(30));
        g.request(500, MS);
        let v = g.check(10_000).unwrap();
        assert_eq!(v.reason, Reason::ErrorRate);
        assert!(
            v.detail.contains("100 of 100 requests in 60 s"),
            "{}",
            v.detail
        );
        assert!(!g.armed());
        assert_eq!(g.totals(), Totals::default(), "cleared");
        // Disarmed until the percentage is raised again (seen as > 0 after a 0).
        g.request(500, MS);
        assert_eq!(g.check(0), None);
        assert!(!g.armed());
        assert_eq!(g.check(1_000), None);
        assert!(g.armed());
        assert_eq!(
            g.totals(),
            Totals::default(),
            "re-armed with a fresh window"
        );
    }

    #[test]
    fn p99_is_more_than_one_percent_slower() {
        let clock = ManualClock::new();
        let g = guard(cfg(), &clock);
        for i in 0..200 {
            let ms = if i < 2 { 900 } else { 10 };
            g.request(200, Duration::from_millis(ms));
        }
        assert_eq!(g.check(10_000), None, "exactly 1 % slow");
        g.request(200, Duration::from_millis(500));
        assert_eq!(g.check(10_000), None, "at the limit is not over it");
        g.request(200, Duration::from_millis(501));
        assert_eq!(g.check(10_000).unwrap().reason, Reason::P99);
    }

    #[test]
    fn mismatch_share_needs_enough_comparisons() {
        let clock = ManualClock::new();
        let g = guard(cfg(), &clock);
        for i in 0..99 {
            g.compared(i < 2);
        }
        assert_eq!(g.check(10_000), None, "99 comparisons < min_requests");
        g.compared(false);
        assert_eq!(g.check(10_000).unwrap().reason, Reason::MismatchRate);
    }

    #[test]
    fn samples_leave_the_window_as_the_clock_moves() {
        // 10 s window of 20 buckets of 500 ms; 10 failures needed for a verdict.
        let clock = ManualClock::new();
        let g = guard(
            GuardConfig::new(Some(0.5), None, None, Some(10), Some(10)).unwrap(),
            &clock,
        );
        for _ in 0..6 {
            g.request(500, MS);
        }
        clock.advance(Duration::from_secs(6));
        for _ in 0..6 {
            g.request(500, MS);
        }
        assert_eq!(g.requests(), 12, "both halves in the window");
        clock.advance(Duration::from_secs(5));
        assert_eq!(g.requests(), 6, "the first six are older than 10 s");
        assert_eq!(
            g.check(10_000),
            None,
            "6 < min_requests once the old ones left"
        );
        for _ in 0..4 {
            g.request(500, MS);
        }
        assert_eq!(g.check(10_000).unwrap().reason, Reason::ErrorRate);
    }

    #[test]
    fn a_guard_idle_for_longer_than_its_window_starts_from_nothing() {
        let clock = ManualClock::new();
        let g = guard(
            GuardConfig::new(Some(0.5), None, None, Some(10), Some(10)).unwrap(),
            &clock,
        );
        for _ in 0..10 {
            g.request(500, MS);
        }
        clock.advance(Duration::from_secs(3600));
        assert_eq!(g.totals(), Totals::default());
        assert_eq!(g.check(10_000), None);
        g.request(500, MS);
        assert_eq!(g.requests(), 1, "the recycled bucket starts at zero");
    }
}
