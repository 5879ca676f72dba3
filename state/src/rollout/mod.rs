//! The rollout store: an operator's run-time percentage per route and the audit log, in
//! SQLite (one proxy) or PostgreSQL (replicas sharing one state, with change notifications).
//!
//! A row in `rollout` means "an operator chose this"; no row means "the configuration
//! decides". Every change is committed (SQLite: WAL, `synchronous = FULL`) before the caller
//! applies it to traffic, so what the proxy routes by is always on disk first and survives
//! `kill -9`.

mod follow;
mod postgres;
mod sqlite;
mod types;

use std::sync::Arc;

use tokio::sync::Notify;

use self::postgres::PgRollout;
use self::sqlite::SqliteRollout;
pub use self::types::{AuditEntry, Change, Override, PlanRow, PlanWrite};
use crate::{StateError, StateLocation};

/// The rollout store: one of the two engines.
pub enum RolloutStore {
    /// One proxy (or several processes sharing one file on one host).
    Sqlite(SqliteRollout),
    /// Several replicas on one PostgreSQL database, with change notifications.
    Postgres(PgRollout),
}

impl std::fmt::Debug for RolloutStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RolloutStore({})", self.kind())
    }
}

impl RolloutStore {
    /// Opens the store at `location`, creating its tables if absent. `application_name` is
    /// what PostgreSQL shows for its connections (e.g. `ficus-proxy`).
    pub fn open(
        location: &StateLocation,
        application_name: &str,
    ) -> Result<RolloutStore, StateError> {
        match location {
            StateLocation::Sqlite(p) => SqliteRollout::open(p).map(RolloutStore::Sqlite),
            StateLocation::Postgres(url) => {
                PgRollout::connect(url, application_name).map(RolloutStore::Postgres)
            }
        }
    }

    /// `sqlite` or `postgres`.
    pub fn kind(&self) -> &'static str {
        match self {
            RolloutStore::Sqlite(_) => "sqlite",
            RolloutStore::Postgres(_) => "postgres",
        }
    }

    /// Signalled when another process may have changed the state (a notification arrived, or
    /// the notification connection was re-established and some may have been missed). `None`
    /// for SQLite, whose changes come from this process (or are picked up on restart/reload).
    pub fn changes(&self) -> Option<Arc<Notify>> {
        match self {
            RolloutStore::Sqlite(_) => None,
            RolloutStore::Postgres(p) => Some(p.changes()),
        }
    }

    /// The override of one route, if an operator set one.
    pub fn get(&self, route: &str) -> Result<Option<Override>, StateError> {
        match self {
            RolloutStore::Sqlite(s) => s.get(route),
            RolloutStore::Postgres(p) => p.get(route),
        }
    }

    /// Every stored override, by route.
    pub fn all(&self) -> Result<Vec<Override>, StateError> {
        match self {
            RolloutStore::Sqlite(s) => s.all(),
            RolloutStore::Postgres(p) => p.all(),
        }
    }

    /// Records changes and their audit rows in one transaction: all or nothing. On
    /// PostgreSQL the same transaction notifies every replica.
    pub fn record(
        &mut self,
        changes: &[Change],
        actor: &str,
        action: &str,
    ) -> Result<(), StateError> {
        match self {
            RolloutStore::Sqlite(s) => s.record(changes, actor, action),
            RolloutStore::Postgres(p) => p.record(changes, actor, action),
        }
    }

    /// Records an audit row for an event that does not change the route's percentage (a
    /// write hold placed, released or expired): `from_bp` and `to_bp` are both `bp`, the
    /// override (if any) stays as it is, and no replica is notified (nothing to re-read).
    pub fn note(
        &mut self,
        route: &str,
        bp: u32,
        actor: &str,
        action: &str,
    ) -> Result<(), StateError> {
        match self {
            RolloutStore::Sqlite(s) => s.note(route, bp, actor, action),
            RolloutStore::Postgres(p) => p.note(route, bp, actor, action),
        }
    }

    /// The most recent audit rows, newest first.
    pub fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StateError> {
        match self {
            RolloutStore::Sqlite(s) => s.audit(limit),
            RolloutStore::Postgres(p) => p.audit(limit),
        }
    }

    /// Every stored step plan, by route.
    pub fn plans(&self) -> Result<Vec<PlanRow>, StateError> {
        match self {
            RolloutStore::Sqlite(s) => s.plans(),
            RolloutStore::Postgres(p) => p.plans(),
        }
    }

    /// Writes a step plan's new state with its rollout changes and audit row, in one
    /// transaction (on PostgreSQL notifying every replica); `Ok(false)`, with nothing written,
    /// when the stored version is no longer `w.expected_version` (another replica moved the
    /// plan first: re-read and judge again).
    pub fn write_plan(&mut self, w: &PlanWrite) -> Result<bool, StateError> {
        match self {
            RolloutStore::Sqlite(s) => s.write_plan(w),
            RolloutStore::Postgres(p) => p.write_plan(w),
        }
    }

    /// Every route the store has heard of: with an override, in the audit log, or in the
    /// dual-write log; sorted.
    pub fn known_routes(&self) -> Result<Vec<String>, StateError> {
        match self {
            RolloutStore::Sqlite(s) => s.known_routes(),
            RolloutStore::Postgres(p) => p.known_routes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(route: &str, from_bp: u32, to_bp: u32, keep: Option<u32>) -> Change {
        Change {
            route: route.into(),
            from_bp,
            to_bp,
            keep_override: keep,
        }
    }

    #[test]
    fn record_and_reopen() {
        let dir = testkit::temp_dir("state");
        let loc = StateLocation::Sqlite(dir.path().join("s.db"));
        {
            let mut s = RolloutStore::open(&loc, "test").unwrap();
            s.record(&[change("r", 0, 2500, Some(0))], "alice", "set")
                .unwrap();
        }
        let mut s = RolloutStore::open(&loc, "test").unwrap();
        let o = s.get("r").unwrap().unwrap();
        assert_eq!(
            (o.percent_bp, o.config_bp, o.actor.as_str()),
            (2500, 0, "alice")
        );
        s.record(&[change("r", 2500, 0, None)], "bob", "reset")
            .unwrap();
        assert!(s.get("r").unwrap().is_none());
        let a = s.audit(10).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].action, "reset");
        assert_eq!(a[1].to_bp, 2500);
        assert_eq!(s.known_routes().unwrap(), vec!["r".to_string()]);
        // A note leaves the override alone and adds one row.
        s.record(&[change("r", 0, 4000, Some(0))], "carol", "set")
            .unwrap();
        s.note("r", 4000, "cutover", "hold").unwrap();
        assert_eq!(s.get("r").unwrap().unwrap().percent_bp, 4000);
        let a = s.audit(1).unwrap();
        assert_eq!(
            (
                a[0].from_bp,
                a[0].to_bp,
                a[0].actor.as_str(),
                a[0].action.as_str()
            ),
            (4000, 4000, "cutover", "hold")
        );
    }

    fn plan_write(version: i64, state: &str, changes: Vec<Change>) -> PlanWrite {
        PlanWrite {
            route: "r".into(),
            expected_version: version,
            state: state.into(),
            changes,
            note_bp: 100,
            actor: "plan".into(),
            action: "plan-promote".into(),
            detail: Some("{\"requests\":600}".into()),
        }
    }

    /// The plan's compare-and-set: a write naming a stale version changes nothing; a step's
    /// percentage change and its audit row (with the evidence) go with the plan's state.
    fn plan_cas(s: &mut RolloutStore) {
        assert!(s.write_plan(&plan_write(0, "a", vec![])).unwrap());
        assert!(!s.write_plan(&plan_write(0, "b", vec![])).unwrap(), "stale");
        let step = vec![change("r", 100, 1000, Some(0))];
        assert!(s.write_plan(&plan_write(1, "c", step.clone())).unwrap());
        assert!(!s.write_plan(&plan_write(1, "d", step)).unwrap(), "stale");
        let p = s.plans().unwrap();
        assert_eq!((p[0].state.as_str(), p[0].version), ("c", 2));
        assert_eq!(s.get("r").unwrap().unwrap().percent_bp, 1000);
        let a = s.audit(2).unwrap();
        assert_eq!(
            (a[0].from_bp, a[0].to_bp, a[0].action.as_str()),
            (100, 1000, "plan-promote")
        );
        assert_eq!(a[0].detail.as_deref(), Some("{\"requests\":600}"));
        assert_eq!((a[1].from_bp, a[1].to_bp), (100, 100), "a note at note_bp");
    }

    #[test]
    fn sqlite_plan_writes_are_compare_and_set() {
        let dir = testkit::temp_dir("state");
        let mut s =
            RolloutStore::open(&StateLocation::Sqlite(dir.path().join("s.db")), "t").unwrap();
        plan_cas(&mut s);
    }

    #[test]
    fn postgres_plan_writes_are_compare_and_set() {
        let db = testkit::pg::fresh_database("state").unwrap();
        let mut s = RolloutStore::open(&StateLocation::parse(&db.url), "t").unwrap();
        plan_cas(&mut s);
    }

    #[test]
    fn postgres_store_records_and_notifies() {
        let db = testkit::pg::fresh_database("state").unwrap();
        let loc = StateLocation::parse(&db.url);
        let mut a = RolloutStore::open(&loc, "test-a").unwrap();
        let b = RolloutStore::open(&loc, "test-b").unwrap();
        let changed = b.changes().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // The follower signals once when it starts listening; wait for that first.
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(10), changed.notified())
                .await
                .unwrap()
        });
        a.record(&[change("tasks", 0, 5000, Some(0))], "alice", "set")
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(10), changed.notified())
                .await
                .expect("the other store was notified of the change")
        });
        assert_eq!(b.get("tasks").unwrap().unwrap().percent_bp, 5000);
        assert_eq!(b.audit(5).unwrap()[0].actor, "alice");
        assert_eq!(b.known_routes().unwrap(), vec!["tasks".to_string()]);
        a.note("tasks", 5000, "cutover", "release").unwrap();
        let last = &b.audit(1).unwrap()[0];
        assert_eq!((last.to_bp, last.action.as_str()), (5000, "release"));
        assert_eq!(b.get("tasks").unwrap().unwrap().actor, "alice");
    }
}
