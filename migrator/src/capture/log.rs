//! Reading and trimming the change log.

use rusqlite::Connection;

use super::ddl::LOG_TABLE;

/// What happened to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// INSERT.
    Insert,
    /// UPDATE.
    Update,
    /// DELETE.
    Delete,
}

/// One logged change.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Position in the log (only grows).
    pub id: i64,
    /// Source table.
    pub table: String,
    /// What happened.
    pub op: Op,
    /// The row's key as comma-separated SQL literals; `None` for a table without a key.
    pub key: Option<String>,
    /// The key before an UPDATE that changed it.
    pub old_key: Option<String>,
    /// When (julian day, SQLite's clock).
    pub at: f64,
}

/// Counts over the log past a position.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PendingStats {
    /// Changes past the position.
    pub changes: u64,
    /// The highest id.
    pub last_id: i64,
    /// Age of the oldest change past the position, seconds (SQLite's clock).
    pub oldest_age_s: Option<f64>,
}

/// The change log of a source with capture installed.
pub struct ChangeLog;

impl ChangeLog {
    /// Changes with `after < id <= until`, by id, at most `limit`.
    pub fn read(
        conn: &Connection,
        after: i64,
        until: i64,
        limit: usize,
    ) -> rusqlite::Result<Vec<Change>> {
        let mut st = conn.prepare_cached(&format!(
            "SELECT id, tbl, op, k, old_k, at FROM {LOG_TABLE} WHERE id > ?1 AND id <= ?2 ORDER BY id LIMIT ?3"
        ))?;
        let rows = st.query_map(
            rusqlite::params![after, until, i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| {
                let op: String = r.get(2)?;
                Ok(Change {
                    id: r.get(0)?,
                    table: r.get(1)?,
                    op: match op.as_str() {
                        "I" => Op::Insert,
                        "D" => Op::Delete,
                        _ => Op::Update,
                    },
                    key: r.get(3)?,
                    old_key: r.get(4)?,
                    at: r.get(5)?,
                })
            },
        )?;
        rows.collect()
    }

    /// The highest id in the log (0 when empty).
    pub fn last_id(conn: &Connection) -> rusqlite::Result<i64> {
        conn.query_row(
            &format!("SELECT coalesce(max(id), 0) FROM {LOG_TABLE}"),
            [],
            |r| r.get(0),
        )
    }

    /// Counts past `after`.
    pub fn pending(conn: &Connection, after: i64) -> rusqlite::Result<PendingStats> {
        conn.query_row(
            &format!(
                "SELECT count(*), coalesce(max(id), ?1), (julianday('now') - min(at)) * 86400.0
                 FROM {LOG_TABLE} WHERE id > ?1"
            ),
            [after],
            |r| {
                Ok(PendingStats {
                    changes: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                    last_id: r.get(1)?,
                    oldest_age_s: r.get(2)?,
                })
            },
        )
    }

    /// Deletes applied changes below `below` (the applied position's own row stays, so ids
    /// keep growing), `batch` rows per short write transaction; returns how many went.
    pub fn trim(conn: &Connection, below: i64, batch: usize) -> rusqlite::Result<u64> {
        let mut total = 0u64;
        let batch = i64::try_from(batch).unwrap_or(1000);
        loop {
            let n = conn.execute(
                &format!(
                    "DELETE FROM {LOG_TABLE} WHERE id IN
                       (SELECT id FROM {LOG_TABLE} WHERE id < ?1 ORDER BY id LIMIT ?2)"
                ),
                rusqlite::params![below, batch],
            )?;
            total += n as u64;
            if (n as i64) < batch {
                return Ok(total);
            }
        }
    }
}
