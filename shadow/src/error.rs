//! [`ShadowError`]: what the library's entry points return. Failures of one mirrored request
//! are not errors of the library: they are counted (`result="error"`) and logged.

use std::path::PathBuf;

/// Errors from configuring, starting or reading shadow mode.
#[derive(Debug, thiserror::Error)]
pub enum ShadowError {
    /// A setting is invalid; `field` names it (`shadow.timeout_ms`, `shadow.ignore[2]`, ...).
    #[error("invalid setting `{field}`: {reason}")]
    Config {
        /// The offending field, relative to the `[shadow]` / `[routes.shadow]` table.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A configuration file could not be read or parsed.
    #[error("cannot read {path}: {detail}")]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// The I/O or TOML error.
        detail: String,
    },
    /// The mismatch store could not be opened or written.
    #[error("shadow store {path}: {source}")]
    Store {
        /// The SQLite file.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// The mismatch store file does not exist (reading never creates one).
    #[error("no shadow store at {0} (set `[shadow] store` or pass --store)")]
    NoStore(PathBuf),
    /// A stored row could not be decoded (written by an incompatible version?).
    #[error("shadow store: corrupt row {id}: {detail}")]
    Corrupt {
        /// The mismatch id.
        id: i64,
        /// What failed to decode.
        detail: String,
    },
    /// A metric could not be registered (a duplicate name: `Shadow::new` called twice on one
    /// registry).
    #[error("shadow metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// A thread or runtime could not be started.
    #[error("cannot start {what}: {source}")]
    Start {
        /// Which part was starting.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A `--since` value could not be parsed.
    #[error(transparent)]
    Since(#[from] ficus_core::since::SinceError),
    /// Writing a report failed.
    #[error("writing report: {0}")]
    Io(#[from] std::io::Error),
}

impl ShadowError {
    pub(crate) fn config(field: impl Into<String>, reason: impl Into<String>) -> ShadowError {
        ShadowError::Config {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
