//! A route's evidence: one windowed record per route of what both sides answered (requests,
//! 5xx, latency) and of the shadow comparisons (match, mismatch, learned noise), with the
//! comparisons of a step plan's pre-flight cohort kept apart. The one owner of these counts:
//! the rollback guard judges its sliding window from it, a step plan judges the evidence of
//! its current phase from it; neither keeps a copy.
//!
//! # Architecture invariant: a few atomics per request
//! The record is a ring of time buckets on the proxy's [`Clock`](ficus_core::Clock); a request
//! adds to the current bucket with relaxed atomic adds (requests, maybe errors, maybe the two
//! slow counters, one latency-histogram cell): no lock, no allocation. A bucket is recycled by
//! the first request that finds it holding an older period, so counts landing in the instant
//! of a recycle may be lost — a verdict over hundreds of requests does not care.
//!
//! Two thresholds are exact without a histogram: p99 > T exactly when more than 1 % of the
//! requests took longer than T, so each request compares its latency with the guard's
//! `max_p99_ms` and the plan's (`slow`). The p99 *values* shown as evidence and compared
//! between the sides come from a log histogram (2 cells per octave from 256 µs to 67 s,
//! interpolated within the cell): within ±25 % of the true p99.
//!
//! Windows are read off the hot path ([`Evidence::totals`]): the buckets of the last `window`
//! that ended after `since` (a guard's re-arming, a plan phase's start) — at bucket
//! resolution: the bucket a phase began in counts whole.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ficus_core::{SharedClock, Side};
use serde::Serialize;

/// Latency histogram cells: under 256 µs, 2 per octave up to 2^26 µs, over.
pub(crate) const CELLS: usize = 2 + 2 * (LAST_OCTAVE - FIRST_OCTAVE) as usize;
const FIRST_OCTAVE: u32 = 8;
const LAST_OCTAVE: u32 = 26;
/// At most this many time buckets per route.
const MAX_BUCKETS: u64 = 240;

/// The histogram cell of a latency in microseconds.
#[inline]
fn cell(us: u64) -> usize {
    if us < (1 << FIRST_OCTAVE) {
        return 0;
    }
    let octave = 63 - us.leading_zeros();
    if octave >= LAST_OCTAVE {
        return CELLS - 1;
    }
    let half = ((us >> (octave - 1)) & 1) as usize;
    1 + 2 * (octave - FIRST_OCTAVE) as usize + half
}

/// The latency bounds of a cell, in microseconds.
fn cell_bounds(c: usize) -> (f64, f64) {
    if c == 0 {
        return (0.0, f64::from(1u32 << FIRST_OCTAVE));
    }
    if c == CELLS - 1 {
        let lo = (1u64 << LAST_OCTAVE) as f64;
        return (lo, lo);
    }
    let octave = FIRST_OCTAVE + ((c - 1) / 2) as u32;
    let base = (1u64 << octave) as f64;
    if (c - 1).is_multiple_of(2) {
        (base, base * 1.5)
    } else {
        (base * 1.5, base * 2.0)
    }
}

/// What shapes a route's record: how far back it reaches, how fine its buckets are, and the
/// two exact p99 thresholds (the guard's and the plan's, milliseconds; `u64::MAX`: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EvidenceSpec {
    pub span: Duration,
    pub resolution: Duration,
    pub slow_ms: [u64; 2],
}

/// The index of the guard's threshold in [`EvidenceSpec::slow_ms`] and [`SideTotals::slow`].
pub(crate) const GUARD: usize = 0;
/// The index of the plan's.
pub(crate) const PLAN: usize = 1;

struct SideCounts {
    requests: AtomicU64,
    errors: AtomicU64,
    slow: [AtomicU64; 2],
    latency: [AtomicU64; CELLS],
}

impl Default for SideCounts {
    fn default() -> Self {
        SideCounts {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            slow: Default::default(),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

#[derive(Default)]
struct Bucket {
    /// Which bucket-length period these counts belong to (`now / bucket_ms`), plus 1 (0: never).
    epoch: AtomicU64,
    side: [SideCounts; 2],
    compared: AtomicU64,
    mismatched: AtomicU64,
    noise: AtomicU64,
    current_compared: AtomicU64,
    current_mismatched: AtomicU64,
    current_noise: AtomicU64,
    cohort_mirrored: AtomicU64,
    cohort_compared: AtomicU64,
    cohort_mismatched: AtomicU64,
    cohort_noise: AtomicU64,
    cohort_errors: AtomicU64,
}

fn zero(cs: &[&AtomicU64]) {
    for c in cs {
        c.store(0, Ordering::Relaxed);
    }
}

impl Bucket {
    fn clear(&self) {
        for s in &self.side {
            zero(&[&s.requests, &s.errors, &s.slow[0], &s.slow[1]]);
            for c in &s.latency {
                c.store(0, Ordering::Relaxed);
            }
        }
        zero(&[
            &self.compared,
            &self.mismatched,
            &self.noise,
            &self.current_compared,
            &self.current_mismatched,
            &self.current_noise,
            &self.cohort_mirrored,
            &self.cohort_compared,
            &self.cohort_mismatched,
            &self.cohort_noise,
            &self.cohort_errors,
        ]);
    }
}

/// One side's sums over a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SideTotals {
    pub requests: u64,
    pub errors: u64,
    /// Requests slower than the guard's (`[GUARD]`) and the plan's (`[PLAN]`) `max_p99_ms`.
    pub slow: [u64; 2],
    latency: [u64; CELLS],
}

impl Default for SideTotals {
    fn default() -> Self {
        SideTotals {
            requests: 0,
            errors: 0,
            slow: [0; 2],
            latency: [0; CELLS],
        }
    }
}

impl SideTotals {
    /// The 5xx share, when there were requests.
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }

    /// The p99 latency estimated from the histogram, in milliseconds.
    pub fn p99_ms(&self) -> Option<f64> {
        let n: u64 = self.latency.iter().sum();
        if n == 0 {
            return None;
        }
        let rank = (n * 99).div_ceil(100).max(1);
        let mut seen = 0;
        for (c, &k) in self.latency.iter().enumerate() {
            if k == 0 {
                continue;
            }
            if seen + k >= rank {
                let (lo, hi) = cell_bounds(c);
                let within = (rank - seen) as f64 / k as f64;
                return Some((lo + (hi - lo) * within) / 1000.0);
            }
            seen += k;
        }
        None
    }
}

/// Sums over a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Totals {
    /// By [`Side::index`].
    pub side: [SideTotals; 2],
    /// Shadow comparisons (match, mismatch or noise) outside the pre-flight cohort.
    pub compared: u64,
    pub mismatched: u64,
    /// Comparisons that differed only in learned noise (not mismatches).
    pub noise: u64,
    /// Of those comparisons, the ones of requests the new side answered (the current cohort).
    pub current_compared: u64,
    pub current_mismatched: u64,
    pub current_noise: u64,
    /// The pre-flight cohort's mirror jobs that ended (compared, or failed).
    pub cohort_mirrored: u64,
    pub cohort_compared: u64,
    pub cohort_mismatched: u64,
    pub cohort_noise: u64,
    /// Cohort mirrors the new side failed or answered 5xx.
    pub cohort_errors: u64,
}

impl Totals {
    pub fn new_side(&self) -> &SideTotals {
        &self.side[Side::New.index()]
    }
    pub fn legacy(&self) -> &SideTotals {
        &self.side[Side::Legacy.index()]
    }
}

/// A comparison's outcome, as the evidence counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compared {
    Match,
    Noise,
    Mismatch,
    /// The mirror exchange failed (no comparison).
    Failed,
}

/// One route's record.
pub(crate) struct Evidence {
    pub spec: EvidenceSpec,
    clock: SharedClock,
    /// The clock's reading when the record was made: bucket periods count from here.
    origin: Instant,
    bucket_ms: u64,
    buckets: Box<[Bucket]>,
}

impl Evidence {
    pub fn new(spec: EvidenceSpec, clock: SharedClock) -> Evidence {
        let span_ms = spec.span.as_millis().max(1) as u64;
        let bucket_ms = (spec.resolution.as_millis() as u64)
            .max(span_ms.div_ceil(MAX_BUCKETS))
            .max(1);
        let n = span_ms.div_ceil(bucket_ms) as usize + 1;
        Evidence {
            spec,
            origin: clock.now(),
            clock,
            bucket_ms,
            buckets: (0..n).map(|_| Bucket::default()).collect(),
        }
    }

    /// Milliseconds since the record was made, on its clock.
    #[inline]
    pub fn now_ms(&self) -> u64 {
        self.ms_at(self.clock.now())
    }

    /// `t` in the record's milliseconds (0 before it was made).
    pub fn ms_at(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.origin).as_millis() as u64
    }

    /// The bucket for now, recycled first if it holds an older period.
    #[inline]
    fn bucket(&self) -> &Bucket {
        let epoch = self.now_ms() / self.bucket_ms + 1;
        let b = &self.buckets[(epoch % self.buckets.len() as u64) as usize];
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

    /// Counts one request answered by (or failed at) `side`; `took`: its time to the response
    /// head, measured on the same clock.
    #[inline]
    pub fn request(&self, side: Side, status: u16, took: Duration) {
        let s = &self.bucket().side[side.index()];
        s.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            s.errors.fetch_add(1, Ordering::Relaxed);
        }
        let ms = took.as_millis() as u64;
        for (i, &t) in self.spec.slow_ms.iter().enumerate() {
            if ms > t {
                s.slow[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        s.latency[cell(took.as_micros() as u64)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one shadow comparison; `on_new`: the new side answered the client (the mirror
    /// went to legacy); `cohort`: the request's key is in a plan's pre-flight cohort, and
    /// `mirror_error` says whether the new side failed or answered 5xx.
    pub fn compared(&self, outcome: Compared, on_new: bool, cohort: bool, mirror_error: bool) {
        let b = self.bucket();
        let add = |c: &AtomicU64| {
            c.fetch_add(1, Ordering::Relaxed);
        };
        if cohort {
            add(&b.cohort_mirrored);
            if mirror_error {
                add(&b.cohort_errors);
            }
            match outcome {
                Compared::Match => add(&b.cohort_compared),
                Compared::Noise => {
                    add(&b.cohort_compared);
                    add(&b.cohort_noise);
                }
                Compared::Mismatch => {
                    add(&b.cohort_compared);
                    add(&b.cohort_mismatched);
                }
                Compared::Failed => {}
            }
            return;
        }
        let (compared, mismatched, noise) = (
            [&b.compared, &b.current_compared],
            [&b.mismatched, &b.current_mismatched],
            [&b.noise, &b.current_noise],
        );
        let n = if on_new { 2 } else { 1 };
        match outcome {
            Compared::Match => compared[..n].iter().for_each(|c| add(c)),
            Compared::Noise => {
                compared[..n].iter().for_each(|c| add(c));
                noise[..n].iter().for_each(|c| add(c));
            }
            Compared::Mismatch => {
                compared[..n].iter().for_each(|c| add(c));
                mismatched[..n].iter().for_each(|c| add(c));
            }
            Compared::Failed => {}
        }
    }

    /// Sums the buckets of the last `window` that ended after `since_ms` (see
    /// [`Evidence::now_ms`]): the bucket in which `since_ms` falls counts whole. A window
    /// longer than the record's span is the span.
    pub fn totals(&self, window: Duration, since_ms: u64) -> Totals {
        let current = self.now_ms() / self.bucket_ms + 1;
        let reach = (window.as_millis() as u64)
            .div_ceil(self.bucket_ms)
            .min(self.buckets.len() as u64 - 1)
            .max(1);
        let mut t = Totals::default();
        for b in self.buckets.iter() {
            let e = b.epoch.load(Ordering::Relaxed);
            if e == 0 || e + reach <= current || e > current || e * self.bucket_ms <= since_ms {
                continue;
            }
            for (side, s) in t.side.iter_mut().zip(&b.side) {
                side.requests += s.requests.load(Ordering::Relaxed);
                side.errors += s.errors.load(Ordering::Relaxed);
                for i in 0..2 {
                    side.slow[i] += s.slow[i].load(Ordering::Relaxed);
                }
                for (c, cell) in side.latency.iter_mut().zip(&s.latency) {
                    *c += cell.load(Ordering::Relaxed);
                }
            }
            let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
            t.compared += l(&b.compared);
            t.mismatched += l(&b.mismatched);
            t.noise += l(&b.noise);
            t.current_compared += l(&b.current_compared);
            t.current_mismatched += l(&b.current_mismatched);
            t.current_noise += l(&b.current_noise);
            t.cohort_mirrored += l(&b.cohort_mirrored);
            t.cohort_compared += l(&b.cohort_compared);
            t.cohort_mismatched += l(&b.cohort_mismatched);
            t.cohort_noise += l(&b.cohort_noise);
            t.cohort_errors += l(&b.cohort_errors);
        }
        t
    }

    /// The start of the bucket after the current one: a `since` that excludes everything
    /// counted so far.
    pub fn next_bucket_ms(&self) -> u64 {
        (self.now_ms() / self.bucket_ms + 1) * self.bucket_ms
    }
}

/// A side's evidence as recorded with a plan step (audit `detail`, status).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize, Default)]
pub struct SideEvidence {
    /// Requests answered by the side in the window.
    pub requests: u64,
    /// Their 5xx share (proxy-made 502/504 included).
    pub error_rate: Option<f64>,
    /// Their p99 time to response head, in milliseconds (histogram estimate).
    pub p99_ms: Option<f64>,
}

impl From<&SideTotals> for SideEvidence {
    fn from(s: &SideTotals) -> SideEvidence {
        SideEvidence {
            requests: s.requests,
            error_rate: s.error_rate(),
            p99_ms: s.p99_ms().map(|v| (v * 10.0).round() / 10.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ficus_core::ManualClock;

    #[test]
    fn cells_cover_the_range_in_order() {
        let mut last = 0;
        for us in [
            0,
            255,
            256,
            383,
            384,
            511,
            512,
            1000,
            300_000,
            1 << 25,
            1 << 27,
        ] {
            let c = cell(us);
            assert!(c >= last, "{us}: {c} < {last}");
            let (lo, hi) = cell_bounds(c);
            assert!(
                (lo <= us as f64 && (us as f64) < hi) || c == CELLS - 1 || c == 0,
                "{us} in {lo}..{hi}"
            );
            last = c;
        }
        assert_eq!(cell(1 << 30), CELLS - 1);
    }

    #[test]
    fn p99_estimate_and_exact_slow_counts() {
        let clock = ManualClock::new();
        let spec = EvidenceSpec {
            span: Duration::from_secs(60),
            resolution: Duration::from_secs(3),
            slow_ms: [500, 250],
        };
        let e = Evidence::new(spec, clock.clone());
        for i in 0..1000 {
            let ms = if i < 20 { 400 } else { 10 };
            e.request(Side::New, 200, Duration::from_millis(ms));
            e.request(
                Side::Legacy,
                if i < 5 { 503 } else { 200 },
                Duration::from_millis(10),
            );
        }
        let t = e.totals(Duration::from_secs(60), 0);
        let n = t.new_side();
        assert_eq!((n.requests, n.errors, n.slow), (1000, 0, [0, 20]));
        let p99 = n.p99_ms().unwrap();
        assert!((300.0..=500.0).contains(&p99), "{p99}");
        let l = t.legacy().p99_ms().unwrap();
        assert!((8.0..=12.5).contains(&l), "{l}");
        assert_eq!(t.legacy().error_rate(), Some(0.005));
        // A later `since` leaves them out; so does time.
        assert_eq!(
            e.totals(Duration::from_secs(60), e.next_bucket_ms()).side[0].requests,
            0
        );
        clock.advance(Duration::from_secs(61));
        assert_eq!(e.totals(Duration::from_secs(60), 0), Totals::default());
    }

    #[test]
    fn cohort_comparisons_are_kept_apart() {
        let clock = ManualClock::new();
        let spec = EvidenceSpec {
            span: Duration::from_secs(10),
            resolution: Duration::from_millis(500),
            slow_ms: [u64::MAX; 2],
        };
        let e = Evidence::new(spec, clock);
        e.compared(Compared::Mismatch, false, true, false);
        e.compared(Compared::Failed, false, true, true);
        e.compared(Compared::Noise, false, false, false);
        e.compared(Compared::Match, true, false, false);
        e.compared(Compared::Mismatch, false, false, false);
        let t = e.totals(Duration::from_secs(10), 0);
        assert_eq!((t.compared, t.mismatched, t.noise), (3, 1, 1));
        assert_eq!(
            (t.current_compared, t.current_mismatched),
            (1, 0),
            "served by new"
        );
        assert_eq!(
            (
                t.cohort_mirrored,
                t.cohort_compared,
                t.cohort_mismatched,
                t.cohort_errors
            ),
            (2, 1, 1, 1)
        );
    }
}
