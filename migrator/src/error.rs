//! Typed errors of the migrator: [`MigrateError`] (plan, run, verify, status) and
//! [`DualWriteError`] (watch, rollback). Each variant names the table, column or row involved
//! where there is one; the binary turns them into one-line messages.

use std::path::PathBuf;

/// Everything that can stop a plan, run, verify or status.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The SQLite file could not be opened (read-only) or is not a database.
    #[error("cannot open SQLite source {path}: {source}")]
    OpenSource {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// Reading a table of the SQLite source failed.
    #[error("reading SQLite table {table}: {source}")]
    Source {
        /// The table (or `sqlite_master`).
        table: String,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The SQLite schema holds something the migrator cannot read.
    #[error("SQLite schema: {0}")]
    Schema(String),
    /// `migration.toml` (or a command-line setting) is invalid.
    #[error("configuration {path}: {detail}")]
    Config {
        /// The file or option.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// The PostgreSQL target could not be reached.
    #[error("target: {0}")]
    Connect(ficus_pg::PgError),
    /// A statement on the PostgreSQL target failed.
    #[error("PostgreSQL {context}: {}", ficus_pg::describe(source))]
    Target {
        /// What was being done.
        context: String,
        /// What PostgreSQL said.
        source: tokio_postgres::Error,
    },
    /// The target schema holds a migration of another source or plan (see `--restart`).
    #[error(
        "target schema {schema:?} already holds a ficus migration with a different fingerprint \
         (stored {stored}, now {current}): the source file or the plan changed since it started; \
         re-run with --restart to drop what it created and start over"
    )]
    FingerprintMismatch {
        /// The target schema.
        schema: String,
        /// The fingerprint of the migration stored there.
        stored: String,
        /// The fingerprint of the plan now.
        current: String,
    },
    /// A table the plan creates already exists and ficus did not create it.
    #[error("target table {schema}.{table} already exists and was not created by ficus")]
    TargetTableExists {
        /// The target schema.
        schema: String,
        /// The table.
        table: String,
    },
    /// More rows were quarantined than `--max-rejects` allows.
    #[error("{count} rows quarantined, more than --max-rejects {max} (last: table {table}, key {key}, column {column}: {reason})")]
    TooManyRejects {
        /// Rows quarantined so far.
        count: u64,
        /// The limit.
        max: u64,
        /// Table of the last quarantined row.
        table: String,
        /// Its key.
        key: String,
        /// The column that did not convert.
        column: String,
        /// Why.
        reason: String,
    },
    /// Another `ficus migrate` holds the advisory lock of this target schema.
    #[error("another `ficus migrate` holds the lock on target schema {0}")]
    Locked(String),
    /// The target schema holds no ficus migration (status, rollback without `--since`).
    #[error("no ficus migration found in target schema {0}")]
    NoMigration(String),
    /// Change capture on the source failed or is not installed.
    #[error("change capture on {path}: {detail}")]
    Capture {
        /// The source file.
        path: std::path::PathBuf,
        /// What failed.
        detail: String,
    },
    /// The source's capture is not the one the follower followed.
    #[error("target schema {schema} was following capture epoch {followed}, but the source's capture is epoch {installed}: it was removed and installed again, and changes made in between were not captured; re-run `ficus migrate run --follow --restart` to copy again")]
    CaptureEpoch {
        /// Target schema.
        schema: String,
        /// The epoch in `ficus.follow`.
        followed: String,
        /// The epoch installed on the source now.
        installed: String,
    },
    /// A bug or a dead worker thread.
    #[error("internal: {0}")]
    Internal(String),
    /// Reading a local file.
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

/// Errors of `migrate watch` and `migrate rollback`.
#[derive(Debug, thiserror::Error)]
pub enum DualWriteError {
    /// Reading either side, or the plan.
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    /// The proxy's state store (its dual-write log).
    #[error(transparent)]
    State(#[from] Box<ficus_state::StateError>),
    /// The `[watch]` section of `migration.toml` names something the plan does not have.
    #[error("[watch] configuration: {0}")]
    Config(String),
    /// A table cannot be watched or rolled back as configured.
    #[error("table {table}: {detail}")]
    Table {
        /// The table.
        table: String,
        /// Why.
        detail: String,
    },
    /// A PostgreSQL value has no faithful SQLite form.
    #[error("table {table}, key {key}, column {column}: {detail}")]
    Value {
        /// The table.
        table: String,
        /// The row's key.
        key: String,
        /// The column.
        column: String,
        /// Why.
        detail: String,
    },
    /// Writing a row back into the legacy SQLite file failed.
    #[error("writing back to SQLite {}: table {table}, key {key}: {source}", path.display())]
    WriteBack {
        /// The SQLite file.
        path: PathBuf,
        /// The table (`-` for the transaction itself).
        table: String,
        /// The row's key (`-` for the statement or the transaction).
        key: String,
        /// What SQLite said.
        source: Box<rusqlite::Error>,
    },
    /// The legacy SQLite file could not be opened for writing.
    #[error("opening SQLite {} for writing: {source}", path.display())]
    OpenLegacy {
        /// The SQLite file.
        path: PathBuf,
        /// What SQLite said.
        source: Box<rusqlite::Error>,
    },
    /// `--since` is not a time or an age.
    #[error(transparent)]
    Since(#[from] ficus_core::since::SinceError),
    /// No `--since` was given and none can be derived.
    #[error("--since: {0}")]
    NoSince(String),
    /// Appending to the `--report` file failed.
    #[error("report {}: {source}", path.display())]
    Report {
        /// The report file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A bug or a dead worker thread.
    #[error("internal: {0}")]
    Internal(String),
}

/// Result alias of watch and rollback.
pub type DwResult<T> = std::result::Result<T, DualWriteError>;

impl From<ficus_state::StateError> for DualWriteError {
    fn from(e: ficus_state::StateError) -> DualWriteError {
        DualWriteError::State(Box::new(e))
    }
}
