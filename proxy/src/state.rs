//! Durable rollout state and audit log in SQLite.
//!
//! Table `rollout` holds an operator's run-time percentage per route (set through the admin API
//! or CLI) together with the configuration percentage in force when it was set; table `audit`
//! holds one row per change (time, route, from, to, actor, action). Every change is committed
//! (WAL, `synchronous = FULL`) before it is applied to traffic, so what the proxy routes by is
//! always on disk first and survives `kill -9`.
//!
//! A row in `rollout` means "an operator chose this"; no row means "the configuration decides".
//! See `ARCHITECTURE.md` in this crate for why run-time values win over a reloaded file.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
#[error("rollout state {path}: {source}")]
pub struct StateError {
    /// The database file.
    pub path: PathBuf,
    /// The SQLite error.
    pub source: rusqlite::Error,
}

/// An operator's run-time rollout value for one route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Override {
    /// Route name.
    pub route: String,
    /// The percentage chosen, in basis points.
    pub percent_bp: u32,
    /// The configuration's percentage (basis points) when the operator chose it.
    pub config_bp: u32,
    /// Who chose it.
    pub actor: String,
    /// When (RFC 3339, UTC).
    pub updated_at: String,
}

/// One audit row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Row id, increasing.
    pub id: i64,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// Route name.
    pub route: String,
    /// Percentage before, in basis points.
    pub from_bp: u32,
    /// Percentage after, in basis points.
    pub to_bp: u32,
    /// Who.
    pub actor: String,
    /// `set`, `rollback`, `reset` (back to the file's value) or `config` (the file changed).
    pub action: String,
}

/// One change to record: route, from, to (basis points) and, for `set`/`rollback`, the override.
pub(crate) struct Change<'a> {
    pub route: &'a str,
    pub from_bp: u32,
    pub to_bp: u32,
    /// `Some(config_bp)` stores an override; `None` removes it.
    pub keep_override: Option<u32>,
}

/// The SQLite state store.
pub struct StateStore {
    conn: Connection,
    path: PathBuf,
}

/// Current UTC time as RFC 3339.
pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

impl StateStore {
    /// Opens (creating if needed) the store; `:memory:` keeps state in memory only.
    pub fn open(path: &Path) -> Result<StateStore, StateError> {
        let err = |source| StateError {
            path: path.to_path_buf(),
            source,
        };
        let conn = if path.as_os_str() == ":memory:" {
            Connection::open_in_memory()
        } else {
            Connection::open(path)
        }
        .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS rollout (
                 route      TEXT PRIMARY KEY,
                 percent_bp INTEGER NOT NULL,
                 config_bp  INTEGER NOT NULL,
                 actor      TEXT NOT NULL,
                 updated_at TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS audit (
                 id      INTEGER PRIMARY KEY AUTOINCREMENT,
                 at      TEXT NOT NULL,
                 route   TEXT NOT NULL,
                 from_bp INTEGER NOT NULL,
                 to_bp   INTEGER NOT NULL,
                 actor   TEXT NOT NULL,
                 action  TEXT NOT NULL
             );",
        )
        .map_err(err)?;
        Ok(StateStore {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, source: rusqlite::Error) -> StateError {
        StateError {
            path: self.path.clone(),
            source,
        }
    }

    /// The override of one route, if an operator set one.
    pub fn get(&self, route: &str) -> Result<Option<Override>, StateError> {
        self.conn
            .query_row(
                "SELECT route, percent_bp, config_bp, actor, updated_at FROM rollout WHERE route = ?1",
                params![route],
                row_override,
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Every stored override.
    pub fn all(&self) -> Result<Vec<Override>, StateError> {
        let mut st = self
            .conn
            .prepare("SELECT route, percent_bp, config_bp, actor, updated_at FROM rollout ORDER BY route")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], row_override)
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// Records changes and their audit rows in one transaction: all or nothing.
    pub(crate) fn record(
        &mut self,
        changes: &[Change<'_>],
        actor: &str,
        action: &str,
    ) -> Result<(), StateError> {
        let now = now_rfc3339();
        let tx = self.conn.transaction().map_err(|e| StateError {
            path: self.path.clone(),
            source: e,
        })?;
        let res: Result<(), rusqlite::Error> = (|| {
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
                    "INSERT INTO audit (at, route, from_bp, to_bp, actor, action) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![now, c.route, c.from_bp, c.to_bp, actor, action],
                )?;
            }
            Ok(())
        })();
        let path = &self.path;
        let err = |source| StateError {
            path: path.clone(),
            source,
        };
        match res {
            Ok(()) => tx.commit().map_err(err),
            Err(e) => {
                drop(tx);
                Err(err(e))
            }
        }
    }

    /// The most recent audit rows, newest first.
    pub fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StateError> {
        let mut st = self
            .conn
            .prepare("SELECT id, at, route, from_bp, to_bp, actor, action FROM audit ORDER BY id DESC LIMIT ?1")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map(params![limit as i64], |r| {
                Ok(AuditEntry {
                    id: r.get(0)?,
                    at: r.get(1)?,
                    route: r.get(2)?,
                    from_bp: r.get(3)?,
                    to_bp: r.get(4)?,
                    actor: r.get(5)?,
                    action: r.get(6)?,
                })
            })
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_and_reopen() {
        let dir = std::env::temp_dir().join(format!("ficus-state-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("s.db");
        let _ = std::fs::remove_file(&p);
        {
            let mut s = StateStore::open(&p).unwrap();
            s.record(
                &[Change {
                    route: "r",
                    from_bp: 0,
                    to_bp: 2500,
                    keep_override: Some(0),
                }],
                "alice",
                "set",
            )
            .unwrap();
        }
        let mut s = StateStore::open(&p).unwrap();
        let o = s.get("r").unwrap().unwrap();
        assert_eq!(
            (o.percent_bp, o.config_bp, o.actor.as_str()),
            (2500, 0, "alice")
        );
        s.record(
            &[Change {
                route: "r",
                from_bp: 2500,
                to_bp: 0,
                keep_override: None,
            }],
            "bob",
            "reset",
        )
        .unwrap();
        assert!(s.get("r").unwrap().is_none());
        let a = s.audit(10).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].action, "reset");
        assert_eq!(a[1].to_bp, 2500);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
