//! The migrator's state in the target, in schema `ficus`: one migration row per target
//! schema (fingerprint, plan, phase), one checkpoint per table (last key read, counts, done),
//! the post-load steps done, quarantine and verification results. A batch's rows and its
//! checkpoint are committed in one transaction, so a killed run resumes with no gap and no
//! duplicate.

use serde::{Deserialize, Serialize};
use tokio_postgres::{Client, GenericClient};

use crate::error::{MigrateError, PgContext, Result};
use crate::plan::Plan;
use crate::source::SourceKey;

const SCHEMA_SQL: &str = "
CREATE SCHEMA IF NOT EXISTS ficus;
CREATE TABLE IF NOT EXISTS ficus.migrations (
  target_schema text PRIMARY KEY,
  fingerprint text NOT NULL,
  source_path text NOT NULL,
  plan text NOT NULL,
  phase text NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz
);
CREATE TABLE IF NOT EXISTS ficus.checkpoints (
  target_schema text NOT NULL,
  table_name text NOT NULL,
  last_key text,
  source_rows bigint NOT NULL DEFAULT 0,
  rows_read bigint NOT NULL DEFAULT 0,
  rows_copied bigint NOT NULL DEFAULT 0,
  rows_quarantined bigint NOT NULL DEFAULT 0,
  batches bigint NOT NULL DEFAULT 0,
  done boolean NOT NULL DEFAULT false,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (target_schema, table_name)
);
CREATE TABLE IF NOT EXISTS ficus.steps (
  target_schema text NOT NULL,
  step text NOT NULL,
  outcome text NOT NULL,
  error text,
  done_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (target_schema, step)
);
CREATE TABLE IF NOT EXISTS ficus.quarantine (
  id bigserial PRIMARY KEY,
  target_schema text NOT NULL,
  table_name text NOT NULL,
  key text NOT NULL,
  column_name text NOT NULL,
  storage_class text NOT NULL,
  raw_value bytea,
  raw_display text NOT NULL,
  reason text NOT NULL,
  quarantined_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS quarantine_table_key ON ficus.quarantine (target_schema, table_name, key);
CREATE TABLE IF NOT EXISTS ficus.verifications (
  id bigserial PRIMARY KEY,
  target_schema text NOT NULL,
  table_name text NOT NULL,
  verified_at timestamptz NOT NULL DEFAULT now(),
  clean boolean NOT NULL,
  source_rows bigint NOT NULL,
  target_rows bigint NOT NULL,
  quarantined bigint NOT NULL,
  missing bigint NOT NULL,
  extra bigint NOT NULL,
  differs bigint NOT NULL,
  detail text
);
";

/// Create the `ficus` schema and its tables if absent (serialised by an advisory lock, so
/// concurrent first runs do not race).
pub async fn ensure_schema(client: &mut Client) -> Result<()> {
    let tx = client.transaction().await.ctx("begin")?;
    tx.batch_execute("SELECT pg_advisory_xact_lock(7415826019)")
        .await
        .ctx("locking the ficus schema")?;
    tx.batch_execute(SCHEMA_SQL)
        .await
        .ctx("creating the ficus schema")?;
    tx.commit().await.ctx("commit")?;
    Ok(())
}

/// Whether the `ficus` schema exists.
pub async fn schema_exists(client: &impl GenericClient) -> Result<bool> {
    let row = client
        .query_one("SELECT to_regclass('ficus.migrations') IS NOT NULL", &[])
        .await
        .ctx("looking for the ficus schema")?;
    Ok(row.get(0))
}

/// Hold the per-schema run lock for the life of `client`'s session.
/// Waits up to 5 s: the server may not yet have noticed that a killed run's session is gone.
pub async fn try_lock(client: &Client, schema: &str) -> Result<()> {
    for _ in 0..50 {
        let row = client
            .query_one(
                "SELECT pg_try_advisory_lock(hashtext('ficus-migrate:' || $1))",
                &[&schema],
            )
            .await
            .ctx("taking the run lock")?;
        if row.get::<_, bool>(0) {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(MigrateError::Locked(schema.to_string()))
}

/// The migration row of a target schema.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MigrationState {
    pub fingerprint: String,
    pub source_path: String,
    pub phase: String,
    pub started_at: String,
    pub finished_at: Option<String>,
}

/// Load the migration row (and its stored plan).
pub async fn load_migration(
    client: &impl GenericClient,
    schema: &str,
) -> Result<Option<(MigrationState, Plan)>> {
    if !schema_exists(client).await? {
        return Ok(None);
    }
    let row = client
        .query_opt(
            "SELECT fingerprint, source_path, phase, started_at::text, finished_at::text, plan \
             FROM ficus.migrations WHERE target_schema = $1",
            &[&schema],
        )
        .await
        .ctx("reading ficus.migrations")?;
    let Some(r) = row else { return Ok(None) };
    let plan_text: String = r.get(5);
    let plan: Plan = serde_json::from_str(&plan_text)
        .map_err(|e| MigrateError::Internal(format!("stored plan does not parse: {e}")))?;
    Ok(Some((
        MigrationState {
            fingerprint: r.get(0),
            source_path: r.get(1),
            phase: r.get(2),
            started_at: r.get(3),
            finished_at: r.get(4),
        },
        plan,
    )))
}

/// One table's checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    pub table: String,
    pub last_key: Option<SourceKey>,
    pub source_rows: u64,
    pub rows_read: u64,
    pub rows_copied: u64,
    pub rows_quarantined: u64,
    pub batches: u64,
    pub done: bool,
    pub updated_at: String,
}

/// All checkpoints of a target schema.
pub async fn load_checkpoints(
    client: &impl GenericClient,
    schema: &str,
) -> Result<Vec<Checkpoint>> {
    let rows = client
        .query(
            "SELECT table_name, last_key, source_rows, rows_read, rows_copied, rows_quarantined, batches, done, updated_at::text \
             FROM ficus.checkpoints WHERE target_schema = $1 ORDER BY table_name",
            &[&schema],
        )
        .await
        .ctx("reading ficus.checkpoints")?;
    rows.iter()
        .map(|r| {
            let key: Option<String> = r.get(1);
            let last_key =
                match key {
                    Some(k) => Some(serde_json::from_str(&k).map_err(|e| {
                        MigrateError::Internal(format!("checkpoint key {k:?}: {e}"))
                    })?),
                    None => None,
                };
            Ok(Checkpoint {
                table: r.get(0),
                last_key,
                source_rows: r.get::<_, i64>(2) as u64,
                rows_read: r.get::<_, i64>(3) as u64,
                rows_copied: r.get::<_, i64>(4) as u64,
                rows_quarantined: r.get::<_, i64>(5) as u64,
                batches: r.get::<_, i64>(6) as u64,
                done: r.get(7),
                updated_at: r.get(8),
            })
        })
        .collect()
}

/// Record a new migration (call inside the transaction that creates the tables).
pub async fn insert_migration(tx: &impl GenericClient, plan: &Plan) -> Result<()> {
    let json = serde_json::to_string(plan).map_err(|e| MigrateError::Internal(e.to_string()))?;
    tx.execute(
        "INSERT INTO ficus.migrations (target_schema, fingerprint, source_path, plan, phase) VALUES ($1, $2, $3, $4, 'copy')",
        &[&plan.schema, &plan.fingerprint, &plan.source.path, &json],
    )
    .await
    .ctx("recording the migration")?;
    for t in &plan.tables {
        tx.execute(
            "INSERT INTO ficus.checkpoints (target_schema, table_name, source_rows) VALUES ($1, $2, $3)",
            &[&plan.schema, &t.name, &(t.rows as i64)],
        )
        .await
        .ctx("creating checkpoints")?;
    }
    Ok(())
}

/// Advance a checkpoint (inside the batch's transaction).
#[allow(clippy::too_many_arguments)]
pub async fn advance(
    tx: &impl GenericClient,
    schema: &str,
    table: &str,
    last_key: Option<&SourceKey>,
    read: u64,
    copied: u64,
    quarantined: u64,
    done: bool,
) -> Result<()> {
    let key = last_key
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| MigrateError::Internal(e.to_string()))?;
    tx.execute(
        "UPDATE ficus.checkpoints SET last_key = coalesce($3, last_key), rows_read = rows_read + $4, \
         rows_copied = rows_copied + $5, rows_quarantined = rows_quarantined + $6, batches = batches + 1, \
         done = $7, updated_at = now() WHERE target_schema = $1 AND table_name = $2",
        &[&schema, &table, &key, &(read as i64), &(copied as i64), &(quarantined as i64), &done],
    )
    .await
    .ctx(format!("advancing the checkpoint of {table}"))?;
    Ok(())
}

/// Set the migration phase (`copy`, `postload`, `done`).
pub async fn set_phase(client: &impl GenericClient, schema: &str, phase: &str) -> Result<()> {
    client
        .execute(
            "UPDATE ficus.migrations SET phase = $2, finished_at = CASE WHEN $2 = 'done' THEN now() END WHERE target_schema = $1",
            &[&schema, &phase],
        )
        .await
        .ctx("setting the migration phase")?;
    Ok(())
}

/// Steps already done: (step id, outcome, error).
pub async fn steps_done(
    client: &impl GenericClient,
    schema: &str,
) -> Result<Vec<(String, String, Option<String>)>> {
    let rows = client
        .query(
            "SELECT step, outcome, error FROM ficus.steps WHERE target_schema = $1",
            &[&schema],
        )
        .await
        .ctx("reading ficus.steps")?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}

/// Forget everything about a target schema's migration and drop what it created.
pub async fn drop_migration(client: &mut Client, schema: &str, stored: &Plan) -> Result<()> {
    let tx = client.transaction().await.ctx("begin")?;
    for v in &stored.views {
        tx.batch_execute(&format!(
            "DROP VIEW IF EXISTS {} CASCADE",
            crate::plan::qualified(schema, &v.name)
        ))
        .await
        .ctx(format!("dropping view {}", v.name))?;
    }
    for t in &stored.tables {
        tx.batch_execute(&format!(
            "DROP TABLE IF EXISTS {} CASCADE",
            crate::plan::qualified(schema, &t.name)
        ))
        .await
        .ctx(format!("dropping table {}", t.name))?;
    }
    for table in [
        "migrations",
        "checkpoints",
        "steps",
        "quarantine",
        "verifications",
    ] {
        tx.execute(
            &format!("DELETE FROM ficus.{table} WHERE target_schema = $1"),
            &[&schema],
        )
        .await
        .ctx("clearing ficus state")?;
    }
    tx.commit().await.ctx("commit")?;
    Ok(())
}
