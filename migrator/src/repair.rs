//! `migrate repair`: verify, then re-copy every row that differs from SQLite to PostgreSQL —
//! a row missing in PostgreSQL is inserted, a differing one updated, an extra one deleted —
//! in one transaction through the follower's apply path (same conversions, same quarantine,
//! foreign keys deferred to the commit), then verify again. `--dry-run` lists what it would
//! do. A table without a key is replaced whole when it differs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::error::{MigrateError, PgContext, Result};
use crate::follow::read::TableDelta;
use crate::plan::{Plan, TablePlan};
use crate::progress::Observer;
use crate::verify::{verify, Difference, VerifyOptions, VerifyReport};

/// How `migrate repair` runs.
#[derive(Debug, Clone, Default)]
pub struct RepairOptions {
    /// Only this table (source or target name).
    pub table: Option<String>,
    /// List, write nothing.
    pub dry_run: bool,
}

/// What repair does (or would do) to one row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowRepair {
    /// Target table.
    pub table: String,
    /// The row's key, e.g. `{"id":42}`.
    pub key: String,
    /// `insert`, `update` or `delete`.
    pub action: String,
}

/// The outcome of `migrate repair`.
#[derive(Debug, Clone, Serialize)]
pub struct RepairReport {
    /// Nothing was written.
    pub dry_run: bool,
    /// Rows repaired (or to repair), by table and key.
    pub rows: Vec<RowRepair>,
    /// Tables without a key replaced whole.
    pub replaced_tables: Vec<String>,
    /// Differences whose key could not be turned back into a SQLite key (listed, not
    /// repaired).
    pub unrepairable: Vec<String>,
    /// The verify before.
    pub before: VerifyReport,
    /// The verify after (not in a dry run).
    pub after: Option<VerifyReport>,
}

impl RepairReport {
    /// Every difference repaired and the second verify clean (or nothing to do).
    pub fn ok(&self) -> bool {
        self.unrepairable.is_empty()
            && match &self.after {
                Some(a) => a.clean,
                None => self.before.clean,
            }
    }

    /// Text for people.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let verb = if self.dry_run { "would " } else { "" };
        if self.before.clean {
            s.push_str("verify: clean — nothing to repair\n");
            return s;
        }
        for r in &self.rows {
            let _ = writeln!(s, "{verb}{:<6} {} {}", r.action, r.table, r.key);
        }
        for t in &self.replaced_tables {
            let _ = writeln!(s, "{verb}replace table {t} whole (it has no key)");
        }
        for u in &self.unrepairable {
            let _ = writeln!(s, "cannot repair: {u}");
        }
        let count = |a: &str| self.rows.iter().filter(|r| r.action == a).count();
        let _ = writeln!(
            s,
            "repair: {verb}insert {}, update {}, delete {} row(s){}",
            count("insert"),
            count("update"),
            count("delete"),
            if self.replaced_tables.is_empty() {
                String::new()
            } else {
                format!(", replace {} table(s)", self.replaced_tables.len())
            }
        );
        match &self.after {
            Some(a) if a.clean => s.push_str("verify after repair: clean\n"),
            Some(a) => {
                s.push_str("verify after repair: STILL DIFFERENT\n");
                s.push_str(&a.text());
            }
            None => {}
        }
        s
    }
}

/// A verify key (`{"id":42,"name":"x"}`) as the SQLite literal list the follower reads rows
/// by (`42,'x'`); `None` when a value cannot be given back exactly (a blob, a non-UTF-8 text).
fn key_literals(t: &TablePlan, key: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(key).ok()?;
    let obj = v.as_object()?;
    let mut out = Vec::new();
    for &c in &t.key_columns {
        let lit = match obj.get(&t.columns[c].name)? {
            serde_json::Value::Null => "NULL".to_string(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::String(s) if s.starts_with("\\x") => return None,
            serde_json::Value::String(s) => format!("'{}'", s.replace('\'', "''")),
            _ => return None,
        };
        out.push(lit);
    }
    Some(out.join(","))
}

/// Verify, re-copy what differs, verify again.
pub async fn repair(
    plan: &Plan,
    source: &Path,
    target: &str,
    opts: &RepairOptions,
    obs: &Arc<Observer>,
) -> Result<RepairReport> {
    let mut plan = plan.clone();
    if let Some(only) = &opts.table {
        plan.tables
            .retain(|t| &t.name == only || &t.source_name == only);
        if plan.tables.is_empty() {
            return Err(MigrateError::Config {
                path: "--table".into(),
                detail: format!("the plan has no table {only}"),
            });
        }
    }
    let vopts = VerifyOptions {
        max_listed: usize::MAX,
        record: !opts.dry_run,
        ..VerifyOptions::default()
    };
    let before = verify(&plan, source, target, &vopts, obs).await?;
    let mut report = RepairReport {
        dry_run: opts.dry_run,
        rows: Vec::new(),
        replaced_tables: Vec::new(),
        unrepairable: Vec::new(),
        before: before.clone(),
        after: None,
    };
    if before.clean {
        return Ok(report);
    }
    // Per table: the keys to re-read, or the whole table.
    let mut keys: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    let mut whole: Vec<usize> = Vec::new();
    for tv in before.tables.iter().filter(|t| !t.clean) {
        let Some(ti) = plan.tables.iter().position(|t| t.name == tv.table) else {
            continue;
        };
        let t = &plan.tables[ti];
        if t.key_columns.is_empty() || tv.truncated {
            if t.key_columns.is_empty() {
                whole.push(ti);
                report.replaced_tables.push(t.name.clone());
            } else {
                report.unrepairable.push(format!(
                    "table {}: more differing rows than verify narrows down ({}); repair the listed ones and run repair again",
                    t.name, tv.missing + tv.extra + tv.differs
                ));
            }
            if t.key_columns.is_empty() {
                continue;
            }
        }
        let mut seen = BTreeSet::new();
        for d in &tv.differences {
            let (key, action) = match d {
                Difference::MissingInTarget { key, .. } => (key, "insert"),
                Difference::ExtraInTarget { key } => (key, "delete"),
                Difference::ValueDiffers { key, .. } => (key, "update"),
            };
            if !seen.insert(key.clone()) {
                continue;
            }
            match key_literals(t, key) {
                Some(lit) => {
                    keys.entry(ti).or_default().insert(lit);
                    report.rows.push(RowRepair {
                        table: t.name.clone(),
                        key: key.clone(),
                        action: action.into(),
                    });
                }
                None => report.unrepairable.push(format!(
                    "table {}, key {key}: the key cannot be read back from SQLite exactly",
                    t.name
                )),
            }
        }
    }
    if opts.dry_run {
        return Ok(report);
    }
    let (src, p2) = (source.to_path_buf(), plan.clone());
    let deltas = tokio::task::spawn_blocking(move || -> Result<Vec<TableDelta>> {
        let conn = crate::source::open_source(&src)?;
        let mut out = Vec::new();
        for (ti, set) in &keys {
            out.push(crate::follow::read::read_keys(
                &conn,
                &p2.tables[*ti],
                *ti,
                set,
            )?);
        }
        for ti in &whole {
            out.push(crate::follow::read::read_whole(
                &conn,
                &p2.tables[*ti],
                *ti,
            )?);
        }
        Ok(out)
    })
    .await
    .map_err(|e| MigrateError::Internal(format!("repair thread: {e}")))??;
    let mut client = crate::pg::connect(target).await?;
    let tx = client.transaction().await.ctx("begin the repair")?;
    crate::follow::apply::apply_deltas(&tx, &plan, &deltas).await?;
    tx.commit().await.ctx("committing the repair")?;
    report.after = Some(verify(&plan, source, target, &vopts, obs).await?);
    Ok(report)
}
