//! ficus-pg: how every part of ficus connects to PostgreSQL — the migrator, the proxy's state
//! store and its `LISTEN` follower, the dual-write log, the task app's `new` side, `watch`,
//! `rollback` and the demo — defined once.
//!
//! A connection string is libpq's (`postgres://user@host/db?sslmode=verify-full&sslrootcert=ca.pem`
//! or `host=… sslmode=…`), TLS keys included: `sslmode` (`disable`, `allow`, `prefer` — the
//! default, as libpq —, `require`, `verify-ca`, `verify-full`), `sslrootcert` (a PEM file, or
//! `system` for the operating system's store; unset: `~/.postgresql/root.crt` when it exists),
//! `sslcert`/`sslkey` (a client certificate). TLS is rustls (no OpenSSL).
//!
//! # Layout
//! - [`url`]: `postgres://` detection and password redaction for logs;
//! - `settings`: the `ssl*` keys taken out of the string ([`SslMode`], [`TlsSettings`]);
//! - `tls`: the `ssl*` settings as a rustls client configuration (through ficus-tls, which owns
//!   PEM files, trust roots and the verifiers): `verify-full` checks chain and name, `verify-ca`
//!   the chain, `prefer`/`require` nothing unless a root certificate is given (as libpq);
//! - `endpoint`: [`Endpoint`] — parse once, connect anywhere; [`Endpoint::connect`] is the one
//!   connect function;
//! - `error`: [`PgError`] (what failed, in an operator's terms) and [`describe`] (the full text
//!   of any driver error, the server's message, SQLSTATE, detail and hint).
//!
//! Deliberately absent: `sslcrl`, `sslpassword` (encrypted keys), `sslnegotiation=direct`
//! (tokio-postgres passes the latter through), and libpq's default client certificate files.
#![forbid(unsafe_code)]

mod endpoint;
mod error;
mod settings;
mod tls;
pub mod url;

pub use self::endpoint::{Endpoint, PgConnection, Tls, DEFAULT_CONNECT_TIMEOUT};
pub use self::error::{describe, PgError};
pub use self::settings::{RootCerts, SslMode, TlsSettings};
pub use self::tls::TlsSettingError;
