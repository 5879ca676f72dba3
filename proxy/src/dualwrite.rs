//! The dual-write log: on routes with `dual_write = true`, every write (a method other than
//! GET, HEAD and OPTIONS) is recorded in the proxy's SQLite state store, table `dual_writes`
//! ([`DUAL_WRITES_DDL`]), once both sides answered or failed: when it was stamped, the route,
//! the row key (the route's `key` setting), the method, which side was primary and each side's
//! status. `ficus migrate watch` reads the table to re-verify recently written keys.
//!
//! A write that succeeded on one side only is flagged at once: `divergent = 1`, a warning in
//! the log and `ficus_dual_write_divergent_total{route}`.
//!
//! # Architecture invariant: SQLite stays off the hot path
//! Rows go through a bounded channel ([`QUEUE`]) to a writer thread with its own connection,
//! which commits them in batches. A full channel drops the row and counts it
//! (`ficus_dual_write_records_total{result="dropped"}`); nothing waits.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use prometheus::IntCounter;
use rusqlite::{params, Connection};

use crate::split::Side;

/// The table `ficus migrate watch` reads, exactly as `ficus_migrator::watch::DUAL_WRITES_DDL`
/// creates it (both sides create it if absent; the workspace test
/// `tests/dual_writes_contract.rs` keeps the two texts equal). Columns: `at` is UTC
/// `%Y-%m-%dT%H:%M:%S.%6fZ` (the `X-Ficus-Request-Time` sent to both sides); `primary_side`
/// is `legacy` or `new`; a status is NULL when that side was not sent the request or the
/// exchange failed; `divergent` is 1 when exactly one side returned 2xx.
pub const DUAL_WRITES_DDL: &str = "CREATE TABLE IF NOT EXISTS dual_writes (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at TEXT NOT NULL,
  route TEXT NOT NULL,
  key TEXT NOT NULL,
  method TEXT NOT NULL,
  primary_side TEXT NOT NULL,
  legacy_status INTEGER,
  new_status INTEGER,
  divergent INTEGER NOT NULL
)";

/// Rows waiting for the writer thread; past it rows are dropped and counted.
pub(crate) const QUEUE: usize = 8192;
/// Rows committed per transaction at most.
const BATCH: usize = 512;

/// Errors of the dual-write log.
#[derive(Debug, thiserror::Error)]
pub enum DualWriteError {
    /// The state store could not be opened or the table created.
    #[error("dual-write log {path}: {source}")]
    Sqlite {
        /// The state store file.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// The writer thread could not be started.
    #[error("dual-write log: cannot start the writer thread: {0}")]
    Start(std::io::Error),
}

/// One recorded write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    pub at: String,
    pub route: Arc<str>,
    pub key: String,
    pub method: Method,
    pub primary: Side,
    pub legacy_status: Option<u16>,
    pub new_status: Option<u16>,
}

impl Row {
    /// Exactly one side returned 2xx.
    pub fn divergent(&self) -> bool {
        let ok = |s: Option<u16>| s.is_some_and(|s| (200..300).contains(&s));
        ok(self.legacy_status) != ok(self.new_status)
    }
}

enum Msg {
    Row(Row),
    Flush(mpsc::Sender<()>),
}

/// Outcome counters of the log (`ficus_dual_write_records_total{result}`).
#[derive(Clone)]
pub(crate) struct LogCounters {
    pub written: IntCounter,
    pub dropped: IntCounter,
    pub failed: IntCounter,
}

/// The writer thread's handle. Dropping it ends the thread once it has written what it
/// holds; [`DualWriteLog::flush_blocking`] waits for that.
pub(crate) struct DualWriteLog {
    tx: SyncSender<Msg>,
    counters: LogCounters,
}

impl DualWriteLog {
    /// Opens the state store at `path` (`:memory:`: a private in-memory database, kept only
    /// for the process's life), creates `dual_writes` if absent and starts the writer.
    pub fn open(path: &Path, counters: LogCounters) -> Result<DualWriteLog, DualWriteError> {
        let err = |source| DualWriteError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = if path.as_os_str() == ":memory:" {
            Connection::open_in_memory()
        } else {
            Connection::open(path)
        }
        .map_err(err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        // WAL like the rest of the state store: the control plane's connection and this one
        // do not block each other's readers. NORMAL: a row lost to a power cut is a key the
        // watch's periodic sweep still covers.
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
            .map_err(err)?;
        conn.execute_batch(DUAL_WRITES_DDL).map_err(err)?;
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let path_buf = path.to_path_buf();
        let c = counters.clone();
        std::thread::Builder::new()
            .name("ficus-dual-writes".into())
            .spawn(move || writer(conn, rx, &path_buf, &c))
            .map_err(DualWriteError::Start)?;
        Ok(DualWriteLog { tx, counters })
    }

    /// Queues a row; never blocks (a full queue drops it, counted).
    pub fn record(&self, row: Row) {
        match self.tx.try_send(Msg::Row(row)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counters.dropped.inc();
            }
        }
    }

    /// Waits (blocking, up to `limit`) until every row queued so far is committed.
    pub fn flush_blocking(&self, limit: Duration) -> bool {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(Msg::Flush(tx)).is_err() {
            return false;
        }
        rx.recv_timeout(limit).is_ok()
    }
}

fn writer(mut conn: Connection, rx: Receiver<Msg>, path: &Path, c: &LogCounters) {
    let mut rows: Vec<Row> = Vec::with_capacity(BATCH);
    let mut flushes: Vec<mpsc::Sender<()>> = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Row(r) => rows.push(r),
                Msg::Flush(f) => flushes.push(f),
            }
            if rows.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !rows.is_empty() {
            let n = rows.len() as u64;
            match insert(&mut conn, &rows) {
                Ok(()) => c.written.inc_by(n),
                Err(e) => {
                    c.failed.inc_by(n);
                    tracing::error!(path = %path.display(), error = %e, rows = n,
                        "dual-write log: cannot record writes");
                }
            }
            rows.clear();
        }
        for f in flushes.drain(..) {
            let _ = f.send(());
        }
    }
}

fn insert(conn: &mut Connection, rows: &[Row]) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction()?;
    {
        let mut st = tx.prepare_cached(
            "INSERT INTO dual_writes (at, route, key, method, primary_side, legacy_status, new_status, divergent)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for r in rows {
            st.execute(params![
                r.at,
                &*r.route,
                r.key,
                r.method.as_str(),
                r.primary.as_str(),
                r.legacy_status,
                r.new_status,
                i64::from(r.divergent()),
            ])?;
        }
    }
    tx.commit()
}

/// What a dual-write route needs to record its writes.
pub(crate) struct DualRoute {
    pub log: Arc<DualWriteLog>,
    pub divergent: IntCounter,
}

/// A write in flight on a dual-write route. The primary's status is filled in when its head
/// arrives, the mirror's when shadow mode reports; dropped unfinished (not mirrored, aborted)
/// it is recorded with what is known, so every write leaves exactly one row.
pub(crate) struct PendingWrite {
    pub log: Arc<DualWriteLog>,
    pub divergent: IntCounter,
    pub row: Row,
    done: bool,
}

impl PendingWrite {
    pub fn new(route: &DualRoute, row: Row) -> PendingWrite {
        PendingWrite {
            log: route.log.clone(),
            divergent: route.divergent.clone(),
            row,
            done: false,
        }
    }

    /// Sets the status `side` answered with.
    pub fn set_status(&mut self, side: Side, status: Option<u16>) {
        match side {
            Side::Legacy => self.row.legacy_status = status,
            Side::New => self.row.new_status = status,
        }
    }

    /// Records the row now (with the mirror's status, if it was sent and answered).
    pub fn finish(mut self, mirror_status: Option<u16>) {
        let mirror = match self.row.primary {
            Side::Legacy => Side::New,
            Side::New => Side::Legacy,
        };
        self.set_status(mirror, mirror_status);
        self.record();
    }

    fn record(&mut self) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let row = self.row.clone();
        if row.divergent() {
            self.divergent.inc();
            tracing::warn!(route = %row.route, key = %row.key, method = %row.method,
                primary = row.primary.as_str(), legacy_status = ?row.legacy_status,
                new_status = ?row.new_status, at = %row.at,
                "dual write succeeded on one side only");
        }
        self.log.record(row);
    }
}

impl Drop for PendingWrite {
    fn drop(&mut self) {
        self.record();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters() -> LogCounters {
        let c = |n: &str| IntCounter::new(n, "x").unwrap();
        LogCounters {
            written: c("w"),
            dropped: c("d"),
            failed: c("f"),
        }
    }

    fn row(legacy: Option<u16>, new: Option<u16>) -> Row {
        Row {
            at: "2026-01-01T10:00:00.000000Z".into(),
            route: Arc::from("tasks-write"),
            key: "TASK-101".into(),
            method: Method::POST,
            primary: Side::Legacy,
            legacy_status: legacy,
            new_status: new,
        }
    }

    #[test]
    fn divergence_is_exactly_one_side_2xx() {
        assert!(!row(Some(200), Some(201)).divergent());
        assert!(!row(Some(409), Some(409)).divergent());
        assert!(!row(None, None).divergent());
        assert!(row(Some(200), None).divergent());
        assert!(row(Some(500), Some(200)).divergent());
    }

    #[test]
    fn rows_reach_the_table_and_a_dropped_pending_write_records_itself() {
        let dir = std::env::temp_dir().join(format!("ficus-dw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("state.db");
        let _ = std::fs::remove_file(&p);
        let c = counters();
        let log = Arc::new(DualWriteLog::open(&p, c.clone()).unwrap());
        let route = DualRoute {
            log: log.clone(),
            divergent: IntCounter::new("dv", "x").unwrap(),
        };
        let mut w = PendingWrite::new(&route, row(None, None));
        w.set_status(Side::Legacy, Some(200));
        w.finish(Some(200));
        let mut w = PendingWrite::new(&route, row(None, None));
        w.set_status(Side::Legacy, Some(201));
        drop(w); // never mirrored
        assert!(log.flush_blocking(Duration::from_secs(5)));
        assert_eq!(c.written.get(), 2);
        assert_eq!(route.divergent.get(), 1);
        let conn = Connection::open(&p).unwrap();
        let got: Vec<(Option<i64>, Option<i64>, i64)> = conn
            .prepare("SELECT legacy_status, new_status, divergent FROM dual_writes ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got, vec![(Some(200), Some(200), 0), (Some(201), None, 1)]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
