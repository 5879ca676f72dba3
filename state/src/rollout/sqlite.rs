//! The rollout store in a SQLite file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::types::{AuditEntry, Change, Override, PlanRow, PlanWrite};
use crate::StateError;

/// The SQLite rollout store.
pub struct SqliteRollout {
    conn: Connection,
    path: PathBuf,
}

impl SqliteRollout {
    /// Opens (creating if needed) the store; `:memory:` keeps state in memory only.
    pub(super) fn open(path: &Path) -> Result<SqliteRollout, StateError> {
        let err = StateError::sqlite(path, "open");
        let conn = if path.as_os_str() == ":memory:" {
            Connection::open_in_memory()
        } else {
            Connection::open(path)
        }
        .map_err(&err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(&err)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
            .map_err(&err)?;
        crate::schema::create_sqlite(&conn).map_err(StateError::sqlite(path, "create tables"))?;
        Ok(SqliteRollout {
            conn,
            path: path.to_path_buf(),
        })
    }

    pub(super) fn get(&self, route: &str) -> Result<Option<Override>, StateError> {
        self.conn
            .query_row(
                "SELECT route, percent_bp, config_bp, actor, updated_at FROM rollout WHERE route = ?1",
                params![route],
                row_override,
            )
            .optional()
            .map_err(StateError::sqlite(&self.path, "read rollout"))
    }

    pub(super) fn all(&self) -> Result<Vec<Override>, StateError> {
        let err = StateError::sqlite(&self.path, "read rollout");
        let mut st = self
            .conn
            .prepare("SELECT route, percent_bp, config_bp, actor, updated_at FROM rollout ORDER BY route")
            .map_err(&err)?;
        let rows = st.query_map([], row_override).map_err(&err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(err)
    }

    pub(super) fn record(
        &mut self,
        changes: &[Change],
        actor: &str,
        action: &str,
    ) -> Result<(), StateError> {
        let now = ficus_core::stamp::rfc3339(time::OffsetDateTime::now_utc());
        let err = StateError::sqlite(&self.path, "record rollout change");
        let tx = self.conn.transaction().map_err(&err)?;
        write_changes(&tx, changes, actor, action, None, &now).map_err(&err)?;
        tx.commit().map_err(err)
    }

    pub(super) fn plans(&self) -> Result<Vec<PlanRow>, StateError> {
        let err = StateError::sqlite(&self.path, "read plan");
        let mut st = self
            .conn
            .prepare("SELECT route, state, version FROM plan ORDER BY route")
            .map_err(&err)?;
        let rows = st
            .query_map([], |r| {
                Ok(PlanRow {
                    route: r.get(0)?,
                    state: r.get(1)?,
                    version: r.get(2)?,
                })
            })
            .map_err(&err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(err)
    }

    pub(super) fn write_plan(&mut self, w: &PlanWrite) -> Result<bool, StateError> {
        let now = ficus_core::stamp::rfc3339(time::OffsetDateTime::now_utc());
        let err = StateError::sqlite(&self.path, "record plan step");
        let tx = self.conn.transaction().map_err(&err)?;
        let stored: i64 = tx
            .query_row(
                "SELECT version FROM plan WHERE route = ?1",
                params![w.route],
                |r| r.get(0),
            )
            .optional()
            .map_err(&err)?
            .unwrap_or(0);
        if stored != w.expected_version {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO plan (route, state, version, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(route) DO UPDATE SET state = ?2, version = ?3, updated_at = ?4",
            params![w.route, w.state, stored + 1, now],
        )
        .map_err(&err)?;
        if w.changes.is_empty() {
            tx.execute(
                "INSERT INTO audit (at, route, from_bp, to_bp, actor, action, detail)
                 VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6)",
                params![now, w.route, w.note_bp, w.actor, w.action, w.detail],
            )
            .map_err(&err)?;
        } else {
            write_changes(
                &tx,
                &w.changes,
                &w.actor,
                &w.action,
                w.detail.as_deref(),
                &now,
            )
            .map_err(&err)?;
        }
        tx.commit().map_err(err)?;
        Ok(true)
    }

    pub(super) fn note(
        &mut self,
        route: &str,
        bp: u32,
        actor: &str,
        action: &str,
    ) -> Result<(), StateError> {
        let now = ficus_core::stamp::rfc3339(time::OffsetDateTime::now_utc());
        self.conn
            .execute(
                "INSERT INTO audit (at, route, from_bp, to_bp, actor, action) VALUES (?1, ?2, ?3, ?3, ?4, ?5)",
                params![now, route, bp, actor, action],
            )
            .map(drop)
            .map_err(StateError::sqlite(&self.path, "record audit row"))
    }

    pub(super) fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StateError> {
        let err = StateError::sqlite(&self.path, "read audit");
        let mut st = self
            .conn
            .prepare("SELECT id, at, route, from_bp, to_bp, actor, action, detail FROM audit ORDER BY id DESC LIMIT ?1")
            .map_err(&err)?;
        let rows = st
            .query_map(params![i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                Ok(AuditEntry {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    route: r.get(2)?,
                    from_bp: r.get(3)?,
                    to_bp: r.get(4)?,
                    actor: r.get(5)?,
                    action: r.get(6)?,
                    detail: r.get(7)?,
                })
            })
            .map_err(&err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(err)
    }

    pub(super) fn known_routes(&self) -> Result<Vec<String>, StateError> {
        let err = StateError::sqlite(&self.path, "list routes");
        let mut st = self
            .conn
            .prepare(
                "SELECT route FROM rollout UNION SELECT route FROM audit
                 UNION SELECT route FROM dual_writes ORDER BY 1",
            )
            .map_err(&err)?;
        let rows = st.query_map([], |r| r.get(0)).map_err(&err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(err)
    }
}

/// The rollout rows and audit rows of `changes`, in `tx`.
fn write_changes(
    tx: &rusqlite::Transaction<'_>,
    changes: &[Change],
    actor: &str,
    action: &str,
    detail: Option<&str>,
    now: &str,
) -> rusqlite::Result<()> {
    for c in changes {
        match c.keep_override {
            Some(config_bp) => {
                tx.execute(
                    "INSERT INTO rollout (route, percent_bp, config_bp, actor, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(route) DO UPDATE SET percent_bp = ?2, config_bp = ?3,
                         actor = ?4, updated_at = ?5",
                    params![c.route, c.to_bp, config_bp, actor, now],
                )?;
            }
            None => {
                tx.execute("DELETE FROM rollout WHERE route = ?1", params![c.route])?;
            }
        }
        tx.execute(
            "INSERT INTO audit (at, route, from_bp, to_bp, actor, action, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![now, c.route, c.from_bp, c.to_bp, actor, action, detail],
        )?;
    }
    Ok(())
}

fn row_override(r: &rusqlite::Row<'_>) -> rusqlite::Result<Override> {
    Ok(Override {
        route: r.get(0)?,
        percent_bp: r.get(1)?,
        config_bp: r.get(2)?,
        actor: r.get(3)?,
        updated_at: r.get(4)?,
    })
}
