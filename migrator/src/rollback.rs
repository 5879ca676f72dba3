//! `migrate rollback`: back to the legacy with nothing lost.
//!
//! 1. **Scope.** Per table (the `[watch]` table settings apply: skipped tables are left
//!    alone, ignored columns are neither compared nor written), the PostgreSQL rows created or
//!    changed since T (`--since`; default: when the migration into this schema started):
//!    - tables with an `updated_at` column: rows with `updated_at >= T`;
//!    - other tables with a primary key: every row that differs from, or is missing in, SQLite
//!      (found by [`crate::verify()`]'s chunked checksums);
//!    - tables compared as a multiset (no key, or its key ignored, like an event log's
//!      per-side ids): the rows PostgreSQL holds more often than SQLite; they are inserted
//!      without the ignored columns, so SQLite assigns its own ids.
//! 2. **Write-back**, in one SQLite transaction (`BEGIN IMMEDIATE`: the legacy app's writers
//!    wait, the decisions are made on what SQLite holds under the lock). Each row is converted
//!    to the legacy's storage format ([`crate::writeback`]: timestamps in the column's text
//!    shape, booleans as 0/1 or the column's spellings ...) and checked to convert back to the
//!    very value PostgreSQL holds. A row missing in SQLite is inserted; an identical one is
//!    left; a differing one follows `--conflict`:
//!    - `newest-wins` (default): the newer `updated_at` wins — legacy's version is kept when
//!      it is strictly newer; without `updated_at`, new wins;
//!    - `abort`: if SQLite also changed the row since T (its `updated_at >= T`; without
//!      `updated_at`, any differing row), nothing at all is written and the conflicts are
//!      listed.
//!
//!    `--dry-run` makes the same decisions, lists them, and writes nothing.
//! 3. **Reverse verify**: every row in scope is read again from both sides and compared
//!    canonically — legacy must hold what new holds (rows where legacy was newer must still be
//!    newer; rows new changed again meanwhile are left to step 5).
//! 4. **Routes to legacy**: `POST {admin}/admin/rollback` `{}` with
//!    `Authorization: Bearer $FICUS_ADMIN_TOKEN` when `--admin` is given and reachable; else
//!    directly in the proxy's state store (`--proxy-state`): `rollout.percent_bp = 0`, actor
//!    `migrate-rollback`, one `audit` row per route (a running proxy applies it on its next
//!    restart or reload). Routes are those the state store knows (rollout, audit,
//!    dual_writes) plus those of `--proxy-config`. Not done when the reverse verify failed.
//! 5. **Catch-up**: once routes point at legacy, one more pass over rows changed on the new
//!    side since step 1 began (writes that landed between the snapshot and the switch), with
//!    its own transaction and verify. Under `abort`, conflicting rows are listed, not written.
//!
//! Nothing is ever written to PostgreSQL, and nothing is deleted from either side.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ficus_state::ToLegacy;
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use serde::{Deserialize, Serialize};

use crate::config::MigrationConfig;
use crate::convert::utc_text;
use crate::drift::{
    compare, drift_line, key_from_display, source_rows_by_key, table_views, target_rows_by_key,
    verify_views, ColumnDiff, Drift, LegacyRow, TableView,
};
use crate::error::{DualWriteError, DwResult};
use crate::introspect::{introspect, quote_sqlite};
use crate::plan::Plan;
use crate::rows::{canon_source_row, scan_target, CanonRow};
use crate::source::{open_source, read_rows_where, KeyValue};
use crate::verify::Difference;
use crate::writeback::{canon_unix_us, LegacyStyle};

/// Who the write-back trusts when both sides changed a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictPolicy {
    /// The newer `updated_at` wins (new wins without `updated_at`).
    NewestWins,
    /// Write nothing if SQLite also changed a differing row since T.
    Abort,
}

/// How `migrate rollback` runs.
#[derive(Clone)]
pub struct RollbackOptions {
    pub source: PathBuf,
    pub target: String,
    pub schema: String,
    /// T: RFC 3339 or `YYYY-MM-DD HH:MM:SS[.f]` (UTC). Default: the migration's start.
    pub since: Option<String>,
    pub dry_run: bool,
    pub conflict: ConflictPolicy,
    /// What sends every route to legacy once legacy holds everything (the proxy crate's
    /// `LegacySwitch`: admin API, else the state store); `None`: routes are left alone.
    pub to_legacy: Option<Arc<dyn ToLegacy>>,
    /// Row changes listed per table (all are counted).
    pub max_listed: usize,
}

impl RollbackOptions {
    pub fn new(source: &Path, target: &str) -> RollbackOptions {
        RollbackOptions {
            source: source.to_path_buf(),
            target: target.to_string(),
            schema: "public".into(),
            since: None,
            dry_run: false,
            conflict: ConflictPolicy::NewestWins,
            to_legacy: None,
            max_listed: 1000,
        }
    }
}

/// What happens to one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RowAction {
    Insert,
    Update,
    /// Legacy's version is newer (`newest-wins`).
    KeepLegacy,
    /// Both sides changed it since T (`abort`).
    Conflict,
}

/// One row written back (or that would be, or that conflicts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowChange {
    pub key: String,
    pub action: RowAction,
    /// For updates, keep-legacy and conflicts: the differing columns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<ColumnDiff>,
    /// Copies inserted (multiset tables).
    #[serde(default, skip_serializing_if = "is_one")]
    pub copies: u64,
}

fn is_one(n: &u64) -> bool {
    *n == 1
}

/// One table's part of a pass.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TableRollback {
    pub table: String,
    /// Which rows were in scope, in words.
    pub scope: String,
    pub in_scope: u64,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub kept_legacy: u64,
    pub conflicts: u64,
    /// Up to `max_listed` changes.
    pub changes: Vec<RowChange>,
    /// Rows compared by the reverse verify.
    pub verified: u64,
    /// Rows new changed again after the snapshot (left to the catch-up).
    pub changed_since: u64,
    /// What the reverse verify found (empty: legacy holds what new holds).
    pub differences: Vec<Drift>,
}

/// One pass: scope, write-back, reverse verify.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pass {
    /// T of this pass (UTC).
    pub since: String,
    pub tables: Vec<TableRollback>,
    /// Conflicts under `abort`: nothing was written.
    pub aborted: bool,
    /// The SQLite transaction committed.
    pub written: bool,
    /// Reverse verify clean (also true when nothing was written).
    pub verified_clean: bool,
}

impl Pass {
    fn count(&self, f: impl Fn(&TableRollback) -> u64) -> u64 {
        self.tables.iter().map(f).sum()
    }
}

pub use ficus_state::RouteSwitch;

/// The outcome of `migrate rollback`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackReport {
    pub dry_run: bool,
    pub conflict: ConflictPolicy,
    pub pass: Pass,
    pub routes: RouteSwitch,
    /// The catch-up pass after the switch.
    pub catch_up: Option<Pass>,
    /// Everything done and verified.
    pub ok: bool,
    pub seconds: f64,
}

impl RollbackReport {
    /// Text for people.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let pass_text = |s: &mut String, p: &Pass, title: &str| {
            let _ = writeln!(
                s,
                "{title}: rows created or changed on the new side since {}",
                p.since
            );
            for t in &p.tables {
                let _ = writeln!(
                    s,
                    "{:<24} {} in scope ({}): insert {} update {} unchanged {} keep-legacy {} conflicts {}{}",
                    t.table,
                    t.in_scope,
                    t.scope,
                    t.inserted,
                    t.updated,
                    t.unchanged,
                    t.kept_legacy,
                    t.conflicts,
                    if p.written {
                        format!(", reverse verify {} row(s): {}", t.verified, if t.differences.is_empty() { "clean" } else { "DIFFERENT" })
                    } else {
                        String::new()
                    }
                );
                for c in &t.changes {
                    let mut line = format!(
                        "  {:<12} {}",
                        match c.action {
                            RowAction::Insert => "insert",
                            RowAction::Update => "update",
                            RowAction::KeepLegacy => "keep-legacy",
                            RowAction::Conflict => "CONFLICT",
                        },
                        c.key
                    );
                    if c.copies > 1 {
                        line.push_str(&format!(" ×{}", c.copies));
                    }
                    for d in &c.columns {
                        line.push_str(&format!("; {}: {} → {}", d.column, d.legacy, d.new));
                    }
                    let _ = writeln!(s, "{line}");
                }
                let listed = t.changes.len() as u64;
                let total = t.inserted + t.updated + t.kept_legacy + t.conflicts;
                if total > listed {
                    let _ = writeln!(s, "  … {} more", total - listed);
                }
                if t.changed_since > 0 {
                    let _ = writeln!(
                        s,
                        "  {} row(s) changed on the new side again meanwhile",
                        t.changed_since
                    );
                }
                for d in &t.differences {
                    let _ = writeln!(s, "  DIFFERENT after write-back: {}", drift_line(d));
                }
            }
        };
        pass_text(
            &mut s,
            &self.pass,
            if self.dry_run {
                "dry run"
            } else {
                "write-back"
            },
        );
        let p = &self.pass;
        if self.dry_run {
            let _ = writeln!(
                s,
                "dry run: would insert {} and update {} row(s) in SQLite; nothing written",
                p.count(|t| t.inserted),
                p.count(|t| t.updated)
            );
        } else if p.aborted {
            let _ = writeln!(s, "ABORTED: {} row(s) changed on both sides since {} (--conflict abort); nothing written", p.count(|t| t.conflicts), p.since);
        } else {
            let _ = writeln!(
                s,
                "SQLite: {} inserted, {} updated in one transaction; reverse verify {}",
                p.count(|t| t.inserted),
                p.count(|t| t.updated),
                if p.verified_clean {
                    "clean"
                } else {
                    "FOUND DIFFERENCES"
                }
            );
        }
        match &self.routes {
            RouteSwitch::NotRequested => {
                let _ = writeln!(
                    s,
                    "routes: NOT switched (give --admin URL or --proxy-state FILE)"
                );
            }
            RouteSwitch::Skipped { reason } => {
                let _ = writeln!(s, "routes: not switched: {reason}");
            }
            RouteSwitch::AdminApi { url, response } => {
                let _ = writeln!(
                    s,
                    "routes: every route set to legacy through {url}: {response}"
                );
            }
            RouteSwitch::StateStore { path, routes, note } => {
                let _ = writeln!(
                    s,
                    "routes: {} set to legacy (0%) in {path} ({note})",
                    routes.join(", ")
                );
            }
            RouteSwitch::Failed { detail } => {
                let _ = writeln!(s, "routes: SWITCH FAILED: {detail}");
            }
        }
        if let Some(c) = &self.catch_up {
            pass_text(&mut s, c, "catch-up");
        }
        let _ = writeln!(
            s,
            "rollback {} in {:.2} s",
            if self.ok {
                "complete"
            } else if self.dry_run {
                "dry run done"
            } else {
                "NOT complete"
            },
            self.seconds
        );
        s
    }
}

/// Parse `--since` (the one syntax of [`ficus_core::since`]: RFC 3339, a UTC date or
/// date-time, or an age like `2h`) → µs since 1970.
pub fn parse_since(s: &str) -> DwResult<i64> {
    let t = ficus_core::since::parse_since(s, time::OffsetDateTime::now_utc())?;
    Ok(ficus_core::stamp::unix_us(t))
}

fn now_us() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64
}

/// Roll back: write back, verify, switch routes, catch up (see the module docs).
pub async fn rollback(
    opts: &RollbackOptions,
    config: &MigrationConfig,
) -> DwResult<RollbackReport> {
    let started = Instant::now();
    let plan = crate::verify::plan_for(&opts.source, &opts.target, &opts.schema, config).await?;
    let views = table_views(&plan, &config.watch)?;
    let client = crate::pg::connect(&opts.target).await?;
    let since = match &opts.since {
        Some(s) => parse_since(s)?,
        None => match crate::checkpoint::load_migration(&client, &opts.schema).await? {
            Some((m, _)) => parse_since(&m.started_at)?,
            None => {
                return Err(DualWriteError::NoSince(
                    "none given, and the target holds no ficus migration to start from".into(),
                ))
            }
        },
    };
    let pass_start = now_us();
    let pass = run_pass(opts, &plan, &views, &client, since, opts.dry_run, false).await?;
    let mut report = RollbackReport {
        dry_run: opts.dry_run,
        conflict: opts.conflict,
        routes: RouteSwitch::NotRequested,
        catch_up: None,
        ok: false,
        seconds: 0.0,
        pass,
    };
    let skip = if opts.dry_run {
        Some("dry run".to_string())
    } else if report.pass.aborted {
        Some("conflicts (--conflict abort)".into())
    } else if !report.pass.verified_clean {
        Some(
            "the reverse verify found differences; legacy does not hold everything new holds"
                .into(),
        )
    } else {
        None
    };
    report.routes = match skip {
        Some(reason) => RouteSwitch::Skipped { reason },
        None => match &opts.to_legacy {
            Some(t) => t.to_legacy("migrate-rollback").await,
            None => RouteSwitch::NotRequested,
        },
    };
    let switched = report.routes.switched();
    if switched {
        // Writes that reached new between the snapshot and the switch.
        let margin = 5_000_000;
        let c = run_pass(
            opts,
            &plan,
            &views,
            &client,
            pass_start - margin,
            false,
            true,
        )
        .await?;
        report.catch_up = Some(c);
    }
    report.ok = !opts.dry_run
        && report.pass.written
        && report.pass.verified_clean
        && switched
        && report
            .catch_up
            .as_ref()
            .is_some_and(|c| c.verified_clean && c.count(|t| t.conflicts) == 0);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The new side's rows in scope of one table.
enum Scope {
    /// Keyed rows.
    Keyed(Vec<CanonRow>),
    /// Multiset rows new holds more often than legacy, with how many more.
    Extra(Vec<(CanonRow, u64)>),
}

async fn scope_of(
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
async fn multiset_extra(
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

/// A decided row: its change and (for inserts/updates) the SQLite values.
struct Decided {
    change: RowChange,
    values: Option<Vec<Value>>,
}

/// One table's decisions.
struct TableWork {
    vi: usize,
    report: TableRollback,
    rows: Vec<Decided>,
    /// Snapshot of the new side's rows, by key (keyed tables), for the reverse verify.
    snapshot: Vec<CanonRow>,
    keep_legacy: Vec<Vec<u8>>,
    /// Hashes of the multiset rows inserted.
    inserted_hashes: std::collections::HashSet<u128>,
}

#[allow(clippy::too_many_arguments)]
async fn run_pass(
    opts: &RollbackOptions,
    plan: &Plan,
    views: &[TableView],
    client: &tokio_postgres::Client,
    since: i64,
    dry_run: bool,
    catch_up: bool,
) -> DwResult<Pass> {
    let mut scopes = Vec::new();
    for vi in 0..views.len() {
        scopes.push(scope_of(opts, plan, views, vi, client, since).await?);
    }
    let views_owned: Vec<TableView> = views.to_vec();
    let (src, policy) = (opts.source.clone(), opts.conflict);
    let max_listed = opts.max_listed;
    let (works, aborted, written) = tokio::task::spawn_blocking(move || {
        write_back(
            &src,
            &views_owned,
            scopes,
            since,
            policy,
            dry_run,
            catch_up,
            max_listed,
        )
    })
    .await
    .map_err(|e| DualWriteError::Internal(format!("write-back thread: {e}")))??;
    let mut pass = Pass {
        since: utc_text(since),
        tables: Vec::new(),
        aborted,
        written,
        verified_clean: true,
    };
    for mut w in works {
        if written {
            reverse_verify(opts, plan, views, client, &mut w).await?;
            if !w.report.differences.is_empty() {
                pass.verified_clean = false;
            }
        }
        pass.tables.push(w.report);
    }
    Ok(pass)
}

#[allow(clippy::too_many_arguments)]
fn write_back(
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

/// Compare legacy with new for the rows of a pass, after its commit.
async fn reverse_verify(
    opts: &RollbackOptions,
    plan: &Plan,
    views: &[TableView],
    client: &tokio_postgres::Client,
    w: &mut TableWork,
) -> DwResult<()> {
    let v = &views[w.vi];
    if v.plan.key_columns.is_empty() {
        let extra = multiset_extra(opts, v, client).await?;
        w.report.verified = w.report.in_scope;
        for (row, n) in extra {
            if !w.inserted_hashes.contains(&row.hash()) {
                // Appended on the new side after the snapshot: left to the catch-up.
                w.report.changed_since += n;
                continue;
            }
            w.report.differences.push(Drift {
                table: v.name().into(),
                key: v.row_display(&row),
                class: crate::drift::DriftClass::MissingInLegacy,
                columns: vec![],
                note: (n > 1).then(|| format!("{n} copies")),
            });
        }
        return Ok(());
    }
    let kc = v.plan.key_columns.clone();
    let keys: Vec<Vec<KeyValue>> = w.snapshot.iter().filter_map(|r| v.key_of(&kc, r)).collect();
    let new = target_rows_by_key(client, &plan.schema, v, &kc, &keys).await?;
    let (src, vv, k2) = (opts.source.clone(), v.clone(), kc.clone());
    let legacy = tokio::task::spawn_blocking(move || {
        let conn = open_source(&src)?;
        source_rows_by_key(&conn, &vv, &k2, &keys)
    })
    .await
    .map_err(|e| DualWriteError::Internal(format!("verify thread: {e}")))??;
    let conflicts: BTreeSet<String> = w
        .rows
        .iter()
        .filter(|d| d.change.action == RowAction::Conflict)
        .map(|d| d.change.key.clone())
        .collect();
    for snap in &w.snapshot {
        let k = snap.key(&kc);
        w.report.verified += 1;
        let now_new = new.get(&k);
        if now_new.is_some_and(|n| n.bytes != snap.bytes) {
            w.report.changed_since += 1;
            continue;
        }
        let l = legacy.get(&k);
        if w.keep_legacy.contains(&k) {
            // Legacy's version was newer: it must still be.
            let ok = match (l, v.updated_at) {
                (Some(LegacyRow::Row(lr)), Some(u)) => {
                    canon_unix_us(lr.column(u)) > canon_unix_us(snap.column(u))
                }
                _ => false,
            };
            if ok {
                continue;
            }
        }
        if conflicts.contains(&v.row_display(snap)) {
            // Listed, deliberately not written (catch-up under abort).
            continue;
        }
        if let Some(d) = compare(v, l, Some(snap)) {
            w.report.differences.push(d);
        }
    }
    Ok(())
}
