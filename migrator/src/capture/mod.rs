//! Change capture on the SQLite source: a change-log table filled by AFTER INSERT / UPDATE /
//! DELETE triggers on every table the plan migrates, so writes that never pass through the
//! proxy (cron jobs, admin scripts, the app's own migrations) are seen too.
//!
//! # What is installed
//! - `_ficus_changes`: one row per changed row — the table, the operation (`I`, `U`, `D`) and
//!   the row's key as SQL literals (`quote()` of each primary key column, comma separated: the
//!   key of the row after an INSERT/UPDATE, before a DELETE; `old_k` as well when an UPDATE
//!   changed the key). Tables without a primary key record no key: the follower re-copies such
//!   a table whole when it changed. `at` is SQLite's `julianday('now')`, for lag in seconds.
//!   Ids only grow: the log is trimmed below the applied position, never emptied (no
//!   AUTOINCREMENT, so no `sqlite_sequence` is created in the app's file).
//! - `_ficus_capture`: what was installed, when, and the capture's epoch (a random id; a
//!   follower checkpoint from another epoch no longer describes this log).
//! - Triggers `_ficus_cap_{i,u,d}_<table>`.
//!
//! Everything is created in one `BEGIN IMMEDIATE` transaction that waits for the app's locks
//! (busy timeout) rather than failing it, and removed the same way; `remove` leaves the schema
//! exactly as it was. The triggers use only `quote()`, `julianday()` and plain SQL, so any
//! SQLite the app links (Python's, an old system one) runs them. Nothing else of the app's
//! schema is touched, and the journal mode is left as the app set it.

mod ddl;
mod log;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use serde::Serialize;

pub use self::log::{Change, ChangeLog, Op, PendingStats};

pub use self::ddl::{LOG_TABLE, META_TABLE};
/// Prefix of every object capture creates (introspection and the fingerprint ignore them).
pub const PREFIX: &str = "_ficus_";
/// How long capture waits for the app's locks before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of change capture, naming the file and the object.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The source could not be opened or written.
    #[error("SQLite source {path}: {what}: {source}")]
    Sqlite {
        /// The source file.
        path: PathBuf,
        /// What was being done.
        what: String,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// An object capture would create exists and is not capture's.
    #[error("SQLite source {path}: {kind} {name} already exists and was not created by ficus capture; rename it or migrate without capture")]
    NameTaken {
        /// The source file.
        path: PathBuf,
        /// `table`, `trigger`, …
        kind: String,
        /// Its name.
        name: String,
    },
    /// Capture is installed for other tables than the plan migrates.
    #[error("SQLite source {path}: capture is installed for tables {installed:?} but the plan migrates {planned:?}; run `ficus migrate capture remove` then `install` again")]
    OtherTables {
        /// The source file.
        path: PathBuf,
        /// Tables with triggers now.
        installed: Vec<String>,
        /// Tables the plan migrates.
        planned: Vec<String>,
    },
    /// Capture is not installed.
    #[error("SQLite source {path}: change capture is not installed (run `ficus migrate capture install`)")]
    NotInstalled {
        /// The source file.
        path: PathBuf,
    },
}

impl CaptureError {
    pub(crate) fn sqlite(
        path: &Path,
        what: impl Into<String>,
    ) -> impl FnOnce(rusqlite::Error) -> CaptureError {
        let (path, what) = (path.to_path_buf(), what.into());
        move |source| CaptureError::Sqlite { path, what, source }
    }
}

/// The state of capture on a source.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct CaptureStatus {
    /// Installed at all.
    pub installed: bool,
    /// When it was installed (RFC 3339).
    pub since: Option<String>,
    /// The capture's epoch.
    pub epoch: Option<String>,
    /// Tables with triggers.
    pub tables: Vec<String>,
    /// Changes in the log (not trimmed yet).
    pub logged: u64,
    /// The highest change id.
    pub last_id: i64,
    /// Age of the oldest change in the log, seconds.
    pub oldest_age_s: Option<f64>,
}

impl CaptureStatus {
    /// Text for people.
    pub fn text(&self) -> String {
        if !self.installed {
            return "capture: not installed\n".into();
        }
        let mut s = format!(
            "capture: installed since {} (epoch {}) on {} table(s): {}\n",
            self.since.as_deref().unwrap_or("?"),
            self.epoch.as_deref().unwrap_or("?"),
            self.tables.len(),
            self.tables.join(", ")
        );
        s.push_str(&format!(
            "change log: {} change(s) held, last id {}",
            self.logged, self.last_id
        ));
        if let Some(a) = self.oldest_age_s {
            s.push_str(&format!(", oldest {a:.1} s old"));
        }
        s.push('\n');
        s
    }
}

/// What `install` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Installed {
    /// Created now.
    Created {
        /// Tables given triggers.
        tables: Vec<String>,
    },
    /// It was there already, for these tables.
    AlreadyThere {
        /// Tables with triggers.
        tables: Vec<String>,
    },
}

/// Opens the source for capture's own short writes (install, remove, trimming the log).
pub fn open_rw(path: &Path) -> Result<Connection, CaptureError> {
    if !path.is_file() {
        return Err(CaptureError::Sqlite {
            path: path.to_path_buf(),
            what: "open".into(),
            source: rusqlite::Error::InvalidPath(path.to_path_buf()),
        });
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(CaptureError::sqlite(path, "open for writing"))?;
    crate::collation::register_fallbacks(&conn)
        .map_err(CaptureError::sqlite(path, "register fallback collations"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(CaptureError::sqlite(path, "set busy timeout"))?;
    Ok(conn)
}

/// A table to capture: its name and its key columns (empty: no key — the follower re-copies
/// the table whole when it changed). `Plan::capture_tables` gives them for a plan.
pub type CapturedTable = (String, Vec<String>);

/// Installs capture on `tables` (idempotent).
pub fn install(path: &Path, tables: &[CapturedTable]) -> Result<Installed, CaptureError> {
    let mut conn = open_rw(path)?;
    let names: Vec<String> = tables.iter().map(|(t, _)| t.clone()).collect();
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(CaptureError::sqlite(
            path,
            "begin (waiting for the app's write lock)",
        ))?;
    let existing = ddl::objects(&tx).map_err(CaptureError::sqlite(path, "read the schema"))?;
    let ours = ddl::objects_for(tables);
    if let Some(meta) =
        ddl::read_meta(&tx).map_err(CaptureError::sqlite(path, "read _ficus_capture"))?
    {
        // Installed already: the same triggers for the same tables is a no-op.
        let mut installed = meta.tables.clone();
        installed.sort();
        let mut want = names.clone();
        want.sort();
        if installed != want {
            return Err(CaptureError::OtherTables {
                path: path.to_path_buf(),
                installed,
                planned: want,
            });
        }
        for (kind, name, sql) in &ours {
            match existing.iter().find(|(_, n, _)| n == name) {
                Some((_, _, have)) if ddl::same_sql(have, sql) => {}
                _ => {
                    return Err(CaptureError::NameTaken {
                        path: path.to_path_buf(),
                        kind: kind.clone(),
                        name: name.clone(),
                    })
                }
            }
        }
        return Ok(Installed::AlreadyThere {
            tables: meta.tables,
        });
    }
    for (kind, name, _) in ddl::fixed_objects().iter().chain(ours.iter()) {
        if let Some((k, _, _)) = existing
            .iter()
            .find(|(_, n, _)| n.eq_ignore_ascii_case(name))
        {
            return Err(CaptureError::NameTaken {
                path: path.to_path_buf(),
                kind: if k.is_empty() {
                    kind.clone()
                } else {
                    k.clone()
                },
                name: name.clone(),
            });
        }
    }
    for (_, name, sql) in ddl::fixed_objects().iter().chain(ours.iter()) {
        tx.execute_batch(sql)
            .map_err(CaptureError::sqlite(path, format!("create {name}")))?;
    }
    ddl::write_meta(&tx, &names).map_err(CaptureError::sqlite(path, "write _ficus_capture"))?;
    tx.commit()
        .map_err(CaptureError::sqlite(path, "commit the capture objects"))?;
    Ok(Installed::Created { tables: names })
}

/// Removes every capture object (idempotent): the app's schema is as it was before.
pub fn remove(path: &Path) -> Result<Vec<String>, CaptureError> {
    let mut conn = open_rw(path)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(CaptureError::sqlite(
            path,
            "begin (waiting for the app's write lock)",
        ))?;
    let existing = ddl::objects(&tx).map_err(CaptureError::sqlite(path, "read the schema"))?;
    let mut dropped = Vec::new();
    // Triggers first (they reference the log), then the two tables.
    for (kind, name, _) in existing.iter().filter(|(k, _, _)| k == "trigger") {
        if ddl::is_capture_trigger(name) {
            tx.execute_batch(&format!(
                "DROP TRIGGER {}",
                crate::introspect::quote_sqlite(name)
            ))
            .map_err(CaptureError::sqlite(path, format!("drop {kind} {name}")))?;
            dropped.push(name.clone());
        }
    }
    for t in [LOG_TABLE, META_TABLE] {
        if existing.iter().any(|(k, n, _)| k == "table" && n == t) {
            tx.execute_batch(&format!(
                "DROP TABLE {}",
                crate::introspect::quote_sqlite(t)
            ))
            .map_err(CaptureError::sqlite(path, format!("drop table {t}")))?;
            dropped.push(t.to_string());
        }
    }
    tx.commit()
        .map_err(CaptureError::sqlite(path, "commit the removal"))?;
    Ok(dropped)
}

/// The state of capture on the source at `path` (read-only).
pub fn status(path: &Path) -> Result<CaptureStatus, CaptureError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(CaptureError::sqlite(path, "open read-only"))?;
    status_on(&conn, path)
}

/// [`status`] on an open connection.
pub fn status_on(conn: &Connection, path: &Path) -> Result<CaptureStatus, CaptureError> {
    let Some(meta) =
        ddl::read_meta(conn).map_err(CaptureError::sqlite(path, "read _ficus_capture"))?
    else {
        return Ok(CaptureStatus {
            installed: false,
            since: None,
            epoch: None,
            tables: Vec::new(),
            logged: 0,
            last_id: 0,
            oldest_age_s: None,
        });
    };
    let (logged, last_id, oldest): (i64, i64, Option<f64>) = conn
        .query_row(
            &format!(
                "SELECT count(*), coalesce(max(id), 0), (julianday('now') - min(at)) * 86400.0 FROM {LOG_TABLE}"
            ),
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(CaptureError::sqlite(path, "read _ficus_changes"))?;
    Ok(CaptureStatus {
        installed: true,
        since: Some(meta.installed_at),
        epoch: Some(meta.epoch),
        tables: meta.tables,
        logged: u64::try_from(logged).unwrap_or(0),
        last_id,
        oldest_age_s: oldest,
    })
}

/// The epoch of the capture installed on `conn`, if any.
pub fn epoch(conn: &Connection) -> rusqlite::Result<Option<String>> {
    Ok(ddl::read_meta(conn)?.map(|m| m.epoch))
}

/// A value kept in `_ficus_capture` beside the capture's description (the reverse
/// follower's position lives there, written in the same SQLite transaction as its rows).
pub fn meta_get(conn: &Connection, name: &str) -> rusqlite::Result<Option<String>> {
    use rusqlite::OptionalExtension;
    conn.query_row(
        &format!(
            "SELECT value FROM {} WHERE name = ?1",
            crate::introspect::quote_sqlite(META_TABLE)
        ),
        [name],
        |r| r.get(0),
    )
    .optional()
}

/// Sets a value in `_ficus_capture` (inside the caller's transaction).
pub fn meta_set(conn: &Connection, name: &str, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        &format!(
            "INSERT INTO {} (name, value) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            crate::introspect::quote_sqlite(META_TABLE)
        ),
        [name, value],
    )?;
    Ok(())
}
