//! The TOML configuration: serde structs for the file (unknown keys rejected), turned into a
//! validated [`Config`] whose errors name the field and its line.
//!
//! ```toml
//! [proxy]
//! listen = "127.0.0.1:8080"
//! [backends.legacy]
//! url = "http://127.0.0.1:8001"
//! [backends.new]
//! url = "http://127.0.0.1:8002"
//! [[routes]]
//! name = "tasks-read"
//! path = "/api/tasks/{task_id}"
//! percent = 25.0
//! sticky = "header:X-User-Id"
//! ```
//! `config/ficus.toml` at the repository root documents every key.

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ficus_shadow::{RouteShadowConfig, ShadowError, ShadowGlobalConfig};
use http::{HeaderName, Method, Uri};
use serde::Deserialize;
use toml::Spanned;

use crate::guard::GuardConfig;
use crate::route::PathTemplate;
use crate::split::{MissingKey, Sticky, BUCKETS};

/// A configuration error: which field, on which line, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the configuration came from, when it came from a file.
    pub file: Option<PathBuf>,
    /// 1-based line of the offending key or value, when known.
    pub line: Option<usize>,
    /// Dotted path of the field, e.g. `routes[1].percent`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(p) => write!(f, "{}", p.display())?,
            None => f.write_str("config")?,
        }
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        write!(f, ": {}: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Which writes of a dual-write route take turns (`write_order`; see `order.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WriteOrderScope {
    /// `"key"`: one write at a time per value of the route's `key`; writes without it take
    /// turns per route.
    #[default]
    Key,
    /// `"route"`: one write at a time on the whole route — for writes that make each side
    /// allocate ids (creates numbered `max(id) + 1`), whatever key they carry.
    Route,
}

impl WriteOrderScope {
    /// `key` or `route`.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteOrderScope::Key => "key",
            WriteOrderScope::Route => "route",
        }
    }
}

/// Where a route's traffic goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// Always the legacy backend (the route is pinned; its rollout is fixed at 0%).
    Legacy,
    /// Always the new backend (starts at 100%; a rollback still moves it to legacy).
    New,
    /// Split by the rollout percentage and the sticky key.
    Split,
}

impl Target {
    /// `legacy`, `new` or `split`.
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Legacy => "legacy",
            Target::New => "new",
            Target::Split => "split",
        }
    }
}

/// Settings of the `[proxy]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxySettings {
    /// Data-plane listen address (`127.0.0.1:8080`); port 0 picks a free port.
    pub listen: SocketAddr,
    /// Admin API listen address (loopback by default); port 0 picks a free port.
    pub admin_listen: SocketAddr,
    /// Where rollout state and the audit log live: a SQLite file (`:memory:` keeps nothing) or a
    /// `postgres://` URL shared by several replicas (see [`crate::state::StateLocation`]).
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
    /// How long a client may take to send request headers.
    pub header_read_timeout: Duration,
    /// Send the client's `Host` upstream instead of the backend's authority.
    pub preserve_host: bool,
    /// Reload when the configuration file changes (SIGHUP always reloads).
    pub watch_config: bool,
    /// Admin token given in code (never read from the file, so tokens stay out of config
    /// files); when set it takes precedence over `admin_token_env`.
    pub admin_token: Option<Secret>,
    /// Override token given in code; when set it takes precedence over `override_token_env`.
    pub override_token: Option<Secret>,
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

fn resolve(given: &Option<Secret>, env: &str) -> Option<String> {
    given
        .as_ref()
        .map(|s| s.0.clone())
        .or_else(|| std::env::var(env).ok())
        .filter(|t| !t.is_empty())
}

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
    /// Time allowed for the response head after the request is sent (504 past it).
    pub timeout: Duration,
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

/// One `[[routes]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    /// Unique name, used in metrics, headers and the admin API.
    pub name: String,
    /// Methods this route matches; empty matches every method.
    pub methods: Vec<Method>,
    /// Path template.
    pub path: PathTemplate,
    /// Legacy, new or split.
    pub target: Target,
    /// Share sent to new, in basis points (0..=10000, i.e. 0.01 % steps).
    pub percent_bp: u32,
    /// Where the sticky key comes from.
    pub sticky: Sticky,
    /// What a request without the sticky key gets.
    pub missing_key: MissingKey,
    /// `[routes.shadow]`: mirror this route's requests to the other side and compare.
    pub shadow: Option<RouteShadowConfig>,
    /// `dual_write = true`: writes are mirrored too (needs `shadow` and `key`), stamped with
    /// `X-Ficus-Request-Time`, and recorded in the state store's `dual_writes` table.
    pub dual_write: bool,
    /// `key`: which request part names the row a write touches (sticky-source syntax).
    pub key: Option<Sticky>,
    /// `write_order`: which writes of a dual-write route wait for each other.
    pub write_order: WriteOrderScope,
    /// `[routes.guard]`: automatic rollback when the new side misbehaves.
    pub guard: Option<GuardConfig>,
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[proxy]`.
    pub proxy: ProxySettings,
    /// `[backends.legacy]` and `[backends.new]`.
    pub backends: Backends,
    /// `[[routes]]` in file order; the first match wins.
    pub routes: Vec<RouteConfig>,
    /// The `[shadow]` section as written (`None`: absent). Shadow mode runs when a route has a
    /// `[routes.shadow]` table, with these settings or their defaults.
    pub shadow: Option<ShadowGlobalConfig>,
}

// ----- the file as written -----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    proxy: RawProxy,
    backends: Spanned<RawBackends>,
    #[serde(default)]
    routes: Vec<Spanned<RawRoute>>,
    shadow: Option<Spanned<ShadowGlobalConfig>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawProxy {
    listen: Option<Spanned<String>>,
    admin_listen: Option<Spanned<String>>,
    state: Option<String>,
    state_env: Option<Spanned<String>>,
    admin_token_env: Option<String>,
    override_token_env: Option<String>,
    workers: Option<usize>,
    max_request_bytes: Option<u64>,
    shutdown_grace_ms: Option<u64>,
    header_read_timeout_ms: Option<u64>,
    preserve_host: Option<bool>,
    watch_config: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackends {
    legacy: Option<RawBackend>,
    new: Option<RawBackend>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    url: Spanned<String>,
    connect_timeout_ms: Option<u64>,
    timeout_ms: Option<u64>,
    max_idle_per_worker: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: Spanned<String>,
    #[serde(default)]
    methods: Option<Spanned<Vec<String>>>,
    path: Spanned<String>,
    target: Option<Spanned<String>>,
    percent: Option<Spanned<f64>>,
    sticky: Option<Spanned<String>>,
    missing_key: Option<Spanned<String>>,
    shadow: Option<Spanned<RouteShadowConfig>>,
    dual_write: Option<Spanned<bool>>,
    key: Option<Spanned<String>>,
    write_order: Option<Spanned<String>>,
    guard: Option<Spanned<RawGuard>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGuard {
    max_error_rate: Option<f64>,
    max_p99_ms: Option<u64>,
    max_mismatch_rate: Option<f64>,
    window_s: Option<u64>,
    min_requests: Option<u64>,
}

/// Default data-plane listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default admin listen address.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9900";
/// Default `max_request_bytes`: 10 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: u64 = 10 * 1024 * 1024;

struct Ctx<'a> {
    src: &'a str,
    file: Option<&'a Path>,
}

impl Ctx<'_> {
    fn line_of(&self, span: Range<usize>) -> usize {
        let end = span.start.min(self.src.len());
        self.src.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn err(
        &self,
        field: impl Into<String>,
        span: Option<Range<usize>>,
        msg: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.map(Path::to_path_buf),
            line: span.map(|s| self.line_of(s)),
            field: field.into(),
            message: msg.into(),
        }
    }

    /// Turns a toml/serde error into one naming the key on the offending line.
    fn toml_error(&self, e: toml::de::Error) -> ConfigError {
        let span = e.span();
        let field = span
            .clone()
            .and_then(|s| {
                let start = s.start.min(self.src.len());
                let line_start = self.src[..start].rfind('\n').map_or(0, |i| i + 1);
                let line_end = self.src[start..]
                    .find('\n')
                    .map_or(self.src.len(), |i| start + i);
                let line = &self.src[line_start..line_end];
                match line.split_once('=') {
                    Some((k, _)) => Some(k.trim().to_string()),
                    None => {
                        let t = line.trim();
                        (!t.is_empty()).then(|| t.to_string())
                    }
                }
            })
            .unwrap_or_else(|| "(document)".to_string());
        self.err(field, span, e.message().trim_end().to_string())
    }
}

impl Config {
    /// Parses and validates a configuration held in a string.
    pub fn from_toml_str(src: &str) -> Result<Config, ConfigError> {
        parse(src, None)
    }

    /// Reads, parses and validates a configuration file; errors carry the file name.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let src = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: Some(path.to_path_buf()),
            line: None,
            field: "(file)".into(),
            message: e.to_string(),
        })?;
        parse(&src, Some(path))
    }

    /// Checks the cross-field rules again; useful after changing a parsed `Config` in code.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let e = |field: String, msg: String| ConfigError {
            file: None,
            line: None,
            field,
            message: msg,
        };
        for (i, r) in self.routes.iter().enumerate() {
            check_name(&r.name).map_err(|m| e(format!("routes[{i}].name"), m))?;
            if self.routes[..i].iter().any(|o| o.name == r.name) {
                return Err(e(
                    format!("routes[{i}].name"),
                    format!("duplicate route name {:?}", r.name),
                ));
            }
            if r.percent_bp > BUCKETS {
                return Err(e(
                    format!("routes[{i}].percent"),
                    "must be between 0 and 100".into(),
                ));
            }
            if let Sticky::Path(p) = &r.sticky {
                if r.path.param_index(p).is_none() {
                    return Err(e(
                        format!("routes[{i}].sticky"),
                        format!("path has no parameter {{{p}}}"),
                    ));
                }
            }
            check_route_extras(r, r.write_order != WriteOrderScope::Key)
                .map_err(|(f, m)| e(format!("routes[{i}].{f}"), m))?;
        }
        if let Some(g) = &self.shadow {
            g.validate().map_err(|err| {
                let (f, m) = shadow_field(err);
                e(f, m)
            })?;
        }
        if self.proxy.max_request_bytes == 0 {
            return Err(e(
                "proxy.max_request_bytes".into(),
                "must be greater than 0".into(),
            ));
        }
        Ok(())
    }

    /// The effective worker count: `workers`, else `TOKIO_WORKER_THREADS`, else every core.
    pub fn effective_workers(&self) -> usize {
        if self.proxy.workers > 0 {
            return self.proxy.workers;
        }
        if let Some(n) = std::env::var("TOKIO_WORKER_THREADS")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
        {
            return n;
        }
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    /// Looks up a route by name.
    pub fn route(&self, name: &str) -> Option<&RouteConfig> {
        self.routes.iter().find(|r| r.name == name)
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.starts_with('_') {
        return Err("names starting with '_' are reserved".into());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(format!(
            "{name:?}: use letters, digits, '-', '_' and '.' only"
        ));
    }
    Ok(())
}

fn parse(src: &str, file: Option<&Path>) -> Result<Config, ConfigError> {
    let cx = Ctx { src, file };
    let raw: RawConfig = toml::from_str(src).map_err(|e| cx.toml_error(e))?;

    let p = raw.proxy;
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
        preserve_host: p.preserve_host.unwrap_or(false),
        watch_config: p.watch_config.unwrap_or(true),
        admin_token: None,
        override_token: None,
    };
    if proxy.max_request_bytes == 0 {
        return Err(cx.err("proxy.max_request_bytes", None, "must be greater than 0"));
    }

    let bspan = raw.backends.span();
    let rb = raw.backends.into_inner();
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
    let backends = Backends {
        legacy: backend(&cx, "backends.legacy", legacy)?,
        new: backend(&cx, "backends.new", new)?,
    };

    let shadow = match raw.shadow {
        None => None,
        Some(sg) => {
            let span = sg.span();
            let g = sg.into_inner();
            g.validate().map_err(|err| {
                let (f, m) = shadow_field(err);
                cx.err(f, Some(span), m)
            })?;
            Some(g)
        }
    };

    let mut routes: Vec<RouteConfig> = Vec::with_capacity(raw.routes.len());
    for (i, r) in raw.routes.into_iter().enumerate() {
        let rspan = r.span();
        let r = r.into_inner();
        let f = |k: &str| format!("routes[{i}].{k}");
        let name = r.name.get_ref().clone();
        check_name(&name).map_err(|m| cx.err(f("name"), Some(r.name.span()), m))?;
        if routes.iter().any(|o| o.name == name) {
            return Err(cx.err(
                f("name"),
                Some(r.name.span()),
                format!("duplicate route name {name:?}"),
            ));
        }
        let mut methods = Vec::new();
        if let Some(ms) = &r.methods {
            for m in ms.get_ref() {
                let m = m.to_ascii_uppercase();
                let method = Method::from_bytes(m.as_bytes()).map_err(|_| {
                    cx.err(
                        f("methods"),
                        Some(ms.span()),
                        format!("{m:?} is not an HTTP method"),
                    )
                })?;
                if !methods.contains(&method) {
                    methods.push(method);
                }
            }
        }
        let path = PathTemplate::parse(r.path.get_ref())
            .map_err(|m| cx.err(f("path"), Some(r.path.span()), m))?;
        let target = match &r.target {
            None => Target::Split,
            Some(t) => match t.get_ref().as_str() {
                "legacy" => Target::Legacy,
                "new" => Target::New,
                "split" => Target::Split,
                other => {
                    return Err(cx.err(
                        f("target"),
                        Some(t.span()),
                        format!("{other:?}: expected legacy, new or split"),
                    ))
                }
            },
        };
        let percent_bp = match (&r.percent, target) {
            (None, Target::Legacy) | (None, Target::Split) => 0,
            (None, Target::New) => BUCKETS,
            (Some(p), Target::Split) => {
                percent_to_bp(*p.get_ref()).map_err(|m| cx.err(f("percent"), Some(p.span()), m))?
            }
            (Some(p), t) => {
                return Err(cx.err(
                    f("percent"),
                    Some(p.span()),
                    format!(
                        "only meaningful with target = \"split\" (this route is pinned to {})",
                        t.as_str()
                    ),
                ))
            }
        };
        let sticky = match &r.sticky {
            None => Sticky::Random,
            Some(s) => {
                Sticky::parse(s.get_ref()).map_err(|m| cx.err(f("sticky"), Some(s.span()), m))?
            }
        };
        if let Sticky::Path(param) = &sticky {
            if path.param_index(param).is_none() {
                let span = r.sticky.as_ref().map(|s| s.span()).unwrap_or(rspan.clone());
                return Err(cx.err(
                    f("sticky"),
                    Some(span),
                    format!("path {:?} has no parameter {{{param}}}", r.path.get_ref()),
                ));
            }
        }
        let missing_key = match &r.missing_key {
            None => MissingKey::Legacy,
            Some(s) => match s.get_ref().as_str() {
                "legacy" => MissingKey::Legacy,
                "new" => MissingKey::New,
                "random" => MissingKey::Random,
                other => {
                    return Err(cx.err(
                        f("missing_key"),
                        Some(s.span()),
                        format!("{other:?}: expected legacy, new or random"),
                    ))
                }
            },
        };
        let route_shadow = match r.shadow {
            None => None,
            Some(s) => {
                let span = s.span();
                let c = s.into_inner();
                c.validate().map_err(|err| {
                    let (field, m) = shadow_field(err);
                    cx.err(f(&field), Some(span), m)
                })?;
                Some(c)
            }
        };
        let key = match &r.key {
            None => None,
            Some(k) => {
                Some(Sticky::parse(k.get_ref()).map_err(|m| cx.err(f("key"), Some(k.span()), m))?)
            }
        };
        let write_order = match &r.write_order {
            None => WriteOrderScope::Key,
            Some(w) => match w.get_ref().as_str() {
                "key" => WriteOrderScope::Key,
                "route" => WriteOrderScope::Route,
                other => {
                    return Err(cx.err(
                        f("write_order"),
                        Some(w.span()),
                        format!("{other:?}: expected key or route"),
                    ))
                }
            },
        };
        let guard = match r.guard {
            None => None,
            Some(g) => {
                let span = g.span();
                let g = g.into_inner();
                let built = GuardConfig::new(
                    g.max_error_rate,
                    g.max_p99_ms,
                    g.max_mismatch_rate,
                    g.window_s,
                    g.min_requests,
                );
                Some(
                    built
                        .map_err(|(field, m): (String, String)| cx.err(f(&field), Some(span), m))?,
                )
            }
        };
        let rc = RouteConfig {
            name,
            methods,
            path,
            target,
            percent_bp,
            sticky,
            missing_key,
            shadow: route_shadow,
            dual_write: r.dual_write.as_ref().is_some_and(|d| *d.get_ref()),
            key,
            write_order,
            guard,
        };
        check_route_extras(&rc, r.write_order.is_some()).map_err(|(field, m)| {
            let span = match field.as_str() {
                "key" => r.key.as_ref().map(|k| k.span()),
                "write_order" => r.write_order.as_ref().map(|w| w.span()),
                "dual_write" => r.dual_write.as_ref().map(|d| d.span()),
                _ => None,
            };
            cx.err(f(&field), Some(span.unwrap_or(rspan.clone())), m)
        })?;
        routes.push(rc);
    }
    Ok(Config {
        proxy,
        backends,
        routes,
        shadow,
    })
}

/// The field (`shadow.queue`, `shadow.ignore[1]`) and message of a shadow settings error.
fn shadow_field(e: ShadowError) -> (String, String) {
    match e {
        ShadowError::Config { field, reason } => (field, reason),
        other => ("shadow".to_string(), other.to_string()),
    }
}

/// Cross-field rules of `shadow`, `dual_write`, `key`, `write_order` (`write_order_set`: written
/// in the file) and `guard`; the error names the field relative to the route (`key`,
/// `shadow.sample`, ...).
fn check_route_extras(r: &RouteConfig, write_order_set: bool) -> Result<(), (String, String)> {
    let err = |f: &str, m: String| Err((f.to_string(), m));
    if write_order_set && !r.dual_write {
        return err(
            "write_order",
            "only meaningful with dual_write = true (it orders the writes sent to both sides)"
                .into(),
        );
    }
    match &r.key {
        Some(Sticky::Random) => {
            return err(
                "key",
                "\"random\" names no row: use header:NAME, cookie:NAME, path:PARAM or query:NAME"
                    .into(),
            )
        }
        Some(Sticky::Path(p)) if r.path.param_index(p).is_none() => {
            return err("key", format!("path {} has no parameter {{{p}}}", r.path))
        }
        Some(_) if !r.dual_write => {
            return err(
                "key",
                "only meaningful with dual_write = true (it names the row a write touches)".into(),
            )
        }
        _ => {}
    }
    if r.dual_write {
        let Some(shadow) = &r.shadow else {
            return err(
                "dual_write",
                "needs a [routes.shadow] table: shadow mode sends the writes to the other side"
                    .into(),
            );
        };
        if shadow.sample < 1.0 {
            return err(
                "shadow.sample",
                format!(
                    "{} on a dual-write route: every write must reach both sides (use 1.0)",
                    shadow.sample
                ),
            );
        }
        if r.key.is_none() {
            return err(
                "key",
                "dual_write = true needs key = \"path:PARAM\" (or header:/cookie:/query:) naming the row"
                    .into(),
            );
        }
    }
    if let Some(g) = &r.guard {
        if g.max_mismatch_rate.is_some() && r.shadow.is_none() {
            return err(
                "guard.max_mismatch_rate",
                "needs a [routes.shadow] table: mismatches come from shadow comparisons".into(),
            );
        }
    }
    Ok(())
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
    let connect_timeout = Duration::from_millis(b.connect_timeout_ms.unwrap_or(1000));
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
        max_idle_per_worker: b.max_idle_per_worker.unwrap_or(256),
    })
}

/// Converts a percentage (0–100, 0.01 steps) to basis points.
pub fn percent_to_bp(p: f64) -> Result<u32, String> {
    if !p.is_finite() || !(0.0..=100.0).contains(&p) {
        return Err(format!("{p} is not between 0 and 100"));
    }
    let bp = (p * 100.0).round();
    if (bp - p * 100.0).abs() > 1e-6 {
        return Err(format!("{p}: percentages go in 0.01 steps"));
    }
    Ok(bp as u32)
}

/// Formats basis points as a percentage (`2550` → `25.5`).
pub fn bp_to_percent(bp: u32) -> f64 {
    f64::from(bp) / 100.0
}

/// The `HeaderName` of a sticky header, lower-cased.
pub(crate) fn header_name(s: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(s.as_bytes()).map_err(|_| format!("{s:?} is not a valid header name"))
}
