//! The circuit breaker of one route's mirror side: after [`BREAKER_FAILURES`] failed mirror
//! exchanges in a row, jobs for that side are counted `error` without being sent for a while
//! (1 s, doubling to 30 s while it keeps failing), so a down mirror side costs no connection
//! attempt per request. The first job after the pause is sent; its success closes the
//! breaker.
//!
//! Time comes from the shadow instance's [`Clock`](ficus_core::Clock): tests open and close a
//! breaker by advancing a `ManualClock`.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use ficus_core::SharedClock;

/// Consecutive failures of one mirror side (per route) that pause mirroring to it.
pub(crate) const BREAKER_FAILURES: u32 = 5;
/// First pause; each further failure doubles it up to [`BREAKER_MAX_MS`].
const BREAKER_MIN_MS: u64 = 1_000;
const BREAKER_MAX_MS: u64 = 30_000;

/// One side's breaker (see the module docs).
#[derive(Debug)]
pub(crate) struct Breaker {
    clock: SharedClock,
    /// The clock's reading when the breaker was made; times below count from it.
    origin: Instant,
    failures: AtomicU32,
    open_until_ms: AtomicU64,
    pause_ms: AtomicU64,
}

impl Breaker {
    /// A closed breaker reading time from `clock`.
    pub fn new(clock: SharedClock) -> Breaker {
        Breaker {
            origin: clock.now(),
            clock,
            failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            pause_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.clock
            .now()
            .saturating_duration_since(self.origin)
            .as_millis() as u64
    }

    /// Whether jobs for this side are paused now.
    pub fn is_open(&self) -> bool {
        self.open_at(self.now_ms())
    }

    fn open_at(&self, now_ms: u64) -> bool {
        now_ms < self.open_until_ms.load(Ordering::Relaxed)
    }

    /// A mirror exchange to this side succeeded: the breaker closes, the pause starts over.
    pub fn succeeded(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.pause_ms.store(0, Ordering::Relaxed);
    }

    /// Records a failure; returns the pause when the breaker opens.
    pub fn failed(&self) -> Option<u64> {
        let now_ms = self.now_ms();
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n < BREAKER_FAILURES || self.open_at(now_ms) {
            return None;
        }
        let pause =
            (self.pause_ms.load(Ordering::Relaxed) * 2).clamp(BREAKER_MIN_MS, BREAKER_MAX_MS);
        self.pause_ms.store(pause, Ordering::Relaxed);
        self.open_until_ms.store(now_ms + pause, Ordering::Relaxed);
        Some(pause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ficus_core::ManualClock;
    use std::time::Duration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn opens_after_consecutive_failures_and_backs_off_on_its_clock() {
        let clock = ManualClock::new();
        let b = Breaker::new(clock.clone());
        for _ in 0..BREAKER_FAILURES - 1 {
            assert_eq!(b.failed(), None);
        }
        assert!(!b.is_open(), "four failures do not open it");
        assert_eq!(b.failed(), Some(1_000));
        assert!(b.is_open());
        clock.advance(ms(999));
        assert!(b.is_open(), "paused for the whole second");
        // Failing again while open changes nothing.
        assert_eq!(b.failed(), None);
        clock.advance(ms(1));
        assert!(!b.is_open(), "the pause is over: the next job is sent");
        // It fails too: the pause doubles.
        assert_eq!(b.failed(), Some(2_000));
        clock.advance(ms(1_999));
        assert!(b.is_open());
        clock.advance(ms(1));
        assert!(!b.is_open());
        // A success closes it and resets the pause.
        b.succeeded();
        for _ in 0..BREAKER_FAILURES - 1 {
            assert_eq!(b.failed(), None);
        }
        assert_eq!(b.failed(), Some(1_000), "success reset the pause");
        // Failing on, the pause stops doubling at 30 s.
        for _ in 0..10 {
            clock.advance(ms(b.open_until_ms.load(Ordering::Relaxed) - b.now_ms()));
            b.failed();
        }
        assert_eq!(b.pause_ms.load(Ordering::Relaxed), BREAKER_MAX_MS);
        clock.advance(ms(BREAKER_MAX_MS - 1));
        assert!(b.is_open());
        clock.advance(ms(1));
        assert!(!b.is_open());
    }
}
