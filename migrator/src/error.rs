//! Typed errors of the migrator. Each variant names the table, column or row involved where
//! there is one; the binary turns them into one-line messages.

use std::path::PathBuf;

/// Everything that can stop a plan, run, verify or status.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("cannot open SQLite source {path}: {source}")]
    OpenSource {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("reading SQLite table {table}: {source}")]
    Source {
        table: String,
        source: rusqlite::Error,
    },
    #[error("SQLite schema: {0}")]
    Schema(String),
    #[error("configuration {path}: {detail}")]
    Config { path: String, detail: String },
    #[error("cannot connect to PostgreSQL target: {0}")]
    Connect(tokio_postgres::Error),
    #[error("PostgreSQL {context}: {source}")]
    Target {
        context: String,
        source: tokio_postgres::Error,
    },
    #[error(
        "target schema {schema:?} already holds a ficus migration with a different fingerprint \
         (stored {stored}, now {current}): the source file or the plan changed since it started; \
         re-run with --restart to drop what it created and start over"
    )]
    FingerprintMismatch {
        schema: String,
        stored: String,
        current: String,
    },
    #[error("target table {schema}.{table} already exists and was not created by ficus")]
    TargetTableExists { schema: String, table: String },
    #[error("{count} rows quarantined, more than --max-rejects {max} (last: table {table}, key {key}, column {column}: {reason})")]
    TooManyRejects {
        count: u64,
        max: u64,
        table: String,
        key: String,
        column: String,
        reason: String,
    },
    #[error("another `ficus migrate` holds the lock on target schema {0}")]
    Locked(String),
    #[error("no ficus migration found in target schema {0}")]
    NoMigration(String),
    #[error("change capture on {path}: {detail}")]
    Capture {
        path: std::path::PathBuf,
        detail: String,
    },
    #[error("target schema {schema} was following capture epoch {followed}, but the source's capture is epoch {installed}: it was removed and installed again, and changes made in between were not captured; re-run `ficus migrate run --follow --restart` to copy again")]
    CaptureEpoch {
        schema: String,
        followed: String,
        installed: String,
    },
    #[error("internal: {0}")]
    Internal(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Result alias of this crate.
pub type Result<T, E = MigrateError> = std::result::Result<T, E>;

/// Attach a context string to a PostgreSQL error.
pub(crate) trait PgContext<T> {
    fn ctx(self, context: impl Into<String>) -> Result<T>;
}

impl<T> PgContext<T> for std::result::Result<T, tokio_postgres::Error> {
    fn ctx(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|source| MigrateError::Target {
            context: context.into(),
            source,
        })
    }
}

/// Attach the table name to a SQLite error.
pub(crate) trait SqliteContext<T> {
    fn table(self, table: &str) -> Result<T>;
}

impl<T> SqliteContext<T> for std::result::Result<T, rusqlite::Error> {
    fn table(self, table: &str) -> Result<T> {
        self.map_err(|source| MigrateError::Source {
            table: table.to_string(),
            source,
        })
    }
}
