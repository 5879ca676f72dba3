//! The dual-write log's writer thread.
//!
//! # Architecture invariant: the state store stays off the hot path
//! Records go through a bounded channel ([`QUEUE`]) to a writer thread with its own
//! connection, which commits them in batches (one transaction on SQLite, one multi-row
//! `INSERT ... SELECT FROM unnest(...)` on PostgreSQL — one batching loop, two sinks). A full
//! channel drops the record and counts it (`dropped`); nothing waits. A batch that cannot be
//! written is counted (`failed`) and logged; the PostgreSQL sink reconnects for the next batch.

use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::time::Duration;

use prometheus::IntCounter;
use rusqlite::{params, Connection};
use tokio_postgres::Client;

use super::DualWriteRecord;
use crate::{StateError, StateLocation};

/// Records waiting for the writer thread; past it records are dropped and counted.
pub const QUEUE: usize = 8192;
/// Records committed per transaction at most.
const BATCH: usize = 512;
/// How long opening the log (connect, create the table) may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one PostgreSQL batch may take before it is counted failed.
const PG_BATCH_TIMEOUT: Duration = Duration::from_secs(15);

/// Outcome counters of the log (the proxy registers them as
/// `ficus_dual_write_records_total{result}`).
#[derive(Clone)]
pub struct LogCounters {
    /// Records committed.
    pub written: IntCounter,
    /// Records dropped because the queue was full.
    pub dropped: IntCounter,
    /// Records in batches that could not be committed.
    pub failed: IntCounter,
}

enum Msg {
    Record(DualWriteRecord),
    Flush(mpsc::Sender<()>),
}

/// The writer thread's handle. Dropping it ends the thread once it has written what it holds;
/// [`DualWriteLog::flush_blocking`] waits for that.
pub struct DualWriteLog {
    tx: SyncSender<Msg>,
    counters: LogCounters,
}

impl DualWriteLog {
    /// Opens the store at `location` (a SQLite `:memory:` is private to this log), creates
    /// its tables if absent and starts the writer.
    pub fn open(
        location: &StateLocation,
        counters: LogCounters,
    ) -> Result<DualWriteLog, StateError> {
        match location {
            StateLocation::Sqlite(path) => {
                let path = path.clone();
                Self::start(
                    path.display().to_string(),
                    move || SqliteSink::open(path).map(Sink::Sqlite),
                    counters,
                )
            }
            StateLocation::Postgres(url) => {
                let endpoint = crate::pg::endpoint(url, "ficus-proxy")?;
                let target = endpoint.shown().to_string();
                let t = target.clone();
                Self::start(
                    target,
                    move || PgSink::connect(endpoint, t).map(|p| Sink::Postgres(Box::new(p))),
                    counters,
                )
            }
        }
    }

    /// Starts the writer thread, which opens its sink with `open`; waits for that.
    fn start(
        target: String,
        open: impl FnOnce() -> Result<Sink, StateError> + Send + 'static,
        counters: LogCounters,
    ) -> Result<DualWriteLog, StateError> {
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
            .map_err(|source| StateError::Start {
                what: "the dual-write log's writer thread",
                source,
            })?;
        match ready_rx.recv_timeout(OPEN_TIMEOUT) {
            Ok(Ok(())) => Ok(DualWriteLog { tx, counters }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(StateError::Unavailable {
                target,
                message: "no answer while opening the dual-write log".into(),
            }),
        }
    }

    /// Queues a record; never blocks (a full queue drops it, counted).
    pub fn record(&self, record: DualWriteRecord) {
        match self.tx.try_send(Msg::Record(record)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counters.dropped.inc();
            }
        }
    }

    /// Waits (blocking, up to `limit`) until every record queued so far is committed.
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

    /// Commits `records` (all or none).
    fn insert(&mut self, records: &[DualWriteRecord]) -> Result<(), String> {
        match self {
            Sink::Sqlite(s) => s.insert(records).map_err(|e| e.to_string()),
            Sink::Postgres(p) => p.insert(records),
        }
    }
}

fn writer(mut sink: Sink, rx: Receiver<Msg>, c: &LogCounters) {
    let mut records: Vec<DualWriteRecord> = Vec::with_capacity(BATCH);
    let mut flushes: Vec<mpsc::Sender<()>> = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Record(r) => records.push(r),
                Msg::Flush(f) => flushes.push(f),
            }
            if records.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !records.is_empty() {
            let n = records.len() as u64;
            match sink.insert(&records) {
                Ok(()) => c.written.inc_by(n),
                Err(e) => {
                    c.failed.inc_by(n);
                    tracing::error!(store = %sink.target(), error = %e, rows = n,
                        "dual-write log: cannot record writes");
                }
            }
            records.clear();
        }
        for f in flushes.drain(..) {
            let _ = f.send(());
        }
    }
}

/// `dual_writes` in a SQLite store.
struct SqliteSink {
    conn: Connection,
    path: PathBuf,
}

impl SqliteSink {
    fn open(path: PathBuf) -> Result<SqliteSink, StateError> {
        let err = StateError::sqlite(&path, "open the dual-write log");
        let conn = if path.as_os_str() == ":memory:" {
            Connection::open_in_memory()
        } else {
            Connection::open(&path)
        }
        .map_err(&err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(&err)?;
        // WAL like the rest of the state store: the control plane's connection and this one
        // do not block each other's readers. NORMAL: a row lost to a power cut is a key the
        // watch's periodic sweep still covers.
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
            .map_err(&err)?;
        crate::schema::create_sqlite(&conn).map_err(&err)?;
        drop(err);
        Ok(SqliteSink { conn, path })
    }

    fn insert(&mut self, records: &[DualWriteRecord]) -> Result<(), rusqlite::Error> {
        let tx = self.conn.transaction()?;
        {
            let mut st = tx.prepare_cached(
                "INSERT INTO dual_writes (at, route, key, method, primary_side, legacy_status, new_status, divergent)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for r in records {
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

/// `ficus_proxy.dual_writes` in a PostgreSQL store. The writer thread drives its own
/// current-thread runtime; the connection is re-made for the batch after one that failed.
struct PgSink {
    rt: tokio::runtime::Runtime,
    endpoint: ficus_pg::Endpoint,
    target: String,
    client: Option<Client>,
}

impl PgSink {
    fn connect(endpoint: ficus_pg::Endpoint, target: String) -> Result<PgSink, StateError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| StateError::Start {
                what: "the dual-write log's runtime",
                source,
            })?;
        let client = rt.block_on(async {
            let mut client = crate::pg::connect(&endpoint, "dual-write log").await?;
            crate::schema::create_pg(&mut client)
                .await
                .map_err(StateError::pg(&target, "create tables"))?;
            Ok::<_, StateError>(client)
        })?;
        Ok(PgSink {
            rt,
            endpoint,
            target,
            client: Some(client),
        })
    }

    fn insert(&mut self, records: &[DualWriteRecord]) -> Result<(), String> {
        let n = records.len();
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
        for r in records {
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
        let endpoint = &self.endpoint;
        let slot = &mut self.client;
        let result = self.rt.block_on(async {
            let work = async {
                if slot.is_none() {
                    *slot = Some(
                        crate::pg::connect(endpoint, "dual-write log")
                            .await
                            .map_err(|e| e.to_string())?,
                    );
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
