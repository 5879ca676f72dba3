//! The dual-write log: on routes with `dual_write = true`, every write (a method other than
//! GET, HEAD and OPTIONS) is recorded in table `dual_writes` of the proxy's state store once
//! both sides answered or failed: when it was stamped, the route, the row key (the route's
//! `key` setting), the method, which side was primary and each side's status. With a SQLite
//! state store the table is [`DUAL_WRITES_DDL`] in that file; with a PostgreSQL one it is
//! `ficus_proxy.dual_writes` ([`DUAL_WRITES_PG_DDL`]) next to the rollout tables, which every
//! replica appends to (ids from one `bigserial`). `ficus migrate watch --proxy-state` reads
//! either to re-verify recently written keys.
//!
//! A write that succeeded on one side only is flagged at once: `divergent = 1`, a warning in
//! the log and `ficus_dual_write_divergent_total{route}`.
//!
//! # Architecture invariant: the state store stays off the hot path
//! Rows go through a bounded channel ([`QUEUE`]) to a writer thread with its own connection,
//! which commits them in batches (one transaction on SQLite, one multi-row `INSERT ...
//! SELECT FROM unnest(...)` on PostgreSQL — one batching loop, two sinks). A full channel
//! drops the row and counts it (`ficus_dual_write_records_total{result="dropped"}`); nothing
//! waits. A batch that cannot be written is counted (`result="failed"`) and logged; the
//! PostgreSQL sink reconnects for the next batch.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use prometheus::IntCounter;
use rusqlite::{params, Connection};
use tokio_postgres::{Client, NoTls};

use crate::split::Side;
use crate::state::StateError;
use crate::state_pg::{pg_config, SCHEMA_LOCK};

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

/// The same table in a PostgreSQL state store, schema `ficus_proxy` (the proxy creates it
/// under the state store's advisory lock, `ficus migrate watch` too; equal to
/// `ficus_migrator::watch::DUAL_WRITES_PG_DDL`, kept so by `tests/dual_writes_contract.rs`).
/// Same columns and meanings; `id` is a `bigserial`, so with several replicas ids are unique
/// but may commit out of order (the watch allows for that).
pub const DUAL_WRITES_PG_DDL: &str = "CREATE SCHEMA IF NOT EXISTS ficus_proxy;
CREATE TABLE IF NOT EXISTS ficus_proxy.dual_writes (
  id bigserial PRIMARY KEY,
  at text NOT NULL,
  route text NOT NULL,
  key text NOT NULL,
  method text NOT NULL,
  primary_side text NOT NULL,
  legacy_status integer,
  new_status integer,
  divergent integer NOT NULL
)";

/// Rows waiting for the writer thread; past it rows are dropped and counted.
pub(crate) const QUEUE: usize = 8192;
/// Rows committed per transaction at most.
const BATCH: usize = 512;
/// How long opening the log (connect, create the table) may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one PostgreSQL batch may take before it is counted failed.
const PG_BATCH_TIMEOUT: Duration = Duration::from_secs(15);

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
    /// The PostgreSQL state store could not be reached or the table created.
    #[error("dual-write log {target}: {what}: {source}")]
    Postgres {
        /// The server and database (password removed).
        target: String,
        /// What was being done.
        what: &'static str,
        /// The driver error.
        source: tokio_postgres::Error,
    },
    /// The PostgreSQL state store URL is invalid.
    #[error("dual-write log: {0}")]
    State(#[from] StateError),
    /// The writer thread could not be started or did not answer.
    #[error("dual-write log {target}: {message}")]
    Unavailable {
        /// The state store (password removed).
        target: String,
        /// What happened.
        message: String,
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
    /// Opens the SQLite state store at `path` (`:memory:`: a private in-memory database, kept
    /// only for the process's life), creates `dual_writes` if absent and starts the writer.
    pub fn open(path: &Path, counters: LogCounters) -> Result<DualWriteLog, DualWriteError> {
        let path = path.to_path_buf();
        Self::start(
            path.display().to_string(),
            move || SqliteSink::open(path).map(Sink::Sqlite),
            counters,
        )
    }

    /// Connects to the PostgreSQL state store at `url` (the state store's connection
    /// settings), creates `ficus_proxy.dual_writes` if absent and starts the writer.
    pub fn connect(url: &str, counters: LogCounters) -> Result<DualWriteLog, DualWriteError> {
        let (config, target) = pg_config(url)?;
        let t = target.clone();
        Self::start(
            target,
            move || PgSink::connect(config, t).map(|p| Sink::Postgres(Box::new(p))),
            counters,
        )
    }

    /// Starts the writer thread, which opens its sink with `open`; waits for that.
    fn start(
        target: String,
        open: impl FnOnce() -> Result<Sink, DualWriteError> + Send + 'static,
        counters: LogCounters,
    ) -> Result<DualWriteLog, DualWriteError> {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let c = counters.clone();
        std::thread::Builder::new()
            .name("ficus-dual-writes".into())
            .spawn(move || match open() {
                Ok(sink) => {
                    let _ = ready_tx.send(Ok(()));
                    writer(sink, rx, &c);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(DualWriteError::Start)?;
        match ready_rx.recv_timeout(OPEN_TIMEOUT) {
            Ok(Ok(())) => Ok(DualWriteLog { tx, counters }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(DualWriteError::Unavailable {
                target,
                message: "no answer while opening the log".into(),
            }),
        }
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

/// Where the writer thread commits its batches.
enum Sink {
    Sqlite(SqliteSink),
    Postgres(Box<PgSink>),
}

impl Sink {
    /// The store, for log lines.
    fn target(&self) -> String {
        match self {
            Sink::Sqlite(s) => s.path.display().to_string(),
            Sink::Postgres(p) => p.target.clone(),
        }
    }

    /// Commits `rows` (all or none).
    fn insert(&mut self, rows: &[Row]) -> Result<(), String> {
        match self {
            Sink::Sqlite(s) => s.insert(rows).map_err(|e| e.to_string()),
            Sink::Postgres(p) => p.insert(rows),
        }
    }
}

fn writer(mut sink: Sink, rx: Receiver<Msg>, c: &LogCounters) {
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
            match sink.insert(&rows) {
                Ok(()) => c.written.inc_by(n),
                Err(e) => {
                    c.failed.inc_by(n);
                    tracing::error!(store = %sink.target(), error = %e, rows = n,
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

/// `dual_writes` in the SQLite state store.
struct SqliteSink {
    conn: Connection,
    path: PathBuf,
}

impl SqliteSink {
    fn open(path: PathBuf) -> Result<SqliteSink, DualWriteError> {
        let err = |source| DualWriteError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = if path.as_os_str() == ":memory:" {
            Connection::open_in_memory()
        } else {
            Connection::open(&path)
        }
        .map_err(err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        // WAL like the rest of the state store: the control plane's connection and this one
        // do not block each other's readers. NORMAL: a row lost to a power cut is a key the
        // watch's periodic sweep still covers.
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
            .map_err(err)?;
        conn.execute_batch(DUAL_WRITES_DDL).map_err(err)?;
        Ok(SqliteSink { conn, path })
    }

    fn insert(&mut self, rows: &[Row]) -> Result<(), rusqlite::Error> {
        let tx = self.conn.transaction()?;
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
}

/// `ficus_proxy.dual_writes` in the PostgreSQL state store. The writer thread drives its own
/// current-thread runtime; the connection is re-made for the batch after one that failed on
/// a closed connection.
struct PgSink {
    rt: tokio::runtime::Runtime,
    config: tokio_postgres::Config,
    target: String,
    client: Option<Client>,
}

impl PgSink {
    fn connect(config: tokio_postgres::Config, target: String) -> Result<PgSink, DualWriteError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| DualWriteError::Unavailable {
                target: target.clone(),
                message: format!("cannot start runtime: {e}"),
            })?;
        let mut sink = PgSink {
            rt,
            config,
            target,
            client: None,
        };
        let pg = |what| {
            let target = sink.target.clone();
            move |source| DualWriteError::Postgres {
                target: target.clone(),
                what,
                source,
            }
        };
        let (e_connect, e_create) = (pg("connect"), pg("create table dual_writes"));
        let config = sink.config.clone();
        let client = sink.rt.block_on(async {
            let mut client = connect(&config).await.map_err(e_connect)?;
            let tx = client.transaction().await.map_err(&e_create)?;
            // Replicas starting together would race on CREATE ... IF NOT EXISTS.
            tx.batch_execute(&format!("SELECT pg_advisory_xact_lock({SCHEMA_LOCK})"))
                .await
                .map_err(&e_create)?;
            tx.batch_execute(DUAL_WRITES_PG_DDL)
                .await
                .map_err(&e_create)?;
            tx.commit().await.map_err(&e_create)?;
            Ok::<_, DualWriteError>(client)
        })?;
        sink.client = Some(client);
        Ok(sink)
    }

    fn insert(&mut self, rows: &[Row]) -> Result<(), String> {
        let n = rows.len();
        let (mut at, mut route, mut key) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut method, mut primary) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut legacy, mut new, mut divergent) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for r in rows {
            at.push(r.at.as_str());
            route.push(&*r.route);
            key.push(r.key.as_str());
            method.push(r.method.as_str());
            primary.push(r.primary.as_str());
            legacy.push(r.legacy_status.map(i32::from));
            new.push(r.new_status.map(i32::from));
            divergent.push(i32::from(r.divergent()));
        }
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
        }
        let config = &self.config;
        let slot = &mut self.client;
        let result = self.rt.block_on(async {
            let work = async {
                if slot.is_none() {
                    *slot = Some(connect(config).await.map_err(|e| e.to_string())?);
                }
                let Some(client) = slot.as_ref() else {
                    return Err("no connection".to_string());
                };
                // One statement: the batch commits whole or not at all; ids are taken in
                // array order.
                client
                    .execute(
                        "INSERT INTO ficus_proxy.dual_writes
                             (at, route, key, method, primary_side, legacy_status, new_status, divergent)
                         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[],
                             $5::text[], $6::int4[], $7::int4[], $8::int4[])",
                        &[
                            &at, &route, &key, &method, &primary, &legacy, &new, &divergent,
                        ],
                    )
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            };
            match tokio::time::timeout(PG_BATCH_TIMEOUT, work).await {
                Ok(r) => r,
                Err(_) => Err(format!(
                    "no answer from PostgreSQL within {PG_BATCH_TIMEOUT:?}"
                )),
            }
        });
        if result.is_err() {
            // A timed-out or broken connection is not reused.
            self.client = None;
        }
        result
    }
}

async fn connect(config: &tokio_postgres::Config) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "dual-write log connection closed");
        }
    });
    Ok(client)
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
