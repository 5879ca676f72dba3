//! A rustls failure somewhere in an error chain (it travels inside an `io::Error`), in the
//! terms an operator acts on.

use std::error::Error as StdError;

use rustls::CertificateError;

/// What kind of TLS failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The peer's certificate does not lead to a trusted root, is expired, revoked, …
    Untrusted,
    /// The certificate is trusted but names other hosts.
    NameMismatch,
    /// Anything else in the handshake (protocol, alert from the peer, …).
    Other,
}

/// A rustls failure: its kind and rustls's words.
#[derive(Debug, Clone)]
pub struct Failure {
    /// What kind.
    pub kind: FailureKind,
    /// rustls's message (for a name mismatch, with the names the certificate has).
    pub detail: String,
}

/// The rustls error in `e`'s chain, if any.
pub fn find_failure(e: &(dyn StdError + 'static)) -> Option<Failure> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(c) = cur {
        let found = c.downcast_ref::<rustls::Error>().or_else(|| {
            c.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|i| i.downcast_ref::<rustls::Error>())
        });
        if let Some(r) = found {
            let kind = match r {
                rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                ) => FailureKind::NameMismatch,
                rustls::Error::InvalidCertificate(_) => FailureKind::Untrusted,
                _ => FailureKind::Other,
            };
            return Some(Failure {
                kind,
                detail: r.to_string(),
            });
        }
        cur = c.source();
    }
    None
}
