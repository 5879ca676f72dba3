//! TLS to an `https://` backend: the settings of `[backends.X]` (`ca_file`, `sni`,
//! `client_cert_file` / `client_key_file`, `insecure_skip_verify`) checked and turned into a
//! connector once, when the configuration is read — every file is read then, so a missing
//! file, bad PEM or a key that does not match its certificate is a configuration error naming
//! the field and line, never a 502 later.

use std::sync::Arc;

use ficus_tls::rustls::pki_types::ServerName;
use ficus_tls::{ClientIdentity, ClientTls, Role, Roots, Verify};
use toml::Spanned;

use super::error::{ConfigError, Ctx};
use super::raw::RawBackend;

/// How the proxy speaks TLS to one backend.
#[derive(Clone)]
pub struct BackendTls {
    /// What the backend's certificate is checked against (`ca_file`, else the system store),
    /// or nothing (`insecure_skip_verify = true`).
    pub verify: Verify,
    /// The proxy's own certificate, for backends that ask for one (mTLS).
    pub identity: Option<ClientIdentity>,
    /// The rustls configuration (ALPN `http/1.1`) and the name sent as SNI and checked in
    /// the certificate (`sni`, else the URL's host): what the pool and the shadow client use.
    pub client: ClientTls,
}

impl BackendTls {
    /// Whether certificate checks are off (`insecure_skip_verify = true`).
    pub fn insecure(&self) -> bool {
        self.verify == Verify::Nothing
    }
}

impl PartialEq for BackendTls {
    fn eq(&self, other: &Self) -> bool {
        self.verify == other.verify
            && self.identity == other.identity
            && self.client.server_name == other.client.server_name
    }
}

impl std::fmt::Debug for BackendTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendTls")
            .field("verify", &self.verify)
            .field("identity", &self.identity)
            .field("server_name", &self.client.server_name)
            .finish()
    }
}

/// The TLS settings of backend `field`, whose URL has `scheme` and `host`.
pub(super) fn from_raw(
    cx: &Ctx<'_>,
    field: &str,
    scheme: &str,
    host: &str,
    b: &RawBackend,
) -> Result<Option<BackendTls>, ConfigError> {
    let set: Vec<(&str, std::ops::Range<usize>)> = [
        ("ca_file", b.ca_file.as_ref().map(Spanned::span)),
        ("sni", b.sni.as_ref().map(Spanned::span)),
        (
            "client_cert_file",
            b.client_cert_file.as_ref().map(Spanned::span),
        ),
        (
            "client_key_file",
            b.client_key_file.as_ref().map(Spanned::span),
        ),
        (
            "insecure_skip_verify",
            b.insecure_skip_verify.as_ref().map(Spanned::span),
        ),
    ]
    .into_iter()
    .filter_map(|(k, s)| s.map(|s| (k, s)))
    .collect();
    if scheme != "https" {
        if let Some((key, span)) = set.into_iter().next() {
            return Err(cx.err(
                format!("{field}.{key}"),
                Some(span),
                "is a TLS setting, but the backend's url is http:// (use https:// to speak TLS to it)",
            ));
        }
        return Ok(None);
    }
    let insecure = b
        .insecure_skip_verify
        .as_ref()
        .is_some_and(|v| *v.get_ref());
    let verify = match (&b.ca_file, insecure) {
        (Some(ca), true) => {
            return Err(cx.err(
                format!("{field}.insecure_skip_verify"),
                Some(ca.span()),
                "cannot be true together with ca_file: either check the certificate against \
                 ca_file, or not at all",
            ))
        }
        (Some(ca), false) => Verify::Full(Roots::File(cx.path(ca.get_ref()))),
        (None, false) => Verify::Full(Roots::System),
        (None, true) => Verify::Nothing,
    };
    let identity =
        match (&b.client_cert_file, &b.client_key_file) {
            (None, None) => None,
            (Some(c), None) => return Err(cx.err(
                format!("{field}.client_key_file"),
                Some(c.span()),
                "client_cert_file is set but client_key_file is not: name the certificate's key",
            )),
            (None, Some(k)) => {
                return Err(cx.err(
                    format!("{field}.client_cert_file"),
                    Some(k.span()),
                    "client_key_file is set but client_cert_file is not: name the certificate",
                ))
            }
            (Some(c), Some(k)) => Some(ClientIdentity {
                cert: cx.path(c.get_ref()),
                key: cx.path(k.get_ref()),
            }),
        };
    let (name, name_span, name_field) = match &b.sni {
        Some(s) => (s.get_ref().clone(), Some(s.span()), format!("{field}.sni")),
        None => (host.to_string(), None, format!("{field}.url")),
    };
    let server_name = ServerName::try_from(name.clone()).map_err(|e| {
        cx.err(
            name_field,
            name_span,
            format!("{name:?} is not a DNS name or IP address for TLS: {e}"),
        )
    })?;
    let client =
        ficus_tls::client_config(&verify, identity.as_ref(), &[b"http/1.1"]).map_err(|e| {
            let (key, span) = match e.role {
                Role::Roots => ("ca_file", b.ca_file.as_ref().map(Spanned::span)),
                Role::Cert => (
                    "client_cert_file",
                    b.client_cert_file.as_ref().map(Spanned::span),
                ),
                Role::Key => (
                    "client_key_file",
                    b.client_key_file.as_ref().map(Spanned::span),
                ),
            };
            cx.err(format!("{field}.{key}"), span, e.to_string())
        })?;
    Ok(Some(BackendTls {
        verify,
        identity,
        client: ClientTls {
            config: Arc::new(client),
            server_name,
        },
    }))
}
