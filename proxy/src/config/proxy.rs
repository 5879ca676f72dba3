//! The `[proxy]` table: listeners, state store, tokens, workers, limits.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::access_log::AccessLogSettings;
use super::error::{ConfigError, Ctx};
use super::raw::{RawListenerTls, RawProxy};

/// Default data-plane listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default admin listen address.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9900";
/// Default `max_connections` per worker.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default `max_request_bytes`: 10 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: u64 = 10 * 1024 * 1024;

/// Settings of the `[proxy]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxySettings {
    /// Data-plane listen address (`127.0.0.1:8080`); port 0 picks a free port.
    pub listen: SocketAddr,
    /// Admin API listen address (loopback by default); port 0 picks a free port.
    pub admin_listen: SocketAddr,
    /// Where rollout state and the audit log live: a SQLite file (`:memory:` keeps nothing) or a
    /// `postgres://` URL shared by several replicas (see [`crate::StateLocation`]).
    pub state: PathBuf,
    /// Environment variable holding the state location (a `postgres://` URL, so a password need
    /// not sit in the file); when set it is used instead of `state`.
    pub state_env: Option<String>,
    /// Environment variable holding the admin bearer token.
    pub admin_token_env: String,
    /// Environment variable holding the token that lets `X-Ficus-Backend` force a side.
    pub override_token_env: String,
    /// Worker threads, each with its own runtime, listener and upstream pools.
    /// 0 means `TOKIO_WORKER_THREADS` when set, else every core.
    pub workers: usize,
    /// Largest request body accepted (413 past it).
    pub max_request_bytes: u64,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// How long a client may take to send request headers (408 when it began one; 0 = off).
    pub header_read_timeout: Duration,
    /// Longest pause between two parts of a request body (408; 0 = off).
    pub request_body_idle_timeout: Duration,
    /// Client connections open at once, all workers together; past it a new connection is
    /// answered 503 with `Connection: close`. 0 = no limit.
    pub max_connections: usize,
    /// Send the client's `Host` upstream instead of the backend's authority.
    pub preserve_host: bool,
    /// Peers (CIDR blocks) whose `X-Forwarded-For/-Proto/-Host` are kept (`-For` appended to);
    /// from anyone else those headers are replaced. Empty (the default): nobody is trusted.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Reload when the configuration file changes (SIGHUP always reloads).
    pub watch_config: bool,
    /// Admin token given in code (never read from the file, so tokens stay out of config
    /// files); when set it takes precedence over `admin_token_env`.
    pub admin_token: Option<Secret>,
    /// Override token given in code; when set it takes precedence over `override_token_env`.
    pub override_token: Option<Secret>,
    /// `[proxy.tls]`: TLS on the data-plane listener.
    pub tls: Option<ListenerTls>,
    /// `[proxy.admin_tls]`: TLS on the admin listener.
    pub admin_tls: Option<ListenerTls>,
    /// `[proxy.access_log]`: one line per request (`None`: no access log).
    pub access_log: Option<AccessLogSettings>,
}

/// `[proxy.tls]` / `[proxy.admin_tls]`: the certificate a listener serves. The files are read
/// (and the key checked against the certificate) when the configuration is; they are read
/// again on SIGHUP, on reload and when they change on disk, for new connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// The certificate chain (PEM), leaf first.
    pub cert_file: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// A token whose `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl ProxySettings {
    /// The admin token: the one given in code, else the environment variable (empty = none).
    pub fn resolved_admin_token(&self) -> Option<String> {
        resolve(&self.admin_token, &self.admin_token_env)
    }

    /// The override token: the one given in code, else the environment variable (empty = none).
    pub fn resolved_override_token(&self) -> Option<String> {
        resolve(&self.override_token, &self.override_token_env)
    }
}

/// `10.0.0.0/8`, `::1/128`, or a bare address (one host).
fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map(|n| n.trunc())
        .map_err(|_| format!("{s:?} is not an address or CIDR block (10.0.0.0/8, ::1/128)"))
}

fn resolve(given: &Option<Secret>, env: &str) -> Option<String> {
    given
        .as_ref()
        .map(|s| s.0.clone())
        .or_else(|| std::env::var(env).ok())
        .filter(|t| !t.is_empty())
}

/// The `[proxy]` table as written, defaults filled in and checked.
pub(super) fn from_raw(cx: &Ctx<'_>, p: RawProxy) -> Result<ProxySettings, ConfigError> {
    let addr = |v: Option<Spanned<String>>,
                field: &str,
                default: &str|
     -> Result<SocketAddr, ConfigError> {
        match v {
            None => default
                .parse()
                .map_err(|_| cx.err(field, None, "bad built-in default")),
            Some(s) => s.get_ref().parse().map_err(|_| {
                cx.err(
                    field,
                    Some(s.span()),
                    format!("{:?} is not an IP:port address", s.get_ref()),
                )
            }),
        }
    };
    let proxy = ProxySettings {
        listen: addr(p.listen, "proxy.listen", DEFAULT_LISTEN)?,
        admin_listen: addr(p.admin_listen, "proxy.admin_listen", DEFAULT_ADMIN_LISTEN)?,
        state: PathBuf::from(p.state.clone().unwrap_or_else(|| "ficus-state.db".into())),
        state_env: match &p.state_env {
            None => None,
            Some(v) if p.state.is_some() => {
                return Err(cx.err(
                    "proxy.state_env",
                    Some(v.span()),
                    "set either state or state_env, not both",
                ))
            }
            Some(v) if v.get_ref().trim().is_empty() => {
                return Err(cx.err("proxy.state_env", Some(v.span()), "empty variable name"))
            }
            Some(v) => Some(v.get_ref().trim().to_string()),
        },
        admin_token_env: p
            .admin_token_env
            .unwrap_or_else(|| "FICUS_ADMIN_TOKEN".into()),
        override_token_env: p
            .override_token_env
            .unwrap_or_else(|| "FICUS_OVERRIDE_TOKEN".into()),
        workers: p.workers.unwrap_or(0),
        max_request_bytes: p.max_request_bytes.unwrap_or(DEFAULT_MAX_REQUEST_BYTES),
        shutdown_grace: Duration::from_millis(p.shutdown_grace_ms.unwrap_or(30_000)),
        header_read_timeout: Duration::from_millis(p.header_read_timeout_ms.unwrap_or(30_000)),
        request_body_idle_timeout: Duration::from_millis(
            p.request_body_idle_timeout_ms.unwrap_or(60_000),
        ),
        max_connections: p.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
        preserve_host: p.preserve_host.unwrap_or(false),
        trusted_proxies: match &p.trusted_proxies {
            None => Vec::new(),
            Some(list) => list
                .get_ref()
                .iter()
                .map(|s| parse_net(s))
                .collect::<Result<_, _>>()
                .map_err(|m| cx.err("proxy.trusted_proxies", Some(list.span()), m))?,
        },
        watch_config: p.watch_config.unwrap_or(true),
        admin_token: None,
        override_token: None,
        tls: listener_tls(cx, "proxy.tls", p.tls)?,
        admin_tls: listener_tls(cx, "proxy.admin_tls", p.admin_tls)?,
        access_log: super::access_log::from_raw(cx, p.access_log)?,
    };
    if proxy.max_request_bytes == 0 {
        return Err(cx.err("proxy.max_request_bytes", None, "must be greater than 0"));
    }
    Ok(proxy)
}

/// A `[proxy.tls]`-like table: both files named, readable, PEM, the key going with the
/// certificate — each failure naming its field and line.
fn listener_tls(
    cx: &Ctx<'_>,
    field: &str,
    raw: Option<Spanned<RawListenerTls>>,
) -> Result<Option<ListenerTls>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let span = raw.span();
    let raw = raw.into_inner();
    let file = |v: Option<Spanned<String>>, key: &str| match v {
        Some(v) => Ok((cx.path(v.get_ref()), v.span())),
        None => Err(cx.err(
            format!("{field}.{key}"),
            Some(span.clone()),
            format!("missing: [{field}] needs cert_file and key_file (PEM)"),
        )),
    };
    let (cert_file, cert_span) = file(raw.cert_file, "cert_file")?;
    let (key_file, key_span) = file(raw.key_file, "key_file")?;
    ficus_tls::certified_key(&cert_file, &key_file).map_err(|e| {
        let (key, span) = match e.role {
            ficus_tls::Role::Key => ("key_file", key_span),
            _ => ("cert_file", cert_span),
        };
        cx.err(format!("{field}.{key}"), Some(span), e.to_string())
    })?;
    Ok(Some(ListenerTls {
        cert_file,
        key_file,
    }))
}
