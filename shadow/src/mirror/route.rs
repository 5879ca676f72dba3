//! A shadowed route as shadow mode keeps it: compiled comparison rules, the two base URLs,
//! metric handles, the outcome counts not yet in the store, and a circuit breaker per side.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ficus_core::SharedClock;
use http::Uri;
use tokio::sync::mpsc;

use super::breaker::Breaker;
use crate::capture::Side;
use crate::compare::CompareRules;
use crate::config::RouteShadowConfig;
use crate::error::ShadowError;
use crate::metrics::{Outcome, RouteMetrics};
use crate::store::{now_ms, Op};

/// What the proxy tells shadow mode about one of its routes.
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec<'a> {
    /// The configured route name (the only route label metrics get).
    pub name: &'a str,
    /// The route's `[routes.shadow]` table.
    pub config: &'a RouteShadowConfig,
    /// The route's `dual_write` setting: mirror writes too.
    pub dual_write: bool,
    /// Base URL of the legacy backend (`http://host:port`, optionally with a path prefix).
    pub legacy_url: &'a str,
    /// Base URL of the new backend.
    pub new_url: &'a str,
}

/// A route's compiled shadow settings and metric handles. Build with [`Shadow::route`] when
/// the proxy loads (or reloads) its configuration; share it with `Arc`.
pub struct ShadowRoute {
    pub(super) name: Arc<str>,
    pub(super) sample: f64,
    pub(super) learn_noise: f64,
    pub(super) dual_write: bool,
    pub(super) rules: CompareRules,
    pub(super) legacy: Uri,
    pub(super) new: Uri,
    pub(super) metrics: RouteMetrics,
    /// Outcomes not yet written to the store, by [`Outcome`] index; harvested every second.
    counts: [AtomicU64; 6],
    /// Mirroring to a side that keeps failing pauses, by [`Side`] (legacy, new).
    breakers: [Breaker; 2],
    pub(super) store: mpsc::Sender<Op>,
}

impl std::fmt::Debug for ShadowRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShadowRoute")
            .field("name", &self.name)
            .field("sample", &self.sample)
            .field("learn_noise", &self.learn_noise)
            .field("dual_write", &self.dual_write)
            .finish_non_exhaustive()
    }
}

impl ShadowRoute {
    /// The route name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether writes are mirrored on this route.
    pub fn dual_write(&self) -> bool {
        self.dual_write
    }

    pub(super) fn base(&self, side: Side) -> &Uri {
        match side {
            Side::Legacy => &self.legacy,
            Side::New => &self.new,
        }
    }

    pub(super) fn breaker(&self, side: Side) -> &Breaker {
        &self.breakers[side as usize]
    }

    /// Counts an outcome: the metric now, the store at the next harvest. One atomic add each,
    /// so the proxy's threads can count without touching the store.
    pub(super) fn record(&self, outcome: Outcome) {
        self.metrics.count(outcome);
        self.counts[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn take_counts(&self) -> Vec<(Arc<str>, Outcome, u64)> {
        Outcome::ALL
            .iter()
            .filter_map(|o| {
                let n = self.counts[*o as usize].swap(0, Ordering::Relaxed);
                (n > 0).then(|| (self.name.clone(), *o, n))
            })
            .collect()
    }
}

impl Drop for ShadowRoute {
    fn drop(&mut self) {
        // A route replaced by a reload hands over what it counted since the last harvest.
        let counts = self.take_counts();
        if !counts.is_empty() {
            let _ = self.store.try_send(Op::Counts {
                counts,
                time_ms: now_ms(),
            });
        }
    }
}

impl ShadowRoute {
    /// Compiles `spec`; its breakers read time from `clock`, its counts go to `store`.
    pub(super) fn new(
        spec: RouteSpec<'_>,
        metrics: RouteMetrics,
        store: mpsc::Sender<Op>,
        clock: &SharedClock,
    ) -> Result<ShadowRoute, ShadowError> {
        if spec.name.is_empty() {
            return Err(ShadowError::config("name", "a shadowed route needs a name"));
        }
        Ok(ShadowRoute {
            name: Arc::from(spec.name),
            sample: spec.config.sample,
            learn_noise: spec.config.learn_noise,
            dual_write: spec.dual_write,
            rules: CompareRules::new(spec.config)?,
            legacy: base_url(spec.legacy_url, "backends.legacy.url")?,
            new: base_url(spec.new_url, "backends.new.url")?,
            metrics,
            counts: Default::default(),
            breakers: [Breaker::new(clock.clone()), Breaker::new(clock.clone())],
            store,
        })
    }
}

fn base_url(url: &str, field: &str) -> Result<Uri, ShadowError> {
    let uri: Uri = url
        .parse()
        .map_err(|e| ShadowError::config(field, format!("{url:?} is not a URL: {e}")))?;
    // https:// backends: the TLS settings come from the proxy (`Shadow::use_tls`).
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
        return Err(ShadowError::config(
            field,
            format!("{url:?}: shadow mirrors to http(s)://host:port URLs only"),
        ));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_http_or_https() {
        assert!(base_url("http://127.0.0.1:8001", "f").is_ok());
        assert!(base_url("https://h:8443", "f").is_ok());
        assert!(base_url("ftp://h", "f").is_err());
        assert!(base_url("nope", "f").is_err());
    }
}
