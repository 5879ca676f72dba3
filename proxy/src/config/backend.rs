//! The `[backends.legacy]` and `[backends.new]` tables.

use std::time::Duration;

use http::Uri;
use toml::Spanned;

use super::backend_tls::BackendTls;
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
    /// TLS to the backend (`https://` URLs).
    pub tls: Option<BackendTls>,
}

/// The two backends.
#[derive(Debug, Clone, PartialEq)]
pub struct Backends {
    /// The monolith.
    pub legacy: BackendConfig,
    /// The extracted service.
    pub new: BackendConfig,
}

impl Backends {
    /// What an operator must know about how the backends are reached: every backend whose
    /// certificate is not checked (`insecure_skip_verify = true`). Logged at start and reload,
    /// shown on the admin page.
    pub fn warnings(&self) -> Vec<String> {
        [("legacy", &self.legacy), ("new", &self.new)]
            .into_iter()
            .filter(|(_, b)| b.tls.as_ref().is_some_and(BackendTls::insecure))
            .map(|(name, b)| {
                format!(
                    "backends.{name}: insecure_skip_verify = true — the certificate of {} is not \
                     checked; anyone on the path can impersonate it",
                    b.url
                )
            })
            .collect()
    }

    /// `none`, `verified` or `insecure_skip_verify`, per backend, for the admin API.
    pub fn tls_modes(&self) -> [(&'static str, &'static str); 2] {
        let mode = |b: &BackendConfig| match &b.tls {
            None => "none",
            Some(t) if t.insecure() => "insecure_skip_verify",
            Some(_) => "verified",
        };
        [("legacy", mode(&self.legacy)), ("new", mode(&self.new))]
    }
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
    let scheme = url.scheme_str().unwrap_or("");
    if scheme != "http" && scheme != "https" {
        return Err(cx.err(&fu, Some(span), "must be an http:// or https:// URL"));
    }
    let authority = url
        .authority()
        .cloned()
        .ok_or_else(|| cx.err(&fu, Some(span.clone()), "needs host:port"))?;
    if authority.port_u16().is_none() {
        return Err(cx.err(
            &fu,
            Some(span),
            format!("needs an explicit port ({scheme}://host:port)"),
        ));
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
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let tls = super::backend_tls::from_raw(cx, field, scheme, host, &b)?;
    Ok(BackendConfig {
        url,
        tls,
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
