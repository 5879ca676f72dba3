//! libpq's TLS settings as a rustls client configuration (through ficus-tls): `verify-full`
//! checks the chain and the name, `verify-ca` the chain only, `prefer` / `require` nothing
//! unless a root certificate is given (then `require` behaves as `verify-ca`, as libpq).

use std::path::{Path, PathBuf};

use ficus_tls::{ClientIdentity, Role, Roots, Verify};
use rustls::ClientConfig;

use crate::settings::{RootCerts, SslMode, TlsSettings};

/// A TLS setting that cannot be used: the connection-string key and why.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct TlsSettingError {
    /// `sslrootcert`, `sslcert`, `sslkey` or `sslmode`.
    pub key: &'static str,
    /// What is wrong, naming the file.
    pub reason: String,
}

fn bad(key: &'static str, reason: impl Into<String>) -> TlsSettingError {
    TlsSettingError {
        key,
        reason: reason.into(),
    }
}

/// What the server's certificate is checked against, for messages.
pub(crate) fn describe_roots(tls: &TlsSettings) -> String {
    match effective_roots(tls) {
        Some(Roots::File(p)) => format!("sslrootcert={}", p.display()),
        Some(Roots::System) => "the system trust store (sslrootcert=system)".into(),
        None => "no root certificate".into(),
    }
}

/// libpq's default root file, `~/.postgresql/root.crt`.
fn default_root_file() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let p = Path::new(&home).join(".postgresql").join("root.crt");
    p.is_file().then_some(p)
}

fn effective_roots(tls: &TlsSettings) -> Option<Roots> {
    match &tls.root {
        RootCerts::Unset => default_root_file().map(Roots::File),
        RootCerts::File(p) => Some(Roots::File(p.clone())),
        RootCerts::System => Some(Roots::System),
    }
}

/// The client configuration for `tls` (unused when the mode is `disable`).
pub(crate) fn client_config(tls: &TlsSettings) -> Result<ClientConfig, TlsSettingError> {
    let verify = match (tls.mode, effective_roots(tls)) {
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
            return Err(bad(
                "sslrootcert",
                format!(
                    "sslmode={} checks the server's certificate, but no root certificate is named: \
                     add sslrootcert=/path/to/ca.pem (your provider's CA bundle) or sslrootcert=system \
                     (the operating system's trust store); ~/.postgresql/root.crt does not exist",
                    tls.mode.as_str()
                ),
            ))
        }
        (SslMode::Disable | SslMode::Allow | SslMode::Prefer, _) | (SslMode::Require, None) => {
            Verify::Nothing
        }
        (SslMode::VerifyFull, Some(roots)) => Verify::Full(roots),
        // require with a root certificate behaves as verify-ca (libpq).
        (SslMode::Require | SslMode::VerifyCa, Some(roots)) => Verify::ChainOnly(roots),
    };
    let identity = match (&tls.cert, &tls.key) {
        (None, None) => None,
        (Some(_), None) => {
            return Err(bad(
                "sslkey",
                "sslcert is set but sslkey is not: name the client certificate's private key",
            ))
        }
        (None, Some(_)) => {
            return Err(bad(
                "sslcert",
                "sslkey is set but sslcert is not: name the client certificate",
            ))
        }
        (Some(cert), Some(key)) => Some(ClientIdentity {
            cert: cert.clone(),
            key: key.clone(),
        }),
    };
    ficus_tls::client_config(&verify, identity.as_ref(), &[]).map_err(|e| {
        let key = match e.role {
            Role::Roots => "sslrootcert",
            Role::Cert => "sslcert",
            Role::Key => "sslkey",
        };
        bad(key, e.to_string())
    })
}
