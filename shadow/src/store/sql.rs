//! The statements both the store's own methods and its writer thread run inside their
//! transactions, and the error that names the store file.

use std::collections::BTreeSet;
use std::path::Path;

use rusqlite::{params, Connection};
use serde::Serialize;

use super::record::MismatchRecord;
use crate::compare::DiffKind;
use crate::error::ShadowError;

pub(super) fn store_err(path: &Path, source: rusqlite::Error) -> ShadowError {
    ShadowError::Store {
        path: path.to_path_buf(),
        source,
    }
}

pub(super) fn insert_mismatch_tx(
    tx: &rusqlite::Transaction<'_>,
    rec: &MismatchRecord,
) -> rusqlite::Result<i64> {
    tx.execute(
        "INSERT INTO mismatches (time_ms, route, method, path, request_id, primary_side,
            request_headers, request_body, request_body_truncated,
            legacy_status, legacy_headers, legacy_body, legacy_body_truncated,
            new_status, new_headers, new_body, new_body_truncated, diff, diff_truncated)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
        params![
            rec.time_ms,
            rec.route,
            rec.method,
            rec.path,
            rec.request_id,
            rec.primary.as_str(),
            json(&rec.request_headers),
            rec.request_body.data,
            rec.request_body.truncated,
            rec.legacy.status,
            json(&rec.legacy.headers),
            rec.legacy.body.data,
            rec.legacy.body.truncated,
            rec.new.status,
            json(&rec.new.headers),
            rec.new.body.data,
            rec.new.body.truncated,
            json(&rec.diff),
            rec.diff_truncated,
        ],
    )?;
    let id = tx.last_insert_rowid();
    let mut seen = BTreeSet::new();
    let mut stmt = tx.prepare_cached(
        "INSERT OR IGNORE INTO mismatch_fields (mismatch_id, route, field, kind, time_ms, legacy, new)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for e in &rec.diff {
        if !seen.insert((e.field.as_str(), e.kind)) {
            continue;
        }
        let example =
            |v: &Option<serde_json::Value>| v.as_ref().map(|v| clip_example(&v.to_string()));
        stmt.execute(params![
            id,
            rec.route,
            e.field,
            e.kind.as_str(),
            rec.time_ms,
            example(&e.legacy),
            example(&e.new)
        ])?;
    }
    Ok(id)
}

fn clip_example(s: &str) -> String {
    const MAX: usize = 200;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

/// A JSON column; serde_json cannot fail on these types (string keys, no maps with other
/// keys), an empty array is written if it somehow does.
fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".to_string())
}

pub(super) fn add_count_tx(
    conn: &Connection,
    route: &str,
    minute: i64,
    result: &str,
    n: u64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO counts (route, minute, result, n) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (route, minute, result) DO UPDATE SET n = n + excluded.n",
    )?
    .execute(params![
        route,
        minute,
        result,
        i64::try_from(n).unwrap_or(i64::MAX)
    ])?;
    Ok(())
}

pub(super) fn record_noise_tx(
    conn: &Connection,
    route: &str,
    observed: &[(String, DiffKind)],
    time_ms: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO noise_probes (route, probes, first_ms, last_ms) VALUES (?1, 1, ?2, ?2)
         ON CONFLICT (route) DO UPDATE SET probes = probes + 1, last_ms = excluded.last_ms",
    )?
    .execute(params![route, time_ms])?;
    let mut stmt = conn.prepare_cached(
        "INSERT INTO noise (route, field, kind, count, first_ms, last_ms) VALUES (?1, ?2, ?3, 1, ?4, ?4)
         ON CONFLICT (route, field, kind) DO UPDATE SET count = count + 1, last_ms = excluded.last_ms",
    )?;
    for (field, kind) in observed {
        stmt.execute(params![route, field, kind.as_str(), time_ms])?;
    }
    Ok(())
}
