//! A route's comparison rules ([`CompareRules`]), compiled once from its `[routes.shadow]`
//! settings: ignored subtrees, unordered arrays, the float tolerance, which headers are judged.

use std::collections::HashSet;

use http::HeaderName;

use crate::config::RouteShadowConfig;
use crate::error::ShadowError;
use crate::pointer::GlobSet;

/// Headers never judged under `compare_headers = ["*"]` besides the hop-by-hop ones
/// ([`ficus_core::headers::HOP_BY_HOP`]): values that differ on every response, and what the
/// proxy itself adds.
const UNJUDGED_HEADERS: &[&str] = &["date", "content-length", "x-ficus-route", "x-ficus-backend"];

/// Whether a header is left out of `compare_headers = ["*"]`.
pub(super) fn unjudged(name: &str) -> bool {
    UNJUDGED_HEADERS.contains(&name) || ficus_core::headers::is_hop_by_hop(name)
}

#[derive(Debug, Clone)]
pub(super) enum HeaderRule {
    All,
    Listed(Vec<HeaderName>),
}

/// A route's comparison rules, compiled from its [`RouteShadowConfig`].
#[derive(Debug, Clone)]
pub struct CompareRules {
    pub(super) ignore: GlobSet,
    pub(super) unordered: GlobSet,
    pub(super) float_tolerance: f64,
    pub(super) headers: HeaderRule,
    pub(super) ignore_headers: HashSet<HeaderName>,
}

impl Default for CompareRules {
    fn default() -> Self {
        CompareRules {
            ignore: GlobSet::default(),
            unordered: GlobSet::default(),
            float_tolerance: 0.0,
            headers: HeaderRule::Listed(Vec::new()),
            ignore_headers: HashSet::new(),
        }
    }
}

impl CompareRules {
    /// Validates `cfg` and compiles its globs and header names.
    pub fn new(cfg: &RouteShadowConfig) -> Result<CompareRules, ShadowError> {
        cfg.validate()?;
        let globs = |list: &[String], name: &str| {
            GlobSet::parse(list)
                .map_err(|(i, e)| ShadowError::config(format!("shadow.{name}[{i}]"), e))
        };
        let names = |list: &[String]| -> Vec<HeaderName> {
            // Validated above, so every name parses.
            list.iter()
                .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
                .collect()
        };
        let headers = if cfg.compare_headers.iter().any(|h| h == "*") {
            HeaderRule::All
        } else {
            HeaderRule::Listed(names(&cfg.compare_headers))
        };
        Ok(CompareRules {
            ignore: globs(&cfg.ignore, "ignore")?,
            unordered: globs(&cfg.unordered_arrays, "unordered_arrays")?,
            float_tolerance: cfg.float_tolerance,
            headers,
            ignore_headers: names(&cfg.ignore_headers).into_iter().collect(),
        })
    }
}
