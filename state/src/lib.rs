//! ficus-state: the proxy's state store, which the proxy, the migrator and the demo all read or
//! write — defined once, here.
//!
//! The store is a SQLite file (one proxy) or a PostgreSQL database (replicas sharing one state,
//! tables in schema `ficus_proxy`). It holds:
//! - `rollout`: an operator's run-time percentage per route, and `audit`: one row per change
//!   ([`RolloutStore`]; on PostgreSQL every change also sends `NOTIFY`, and a follower keeps a
//!   `LISTEN` connection so replicas apply each other's changes); `plan`: a route's step plan
//!   (state and version, written compare-and-set with its changes and audit row:
//!   [`RolloutStore::write_plan`]);
//! - `dual_writes`: the key and both statuses of every write on a dual-write route, appended
//!   off the hot path by [`DualWriteLog`] and read back by `migrate watch` through
//!   [`DualWriteReader`].
//!
//! # Layout
//! - [`url`]: `postgres://` detection and password redaction for logs (ficus-pg's, re-exported);
//! - `location`: [`StateLocation`] — which store, from `state` / `state_env`;
//! - [`schema`]: every table of both engines and the advisory lock that guards their creation;
//! - [`pg`]: the store's endpoint and connect, over ficus-pg (TLS, `sslmode`, certificates);
//! - `rollout`: [`RolloutStore`] over `sqlite` / `postgres` backends, and `follow` (the
//!   `LISTEN` connection that signals changes);
//! - `dual_writes`: the record type, the writer thread ([`DualWriteLog`]) and the reader;
//! - `switch`: [`RouteSwitch`] / [`ToLegacy`] — the outcome and the interface of "send every
//!   route to legacy", which the migrator asks for and the proxy crate implements;
//! - `traffic`: [`TrafficControl`] — hold, watch, move and release routes, for a cut-over;
//!   implemented by the proxy crate over its admin API;
//! - `error`: [`StateError`].
//!
//! Architecture invariant: nothing outside this crate writes SQL against these tables.
#![forbid(unsafe_code)]

mod dual_writes;
mod error;
mod location;
pub mod pg;
mod rollout;
pub mod schema;
mod switch;
mod traffic;
/// `postgres://` detection and password redaction (owned by ficus-pg).
pub use ficus_pg::url;

pub use self::dual_writes::{
    DualWriteEntry, DualWriteLog, DualWriteReader, DualWriteRecord, DualWriteSummary, LogCounters,
};
pub use self::error::StateError;
pub use self::location::StateLocation;
pub use self::rollout::{AuditEntry, Change, Override, PlanRow, PlanWrite, RolloutStore};
pub use self::switch::{RouteSwitch, ToLegacy};
pub use self::traffic::{Fut as TrafficFuture, RouteState, TrafficControl};
