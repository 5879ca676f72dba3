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
//! # Architecture invariant: a few atomics per request
//! The window is a ring of [`BUCKETS`] time buckets of `window_s / BUCKETS` each; a request
//! adds to the current bucket with relaxed atomic adds (no lock, no allocation). A bucket is
//! recycled by the first request that finds it holding an older epoch, so counts landing in
//! the instant of a recycle may be lost — a verdict over hundreds of requests does not care.
//! The p99 test is exact without a histogram: p99 > `max_p99_ms` exactly when more than 1 % of
//! the requests took longer than `max_p99_ms`, so each request only compares its latency.
//!
//! The verdicts are made off the hot path, once a second on the admin thread
//! (`Control::judge_guards`, one judge at a time). After firing, a guard is disarmed and its
//! window cleared; it re-arms (with a fresh window) when an operator raises the route's
//! percentage above 0 again, so it never fires twice on one incident and stale samples never
//! trip it after a re-raise.
//!
//! Time comes from the proxy's [`Clock`](ficus_core::Clock) (the system clock unless a test
//! passes a `ManualClock`): the window's buckets are read from it, and the latencies handed to
//! [`Guard::request`] are measured on it (by `forward`), so a test moves the window, or makes
//! the new side slow, by advancing the clock instead of sleeping.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ficus_core::SharedClock;
use prometheus::IntCounter;

/// Time buckets per window.
pub(crate) const BUCKETS: usize = 20;

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

#[derive(Default)]
struct Bucket {
    /// Which bucket-length period these counts belong to (`now / bucket_ms`), plus 1 (0: never).
    epoch: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    slow: AtomicU64,
    compared: AtomicU64,
    mismatched: AtomicU64,
}

impl Bucket {
    fn clear(&self) {
        for c in [
            &self.requests,
            &self.errors,
            &self.slow,
            &self.compared,
            &self.mismatched,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// Sums over the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub requests: u64,
    pub errors: u64,
    pub slow: u64,
    pub compared: u64,
    pub mismatched: u64,
}

/// One route's guard: settings, window, arming and its metric handles.
pub(crate) struct Guard {
    pub cfg: GuardConfig,
    clock: SharedClock,
    /// The clock's reading when the guard was made: bucket periods count from here.
    origin: Instant,
    bucket_ms: u64,
    slow_ms: u64,
    buckets: [Bucket; BUCKETS],
    armed: AtomicBool,
    /// `ficus_guard_rollbacks_total{route,reason}`, by [`Reason::ALL`] index.
    pub fired: [IntCounter; 3],
}

impl Guard {
    /// A guard with `cfg`, counting its rollbacks in `fired` (by [`Reason::ALL`] index) and
    /// reading time from `clock`.
    pub fn new(cfg: GuardConfig, fired: [IntCounter; 3], clock: SharedClock) -> Guard {
        let bucket_ms = (cfg.window.as_millis() as u64 / BUCKETS as u64).max(1);
        Guard {
            slow_ms: cfg.max_p99_ms.unwrap_or(u64::MAX),
            cfg,
            origin: clock.now(),
            clock,
            bucket_ms,
            buckets: Default::default(),
            armed: AtomicBool::new(true),
            fired,
        }
    }

    /// Milliseconds since the guard was made, on its clock.
    #[inline]
    fn now_ms(&self) -> u64 {
        self.clock
            .now()
            .saturating_duration_since(self.origin)
            .as_millis() as u64
    }

    /// The bucket for now, recycled first if it holds an older period.
    #[inline]
    fn bucket(&self, now_ms: u64) -> &Bucket {
        let epoch = now_ms / self.bucket_ms + 1;
        let b = &self.buckets[(epoch % BUCKETS as u64) as usize];
        let seen = b.epoch.load(Ordering::Relaxed);
        if seen != epoch
            && b.epoch
                .compare_exchange(seen, epoch, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            b.clear();
        }
        b
    }

    /// Counts one request answered by (or failed at) the new side; `took`: its time to the
    /// response head, measured on the same clock.
    #[inline]
    pub fn request(&self, status: u16, took: Duration) {
        let b = self.bucket(self.now_ms());
        b.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            b.errors.fetch_add(1, Ordering::Relaxed);
        }
        if took.as_millis() as u64 > self.slow_ms {
            b.slow.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one shadow comparison.
    pub fn compared(&self, mismatch: bool) {
        let b = self.bucket(self.now_ms());
        b.compared.fetch_add(1, Ordering::Relaxed);
        if mismatch {
            b.mismatched.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sums the buckets of the window ending now.
    pub fn totals(&self) -> Totals {
        let current = self.now_ms() / self.bucket_ms + 1;
        let mut t = Totals::default();
        for b in &self.buckets {
            let e = b.epoch.load(Ordering::Relaxed);
            if e == 0 || e + (BUCKETS as u64) <= current || e > current {
                continue;
            }
            t.requests += b.requests.load(Ordering::Relaxed);
            t.errors += b.errors.load(Ordering::Relaxed);
            t.slow += b.slow.load(Ordering::Relaxed);
            t.compared += b.compared.load(Ordering::Relaxed);
            t.mismatched += b.mismatched.load(Ordering::Relaxed);
        }
        t
    }

    fn reset(&self) {
        for b in &self.buckets {
            b.epoch.store(0, Ordering::Relaxed);
            b.clear();
        }
    }

    /// The first broken threshold over the window, if any.
    pub fn verdict(&self, t: Totals) -> Option<Verdict> {
        let c = &self.cfg;
        let window = c.window.as_secs();
        if t.requests >= c.min_requests {
            let share = t.errors as f64 / t.requests as f64;
            if let Some(max) = c.max_error_rate {
                if share > max {
                    return Some(Verdict {
                        reason: Reason::ErrorRate,
                        detail: format!(
                            "new-side 5xx share {:.2}% > {:.2}% ({} of {} requests in {window} s)",
                            share * 100.0,
                            max * 100.0,
                            t.errors,
                            t.requests
                        ),
                    });
                }
            }
            if let Some(max) = c.max_p99_ms {
                // p99 > max  ⇔  more than 1 % of the requests took longer than max.
                if t.slow * 100 > t.requests {
                    return Some(Verdict {
                        reason: Reason::P99,
                        detail: format!(
                            "new-side p99 > {max} ms ({} of {} requests in {window} s slower)",
                            t.slow, t.requests
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
    use ficus_core::ManualClock;
    use std::sync::Arc;

    fn guard(cfg: GuardConfig, clock: &Arc<ManualClock>) -> Guard {
        let c = || IntCounter::new("x", "x").unwrap();
        Guard::new(cfg, [c(), c(), c()], clock.clone())
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
        assert_eq!(g.totals().requests, 12, "both halves in the window");
        clock.advance(Duration::from_secs(5));
        assert_eq!(g.totals().requests, 6, "the first six are older than 10 s");
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
        assert_eq!(g.totals().requests, 1, "the recycled bucket starts at zero");
    }
}
