//! The injectable clock: timing-sensitive verdicts (the rollback guard's window, the mirror
//! breaker, the dual-write settle window, watch's re-checks) read time from a [`Clock`], so
//! tests drive them with a [`ManualClock`] instead of sleeping.
//!
//! A clock gives both kinds of time from one source, so a test that advances it moves both:
//! monotonic [`Clock::now`] for durations and deadlines, wall [`Clock::utc`] for what is
//! stored or shown.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use time::OffsetDateTime;

/// A source of time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Monotonic time, for durations and deadlines.
    fn now(&self) -> Instant;
    /// Wall time (UTC), for what is stored, logged or shown.
    fn utc(&self) -> OffsetDateTime;
    /// Wall time as µs since 1970.
    fn unix_us(&self) -> i64 {
        crate::stamp::unix_us(self.utc())
    }
}

/// A clock shared by the parts that read it.
pub type SharedClock = Arc<dyn Clock>;

/// The system's clocks. Production uses this.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl SystemClock {
    /// The system clock as a [`SharedClock`].
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn utc(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that moves only when told to: both readings start where they were when it was made
/// and advance together by [`ManualClock::advance`].
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    start_utc: OffsetDateTime,
    elapsed: Mutex<Duration>,
}

impl ManualClock {
    /// A clock stopped at the current time.
    pub fn new() -> Arc<ManualClock> {
        ManualClock::starting_at(OffsetDateTime::now_utc())
    }

    /// A clock stopped at `utc` (its monotonic reading starts at the process's now).
    pub fn starting_at(utc: OffsetDateTime) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            start: Instant::now(),
            start_utc: utc,
            elapsed: Mutex::new(Duration::ZERO),
        })
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let mut e = self.elapsed.lock().unwrap_or_else(|p| p.into_inner());
        *e += d;
    }

    /// How far the clock has been moved since it was made.
    pub fn elapsed(&self) -> Duration {
        *self.elapsed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + self.elapsed()
    }
    fn utc(&self) -> OffsetDateTime {
        self.start_utc + self.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_both_readings_together() {
        let c = ManualClock::new();
        let (t0, u0) = (c.now(), c.utc());
        assert_eq!(c.now(), t0, "a manual clock does not move by itself");
        c.advance(Duration::from_millis(1500));
        assert_eq!(c.now() - t0, Duration::from_millis(1500));
        assert_eq!(c.utc() - u0, time::Duration::milliseconds(1500));
        let shared: SharedClock = c.clone();
        assert_eq!(shared.now(), c.now());
    }
}
