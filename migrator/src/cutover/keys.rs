//! The rows a cut-over checks: the keys the follower applied (from `ficus.follow_keys`, as
//! SQL literals) or the keys the new side changed (from the reverse log, as text), read on
//! both sides and compared canonically ([`crate::drift::compare`]).

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::types::ValueRef;

use crate::drift::{
    compare, key_value_from_text, source_rows_by_key, target_rows_by_key, verify_views, Drift,
    DriftClass, TableView,
};
use crate::error::{MigrateError, Result, SqliteContext};
use crate::plan::Plan;
use crate::source::{open_source, KeyValue};

/// Keys per table to compare: by view index; `None` = the whole table (no key).
pub(super) type KeySet = BTreeMap<usize, Option<Vec<Vec<KeyValue>>>>;

/// `ficus.follow_keys`' literals (per source table name) as key values.
pub(super) fn from_literals(
    source: &Path,
    views: &[TableView],
    lits: &BTreeMap<String, Vec<String>>,
) -> Result<KeySet> {
    let conn = open_source(source)?;
    let mut out = KeySet::new();
    for (tbl, ks) in lits {
        let Some(vi) = views.iter().position(|v| &v.plan.source_name == tbl) else {
            continue;
        };
        if ks.iter().any(String::is_empty) || views[vi].plan.key_columns.is_empty() {
            out.insert(vi, None);
            continue;
        }
        let n = views[vi].plan.key_columns.len();
        let mut keys = Vec::with_capacity(ks.len());
        for chunk in ks.chunks(400) {
            let sql = format!(
                "VALUES {}",
                chunk
                    .iter()
                    .map(|k| format!("({k})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let mut st = conn.prepare(&sql).table(tbl)?;
            let mut rows = st.query([]).table(tbl)?;
            while let Some(r) = rows.next().table(tbl)? {
                keys.push(
                    (0..n)
                        .map(|i| KeyValue::from_ref(r.get_ref(i).unwrap_or(ValueRef::Null)))
                        .collect(),
                );
            }
        }
        out.insert(vi, Some(keys));
    }
    Ok(out)
}

/// Reverse-log keys (per PostgreSQL table name, JSON arrays of text) as key values.
pub(super) fn from_reverse_log(
    views: &[TableView],
    keys: &BTreeMap<String, Vec<Option<String>>>,
) -> Result<KeySet> {
    let mut out = KeySet::new();
    for (tbl, ks) in keys {
        let Some(vi) = views.iter().position(|v| &v.plan.name == tbl) else {
            continue;
        };
        let view = &views[vi];
        if view.plan.key_columns.is_empty() {
            out.insert(vi, None);
            continue;
        }
        let mut list = Vec::new();
        for k in ks.iter().flatten() {
            let parts: Vec<Option<String>> = serde_json::from_str(k)
                .map_err(|e| MigrateError::Internal(format!("reverse log key {k:?}: {e}")))?;
            list.push(
                view.plan
                    .key_columns
                    .iter()
                    .zip(&parts)
                    .map(|(&c, p)| match p {
                        Some(s) => key_value_from_text(view.plan.columns[c].conversion.pg_type, s),
                        None => KeyValue::Null,
                    })
                    .collect(),
            );
        }
        out.insert(vi, Some(list));
    }
    Ok(out)
}

/// Compares the rows of `keys` on both sides; the rows that differ.
pub(super) async fn verify(
    plan: &Plan,
    views: &[TableView],
    source: &Path,
    target: &str,
    client: &tokio_postgres::Client,
    keys: &KeySet,
) -> Result<Vec<Drift>> {
    let mut drift = Vec::new();
    let err = |e: crate::error::DualWriteError| MigrateError::Internal(e.to_string());
    let mut whole = Vec::new();
    for (vi, ks) in keys {
        let view = &views[*vi];
        let Some(ks) = ks else {
            whole.push(*vi);
            continue;
        };
        if ks.is_empty() {
            continue;
        }
        let cols = view.plan.key_columns.clone();
        let legacy = {
            let (src, v, c, k) = (source.to_path_buf(), view.clone(), cols.clone(), ks.clone());
            tokio::task::spawn_blocking(move || {
                let conn = open_source(&src)?;
                source_rows_by_key(&conn, &v, &c, &k).map_err(err)
            })
            .await
            .map_err(|e| MigrateError::Internal(format!("verify thread: {e}")))??
        };
        let new = target_rows_by_key(client, &plan.schema, view, &cols, ks)
            .await
            .map_err(err)?;
        let mut seen = std::collections::HashSet::new();
        for k in ks {
            let Some(ck) = view.canon_key(&cols, k) else {
                continue;
            };
            if !seen.insert(ck.clone()) {
                continue;
            }
            if let Some(d) = compare(view, legacy.get(&ck), new.get(&ck)) {
                drift.push(d);
            }
        }
    }
    if !whole.is_empty() {
        let tables = verify_views(plan, views, &whole, source, target)
            .await
            .map_err(err)?;
        for t in tables.iter().filter(|t| !t.clean) {
            drift.push(Drift {
                table: t.table.clone(),
                key: "(whole table)".into(),
                class: DriftClass::ValueDiffers,
                columns: Vec::new(),
                note: Some(format!(
                    "missing {} extra {} differs {}",
                    t.missing, t.extra, t.differs
                )),
            });
        }
    }
    Ok(drift)
}
