//! The rustls client configuration for one [`TlsSettings`]: which certificates may sign the
//! server's (a PEM file, the system store), how much of the certificate is checked (the
//! chain and the name for `verify-full`, the chain only for `verify-ca`, nothing for `prefer`
//! / `require` without a root certificate, as libpq), and the client certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

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
        Some(RootCerts::File(p)) => format!("sslrootcert={}", p.display()),
        Some(RootCerts::System) => "the system trust store (sslrootcert=system)".into(),
        _ => "no root certificate".into(),
    }
}

/// libpq's default root file, `~/.postgresql/root.crt`.
fn default_root_file() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let p = Path::new(&home).join(".postgresql").join("root.crt");
    p.is_file().then_some(p)
}

fn effective_roots(tls: &TlsSettings) -> Option<RootCerts> {
    match &tls.root {
        RootCerts::Unset => default_root_file().map(RootCerts::File),
        other => Some(other.clone()),
    }
}

/// The client configuration for `tls` (unused when the mode is `disable`).
pub(crate) fn client_config(tls: &TlsSettings) -> Result<ClientConfig, TlsSettingError> {
    // ring, not aws-lc-rs: no cmake/NASM in the build, and rustls 0.23.48 deprecates ring's
    // provider only for lacking post-quantum key exchange, which PostgreSQL servers do not
    // offer today. Revisit when they do.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("sslmode", format!("TLS setup: {e}")))?;
    let roots = effective_roots(tls);
    let verifier: Arc<dyn ServerCertVerifier> = match (tls.mode, roots) {
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
            Arc::new(NoCheck(provider.clone()))
        }
        (mode, Some(roots)) => {
            let store = root_store(&roots)?;
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
                .build()
                .map_err(|e| bad("sslrootcert", e.to_string()))?;
            if mode == SslMode::VerifyFull {
                webpki
            } else {
                // require with a root certificate behaves as verify-ca (libpq).
                Arc::new(ChainOnly(webpki))
            }
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match (&tls.cert, &tls.key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(_), None) => Err(bad(
            "sslkey",
            "sslcert is set but sslkey is not: name the client certificate's private key",
        )),
        (None, Some(_)) => Err(bad(
            "sslcert",
            "sslkey is set but sslcert is not: name the client certificate",
        )),
        (Some(cert), Some(key)) => {
            let chain = read_certs("sslcert", cert)?;
            let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                bad(
                    "sslkey",
                    format!("{}: no PEM private key could be read ({e})", key.display()),
                )
            })?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                bad(
                    "sslkey",
                    format!(
                        "{} does not go with the certificate in {}: {e}",
                        key.display(),
                        cert.display()
                    ),
                )
            })
        }
    }
}

fn read_certs(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsSettingError> {
    let bytes = std::fs::read(path).map_err(|e| bad(key, format!("{}: {e}", path.display())))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            bad(
                key,
                format!("{}: not a PEM certificate file ({e})", path.display()),
            )
        })?;
    if certs.is_empty() {
        return Err(bad(
            key,
            format!(
                "{}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            ),
        ));
    }
    Ok(certs)
}

fn root_store(roots: &RootCerts) -> Result<RootCertStore, TlsSettingError> {
    let mut store = RootCertStore::empty();
    match roots {
        RootCerts::File(path) => {
            for cert in read_certs("sslrootcert", path)? {
                store.add(cert).map_err(|e| {
                    bad(
                        "sslrootcert",
                        format!(
                            "{}: a certificate cannot be used as a root: {e}",
                            path.display()
                        ),
                    )
                })?;
            }
        }
        RootCerts::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(bad(
                    "sslrootcert",
                    format!(
                        "sslrootcert=system: no certificate found in the system trust store{}",
                        found
                            .errors
                            .first()
                            .map(|e| format!(" ({e})"))
                            .unwrap_or_default()
                    ),
                ));
            }
        }
        RootCerts::Unset => {}
    }
    Ok(store)
}

/// `verify-ca`: the chain must lead to a trusted root; the name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain before the name: a name error means the chain was good.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` / `require` without a root certificate: encryption only, any certificate (libpq
/// does the same; it protects against eavesdropping, not against an impostor). The handshake
/// signatures are still checked.
#[derive(Debug)]
struct NoCheck(Arc<CryptoProvider>);

impl ServerCertVerifier for NoCheck {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
