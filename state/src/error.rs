//! [`StateError`]: what failed in the state store, naming the store (its file, or its URL
//! without the password) and what was being done.

use std::path::PathBuf;

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A SQLite store failed.
    #[error("proxy state {path}: {what}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// A PostgreSQL store could not be reached (or its URL is unusable): what failed, in
    /// ficus-pg's terms (TLS, certificate, the server's refusal).
    #[error("proxy state: {0}")]
    Connect(ficus_pg::PgError),
    /// A PostgreSQL store failed.
    #[error("proxy state {target}: {what}: {}", ficus_pg::describe(source))]
    Postgres {
        /// The server and database (password removed).
        target: String,
        /// What was being done.
        what: &'static str,
        /// The driver error.
        source: tokio_postgres::Error,
    },
    /// A PostgreSQL store did not answer in time, or its thread is gone.
    #[error("proxy state {target}: {message}")]
    Unavailable {
        /// The store (password removed).
        target: String,
        /// What happened.
        message: String,
    },
    /// `state_env` names a variable that is unset or empty.
    #[error("proxy.state_env: environment variable {var} is not set (it should hold the state database URL)")]
    MissingEnv {
        /// The variable.
        var: String,
    },
    /// A thread could not be started.
    #[error("proxy state: cannot start {what}: {source}")]
    Start {
        /// Which thread.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

impl StateError {
    /// A closure turning a SQLite error into [`StateError::Sqlite`] for `path` and `what`.
    pub(crate) fn sqlite<'a>(
        path: &'a std::path::Path,
        what: &'static str,
    ) -> impl Fn(rusqlite::Error) -> StateError + 'a {
        move |source| StateError::Sqlite {
            path: path.to_path_buf(),
            what,
            source,
        }
    }

    /// A closure turning a driver error into [`StateError::Postgres`] for `target` and `what`.
    pub(crate) fn pg<'a>(
        target: &'a str,
        what: &'static str,
    ) -> impl Fn(tokio_postgres::Error) -> StateError + 'a {
        move |source| StateError::Postgres {
            target: target.to_string(),
            what,
            source,
        }
    }
}
