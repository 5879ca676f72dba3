//! ficus-tls: TLS as every part of ficus uses it — PostgreSQL connections (ficus-pg) and the
//! proxy's `https://` backends and its TLS listeners — defined once.
//!
//! # Layout
//! - `pem`: certificates and private keys read from PEM files, errors naming the file;
//! - `client`: trust roots (a PEM file or the system store), how much of a server certificate
//!   is checked ([`Verify`]: chain and name, chain only, nothing), a client certificate, ALPN
//!   → a rustls `ClientConfig`;
//! - `server`: a certificate and key checked to go together ([`certified_key`]), replaceable
//!   while serving ([`ReloadableCert`]), and the server configuration around it;
//! - `failure`: a rustls error found in an error chain, said as an operator reads it
//!   ([`Failure`]: not trusted, another host name, other).
//!
//! The crypto provider is rustls's `ring` ([`provider`]): no OpenSSL, no cmake/NASM in the
//! build. rustls 0.23.48 deprecates ring's provider only for lacking post-quantum key
//! exchange; revisit when the servers ficus talks to offer it.
#![forbid(unsafe_code)]

mod client;
mod failure;
mod pem;
mod server;

use std::sync::Arc;

pub use self::client::{client_config, ClientIdentity, Roots, Verify};
pub use self::failure::{find_failure, Failure, FailureKind};
pub use self::pem::{read_certs, read_key};
pub use self::server::{certified_key, server_config, ReloadableCert};
pub use rustls;

/// TLS to one server as a client speaks it: the configuration (roots, verification, client
/// certificate, ALPN) and the name sent as SNI and checked in the certificate. The proxy's
/// pool and the shadow thread's client use the same value for a backend.
#[derive(Clone, Debug)]
pub struct ClientTls {
    /// The rustls configuration.
    pub config: Arc<rustls::ClientConfig>,
    /// SNI and the name the certificate must have.
    pub server_name: rustls::pki_types::ServerName<'static>,
}

/// The crypto provider every ficus TLS configuration uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS file or setting that cannot be used: which file (its role and path) and why.
#[derive(Debug, thiserror::Error)]
#[error("{}{reason}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
pub struct TlsError {
    /// What the file is for.
    pub role: Role,
    /// The file, when there is one.
    pub path: Option<std::path::PathBuf>,
    /// What is wrong.
    pub reason: String,
}

/// What a TLS file is for; callers map it to their own setting's name
/// (`sslrootcert`, `backends.new.ca_file`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Certificates that may sign the peer's.
    Roots,
    /// Our own certificate chain.
    Cert,
    /// Our own private key.
    Key,
}
