//! [`Endpoint`]: a PostgreSQL server as every part of ficus connects to it — the driver's
//! settings, the TLS connector built once from the string's `ssl*` keys, and the URL as shown
//! in messages — and the one connect function.

use std::time::Duration;

use tokio_postgres::config::Host;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, Connection, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{classify, Context, PgError};
use crate::settings::{split, SslMode, TlsSettings};
use crate::tls::{client_config, describe_roots};
use crate::url::redact_url;

/// Connect timeout used when the connection string sets none (`connect_timeout=`).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS connector type, for pools (deadpool-postgres) that connect themselves.
pub type Tls = MakeRustlsConnect;

/// A connection as the driver returns it, for callers that poll it themselves (`LISTEN`).
pub type PgConnection = Connection<Socket, <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream>;

/// A PostgreSQL server and how to reach it.
#[derive(Clone)]
pub struct Endpoint {
    config: Config,
    tls: MakeRustlsConnect,
    settings: TlsSettings,
    shown: String,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("target", &self.shown)
            .field("sslmode", &self.settings.mode)
            .finish()
    }
}

impl Endpoint {
    /// Parses a libpq connection string (`postgres://` URL or `key=value` pairs) with its TLS
    /// keys, reads the certificate files it names, and sets `application_name` (unless the
    /// string sets one) and a connect timeout of [`DEFAULT_CONNECT_TIMEOUT`] (unless it sets
    /// one).
    pub fn parse(conn: &str, application_name: &str) -> Result<Endpoint, PgError> {
        let shown = redact_url(conn);
        let syntax = |reason: String| PgError::Syntax {
            target: shown.clone(),
            reason,
        };
        let parts = split(conn).map_err(&syntax)?;
        let mut config: Config = parts
            .driver
            .parse()
            .map_err(|e: tokio_postgres::Error| syntax(crate::error::describe(&e)))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name(application_name);
        }
        let tls_setting = |source| PgError::TlsSetting {
            target: shown.clone(),
            source,
        };
        if parts.tls.mode == SslMode::VerifyFull {
            let named = !config.get_hosts().is_empty()
                && config.get_hosts().iter().all(|h| matches!(h, Host::Tcp(_)));
            if !named {
                return Err(tls_setting(crate::tls::TlsSettingError {
                    key: "sslmode",
                    reason: "sslmode=verify-full checks the server's certificate against the host \
                             name, but the connection string names no TCP host (host=/a/socket \
                             or only hostaddr); give host=<name>"
                        .into(),
                }));
            }
        }
        let client = client_config(&parts.tls).map_err(tls_setting)?;
        Ok(Endpoint {
            config,
            tls: MakeRustlsConnect::new(client),
            settings: parts.tls,
            shown,
        })
    }

    /// The driver's settings (host, port, database, timeouts).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The driver's settings, to adjust before connecting.
    pub fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }

    /// The TLS connector (for connection pools).
    pub fn tls(&self) -> Tls {
        self.tls.clone()
    }

    /// The connection string without its password, for logs and messages.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The `sslmode` asked for.
    pub fn ssl_mode(&self) -> SslMode {
        self.settings.mode
    }

    /// Connects; the caller drives the returned connection (spawn it, or poll its messages).
    pub async fn connect_raw(&self) -> Result<(Client, PgConnection), PgError> {
        self.config
            .connect(self.tls.clone())
            .await
            .map_err(|e| self.explain(e))
    }

    /// Connects, with the connection driven by a task on the current runtime until the client
    /// is dropped or the server closes it (logged at debug level, naming `role`).
    pub async fn connect(&self, role: &'static str) -> Result<Client, PgError> {
        let (client, conn) = self.connect_raw().await?;
        let target = self.shown.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(target = %target, connection = role, error = %crate::error::describe(&e),
                    "PostgreSQL connection closed");
            }
        });
        Ok(client)
    }

    /// The connect failure `e` in an operator's terms (for pools that connect themselves).
    pub fn explain(&self, e: tokio_postgres::Error) -> PgError {
        let host = self
            .config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            })
            .collect::<Vec<_>>()
            .join(",");
        classify(
            e,
            Context {
                target: &self.shown,
                mode: self.settings.mode.as_str(),
                host,
                roots: describe_roots(&self.settings),
            },
        )
    }
}
