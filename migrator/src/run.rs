//! `migrate run`: create the tables (once, with the migration record, in one transaction),
//! copy every unfinished table from its checkpoint (tables in parallel, bounded), then the
//! post-load steps (keys, UNIQUE, indexes, CHECKs; foreign keys; views; identity sequence
//! resets), each recorded when done. Re-running a finished migration is a no-op.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use crate::carried::Carried;
use crate::checkpoint::{self, Checkpoint};
use crate::config::MigrationConfig;
use crate::copy::{copy_table, CopyLimits};
use crate::error::{MigrateError, PgContext, Result};
use crate::pg::{connect, pg_message};
use crate::plan::{Plan, Step};
use crate::progress::Observer;

/// Options of a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Tables copied (and indexed) at once.
    pub jobs: usize,
    /// Rows per batch (one transaction + checkpoint each).
    pub batch_rows: u64,
    /// Encoded bytes per batch, at most (bounds memory with wide rows).
    pub batch_bytes: usize,
    /// Fail the run once more rows than this are quarantined.
    pub max_rejects: Option<u64>,
    /// Drop what an earlier migration with another fingerprint created, and start over.
    pub restart: bool,
    /// Test hook: sleep after each committed batch and each post-load step.
    pub pause_after_batch: Option<Duration>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            jobs: 2,
            batch_rows: 50_000,
            batch_bytes: 4 << 20,
            max_rejects: None,
            restart: false,
            pause_after_batch: None,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// The target schema.
    pub schema: String,
    /// The plan's fingerprint.
    pub fingerprint: String,
    /// The migration was already complete: nothing was done.
    pub already_complete: bool,
    /// This run continued an interrupted one.
    pub resumed: bool,
    /// Per table.
    pub tables: Vec<TableRunReport>,
    /// Post-load steps that failed without failing the run (e.g. an untranslatable CHECK,
    /// a foreign key with orphans, left NOT VALID).
    pub warnings: Vec<String>,
    /// Rows copied, all runs together.
    pub rows_copied: u64,
    /// Rows quarantined, all runs together.
    pub rows_quarantined: u64,
    /// How long this run took.
    pub seconds: f64,
    /// What was carried and what was not, per kind (the summary `run` ends with).
    pub carried: Carried,
}

/// Per table outcome (totals over all runs of this migration).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableRunReport {
    /// The table (its PostgreSQL name).
    pub table: String,
    /// Rows in the source when it was planned.
    pub source_rows: u64,
    /// Rows copied, all runs together.
    pub rows_copied: u64,
    /// Rows quarantined, all runs together.
    pub rows_quarantined: u64,
    /// Rows copied by this run.
    pub copied_now: u64,
}

/// The plan to run: the one stored in the target by an earlier (interrupted or finished) run
/// when the source file and the configuration are unchanged — no second profiling pass —
/// else a fresh one.
pub async fn plan_for_run(
    source: &Path,
    target: &str,
    schema: &str,
    config: &MigrationConfig,
) -> Result<Plan> {
    let client = connect(target).await?;
    if let Some((_, mut stored)) = checkpoint::load_migration(&client, schema).await? {
        let (s, c, sc, st) = (
            source.to_path_buf(),
            config.clone(),
            schema.to_string(),
            stored.clone(),
        );
        let valid = tokio::task::spawn_blocking(move || st.still_valid_for(&s, &c, &sc))
            .await
            .map_err(|e| MigrateError::Internal(format!("plan thread: {e}")))??;
        if valid {
            stored.source.path = source.display().to_string();
            return Ok(stored);
        }
    }
    let (s, c, sc) = (source.to_path_buf(), config.clone(), schema.to_string());
    tokio::task::spawn_blocking(move || Plan::build(&s, &c, &sc))
        .await
        .map_err(|e| MigrateError::Internal(format!("plan thread: {e}")))?
}

/// Execute `plan` from `source` into `target`.
pub async fn run(
    plan: &Plan,
    source: &Path,
    target: &str,
    opts: &RunOptions,
    obs: &Arc<Observer>,
) -> Result<RunReport> {
    let started = Instant::now();
    let mut main = connect(target).await?;
    checkpoint::ensure_schema(&mut main).await?;
    checkpoint::try_lock(&main, &plan.schema).await?;
    let schema = plan.schema.clone();

    let mut resumed = false;
    match checkpoint::load_migration(&main, &schema).await? {
        Some((state, stored)) if state.fingerprint != plan.fingerprint => {
            if !opts.restart {
                return Err(MigrateError::FingerprintMismatch {
                    schema,
                    stored: state.fingerprint,
                    current: plan.fingerprint.clone(),
                });
            }
            obs.log(&format!(
                "--restart: dropping the earlier migration {} of schema {schema}",
                state.fingerprint
            ));
            checkpoint::drop_migration(&mut main, &schema, &stored).await?;
            create(&mut main, plan).await?;
        }
        Some((state, _)) if state.phase == "done" => {
            let cps = checkpoint::load_checkpoints(&main, &schema).await?;
            let steps = checkpoint::steps_done(&main, &schema).await?;
            obs.phase("done");
            return Ok(report(
                plan,
                &cps,
                &steps,
                &[],
                (true, false),
                Vec::new(),
                started,
            ));
        }
        Some(_) => resumed = true,
        None => create(&mut main, plan).await?,
    }

    // Copy.
    obs.phase("copy");
    let cps = checkpoint::load_checkpoints(&main, &schema).await?;
    let rejects = Arc::new(AtomicU64::new(cps.iter().map(|c| c.rows_quarantined).sum()));
    let limits = CopyLimits {
        batch_rows: opts.batch_rows.max(1),
        batch_bytes: opts.batch_bytes.max(1 << 16),
        max_rejects: opts.max_rejects,
        pause_after_batch: opts.pause_after_batch,
    };
    let sem = Arc::new(tokio::sync::Semaphore::new(opts.jobs.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for t in &plan.tables {
        let Some(cp) = cps.iter().find(|c| c.table == t.name) else {
            return Err(MigrateError::Internal(format!(
                "no checkpoint for table {}",
                t.name
            )));
        };
        obs.table_started(
            &t.name,
            t.rows,
            cp.rows_read,
            cp.rows_copied,
            cp.rows_quarantined,
        );
        if cp.done {
            obs.table_done(&t.name);
            continue;
        }
        let table = Arc::new(t.clone());
        let start = cp.last_key.clone();
        let (sem, rejects, limits) = (sem.clone(), rejects.clone(), limits.clone());
        let (source, target, schema) = (source.to_path_buf(), target.to_string(), schema.clone());
        let obs = obs.clone();
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let mut client = connect(&target).await?;
            // Safe: a batch and its checkpoint commit (or vanish) together even if the server
            // crashes before flushing; it saves a WAL flush wait per batch.
            client
                .batch_execute("SET synchronous_commit = off")
                .await
                .ctx("session setup")?;
            let stats = copy_table(
                &mut client,
                source,
                &schema,
                table.clone(),
                start,
                &limits,
                &rejects,
                &obs,
            )
            .await?;
            obs.table_done(&table.name);
            Ok::<_, MigrateError>((table.name.clone(), stats.copied))
        });
    }
    let mut copied_now = Vec::new();
    let mut first_err = None;
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok(x)) => copied_now.push(x),
            Ok(Err(e)) => {
                if first_err.is_none() {
                    first_err = Some(e);
                    tasks.abort_all();
                }
            }
            Err(e) if e.is_cancelled() => {}
            Err(e) => {
                first_err.get_or_insert(MigrateError::Internal(format!("copy task: {e}")));
            }
        }
    }
    if let Some(e) = first_err {
        obs.phase("failed");
        return Err(e);
    }

    // Post-load.
    obs.phase("postload");
    checkpoint::set_phase(&main, &schema, "postload").await?;
    let warnings = post_load(plan, target, opts, obs)
        .await
        .inspect_err(|_| obs.phase("failed"))?;
    checkpoint::set_phase(&main, &schema, "done").await?;
    obs.phase("done");
    let cps = checkpoint::load_checkpoints(&main, &schema).await?;
    let steps = checkpoint::steps_done(&main, &schema).await?;
    Ok(report(
        plan,
        &cps,
        &steps,
        &copied_now,
        (false, resumed),
        warnings,
        started,
    ))
}

async fn create(main: &mut Client, plan: &Plan) -> Result<()> {
    let tx = main.transaction().await.ctx("begin")?;
    for t in &plan.tables {
        let exists: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2)",
                &[&plan.schema, &t.name],
            )
            .await
            .ctx("checking target tables")?
            .get(0);
        if exists {
            return Err(MigrateError::TargetTableExists {
                schema: plan.schema.clone(),
                table: t.name.clone(),
            });
        }
    }
    for sql in plan.create_sql() {
        tx.batch_execute(&sql)
            .await
            .ctx(format!("creating tables: {sql}"))?;
    }
    checkpoint::insert_migration(&tx, plan).await?;
    tx.commit().await.ctx("commit")?;
    Ok(())
}

async fn post_load(
    plan: &Plan,
    target: &str,
    opts: &RunOptions,
    obs: &Observer,
) -> Result<Vec<String>> {
    let schema = &plan.schema;
    let main = connect(target).await?;
    let done = checkpoint::steps_done(&main, schema).await?;
    let mut warnings: Vec<String> = done
        .iter()
        .filter(|(_, o, _)| o != "ok")
        .map(|(s, _, e)| format!("{s}: {}", e.clone().unwrap_or_default()))
        .collect();
    let pending: Vec<Step> = plan
        .post_load_steps()
        .into_iter()
        .filter(|s| !done.iter().any(|(d, _, _)| d == &s.id))
        .collect();
    for stage in 0..=2u8 {
        let steps: Vec<&Step> = pending.iter().filter(|s| s.stage == stage).collect();
        if steps.is_empty() {
            continue;
        }
        // Stage 0 runs tables in parallel; later stages in order on one connection.
        let mut groups: Vec<Vec<Step>> = Vec::new();
        if stage == 0 {
            for s in steps {
                match groups.iter_mut().find(|g| g[0].table == s.table) {
                    Some(g) => g.push(s.clone()),
                    None => groups.push(vec![s.clone()]),
                }
            }
        } else {
            groups.push(steps.into_iter().cloned().collect());
        }
        let sem = Arc::new(tokio::sync::Semaphore::new(opts.jobs.max(1)));
        let mut set = tokio::task::JoinSet::new();
        for g in groups {
            let (sem, target, schema) = (sem.clone(), target.to_string(), schema.clone());
            let pause = opts.pause_after_batch;
            set.spawn(async move {
                let _p = sem.acquire_owned().await;
                let mut c = connect(&target).await?;
                c.batch_execute("SET maintenance_work_mem = '256MB'")
                    .await
                    .ctx("session setup")?;
                let mut out = Vec::new();
                for s in g {
                    out.push(run_step(&mut c, &schema, &s).await?);
                    if let Some(p) = pause {
                        tokio::time::sleep(p).await;
                    }
                }
                Ok::<_, MigrateError>(out)
            });
        }
        let mut errors = Vec::new();
        while let Some(r) = set.join_next().await {
            let outs = r.map_err(|e| MigrateError::Internal(format!("post-load task: {e}")))??;
            for (step, outcome) in outs {
                match outcome {
                    StepOutcome::Ok => {}
                    StepOutcome::Warning(e) => {
                        obs.log(&format!("warning: {}: {e}", step.id));
                        warnings.push(format!("{}: {e}", step.id));
                    }
                    StepOutcome::Failed(e) => errors.push(format!("{}: {e}", step.id)),
                }
            }
        }
        if !errors.is_empty() {
            return Err(MigrateError::Internal(format!(
                "post-load steps failed (the data is copied; fix and re-run): {}",
                errors.join("; ")
            )));
        }
    }
    Ok(warnings)
}

enum StepOutcome {
    Ok,
    Warning(String),
    Failed(String),
}

async fn run_step(c: &mut Client, schema: &str, s: &Step) -> Result<(Step, StepOutcome)> {
    let tx = c.transaction().await.ctx("begin")?;
    match tx.batch_execute(&s.sql).await {
        Ok(()) => {
            tx.execute(
                "INSERT INTO ficus.steps (target_schema, step, outcome) VALUES ($1, $2, 'ok')",
                &[&schema, &s.id],
            )
            .await
            .ctx("recording a step")?;
            tx.commit().await.ctx("commit")?;
            Ok((s.clone(), StepOutcome::Ok))
        }
        Err(e) => {
            let msg = pg_message(&e);
            drop(tx);
            if s.required {
                return Ok((s.clone(), StepOutcome::Failed(msg)));
            }
            c.execute(
                "INSERT INTO ficus.steps (target_schema, step, outcome, error) VALUES ($1, $2, 'failed', $3)",
                &[&schema, &s.id, &msg],
            )
            .await
            .ctx("recording a step")?;
            Ok((s.clone(), StepOutcome::Warning(msg)))
        }
    }
}

fn report(
    plan: &Plan,
    cps: &[Checkpoint],
    steps: &[(String, String, Option<String>)],
    copied_now: &[(String, u64)],
    (already_complete, resumed): (bool, bool),
    warnings: Vec<String>,
    started: Instant,
) -> RunReport {
    let tables: Vec<TableRunReport> = plan
        .tables
        .iter()
        .map(|t| {
            let cp = cps.iter().find(|c| c.table == t.name);
            TableRunReport {
                table: t.name.clone(),
                source_rows: t.rows,
                rows_copied: cp.map_or(0, |c| c.rows_copied),
                rows_quarantined: cp.map_or(0, |c| c.rows_quarantined),
                copied_now: copied_now
                    .iter()
                    .find(|(n, _)| n == &t.name)
                    .map_or(0, |(_, c)| *c),
            }
        })
        .collect();
    let rows_copied = tables.iter().map(|t| t.rows_copied).sum();
    let rows_quarantined = tables.iter().map(|t| t.rows_quarantined).sum();
    RunReport {
        schema: plan.schema.clone(),
        fingerprint: plan.fingerprint.clone(),
        already_complete,
        resumed,
        rows_copied,
        rows_quarantined,
        carried: Carried::of(plan, steps, rows_copied, rows_quarantined),
        tables,
        warnings,
        seconds: started.elapsed().as_secs_f64(),
    }
}
