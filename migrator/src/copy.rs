//! Bulk copy of one table: a blocking reader thread reads SQLite in keyset-paginated batches
//! from the checkpoint on, converts each row straight into binary COPY tuples, and hands
//! batches over a bounded channel (memory stays flat whatever the table size) to the async
//! writer, which commits each batch's COPY, its quarantine records and the advanced
//! checkpoint in one transaction.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::SinkExt;
use tokio_postgres::Client;

use crate::checkpoint;
use crate::error::{MigrateError, PgContext, Result};
use crate::plan::TablePlan;
use crate::progress::Observer;
use crate::quarantine::{self, QuarantineRecord};
use crate::source::{open_source, read_rows, SourceKey};

/// Binary COPY header: signature, flags, header extension length.
pub(crate) const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// Binary COPY trailer.
pub(crate) const COPY_TRAILER: &[u8] = &[0xff, 0xff];

/// Batch limits and test hooks.
#[derive(Debug, Clone)]
pub struct CopyLimits {
    pub batch_rows: u64,
    pub batch_bytes: usize,
    pub max_rejects: Option<u64>,
    /// Sleep after each committed batch (tests use it to kill a run mid-way).
    pub pause_after_batch: Option<Duration>,
}

/// One batch handed from reader to writer.
struct Batch {
    tuples: Vec<u8>,
    read: u64,
    copied: u64,
    quarantined_rows: u64,
    quarantine: Vec<QuarantineRecord>,
    last_key: Option<SourceKey>,
    last: bool,
}

/// What copying one table did in this run.
#[derive(Debug, Clone, Default)]
pub struct CopyStats {
    pub read: u64,
    pub copied: u64,
    pub quarantined: u64,
    pub batches: u64,
}

fn reader(
    source: PathBuf,
    table: Arc<TablePlan>,
    start: Option<SourceKey>,
    limits: CopyLimits,
    tx: tokio::sync::mpsc::Sender<Result<Batch>>,
) {
    let run = || -> Result<()> {
        let conn = open_source(&source)?;
        let mut after = start;
        let ncols = (table.columns.len() as i16).to_be_bytes();
        loop {
            let mut b = Batch {
                tuples: Vec::with_capacity(limits.batch_bytes + (64 << 10)),
                read: 0,
                copied: 0,
                quarantined_rows: 0,
                quarantine: Vec::new(),
                last_key: None,
                last: false,
            };
            let end = read_rows(
                &conn,
                &*table,
                after.as_ref(),
                Some(limits.batch_rows),
                |row| {
                    let row_start = b.tuples.len();
                    b.tuples.extend_from_slice(&ncols);
                    let mut failed = false;
                    for (i, c) in table.columns.iter().enumerate() {
                        let v = row.value(i);
                        if let Err(e) = c.conversion.encode(v, &mut b.tuples) {
                            failed = true;
                            b.quarantine.push(QuarantineRecord::new(
                                row.key_display(&*table),
                                &c.name,
                                &v,
                                e.0,
                            ));
                        }
                    }
                    b.read += 1;
                    if failed {
                        b.tuples.truncate(row_start);
                        b.quarantined_rows += 1;
                    } else {
                        b.copied += 1;
                    }
                    Ok(b.tuples.len() < limits.batch_bytes)
                },
            )?;
            b.last = end.exhausted;
            b.last_key = end.last_key.clone().or(after.clone());
            after = end.last_key.or(after);
            let last = b.last;
            if tx.blocking_send(Ok(b)).is_err() || last {
                return Ok(());
            }
        }
    };
    if let Err(e) = run() {
        let _ = tx.blocking_send(Err(e));
    }
}

/// Copy `table` from its checkpoint `start` to the end, committing batch by batch.
/// `rejects` is the run-wide count of quarantined rows (for `--max-rejects`).
#[allow(clippy::too_many_arguments)]
pub async fn copy_table(
    client: &mut Client,
    source: PathBuf,
    schema: &str,
    table: Arc<TablePlan>,
    start: Option<SourceKey>,
    limits: &CopyLimits,
    rejects: &AtomicU64,
    obs: &Observer,
) -> Result<CopyStats> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Batch>>(1);
    let t2 = table.clone();
    let l2 = limits.clone();
    let reader_task = tokio::task::spawn_blocking(move || reader(source, t2, start, l2, tx));
    let copy_sql = table.copy_in_sql(schema);
    let mut stats = CopyStats::default();
    let result: Result<()> = async {
        while let Some(batch) = rx.recv().await {
            let b = batch?;
            if b.quarantined_rows > 0 {
                let total =
                    rejects.fetch_add(b.quarantined_rows, Ordering::SeqCst) + b.quarantined_rows;
                if let Some(max) = limits.max_rejects {
                    if total > max {
                        let r = b
                            .quarantine
                            .last()
                            .cloned()
                            .unwrap_or_else(|| QuarantineRecord {
                                key: String::new(),
                                column: String::new(),
                                storage_class: String::new(),
                                raw_value: None,
                                raw_display: String::new(),
                                reason: String::new(),
                            });
                        return Err(MigrateError::TooManyRejects {
                            count: total,
                            max,
                            table: table.name.clone(),
                            key: r.key,
                            column: r.column,
                            reason: r.reason,
                        });
                    }
                }
            }
            let txn = client.transaction().await.ctx("begin")?;
            if b.copied > 0 {
                let sink = txn
                    .copy_in::<_, Bytes>(&copy_sql)
                    .await
                    .ctx(format!("COPY into {}", table.name))?;
                futures_util::pin_mut!(sink);
                let ctx = || format!("COPY into {}", table.name);
                sink.feed(Bytes::from_static(COPY_HEADER))
                    .await
                    .ctx(ctx())?;
                sink.feed(Bytes::from(b.tuples)).await.ctx(ctx())?;
                sink.send(Bytes::from_static(COPY_TRAILER))
                    .await
                    .ctx(ctx())?;
                let n = sink
                    .finish()
                    .await
                    .ctx(format!("COPY into {}", table.name))?;
                if n != b.copied {
                    return Err(MigrateError::Internal(format!(
                        "COPY into {} wrote {n} rows, expected {}",
                        table.name, b.copied
                    )));
                }
            }
            quarantine::insert(&txn, schema, &table.name, &b.quarantine).await?;
            checkpoint::advance(
                &txn,
                schema,
                &table.name,
                b.last_key.as_ref(),
                b.read,
                b.copied,
                b.quarantined_rows,
                b.last,
            )
            .await?;
            txn.commit()
                .await
                .ctx(format!("committing a batch of {}", table.name))?;
            stats.read += b.read;
            stats.copied += b.copied;
            stats.quarantined += b.quarantined_rows;
            stats.batches += 1;
            obs.batch(&table.name, b.read, b.copied, b.quarantined_rows);
            if let Some(p) = limits.pause_after_batch {
                tokio::time::sleep(p).await;
            }
            if b.last {
                break;
            }
        }
        Ok(())
    }
    .await;
    drop(rx);
    let _ = reader_task.await;
    result.map(|_| stats)
}
