//! PostgreSQL connections to the target: how every command connects (one session setup for
//! all), and the server's own words for a failed statement.

use tokio_postgres::Client;

use crate::error::{MigrateError, PgContext, Result};

/// Connects to the target PostgreSQL at `url` (a libpq URL or key/value string, `sslmode`
/// and certificates included: ficus-pg), warnings only (no NOTICE chatter). The connection is
/// driven by a task on the current runtime.
pub async fn connect(url: &str) -> Result<Client> {
    let endpoint =
        ficus_pg::Endpoint::parse(url, "ficus-migrate").map_err(MigrateError::Connect)?;
    let client = endpoint
        .connect("migrate")
        .await
        .map_err(MigrateError::Connect)?;
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
