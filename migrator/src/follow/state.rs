//! `ficus.follow`: where the follower is, per target schema — the capture epoch it follows,
//! the applied log position (written in the same transaction as the rows it covers, so a
//! killed follower resumes with no gap and no duplicate), totals, and the last lag seen.

use serde::Serialize;
use tokio_postgres::GenericClient;

use crate::error::{PgContext, Result};

const DDL: &str = "CREATE SCHEMA IF NOT EXISTS ficus;
CREATE TABLE IF NOT EXISTS ficus.follow (
  target_schema text PRIMARY KEY,
  epoch text NOT NULL,
  position bigint NOT NULL DEFAULT 0,
  changes bigint NOT NULL DEFAULT 0,
  rows_applied bigint NOT NULL DEFAULT 0,
  rounds bigint NOT NULL DEFAULT 0,
  lag_changes bigint NOT NULL DEFAULT 0,
  lag_seconds double precision NOT NULL DEFAULT 0,
  state text NOT NULL DEFAULT 'following',
  started_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
)";

/// The follower's record.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct FollowState {
    /// The capture epoch followed.
    pub epoch: String,
    /// The applied log position.
    pub position: i64,
    /// Log entries applied, in total.
    pub changes: i64,
    /// Rows upserted or deleted, in total.
    pub rows_applied: i64,
    /// Rounds committed.
    pub rounds: i64,
    /// Changes logged past the position at the last round.
    pub lag_changes: i64,
    /// Age of the oldest unapplied change at the last round, seconds.
    pub lag_seconds: f64,
    /// `following`, or why it stopped.
    pub state: String,
    /// When following began (RFC 3339).
    pub started_at: String,
    /// Last round (RFC 3339).
    pub updated_at: String,
}

/// Creates `ficus.follow` if absent.
pub async fn ensure(c: &impl GenericClient) -> Result<()> {
    c.batch_execute(DDL).await.ctx("creating ficus.follow")
}

/// The follower's record for `schema`, if it ever ran.
pub async fn load(c: &impl GenericClient, schema: &str) -> Result<Option<FollowState>> {
    let exists: bool = c
        .query_one("SELECT to_regclass('ficus.follow') IS NOT NULL", &[])
        .await
        .ctx("reading ficus.follow")?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = c
        .query_opt(
            r#"SELECT epoch, position, changes, rows_applied, rounds, lag_changes, lag_seconds, state,
                      to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                      to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
               FROM ficus.follow WHERE target_schema = $1"#,
            &[&schema],
        )
        .await
        .ctx("reading ficus.follow")?;
    Ok(row.map(|r| FollowState {
        epoch: r.get(0),
        position: r.get(1),
        changes: r.get(2),
        rows_applied: r.get(3),
        rounds: r.get(4),
        lag_changes: r.get(5),
        lag_seconds: r.get(6),
        state: r.get(7),
        started_at: r.get(8),
        updated_at: r.get(9),
    }))
}

/// Starts (or restarts, for a new epoch) the record at position 0.
pub async fn begin(c: &impl GenericClient, schema: &str, epoch: &str) -> Result<()> {
    c.execute(
        "INSERT INTO ficus.follow (target_schema, epoch) VALUES ($1, $2)
         ON CONFLICT (target_schema) DO UPDATE SET epoch = EXCLUDED.epoch, position = 0,
             changes = 0, rows_applied = 0, rounds = 0, state = 'following',
             started_at = now(), updated_at = now()",
        &[&schema, &epoch],
    )
    .await
    .ctx("starting ficus.follow")?;
    Ok(())
}

/// Advances the position (inside the round's transaction).
#[allow(clippy::too_many_arguments)]
pub async fn advance(
    c: &impl GenericClient,
    schema: &str,
    position: i64,
    changes: i64,
    rows: i64,
    lag_changes: i64,
    lag_seconds: f64,
) -> Result<()> {
    c.execute(
        "UPDATE ficus.follow SET position = $2, changes = changes + $3, rows_applied = rows_applied + $4,
             rounds = rounds + 1, lag_changes = $5, lag_seconds = $6, state = 'following', updated_at = now()
         WHERE target_schema = $1",
        &[&schema, &position, &changes, &rows, &lag_changes, &lag_seconds],
    )
    .await
    .ctx("advancing ficus.follow")?;
    Ok(())
}

/// Records the lag seen by a round that had nothing to apply, or why following stopped.
pub async fn note(
    c: &impl GenericClient,
    schema: &str,
    lag_changes: i64,
    lag_seconds: f64,
    state: &str,
) -> Result<()> {
    c.execute(
        "UPDATE ficus.follow SET lag_changes = $2, lag_seconds = $3, state = $4, updated_at = now()
         WHERE target_schema = $1",
        &[&schema, &lag_changes, &lag_seconds, &state],
    )
    .await
    .ctx("updating ficus.follow")?;
    Ok(())
}
