//! The file as written: serde structs with every key optional where the file may leave it
//! out, unknown keys rejected (`deny_unknown_fields`), values `Spanned` where an error has to
//! name their line. Turned into the validated types by the sibling modules.

use ficus_shadow::{RouteShadowConfig, ShadowGlobalConfig};
use serde::Deserialize;
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub proxy: RawProxy,
    pub backends: Spanned<RawBackends>,
    #[serde(default)]
    pub routes: Vec<Spanned<RawRoute>>,
    pub shadow: Option<Spanned<ShadowGlobalConfig>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProxy {
    pub listen: Option<Spanned<String>>,
    pub admin_listen: Option<Spanned<String>>,
    pub state: Option<String>,
    pub state_env: Option<Spanned<String>>,
    pub admin_token_env: Option<String>,
    pub override_token_env: Option<String>,
    pub workers: Option<usize>,
    pub max_request_bytes: Option<u64>,
    pub shutdown_grace_ms: Option<u64>,
    pub header_read_timeout_ms: Option<u64>,
    pub request_body_idle_timeout_ms: Option<u64>,
    pub max_connections: Option<usize>,
    pub preserve_host: Option<bool>,
    pub trusted_proxies: Option<Spanned<Vec<String>>>,
    pub watch_config: Option<bool>,
    pub tls: Option<Spanned<RawListenerTls>>,
    pub admin_tls: Option<Spanned<RawListenerTls>>,
    pub access_log: Option<Spanned<RawAccessLog>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAccessLog {
    pub path: Option<Spanned<String>>,
    pub format: Option<Spanned<String>>,
    pub sample: Option<Spanned<f64>>,
    pub all_errors: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListenerTls {
    pub cert_file: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackends {
    pub legacy: Option<RawBackend>,
    pub new: Option<RawBackend>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackend {
    pub url: Spanned<String>,
    pub connect_timeout_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub response_body_idle_timeout_ms: Option<u64>,
    pub max_idle_per_worker: Option<usize>,
    pub ca_file: Option<Spanned<String>>,
    pub sni: Option<Spanned<String>>,
    pub client_cert_file: Option<Spanned<String>>,
    pub client_key_file: Option<Spanned<String>>,
    pub insecure_skip_verify: Option<Spanned<bool>>,
    pub protocol: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub name: Spanned<String>,
    #[serde(default)]
    pub methods: Option<Spanned<Vec<String>>>,
    pub path: Spanned<String>,
    pub target: Option<Spanned<String>>,
    pub percent: Option<Spanned<f64>>,
    pub sticky: Option<Spanned<String>>,
    pub missing_key: Option<Spanned<String>>,
    pub shadow: Option<Spanned<RouteShadowConfig>>,
    pub dual_write: Option<Spanned<bool>>,
    pub key: Option<Spanned<String>>,
    pub write_order: Option<Spanned<String>>,
    pub read_your_writes_ms: Option<Spanned<u64>>,
    pub guard: Option<Spanned<RawGuard>>,
    pub access_log: Option<bool>,
    pub plan: Option<Spanned<super::plan::RawPlan>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGuard {
    pub max_error_rate: Option<f64>,
    pub max_p99_ms: Option<u64>,
    pub max_mismatch_rate: Option<f64>,
    pub window_s: Option<u64>,
    pub min_requests: Option<u64>,
}
