//! The admin web page at `GET /` of `admin_listen`, and the two JSON endpoints it reads.
//!
//! The page (`page/index.html`, `page/app.js`, `page/style.css`) is compiled into the binary
//! with `include_str!`: no CDN, no external fonts, nothing fetched from elsewhere (a
//! `Content-Security-Policy` of `'self'` says so to the browser). It polls
//! `GET /admin/summary` every 2 s — routes with percent and source (a held route with a
//! "held" badge, who holds its writes until when, how many wait and are in flight), the step
//! plans (status, step, phase, what they wait for, the gates against their thresholds, the
//! pre-flight cohort's mismatches; start, pause, resume, abort), recent audit rows (with a
//! step's evidence), and every `ficus_*` sample of this proxy's registry (request and shadow
//! counters, migration and drift metrics when a component registered them) — and, once the operator entered the admin token
//! (kept in the tab's `sessionStorage`), `GET /admin/mismatches`, which reads the newest rows of
//! the shadow mismatch store given with [`crate::ProxyHandle::set_shadow_store`]. Mutations go
//! through the ordinary admin API (`PUT .../rollout`, `POST /admin/rollback`).

use std::collections::BTreeMap;
use std::path::Path;

use prometheus::proto::MetricType;
use serde::Serialize;
use serde_json::{json, Value};

use crate::control::Control;
use crate::error::ProxyError;

/// The page.
pub(crate) const INDEX_HTML: &str = include_str!("page/index.html");
/// Its script.
pub(crate) const APP_JS: &str = include_str!("page/app.js");
/// Its style sheet.
pub(crate) const STYLE_CSS: &str = include_str!("page/style.css");
/// Sent with the page: only this origin's scripts, styles and API.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One sample of a metric family.
#[derive(Debug, Serialize)]
struct Sample {
    labels: BTreeMap<String, String>,
    /// Counter, gauge or untyped value.
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<f64>,
    /// Histogram or summary: observation count and sum.
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sum: Option<f64>,
}

/// Every `ficus_*` sample of the proxy's registry, by family name.
fn samples(registry: &prometheus::Registry) -> BTreeMap<String, Vec<Sample>> {
    let mut out = BTreeMap::new();
    for mf in registry.gather() {
        let name = mf.name();
        if !name.starts_with("ficus_") {
            continue;
        }
        let kind = mf.get_field_type();
        let list: Vec<Sample> = mf
            .get_metric()
            .iter()
            .map(|m| {
                let labels = m
                    .get_label()
                    .iter()
                    .map(|l| (l.name().to_string(), l.value().to_string()))
                    .collect();
                match kind {
                    MetricType::COUNTER => Sample {
                        labels,
                        value: Some(m.get_counter().get_value()),
                        count: None,
                        sum: None,
                    },
                    MetricType::GAUGE => Sample {
                        labels,
                        value: Some(m.get_gauge().get_value()),
                        count: None,
                        sum: None,
                    },
                    MetricType::HISTOGRAM => Sample {
                        labels,
                        value: None,
                        count: Some(m.get_histogram().get_sample_count()),
                        sum: Some(m.get_histogram().get_sample_sum()),
                    },
                    MetricType::SUMMARY => Sample {
                        labels,
                        value: None,
                        count: Some(m.get_summary().sample_count()),
                        sum: Some(m.get_summary().sample_sum()),
                    },
                    // ficus registers no untyped metrics.
                    MetricType::UNTYPED => Sample {
                        labels,
                        value: None,
                        count: None,
                        sum: None,
                    },
                }
            })
            .collect();
        out.insert(name.to_string(), list);
    }
    out
}

fn section(metrics: &BTreeMap<String, Vec<Sample>>, prefixes: &[&str], note: &str) -> Value {
    let names: Vec<&String> = metrics
        .keys()
        .filter(|n| prefixes.iter().any(|p| n.starts_with(p)))
        .collect();
    if names.is_empty() {
        json!({ "available": false, "metrics": [], "note": note })
    } else {
        json!({ "available": true, "metrics": names, "note": "" })
    }
}

/// `GET /admin/summary`.
pub(crate) fn summary(control: &Control) -> Result<Value, ProxyError> {
    let routes = control.routes()?;
    let audit = control.audit(10)?;
    let metrics = samples(control.shared.metrics.registry());
    let shadow_wired = metrics.keys().any(|n| n.starts_with("ficus_shadow_"));
    let migration = section(
        &metrics,
        &["ficus_migrate_"],
        "this proxy has no migration metrics; `ficus migrate status` reads the migration's progress, \
         and `ficus migrate run --metrics-addr ADDR` serves its metrics to Prometheus",
    );
    let drift = section(
        &metrics,
        &["ficus_drift_", "ficus_dual_write"],
        "no dual-write drift metrics in this proxy; `ficus migrate watch` checks and exports drift",
    );
    let at_ms = control.clock().unix_us() / 1000;
    let config = control.config();
    let mut plans = Vec::new();
    for rc in config.routes.iter().filter(|r| r.plan.is_some()) {
        plans.push(crate::planner::status(control, &rc.name)?);
    }
    let backends: serde_json::Map<String, Value> = config
        .backends
        .tls_modes()
        .into_iter()
        .zip([&config.backends.legacy, &config.backends.new])
        .map(|((name, tls), b)| {
            (
                name.to_string(),
                json!({ "url": b.url.to_string(), "tls": tls }),
            )
        })
        .collect();
    Ok(json!({
        "backends": backends,
        "warnings": config.backends.warnings(),
        "version": env!("CARGO_PKG_VERSION"),
        "at_ms": at_ms,
        "state": control.state_kind(),
        "routes": routes,
        "plans": plans,
        "audit": audit,
        "shadow": {
            "wired": shadow_wired,
            "store": control.shadow_store().is_some(),
        },
        "migration": migration,
        "drift": drift,
        "metrics": metrics,
    }))
}

/// `GET /admin/mismatches?limit=N&route=R`: the newest mismatches from the shadow store.
pub(crate) fn mismatches(control: &Control, limit: usize, route: Option<&str>) -> Value {
    let Some(path) = control.shadow_store() else {
        return json!({
            "available": false,
            "mismatches": [],
            "note": "no shadow mismatch store is configured for this proxy, so there is nothing to show \
                     here; `ficus shadow report` reads a store directly",
        });
    };
    match read_mismatches(&path, limit, route) {
        Ok(list) => json!({ "available": true, "mismatches": list, "note": "" }),
        Err(e) => json!({
            "available": false,
            "mismatches": [],
            "note": format!("cannot read the shadow store {}: {e}", path.display()),
        }),
    }
}

fn read_mismatches(
    path: &Path,
    limit: usize,
    route: Option<&str>,
) -> Result<Vec<ficus_shadow::MismatchRecord>, ficus_shadow::ShadowError> {
    // A store not created yet (nothing mirrored so far) simply has no mismatches.
    match ficus_shadow::Store::open_existing(path) {
        Ok(store) => store.latest_mismatches(limit, route),
        Err(ficus_shadow::ShadowError::NoStore(_)) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}
