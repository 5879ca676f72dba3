//! Certificates and private keys from PEM files; errors name the file and say what was
//! expected.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::{Role, TlsError};

fn err(role: Role, path: &Path, reason: String) -> TlsError {
    TlsError {
        role,
        path: Some(path.to_path_buf()),
        reason,
    }
}

/// Every certificate in the PEM file at `path` (at least one), for `role`.
pub fn read_certs(role: Role, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| err(role, path, e.to_string()))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| err(role, path, format!("not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        return Err(err(
            role,
            path,
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(certs)
}

/// The private key in the PEM file at `path` (PKCS#8, PKCS#1 or SEC1).
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| err(Role::Key, path, e.to_string()))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        err(
            Role::Key,
            path,
            format!("no PEM private key could be read (-----BEGIN PRIVATE KEY-----): {e}"),
        )
    })
}
