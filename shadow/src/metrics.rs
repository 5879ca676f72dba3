//! Shadow metrics, registered into the caller's registry (one per proxy instance; the global
//! default registry is never used):
//!
//! - `ficus_shadow_requests_total{route,result}`, result in
//!   `match|mismatch|noise|error|dropped|skipped`;
//! - `ficus_shadow_mismatches_total{route,kind}`: mismatched requests by kind of difference
//!   (a request counts once per kind it shows);
//! - `ficus_shadow_mirror_duration_seconds{route}`: the mirror exchange;
//! - `ficus_shadow_store_errors_total`: mismatch-store writes that failed.
//!
//! Labels come only from configured route names and fixed sets, so cardinality is bounded.
//! Handles are resolved once per route ([`RouteMetrics`]), never per request.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};

use crate::compare::DiffKind;

/// What became of one request shadow mode looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Both sides answered alike.
    Match,
    /// They differ (and not only in learned noise).
    Mismatch,
    /// They differ only in fields learned as noise.
    Noise,
    /// The mirror request failed or timed out.
    Error,
    /// The mirror queue was full.
    Dropped,
    /// A body was larger than `max_body_bytes`.
    Skipped,
}

impl Outcome {
    /// Every outcome, in label order.
    pub const ALL: [Outcome; 6] = [
        Outcome::Match,
        Outcome::Mismatch,
        Outcome::Noise,
        Outcome::Error,
        Outcome::Dropped,
        Outcome::Skipped,
    ];

    /// The `result` label and the name in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Match => "match",
            Outcome::Mismatch => "mismatch",
            Outcome::Noise => "noise",
            Outcome::Error => "error",
            Outcome::Dropped => "dropped",
            Outcome::Skipped => "skipped",
        }
    }

    /// The inverse of [`Outcome::as_str`].
    pub fn parse(s: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// The metric families, registered once.
#[derive(Clone)]
pub(crate) struct Metrics {
    requests: IntCounterVec,
    mismatches: IntCounterVec,
    duration: HistogramVec,
    pub(crate) store_errors: IntCounter,
}

impl Metrics {
    /// Creates the families (not yet registered).
    pub(crate) fn new() -> Result<Metrics, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "ficus_shadow_requests_total",
                "Requests considered for shadowing, by route and result.",
            ),
            &["route", "result"],
        )?;
        let mismatches = IntCounterVec::new(
            Opts::new(
                "ficus_shadow_mismatches_total",
                "Mismatched shadow comparisons, by route and kind of difference.",
            ),
            &["route", "kind"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "ficus_shadow_mirror_duration_seconds",
                "Duration of mirror exchanges (request sent to body read), by route.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["route"],
        )?;
        let store_errors = IntCounter::new(
            "ficus_shadow_store_errors_total",
            "Writes to the shadow mismatch store that failed.",
        )?;
        Ok(Metrics {
            requests,
            mismatches,
            duration,
            store_errors,
        })
    }

    /// Registers every family into `registry`.
    pub(crate) fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.requests.clone()))?;
        registry.register(Box::new(self.mismatches.clone()))?;
        registry.register(Box::new(self.duration.clone()))?;
        registry.register(Box::new(self.store_errors.clone()))?;
        Ok(())
    }

    /// Handles for one configured route (creates its series at zero).
    pub(crate) fn route(&self, route: &str) -> RouteMetrics {
        RouteMetrics {
            results: Outcome::ALL.map(|o| self.requests.with_label_values(&[route, o.as_str()])),
            kinds: DiffKind::ALL.map(|k| self.mismatches.with_label_values(&[route, k.as_str()])),
            duration: self.duration.with_label_values(&[route]),
        }
    }
}

/// Metric handles of one route.
#[derive(Clone)]
pub(crate) struct RouteMetrics {
    results: [IntCounter; 6],
    kinds: [IntCounter; 9],
    pub(crate) duration: Histogram,
}

impl RouteMetrics {
    pub(crate) fn count(&self, outcome: Outcome) {
        self.results[outcome as usize].inc();
    }

    pub(crate) fn count_kind(&self, kind: DiffKind) {
        self.kinds[kind.index()].inc();
    }
}
