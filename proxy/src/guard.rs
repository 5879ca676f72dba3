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
//! The verdicts are made off the hot path, once a second on the admin thread ([`run`]). After
//! firing, a guard is disarmed and its window cleared; it re-arms (with a fresh window) when an
//! operator raises the route's percentage above 0 again, so it never fires twice on one
//! incident and stale samples never trip it after a re-raise.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use prometheus::IntCounter;
use tokio::sync::watch;

use crate::control::Control;

/// Time buckets per window.
pub(crate) const BUCKETS: usize = 20;
/// How often the verdicts are made.
const CHECK_EVERY: Duration = Duration::from_secs(1);

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

/// Milliseconds on a monotonic clock local to this process.
fn mono_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_millis() as u64
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
    bucket_ms: u64,
    slow_ms: u64,
    buckets: [Bucket; BUCKETS],
    armed: AtomicBool,
    /// `ficus_guard_rollbacks_total{route,reason}`, by [`Reason::ALL`] index.
    pub fired: [IntCounter; 3],
}

impl Guard {
    pub fn new(cfg: GuardConfig, fired: [IntCounter; 3]) -> Guard {
        let bucket_ms = (cfg.window.as_millis() as u64 / BUCKETS as u64).max(1);
        Guard {
            slow_ms: cfg.max_p99_ms.unwrap_or(u64::MAX),
            cfg,
            bucket_ms,
            buckets: Default::default(),
            armed: AtomicBool::new(true),
            fired,
        }
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

    /// Counts one request answered by (or failed at) the new side.
    #[inline]
    pub fn request(&self, status: u16, took: Duration) {
        let b = self.bucket(mono_ms());
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
        let b = self.bucket(mono_ms());
        b.compared.fetch_add(1, Ordering::Relaxed);
        if mismatch {
            b.mismatched.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sums the buckets of the window ending now.
    pub fn totals(&self, now_ms: u64) -> Totals {
        let current = now_ms / self.bucket_ms + 1;
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

    /// One check: re-arms after an operator re-raised the percentage, else judges the window.
    /// Returns the verdict to act on (the guard is then disarmed with a cleared window).
    pub fn check(&self, percent_bp: u32, now_ms: u64) -> Option<Verdict> {
        if percent_bp == 0 {
            return None;
        }
        if !self.armed.load(Ordering::Relaxed) {
            // Only an operator (or a file/replica change) raises a route the guard set to 0.
            self.reset();
            self.armed.store(true, Ordering::Relaxed);
            return None;
        }
        let v = self.verdict(self.totals(now_ms))?;
        self.armed.store(false, Ordering::Relaxed);
        self.reset();
        Some(v)
    }

    /// Whether the guard may fire (it is not waiting for an operator).
    #[cfg(test)]
    pub fn armed(&self) -> bool {
        self.armed.load(Ordering::Relaxed)
    }
}

/// Judges every guarded route once a second until `stop`; a broken threshold rolls the route
/// back through [`Control::guard_rollback`].
pub(crate) async fn run(control: Arc<Control>, mut stop: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(CHECK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            _ = every.tick() => {}
        }
        let table = control.shared.table.load_full();
        let now = mono_ms();
        for route in &table.routes {
            let Some(guard) = &route.guard else { continue };
            let bp = route.percent_bp.load(Ordering::Relaxed);
            let Some(v) = guard.check(bp, now) else {
                continue;
            };
            match control.guard_rollback(&route.name, v.reason) {
                Ok(_) => {
                    guard.fired[v.reason as usize].inc();
                    tracing::warn!(route = %route.name, reason = v.reason.as_str(), detail = %v.detail,
                        "guard: new side broke a threshold; route set to 0% (raise it again with `ficus rollout set`)");
                }
                Err(e) => {
                    // Persisting failed: traffic keeps its percentage; try again next time.
                    guard.armed.store(true, Ordering::Relaxed);
                    tracing::error!(route = %route.name, reason = v.reason.as_str(), detail = %v.detail, error = %e,
                        "guard: rollback failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(cfg: GuardConfig) -> Guard {
        let c = || IntCounter::new("x", "x").unwrap();
        Guard::new(cfg, [c(), c(), c()])
    }

    fn cfg() -> GuardConfig {
        GuardConfig::new(Some(0.02), Some(500), Some(0.01), Some(60), Some(100)).unwrap()
    }

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
        let g = guard(cfg());
        for _ in 0..99 {
            g.request(500, Duration::from_millis(1));
        }
        assert_eq!(g.check(10_000, mono_ms()), None, "99 < min_requests");
        g.request(500, Duration::from_millis(1));
        let v = g.check(10_000, mono_ms()).unwrap();
        assert_eq!(v.reason, Reason::ErrorRate);
        assert!(!g.armed());
        assert_eq!(g.totals(mono_ms()), Totals::default(), "cleared");
        // Disarmed until the percentage is raised again (seen as > 0 after a 0).
        assert_eq!(g.check(0, mono_ms()), None);
        assert!(!g.armed());
        assert_eq!(g.check(1_000, mono_ms()), None);
        assert!(g.armed());
    }

    #[test]
    fn p99_is_more_than_one_percent_slower() {
        let g = guard(cfg());
        for i in 0..200 {
            let ms = if i < 2 { 900 } else { 10 };
            g.request(200, Duration::from_millis(ms));
        }
        assert_eq!(g.check(10_000, mono_ms()), None, "exactly 1 % slow");
        g.request(200, Duration::from_millis(501));
        assert_eq!(g.check(10_000, mono_ms()).unwrap().reason, Reason::P99);
    }

    #[test]
    fn mismatch_share_needs_enough_comparisons() {
        let g = guard(cfg());
        for i in 0..100 {
            g.compared(i < 2);
        }
        assert_eq!(
            g.check(10_000, mono_ms()).unwrap().reason,
            Reason::MismatchRate
        );
    }

    #[test]
    fn old_buckets_leave_the_window() {
        let g = guard(GuardConfig::new(Some(0.5), None, None, Some(1), Some(1)).unwrap());
        g.request(500, Duration::ZERO);
        let now = mono_ms();
        assert_eq!(g.totals(now).requests, 1);
        assert_eq!(g.totals(now + 1_100).requests, 0);
    }
}
