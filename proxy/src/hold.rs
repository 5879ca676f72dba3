//! The write hold: an operator (in practice `ficus migrate cutover` / `rollback --live`) stops
//! a route's writes for a moment — they wait in the proxy instead of being forwarded — while
//! reads flow; then it releases them, and each held write goes where the route sends it *at
//! that moment*.
//!
//! # Where it sits
//! A write (any method but GET, HEAD and OPTIONS) on a held route waits at the very start of
//! `forward::handle`, after the route match and *before* the routing decision, the dual-write
//! turn, the stamp and the backend exchange. So a cut-over can hold, set the route to 100 %
//! new and release, and every held write goes to new; and a held write's backend timeout,
//! request duration and guard sample start only when it leaves the hold. Waiting is a future
//! on the worker (other requests go on); it costs one atomic load per write when the route is
//! not held, nothing for reads.
//!
//! # Architecture invariant: a hold always ends, and never fails a write
//! A hold ends when it is released or, by itself, at its deadline (`max_ms`, at most
//! [`MAX_HOLD`]): the deadline is a verdict on the proxy's clock, judged by the control plane
//! (the admin thread wakes at the deadline, and [`crate::ProxyHandle::check_holds`] judges at
//! once) and, as a backstop that needs no other thread, by every waiting write when its own
//! timer (tokio's) fires at the deadline. So an orchestrator that crashed mid-cut-over cannot
//! freeze writes. A write that waited is then forwarded normally: the hold never answers it
//! (no 503 from the hold), it only delays it.
//!
//! The control plane writes the audit rows (`hold`, `release`, `hold-expired`); a hold ended
//! by a waiting write is kept here until the control plane has recorded its expiry.
//!
//! Holds are per proxy process: with replicas, the orchestrator holds the route on each.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ficus_core::SharedClock;
use prometheus::{Histogram, IntGauge};
use time::OffsetDateTime;
use tokio::sync::Notify;

/// The longest hold an operator may ask for.
pub const MAX_HOLD: Duration = Duration::from_secs(60);

/// A hold in force: who placed it, since and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Active {
    pub by: String,
    pub since: OffsetDateTime,
    pub until: OffsetDateTime,
    /// `until` on the clock's monotonic reading: the expiry verdict compares against this.
    deadline: Instant,
}

#[derive(Default)]
struct State {
    active: Option<Active>,
    /// Holds that ended at their deadline and whose expiry is not on record yet.
    expired: Vec<Active>,
}

/// The metric handles of one route's hold.
#[derive(Clone)]
pub(crate) struct HoldMetrics {
    /// `ficus_route_held{route}`: 1 while held.
    pub held: IntGauge,
    /// `ficus_held_writes{route}`: writes waiting on the hold now.
    pub waiting: IntGauge,
    /// `ficus_in_flight_writes{route}`: writes past their routing decision, not yet answered
    /// (and, on a dual-write route, not yet mirrored).
    pub in_flight: IntGauge,
    /// `ficus_hold_wait_seconds`: how long held writes waited.
    pub wait_seconds: Histogram,
}

/// One route's write hold, shared by the route's successive tables (a reload keeps it).
pub(crate) struct Hold {
    /// Mirrors `state.active.is_some()`: the one load a write pays when nothing is held.
    held: AtomicBool,
    state: Mutex<State>,
    /// Wakes the waiting writes when the hold ends.
    ended: Notify,
    /// Wakes the control plane: a hold was placed (a new deadline to wait for) or a waiting
    /// write ended one at its deadline (an expiry to record).
    events: Arc<Notify>,
    metrics: HoldMetrics,
}

/// A write counted in `ficus_in_flight_writes` until this is dropped.
pub(crate) struct InFlightWrite(IntGauge);

impl Drop for InFlightWrite {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Decrements the waiting gauge however the wait ends (the client may leave meanwhile).
struct Waiting<'a>(&'a IntGauge);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Hold {
    pub fn new(metrics: HoldMetrics, events: Arc<Notify>) -> Hold {
        Hold {
            held: AtomicBool::new(false),
            state: Mutex::default(),
            ended: Notify::new(),
            events,
            metrics,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change under the lock leaves consistent data, so a poisoned lock is usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a hold is in force (one atomic load; the request path's check).
    #[inline]
    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    /// Writes waiting on the hold now.
    pub fn waiting(&self) -> u64 {
        u64::try_from(self.metrics.waiting.get()).unwrap_or(0)
    }

    /// Writes past their routing decision and not yet answered (or mirrored).
    pub fn in_flight(&self) -> u64 {
        u64::try_from(self.metrics.in_flight.get()).unwrap_or(0)
    }

    /// Counts a write from its routing decision until the returned guard is dropped.
    pub fn write_started(&self) -> InFlightWrite {
        self.metrics.in_flight.inc();
        InFlightWrite(self.metrics.in_flight.clone())
    }

    /// The hold in force, if any (a hold past its deadline still shows until it is judged).
    pub fn active(&self) -> Option<Active> {
        self.lock().active.clone()
    }

    /// Places a hold by `by` for `max` from now on `clock`; `Err` with the hold in force when
    /// there is one.
    pub fn begin(&self, by: &str, max: Duration, clock: &SharedClock) -> Result<Active, Active> {
        let mut st = self.lock();
        if let Some(a) = &st.active {
            return Err(a.clone());
        }
        let since = clock.utc();
        let a = Active {
            by: by.to_string(),
            since,
            until: since + max,
            deadline: clock.now() + max,
        };
        st.active = Some(a.clone());
        self.held.store(true, Ordering::Release);
        self.metrics.held.set(1);
        drop(st);
        self.events.notify_one();
        Ok(a)
    }

    /// Ends the hold in force (released by an operator); `None` when there is none.
    pub fn release(&self) -> Option<Active> {
        let mut st = self.lock();
        let a = st.active.take()?;
        self.ended_locked();
        drop(st);
        self.ended.notify_waiters();
        Some(a)
    }

    /// Marks the hold ended; the caller holds the lock and wakes the waiters once it let go.
    fn ended_locked(&self) {
        self.held.store(false, Ordering::Release);
        self.metrics.held.set(0);
    }

    /// Judges the hold on `clock`: past its deadline, it ends (and its waiters go). Returns
    /// how long it has left when it stays in force, `None` when no hold is in force now.
    fn judge(&self, clock: &SharedClock) -> Option<Duration> {
        if !self.is_held() {
            return None;
        }
        let mut st = self.lock();
        let deadline = st.active.as_ref()?.deadline;
        let now = clock.now();
        if now < deadline {
            return Some(deadline - now);
        }
        if let Some(a) = st.active.take() {
            st.expired.push(a);
        }
        self.ended_locked();
        drop(st);
        self.ended.notify_waiters();
        self.events.notify_one();
        None
    }

    /// The control plane's verdict: ends the hold if it is past its deadline and returns every
    /// hold that expired and is not on record yet (the caller records them, and gives back
    /// with [`Hold::unrecorded`] those it could not). Also returns how long the hold in force
    /// has left.
    pub fn take_expired(&self, clock: &SharedClock) -> (Vec<Active>, Option<Duration>) {
        let left = self.judge(clock);
        (std::mem::take(&mut self.lock().expired), left)
    }

    /// Expiries the control plane could not record; kept for its next attempt.
    pub fn unrecorded(&self, back: Vec<Active>) {
        let mut st = self.lock();
        let newer = std::mem::replace(&mut st.expired, back);
        st.expired.extend(newer);
    }

    /// Waits while the route is held: until the hold is released, or until its deadline on
    /// `clock` — judged when the waiter's own timer (tokio's, set to the time left on the
    /// clock) fires or when the control plane ended the hold. Returns at once, observing
    /// nothing, when the route is not held.
    pub async fn wait(&self, clock: &SharedClock) {
        if !self.is_held() {
            return;
        }
        let began = clock.now();
        self.metrics.waiting.inc();
        let waiting = Waiting(&self.metrics.waiting);
        loop {
            // Registered before the state is read, so a release in between is not missed.
            let ended = self.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            let Some(left) = self.judge(clock) else {
                break;
            };
            tokio::select! {
                _ = ended => {}
                _ = tokio::time::sleep(left) => {}
            }
        }
        drop(waiting);
        let waited = clock.now().saturating_duration_since(began);
        self.metrics.wait_seconds.observe(waited.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ficus_core::ManualClock;
    use prometheus::HistogramOpts;

    fn hold() -> (Hold, HoldMetrics) {
        let m = HoldMetrics {
            held: IntGauge::new("h", "h").unwrap(),
            waiting: IntGauge::new("w", "w").unwrap(),
            in_flight: IntGauge::new("i", "i").unwrap(),
            wait_seconds: Histogram::with_opts(HistogramOpts::new("s", "s")).unwrap(),
        };
        (Hold::new(m.clone(), Arc::new(Notify::new())), m)
    }

    #[tokio::test]
    async fn a_write_waits_until_release_and_the_gauges_follow() {
        let clock = ManualClock::new();
        let shared: SharedClock = clock.clone();
        let (h, m) = hold();
        let h = Arc::new(h);
        h.wait(&shared).await; // not held: at once
        assert_eq!(m.wait_seconds.get_sample_count(), 0);
        let a = h.begin("cutover", Duration::from_secs(2), &shared).unwrap();
        assert_eq!(a.until - a.since, time::Duration::seconds(2));
        assert_eq!(m.held.get(), 1);
        let again = h.begin("other", Duration::from_secs(2), &shared);
        assert_eq!(again.unwrap_err().by, "cutover");
        let (h2, s2) = (h.clone(), shared.clone());
        let waiter = tokio::spawn(async move { h2.wait(&s2).await });
        while m.waiting.get() != 1 {
            tokio::task::yield_now().await;
        }
        clock.advance(Duration::from_millis(300));
        assert_eq!(h.release().map(|a| a.by), Some("cutover".to_string()));
        waiter.await.unwrap();
        assert_eq!((m.held.get(), m.waiting.get()), (0, 0));
        assert_eq!(m.wait_seconds.get_sample_count(), 1);
        assert!((m.wait_seconds.get_sample_sum() - 0.3).abs() < 1e-9);
        assert!(h.release().is_none(), "nothing left to release");
    }

    #[tokio::test]
    async fn a_hold_ends_at_its_deadline_on_the_clock_and_is_kept_until_recorded() {
        let clock = ManualClock::new();
        let shared: SharedClock = clock.clone();
        let (h, m) = hold();
        h.begin("cutover", Duration::from_millis(500), &shared)
            .unwrap();
        let (expired, left) = h.take_expired(&shared);
        assert!(expired.is_empty());
        assert_eq!(left, Some(Duration::from_millis(500)));
        clock.advance(Duration::from_millis(500));
        // A waiting write judges it by itself, and goes.
        h.wait(&shared).await;
        assert!(!h.is_held());
        assert_eq!(m.held.get(), 0);
        let (expired, left) = h.take_expired(&shared);
        assert_eq!((expired.len(), left), (1, None));
        // Not recorded (the state store failed): kept for the next attempt.
        h.unrecorded(expired);
        let (expired, _) = h.take_expired(&shared);
        assert_eq!(expired[0].by, "cutover");
        assert!(h.take_expired(&shared).0.is_empty());
    }

    #[test]
    fn in_flight_writes_are_counted_until_dropped() {
        let (h, _) = hold();
        let a = h.write_started();
        let b = h.write_started();
        assert_eq!(h.in_flight(), 2);
        drop((a, b));
        assert_eq!(h.in_flight(), 0);
    }
}
