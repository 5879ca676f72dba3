//! Reading the SQLite source: opening it read-only, its identity (for the fingerprint), and
//! keyset-paginated reads of a table from a key onward. Profile, run, verify (and the
//! dual-write watch and rollback) read rows only through here.
//!
//! What a read needs to know about a table — its name, its read order ([`ReadKey`]), its
//! columns and key — is the [`SourceTable`] trait, which the plan's table implements: this
//! module sits below the plan in the data flow and does not depend on it.

use std::path::Path;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};

use crate::convert::display_bytes;
use crate::error::{MigrateError, Result, SqliteContext};
use crate::introspect::quote_sqlite;

/// How a source table is read in order (and checkpointed).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum ReadKey {
    /// By rowid (every rowid table), selected under this name.
    Rowid(String),
    /// By primary key columns (WITHOUT ROWID tables).
    Pk(Vec<usize>),
}

/// What reading a table needs to know about it (the plan's `TablePlan` implements it).
pub trait SourceTable {
    /// The table's name in SQLite.
    fn source_name(&self) -> &str;
    /// The order rows are read in.
    fn read_key(&self) -> &ReadKey;
    /// How many columns a row has.
    fn column_count(&self) -> usize;
    /// The SQLite name of column `i`.
    fn column_name(&self, i: usize) -> &str;
    /// The primary key columns (indexes into the columns); empty when the table has none.
    fn key_columns(&self) -> &[usize];
}

fn quoted_columns(table: &(impl SourceTable + ?Sized)) -> Vec<String> {
    (0..table.column_count())
        .map(|i| quote_sqlite(table.column_name(i)))
        .collect()
}

/// Open a SQLite file read-only, never writing next to it.
///
/// The file is opened as `file:…?mode=ro`, which creates no journal. A WAL-mode database needs
/// its `-shm` index to be read safely beside a writer: when another connection has the file open
/// (its `-shm` exists) ficus shares it; when neither `-shm` nor a non-empty `-wal` exists, no
/// connection has the file open and the database is wholly in the main file, so it is opened
/// `immutable=1` — no `-wal`/`-shm` is created, and a read-only directory works. (An app that
/// starts writing to the file while such a connection is open is not seen by it; run and verify
/// notice a changed source by its identity.)
pub fn open_source(path: &Path) -> Result<Connection> {
    if !path.is_file() {
        return Err(MigrateError::OpenSource {
            path: path.to_path_buf(),
            source: rusqlite::Error::InvalidPath(path.to_path_buf()),
        });
    }
    let conn = Connection::open_with_flags(
        source_uri(path),
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(|source| MigrateError::OpenSource {
        path: path.to_path_buf(),
        source,
    })?;
    // Collations the app registers and SQLite does not know: a documented fallback.
    crate::collation::register_fallbacks(&conn).map_err(|source| MigrateError::OpenSource {
        path: path.to_path_buf(),
        source,
    })?;
    // Touch the schema so a non-database file fails here, not mid-run.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(|source| MigrateError::OpenSource {
        path: path.to_path_buf(),
        source,
    })?;
    let _ = conn.pragma_update(None, "cache_size", -16_000i64);
    // A live source: wait for the app's write lock (rollback journal) instead of failing.
    let _ = conn.busy_timeout(std::time::Duration::from_secs(10));
    Ok(conn)
}

/// The `file:` URI [`open_source`] opens: read-only, and immutable for a WAL-mode database
/// nobody has open (see there).
fn source_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for c in path.display().to_string().chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri.push_str("?mode=ro");
    let sibling = |suffix: &str| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        std::path::PathBuf::from(p)
    };
    let wal_in_use =
        sibling("-shm").exists() || std::fs::metadata(sibling("-wal")).is_ok_and(|m| m.len() > 0);
    if is_wal_mode(path) && !wal_in_use {
        uri.push_str("&immutable=1");
    }
    uri
}

/// Whether the database header says WAL mode (file format versions 2 at offsets 18 and 19).
fn is_wal_mode(path: &Path) -> bool {
    use std::io::Read;
    let mut header = [0u8; 20];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .is_ok_and(|()| header[18] == 2 && header[19] == 2)
}

/// What identifies the source file's content, for the fingerprint: if any of these change,
/// a checkpoint no longer describes the same data.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceIdentity {
    /// Path as given (shown, not fingerprinted: a moved file is the same source).
    pub path: String,
    /// File size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since 1970.
    pub mtime_ns: i128,
    /// SQLite's file change counter (header offset 24).
    pub change_counter: u32,
    /// xxh3 of the schema SQL.
    pub schema_hash: String,
    /// The epoch of the change capture installed on the source, if any. With capture on, the
    /// log carries every content change, so the content fields above are not tracked (0):
    /// a live source does not invalidate the run; reinstalling capture does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_epoch: Option<String>,
}

impl SourceIdentity {
    /// Identity of the file at `path` with schema `conn`.
    pub fn of(path: &Path, conn: &Connection) -> Result<SourceIdentity> {
        let meta = std::fs::metadata(path)?;
        let mtime_ns = meta
            .modified()?
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        let mut header = [0u8; 28];
        {
            use std::io::Read;
            let mut f = std::fs::File::open(path)?;
            f.read_exact(&mut header)?;
        }
        let mut st = conn
            // Change capture's own objects (`_ficus_*`) are not the app's schema.
            .prepare(
                "SELECT coalesce(sql, '') FROM sqlite_master
                 WHERE lower(name) NOT LIKE '\\_ficus\\_%' ESCAPE '\\' ORDER BY name",
            )
            .table("sqlite_master")?;
        let sqls: Vec<String> = st
            .query_map([], |r| r.get(0))
            .table("sqlite_master")?
            .collect::<std::result::Result<_, _>>()
            .table("sqlite_master")?;
        let capture_epoch = crate::capture::epoch(conn).table("_ficus_capture")?;
        let tracked = capture_epoch.is_none();
        Ok(SourceIdentity {
            path: path.display().to_string(),
            size: if tracked { meta.len() } else { 0 },
            mtime_ns: if tracked { mtime_ns } else { 0 },
            change_counter: if tracked {
                u32::from_be_bytes([header[24], header[25], header[26], header[27]])
            } else {
                0
            },
            capture_epoch,
            schema_hash: format!(
                "{:032x}",
                xxhash_rust::xxh3::xxh3_128(sqls.join(";\n").as_bytes())
            ),
        })
    }
}

/// A position in a table's read order: the last rowid read, or the last primary key values
/// of a WITHOUT ROWID table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKey {
    Rowid(i64),
    Pk(Vec<KeyValue>),
}

/// One stored SQLite key value, owned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyValue {
    Null,
    Int(i64),
    Real(f64),
    /// Text as stored (hex when not valid UTF-8 is irrelevant here: kept as bytes).
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

impl KeyValue {
    pub fn from_ref(v: ValueRef<'_>) -> KeyValue {
        match v {
            ValueRef::Null => KeyValue::Null,
            ValueRef::Integer(i) => KeyValue::Int(i),
            ValueRef::Real(f) => KeyValue::Real(f),
            ValueRef::Text(b) => KeyValue::Text(b.to_vec()),
            ValueRef::Blob(b) => KeyValue::Blob(b.to_vec()),
        }
    }
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            KeyValue::Null => ValueRef::Null,
            KeyValue::Int(i) => ValueRef::Integer(*i),
            KeyValue::Real(f) => ValueRef::Real(*f),
            KeyValue::Text(b) => ValueRef::Text(b),
            KeyValue::Blob(b) => ValueRef::Blob(b),
        }
    }
}

impl rusqlite::ToSql for KeyValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(self.as_ref()))
    }
}

/// A key value as JSON for people (quarantine, reports): numbers, strings, `\x…` for blobs.
pub fn key_json_value(v: ValueRef<'_>) -> serde_json::Value {
    match v {
        ValueRef::Null => serde_json::Value::Null,
        ValueRef::Integer(i) => i.into(),
        ValueRef::Real(f) => serde_json::Number::from_f64(f)
            .map(serde_json::Value::Number)
            .unwrap_or_else(|| format!("{f:?}").into()),
        ValueRef::Text(b) => match std::str::from_utf8(b) {
            Ok(s) => s.into(),
            Err(_) => display_bytes(b).into(),
        },
        ValueRef::Blob(b) => display_bytes(b).into(),
    }
}

/// One row handed to a reader callback.
pub struct SourceRow<'r, 's> {
    row: &'r rusqlite::Row<'s>,
    offset: usize,
    rowid: Option<i64>,
}

impl SourceRow<'_, '_> {
    /// Value of the table's column `i` (plan order).
    pub fn value(&self, i: usize) -> ValueRef<'_> {
        self.row.get_ref(i + self.offset).unwrap_or(ValueRef::Null)
    }
    /// The read-order key of this row.
    pub fn key(&self, table: &(impl SourceTable + ?Sized)) -> SourceKey {
        match table.read_key() {
            ReadKey::Rowid(_) => SourceKey::Rowid(self.rowid.unwrap_or(0)),
            ReadKey::Pk(cols) => SourceKey::Pk(
                cols.iter()
                    .map(|c| KeyValue::from_ref(self.value(*c)))
                    .collect(),
            ),
        }
    }
    /// The row's key as people see it: `{"id": 42}` (primary key columns) or `{"rowid": 7}`.
    pub fn key_display(&self, table: &(impl SourceTable + ?Sized)) -> String {
        let mut m = serde_json::Map::new();
        if table.key_columns().is_empty() {
            m.insert("rowid".into(), self.rowid.unwrap_or(0).into());
        } else {
            for &c in table.key_columns() {
                m.insert(
                    table.column_name(c).to_string(),
                    key_json_value(self.value(c)),
                );
            }
        }
        serde_json::Value::Object(m).to_string()
    }
}

/// How a read ended.
#[derive(Debug, Clone)]
pub struct ReadEnd {
    /// Key of the last row read (None if no row).
    pub last_key: Option<SourceKey>,
    pub rows: u64,
    /// True when the table has no more rows after `last_key`.
    pub exhausted: bool,
}

/// Read rows of `table` in key order after `after` (from the start if None), at most
/// `limit`, calling `f` for each; `f` returns false to stop early (the read then does not
/// count as exhausted).
pub fn read_rows(
    conn: &Connection,
    table: &(impl SourceTable + ?Sized),
    after: Option<&SourceKey>,
    limit: Option<u64>,
    f: impl FnMut(&SourceRow<'_, '_>) -> Result<bool>,
) -> Result<ReadEnd> {
    read_rows_until(conn, table, after, None, limit, f)
}

/// [`read_rows`] stopping at rowid `until` (inclusive; rowid tables only, ignored otherwise).
pub fn read_rows_until(
    conn: &Connection,
    table: &(impl SourceTable + ?Sized),
    after: Option<&SourceKey>,
    until: Option<i64>,
    limit: Option<u64>,
    mut f: impl FnMut(&SourceRow<'_, '_>) -> Result<bool>,
) -> Result<ReadEnd> {
    let cols = quoted_columns(table);
    let tname = quote_sqlite(table.source_name());
    let (select, offset, order, cond): (String, usize, String, Option<String>) =
        match table.read_key() {
            ReadKey::Rowid(r) => (
                format!("{r}, {}", cols.join(", ")),
                1,
                r.clone(),
                after.map(|_| format!("{r} > ?1")),
            ),
            ReadKey::Pk(pk) => {
                let names: Vec<&str> = pk.iter().map(|i| cols[*i].as_str()).collect();
                let params: Vec<String> = (1..=pk.len()).map(|i| format!("?{i}")).collect();
                (
                    cols.join(", "),
                    0,
                    names.join(", "),
                    after.map(|_| format!("({}) > ({})", names.join(", "), params.join(", "))),
                )
            }
        };
    let mut conds: Vec<String> = cond.into_iter().collect();
    if let (Some(u), ReadKey::Rowid(r)) = (until, table.read_key()) {
        conds.push(format!("{r} <= {u}"));
    }
    let mut sql = format!("SELECT {select} FROM {tname}");
    if !conds.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conds.join(" AND "));
    }
    sql.push_str(" ORDER BY ");
    sql.push_str(&order);
    if let Some(l) = limit {
        sql.push_str(&format!(" LIMIT {l}"));
    }
    let mut st = conn.prepare_cached(&sql).table(table.source_name())?;
    let params: Vec<KeyValue> = match after {
        None => Vec::new(),
        Some(SourceKey::Rowid(r)) => vec![KeyValue::Int(*r)],
        Some(SourceKey::Pk(v)) => v.clone(),
    };
    let mut rows = st
        .query(rusqlite::params_from_iter(params.iter()))
        .table(table.source_name())?;
    let mut n = 0u64;
    let mut last: Option<SourceKey> = None;
    let mut stopped = false;
    while let Some(row) = rows.next().table(table.source_name())? {
        let rowid = if offset == 1 {
            Some(row.get::<_, i64>(0).table(table.source_name())?)
        } else {
            None
        };
        let r = SourceRow { row, offset, rowid };
        n += 1;
        let go_on = f(&r)?;
        last = Some(r.key(table));
        if !go_on {
            stopped = true;
            break;
        }
    }
    let exhausted = !stopped && limit.is_none_or(|l| n < l);
    let _ = until;
    Ok(ReadEnd {
        last_key: last,
        rows: n,
        exhausted,
    })
}

/// Rows of `table` matching the SQL condition `cond` (`?N` placeholders bound to `params`), in
/// read order, calling `f` for each; `f` returns false to stop. Returns the rows read. The
/// dual-write watch and rollback read rows by key or by `updated_at` through here.
pub fn read_rows_where(
    conn: &Connection,
    table: &(impl SourceTable + ?Sized),
    cond: &str,
    params: &[KeyValue],
    mut f: impl FnMut(&SourceRow<'_, '_>) -> Result<bool>,
) -> Result<u64> {
    let cols = quoted_columns(table);
    let (select, offset, order) = match table.read_key() {
        ReadKey::Rowid(r) => (format!("{r}, {}", cols.join(", ")), 1, r.clone()),
        ReadKey::Pk(pk) => {
            let names: Vec<&str> = pk.iter().map(|i| cols[*i].as_str()).collect();
            (cols.join(", "), 0, names.join(", "))
        }
    };
    let sql = format!(
        "SELECT {select} FROM {} WHERE {cond} ORDER BY {order}",
        quote_sqlite(table.source_name())
    );
    let mut st = conn.prepare(&sql).table(table.source_name())?;
    let mut rows = st
        .query(rusqlite::params_from_iter(params.iter()))
        .table(table.source_name())?;
    let mut n = 0u64;
    while let Some(row) = rows.next().table(table.source_name())? {
        let rowid = if offset == 1 {
            Some(row.get::<_, i64>(0).table(table.source_name())?)
        } else {
            None
        };
        n += 1;
        if !f(&SourceRow { row, offset, rowid })? {
            break;
        }
    }
    Ok(n)
}
