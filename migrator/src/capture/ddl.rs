//! The SQL capture installs: the change log, its description, and three triggers per table.

use rusqlite::{Connection, OptionalExtension};

use crate::introspect::{quote_literal, quote_sqlite};

/// The change-log table.
pub const LOG_TABLE: &str = "_ficus_changes";
/// The table describing the installed capture.
pub const META_TABLE: &str = "_ficus_capture";

/// Version of the capture objects (in `_ficus_capture`).
const VERSION: &str = "1";

/// What `_ficus_capture` says.
pub(super) struct Meta {
    pub installed_at: String,
    pub epoch: String,
    pub tables: Vec<String>,
}

/// `(type, name, sql)` of every schema object whose name starts with `_ficus_` (any case).
pub(super) fn objects(conn: &Connection) -> rusqlite::Result<Vec<(String, String, String)>> {
    let mut st = conn.prepare(
        "SELECT type, name, coalesce(sql, '') FROM sqlite_master
         WHERE lower(name) LIKE '\\_ficus\\_%' ESCAPE '\\'",
    )?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    rows.collect()
}

/// The two tables, as `(kind, name, sql)`.
pub(super) fn fixed_objects() -> Vec<(String, String, String)> {
    vec![
        (
            "table".into(),
            LOG_TABLE.into(),
            format!(
                "CREATE TABLE {} (
  id INTEGER PRIMARY KEY,
  tbl TEXT NOT NULL,
  op TEXT NOT NULL,
  k TEXT,
  old_k TEXT,
  at REAL NOT NULL DEFAULT (julianday('now'))
)",
                quote_sqlite(LOG_TABLE)
            ),
        ),
        (
            "table".into(),
            META_TABLE.into(),
            format!(
                "CREATE TABLE {} (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
                quote_sqlite(META_TABLE)
            ),
        ),
    ]
}

/// Whether `name` is one of capture's triggers.
pub(super) fn is_capture_trigger(name: &str) -> bool {
    name.starts_with("_ficus_cap_")
}

fn trigger_name(op: char, table: &str) -> String {
    format!("_ficus_cap_{op}_{table}")
}

/// The key of the row as SQL literals: `quote(X."a") || ',' || quote(X."b")`; `NULL` for a
/// table without a key.
fn key_expr(row: &str, key: &[String]) -> String {
    if key.is_empty() {
        return "NULL".into();
    }
    key.iter()
        .map(|c| format!("quote({row}.{})", quote_sqlite(c)))
        .collect::<Vec<_>>()
        .join(" || ',' || ")
}

/// The three triggers of every table, as `(kind, name, sql)`.
pub(super) fn objects_for(tables: &[(String, Vec<String>)]) -> Vec<(String, String, String)> {
    let log = quote_sqlite(LOG_TABLE);
    let mut out = Vec::new();
    for (t, key) in tables {
        let qt = quote_sqlite(t);
        let lit = quote_literal(t);
        let (new_k, old_k) = (key_expr("NEW", key), key_expr("OLD", key));
        let changed = if key.is_empty() {
            "NULL".to_string()
        } else {
            format!("CASE WHEN ({old_k}) IS NOT ({new_k}) THEN {old_k} END")
        };
        let trig = |op: char, when: &str, body: String| {
            let name = trigger_name(op, t);
            let sql = format!(
                "CREATE TRIGGER {} AFTER {when} ON {qt} BEGIN {body}; END",
                quote_sqlite(&name)
            );
            ("trigger".to_string(), name, sql)
        };
        out.push(trig(
            'i',
            "INSERT",
            format!("INSERT INTO {log} (tbl, op, k) VALUES ({lit}, 'I', {new_k})"),
        ));
        out.push(trig(
            'u',
            "UPDATE",
            format!(
                "INSERT INTO {log} (tbl, op, k, old_k) VALUES ({lit}, 'U', {new_k}, {changed})"
            ),
        ));
        out.push(trig(
            'd',
            "DELETE",
            format!("INSERT INTO {log} (tbl, op, k) VALUES ({lit}, 'D', {old_k})"),
        ));
    }
    out
}

/// SQL texts equal but for white space.
pub(super) fn same_sql(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    norm(a) == norm(b)
}

/// Reads `_ficus_capture`; `None` when it does not exist.
pub(super) fn read_meta(conn: &Connection) -> rusqlite::Result<Option<Meta>> {
    let exists: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [META_TABLE],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(None);
    }
    let get = |k: &str| -> rusqlite::Result<Option<String>> {
        conn.query_row(
            &format!(
                "SELECT value FROM {} WHERE name = ?1",
                quote_sqlite(META_TABLE)
            ),
            [k],
            |r| r.get(0),
        )
        .optional()
    };
    let tables: Vec<String> = get("tables")?
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    Ok(Some(Meta {
        installed_at: get("installed_at")?.unwrap_or_default(),
        epoch: get("epoch")?.unwrap_or_default(),
        tables,
    }))
}

/// Writes `_ficus_capture` for a new installation (a fresh random epoch).
pub(super) fn write_meta(conn: &Connection, tables: &[String]) -> rusqlite::Result<()> {
    let t = quote_sqlite(META_TABLE);
    let now = ficus_core::stamp::rfc3339(time::OffsetDateTime::now_utc());
    let list = serde_json::to_string(tables).unwrap_or_else(|_| "[]".into());
    conn.execute(
        &format!("INSERT INTO {t} (name, value) VALUES ('version', ?1), ('installed_at', ?2), ('tables', ?3), ('epoch', lower(hex(randomblob(8))))"),
        rusqlite::params![VERSION, now, list],
    )?;
    Ok(())
}
