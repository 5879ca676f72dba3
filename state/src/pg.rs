//! Connections to a PostgreSQL state store: its [`Endpoint`] (ficus-pg's — libpq URL with
//! `sslmode` and certificates, a connect timeout unless the URL sets one, an
//! `application_name`), and connect with the connection driven in the background of the
//! caller's runtime. Errors become [`StateError::Connect`].

use ficus_pg::Endpoint;
use tokio_postgres::Client;

use crate::StateError;

/// The store at `url`, ready to connect to.
pub fn endpoint(url: &str, application_name: &str) -> Result<Endpoint, StateError> {
    Endpoint::parse(url, application_name).map_err(StateError::Connect)
}

/// Connects; the connection runs on a task of the current runtime until the client is
/// dropped or the server closes it (logged at debug level, naming `role`).
pub async fn connect(endpoint: &Endpoint, role: &'static str) -> Result<Client, StateError> {
    endpoint.connect(role).await.map_err(StateError::Connect)
}
