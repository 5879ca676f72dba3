//! [`PgError`]: why a connection to PostgreSQL could not be made, in the terms an operator acts
//! on (the server offers no TLS, its certificate is not trusted or names another host, the
//! server refused with its own words), and [`describe`], the full text of any driver error
//! (tokio-postgres's own `Display` says only `db error`).

use std::error::Error as StdError;

use ficus_tls::FailureKind;

use crate::tls::TlsSettingError;

/// Errors of parsing a connection string and of connecting.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The connection string does not parse.
    #[error("PostgreSQL {target}: bad connection string: {reason}")]
    Syntax {
        /// The URL without its password.
        target: String,
        /// What is wrong.
        reason: String,
    },
    /// A TLS setting cannot be used (file missing, bad PEM, key not matching, …).
    #[error("PostgreSQL {target}: {source}")]
    TlsSetting {
        /// The URL without its password.
        target: String,
        /// Which key and why.
        source: TlsSettingError,
    },
    /// `sslmode=require` or stricter, and the server answered that it has no TLS.
    #[error(
        "PostgreSQL {target}: the server does not support TLS, and sslmode={mode} requires it \
         (turn on ssl in the server, or use sslmode=prefer to accept an unencrypted connection)"
    )]
    TlsNotOffered {
        /// The URL without its password.
        target: String,
        /// The mode asked for.
        mode: &'static str,
    },
    /// The server's certificate does not lead to a trusted root (or is expired, revoked, …).
    #[error("PostgreSQL {target}: the server's certificate is not trusted: {detail} (checked against {roots})")]
    Untrusted {
        /// The URL without its password.
        target: String,
        /// rustls's reason.
        detail: String,
        /// What it was checked against.
        roots: String,
    },
    /// `verify-full`: the certificate is trusted but names another host.
    #[error(
        "PostgreSQL {target}: the server's certificate is not for host {host}: {detail} \
         (sslmode=verify-full checks the name; connect by a name the certificate has, or use \
         sslmode=verify-ca to check the chain only)"
    )]
    NameMismatch {
        /// The URL without its password.
        target: String,
        /// The host connected to.
        host: String,
        /// rustls's reason, with the names the certificate has.
        detail: String,
    },
    /// Any other TLS failure during the handshake.
    #[error("PostgreSQL {target}: TLS handshake failed: {detail}")]
    Tls {
        /// The URL without its password.
        target: String,
        /// What failed.
        detail: String,
    },
    /// The server answered with an error (authentication, no such database or role,
    /// `pg_hba.conf` rejecting the connection, too many clients, …): its own words.
    #[error("PostgreSQL {target}: the server refused the connection: {detail}")]
    Refused {
        /// The URL without its password.
        target: String,
        /// The server's message, SQLSTATE, detail and hint.
        detail: String,
    },
    /// The server could not be reached (refused, timed out, closed) or the connection broke.
    #[error("PostgreSQL {target}: cannot connect: {detail}")]
    Unreachable {
        /// The URL without its password.
        target: String,
        /// The cause chain.
        detail: String,
    },
}

/// The whole text of a driver error: the server's message, SQLSTATE, detail and hint for a
/// server error; otherwise every cause in the chain (not only tokio-postgres's summary).
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        if let Some(d) = db.detail() {
            s.push_str(&format!("; detail: {d}"));
        }
        if let Some(h) = db.hint() {
            s.push_str(&format!("; hint: {h}"));
        }
        return s;
    }
    chain_text(e)
}

/// `outer: cause: cause…`, skipping a cause whose text the previous one already contains.
fn chain_text(e: &(dyn StdError + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// What to say about a failed connect.
pub(crate) struct Context<'a> {
    pub target: &'a str,
    pub mode: &'static str,
    pub host: String,
    pub roots: String,
}

/// Classifies a connect failure.
pub(crate) fn classify(e: tokio_postgres::Error, cx: Context<'_>) -> PgError {
    let target = cx.target.to_string();
    if let Some(db) = e.as_db_error() {
        let mut detail = describe(&e);
        if cx.mode == "disable" && db.message().contains("no encryption") {
            detail.push_str(
                " — the server accepts this connection only over TLS: use sslmode=verify-full (or require)",
            );
        }
        return PgError::Refused { target, detail };
    }
    if let Some(f) = ficus_tls::find_failure(&e) {
        let detail = f.detail;
        return match f.kind {
            FailureKind::NameMismatch => PgError::NameMismatch {
                target,
                host: cx.host,
                detail,
            },
            FailureKind::Untrusted => PgError::Untrusted {
                target,
                detail,
                roots: cx.roots,
            },
            FailureKind::Other => PgError::Tls { target, detail },
        };
    }
    let text = chain_text(&e);
    if text.contains("server does not support TLS") {
        return PgError::TlsNotOffered {
            target,
            mode: cx.mode,
        };
    }
    if text.contains("TLS") {
        return PgError::Tls {
            target,
            detail: text,
        };
    }
    PgError::Unreachable {
        target,
        detail: text,
    }
}
