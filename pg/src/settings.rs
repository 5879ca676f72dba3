//! The TLS settings of a connection string, libpq's way: `sslmode`, `sslrootcert`, `sslcert`
//! and `sslkey`, in a `postgres://` URL's query or a `key=value` string. tokio-postgres knows
//! only `sslmode=disable|prefer|require` and rejects the other keys, so they are taken out
//! here and the rest of the string is left to tokio-postgres's own parser.

use std::path::PathBuf;

use percent_encoding::percent_decode_str;

/// libpq's `sslmode`, all six values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// libpq tries plain first, then TLS; here the same as [`SslMode::Prefer`] (TLS first),
    /// which is never weaker.
    Allow,
    /// TLS when the server offers it, plain otherwise; the certificate is not checked
    /// (libpq's default).
    Prefer,
    /// TLS or nothing; the certificate is checked against `sslrootcert` only when one is
    /// given (as libpq does), otherwise not at all.
    Require,
    /// TLS, the certificate chain checked against `sslrootcert`; the host name is not.
    VerifyCa,
    /// TLS, the chain checked and the certificate must name the host connected to.
    VerifyFull,
}

impl SslMode {
    /// The value as written in a connection string.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// The closest mode tokio-postgres itself understands (the verification is ours).
    pub(crate) fn driver_mode(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as D;
        match self {
            SslMode::Disable => D::Disable,
            SslMode::Allow | SslMode::Prefer => D::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => D::Require,
        }
    }
}

/// Where the certificates that may sign the server's come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCerts {
    /// A PEM file (`sslrootcert=/path/ca.pem`).
    File(PathBuf),
    /// The operating system's trust store (`sslrootcert=system`, as libpq 16).
    System,
    /// None named: libpq's default file `~/.postgresql/root.crt` is used when it exists.
    Unset,
}

/// The TLS part of a connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// `sslmode` (default `prefer`, as libpq).
    pub mode: SslMode,
    /// `sslrootcert`.
    pub root: RootCerts,
    /// `sslcert`: the client certificate chain (PEM), for servers that ask for one.
    pub cert: Option<PathBuf>,
    /// `sslkey`: the client certificate's private key (PEM).
    pub key: Option<PathBuf>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            mode: SslMode::Prefer,
            root: RootCerts::Unset,
            cert: None,
            key: None,
        }
    }
}

/// A connection string split into what tokio-postgres parses and the TLS settings.
#[derive(Debug)]
pub(crate) struct Split {
    /// The string without the TLS keys (`sslmode` put back in the driver's terms).
    pub driver: String,
    pub tls: TlsSettings,
}

/// Takes the TLS keys out of `conn`. Errors name the key and what is wrong with its value.
pub(crate) fn split(conn: &str) -> Result<Split, String> {
    if conn.starts_with("postgres://") || conn.starts_with("postgresql://") {
        split_url(conn)
    } else {
        split_key_value(conn)
    }
}

fn split_url(url: &str) -> Result<Split, String> {
    let mut tls = TlsSettings::default();
    let Some(q) = url.find('?') else {
        return Ok(Split {
            driver: url.to_string(),
            tls,
        });
    };
    let (head, query) = (&url[..q], &url[q + 1..]);
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode_str(v).decode_utf8().map_err(|_| {
            format!("query parameter {k}: value is not UTF-8 after percent-decoding")
        })?;
        if !take(&mut tls, k, &value)? {
            kept.push(pair.to_string());
        }
    }
    kept.push(format!("sslmode={}", driver_mode_str(tls.mode)));
    Ok(Split {
        driver: format!("{head}?{}", kept.join("&")),
        tls,
    })
}

fn split_key_value(s: &str) -> Result<Split, String> {
    let mut tls = TlsSettings::default();
    let mut kept = String::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        let eq = rest
            .find('=')
            .ok_or_else(|| format!("`{rest}`: expected key=value"))?;
        let key = rest[..eq].trim();
        let after = rest[eq + 1..].trim_start();
        let (value, raw_len) = kv_value(after)?;
        let raw_value = &after[..raw_len];
        if !take(&mut tls, key, &value)? {
            kept.push_str(&format!("{key}={raw_value} "));
        }
        rest = &after[raw_len..];
    }
    kept.push_str(&format!("sslmode={}", driver_mode_str(tls.mode)));
    Ok(Split { driver: kept, tls })
}

/// One value of a `key=value` string: bare up to whitespace, or single-quoted with `\'` and
/// `\\` escapes. Returns the value and how many bytes of `s` it took.
fn kv_value(s: &str) -> Result<(String, usize), String> {
    if let Some(body) = s.strip_prefix('\'') {
        let mut out = String::new();
        let mut chars = body.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, e)) => out.push(e),
                    None => break,
                },
                '\'' => return Ok((out, i + 2)),
                c => out.push(c),
            }
        }
        Err(format!("unterminated quoted value `{s}`"))
    } else {
        let end = s.find(char::is_whitespace).unwrap_or(s.len());
        let mut out = String::new();
        let mut chars = s[..end].chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(e) = chars.next() {
                    out.push(e);
                }
            } else {
                out.push(c);
            }
        }
        Ok((out, end))
    }
}

/// Records `key=value` if it is a TLS key (returns whether it was).
fn take(tls: &mut TlsSettings, key: &str, value: &str) -> Result<bool, String> {
    match key {
        "sslmode" => {
            tls.mode = SslMode::parse(value).ok_or_else(|| {
                format!(
                    "sslmode={value:?} is not a mode; use disable, allow, prefer, require, verify-ca or verify-full"
                )
            })?;
        }
        "sslrootcert" => {
            tls.root = match value {
                "" => return Err("sslrootcert is empty; name a PEM file or `system`".into()),
                "system" => RootCerts::System,
                path => RootCerts::File(PathBuf::from(path)),
            }
        }
        "sslcert" => tls.cert = Some(PathBuf::from(value)),
        "sslkey" => tls.key = Some(PathBuf::from(value)),
        _ => return Ok(false),
    }
    Ok(true)
}

fn driver_mode_str(mode: SslMode) -> &'static str {
    use tokio_postgres::config::SslMode as D;
    match mode.driver_mode() {
        D::Disable => "disable",
        D::Prefer => "prefer",
        _ => "require",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_keys_taken_out_and_mode_mapped() {
        let s = split(
            "postgres://u:p@db.example.com:5432/app?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(
            s.driver,
            "postgres://u:p@db.example.com:5432/app?application_name=x&sslmode=require"
        );
        assert_eq!(s.tls.mode, SslMode::VerifyFull);
        assert_eq!(s.tls.root, RootCerts::File("/etc/ca.pem".into()));
        let parsed: tokio_postgres::Config = s.driver.parse().unwrap();
        assert_eq!(parsed.get_dbname(), Some("app"));
    }

    #[test]
    fn default_is_prefer_like_libpq() {
        let s = split("postgres://h/db").unwrap();
        assert_eq!(s.tls, TlsSettings::default());
        assert_eq!(s.tls.mode, SslMode::Prefer);
        let s = split("postgres://h/db?sslrootcert=system").unwrap();
        assert_eq!(s.tls.root, RootCerts::System);
        assert!(s.driver.ends_with("?sslmode=prefer"));
    }

    #[test]
    fn key_value_strings() {
        let s = split("host=db port=5433 sslmode=verify-ca sslrootcert='/my certs/ca.pem' dbname=app sslcert=/c.pem sslkey=/k.pem").unwrap();
        assert_eq!(s.tls.mode, SslMode::VerifyCa);
        assert_eq!(s.tls.root, RootCerts::File("/my certs/ca.pem".into()));
        assert_eq!(s.tls.cert.as_deref(), Some(std::path::Path::new("/c.pem")));
        assert_eq!(s.tls.key.as_deref(), Some(std::path::Path::new("/k.pem")));
        let parsed: tokio_postgres::Config = s.driver.parse().unwrap();
        assert_eq!(parsed.get_dbname(), Some("app"));
        assert_eq!(parsed.get_ports(), &[5433]);
    }

    #[test]
    fn bad_mode_names_the_choices() {
        let e = split("postgres://h/db?sslmode=verify_full").unwrap_err();
        assert!(e.contains("verify-full"), "{e}");
        let e = split("host=h sslrootcert=").unwrap_err();
        assert!(e.contains("sslrootcert"), "{e}");
        assert!(split("host='unterminated").is_err());
    }
}
