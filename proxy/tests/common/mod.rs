//! What the proxy's tests share beyond testkit (backends, the HTTP client, task apps, metric
//! lookups — re-exported here): a proxy configuration around two backends.
#![allow(dead_code, unused_imports)]

use std::net::SocketAddr;

use ficus_proxy::{Config, Proxy, ProxyHandle};
use testkit::ProxyToml;

pub use testkit::backend::{echo, fixed, free_addr, Generated};
pub use testkit::http::{full, get, send, Conn, Resp};
pub use testkit::metrics::metric;

/// A proxy configuration with the two backends (the new one with a 2 s timeout), state in
/// memory, `extra_proxy` in `[proxy]` and the given `[[routes]]` TOML.
pub fn config_toml(legacy: SocketAddr, new: SocketAddr, extra_proxy: &str, routes: &str) -> String {
    ProxyToml::new(&legacy, &new)
        .proxy(extra_proxy)
        .new_backend("timeout_ms = 2000")
        .routes(routes)
        .to_string()
}

/// A dual-write route keyed by the path's `id`, shadowed.
pub const DUAL_ROUTE: &str = r#"
[[routes]]
name = "dual"
path = "/dual/{id}"
dual_write = true
key = "path:id"
[routes.shadow]
"#;

/// Starts a proxy from a TOML configuration.
pub fn start_toml(toml: &str) -> ProxyHandle {
    Proxy::start(Config::from_toml_str(toml).unwrap(), None).unwrap()
}
