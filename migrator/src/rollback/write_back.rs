//! Step 2, the write-back: one SQLite transaction (`BEGIN IMMEDIATE`) deciding every row in
//! scope against what SQLite holds under the lock — insert, update, leave, keep legacy's newer
//! version, or conflict — and writing the rows in the legacy's own storage format
//! ([`crate::writeback`]), unless it is a dry run or `abort` found conflicts.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::options::ConflictPolicy;
use super::report::{RowAction, RowChange, TableRollback};
use super::scope::Scope;
use crate::drift::{compare, source_rows_by_key, LegacyRow, TableView};
use crate::error::{DualWriteError, DwResult};
use crate::introspect::{introspect, quote_sqlite};
use crate::rows::CanonRow;
use crate::source::open_source;
use crate::writeback::{canon_unix_us, LegacyStyle};

/// A decided row: its change and (for inserts/updates) the SQLite values.
pub(super) struct Decided {
    pub(super) change: RowChange,
    pub(super) values: Option<Vec<Value>>,
}

/// One table's decisions.
pub(super) struct TableWork {
    pub(super) vi: usize,
    pub(super) report: TableRollback,
    pub(super) rows: Vec<Decided>,
    /// Snapshot of the new side's rows, by key (keyed tables), for the reverse verify.
    pub(super) snapshot: Vec<CanonRow>,
    pub(super) keep_legacy: Vec<Vec<u8>>,
    /// Hashes of the multiset rows inserted.
    pub(super) inserted_hashes: std::collections::HashSet<u128>,
}

#[allow(clippy::too_many_arguments)]
pub(super) fn write_back(
    source: &Path,
    views: &[TableView],
    scopes: Vec<(Scope, String)>,
    since: i64,
    policy: ConflictPolicy,
    dry_run: bool,
    catch_up: bool,
    max_listed: usize,
) -> DwResult<(Vec<TableWork>, bool, bool)> {
    let mut conn = if dry_run {
        open_source(source)?
    } else {
        let c = Connection::open_with_flags(
            source,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| DualWriteError::OpenLegacy {
            path: source.to_path_buf(),
            source: Box::new(e),
        })?;
        c.busy_timeout(Duration::from_secs(10))
            .and_then(|()| crate::collation::register_fallbacks(&c))
            .map_err(|e| DualWriteError::OpenLegacy {
                path: source.to_path_buf(),
                source: Box::new(e),
            })?;
        c
    };
    let generated: HashMap<String, Vec<String>> = introspect(&conn)?
        .tables
        .into_iter()
        .map(|t| {
            let g = t
                .columns
                .iter()
                .filter(|c| c.generated)
                .map(|c| c.name.clone())
                .collect();
            (t.name, g)
        })
        .collect();
    let wb_err = |table: &str, key: &str, e: rusqlite::Error| DualWriteError::WriteBack {
        path: source.to_path_buf(),
        table: table.to_string(),
        key: key.to_string(),
        source: Box::new(e),
    };
    let tx = conn
        .transaction_with_behavior(if dry_run {
            TransactionBehavior::Deferred
        } else {
            TransactionBehavior::Immediate
        })
        .map_err(|e| wb_err("-", "-", e))?;
    let mut works = Vec::new();
    let mut conflicts = 0u64;
    for (vi, (scope, scope_text)) in scopes.into_iter().enumerate() {
        let v = &views[vi];
        let style = LegacyStyle::learn(&tx, &v.plan)?;
        let gen = generated
            .get(&v.plan.source_name)
            .cloned()
            .unwrap_or_default();
        let mut work = TableWork {
            vi,
            report: TableRollback {
                table: v.name().to_string(),
                scope: scope_text,
                ..TableRollback::default()
            },
            rows: Vec::new(),
            snapshot: Vec::new(),
            keep_legacy: Vec::new(),
            inserted_hashes: Default::default(),
        };
        let values_of = |row: &CanonRow, key: &str| -> DwResult<Vec<Value>> {
            let mut out = Vec::new();
            for (i, c) in v.plan.columns.iter().enumerate() {
                if gen.contains(&c.name) {
                    continue;
                }
                out.push(style.value(&v.plan, i, row.column(i)).map_err(|detail| {
                    DualWriteError::Value {
                        table: v.name().into(),
                        key: key.into(),
                        column: c.name.clone(),
                        detail,
                    }
                })?);
            }
            Ok(out)
        };
        match scope {
            Scope::Extra(rows) => {
                for (row, n) in rows {
                    let key = v.row_display(&row);
                    work.report.in_scope += n;
                    work.report.inserted += n;
                    let values = values_of(&row, &key)?;
                    work.inserted_hashes.insert(row.hash());
                    work.rows.push(Decided {
                        change: RowChange {
                            key,
                            action: RowAction::Insert,
                            columns: vec![],
                            copies: n,
                        },
                        values: Some(values),
                    });
                }
            }
            Scope::Keyed(rows) => {
                let kc = v.plan.key_columns.clone();
                let mut keys = Vec::with_capacity(rows.len());
                for r in &rows {
                    keys.push(v.key_of(&kc, r).ok_or_else(|| DualWriteError::Table {
                        table: v.name().into(),
                        detail: "primary key values that are not integers or text cannot be looked up".into(),
                    })?);
                }
                let legacy = source_rows_by_key(&tx, v, &kc, &keys)?;
                work.report.in_scope = rows.len() as u64;
                for n in rows {
                    let k = n.key(&kc);
                    let key = v.row_display(&n);
                    let l = legacy.get(&k);
                    let action = match l {
                        None => Some(RowAction::Insert),
                        Some(LegacyRow::Row(lr)) if lr.bytes == n.bytes => None,
                        Some(l) => {
                            let lu = match (l, v.updated_at) {
                                (LegacyRow::Row(lr), Some(u)) => canon_unix_us(lr.column(u)),
                                _ => None,
                            };
                            let nu = v.updated_at.and_then(|u| canon_unix_us(n.column(u)));
                            Some(match policy {
                                ConflictPolicy::NewestWins => match (lu, nu) {
                                    (Some(lu), Some(nu)) if lu > nu => RowAction::KeepLegacy,
                                    _ => RowAction::Update,
                                },
                                ConflictPolicy::Abort => match (v.updated_at, lu) {
                                    (Some(_), Some(lu)) if lu < since => RowAction::Update,
                                    _ => RowAction::Conflict,
                                },
                            })
                        }
                    };
                    let Some(action) = action else {
                        work.report.unchanged += 1;
                        work.snapshot.push(n);
                        continue;
                    };
                    let columns = match compare(v, l, Some(&n)) {
                        Some(d) if action != RowAction::Insert => d.columns,
                        _ => vec![],
                    };
                    let values = match action {
                        RowAction::Insert | RowAction::Update => Some(values_of(&n, &key)?),
                        _ => None,
                    };
                    match action {
                        RowAction::Insert => work.report.inserted += 1,
                        RowAction::Update => work.report.updated += 1,
                        RowAction::KeepLegacy => {
                            work.report.kept_legacy += 1;
                            work.keep_legacy.push(k);
                        }
                        RowAction::Conflict => {
                            work.report.conflicts += 1;
                            conflicts += 1;
                        }
                    }
                    work.rows.push(Decided {
                        change: RowChange {
                            key,
                            action,
                            columns,
                            copies: 1,
                        },
                        values,
                    });
                    work.snapshot.push(n);
                }
            }
        }
        works.push(work);
    }
    let abort = policy == ConflictPolicy::Abort && conflicts > 0 && !catch_up;
    let mut written = false;
    if !dry_run && !abort {
        for w in &works {
            let v = &views[w.vi];
            let gen = generated
                .get(&v.plan.source_name)
                .cloned()
                .unwrap_or_default();
            let cols: Vec<&str> = v
                .plan
                .columns
                .iter()
                .map(|c| c.name.as_str())
                .filter(|c| !gen.iter().any(|g| g == c))
                .collect();
            let names: Vec<String> = cols.iter().map(|c| quote_sqlite(c)).collect();
            let ph: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
            let mut sql = format!(
                "INSERT INTO {} ({}) VALUES ({})",
                quote_sqlite(&v.plan.source_name),
                names.join(", "),
                ph.join(", ")
            );
            if !v.plan.key_columns.is_empty() {
                let keys: Vec<String> = v
                    .plan
                    .key_columns
                    .iter()
                    .map(|c| quote_sqlite(&v.plan.columns[*c].name))
                    .collect();
                let sets: Vec<String> = names
                    .iter()
                    .filter(|n| !keys.contains(n))
                    .map(|n| format!("{n} = excluded.{n}"))
                    .collect();
                if sets.is_empty() {
                    sql.push_str(&format!(" ON CONFLICT ({}) DO NOTHING", keys.join(", ")));
                } else {
                    sql.push_str(&format!(
                        " ON CONFLICT ({}) DO UPDATE SET {}",
                        keys.join(", "),
                        sets.join(", ")
                    ));
                }
            }
            let mut st = tx.prepare(&sql).map_err(|e| wb_err(v.name(), "-", e))?;
            for d in &w.rows {
                let Some(values) = &d.values else { continue };
                for _ in 0..d.change.copies.max(1) {
                    st.execute(rusqlite::params_from_iter(values.iter()))
                        .map_err(|e| wb_err(v.name(), &d.change.key, e))?;
                }
            }
        }
        written = true;
    }
    if written {
        tx.commit().map_err(|e| wb_err("-", "-", e))?;
    } else {
        tx.rollback().map_err(|e| wb_err("-", "-", e))?;
    }
    for w in &mut works {
        w.report.changes = w
            .rows
            .iter()
            .take(max_listed)
            .map(|d| d.change.clone())
            .collect();
    }
    Ok((works, abort, written))
}
