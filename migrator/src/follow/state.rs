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
);
ALTER TABLE ficus.follow ADD COLUMN IF NOT EXISTS direction text NOT NULL DEFAULT 'forward';
ALTER TABLE ficus.follow ADD COLUMN IF NOT EXISTS direction_at timestamptz;
CREATE TABLE IF NOT EXISTS ficus.follow_keys (
  target_schema text NOT NULL,
  tbl text NOT NULL,
  k text NOT NULL,
  position bigint NOT NULL,
  PRIMARY KEY (target_schema, tbl, k)
)";

/// Which way the follower applies changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// SQLite's change log into PostgreSQL (legacy is primary).
    Forward,
    /// PostgreSQL's reverse change log into SQLite (after a cut-over: new is primary, legacy
    /// is kept current for a rollback).
    Reverse,
}

impl Direction {
    fn parse(s: &str) -> Direction {
        if s == "reverse" {
            Direction::Reverse
        } else {
            Direction::Forward
        }
    }

    /// `forward` or `reverse`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Forward => "forward",
            Direction::Reverse => "reverse",
        }
    }
}

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
    /// Which way it applies changes now.
    #[serde(default = "forward")]
    pub direction: Direction,
    /// Seconds since the follower last wrote its record (a running follower does, at least
    /// every second).
    #[serde(default)]
    pub idle_seconds: f64,
}

fn forward() -> Direction {
    Direction::Forward
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
                      to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                      direction, extract(epoch FROM clock_timestamp() - updated_at)::float8
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
        direction: Direction::parse(r.get::<_, &str>(10)),
        idle_seconds: r.get(11),
    }))
}

/// Starts (or restarts, for a new epoch) the record at position 0.
pub async fn begin(c: &impl GenericClient, schema: &str, epoch: &str) -> Result<()> {
    c.execute(
        "INSERT INTO ficus.follow (target_schema, epoch) VALUES ($1, $2)
         ON CONFLICT (target_schema) DO UPDATE SET epoch = EXCLUDED.epoch, position = 0,
             changes = 0, rows_applied = 0, rounds = 0, state = 'following',
             direction = 'forward', started_at = now(), updated_at = now()",
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

/// Turns the follower around (a cut-over: `Reverse`; a live rollback: `Forward`, resuming the
/// forward log at `position`, past what the reverse follower itself wrote into SQLite).
pub async fn set_direction(
    c: &impl GenericClient,
    schema: &str,
    direction: Direction,
    position: Option<i64>,
) -> Result<()> {
    c.execute(
        "UPDATE ficus.follow SET direction = $2, direction_at = clock_timestamp(),
             position = coalesce($3, position), updated_at = now()
         WHERE target_schema = $1",
        &[&schema, &direction.as_str(), &position],
    )
    .await
    .ctx("turning the follower around")?;
    Ok(())
}

/// The follower's direction now (forward when it never ran).
pub async fn direction(c: &impl GenericClient, schema: &str) -> Result<(Direction, i64)> {
    let row = c
        .query_opt(
            "SELECT direction, position FROM ficus.follow WHERE target_schema = $1",
            &[&schema],
        )
        .await
        .ctx("reading ficus.follow")?;
    Ok(row.map_or((Direction::Forward, 0), |r| {
        (Direction::parse(r.get::<_, &str>(0)), r.get(1))
    }))
}

/// Records the keys a round applied (inside its transaction): `keys` as (table, key literal;
/// empty for a table replaced whole).
pub async fn record_keys(
    c: &impl GenericClient,
    schema: &str,
    position: i64,
    keys: &[(String, String)],
) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let (tbls, ks): (Vec<&str>, Vec<&str>) =
        keys.iter().map(|(t, k)| (t.as_str(), k.as_str())).unzip();
    c.execute(
        "INSERT INTO ficus.follow_keys (target_schema, tbl, k, position)
         SELECT $1, t, k, $2 FROM unnest($3::text[], $4::text[]) AS x(t, k)
         ON CONFLICT (target_schema, tbl, k) DO UPDATE SET position = EXCLUDED.position",
        &[&schema, &position, &tbls, &ks],
    )
    .await
    .ctx("recording the keys a round applied")?;
    Ok(())
}

/// Keys applied past `after`, per table (source name), as key literals ("" = whole table).
pub async fn keys_after(
    c: &impl GenericClient,
    schema: &str,
    after: i64,
) -> Result<std::collections::BTreeMap<String, Vec<String>>> {
    let rows = c
        .query(
            "SELECT tbl, k FROM ficus.follow_keys WHERE target_schema = $1 AND position > $2",
            &[&schema, &after],
        )
        .await
        .ctx("reading ficus.follow_keys")?;
    let mut out: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for r in rows {
        out.entry(r.get(0)).or_default().push(r.get(1));
    }
    Ok(out)
}

/// A running follower's sign of life when it has nothing to apply.
pub async fn heartbeat(c: &impl GenericClient, schema: &str) -> Result<()> {
    c.execute(
        "UPDATE ficus.follow SET updated_at = now(), lag_changes = 0, lag_seconds = 0
         WHERE target_schema = $1",
        &[&schema],
    )
    .await
    .ctx("updating ficus.follow")?;
    Ok(())
}
