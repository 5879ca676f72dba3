//! ficus-demo: the `ficus demo` story — starts a throwaway PostgreSQL, seeds the legacy
//! SQLite database, migrates it, puts the proxy in front of both task apps, and walks through
//! every ficus capability against them (shadow reads, dual writes, drift watch, rollouts, the
//! rollback guard, step plans and their pre-flight, a migration rollback), narrating what it did, what the same step looks like
//! on the command line, and where everything runs. Each step checks its outcome; a step whose
//! outcome is not what the story expects stops the demo with [`DemoError::Step`].
//!
//! # Layout
//! - `story` — the chapters, in order, and the teardown.
//! - `chapters` — one module per chapter (what it does, what it checks, what it prints).
//! - `stage` — everything the chapters share: the work directory and its files, PostgreSQL,
//!   the task app builds, the proxy and its operator client.
//! - `proxy_config` — the proxy's `ficus.toml` for each phase of the story.
//! - `traffic` — reads and concurrent writers driven through the proxy.
//! - `stores` — direct looks into the stores (dual-write log, SQLite, PostgreSQL).
//! - `client` — the small HTTP client the traffic uses.
//! - `narrator` — step headings, lines and shell commands, written to the caller's writer.

mod chapters;
mod client;
mod following;
mod narrator;
mod proxy_config;
mod stage;
mod stores;
mod story;
mod traffic;

use std::path::PathBuf;

pub use self::client::{Client, Reply};
pub use self::story::run;

/// What `ficus demo` was asked to do.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Working directory for databases and logs; a fresh temporary one when `None`.
    pub dir: Option<PathBuf>,
    /// How many tasks to seed the legacy database with (at least [`MIN_TASKS`]).
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

/// The fewest seeded tasks the story works with (its writers and reads use the first 60).
pub const MIN_TASKS: usize = 100;

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("starting PostgreSQL: {0}")]
    Postgres(#[from] pgtemp::PgTempError),
    #[error("{0}")]
    Connect(ficus_pg::PgError),
    #[error("PostgreSQL: {what}: {}", ficus_pg::describe(source))]
    Sql {
        what: String,
        source: tokio_postgres::Error,
    },
    #[error("SQLite {what}: {source}")]
    Sqlite {
        what: String,
        source: rusqlite::Error,
    },
    #[error("task app: {0}")]
    TaskApp(#[from] ficus_taskapp::TaskAppError),
    #[error("migration: {0}")]
    Migrate(#[from] ficus_migrator::MigrateError),
    #[error("watch or rollback: {0}")]
    DualWrite(#[from] ficus_migrator::DualWriteError),
    #[error(transparent)]
    State(#[from] Box<ficus_state::StateError>),
    #[error("proxy: {0}")]
    Proxy(#[from] ficus_proxy::ProxyError),
    #[error("proxy configuration: {0}")]
    ProxyConfig(#[from] ficus_proxy::ConfigError),
    #[error("admin API: {0}")]
    Admin(#[from] ficus_proxy::client::ClientError),
    #[error("shadow report: {0}")]
    Shadow(#[from] ficus_shadow::ShadowError),
    #[error("http: {0}")]
    Http(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("background task: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("demo step failed: {0}")]
    Step(String),
}

/// Fails the current step with `why` unless `ok`.
pub(crate) fn expect(ok: bool, why: impl FnOnce() -> String) -> Result<(), DemoError> {
    if ok {
        Ok(())
    } else {
        Err(DemoError::Step(why()))
    }
}
