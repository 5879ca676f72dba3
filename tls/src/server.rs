//! The server side: a certificate and its key from PEM files (checked to go together), held
//! where it can be replaced while the server runs ([`ReloadableCert`]: new handshakes get the
//! new certificate, open connections keep theirs), and the server configuration around it.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::pem::{read_certs, read_key};
use crate::{provider, Role, TlsError};

/// The certificate chain at `cert` with the private key at `key`, checked to match.
pub fn certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = read_certs(Role::Cert, cert)?;
    let der = read_key(key)?;
    let signing = provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| TlsError {
            role: Role::Key,
            path: Some(key.to_path_buf()),
            reason: format!("unusable private key: {e}"),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| TlsError {
        role: Role::Key,
        path: Some(key.to_path_buf()),
        reason: format!(
            "does not go with the certificate in {}: {e}",
            cert.display()
        ),
    })?;
    Ok(Arc::new(certified))
}

/// A server certificate that can be replaced in place.
#[derive(Debug)]
pub struct ReloadableCert {
    current: ArcSwap<CertifiedKey>,
}

impl ReloadableCert {
    /// Starts with `key`.
    pub fn new(key: Arc<CertifiedKey>) -> Arc<ReloadableCert> {
        Arc::new(ReloadableCert {
            current: ArcSwap::new(key),
        })
    }

    /// Serves `key` to every handshake from now on.
    pub fn replace(&self, key: Arc<CertifiedKey>) {
        self.current.store(key);
    }

    /// The certificate served now (its leaf, DER), e.g. to tell whether a reload changed it.
    pub fn leaf(&self) -> Option<Vec<u8>> {
        self.current.load().cert.first().map(|c| c.to_vec())
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// A server configuration serving `cert`, offering `alpn` (e.g. `[b"h2", b"http/1.1"]`).
pub fn server_config(cert: Arc<ReloadableCert>, alpn: &[&[u8]]) -> Result<ServerConfig, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError {
            role: Role::Cert,
            path: None,
            reason: format!("TLS setup: {e}"),
        })?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}
