//! ficus-migrator: SQLite → PostgreSQL schema plan, resumable backfill, verification.
//!
//! # Entry points
//! - [`Plan::build`] introspects and profiles a SQLite file and decides every PostgreSQL type,
//!   conversion, default, key, index and constraint ([`Plan::report`], [`Plan::ddl`]).
//! - [`run()`] executes a plan into a PostgreSQL URL: resumable, checkpointed, quarantining
//!   values that do not convert → [`RunReport`].
//! - [`verify()`] compares both sides by chunked checksums of canonical rows → [`VerifyReport`].
//! - [`status()`] reads the migration state kept in the target → [`StatusReport`].
//! - [`watch()`] keeps re-verifying both sides while they take dual writes (the keys the proxy
//!   records, plus sweeps) → drift events, metrics, [`WatchSummary`]; [`rollback()`] writes what
//!   only the new side has back into SQLite, verifies, and routes everything to legacy →
//!   [`RollbackReport`].
//!
//! # Layout
//! - `introspect` — what SQLite declares; `profile` — what it stores;
//! - `plan` — decisions, DDL, report; `config` — `migration.toml` overrides;
//! - `convert` — SQLite value → PostgreSQL binary field, canonical encoding;
//! - `source` — read-only SQLite access, source identity, keyset-paginated reads;
//! - `rows` — canonical rows from either side (reused by the dual-write watch);
//! - `copy` — one table's reader thread → bounded channel → binary COPY writer;
//! - `checkpoint` — the `ficus` schema: migration, checkpoints, steps; `quarantine`;
//! - `run`, `verify`, `status` — the commands; `progress`, `metrics` — what they show;
//! - `watch`, `rollback` — the dual-write commands; `drift` — row comparison by key shared by
//!   both; `writeback` — the legacy's storage format, PostgreSQL values turned back into it.
//!
//! Architecture invariant: a batch's rows, its quarantine records and its checkpoint are
//! committed in one transaction; nothing else writes data rows. Hence a killed run resumes
//! with no gap and no duplicate, and a finished one re-runs as a no-op.

pub mod checkpoint;
pub mod config;
pub mod convert;
pub mod copy;
pub mod drift;
pub mod error;
pub mod introspect;
pub mod metrics;
pub mod pg;
pub mod plan;
pub mod profile;
pub mod progress;
pub mod quarantine;
pub mod rollback;
pub mod rows;
pub mod run;
pub mod source;
pub mod status;
pub mod verify;
pub mod watch;
pub mod writeback;

pub use self::config::{ColumnConfig, MigrationConfig, TableConfig};
pub use self::error::{MigrateError, Result};
pub use self::metrics::Metrics;
pub use self::plan::Plan;
pub use self::progress::Observer;
pub use self::rollback::{rollback, ConflictPolicy, RollbackOptions, RollbackReport};
pub use self::run::{plan_for_run, run, RunOptions, RunReport};
pub use self::status::{status, StatusReport};
pub use self::verify::{verify, Difference, VerifyOptions, VerifyReport};
pub use self::watch::{watch, WatchEvent, WatchOptions, WatchSummary};
