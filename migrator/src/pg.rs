//! PostgreSQL connections to the target: how every command connects (one session setup for
//! all), and the server's own words for a failed statement.

use tokio_postgres::Client;

use crate::error::{MigrateError, PgContext, Result};

/// Connects to the target PostgreSQL at `url` (a libpq URL or key/value string), warnings
/// only (no NOTICE chatter). The connection is driven by a task on the current runtime.
pub async fn connect(url: &str) -> Result<Client> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(MigrateError::Connect)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("postgres connection closed: {e}");
        }
    });
    client
        .batch_execute("SET client_min_messages = warning")
        .await
        .ctx("session setup")?;
    Ok(client)
}

/// The server's message (and detail) of a PostgreSQL error.
pub(crate) fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(d) => format!("{} ({d})", db.message()),
            None => db.message().to_string(),
        },
        None => e.to_string(),
    }
}
