//! The canonical row: every column's value as PostgreSQL binary (for SQLite values, after the
//! plan's conversion), re-encoded type-tagged ([`crate::convert::canon_field`]), so a row
//! hashes the same whichever engine it came from. Plus the readers that produce canonical
//! rows from either side: the whole table, or (target) any WHERE clause — verify uses the
//! former, the dual-write watch the latter.

use std::path::Path;

use bytes::Buf;
use futures_util::StreamExt;

use crate::convert::{canon_field, display_field, ConvertError, PgType};
use crate::error::{MigrateError, PgContext, Result};
use crate::introspect::quote_sqlite;
use crate::plan::{qualified, TablePlan};
use crate::source::{key_json_value, open_source, read_rows, SourceRow};

/// One row in canonical form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CanonRow {
    pub bytes: Vec<u8>,
    /// (start, end) of each column in `bytes`.
    pub bounds: Vec<(u32, u32)>,
}

impl CanonRow {
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.bounds.clear();
    }
    /// Canonical bytes of column `i`.
    pub fn column(&self, i: usize) -> &[u8] {
        let (a, b) = self.bounds[i];
        &self.bytes[a as usize..b as usize]
    }
    /// 128-bit hash of the whole row.
    pub fn hash(&self) -> u128 {
        xxhash_rust::xxh3::xxh3_128(&self.bytes)
    }
    /// Canonical bytes of the key columns, concatenated.
    pub fn key(&self, key_columns: &[usize]) -> Vec<u8> {
        let mut k = Vec::new();
        for &c in key_columns {
            k.extend_from_slice(self.column(c));
        }
        k
    }
    fn push(&mut self, ty: PgType, field: Option<&[u8]>) {
        let a = self.bytes.len() as u32;
        canon_field(ty, field, &mut self.bytes);
        self.bounds.push((a, self.bytes.len() as u32));
    }
}

/// Render a canonical column for people.
pub fn display_canon(ty: PgType, c: &[u8]) -> String {
    if c.first() == Some(&0xFF) || c.len() < 5 {
        return "NULL".into();
    }
    let body = &c[5..];
    match ty {
        PgType::Smallint | PgType::Integer => display_field(PgType::Bigint, Some(body)),
        PgType::Numeric | PgType::Decimal(..) => String::from_utf8_lossy(body).into_owned(),
        _ => display_field(ty, Some(body)),
    }
}

/// Key of a canonical row as JSON, for reports of rows only the target has.
pub fn canon_key_display(table: &TablePlan, row: &CanonRow) -> String {
    let mut m = serde_json::Map::new();
    let cols: Vec<usize> = if table.key_columns.is_empty() {
        (0..table.columns.len()).collect()
    } else {
        table.key_columns.clone()
    };
    for c in cols {
        let ty = table.columns[c].conversion.pg_type;
        let raw = row.column(c);
        let v = if raw.first() == Some(&0xFF) {
            serde_json::Value::Null
        } else {
            match ty {
                PgType::Smallint | PgType::Integer | PgType::Bigint => {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(&raw[5..13]);
                    serde_json::Value::from(i64::from_be_bytes(a))
                }
                PgType::Text | PgType::Varchar(_) => {
                    key_json_value(rusqlite::types::ValueRef::Text(&raw[5..]))
                }
                _ => display_canon(ty, raw).into(),
            }
        };
        m.insert(table.columns[c].name.clone(), v);
    }
    serde_json::Value::Object(m).to_string()
}

/// Convert a source row into canonical form. Err: (column index, why) of the first value that
/// does not convert — such a row belongs in quarantine.
pub fn canon_source_row(
    table: &TablePlan,
    row: &SourceRow<'_, '_>,
    scratch: &mut Vec<u8>,
    out: &mut CanonRow,
) -> std::result::Result<(), (usize, ConvertError)> {
    out.clear();
    for (i, c) in table.columns.iter().enumerate() {
        scratch.clear();
        c.conversion
            .encode(row.value(i), scratch)
            .map_err(|e| (i, e))?;
        let field = if scratch[..4] == [0xff, 0xff, 0xff, 0xff] {
            None
        } else {
            Some(&scratch[4..])
        };
        out.push(c.conversion.pg_type, field);
    }
    Ok(())
}

/// A canonical source row or why it does not convert.
pub enum SourceItem<'a> {
    Row(&'a CanonRow),
    Reject { column: usize, reason: ConvertError },
}

/// Scan the whole source table, calling `f(key display, item)` per row (blocking).
pub fn scan_source(
    source: &Path,
    table: &TablePlan,
    mut f: impl FnMut(&SourceRow<'_, '_>, SourceItem<'_>) -> Result<()>,
) -> Result<u64> {
    let conn = open_source(source)?;
    let mut scratch = Vec::with_capacity(256);
    let mut canon = CanonRow::default();
    let end = read_rows(&conn, table, None, None, |row| {
        match canon_source_row(table, row, &mut scratch, &mut canon) {
            Ok(()) => f(row, SourceItem::Row(&canon))?,
            Err((column, reason)) => f(row, SourceItem::Reject { column, reason })?,
        }
        Ok(true)
    })?;
    Ok(end.rows)
}

/// Stream target rows of `table` (optionally filtered by a SQL WHERE clause) in canonical
/// form through binary COPY OUT.
pub async fn scan_target(
    client: &tokio_postgres::Client,
    schema: &str,
    table: &TablePlan,
    filter: Option<&str>,
    mut f: impl FnMut(&CanonRow) -> Result<()>,
) -> Result<u64> {
    let cols: Vec<String> = table
        .columns
        .iter()
        .map(|c| quote_sqlite(&c.name))
        .collect();
    let q = qualified(schema, &table.name);
    let sql = match filter {
        None => format!("COPY {q} ({}) TO STDOUT (FORMAT binary)", cols.join(", ")),
        Some(w) => format!(
            "COPY (SELECT {} FROM {q} WHERE {w}) TO STDOUT (FORMAT binary)",
            cols.join(", ")
        ),
    };
    let stream = client
        .copy_out(sql.as_str())
        .await
        .ctx(format!("reading {}", table.name))?;
    futures_util::pin_mut!(stream);
    let types: Vec<PgType> = table.columns.iter().map(|c| c.conversion.pg_type).collect();
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut pos = 0usize;
    let mut header_done = false;
    let mut row = CanonRow::default();
    let mut n = 0u64;
    let bad = |m: &str| MigrateError::Internal(format!("binary COPY from {}: {m}", table.name));
    while let Some(chunk) = stream.next().await {
        let mut chunk = chunk.ctx(format!("reading {}", table.name))?;
        if pos > 0 && pos == buf.len() {
            buf.clear();
            pos = 0;
        } else if pos > (1 << 20) {
            buf.drain(..pos);
            pos = 0;
        }
        while chunk.has_remaining() {
            let c = chunk.chunk();
            buf.extend_from_slice(c);
            let l = c.len();
            chunk.advance(l);
        }
        if !header_done {
            if buf.len() < 19 {
                continue;
            }
            if &buf[..11] != b"PGCOPY\n\xff\r\n\0" {
                return Err(bad("bad header"));
            }
            let ext = u32::from_be_bytes([buf[15], buf[16], buf[17], buf[18]]) as usize;
            if buf.len() < 19 + ext {
                continue;
            }
            pos = 19 + ext;
            header_done = true;
        }
        // Parse as many complete tuples as the buffer holds.
        loop {
            let b = &buf[pos..];
            if b.len() < 2 {
                break;
            }
            let nf = i16::from_be_bytes([b[0], b[1]]);
            if nf == -1 {
                pos = buf.len();
                break;
            }
            if nf as usize != types.len() {
                return Err(bad("unexpected field count"));
            }
            // Check completeness first.
            let mut p = 2usize;
            let mut complete = true;
            for _ in 0..nf {
                if b.len() < p + 4 {
                    complete = false;
                    break;
                }
                let len = i32::from_be_bytes([b[p], b[p + 1], b[p + 2], b[p + 3]]);
                p += 4;
                if len > 0 {
                    p += len as usize;
                    if b.len() < p {
                        complete = false;
                        break;
                    }
                }
            }
            if !complete {
                break;
            }
            row.clear();
            let mut p = 2usize;
            for ty in &types {
                let len = i32::from_be_bytes([b[p], b[p + 1], b[p + 2], b[p + 3]]);
                p += 4;
                if len < 0 {
                    row.push(*ty, None);
                } else {
                    row.push(*ty, Some(&b[p..p + len as usize]));
                    p += len as usize;
                }
            }
            pos += p;
            n += 1;
            f(&row)?;
        }
    }
    Ok(n)
}
