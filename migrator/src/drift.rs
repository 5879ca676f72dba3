//! Row-level comparison of the two sides of a dual write, shared by `migrate watch` and
//! `migrate rollback`.
//!
//! - [`TableView`]: a table of the plan as the dual-write tools see it — minus side-local
//!   columns (`ignore_columns`, e.g. an event log's per-side surrogate id: the table is then
//!   compared as a multiset of rows), with the key rows are shown by (the route's key column,
//!   else the primary key) and its `updated_at` column if it has one; [`table_views`] applies
//!   the `[watch]` settings to every table of a plan.
//! - Reading rows by key from either side ([`source_rows_by_key`], [`target_rows_by_key`]):
//!   both give canonical rows ([`crate::rows`]), keyed by the canonical bytes of the key, so a
//!   row hashes and compares the same whichever engine it came from.
//! - [`compare`]: the drift between the two versions of one row, classified
//!   ([`DriftClass`]: `missing_in_new`, `missing_in_legacy`, `value_differs` with the column
//!   and both values), and [`drift_line`], its one line for people.

use std::collections::HashMap;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::config::WatchConfig;
use crate::convert::{canon_field, display_sqlite, PgType};
use crate::error::{DualWriteError, DwResult};
use crate::introspect::quote_sqlite;
use crate::plan::{quote_literal, Plan, TablePlan};
use crate::rows::{canon_key_display, canon_source_row, display_canon, scan_target, CanonRow};
use crate::source::ReadKey;
use crate::source::{read_rows_where, KeyValue};

/// Keys looked up per query.
const LOOKUP_BATCH: usize = 400;

/// The drift classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftClass {
    /// In SQLite (legacy), not in PostgreSQL (new).
    MissingInNew,
    /// In PostgreSQL (new), not in SQLite (legacy).
    MissingInLegacy,
    /// On both sides, with at least one column different.
    ValueDiffers,
}

impl DriftClass {
    /// All three, in label order.
    pub const ALL: [DriftClass; 3] = [
        DriftClass::MissingInNew,
        DriftClass::MissingInLegacy,
        DriftClass::ValueDiffers,
    ];
    /// The label value (`missing_in_new` ...).
    pub fn as_str(self) -> &'static str {
        match self {
            DriftClass::MissingInNew => "missing_in_new",
            DriftClass::MissingInLegacy => "missing_in_legacy",
            DriftClass::ValueDiffers => "value_differs",
        }
    }
}

/// One differing column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDiff {
    /// The column.
    pub column: String,
    /// The legacy (SQLite) value, as PostgreSQL would hold it after conversion.
    pub legacy: String,
    /// The new (PostgreSQL) value.
    pub new: String,
}

/// One drifting row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    /// The table (its PostgreSQL name).
    pub table: String,
    /// The row's key as JSON, e.g. `{"task_id":"TASK-101"}`.
    pub key: String,
    /// How it differs.
    pub class: DriftClass,
    /// The differing columns (`value_differs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<ColumnDiff>,
    /// Why, when the class alone does not say (e.g. a legacy value that does not convert).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A table as the dual-write tools see it.
#[derive(Debug, Clone)]
pub struct TableView {
    /// The plan's table minus ignored columns; `key_columns` is the primary key (empty when an
    /// ignored column was part of it: rows are then compared as a multiset).
    pub plan: TablePlan,
    /// Same columns; `key_columns` are the columns rows are shown by.
    pub display: TablePlan,
    /// Index of the `updated_at` column (a timestamp) in `plan.columns`.
    pub updated_at: Option<usize>,
    /// Columns left out of every comparison.
    pub ignored: Vec<String>,
}

impl TableView {
    /// The view of `table`: `ignore` columns left out, rows shown by `display_key` (else the
    /// primary key), `updated_at` the named column (else one called `updated_at`, if it is a
    /// timestamp).
    pub fn new(
        table: &TablePlan,
        ignore: &[String],
        display_key: Option<&str>,
        updated_at: Option<&str>,
    ) -> DwResult<TableView> {
        let bad = |detail: String| DualWriteError::Table {
            table: table.source_name.clone(),
            detail,
        };
        for c in ignore {
            if !table.columns.iter().any(|x| &x.name == c) {
                return Err(bad(format!("ignore_columns: no column {c:?}")));
            }
        }
        let keep: Vec<usize> = (0..table.columns.len())
            .filter(|i| !ignore.contains(&table.columns[*i].name))
            .collect();
        if keep.is_empty() {
            return Err(bad("ignore_columns leaves no column to compare".into()));
        }
        let remap = |old: usize| keep.iter().position(|k| *k == old);
        let mut plan = table.clone();
        plan.columns = keep.iter().map(|i| table.columns[*i].clone()).collect();
        let pk: Option<Vec<usize>> = table.key_columns.iter().map(|c| remap(*c)).collect();
        plan.key_columns = pk.unwrap_or_default();
        plan.read_key = match &table.read_key {
            ReadKey::Rowid(r) => ReadKey::Rowid(r.clone()),
            ReadKey::Pk(cols) => ReadKey::Pk(
                cols.iter()
                    .map(|c| remap(*c))
                    .collect::<Option<Vec<usize>>>()
                    .ok_or_else(|| {
                        bad(
                            "a primary key column of a WITHOUT ROWID table cannot be ignored"
                                .into(),
                        )
                    })?,
            ),
        };
        plan.identity = None;
        plan.indexes.clear();
        plan.checks.clear();
        plan.foreign_keys.clear();
        let mut display = plan.clone();
        if let Some(k) = display_key {
            let i = plan
                .columns
                .iter()
                .position(|c| c.name == k)
                .ok_or_else(|| bad(format!("key column {k:?} is not compared (or absent)")))?;
            display.key_columns = vec![i];
        }
        let is_time = |i: usize| {
            matches!(
                plan.columns[i].conversion.pg_type,
                PgType::Timestamp | PgType::Timestamptz
            )
        };
        let updated_at = match updated_at {
            Some(n) => {
                let i = plan
                    .columns
                    .iter()
                    .position(|c| c.name == n)
                    .ok_or_else(|| bad(format!("updated_at: no column {n:?}")))?;
                if !is_time(i) {
                    return Err(bad(format!(
                        "updated_at column {n:?} is not a date/time in the plan"
                    )));
                }
                Some(i)
            }
            None => plan
                .columns
                .iter()
                .position(|c| c.name.eq_ignore_ascii_case("updated_at"))
                .filter(|i| is_time(*i)),
        };
        Ok(TableView {
            plan,
            display,
            updated_at,
            ignored: ignore.to_vec(),
        })
    }

    /// The table's name in reports and metrics (its PostgreSQL name).
    pub fn name(&self) -> &str {
        &self.plan.name
    }

    /// Index of a column by name.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.plan.columns.iter().position(|c| c.name == name)
    }

    /// Key values of a canonical row's columns `cols` (None if a key column holds a value
    /// that is not an integer or text).
    pub fn key_of(&self, cols: &[usize], row: &CanonRow) -> Option<Vec<KeyValue>> {
        cols.iter()
            .map(|&c| canon_key_value(self.plan.columns[c].conversion.pg_type, row.column(c)))
            .collect()
    }

    /// Canonical bytes of key values for columns `cols`, as [`CanonRow::key`] gives them for
    /// a row holding them (None if a value does not convert).
    pub fn canon_key(&self, cols: &[usize], key: &[KeyValue]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        for (&c, v) in cols.iter().zip(key) {
            let conv = &self.plan.columns[c].conversion;
            scratch.clear();
            conv.encode(v.as_ref(), &mut scratch).ok()?;
            let field = if scratch[..4] == [0xff, 0xff, 0xff, 0xff] {
                None
            } else {
                Some(&scratch[4..])
            };
            canon_field(conv.pg_type, field, &mut out);
        }
        Some(out)
    }

    /// A key as people see it: `{"task_id":"TASK-101"}`.
    pub fn key_display(&self, cols: &[usize], key: &[KeyValue]) -> String {
        let mut m = serde_json::Map::new();
        for (&c, v) in cols.iter().zip(key) {
            m.insert(
                self.plan.columns[c].name.clone(),
                crate::source::key_json_value(v.as_ref()),
            );
        }
        serde_json::Value::Object(m).to_string()
    }

    /// A row's key as people see it (by the display key).
    pub fn row_display(&self, row: &CanonRow) -> String {
        canon_key_display(&self.display, row)
    }
}

/// The tables of `plan` as the dual-write tools see them (skipped ones left out), with the
/// `[watch]` settings applied. Also used by rollback.
pub fn table_views(plan: &Plan, cfg: &WatchConfig) -> DwResult<Vec<TableView>> {
    for name in cfg.tables.keys() {
        if plan.table(name).is_none() {
            return Err(DualWriteError::Config(format!(
                "tables.{name}: no such table in the plan"
            )));
        }
    }
    let mut views = Vec::new();
    for t in &plan.tables {
        let tc = cfg.tables.get(&t.source_name).cloned().unwrap_or_default();
        if tc.skip {
            continue;
        }
        let route_col = cfg
            .routes
            .values()
            .find(|r| r.table.as_deref() == Some(&t.source_name))
            .and_then(|r| r.column.clone());
        let key = tc.key.clone().or(route_col);
        views.push(TableView::new(
            t,
            &tc.ignore_columns,
            key.as_deref(),
            tc.updated_at.as_deref(),
        )?);
    }
    Ok(views)
}

/// One line for a drifting row.
pub fn drift_line(d: &Drift) -> String {
    let mut s = format!("{} {} {}", d.class.as_str(), d.table, d.key);
    for c in &d.columns {
        s.push_str(&format!(
            "; column {}: legacy {} new {}",
            c.column, c.legacy, c.new
        ));
    }
    if let Some(n) = &d.note {
        s.push_str(&format!(" ({n})"));
    }
    s
}

/// Key value of a canonical integer or text column.
pub fn canon_key_value(ty: PgType, c: &[u8]) -> Option<KeyValue> {
    if c.first() == Some(&0xFF) {
        return Some(KeyValue::Null);
    }
    let body = c.get(5..)?;
    match ty {
        PgType::Smallint | PgType::Integer | PgType::Bigint => Some(KeyValue::Int(
            i64::from_be_bytes(body.get(..8)?.try_into().ok()?),
        )),
        PgType::Text | PgType::Varchar(_) => Some(KeyValue::Text(body.to_vec())),
        _ => None,
    }
}

/// A key value given as text (e.g. by the proxy), typed for the column.
pub fn key_value_from_text(ty: PgType, s: &str) -> KeyValue {
    match ty {
        PgType::Smallint | PgType::Integer | PgType::Bigint => match s.parse::<i64>() {
            Ok(i) => KeyValue::Int(i),
            Err(_) => KeyValue::Text(s.as_bytes().to_vec()),
        },
        _ => KeyValue::Text(s.as_bytes().to_vec()),
    }
}

/// Key values of a verify report's key (`{"id":5}`) for columns `cols`; None when a value is
/// not an integer or a string.
pub fn key_from_display(view: &TablePlan, cols: &[usize], display: &str) -> Option<Vec<KeyValue>> {
    let v: serde_json::Value = serde_json::from_str(display).ok()?;
    let obj = v.as_object()?;
    cols.iter()
        .map(|&c| match obj.get(&view.columns[c].name)? {
            serde_json::Value::Number(n) => n.as_i64().map(KeyValue::Int),
            serde_json::Value::String(s) => Some(KeyValue::Text(s.as_bytes().to_vec())),
            serde_json::Value::Null => Some(KeyValue::Null),
            _ => None,
        })
        .collect()
}

/// The legacy side of a row: canonical, or a value that does not convert.
#[derive(Debug, Clone)]
pub enum LegacyRow {
    Row(CanonRow),
    Reject {
        /// Display key.
        key: String,
        column: usize,
        raw: String,
        reason: String,
    },
}

/// SQLite rows of `view` whose columns `cols` hold one of `keys`, by canonical key bytes.
pub fn source_rows_by_key(
    conn: &Connection,
    view: &TableView,
    cols: &[usize],
    keys: &[Vec<KeyValue>],
) -> DwResult<HashMap<Vec<u8>, LegacyRow>> {
    let mut out = HashMap::new();
    let names: Vec<String> = cols
        .iter()
        .map(|c| quote_sqlite(&view.plan.columns[*c].name))
        .collect();
    let mut scratch = Vec::new();
    let mut canon = CanonRow::default();
    for batch in keys.chunks(LOOKUP_BATCH) {
        let mut params: Vec<KeyValue> = Vec::with_capacity(batch.len() * cols.len());
        let cond = if cols.len() == 1 {
            let ph: Vec<String> = (1..=batch.len()).map(|i| format!("?{i}")).collect();
            params.extend(batch.iter().map(|k| k[0].clone()));
            format!("{} IN ({})", names[0], ph.join(", "))
        } else {
            let mut rows = Vec::new();
            for k in batch {
                let ph: Vec<String> = k
                    .iter()
                    .map(|v| {
                        params.push(v.clone());
                        format!("?{}", params.len())
                    })
                    .collect();
                rows.push(format!("({})", ph.join(", ")));
            }
            format!("({}) IN (VALUES {})", names.join(", "), rows.join(", "))
        };
        read_rows_where(conn, &view.plan, &cond, &params, |row| {
            match canon_source_row(&view.plan, row, &mut scratch, &mut canon) {
                Ok(()) => {
                    out.insert(canon.key(cols), LegacyRow::Row(canon.clone()));
                }
                Err((column, reason)) => {
                    let key: Vec<KeyValue> = cols
                        .iter()
                        .map(|c| KeyValue::from_ref(row.value(*c)))
                        .collect();
                    if let Some(k) = view.canon_key(cols, &key) {
                        out.insert(
                            k,
                            LegacyRow::Reject {
                                key: row.key_display(&view.display),
                                column,
                                raw: display_sqlite(&row.value(column)),
                                reason: reason.0,
                            },
                        );
                    }
                }
            }
            Ok(true)
        })?;
    }
    Ok(out)
}

/// A PostgreSQL literal for a key value (untyped, so it takes the column's type).
fn pg_literal(v: &KeyValue) -> String {
    match v {
        KeyValue::Null => "NULL".into(),
        KeyValue::Int(i) => format!("'{i}'"),
        KeyValue::Real(f) => format!("'{f:?}'"),
        KeyValue::Text(b) => quote_literal(&String::from_utf8_lossy(b)),
        KeyValue::Blob(b) => {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            format!("'\\x{hex}'")
        }
    }
}

/// PostgreSQL rows of `view` whose columns `cols` hold one of `keys`, by canonical key bytes.
pub async fn target_rows_by_key(
    client: &tokio_postgres::Client,
    schema: &str,
    view: &TableView,
    cols: &[usize],
    keys: &[Vec<KeyValue>],
) -> DwResult<HashMap<Vec<u8>, CanonRow>> {
    let mut out = HashMap::new();
    let names: Vec<String> = cols
        .iter()
        .map(|c| quote_sqlite(&view.plan.columns[*c].name))
        .collect();
    for batch in keys.chunks(LOOKUP_BATCH) {
        let cond = if cols.len() == 1 {
            let lits: Vec<String> = batch.iter().map(|k| pg_literal(&k[0])).collect();
            format!("{} IN ({})", names[0], lits.join(", "))
        } else {
            let rows: Vec<String> = batch
                .iter()
                .map(|k| {
                    let l: Vec<String> = k.iter().map(pg_literal).collect();
                    format!("({})", l.join(", "))
                })
                .collect();
            format!("({}) IN ({})", names.join(", "), rows.join(", "))
        };
        scan_target(client, schema, &view.plan, Some(&cond), |r| {
            out.insert(r.key(cols), r.clone());
            Ok(())
        })
        .await?;
    }
    Ok(out)
}

/// The drift between the legacy and the new version of one row (None: they agree).
pub fn compare(
    view: &TableView,
    legacy: Option<&LegacyRow>,
    new: Option<&CanonRow>,
) -> Option<Drift> {
    let table = view.name().to_string();
    match (legacy, new) {
        (None, None) => None,
        (Some(LegacyRow::Row(l)), None) => Some(Drift {
            table,
            key: view.row_display(l),
            class: DriftClass::MissingInNew,
            columns: vec![],
            note: None,
        }),
        (
            Some(LegacyRow::Reject {
                key,
                column,
                raw,
                reason,
            }),
            None,
        ) => Some(Drift {
            table,
            key: key.clone(),
            class: DriftClass::MissingInNew,
            columns: vec![],
            note: Some(format!(
                "column {} holds {raw}, which does not convert: {reason}",
                view.plan.columns[*column].name
            )),
        }),
        (None, Some(n)) => Some(Drift {
            table,
            key: view.row_display(n),
            class: DriftClass::MissingInLegacy,
            columns: vec![],
            note: None,
        }),
        (Some(LegacyRow::Row(l)), Some(n)) => {
            if l.bytes == n.bytes {
                return None;
            }
            let columns = view
                .plan
                .columns
                .iter()
                .enumerate()
                .filter(|(i, _)| l.column(*i) != n.column(*i))
                .map(|(i, c)| ColumnDiff {
                    column: c.name.clone(),
                    legacy: display_canon(c.conversion.pg_type, l.column(i)),
                    new: display_canon(c.conversion.pg_type, n.column(i)),
                })
                .collect();
            Some(Drift {
                table,
                key: view.row_display(n),
                class: DriftClass::ValueDiffers,
                columns,
                note: None,
            })
        }
        (
            Some(LegacyRow::Reject {
                column,
                raw,
                reason,
                ..
            }),
            Some(n),
        ) => {
            let c = &view.plan.columns[*column];
            Some(Drift {
                table,
                key: view.row_display(n),
                class: DriftClass::ValueDiffers,
                columns: vec![ColumnDiff {
                    column: c.name.clone(),
                    legacy: format!("{raw} (does not convert: {reason})"),
                    new: display_canon(c.conversion.pg_type, n.column(*column)),
                }],
                note: None,
            })
        }
    }
}

/// [`crate::verify()`] of the views `which` (not recorded), in that order.
pub async fn verify_views(
    plan: &Plan,
    views: &[TableView],
    which: &[usize],
    source: &std::path::Path,
    target: &str,
) -> DwResult<Vec<crate::verify::TableVerify>> {
    let mut sub = plan.clone();
    sub.tables = which.iter().map(|v| views[*v].plan.clone()).collect();
    sub.views.clear();
    let opts = crate::verify::VerifyOptions {
        chunks: 1024,
        max_listed: 100_000,
        max_narrowed_rows: 1_000_000,
        jobs: 1,
        record: false,
    };
    let rep = crate::verify(
        &sub,
        source,
        target,
        &opts,
        &std::sync::Arc::new(crate::progress::Observer::silent()),
    )
    .await?;
    Ok(rep.tables)
}
