//! The writer thread: the only writer of the store while shadow mode runs, fed through a
//! bounded channel of [`Op`]s, committing what has queued up in one transaction and keeping
//! retention (`keep`, `keep_days`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::record::{now_ms, MismatchRecord};
use super::sql::{add_count_tx, insert_mismatch_tx, record_noise_tx, store_err};
use super::Store;
use crate::compare::DiffKind;
use crate::error::ShadowError;
use crate::metrics::Outcome;

/// Pending writes the writer thread accepts before senders wait (mirror workers) or drop
/// (counts from the proxy's threads).
const WRITER_QUEUE: usize = 4096;

/// A write for the writer thread.
pub(crate) enum Op {
    /// Store a mismatch.
    Mismatch(Box<MismatchRecord>),
    /// Add request counts (route, outcome, n), all in the minute of `time_ms`.
    Counts {
        counts: Vec<(Arc<str>, Outcome, u64)>,
        time_ms: i64,
    },
    /// Record one noise probe.
    Noise {
        route: Arc<str>,
        observed: Vec<(String, DiffKind)>,
        time_ms: i64,
    },
    /// Reply once everything sent before has been committed.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Retention settings the writer applies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retention {
    pub keep: u64,
    pub keep_days: u32,
}

/// Starts the writer thread; it runs until every sender is dropped, then commits what is
/// left and exits.
pub(crate) fn spawn_writer(
    mut store: Store,
    retention: Retention,
    errors: prometheus::IntCounter,
) -> Result<tokio::sync::mpsc::Sender<Op>, ShadowError> {
    store.enforce_retention(retention.keep, retention.keep_days, now_ms())?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Op>(WRITER_QUEUE);
    std::thread::Builder::new()
        .name("ficus-shadow-store".into())
        .spawn(move || {
            let mut since_retention = 0usize;
            let mut last_retention = Instant::now();
            while let Some(op) = rx.blocking_recv() {
                let mut batch = vec![op];
                while batch.len() < 512 {
                    match rx.try_recv() {
                        Ok(op) => batch.push(op),
                        Err(_) => break,
                    }
                }
                let (inserted, flushes) = match apply(&mut store, batch) {
                    Ok(x) => x,
                    Err((e, flushes)) => {
                        errors.inc();
                        tracing::warn!(error = %e, "shadow store write failed");
                        (0, flushes)
                    }
                };
                since_retention += inserted;
                // Also before answering a flush, so a flushed store honours `keep`.
                let due = since_retention >= 1000
                    || (since_retention > 0
                        && (!flushes.is_empty()
                            || last_retention.elapsed() >= Duration::from_secs(60)));
                if due {
                    if let Err(e) =
                        store.enforce_retention(retention.keep, retention.keep_days, now_ms())
                    {
                        errors.inc();
                        tracing::warn!(error = %e, "shadow store retention failed");
                    }
                    since_retention = 0;
                    last_retention = Instant::now();
                }
                for f in flushes {
                    let _ = f.send(());
                }
            }
            if since_retention > 0 {
                let _ = store.enforce_retention(retention.keep, retention.keep_days, now_ms());
            }
        })
        .map_err(|source| ShadowError::Start {
            what: "shadow store writer",
            source,
        })?;
    Ok(tx)
}

type Flushes = Vec<tokio::sync::oneshot::Sender<()>>;

/// Commits a batch in one transaction; returns the mismatches inserted and the flush replies
/// to send.
fn apply(store: &mut Store, batch: Vec<Op>) -> Result<(usize, Flushes), (ShadowError, Flushes)> {
    let mut flushes = Vec::new();
    let mut counts: HashMap<(Arc<str>, i64, Outcome), u64> = HashMap::new();
    let mut mismatches = Vec::new();
    let mut noise = Vec::new();
    for op in batch {
        match op {
            Op::Mismatch(m) => mismatches.push(m),
            Op::Counts {
                counts: list,
                time_ms,
            } => {
                for (route, outcome, n) in list {
                    *counts
                        .entry((route, time_ms / 60_000, outcome))
                        .or_default() += n;
                }
            }
            Op::Noise {
                route,
                observed,
                time_ms,
            } => noise.push((route, observed, time_ms)),
            Op::Flush(f) => flushes.push(f),
        }
    }
    let path = store.path.clone();
    let run = |conn: &mut Connection| -> rusqlite::Result<usize> {
        let tx = conn.transaction()?;
        for m in &mismatches {
            insert_mismatch_tx(&tx, m)?;
        }
        for ((route, minute, outcome), n) in &counts {
            add_count_tx(&tx, route, *minute, outcome.as_str(), *n)?;
        }
        for (route, observed, time_ms) in &noise {
            record_noise_tx(&tx, route, observed, *time_ms)?;
        }
        tx.commit()?;
        Ok(mismatches.len())
    };
    match run(&mut store.conn) {
        Ok(n) => Ok((n, flushes)),
        Err(e) => Err((store_err(&path, e), flushes)),
    }
}
