//! The SQLite side of one follow round: in one short read transaction (a consistent snapshot
//! of the source), the changes logged past the applied position and the current state of
//! every row they name — encoded for PostgreSQL as binary COPY tuples, exactly as the backfill
//! encodes them.
//!
//! Because the rows are read in the same snapshot as the log, every change up to the round's
//! position is reflected in them, and rows changed again later are read again in a later
//! round: after a round commits, PostgreSQL holds SQLite's state as of that snapshot for every
//! key the round covered ("current state of a key" is idempotent and order-insensitive).

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::types::ValueRef;
use rusqlite::Connection;

use crate::capture::{Change, ChangeLog, Op};
use crate::error::{Result, SqliteContext};
use crate::introspect::quote_sqlite;
use crate::plan::{Plan, TablePlan};
use crate::quarantine::QuarantineRecord;
use crate::source::{key_json_value, KeyValue};

/// Keys per `IN (...)` list.
const KEYS_PER_QUERY: usize = 400;

/// What one table gets in a round.
#[derive(Debug, Default)]
pub(crate) struct TableDelta {
    /// Index into the plan's tables.
    pub table: usize,
    /// Rows to upsert (binary COPY tuples, all columns in plan order).
    pub upserts: Vec<u8>,
    pub upsert_rows: u64,
    /// Keys to delete (binary COPY tuples of the key columns).
    pub deletes: Vec<u8>,
    pub delete_rows: u64,
    /// A table without a key: `upserts` is the whole table, to replace what PostgreSQL holds.
    pub replace_all: bool,
    /// Values that did not convert (their rows are deleted from PostgreSQL, as the backfill
    /// would not have copied them).
    pub quarantine: Vec<QuarantineRecord>,
    /// Keys (as people see them) of rows carried whole this round: any earlier quarantine
    /// record of theirs is void.
    pub carried_keys: Vec<String>,
    /// The keys read (SQL literals, as the log has them), for a settle re-check.
    pub keys: Vec<String>,
}

/// One round's reading.
#[derive(Debug, Default)]
pub(crate) struct Round {
    /// The log position the round covers (its last change's id).
    pub position: i64,
    /// Log entries covered.
    pub changes: u64,
    /// The highest id in the log at the snapshot (lag in changes = last_id - position).
    pub last_id: i64,
    /// Every pending change was taken (the snapshot is complete up to `last_id`).
    pub complete: bool,
    /// Age of the oldest change the round covers, seconds (SQLite's clock).
    pub oldest_age_s: Option<f64>,
    /// The source's schema version at the snapshot.
    pub schema_version: i64,
    pub tables: Vec<TableDelta>,
}

impl Round {
    /// Rows written (upserted or deleted) by the round.
    pub fn rows(&self) -> u64 {
        self.tables
            .iter()
            .map(|t| t.upsert_rows + t.delete_rows)
            .sum()
    }
}

/// Reads the changes past `after` (at most `limit`) and the rows they name, in one snapshot.
pub(crate) fn read_round(
    conn: &Connection,
    plan: &Plan,
    after: i64,
    limit: usize,
) -> Result<Round> {
    conn.execute_batch("BEGIN").table("(follow snapshot)")?;
    let r = read_in_snapshot(conn, plan, after, limit);
    // A read transaction: ending it cannot lose anything.
    let _ = conn.execute_batch("COMMIT");
    r
}

fn read_in_snapshot(conn: &Connection, plan: &Plan, after: i64, limit: usize) -> Result<Round> {
    let log = crate::capture::LOG_TABLE;
    let schema_version: i64 = conn
        .query_row("PRAGMA schema_version", [], |r| r.get(0))
        .table("(schema version)")?;
    let last_id = ChangeLog::last_id(conn).table(log)?;
    let changes = ChangeLog::read(conn, after, last_id, limit).table(log)?;
    let mut round = Round {
        position: changes.last().map_or(after, |c| c.id),
        changes: changes.len() as u64,
        last_id,
        complete: changes.len() < limit || changes.last().is_some_and(|c| c.id == last_id),
        oldest_age_s: changes.first().map(|c| age_s(conn, c)).transpose()?,
        schema_version,
        tables: Vec::new(),
    };
    // Distinct keys per table (key literal text); keyless tables just marked.
    let mut keys: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    let mut whole: BTreeSet<usize> = BTreeSet::new();
    for c in &changes {
        let Some(ti) = plan.tables.iter().position(|t| t.source_name == c.table) else {
            continue; // a table the plan does not migrate (skipped by configuration)
        };
        if plan.tables[ti].key_columns.is_empty() {
            whole.insert(ti);
            continue;
        }
        let set = keys.entry(ti).or_default();
        if let Some(k) = &c.key {
            set.insert(k.clone());
        }
        if let (Op::Update, Some(k)) = (c.op, &c.old_key) {
            set.insert(k.clone());
        }
    }
    for (ti, set) in keys {
        round
            .tables
            .push(read_keys(conn, &plan.tables[ti], ti, &set)?);
    }
    for ti in whole {
        round.tables.push(read_whole(conn, &plan.tables[ti], ti)?);
    }
    Ok(round)
}

fn age_s(conn: &Connection, c: &Change) -> Result<f64> {
    conn.query_row("SELECT (julianday('now') - ?1) * 86400.0", [c.at], |r| {
        r.get(0)
    })
    .table("(clock)")
}

/// `quote(a) || ',' || quote(b)`: the key as the capture triggers write it.
fn key_literal_expr(t: &TablePlan) -> String {
    t.key_columns
        .iter()
        .map(|&c| format!("quote({})", quote_sqlite(&t.columns[c].name)))
        .collect::<Vec<_>>()
        .join(" || ',' || ")
}

/// The key columns as a row value: `"a"` or `("a", "b")`.
fn key_tuple(t: &TablePlan) -> String {
    let cols: Vec<String> = t
        .key_columns
        .iter()
        .map(|&c| quote_sqlite(&t.columns[c].name))
        .collect();
    if cols.len() == 1 {
        cols[0].clone()
    } else {
        format!("({})", cols.join(", "))
    }
}

fn owned(v: ValueRef<'_>) -> KeyValue {
    KeyValue::from_ref(v)
}

fn as_ref(v: &KeyValue) -> ValueRef<'_> {
    v.as_ref()
}

/// Appends one row's tuple (all columns) or its quarantine records; true when encoded.
fn encode_row(
    t: &TablePlan,
    values: &[KeyValue],
    out: &mut Vec<u8>,
    quarantine: &mut Vec<QuarantineRecord>,
) -> bool {
    let start = out.len();
    out.extend_from_slice(&(t.columns.len() as i16).to_be_bytes());
    let mut ok = true;
    for (i, c) in t.columns.iter().enumerate() {
        let v = as_ref(&values[i]);
        if let Err(e) = c.conversion.encode(v, out) {
            ok = false;
            let key = display_of(t, values);
            quarantine.push(QuarantineRecord::new(key, &c.name, &v, e.0));
        }
    }
    if !ok {
        out.truncate(start);
    }
    ok
}

fn display_of(t: &TablePlan, values: &[KeyValue]) -> String {
    let mut m = serde_json::Map::new();
    for &c in &t.key_columns {
        m.insert(
            t.columns[c].name.clone(),
            key_json_value(as_ref(&values[c])),
        );
    }
    serde_json::Value::Object(m).to_string()
}

/// Appends a key tuple (the key columns) for a delete; false when a key value does not
/// convert (it cannot be in PostgreSQL then either).
fn encode_key(t: &TablePlan, key: &[KeyValue], out: &mut Vec<u8>) -> bool {
    let start = out.len();
    out.extend_from_slice(&(t.key_columns.len() as i16).to_be_bytes());
    for (j, &c) in t.key_columns.iter().enumerate() {
        if t.columns[c]
            .conversion
            .encode(as_ref(&key[j]), out)
            .is_err()
        {
            out.truncate(start);
            return false;
        }
    }
    true
}

pub(crate) fn read_keys(
    conn: &Connection,
    t: &TablePlan,
    ti: usize,
    keys: &BTreeSet<String>,
) -> Result<TableDelta> {
    let mut d = TableDelta {
        table: ti,
        keys: keys.iter().cloned().collect(),
        ..TableDelta::default()
    };
    let cols: Vec<String> = t.columns.iter().map(|c| quote_sqlite(&c.name)).collect();
    let name = quote_sqlite(&t.source_name);
    let lit = key_literal_expr(t);
    let tuple = key_tuple(t);
    let single = t.key_columns.len() == 1;
    let list: Vec<&String> = keys.iter().collect();
    for chunk in list.chunks(KEYS_PER_QUERY) {
        let in_list = if single {
            chunk
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            format!(
                "VALUES {}",
                chunk
                    .iter()
                    .map(|k| format!("({k})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let sql = format!(
            "SELECT {lit}, {} FROM {name} WHERE {tuple} IN ({in_list})",
            cols.join(", ")
        );
        let mut found: BTreeSet<String> = BTreeSet::new();
        {
            let mut st = conn.prepare(&sql).table(&t.source_name)?;
            let mut rows = st.query([]).table(&t.source_name)?;
            while let Some(r) = rows.next().table(&t.source_name)? {
                let k: String = r.get(0).table(&t.source_name)?;
                found.insert(k);
                let values: Vec<KeyValue> = (0..t.columns.len())
                    .map(|i| owned(r.get_ref(i + 1).unwrap_or(ValueRef::Null)))
                    .collect();
                if encode_row(t, &values, &mut d.upserts, &mut d.quarantine) {
                    d.upsert_rows += 1;
                    d.carried_keys.push(display_of(t, &values));
                } else {
                    // Not carried: whatever PostgreSQL holds for the key goes.
                    let key: Vec<_> = t.key_columns.iter().map(|&c| values[c].clone()).collect();
                    if encode_key(t, &key, &mut d.deletes) {
                        d.delete_rows += 1;
                    }
                }
            }
        }
        // Keys no row has any more: deleted (or moved to another key) in SQLite.
        let gone: Vec<&&String> = chunk
            .iter()
            .filter(|k| !found.contains(k.as_str()))
            .collect();
        if gone.is_empty() {
            continue;
        }
        let sql = format!(
            "VALUES {}",
            gone.iter()
                .map(|k| format!("({k})"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mut st = conn.prepare(&sql).table(&t.source_name)?;
        let mut rows = st.query([]).table(&t.source_name)?;
        while let Some(r) = rows.next().table(&t.source_name)? {
            let key: Vec<KeyValue> = (0..t.key_columns.len())
                .map(|i| owned(r.get_ref(i).unwrap_or(ValueRef::Null)))
                .collect();
            if encode_key(t, &key, &mut d.deletes) {
                d.delete_rows += 1;
            }
        }
    }
    Ok(d)
}

pub(crate) fn read_whole(conn: &Connection, t: &TablePlan, ti: usize) -> Result<TableDelta> {
    let mut d = TableDelta {
        table: ti,
        replace_all: true,
        ..TableDelta::default()
    };
    crate::source::read_rows(conn, t, None, None, |row| {
        let values: Vec<KeyValue> = (0..t.columns.len()).map(|i| owned(row.value(i))).collect();
        let start = d.upserts.len();
        d.upserts
            .extend_from_slice(&(t.columns.len() as i16).to_be_bytes());
        let mut ok = true;
        for (i, c) in t.columns.iter().enumerate() {
            let v = as_ref(&values[i]);
            if let Err(e) = c.conversion.encode(v, &mut d.upserts) {
                ok = false;
                d.quarantine
                    .push(QuarantineRecord::new(row.key_display(t), &c.name, &v, e.0));
            }
        }
        if ok {
            d.upsert_rows += 1;
        } else {
            d.upserts.truncate(start);
        }
        Ok(true)
    })?;
    Ok(d)
}

/// Re-reads `keys` per table (and keyless tables whole) in one snapshot: the settle re-check.
pub(crate) fn read_again(
    conn: &Connection,
    plan: &Plan,
    keys: &BTreeMap<usize, BTreeSet<String>>,
    whole: &BTreeSet<usize>,
) -> Result<Vec<TableDelta>> {
    conn.execute_batch("BEGIN").table("(follow snapshot)")?;
    let r = (|| {
        let mut out = Vec::new();
        for (ti, set) in keys {
            out.push(read_keys(conn, &plan.tables[*ti], *ti, set)?);
        }
        for ti in whole {
            out.push(read_whole(conn, &plan.tables[*ti], *ti)?);
        }
        Ok(out)
    })();
    let _ = conn.execute_batch("COMMIT");
    r
}
