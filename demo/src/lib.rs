//! ficus-demo: the `ficus demo` story — starts a throwaway PostgreSQL, seeds the legacy
//! SQLite database, starts both task apps, and walks through each ficus capability against
//! them, narrating what it did and where everything runs.
//!
//! # Layout
//! - `story` — the steps, in order.
//! - `client` — the small HTTP client the steps drive traffic with.
//! - `narrator` — step headings and lines, written to the caller's writer.

mod client;
mod narrator;
mod story;

use std::path::PathBuf;

pub use self::client::{Client, Reply};
pub use self::story::run;

/// What `ficus demo` was asked to do.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Working directory for databases and logs; a fresh temporary one when `None`.
    pub dir: Option<PathBuf>,
    /// How many tasks to seed the legacy database with.
    pub tasks: usize,
    /// Keep everything running at the end until Ctrl-C.
    pub serve: bool,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            dir: None,
            tasks: 500,
            serve: false,
        }
    }
}

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("starting PostgreSQL: {0}")]
    Postgres(#[from] pgtemp::PgTempError),
    #[error("task app: {0}")]
    TaskApp(#[from] ficus_taskapp::TaskAppError),
    #[error("migration: {0}")]
    Migrate(#[from] ficus_migrator::MigrateError),
    #[error("http: {0}")]
    Http(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("demo step failed: {0}")]
    Step(String),
}
