//! Step 1, the scope: the new side's rows of one table created or changed since T — by
//! `updated_at`, else by a verify of the table against SQLite; for multiset tables, the rows
//! PostgreSQL holds more often than SQLite.

use std::collections::{BTreeSet, HashMap};

use super::options::RollbackOptions;
use crate::convert::utc_text;
use crate::drift::{key_from_display, target_rows_by_key, verify_views, TableView};
use crate::error::{DualWriteError, DwResult};
use crate::introspect::quote_sqlite;
use crate::plan::Plan;
use crate::rows::{canon_source_row, scan_target, CanonRow};
use crate::source::{open_source, read_rows_where};
use crate::verify::Difference;

/// The new side's rows in scope of one table.
pub(super) enum Scope {
    /// Keyed rows.
    Keyed(Vec<CanonRow>),
    /// Multiset rows new holds more often than legacy, with how many more.
    Extra(Vec<(CanonRow, u64)>),
}

pub(super) async fn scope_of(
    opts: &RollbackOptions,
    plan: &Plan,
    views: &[TableView],
    vi: usize,
    client: &tokio_postgres::Client,
    since: i64,
) -> DwResult<(Scope, String)> {
    let v = &views[vi];
    if v.plan.key_columns.is_empty() {
        let extra = multiset_extra(opts, v, client).await?;
        let ignored = if v.ignored.is_empty() {
            String::new()
        } else {
            format!(", ignoring {}", v.ignored.join(", "))
        };
        return Ok((
            Scope::Extra(extra),
            format!("rows missing in SQLite, compared as a multiset{ignored}"),
        ));
    }
    if let Some(u) = v.updated_at {
        let mut rows = Vec::new();
        let filter = format!(
            "{} >= '{}+00'",
            quote_sqlite(&v.plan.columns[u].name),
            utc_text(since)
        );
        scan_target(client, &plan.schema, &v.plan, Some(&filter), |r| {
            rows.push(r.clone());
            Ok(())
        })
        .await?;
        return Ok((
            Scope::Keyed(rows),
            format!("{} >= T", v.plan.columns[u].name),
        ));
    }
    let rep = verify_views(plan, views, &[vi], &opts.source, &opts.target).await?;
    let mut keys = Vec::new();
    let mut seen = BTreeSet::new();
    for t in &rep {
        if t.truncated || (t.differences.len() as u64) < t.missing + t.extra + t.differs {
            return Err(DualWriteError::Table {
                table: v.name().into(),
                detail: format!(
                    "{} differing rows, more than one pass narrows down; give it an updated_at column ([watch.tables.{}] updated_at)",
                    t.missing + t.extra + t.differs,
                    v.plan.source_name
                ),
            });
        }
        for d in &t.differences {
            let key = match d {
                Difference::ExtraInTarget { key } | Difference::ValueDiffers { key, .. } => key,
                Difference::MissingInTarget { .. } => continue,
            };
            if !seen.insert(key.clone()) {
                continue;
            }
            keys.push(
                key_from_display(&v.plan, &v.plan.key_columns, key).ok_or_else(|| {
                    DualWriteError::Table {
                        table: v.name().into(),
                        detail: format!(
                            "key {key} is not made of integers and text; cannot look it up"
                        ),
                    }
                })?,
            );
        }
    }
    let rows = target_rows_by_key(client, &plan.schema, v, &v.plan.key_columns, &keys).await?;
    Ok((
        Scope::Keyed(rows.into_values().collect()),
        "rows that differ from or are missing in SQLite (no updated_at)".into(),
    ))
}

/// Rows new holds more often than legacy (multiset tables).
pub(super) async fn multiset_extra(
    opts: &RollbackOptions,
    v: &TableView,
    client: &tokio_postgres::Client,
) -> DwResult<Vec<(CanonRow, u64)>> {
    let mut counts: HashMap<u128, i64> = HashMap::new();
    scan_target(client, &opts.schema, &v.plan, None, |r| {
        *counts.entry(r.hash()).or_default() += 1;
        Ok(())
    })
    .await?;
    let (src, plan) = (opts.source.clone(), v.plan.clone());
    let counts = tokio::task::spawn_blocking(move || -> DwResult<HashMap<u128, i64>> {
        let mut counts = counts;
        let conn = open_source(&src)?;
        let mut scratch = Vec::new();
        let mut canon = CanonRow::default();
        read_rows_where(&conn, &plan, "1", &[], |row| {
            if canon_source_row(&plan, row, &mut scratch, &mut canon).is_ok() {
                if let Some(c) = counts.get_mut(&canon.hash()) {
                    *c -= 1;
                }
            }
            Ok(true)
        })?;
        counts.retain(|_, c| *c > 0);
        Ok(counts)
    })
    .await
    .map_err(|e| DualWriteError::Internal(format!("source scan: {e}")))??;
    let mut out: Vec<(CanonRow, u64)> = Vec::new();
    if counts.is_empty() {
        return Ok(out);
    }
    let mut taken: HashMap<u128, ()> = HashMap::new();
    scan_target(client, &opts.schema, &v.plan, None, |r| {
        let h = r.hash();
        if let Some(n) = counts.get(&h) {
            if taken.insert(h, ()).is_none() {
                out.push((r.clone(), *n as u64));
            }
        }
        Ok(())
    })
    .await?;
    Ok(out)
}
