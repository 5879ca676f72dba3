//! Error types. [`ProxyError`] is what the library's entry points return; [`ForwardError`] is
//! one failed request and says *who* failed, which is what decides the status code the client
//! sees (upstream connect → 502, upstream timeout → 504, downstream → 400/413, internal → 500,
//! a dual write that did not get its turn → 503).

use std::net::SocketAddr;
use std::path::PathBuf;

use http::StatusCode;

pub use crate::config::ConfigError;
pub use ficus_state::StateError;

/// Errors from starting or controlling a proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address from the configuration.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The rollout state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The configuration file could not be read.
    #[error("cannot read {path}: {source}")]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A listener's TLS certificate or key cannot be used.
    #[error("{field}: {message}")]
    Tls {
        /// `proxy.tls` or `proxy.admin_tls`.
        field: &'static str,
        /// Which file and what is wrong.
        message: String,
    },
    /// The access log cannot be opened or started.
    #[error(transparent)]
    AccessLog(#[from] crate::access_log::AccessLogError),
    /// A thread or runtime could not be started.
    #[error("cannot start {what}: {source}")]
    Start {
        /// Which part was starting.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A named route does not exist.
    #[error("no route named {0:?}")]
    UnknownRoute(String),
    /// A value given to the admin API (or a handle method) is out of range.
    #[error("{field}: {message}")]
    Invalid {
        /// The field, e.g. `max_ms`.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// A hold was asked for on a route that is already held.
    #[error("route {route:?} is already held by {by} since {since} (until {until})")]
    AlreadyHeld {
        /// Route name.
        route: String,
        /// Who holds it.
        by: String,
        /// Since when (RFC 3339).
        since: String,
        /// Until when at the latest (RFC 3339).
        until: String,
    },
    /// A release was asked for on a route that is not held.
    #[error("route {0:?} is not held")]
    NotHeld(String),
    /// A step plan cannot do what was asked in its state (start while one runs, resume one
    /// that is not paused, a route without `[routes.plan]`).
    #[error("route {route:?}: {message}")]
    Plan {
        /// Route name.
        route: String,
        /// What is in the way, and what to do.
        message: String,
    },
    /// A hold was released (writes go on) but its audit row could not be written.
    #[error("{what}, but its audit row could not be written: {source}")]
    Unaudited {
        /// What was done (`the hold on route "tasks" was released`).
        what: String,
        /// Why the row was not written.
        source: Box<StateError>,
    },
    /// A metric could not be registered (duplicate name: a bug).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// Shadow mode could not start (its store, its threads).
    #[error("shadow mode: {0}")]
    Shadow(#[from] ficus_shadow::ShadowError),
}

/// Which side of a forwarded request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The backend could not be connected to (refused, unreachable, connect timeout).
    UpstreamConnect,
    /// The backend did not send a response head within `timeout_ms`.
    UpstreamTimeout,
    /// The backend connection failed after connecting (reset, malformed response).
    UpstreamIo,
    /// The client sent something unusable (bad URI or headers).
    Downstream,
    /// The request body exceeded `max_request_bytes`.
    RequestTooLarge,
    /// A bug or resource failure inside the proxy.
    Internal,
    /// A write on a dual-write route did not get its row's turn within the backend's
    /// `timeout_ms` (the previous write to the row had not reached both sides); sent nowhere.
    WriteTurn,
    /// The client paused its request body longer than `request_body_idle_timeout_ms`.
    RequestTimeout,
}

impl ErrorKind {
    /// The status code the client gets.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::UpstreamConnect | ErrorKind::UpstreamIo => StatusCode::BAD_GATEWAY,
            ErrorKind::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Downstream => StatusCode::BAD_REQUEST,
            ErrorKind::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::WriteTurn => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// The `kind` label of `ficus_upstream_errors_total` and the `error` field of JSON bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::UpstreamConnect => "connect",
            ErrorKind::UpstreamTimeout => "timeout",
            ErrorKind::UpstreamIo => "upstream_io",
            ErrorKind::Downstream => "bad_request",
            ErrorKind::RequestTooLarge => "request_too_large",
            ErrorKind::Internal => "internal",
            ErrorKind::WriteTurn => "write_turn_timeout",
            ErrorKind::RequestTimeout => "request_timeout",
        }
    }

    /// Number of kinds (the length of arrays indexed by [`ErrorKind::index`]).
    pub(crate) const COUNT: usize = 8;

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Marker error a request body returns when it grows past `max_request_bytes`; found again in
/// the upstream error's source chain to answer 413 rather than 502.
#[derive(Debug, thiserror::Error)]
#[error("request body larger than {limit} bytes")]
pub struct BodyTooLarge {
    /// The configured limit.
    pub limit: u64,
}
