//! Errors: [`TaskAppError`] for what callers of the library see (opening a store, seeding), and
//! the crate-internal [`TaskError`], the outcome of one API operation, which maps 1:1 onto an
//! HTTP status and a `{"detail": ...}` body.

use std::path::PathBuf;

use http::StatusCode;

/// Why a task app could not start, or seeding failed. Messages are one line, meant for a CLI.
#[derive(Debug, thiserror::Error)]
pub enum TaskAppError {
    #[error("SQLite database {} does not exist", path.display())]
    SqliteMissing { path: PathBuf },
    #[error("cannot open SQLite database {}: {reason}", path.display())]
    SqliteOpen { path: PathBuf, reason: String },
    #[error("{} is not a usable task database: {reason}", path.display())]
    SqliteSchema { path: PathBuf, reason: String },
    #[error("{0}")]
    Postgres(ficus_pg::PgError),
    #[error("cannot connect to PostgreSQL at {target}: {reason}")]
    PostgresConnect { target: String, reason: String },
    #[error("PostgreSQL at {target}: cannot prepare the task schema: {reason}")]
    PostgresSchema { target: String, reason: String },
    #[error("seeding failed: {0}")]
    Seed(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// The outcome of an API operation that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TaskError {
    #[error("Task {0} not found")]
    NotFound(String),
    #[error("Task {0} already exists")]
    AlreadyExists(String),
    /// 409 with this detail.
    #[error("{0}")]
    Conflict(String),
    /// 403 with this detail.
    #[error("{0}")]
    Forbidden(String),
    /// 422 with this detail (bad body, bad field value).
    #[error("{0}")]
    Invalid(String),
    /// The store failed; logged, and answered with a bare 500.
    #[error("store error: {0}")]
    Store(String),
}

impl TaskError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            TaskError::NotFound(_) => StatusCode::NOT_FOUND,
            TaskError::AlreadyExists(_) | TaskError::Conflict(_) => StatusCode::CONFLICT,
            TaskError::Forbidden(_) => StatusCode::FORBIDDEN,
            TaskError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            TaskError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `detail` sent to the client. Store failures are not described to clients.
    pub(crate) fn detail(&self) -> String {
        match self {
            TaskError::Store(_) => "Internal Server Error".to_string(),
            other => other.to_string(),
        }
    }
}

impl From<rusqlite::Error> for TaskError {
    fn from(e: rusqlite::Error) -> TaskError {
        TaskError::Store(format!("sqlite: {e}"))
    }
}

impl From<tokio_postgres::Error> for TaskError {
    fn from(e: tokio_postgres::Error) -> TaskError {
        TaskError::Store(format!("postgres: {}", crate::pg_store::pg_error_text(&e)))
    }
}

impl From<deadpool_postgres::PoolError> for TaskError {
    fn from(e: deadpool_postgres::PoolError) -> TaskError {
        TaskError::Store(format!("postgres pool: {e}"))
    }
}
