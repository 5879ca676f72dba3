//! The `[backends.legacy]` and `[backends.new]` tables.

use std::time::Duration;

use http::Uri;
use toml::Spanned;

use super::error::{ConfigError, Ctx};
use super::raw::{RawBackend, RawBackends};

/// Default `connect_timeout_ms`: 5 s, as Envoy's. (1 s was too short: a backend whose listen
/// backlog overflows — Python's `http.server` has 5 — drops the SYN, and the kernel's first
/// retransmission comes after 1 s.)
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5000;

/// One backend (`[backends.legacy]` or `[backends.new]`).
#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    /// `http://host:port[/prefix]`.
    pub url: Uri,
    /// `host:port` to connect to.
    pub authority: http::uri::Authority,
    /// Path prefix prepended to every forwarded path (empty, or starting with `/`, no trailing `/`).
    pub prefix: String,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Time allowed for the response head once the request (body included) has been sent
    /// (504 past it); the upload itself does not count.
    pub timeout: Duration,
    /// Longest pause between two parts of the response body (the response is cut off and the
    /// connection closed past it; 0 = off).
    pub response_body_idle_timeout: Duration,
    /// Idle keep-alive connections kept per worker thread.
    pub max_idle_per_worker: usize,
}

/// The two backends.
#[derive(Debug, Clone, PartialEq)]
pub struct Backends {
    /// The monolith.
    pub legacy: BackendConfig,
    /// The extracted service.
    pub new: BackendConfig,
}

/// The `[backends]` table as written: both sides present and valid.
pub(super) fn from_raw(cx: &Ctx<'_>, raw: Spanned<RawBackends>) -> Result<Backends, ConfigError> {
    let bspan = raw.span();
    let rb = raw.into_inner();
    let legacy = rb.legacy.ok_or_else(|| {
        cx.err(
            "backends.legacy",
            Some(bspan.clone()),
            "missing [backends.legacy]",
        )
    })?;
    let new = rb
        .new
        .ok_or_else(|| cx.err("backends.new", Some(bspan), "missing [backends.new]"))?;
    Ok(Backends {
        legacy: backend(cx, "backends.legacy", legacy)?,
        new: backend(cx, "backends.new", new)?,
    })
}

fn backend(cx: &Ctx<'_>, field: &str, b: RawBackend) -> Result<BackendConfig, ConfigError> {
    let span = b.url.span();
    let fu = format!("{field}.url");
    let url: Uri = b.url.get_ref().parse().map_err(|e| {
        cx.err(
            &fu,
            Some(span.clone()),
            format!("{:?}: {e}", b.url.get_ref()),
        )
    })?;
    if url.scheme_str() != Some("http") {
        return Err(cx.err(&fu, Some(span), "only http:// backends are supported"));
    }
    let authority = url
        .authority()
        .cloned()
        .ok_or_else(|| cx.err(&fu, Some(span.clone()), "needs host:port"))?;
    if authority.port_u16().is_none() {
        return Err(cx.err(&fu, Some(span), "needs an explicit port (http://host:port)"));
    }
    if url.query().is_some() {
        return Err(cx.err(&fu, Some(span), "must not have a query string"));
    }
    let prefix = url.path().trim_end_matches('/').to_string();
    let connect_timeout =
        Duration::from_millis(b.connect_timeout_ms.unwrap_or(DEFAULT_CONNECT_TIMEOUT_MS));
    let timeout = Duration::from_millis(b.timeout_ms.unwrap_or(30_000));
    if timeout.is_zero() || connect_timeout.is_zero() {
        return Err(cx.err(
            format!("{field}.timeout_ms"),
            Some(span),
            "timeouts must be greater than 0",
        ));
    }
    Ok(BackendConfig {
        url,
        authority,
        prefix,
        connect_timeout,
        timeout,
        response_body_idle_timeout: Duration::from_millis(
            b.response_body_idle_timeout_ms.unwrap_or(60_000),
        ),
        max_idle_per_worker: b.max_idle_per_worker.unwrap_or(256),
    })
}
