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
//!
//! # Layout
//! - this file: [`Config`], the validated whole;
//! - `raw`: the file as written (serde);
//! - `parse`: text → `raw` → [`Config`] ([`Config::from_toml_str`], [`Config::from_file`]);
//! - `proxy`, `access_log`, `backend`, `route`: each section's validated type and how it is read
//!   from the file (`route` also holds the rules tying a route's shadow, dual-write, guard and
//!   plan fields);
//! - `validate`: [`Config::validate`] for configurations built in code;
//! - `error`: [`ConfigError`] and the line numbers in it; `percent`: percentages ↔ basis points;
//!   `plan`: `[routes.plan]` read and validated into a [`crate::plan::PlanConfig`].

mod access_log;
mod backend;
mod backend_tls;
mod error;
mod parse;
mod percent;
pub(crate) mod plan;
mod proxy;
mod raw;
mod route;
mod validate;

use ficus_shadow::ShadowGlobalConfig;

pub use self::access_log::{AccessLogFormat, AccessLogSettings, AccessLogTarget};
pub use self::backend::{BackendConfig, Backends, Protocol};
pub use self::backend_tls::BackendTls;
pub use self::error::ConfigError;
pub use self::percent::{bp_to_percent, percent_to_bp};
pub use self::proxy::{
    ListenerTls, ProxySettings, Secret, DEFAULT_ADMIN_LISTEN, DEFAULT_LISTEN,
    DEFAULT_MAX_REQUEST_BYTES,
};
pub(crate) use self::route::takes_writes;
pub use self::route::{RouteConfig, Target, WriteOrderScope, MAX_READ_YOUR_WRITES_MS};

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

impl Config {
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
