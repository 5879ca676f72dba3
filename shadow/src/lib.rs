//! ficus-shadow: shadow mode — mirror requests to the side that did not serve them, compare
//! the two responses, learn what is noise, keep a durable, redacted mismatch log, report.
//!
//! # Using it from the proxy
//! ```ignore
//! // At start: one Shadow per proxy instance, metrics into the instance's registry.
//! let shadow = Arc::new(Shadow::new(&cfg.shadow, &registry)?);
//! // At every config (re)load, per route with a [routes.shadow] table:
//! let sroute = shadow.route(RouteSpec { name, config: &route.shadow, dual_write: route.dual_write,
//!                                       legacy_url, new_url })?;
//! // Per request, before forwarding:
//! if shadow.decide(&sroute, req.method()).is_mirror() {
//!     // Tee the request body into a slot, forward it, tee the response body; when the
//!     // response body has been read to its end, submit (never blocks):
//!     let req_slot = Arc::new(OnceLock::new());
//!     let s = req_slot.clone();
//!     let body = TeeBody::new(req_body, shadow.max_body_bytes(), move |c| { let _ = s.set(c); });
//!     // ... forward, get (status, headers, upstream_body) ...
//!     let body = TeeBody::new(upstream_body, shadow.max_body_bytes(), move |captured| {
//!         let Some(request_body) = req_slot.get().cloned() else { return };
//!         shadow.submit(MirrorJob { route: sroute, method, uri, request_headers,
//!             request_body, primary_side, request_id,
//!             primary: CapturedResponse { status, headers, body: captured } });
//!     });
//! }
//! ```
//!
//! # Layout
//! - [`config`]: the `[shadow]` and `[routes.shadow]` settings and their validation.
//! - [`capture`]: [`TeeBody`] and the captured exchange types.
//! - `mirror`: [`Shadow`], the seam the proxy calls; the worker thread.
//! - [`compare`]: legacy-versus-new comparison into [`DiffEntry`]s.
//! - `noise`: noise learning.
//! - `redact`: what never reaches the store in clear.
//! - [`store`]: the SQLite mismatch store and its writer thread.
//! - [`report`]: text, JSON and HTML reports; `show` and `noise` rendering.
//! - `metrics`: the `ficus_shadow_*` metrics.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod capture;
pub mod compare;
pub mod config;
mod error;
mod metrics;
mod mirror;
mod noise;
mod pointer;
mod redact;
pub mod report;
pub mod store;

pub use capture::{CapturedBody, CapturedResponse, Side, TeeBody};
pub use compare::{compare, CompareRules, Comparison, DiffEntry, DiffKind};
pub use config::{RouteShadowConfig, ShadowGlobalConfig};
pub use error::ShadowError;
pub use metrics::Outcome;
pub use mirror::{
    MirrorDecision, MirrorJob, RouteSpec, Shadow, ShadowRoute, SkipReason, Submitted,
    IDEMPOTENCY_KEY, SHADOW_HEADER,
};
pub use redact::REDACTED;
pub use report::{render_noise, render_show, Report, ReportOptions};
pub use store::{MismatchRecord, NoiseRow, Store};
