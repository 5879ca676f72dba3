//! Durable rollout state and audit log: SQLite (one proxy, the default) or PostgreSQL (several
//! replicas sharing one state, see [`crate::state_pg`]).
//!
//! [`StateStore`] is the one type the control plane talks to; [`StateLocation`] says which
//! backend (`state = "file.db"` / `":memory:"`, or `state = "postgres://..."`, or the URL in the
//! environment variable named by `state_env`).
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
use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use tokio::sync::Notify;

use crate::config::ProxySettings;
use crate::state_pg::PgState;

/// The SQLite state store's tables: rollout percentages and the audit log. `ficus migrate
/// rollback` writes a stopped proxy's store itself, creating them with the same text
/// (`ficus_migrator::PROXY_STATE_DDL`, kept equal by `tests/dual_writes_contract.rs`).
pub const STATE_DDL: &str = "CREATE TABLE IF NOT EXISTS rollout (
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
);";

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The SQLite store failed.
    #[error("rollout state {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// The PostgreSQL store failed.
    #[error("rollout state {target}: {what}: {source}")]
    Postgres {
        /// The server and database (password removed).
        target: String,
        /// What was being done.
        what: &'static str,
        /// The driver error.
        source: tokio_postgres::Error,
    },
    /// The PostgreSQL store did not answer in time or its thread is gone.
    #[error("rollout state {target}: {message}")]
    Unavailable {
        /// The server and database (password removed).
        target: String,
        /// What happened.
        message: String,
    },
    /// `state_env` names a variable that is unset or empty.
    #[error("proxy.state_env: environment variable {var} is not set (it should hold the state database URL)")]
    MissingEnv {
        /// The variable.
        var: String,
    },
}

/// Where rollout state lives.
#[derive(Clone, PartialEq, Eq)]
pub enum StateLocation {
    /// A SQLite file (`:memory:` keeps nothing).
    Sqlite(PathBuf),
    /// A PostgreSQL URL (`postgres://` or `postgresql://`); tables live in schema `ficus_proxy`.
    Postgres(String),
}

impl std::fmt::Debug for StateLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateLocation::Sqlite(p) => write!(f, "Sqlite({})", p.display()),
            StateLocation::Postgres(u) => write!(f, "Postgres({})", redact_url(u)),
        }
    }
}

impl StateLocation {
    /// Reads the location from the settings: the URL in the `state_env` variable when that key
    /// is set, else `state` (a `postgres://` URL or a SQLite path).
    pub fn resolve(settings: &ProxySettings) -> Result<StateLocation, StateError> {
        if let Some(var) = &settings.state_env {
            let v = std::env::var(var).unwrap_or_default();
            let v = v.trim();
            if v.is_empty() {
                return Err(StateError::MissingEnv { var: var.clone() });
            }
            return Ok(StateLocation::parse(v));
        }
        Ok(StateLocation::parse(&settings.state.to_string_lossy()))
    }

    /// `postgres://...` / `postgresql://...` is PostgreSQL; anything else a SQLite path.
    pub fn parse(s: &str) -> StateLocation {
        if is_postgres_url(s) {
            StateLocation::Postgres(s.to_string())
        } else {
            StateLocation::Sqlite(PathBuf::from(s))
        }
    }
}

/// Whether `s` is a PostgreSQL connection URL.
pub fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// The URL with any password replaced by `***`, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..auth_end].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_string()
            };
            format!("{}{}{}", &url[..scheme_end], masked, &rest[at..])
        }
        None => url.to_string(),
    }
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

/// The state store the control plane uses: one of the two backends.
pub enum StateStore {
    /// One proxy (or several processes sharing one file on one host).
    Sqlite(SqliteState),
    /// Several replicas on one PostgreSQL database, with change notifications.
    Postgres(PgState),
}

impl StateStore {
    /// Opens (creating if needed) a SQLite store; `:memory:` keeps state in memory only.
    pub fn open(path: &Path) -> Result<StateStore, StateError> {
        SqliteState::open(path).map(StateStore::Sqlite)
    }

    /// Opens the store at `location`, creating tables if absent.
    pub fn connect(location: &StateLocation) -> Result<StateStore, StateError> {
        match location {
            StateLocation::Sqlite(p) => StateStore::open(p),
            StateLocation::Postgres(url) => PgState::connect(url).map(StateStore::Postgres),
        }
    }

    /// `sqlite` or `postgres`.
    pub fn kind(&self) -> &'static str {
        match self {
            StateStore::Sqlite(_) => "sqlite",
            StateStore::Postgres(_) => "postgres",
        }
    }

    /// Signalled when another process may have changed the state (a notification arrived, or
    /// the notification connection was re-established and some may have been missed). `None`
    /// for SQLite, which only this process writes to.
    pub fn changes(&self) -> Option<Arc<Notify>> {
        match self {
            StateStore::Sqlite(_) => None,
            StateStore::Postgres(p) => Some(p.changes()),
        }
    }

    /// The override of one route, if an operator set one.
    pub fn get(&self, route: &str) -> Result<Option<Override>, StateError> {
        match self {
            StateStore::Sqlite(s) => s.get(route),
            StateStore::Postgres(p) => p.get(route),
        }
    }

    /// Every stored override.
    pub fn all(&self) -> Result<Vec<Override>, StateError> {
        match self {
            StateStore::Sqlite(s) => s.all(),
            StateStore::Postgres(p) => p.all(),
        }
    }

    /// Records changes and their audit rows in one transaction: all or nothing.
    pub(crate) fn record(
        &mut self,
        changes: &[Change<'_>],
        actor: &str,
        action: &str,
    ) -> Result<(), StateError> {
        match self {
            StateStore::Sqlite(s) => s.record(changes, actor, action),
            StateStore::Postgres(p) => p.record(changes, actor, action),
        }
    }

    /// The most recent audit rows, newest first.
    pub fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StateError> {
        match self {
            StateStore::Sqlite(s) => s.audit(limit),
            StateStore::Postgres(p) => p.audit(limit),
        }
    }
}

/// The SQLite state store.
pub struct SqliteState {
    conn: Connection,
    path: PathBuf,
}

/// Current UTC time as RFC 3339.
pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

impl SqliteState {
    /// Opens (creating if needed) the store; `:memory:` keeps state in memory only.
    pub fn open(path: &Path) -> Result<SqliteState, StateError> {
        let err = |source| StateError::Sqlite {
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
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
            .map_err(err)?;
        conn.execute_batch(STATE_DDL).map_err(err)?;
        Ok(SqliteState {
            conn,
            path: path.to_path_buf(),
        })
    }

    fn err(&self, source: rusqlite::Error) -> StateError {
        StateError::Sqlite {
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
        let tx = self.conn.transaction().map_err(|e| StateError::Sqlite {
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
        let err = |source| StateError::Sqlite {
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
    fn location_and_redaction() {
        assert_eq!(
            StateLocation::parse("postgres://u:pw@h:5432/db"),
            StateLocation::Postgres("postgres://u:pw@h:5432/db".into())
        );
        assert_eq!(
            StateLocation::parse("ficus-state.db"),
            StateLocation::Sqlite("ficus-state.db".into())
        );
        assert_eq!(
            redact_url("postgres://u:pw@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("postgresql://h/db?x=1"), "postgresql://h/db?x=1");
        assert!(
            !format!("{:?}", StateLocation::parse("postgres://u:secret@h/db")).contains("secret")
        );
    }

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
