//! Connections to a PostgreSQL state store: settings from a URL (a connect timeout unless the
//! URL sets one, an `application_name`), and connect with the connection driven in the
//! background of the caller's runtime.

use std::time::Duration;

use tokio_postgres::{Client, Config, NoTls};

use crate::url::redact_url;
use crate::StateError;

/// Connect timeout used when the URL sets none.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The settings of the store at `url`, and the URL without its password (for messages).
pub fn config(url: &str, application_name: &str) -> Result<(Config, String), StateError> {
    let target = redact_url(url);
    let mut config: Config = url.parse().map_err(|source| StateError::Postgres {
        target: target.clone(),
        what: "parse URL",
        source,
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.application_name(application_name);
    Ok((config, target))
}

/// Connects; the connection runs on a task of the current runtime until the client is
/// dropped or the server closes it (logged at debug level, naming `role`).
pub async fn connect(config: &Config, role: &'static str) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, connection = role, "state store connection closed");
        }
    });
    Ok(client)
}
