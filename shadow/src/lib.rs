//! ficus-shadow: shadow mode — mirror requests to the side that did not serve them, compare
//! the two responses, learn what is noise, keep a durable, redacted mismatch log, report.
//!
//! # Using it from the proxy
//! One [`Shadow`] per proxy instance; one [`ShadowRoute`] per shadowed route and
//! configuration load; per request a cheap [`Shadow::decide`], and when it says mirror, both
//! bodies teed with [`TeeBody`] and the finished exchange handed to [`Shadow::submit`] from the
//! response body's end callback (it never blocks). The client's response is not delayed: the
//! tee forwards every frame as it comes. A proxy with its own body wrappers can instead keep a
//! [`CapturedBody`] in them and [`CapturedBody::push`] each data frame.
//!
//! What the proxy must tee: the request body as forwarded (only for methods `decide` allowed;
//! empty for most GETs) and the primary response's status, headers (as the backend sent them)
//! and body, each up to [`Shadow::max_body_bytes`]. Holding the copies costs up to that much
//! memory per in-flight mirrored exchange (the chunks are shared `Bytes`, not copied).
//!
//! A proxy that needs to know what became of a job — the mirror side's status of a dual
//! write, the comparison outcome for a rollback guard — sets [`MirrorJob::on_done`]; the
//! [`OnDone`] callback runs exactly once with a [`MirrorReport`].
//!
//! ```no_run
//! # use std::sync::{Arc, OnceLock};
//! # use bytes::Bytes;
//! # use http_body_util::Full;
//! use ficus_shadow::{CapturedResponse, MirrorJob, RouteSpec, Shadow, Side, TeeBody};
//! # async fn proxy(
//! #     cfg: ficus_shadow::ShadowGlobalConfig,
//! #     route_cfg: ficus_shadow::RouteShadowConfig,
//! #     registry: prometheus::Registry,
//! #     req: http::Request<Full<Bytes>>,
//! #     upstream: http::Response<Full<Bytes>>,
//! # ) -> Result<(), ficus_shadow::ShadowError> {
//! // At start, and per route at every configuration (re)load:
//! let shadow = Arc::new(Shadow::new(&cfg, &registry)?);
//! let route = shadow.route(RouteSpec {
//!     name: "tasks-read",
//!     config: &route_cfg,
//!     dual_write: false,
//!     legacy_url: "http://127.0.0.1:8001",
//!     new_url: "http://127.0.0.1:8002",
//! })?;
//!
//! // Per request, before forwarding:
//! if shadow.decide(&route, req.method()).is_mirror() {
//!     let (parts, body) = req.into_parts();
//!     let slot = Arc::new(OnceLock::new());
//!     let s = slot.clone();
//!     let request_body = TeeBody::new(body, shadow.max_body_bytes(), move |c| {
//!         let _ = s.set(c);
//!     });
//!     // ... forward `request_body` to the primary side, which answers `upstream` ...
//!     let (head, body) = upstream.into_parts();
//!     let primary_headers = head.headers.clone(); // before the proxy adds its own
//!     let (shadow2, route2) = (shadow.clone(), route.clone());
//!     let response_body = TeeBody::new(body, shadow.max_body_bytes(), move |captured| {
//!         let Some(request_body) = slot.get().cloned() else { return };
//!         shadow2.submit(MirrorJob {
//!             route: route2,
//!             method: parts.method,
//!             uri: parts.uri,
//!             request_headers: parts.headers,
//!             request_body,
//!             primary_side: Side::Legacy,
//!             primary: CapturedResponse { status: head.status, headers: primary_headers, body: captured },
//!             request_id: "the X-Request-Id".into(),
//!             on_done: None,
//!         });
//!     });
//!     // ... stream `response_body` to the client ...
//!     # drop((request_body, response_body));
//! }
//! # Ok(()) }
//! ```
//!
//! # Layout
//! Modules in dependency order, each using only modules above it (no module cycles; checked
//! by `scripts/module-graph.py shadow`).
//! - `error`, `pointer` (JSON pointers and globs), [`capture`]: [`TeeBody`] and the captured
//!   exchange types.
//! - [`config`]: the `[shadow]` and `[routes.shadow]` settings and their validation.
//! - [`compare`](mod@compare): legacy-versus-new comparison into [`DiffEntry`]s
//!   (`compare/{diff, rules, json, text}`).
//! - `metrics`: the `ficus_shadow_*` metrics. `noise`: noise learning. `redact`: what never
//!   reaches the store in clear.
//! - [`store`]: the SQLite mismatch store (`store/{record, schema, sql, writer}`: its values,
//!   tables, shared statements and writer thread).
//! - [`report`]: text, JSON and HTML reports; `show` and `noise` rendering.
//! - `mirror`: [`Shadow`], the seam the proxy calls (`mirror/{job, route, breaker, worker}`:
//!   jobs and their reports, compiled routes, the circuit breaker on the injected clock, the
//!   shadow thread).

#![forbid(unsafe_code)]

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
    MirrorDecision, MirrorJob, MirrorReport, OnDone, RouteSpec, Shadow, ShadowRoute, SkipReason,
    Submitted, IDEMPOTENCY_KEY, SHADOW_HEADER,
};
pub use redact::REDACTED;
pub use report::{render_noise, render_show, Report, ReportOptions};
pub use store::{MismatchRecord, NoiseRow, Store};
