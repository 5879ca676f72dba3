//! `migrate run --follow`: after the snapshot copy, apply the source's change log
//! ([`crate::capture`]) to PostgreSQL continuously.
//!
//! Each round reads, in one short SQLite read transaction, the changes past the applied
//! position and the current state of every row they name ([`read`]), then applies them in one
//! PostgreSQL transaction that also advances the position ([`apply`], [`state`]), then trims
//! the applied changes from the log in small write transactions. So:
//! - a killed follower resumes at the committed position: no gap, no duplicate;
//! - re-applying a key is harmless (it is SQLite's current row, or its absence);
//! - the legacy app is never blocked for long: the round's read transaction lasts as long as
//!   reading the changed rows (bounded by `batch` changes), the trims are a few thousand rows
//!   each, and every wait on SQLite's locks is bounded by the busy timeout.
//!
//! A schema change on the source stops following, naming the table and the change (an
//! `ALTER TABLE … ADD COLUMN` is the exception, handled by the caller through
//! [`FollowStop::SchemaChanged`]); nothing captured is lost — the log keeps it.

pub(crate) mod apply;
mod event;
mod metrics;
pub(crate) mod read;
mod schema_change;
mod state;
mod trim;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::capture;
use crate::error::{MigrateError, PgContext, Result};
use crate::plan::Plan;

pub use self::event::{FollowEvent, FollowStop, FollowSummary};
pub use self::metrics::FollowMetrics;
pub(crate) use self::state::{direction, keys_after, set_direction};
pub use self::state::{Direction, FollowState};

/// How the follower runs.
#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// The SQLite source (capture installed).
    pub source: PathBuf,
    /// PostgreSQL URL.
    pub target: String,
    /// Changes per round at most.
    pub batch: usize,
    /// Pause between polls when there is nothing to apply.
    pub poll: Duration,
    /// Applied changes deleted from the log per write transaction.
    pub trim_batch: usize,
    /// Lag above which the follower says it is behind (`--max-lag-ms`).
    pub max_lag: Duration,
    /// Stop once every change logged so far is applied (one catch-up, for scripts and tests).
    pub until_caught_up: bool,
    /// The migration's configuration (to plan a column added while following).
    pub config: crate::config::MigrationConfig,
    /// Re-read and re-apply every key this long after it was applied (0: never). With
    /// dual-write routes on followed tables a mirrored write can reach PostgreSQL after the
    /// follower applied legacy's row; the re-check puts legacy's row back (`--settle-ms`).
    pub settle: Duration,
}

impl FollowOptions {
    /// Defaults for `source` → `target`.
    pub fn new(source: &Path, target: &str) -> FollowOptions {
        FollowOptions {
            source: source.to_path_buf(),
            target: target.to_string(),
            batch: 20_000,
            poll: Duration::from_millis(50),
            trim_batch: 2_000,
            max_lag: Duration::from_millis(1000),
            until_caught_up: false,
            config: crate::config::MigrationConfig::default(),
            settle: Duration::ZERO,
        }
    }
}

/// The follower's SQLite connection for its snapshots (query-only).
struct Source {
    read: Connection,
}

fn sqlite_err(path: &Path) -> impl Fn(capture::CaptureError) -> MigrateError + '_ {
    move |e| MigrateError::Capture {
        path: path.to_path_buf(),
        detail: e.to_string(),
    }
}

/// Starts following: checks the capture epoch against the follower's record (creating it at
/// position 0 when there is none), and makes foreign keys deferrable.
async fn begin(
    client: &tokio_postgres::Client,
    plan: &Plan,
    epoch: &str,
) -> Result<(i64, Vec<String>)> {
    state::ensure(client).await?;
    let position = match state::load(client, &plan.schema).await? {
        Some(s) if s.epoch == epoch => s.position,
        Some(s) => {
            return Err(MigrateError::CaptureEpoch {
                schema: plan.schema.clone(),
                followed: s.epoch,
                installed: epoch.to_string(),
            })
        }
        None => {
            state::begin(client, &plan.schema, epoch).await?;
            0
        }
    };
    let fks = apply::deferrable_foreign_keys(client, &plan.schema).await?;
    Ok((position, fks))
}

/// Resets the follower's record to position 0 of `epoch` (after a fresh snapshot copy).
pub async fn reset(target: &str, schema: &str, epoch: &str) -> Result<()> {
    let client = crate::pg::connect(target).await?;
    state::ensure(&client).await?;
    state::begin(&client, schema, epoch).await
}

/// The follower's record, if it ever ran for `schema`.
pub async fn load_state(
    client: &tokio_postgres::Client,
    schema: &str,
) -> Result<Option<FollowState>> {
    state::load(client, schema).await
}

/// Follows until `stop` completes, the log is drained (`until_caught_up`), or the source's
/// schema changes. Rounds that fail are counted, reported and retried after a pause.
pub async fn follow<F: FnMut(&FollowEvent) + Send>(
    plan: &Plan,
    opts: &FollowOptions,
    metrics: &FollowMetrics,
    stop: impl Future<Output = ()> + Send,
    on_event: F,
) -> Result<FollowSummary> {
    let trimmer =
        trim::Trimmer::start(&opts.source, opts.trim_batch).map_err(sqlite_err(&opts.source))?;
    let result = follow_with(plan, opts, metrics, stop, on_event, &trimmer).await;
    // What is applied goes from the log before returning (the next follower starts clean).
    let finished = tokio::task::spawn_blocking(move || trimmer.finish()).await;
    if let Err(e) = finished {
        tracing::warn!(error = %e, "follow: trimming thread");
    }
    result
}

async fn follow_with<F: FnMut(&FollowEvent) + Send>(
    plan: &Plan,
    opts: &FollowOptions,
    metrics: &FollowMetrics,
    stop: impl Future<Output = ()> + Send,
    mut on_event: F,
    trimmer: &trim::Trimmer,
) -> Result<FollowSummary> {
    let path = opts.source.clone();
    let src = {
        let p = path.clone();
        tokio::task::spawn_blocking(
            move || -> std::result::Result<Source, capture::CaptureError> {
                let read = capture::open_rw(&p)?;
                read.execute_batch("PRAGMA query_only = ON")
                    .map_err(capture::CaptureError::sqlite(&p, "set query_only"))?;
                Ok(Source { read })
            },
        )
        .await
        .map_err(|e| MigrateError::Internal(format!("follow thread: {e}")))?
        .map_err(sqlite_err(&path))?
    };
    let src = Arc::new(Mutex::new(src));
    let epoch = {
        let src = src.clone();
        let p = path.clone();
        tokio::task::spawn_blocking(move || {
            let s = src.lock().unwrap_or_else(|e| e.into_inner());
            capture::epoch(&s.read)
                .map_err(capture::CaptureError::sqlite(&p, "read _ficus_capture"))
        })
        .await
        .map_err(|e| MigrateError::Internal(format!("follow thread: {e}")))?
        .map_err(sqlite_err(&path))?
        .ok_or_else(|| MigrateError::Capture {
            path: path.clone(),
            detail: "change capture is not installed (run `ficus migrate capture install`)".into(),
        })?
    };
    let mut client = crate::pg::connect(&opts.target).await?;
    let (mut position, fks) = begin(&client, plan, &epoch).await?;
    trimmer.advance(position);
    metrics.position.set(position);
    on_event(&FollowEvent::Started {
        epoch: epoch.clone(),
        position,
        deferrable_fks: fks,
    });
    let mut plan = Arc::new(plan.clone());
    let mut summary = FollowSummary {
        stop: FollowStop::Stopped,
        position,
        changes: 0,
        rows: 0,
        rounds: 0,
    };
    let mut schema_version: Option<i64> = None;
    let mut batch = opts.batch.max(1);
    let mut behind = false;
    let mut caught_up_said = false;
    let mut resettle: VecDeque<Recheck> = VecDeque::new();
    let mut reverse: Option<crate::reverse::ReverseFollower> = None;
    let mut checked = Instant::now() - Duration::from_secs(1);
    let mut beat = Instant::now();
    tokio::pin!(stop);
    loop {
        // Which way? A cut-over turns the follower around, a live rollback back (and sets
        // the forward position past the reverse follower's own writes).
        if checked.elapsed() >= DIRECTION_CHECK {
            checked = Instant::now();
            let (dir, at) = state::direction(&client, &plan.schema).await?;
            match (dir, reverse.is_some()) {
                (state::Direction::Reverse, false) => {
                    let (p2, path2) = (plan.clone(), path.clone());
                    let rf = tokio::task::spawn_blocking(move || {
                        crate::reverse::ReverseFollower::open(&p2, &path2)
                    })
                    .await
                    .map_err(|e| MigrateError::Internal(format!("follow thread: {e}")))??;
                    on_event(&FollowEvent::TurnedAround {
                        direction: dir,
                        position: rf.position(),
                    });
                    reverse = Some(rf);
                }
                (state::Direction::Forward, true) => {
                    reverse = None;
                    position = at;
                    summary.position = at;
                    trimmer.advance(position);
                    on_event(&FollowEvent::TurnedAround {
                        direction: dir,
                        position,
                    });
                }
                _ => {}
            }
        }
        if let Some(rf) = reverse.as_mut() {
            match rf.round(&client, &plan.schema).await {
                Ok(r) => {
                    metrics.lag_changes.set(r.last_id - r.position);
                    metrics.reverse_position.set(r.position);
                    if r.changes > 0 {
                        metrics.reverse_applied.inc_by(r.rows);
                        on_event(&FollowEvent::Reversed {
                            changes: r.changes,
                            rows: r.rows,
                            position: r.position,
                        });
                        continue;
                    }
                }
                Err(e) => {
                    metrics.apply_errors.inc();
                    on_event(&FollowEvent::RoundFailed {
                        error: format!("reverse: {e}"),
                    });
                }
            }
            if beat.elapsed() >= HEARTBEAT {
                beat = Instant::now();
                state::heartbeat(&client, &plan.schema).await?;
            }
            if opts.until_caught_up {
                summary.stop = FollowStop::CaughtUp;
                break;
            }
            if pause(&mut stop, opts.poll).await {
                break;
            }
            continue;
        }
        if let Some(rows) =
            run_due_rechecks(&mut resettle, &src, &plan, &mut client, &mut on_event).await
        {
            metrics.applied.inc_by(rows);
        }
        let started = Instant::now();
        let read = {
            let (src, plan, after) = (src.clone(), plan.clone(), position);
            tokio::task::spawn_blocking(move || {
                let s = src.lock().unwrap_or_else(|e| e.into_inner());
                read::read_round(&s.read, &plan, after, batch)
            })
            .await
            .map_err(|e| MigrateError::Internal(format!("follow thread: {e}")))?
        };
        let round = match read {
            Ok(r) => r,
            Err(e) => {
                metrics.apply_errors.inc();
                on_event(&FollowEvent::RoundFailed {
                    error: e.to_string(),
                });
                if opts.until_caught_up {
                    return Err(e);
                }
                if pause(&mut stop, Duration::from_secs(1)).await {
                    break;
                }
                continue;
            }
        };
        let changed = match schema_version {
            // First round: is the source still the schema the plan was made from?
            None => {
                let p = path.clone();
                let id = tokio::task::spawn_blocking(move || {
                    let conn = crate::source::open_source(&p)?;
                    crate::source::SourceIdentity::of(&p, &conn)
                })
                .await
                .map_err(|e| MigrateError::Internal(format!("follow thread: {e}")))??;
                schema_version = Some(round.schema_version);
                id.schema_hash != plan.source.schema_hash
            }
            Some(v) => v != round.schema_version,
        };
        if changed {
            let (src_path, cfg, sch) = (path.clone(), opts.config.clone(), plan.schema.clone());
            let now =
                tokio::task::spawn_blocking(move || schema_change::replan(&src_path, &cfg, &sch))
                    .await
                    .map_err(|e| MigrateError::Internal(format!("follow thread: {e}")))??;
            match schema_change::diff(&plan, &now) {
                schema_change::Evolution::Added(added) => {
                    let evolved = schema_change::follow_added_columns(
                        &mut client,
                        &path,
                        &plan,
                        &now,
                        &added,
                    )
                    .await?;
                    let columns: Vec<String> = added
                        .iter()
                        .flat_map(|(ti, cols)| {
                            let t = &plan.tables[*ti].name;
                            cols.iter().map(move |c| format!("{t}.{}", c.name))
                        })
                        .collect();
                    if !columns.is_empty() {
                        on_event(&FollowEvent::ColumnsAdded { columns });
                    }
                    plan = Arc::new(evolved);
                    schema_version = Some(round.schema_version);
                    // The round was read with the old plan: read it again.
                    continue;
                }
                schema_change::Evolution::Unsupported(changes) => {
                    let lag = round.last_id - position;
                    state::note(
                        &client,
                        &plan.schema,
                        lag,
                        0.0,
                        &format!(
                            "stopped: the source's schema changed: {}",
                            changes.join("; ")
                        ),
                    )
                    .await?;
                    summary.stop = FollowStop::SchemaChanged { position, changes };
                    summary.position = position;
                    return Ok(summary);
                }
            }
        }
        let lag_changes = round.last_id - position;
        metrics.lag_changes.set(lag_changes);
        metrics
            .lag_seconds
            .set(round.oldest_age_s.unwrap_or(0.0).max(0.0));
        if round.changes == 0 {
            if !caught_up_said {
                on_event(&FollowEvent::CaughtUp { position });
                caught_up_said = true;
            }
            if opts.until_caught_up && resettle.is_empty() {
                summary.stop = FollowStop::CaughtUp;
                break;
            }
            if beat.elapsed() >= HEARTBEAT {
                beat = Instant::now();
                state::heartbeat(&client, &plan.schema).await?;
            }
            if pause(&mut stop, opts.poll).await {
                break;
            }
            continue;
        }
        caught_up_said = false;
        let lag_s = round.oldest_age_s.unwrap_or(0.0);
        if lag_s > opts.max_lag.as_secs_f64() && !behind {
            behind = true;
            on_event(&FollowEvent::Behind {
                lag_seconds: lag_s,
                lag_changes,
            });
        } else if lag_s <= opts.max_lag.as_secs_f64() {
            behind = false;
        }
        match apply::apply(&mut client, &plan, &round).await {
            Ok(()) => {}
            Err(e) => {
                metrics.apply_errors.inc();
                // A foreign key checked at commit can fail when the round stopped short of
                // the snapshot (a parent logged after the round's last change): take more.
                if !round.complete {
                    batch = batch.saturating_mul(2);
                }
                on_event(&FollowEvent::RoundFailed {
                    error: e.to_string(),
                });
                if client.is_closed() {
                    if let Ok(c) = crate::pg::connect(&opts.target).await {
                        client = c;
                    }
                }
                if opts.until_caught_up && round.complete && batch > opts.batch * 64 {
                    return Err(e);
                }
                if pause(&mut stop, Duration::from_millis(500)).await {
                    break;
                }
                continue;
            }
        }
        batch = opts.batch.max(1);
        position = round.position;
        let rows = round.rows();
        summary.changes += round.changes;
        summary.rows += rows;
        summary.rounds += 1;
        summary.position = position;
        metrics.applied.inc_by(rows);
        metrics.changes.inc_by(round.changes);
        metrics.position.set(position);
        metrics.lag_changes.set(round.last_id - position);
        if round.complete {
            metrics.lag_seconds.set(0.0);
        }
        on_event(&FollowEvent::Applied {
            changes: round.changes,
            rows,
            position,
            lag_changes: round.last_id - position,
            seconds: started.elapsed().as_secs_f64(),
        });
        if !opts.settle.is_zero() {
            resettle.push_back(Recheck::of(&round, Instant::now() + opts.settle));
        }
        // Trim what is applied (the position's own row stays: ids keep growing).
        trimmer.advance(position);
        if round.complete && opts.until_caught_up && resettle.is_empty() {
            on_event(&FollowEvent::CaughtUp { position });
            summary.stop = FollowStop::CaughtUp;
            break;
        }
    }
    summary.position = position;
    let why = match summary.stop {
        FollowStop::CaughtUp => "caught up",
        _ => "stopped",
    };
    let lag = metrics.lag_changes.get();
    state::note(&client, &plan.schema, lag, metrics.lag_seconds.get(), why).await?;
    Ok(summary)
}

/// How often the follower looks whether it was turned around.
const DIRECTION_CHECK: Duration = Duration::from_millis(100);
/// How often an idle follower says it is alive (`ficus.follow.updated_at`).
const HEARTBEAT: Duration = Duration::from_secs(1);

/// Keys applied by a round, to be read and applied again once `due`.
struct Recheck {
    due: Instant,
    keys: BTreeMap<usize, BTreeSet<String>>,
    whole: BTreeSet<usize>,
}

impl Recheck {
    fn of(round: &read::Round, due: Instant) -> Recheck {
        let mut r = Recheck {
            due,
            keys: BTreeMap::new(),
            whole: BTreeSet::new(),
        };
        for d in &round.tables {
            if d.replace_all {
                r.whole.insert(d.table);
            } else {
                r.keys
                    .entry(d.table)
                    .or_default()
                    .extend(d.keys.iter().cloned());
            }
        }
        r
    }
}

/// Applies again, in one snapshot and one transaction, every recheck that is due; the rows
/// applied, if any ran. A failed one is retried a second later.
async fn run_due_rechecks<F: FnMut(&FollowEvent) + Send>(
    queue: &mut VecDeque<Recheck>,
    src: &Arc<Mutex<Source>>,
    plan: &Arc<Plan>,
    client: &mut tokio_postgres::Client,
    on_event: &mut F,
) -> Option<u64> {
    let now = Instant::now();
    let mut due = Recheck {
        due: now,
        keys: BTreeMap::new(),
        whole: BTreeSet::new(),
    };
    while queue.front().is_some_and(|r| r.due <= now) {
        if let Some(r) = queue.pop_front() {
            for (t, k) in r.keys {
                due.keys.entry(t).or_default().extend(k);
            }
            due.whole.extend(r.whole);
        }
    }
    if due.keys.is_empty() && due.whole.is_empty() {
        return None;
    }
    let (s2, p2, k2, w2) = (
        src.clone(),
        plan.clone(),
        due.keys.clone(),
        due.whole.clone(),
    );
    let read = tokio::task::spawn_blocking(move || {
        let s = s2.lock().unwrap_or_else(|e| e.into_inner());
        read::read_again(&s.read, &p2, &k2, &w2)
    })
    .await;
    let applied = match read {
        Ok(Ok(deltas)) => {
            let rows: u64 = deltas.iter().map(|d| d.upsert_rows + d.delete_rows).sum();
            let r = async {
                let tx = client.transaction().await.ctx("begin a settle re-check")?;
                apply::apply_deltas(&tx, plan, &deltas).await?;
                tx.commit().await.ctx("committing a settle re-check")
            }
            .await;
            r.map(|()| rows)
        }
        Ok(Err(e)) => Err(e),
        Err(e) => Err(MigrateError::Internal(format!("follow thread: {e}"))),
    };
    match applied {
        Ok(rows) => {
            on_event(&FollowEvent::Resettled { rows });
            Some(rows)
        }
        Err(e) => {
            on_event(&FollowEvent::RoundFailed {
                error: format!("settle re-check: {e}"),
            });
            due.due = now + Duration::from_secs(1);
            queue.push_front(due);
            None
        }
    }
}

/// Waits `d` unless `stop` completes first (then true).
async fn pause(stop: &mut std::pin::Pin<&mut impl Future<Output = ()>>, d: Duration) -> bool {
    tokio::select! {
        _ = stop.as_mut() => true,
        _ = tokio::time::sleep(d) => false,
    }
}
