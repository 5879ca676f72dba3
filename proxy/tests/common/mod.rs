//! What the proxy's tests share beyond testkit (backends, the HTTP client, task apps, metric
//! lookups — re-exported here): a proxy configuration around two backends.
#![allow(dead_code, unused_imports)]

use std::net::SocketAddr;

use ficus_proxy::{Config, Proxy, ProxyHandle};

pub use testkit::backend::{echo, fixed, free_addr, Generated};
pub use testkit::http::{full, get, send, Conn, Resp};
pub use testkit::metrics::metric;

/// A proxy configuration with the two backends and the given `[[routes]]` TOML.
pub fn config_toml(legacy: SocketAddr, new: SocketAddr, extra_proxy: &str, routes: &str) -> String {
    format!(
        r#"
[proxy]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
state = ":memory:"
workers = 2
watch_config = false
{extra_proxy}

[backends.legacy]
url = "http://{legacy}"
[backends.new]
url = "http://{new}"
timeout_ms = 2000

{routes}
"#
    )
}

/// Starts a proxy from a TOML configuration.
pub fn start_toml(toml: &str) -> ProxyHandle {
    Proxy::start(Config::from_toml_str(toml).unwrap(), None).unwrap()
}
