//! ficus-migrator: SQLite → PostgreSQL schema plan, resumable backfill, verification, and the
//! dual-write tools (watch, rollback).
//!
//! # Entry points
//! - [`Plan::build`] introspects and profiles a SQLite file and decides every PostgreSQL type,
//!   conversion, default, key, index and constraint ([`Plan::report`], [`Plan::ddl`],
//!   [`Plan::json`]: the stable shape of `plan --format json`).
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
//! The modules follow the data flow, introspect → profile → plan → copy/run → verify →
//! watch/rollback, and depend only on modules before them in it (and on the shared ones:
//! `error`, `config`, `convert`, `source`, `pg`, `metrics`/`progress`). There are no module
//! cycles; `python3 scripts/module-graph.py migrator` checks it. All modules are private: the API
//! is what this file re-exports.
//!
//! - `error` — [`MigrateError`], [`DualWriteError`]; `config` — `migration.toml`, its
//!   `[watch]` section included; `keyjson` — row keys as JSON objects in reports;
//! - `convert` — SQLite value → PostgreSQL binary field, canonical encoding, display
//!   (`types`, `encode`, `datetime`, `numeric`, `canon`);
//! - `collation` — the fallback for collations SQLite does not know (Anki's `unicase`),
//!   registered on every source connection;
//! - `source` — read-only SQLite access, source identity, keyset-paginated reads of any
//!   [`ReadKey`]-ordered table; `pg` — PostgreSQL connections;
//! - `introspect` — what SQLite declares; `vtab` — its virtual tables (FTS migrated as
//!   ordinary tables, shadow tables, the rest skipped with a reason); `profile` — what it
//!   stores;
//! - `plan` — the plan's types apart from the planner (`types`, `build`, `decide`,
//!   `defaults`, `constraints`, `ddl`, `report`);
//! - `checkpoint` — the `ficus` schema: migration, checkpoints, steps; `quarantine`;
//! - `copy` — one table's reader thread → bounded channel → binary COPY writer; `run` — the
//!   command; `not_carried` — `NotCarried`, one type for every object not carried and why
//!   (virtual/shadow tables, triggers, views not created, configuration skips); `carried` — what
//!   a migration carried and did not, per kind (`run`'s summary, `status`); `progress`,
//!   `metrics` — what commands show;
//! - `rows` — canonical rows from either side; `verify`, `status` — the commands;
//! - `drift` — the dual-write tools' view of a table and row comparison by key;
//!   `writeback` — the legacy's storage format, PostgreSQL values turned back into it;
//! - `watch` — `migrate watch` (`options`, `event`, `metrics`, `write_log`, `route_map`,
//!   `pending`, `sides`, `report`, `sweep`); `rollback` — `migrate rollback` (`options`,
//!   `scope`, `write_back`, `reverse_verify`, `report`);
//! - `capture` — change capture on the SQLite source (`_ficus_changes`, triggers, the
//!   `_ficus_capture` meta table); `follow` — `run --follow`: snapshot rounds read from SQLite,
//!   staged apply into PostgreSQL, `ficus.follow` (position, direction, heartbeat), the log
//!   trimmer, followed `ADD COLUMN`; `repair` — re-copy what verify finds different;
//! - `reverse` — after a cut-over: capture on PostgreSQL (`ficus.reverse_changes`, triggers
//!   that skip the follower's own writes) and the reverse follower writing PostgreSQL's changes
//!   into SQLite in the legacy's format (through `writeback`);
//! - `cutover` — `migrate cutover` / `rollback --live` over [`ficus_state::TrafficControl`]
//!   (`report`, `checks`, `keys`, `to_new`, `to_legacy`).
//!
//! Architecture invariant: a batch's rows, its quarantine records and its checkpoint are
//! committed in one transaction; nothing else writes data rows. Hence a killed run resumes
//! with no gap and no duplicate, and a finished one re-runs as a no-op.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod capture;
mod carried;
mod checkpoint;
mod collation;
mod config;
mod convert;
mod copy;
pub mod cutover;
mod drift;
mod error;
pub mod follow;
mod introspect;
mod keyjson;
mod metrics;
mod not_carried;
mod pg;
mod plan;
mod profile;
mod progress;
mod quarantine;
pub mod repair;
pub mod reverse;
mod rollback;
mod rows;
mod run;
mod source;
mod status;
mod verify;
mod vtab;
mod watch;
mod writeback;

pub use self::carried::Carried;
pub use self::config::{
    ColumnConfig, ConfigOrigin, EmptyString, MigrationConfig, TableConfig, WatchConfig, WatchRoute,
    WatchTable,
};
pub use self::convert::{Conversion, ConvertError, EpochUnit, PgType};
pub use self::drift::{drift_line, ColumnDiff, Drift, DriftClass};
pub use self::error::{DualWriteError, DwResult, MigrateError, Result};
pub use self::metrics::Metrics;
pub use self::pg::connect;
pub use self::plan::{
    CheckPlan, ColumnPlan, FkPlan, IdentityPlan, IndexPlan, NotCarried, Plan, PlanJson, Step,
    TablePlan, ViewPlan, PLAN_JSON_FORMAT, PLAN_VERSION,
};
pub use self::profile::{ColumnProfile, RejectSample};
pub use self::progress::Observer;
pub use self::rollback::{
    rollback, ConflictPolicy, Pass, RollbackOptions, RollbackReport, RowAction, RowChange,
    TableRollback,
};
pub use self::run::{plan_for_run, run, RunOptions, RunReport, TableRunReport};
pub use self::source::{ReadKey, SourceIdentity};
pub use self::status::{status, StatusReport, TableStatus};
pub use self::verify::{plan_for, verify, Difference, TableVerify, VerifyOptions, VerifyReport};
pub use self::watch::{watch, FoundBy, WatchEvent, WatchOptions, WatchSummary, GAP_GRACE};
/// How `migrate rollback` switched routes to legacy (from `ficus-state`).
pub use ficus_state::RouteSwitch;
