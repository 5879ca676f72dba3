//! The reverse follower: after a cut-over, PostgreSQL's changes (the reverse log) applied to
//! SQLite in the legacy's own storage format ([`crate::writeback`]), so legacy stays current
//! for as long as the rollback window lasts.
//!
//! A round reads the log entries past the applied position, reads the current PostgreSQL row
//! of every key they name, and in one SQLite write transaction (`BEGIN IMMEDIATE`, waiting for
//! the app's locks) upserts the rows found, deletes the keys gone, replaces keyless tables
//! whole, and writes the new position into `_ficus_capture` — so the position and the rows
//! commit together, and a killed follower resumes with no gap and no duplicate.
//!
//! PostgreSQL numbers the log from a sequence, and a lower id can commit after a higher one
//! was read; a round therefore stops before a hole in the ids until the hole is
//! [`HOLE_WAIT`] old (a rolled-back insert leaves one for ever).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::types::Value;
use rusqlite::{Connection, TransactionBehavior};

use crate::capture;
use crate::drift::{key_value_from_text, table_views, target_rows_by_key, TableView};
use crate::error::{MigrateError, PgContext, Result, SqliteContext};
use crate::introspect::quote_sqlite;
use crate::plan::Plan;
use crate::rows::{scan_target, CanonRow};
use crate::source::KeyValue;
use crate::writeback::LegacyStyle;

/// How long a hole in the log's ids is waited for before it is taken as permanent.
pub const HOLE_WAIT: Duration = Duration::from_millis(500);
/// Log entries per round at most.
const BATCH: i64 = 5_000;
/// Where the position lives in `_ficus_capture`.
const POSITION: &str = "reverse_position";

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReverseRound {
    /// Log entries covered.
    pub changes: u64,
    /// Rows written or deleted in SQLite.
    pub rows: u64,
    /// The applied position after it.
    pub position: i64,
    /// The log's highest id when it read.
    pub last_id: i64,
}

/// The reverse follower of one migration.
pub struct ReverseFollower {
    views: Vec<TableView>,
    styles: Vec<LegacyStyle>,
    sqlite: Connection,
    position: i64,
    hole: Option<(i64, Instant)>,
}

/// The applied reverse position kept in the legacy database.
pub fn position(conn: &Connection) -> Result<i64> {
    Ok(capture::meta_get(conn, POSITION)
        .table("_ficus_capture")?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// Sets the applied reverse position (a cut-over: where the new log starts).
pub fn set_position(conn: &Connection, position: i64) -> Result<()> {
    capture::meta_set(conn, POSITION, &position.to_string()).table("_ficus_capture")
}

impl ReverseFollower {
    /// Opens the legacy database for writing and learns its storage format (blocking).
    pub fn open(plan: &Plan, source: &Path) -> Result<ReverseFollower> {
        let views = table_views(plan, &crate::config::WatchConfig::default())
            .map_err(|e| MigrateError::Internal(format!("reverse follower: {e}")))?;
        let sqlite = capture::open_rw(source).map_err(|e| MigrateError::Capture {
            path: source.to_path_buf(),
            detail: e.to_string(),
        })?;
        let styles = views
            .iter()
            .map(|v| LegacyStyle::learn(&sqlite, &v.plan))
            .collect::<Result<Vec<_>>>()?;
        let position = position(&sqlite)?;
        Ok(ReverseFollower {
            views,
            styles,
            sqlite,
            position,
            hole: None,
        })
    }

    /// The applied position.
    pub fn position(&self) -> i64 {
        self.position
    }

    /// Re-reads the position from SQLite (after a cut-over set it).
    pub fn reload_position(&mut self) -> Result<()> {
        self.position = position(&self.sqlite)?;
        Ok(())
    }

    /// One round: read, fetch, write. Blocks on SQLite (call from a blocking context or
    /// accept the short write).
    pub async fn round(
        &mut self,
        client: &tokio_postgres::Client,
        schema: &str,
    ) -> Result<ReverseRound> {
        let rows = client
            .query(
                "SELECT id, tbl, k::text, old_k::text FROM ficus.reverse_changes
                 WHERE target_schema = $1 AND id > $2 ORDER BY id LIMIT $3",
                &[&schema, &self.position, &BATCH],
            )
            .await
            .ctx("reading ficus.reverse_changes")?;
        let last_id = rows.last().map_or(self.position, |r| r.get::<_, i64>(0));
        // Take the entries up to the first hole, unless the hole is old enough.
        let mut take = 0usize;
        let mut expect = self.position + 1;
        for r in &rows {
            let id: i64 = r.get(0);
            if id != expect {
                let since = match self.hole {
                    Some((h, t)) if h == expect => t,
                    _ => {
                        self.hole = Some((expect, Instant::now()));
                        Instant::now()
                    }
                };
                if since.elapsed() < HOLE_WAIT {
                    break;
                }
            }
            take += 1;
            expect = id + 1;
        }
        if take > 0 {
            self.hole = None;
        }
        let rows = &rows[..take];
        let mut round = ReverseRound {
            changes: rows.len() as u64,
            position: rows.last().map_or(self.position, |r| r.get(0)),
            last_id,
            ..ReverseRound::default()
        };
        if rows.is_empty() {
            return Ok(round);
        }
        // Keys per table (by canonical key bytes: each row once); tables replaced whole.
        let mut keys: BTreeMap<usize, HashMap<Vec<u8>, Vec<KeyValue>>> = BTreeMap::new();
        let mut whole: Vec<usize> = Vec::new();
        for r in rows {
            let tbl: &str = r.get(1);
            let Some(vi) = self.views.iter().position(|v| v.plan.name == tbl) else {
                continue;
            };
            let view = &self.views[vi];
            if view.plan.key_columns.is_empty() {
                if !whole.contains(&vi) {
                    whole.push(vi);
                }
                continue;
            }
            for text in [r.get::<_, Option<&str>>(2), r.get::<_, Option<&str>>(3)]
                .into_iter()
                .flatten()
            {
                let parts: Vec<Option<String>> = serde_json::from_str(text).map_err(|e| {
                    MigrateError::Internal(format!("reverse log key {text:?} of {tbl}: {e}"))
                })?;
                let key: Vec<KeyValue> = view
                    .plan
                    .key_columns
                    .iter()
                    .zip(&parts)
                    .map(|(&c, p)| match p {
                        Some(s) => key_value_from_text(view.plan.columns[c].conversion.pg_type, s),
                        None => KeyValue::Null,
                    })
                    .collect();
                if let Some(ck) = view.canon_key(&view.plan.key_columns, &key) {
                    keys.entry(vi).or_default().insert(ck, key);
                }
            }
        }
        // PostgreSQL's current rows.
        let mut found: BTreeMap<usize, HashMap<Vec<u8>, CanonRow>> = BTreeMap::new();
        for (vi, ks) in &keys {
            let view = &self.views[*vi];
            let list: Vec<Vec<KeyValue>> = ks.values().cloned().collect();
            let rows = target_rows_by_key(client, schema, view, &view.plan.key_columns, &list)
                .await
                .map_err(|e| MigrateError::Internal(format!("reverse follower: {e}")))?;
            found.insert(*vi, rows);
        }
        let mut whole_rows: BTreeMap<usize, Vec<CanonRow>> = BTreeMap::new();
        for vi in &whole {
            let mut all = Vec::new();
            scan_target(client, schema, &self.views[*vi].plan, None, |r| {
                all.push(r.clone());
                Ok(())
            })
            .await?;
            whole_rows.insert(*vi, all);
        }
        // One SQLite transaction: rows and position together.
        let tx = self
            .sqlite
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .table("(reverse follower: waiting for the legacy's write lock)")?;
        let mut written = 0u64;
        for (vi, ks) in &keys {
            let view = &self.views[*vi];
            let style = &self.styles[*vi];
            let rows = &found[vi];
            for (ck, key) in ks {
                match rows.get(ck) {
                    Some(row) => {
                        let values = legacy_values(view, style, row)?;
                        upsert(&tx, view, &values)?;
                    }
                    None => delete(&tx, view, key)?,
                }
                written += 1;
            }
        }
        for (vi, all) in &whole_rows {
            let view = &self.views[*vi];
            tx.execute(
                &format!("DELETE FROM {}", quote_sqlite(&view.plan.source_name)),
                [],
            )
            .table(&view.plan.source_name)?;
            for row in all {
                let values = legacy_values(view, &self.styles[*vi], row)?;
                insert(&tx, view, &values)?;
                written += 1;
            }
        }
        capture::meta_set(&tx, POSITION, &round.position.to_string()).table("_ficus_capture")?;
        tx.commit().table("(reverse follower: commit)")?;
        self.position = round.position;
        round.rows = written;
        Ok(round)
    }
}

/// The row in the legacy's storage format, each value checked to convert back to what
/// PostgreSQL holds.
fn legacy_values(view: &TableView, style: &LegacyStyle, row: &CanonRow) -> Result<Vec<Value>> {
    (0..view.plan.columns.len())
        .map(|i| {
            style.value(&view.plan, i, row.column(i)).map_err(|reason| {
                MigrateError::Internal(format!(
                    "reverse follower: table {}, key {}, column {}: {reason}",
                    view.plan.name,
                    view.row_display(row),
                    view.plan.columns[i].name
                ))
            })
        })
        .collect()
}

fn column_list(view: &TableView) -> Vec<String> {
    view.plan
        .columns
        .iter()
        .map(|c| quote_sqlite(&c.name))
        .collect()
}

fn insert(tx: &Connection, view: &TableView, values: &[Value]) -> Result<()> {
    let cols = column_list(view);
    let ph: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
    tx.prepare_cached(&format!(
        "INSERT INTO {} ({}) VALUES ({})",
        quote_sqlite(&view.plan.source_name),
        cols.join(", "),
        ph.join(", ")
    ))
    .and_then(|mut st| st.execute(rusqlite::params_from_iter(values)))
    .table(&view.plan.source_name)?;
    Ok(())
}

fn upsert(tx: &Connection, view: &TableView, values: &[Value]) -> Result<()> {
    let cols = column_list(view);
    let ph: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
    let keys: Vec<&str> = view
        .plan
        .key_columns
        .iter()
        .map(|&k| cols[k].as_str())
        .collect();
    let set: Vec<String> = cols
        .iter()
        .enumerate()
        .filter(|(i, _)| !view.plan.key_columns.contains(i))
        .map(|(_, c)| format!("{c} = excluded.{c}"))
        .collect();
    let action = if set.is_empty() {
        "NOTHING".to_string()
    } else {
        format!("UPDATE SET {}", set.join(", "))
    };
    tx.prepare_cached(&format!(
        "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO {action}",
        quote_sqlite(&view.plan.source_name),
        cols.join(", "),
        ph.join(", "),
        keys.join(", ")
    ))
    .and_then(|mut st| st.execute(rusqlite::params_from_iter(values)))
    .table(&view.plan.source_name)?;
    Ok(())
}

fn delete(tx: &Connection, view: &TableView, key: &[KeyValue]) -> Result<()> {
    let cond: Vec<String> = view
        .plan
        .key_columns
        .iter()
        .enumerate()
        .map(|(i, &k)| format!("{} = ?{}", quote_sqlite(&view.plan.columns[k].name), i + 1))
        .collect();
    tx.prepare_cached(&format!(
        "DELETE FROM {} WHERE {}",
        quote_sqlite(&view.plan.source_name),
        cond.join(" AND ")
    ))
    .and_then(|mut st| st.execute(rusqlite::params_from_iter(key)))
    .table(&view.plan.source_name)?;
    Ok(())
}
