//! A plan's part on the hot path, one per planned route in the routing table: the pre-flight
//! cohort requests are tested against (one relaxed atomic load per request on a planned route;
//! the key's bucket is hashed only while a pre-flight runs), and the cohort's mismatches as
//! shadow mode reports them (a short lock on the shadow thread, never on a worker).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use prometheus::IntCounter;

use super::config::PlanConfig;
use super::state::{CohortMismatch, MAX_LISTED};

/// The cohort counters of a planned route.
#[derive(Clone)]
pub(crate) struct CohortMetrics {
    /// `ficus_plan_preflight_requests_total{route}`: cohort requests mirrored to the new side.
    pub mirrored: IntCounter,
    /// `ficus_plan_preflight_mismatches_total{route}`.
    pub mismatches: IntCounter,
}

/// One planned route's run-time part.
pub(crate) struct PlanRuntime {
    pub cfg: PlanConfig,
    /// The route's shadow mode samples its traffic (`sample > 0`): the hold judges mismatches.
    pub sampled: bool,
    /// The pre-flight cohort `[lo, hi)` in basis points as `hi << 32 | lo` (`hi > lo`, so 0
    /// means none).
    cohort: AtomicU64,
    mismatches: Mutex<Vec<CohortMismatch>>,
    pub metrics: CohortMetrics,
}

impl PlanRuntime {
    pub fn new(cfg: PlanConfig, sampled: bool, metrics: CohortMetrics) -> PlanRuntime {
        PlanRuntime {
            cfg,
            sampled,
            cohort: AtomicU64::new(0),
            mismatches: Mutex::new(Vec::new()),
            metrics,
        }
    }

    /// Sets the cohort being pre-flighted (`None`: none). A new cohort starts a new list of
    /// mismatches.
    pub fn set_cohort(&self, c: Option<(u32, u32)>) {
        let v = c.map_or(0, |(lo, hi)| (u64::from(hi) << 32) | u64::from(lo));
        if self.cohort.swap(v, Ordering::Relaxed) != v {
            self.list().clear();
        }
    }

    /// The cohort being pre-flighted.
    #[inline]
    pub fn cohort(&self) -> Option<(u32, u32)> {
        let v = self.cohort.load(Ordering::Relaxed);
        (v != 0).then_some((v as u32, (v >> 32) as u32))
    }

    fn list(&self) -> std::sync::MutexGuard<'_, Vec<CohortMismatch>> {
        self.mismatches.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps a cohort mismatch (the first [`MAX_LISTED`]).
    pub fn note_mismatch(&self, m: CohortMismatch) {
        self.metrics.mismatches.inc();
        let mut l = self.list();
        if l.len() < MAX_LISTED {
            l.push(m);
        }
    }

    /// The current cohort's mismatches so far.
    pub fn mismatches(&self) -> Vec<CohortMismatch> {
        self.list().clone()
    }
}
