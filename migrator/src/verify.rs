//! `migrate verify`: compare source and target without trusting either engine's hashing.
//!
//! Each row, read from SQLite and passed through the plan's conversion, or read from
//! PostgreSQL in binary, becomes the same canonical bytes ([`crate::rows`]) when the copy is
//! right. Rows are grouped into chunks by a hash of their key (of the whole row for tables
//! without a key): both sides are scanned once, concurrently, into per-chunk row counts and
//! order-independent 128-bit checksums. Only chunks whose checksums differ are read again,
//! and their rows are then narrowed down one by one: missing-in-target, extra-in-target, or
//! value-differs with the column and both values. Rows that do not convert are looked up in
//! `ficus.quarantine`: accounted for there, they are not differences.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::checkpoint;
use crate::error::{MigrateError, PgContext, Result};
use crate::pg::connect;
use crate::plan::{Plan, TablePlan};
use crate::progress::Observer;
use crate::quarantine;
use crate::rows::{
    canon_key_display, display_canon, scan_source, scan_target, CanonRow, SourceItem,
};

/// Options of verify.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Chunks per table (rows are spread over them by key hash).
    pub chunks: usize,
    /// Differences listed per table (all are counted).
    pub max_listed: usize,
    /// Rows of mismatching chunks held per side while narrowing down.
    pub max_narrowed_rows: usize,
    /// Tables verified at once.
    pub jobs: usize,
    /// Record results in `ficus.verifications`.
    pub record: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            chunks: 4096,
            max_listed: 100,
            max_narrowed_rows: 200_000,
            jobs: 2,
            record: true,
        }
    }
}

/// One difference.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Difference {
    /// In SQLite, not in PostgreSQL (and not quarantined).
    MissingInTarget {
        /// The row's key as JSON (an object in JSON reports).
        #[serde(with = "crate::keyjson")]
        key: String,
        /// Why it is not in the target, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// In PostgreSQL, not in SQLite.
    ExtraInTarget {
        /// The row's key as JSON (an object in JSON reports).
        #[serde(with = "crate::keyjson")]
        key: String,
    },
    /// Both have the row; this column differs.
    ///
    /// On a table without a primary key: a row missing in the target paired with an extra row
    /// that differs from it in few columns (at most half), the key being the source row's.
    ValueDiffers {
        /// The row's key as JSON (an object in JSON reports).
        #[serde(with = "crate::keyjson")]
        key: String,
        /// The column.
        column: String,
        /// The value SQLite holds, converted.
        source: String,
        /// The value PostgreSQL holds.
        target: String,
    },
}

/// Verify result of one table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TableVerify {
    /// The table (its PostgreSQL name).
    pub table: String,
    /// No difference.
    pub clean: bool,
    /// Rows in SQLite.
    pub source_rows: u64,
    /// Rows in PostgreSQL.
    pub target_rows: u64,
    /// Source rows that do not convert and are in ficus.quarantine.
    pub quarantined: u64,
    /// Rows missing in the target.
    pub missing: u64,
    /// Rows only the target has.
    pub extra: u64,
    /// Rows with at least one differing column.
    pub differs: u64,
    /// Chunks the rows were spread over.
    pub chunks: usize,
    /// Chunks whose checksums differed.
    pub mismatched_chunks: usize,
    /// Up to `max_listed` differences.
    pub differences: Vec<Difference>,
    /// Mismatching chunks held more rows than could be narrowed down.
    pub truncated: bool,
    /// How long it took.
    pub seconds: f64,
}

/// Verify result of the whole migration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyReport {
    /// The target schema.
    pub schema: String,
    /// No table differs.
    pub clean: bool,
    /// Per table.
    pub tables: Vec<TableVerify>,
    /// How long it took.
    pub seconds: f64,
}

impl VerifyReport {
    /// Text for people.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        for t in &self.tables {
            let _ = writeln!(
                s,
                "{:<24} {}  source {} target {} quarantined {} missing {} extra {} differs {} ({} of {} chunks differ, {:.2} s)",
                t.table,
                if t.clean { "clean" } else { "DIFFERENT" },
                t.source_rows,
                t.target_rows,
                t.quarantined,
                t.missing,
                t.extra,
                t.differs,
                t.mismatched_chunks,
                t.chunks,
                t.seconds
            );
            for d in &t.differences {
                match d {
                    Difference::MissingInTarget { key, reason } => {
                        let _ = writeln!(
                            s,
                            "  missing-in-target {key}{}",
                            reason
                                .as_ref()
                                .map(|r| format!(" ({r})"))
                                .unwrap_or_default()
                        );
                    }
                    Difference::ExtraInTarget { key } => {
                        let _ = writeln!(s, "  extra-in-target   {key}");
                    }
                    Difference::ValueDiffers {
                        key,
                        column,
                        source,
                        target,
                    } => {
                        let _ = writeln!(s, "  value-differs     {key} column {column}: source {source} target {target}");
                    }
                }
            }
            let listed = t.differences.len() as u64;
            let total = t.missing + t.extra + t.differs;
            if total > listed {
                let _ = writeln!(s, "  … {} more", total - listed);
            }
            if t.truncated {
                let _ = writeln!(s, "  (too many differing rows to narrow down all of them)");
            }
        }
        let _ = writeln!(
            s,
            "{} in {:.2} s",
            if self.clean {
                "verify: clean"
            } else {
                "verify: DIFFERENCES FOUND"
            },
            self.seconds
        );
        s
    }
}

/// The plan verify should use: the one stored by `run` for this schema, else a fresh one.
pub async fn plan_for(
    source: &Path,
    target: &str,
    schema: &str,
    config: &crate::MigrationConfig,
) -> Result<Plan> {
    let client = connect(target).await?;
    if let Some((_, plan)) = checkpoint::load_migration(&client, schema).await? {
        return Ok(plan);
    }
    let (s, c, sc) = (source.to_path_buf(), config.clone(), schema.to_string());
    tokio::task::spawn_blocking(move || Plan::build(&s, &c, &sc))
        .await
        .map_err(|e| MigrateError::Internal(format!("plan thread: {e}")))?
}

/// Verify every table of `plan`.
pub async fn verify(
    plan: &Plan,
    source: &Path,
    target: &str,
    opts: &VerifyOptions,
    obs: &Arc<Observer>,
) -> Result<VerifyReport> {
    let started = Instant::now();
    obs.phase("verify");
    let mut main = connect(target).await?;
    if opts.record {
        checkpoint::ensure_schema(&mut main).await?;
    }
    let sem = Arc::new(tokio::sync::Semaphore::new(opts.jobs.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for (i, t) in plan.tables.iter().enumerate() {
        let (sem, t, src, tgt, schema, o) = (
            sem.clone(),
            Arc::new(t.clone()),
            source.to_path_buf(),
            target.to_string(),
            plan.schema.clone(),
            opts.clone(),
        );
        set.spawn(async move {
            let _p = sem.acquire_owned().await;
            verify_table(&src, &tgt, &schema, t, &o)
                .await
                .map(|r| (i, r))
        });
    }
    let mut tables = Vec::new();
    while let Some(r) = set.join_next().await {
        tables.push(r.map_err(|e| MigrateError::Internal(format!("verify task: {e}")))??);
    }
    tables.sort_by_key(|(i, _)| *i);
    let tables: Vec<TableVerify> = tables.into_iter().map(|(_, t)| t).collect();
    for t in &tables {
        for (k, v) in [
            ("quarantined", t.quarantined),
            ("missing", t.missing),
            ("extra", t.extra),
            ("differs", t.differs),
        ] {
            obs.metrics
                .verify_rows
                .with_label_values(&[&t.table, k])
                .set(v as i64);
        }
        if opts.record {
            let detail = serde_json::to_string(&t.differences).unwrap_or_default();
            main.execute(
                "INSERT INTO ficus.verifications (target_schema, table_name, clean, source_rows, target_rows, quarantined, missing, extra, differs, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                &[
                    &plan.schema,
                    &t.table,
                    &t.clean,
                    &(t.source_rows as i64),
                    &(t.target_rows as i64),
                    &(t.quarantined as i64),
                    &(t.missing as i64),
                    &(t.extra as i64),
                    &(t.differs as i64),
                    &detail,
                ],
            )
            .await
            .ctx("recording the verification")?;
        }
    }
    let clean = tables.iter().all(|t| t.clean);
    obs.phase("done");
    Ok(VerifyReport {
        schema: plan.schema.clone(),
        clean,
        tables,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Chunk {
    rows: u64,
    sum: u128,
}

/// Chunk of a row: by key hash, or by row hash for keyless tables.
fn chunk_of(table: &TablePlan, row: &CanonRow, row_hash: u128, chunks: usize) -> usize {
    if table.key_columns.is_empty() {
        (row_hash as u64 % chunks as u64) as usize
    } else {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for &c in &table.key_columns {
            h.update(row.column(c));
        }
        (h.digest() % chunks as u64) as usize
    }
}

struct SourcePass {
    chunks: Vec<Chunk>,
    rows: u64,
    quarantined: u64,
    unaccounted: Vec<(String, String)>,
    unaccounted_count: u64,
}

fn source_pass(
    source: &Path,
    table: &TablePlan,
    qkeys: &HashSet<String>,
    n: usize,
    listed: usize,
) -> Result<SourcePass> {
    let mut p = SourcePass {
        chunks: vec![Chunk::default(); n],
        rows: 0,
        quarantined: 0,
        unaccounted: Vec::new(),
        unaccounted_count: 0,
    };
    p.rows = scan_source(source, table, |row, item| {
        match item {
            SourceItem::Row(r) => {
                let h = r.hash();
                let c = &mut p.chunks[chunk_of(table, r, h, n)];
                c.rows += 1;
                c.sum = c.sum.wrapping_add(h);
            }
            SourceItem::Reject { column, reason } => {
                let key = row.key_display(table);
                if qkeys.contains(&key) {
                    p.quarantined += 1;
                } else {
                    p.unaccounted_count += 1;
                    if p.unaccounted.len() < listed {
                        p.unaccounted.push((key, format!("not in target and not quarantined: column {} does not convert: {reason}", table.columns[column].name)));
                    }
                }
            }
        }
        Ok(())
    })?;
    Ok(p)
}

struct Narrowed {
    rows: Vec<(String, CanonRow)>,
    overflow: bool,
}

async fn verify_table(
    source: &Path,
    target: &str,
    schema: &str,
    table: Arc<TablePlan>,
    opts: &VerifyOptions,
) -> Result<TableVerify> {
    let started = Instant::now();
    let n = opts.chunks.max(1);
    let client = connect(target).await?;
    let qkeys = quarantine::keys(&client, schema, &table.name).await?;

    // Pass 1: chunk checksums of both sides, concurrently.
    let (src, t2, listed) = (source.to_path_buf(), table.clone(), opts.max_listed);
    let src_task = tokio::task::spawn_blocking(move || source_pass(&src, &t2, &qkeys, n, listed));
    let mut tchunks = vec![Chunk::default(); n];
    let target_rows = scan_target(&client, schema, &table, None, |r| {
        let h = r.hash();
        let c = &mut tchunks[chunk_of(&table, r, h, n)];
        c.rows += 1;
        c.sum = c.sum.wrapping_add(h);
        Ok(())
    })
    .await?;
    let sp = src_task
        .await
        .map_err(|e| MigrateError::Internal(format!("source scan: {e}")))??;
    let bad: Vec<bool> = sp
        .chunks
        .iter()
        .zip(&tchunks)
        .map(|(a, b)| a != b)
        .collect();
    let mismatched = bad.iter().filter(|b| **b).count();

    let mut out = TableVerify {
        table: table.name.clone(),
        clean: true,
        source_rows: sp.rows,
        target_rows,
        quarantined: sp.quarantined,
        missing: sp.unaccounted_count,
        extra: 0,
        differs: 0,
        chunks: n,
        mismatched_chunks: mismatched,
        differences: sp
            .unaccounted
            .into_iter()
            .map(|(key, reason)| Difference::MissingInTarget {
                key,
                reason: Some(reason),
            })
            .collect(),
        truncated: false,
        seconds: 0.0,
    };

    // Pass 2: re-read only the rows of mismatching chunks and narrow them down.
    if mismatched > 0 {
        let cap = opts.max_narrowed_rows;
        let (src, t2, bad2) = (source.to_path_buf(), table.clone(), bad.clone());
        let src_task = tokio::task::spawn_blocking(move || -> Result<Narrowed> {
            let mut nr = Narrowed {
                rows: Vec::new(),
                overflow: false,
            };
            scan_source(&src, &t2, |row, item| {
                if let SourceItem::Row(r) = item {
                    if bad2[chunk_of(&t2, r, r.hash(), n)] {
                        if nr.rows.len() < cap {
                            nr.rows.push((row.key_display(&*t2), r.clone()));
                        } else {
                            nr.overflow = true;
                        }
                    }
                }
                Ok(())
            })?;
            Ok(nr)
        });
        let mut tn = Narrowed {
            rows: Vec::new(),
            overflow: false,
        };
        scan_target(&client, schema, &table, None, |r| {
            if bad[chunk_of(&table, r, r.hash(), n)] {
                if tn.rows.len() < cap {
                    tn.rows.push((canon_key_display(&table, r), r.clone()));
                } else {
                    tn.overflow = true;
                }
            }
            Ok(())
        })
        .await?;
        let sn = src_task
            .await
            .map_err(|e| MigrateError::Internal(format!("source scan: {e}")))??;
        out.truncated = sn.overflow || tn.overflow;
        narrow(&table, sn.rows, tn.rows, opts.max_listed, &mut out);
    }
    out.clean = out.missing == 0 && out.extra == 0 && out.differs == 0 && mismatched == 0;
    out.seconds = started.elapsed().as_secs_f64();
    Ok(out)
}

fn narrow(
    table: &TablePlan,
    src: Vec<(String, CanonRow)>,
    tgt: Vec<(String, CanonRow)>,
    listed: usize,
    out: &mut TableVerify,
) {
    let push = |out: &mut TableVerify, d: Difference| {
        if out.differences.len() < listed {
            out.differences.push(d);
        }
    };
    if table.key_columns.is_empty() {
        narrow_keyless(table, src, tgt, &push, out);
        return;
    }
    let key_cols = &table.key_columns;
    let mut tmap: HashMap<Vec<u8>, (String, CanonRow)> = tgt
        .into_iter()
        .map(|(k, r)| (r.key(key_cols), (k, r)))
        .collect();
    let mut src = src;
    src.sort_by(|a, b| a.0.cmp(&b.0));
    for (k, s) in src {
        match tmap.remove(&s.key(key_cols)) {
            None => {
                out.missing += 1;
                push(
                    out,
                    Difference::MissingInTarget {
                        key: k,
                        reason: None,
                    },
                );
            }
            Some((_, t)) => {
                if t.bytes == s.bytes {
                    continue;
                }
                out.differs += 1;
                for d in value_differences(table, &k, &s, &t) {
                    push(out, d);
                }
            }
        }
    }
    let mut extra: Vec<String> = tmap.into_values().map(|(k, _)| k).collect();
    extra.sort();
    for k in extra {
        out.extra += 1;
        push(out, Difference::ExtraInTarget { key: k });
    }
}

/// One [`Difference::ValueDiffers`] per column where `s` and `t` differ.
fn value_differences(table: &TablePlan, key: &str, s: &CanonRow, t: &CanonRow) -> Vec<Difference> {
    table
        .columns
        .iter()
        .enumerate()
        .filter(|(i, _)| s.column(*i) != t.column(*i))
        .map(|(i, c)| {
            let ty = c.conversion.pg_type;
            Difference::ValueDiffers {
                key: key.to_string(),
                column: c.name.clone(),
                source: display_canon(ty, s.column(i)),
                target: display_canon(ty, t.column(i)),
            }
        })
        .collect()
}

/// Missing × extra comparisons at most when pairing the rows of a keyless table.
const MAX_PAIRINGS: usize = 4_000_000;

/// A table without a key: rows compared as a multiset. Each row missing in the target is paired
/// with the extra row differing from it in the fewest columns, if that is at most half of them
/// (and not all): one changed row, its columns named, rather than one missing and one extra.
fn narrow_keyless(
    table: &TablePlan,
    src: Vec<(String, CanonRow)>,
    tgt: Vec<(String, CanonRow)>,
    push: &dyn Fn(&mut TableVerify, Difference),
    out: &mut TableVerify,
) {
    // Row hash → (source count − target count, a source row, a target row).
    type Seen = (i64, Option<(String, CanonRow)>, Option<(String, CanonRow)>);
    let mut counts: HashMap<u128, Seen> = HashMap::new();
    for (k, r) in src {
        let e = counts.entry(r.hash()).or_insert((0, None, None));
        e.0 += 1;
        e.1.get_or_insert((k, r));
    }
    for (k, r) in tgt {
        let e = counts.entry(r.hash()).or_insert((0, None, None));
        e.0 -= 1;
        e.2.get_or_insert((k, r));
    }
    let mut missing: Vec<(String, CanonRow)> = Vec::new();
    let mut extra: Vec<(String, CanonRow)> = Vec::new();
    for (c, s, t) in counts.into_values() {
        match (c, s, t) {
            (c, Some(s), _) if c > 0 => missing.extend(std::iter::repeat_n(s, c as usize)),
            (c, _, Some(t)) if c < 0 => extra.extend(std::iter::repeat_n(t, (-c) as usize)),
            _ => {}
        }
    }
    missing.sort_by(|a, b| a.0.cmp(&b.0));
    extra.sort_by(|a, b| a.0.cmp(&b.0));
    let ncols = table.columns.len();
    let few = (ncols / 2).max(1);
    let pairing = missing.len().saturating_mul(extra.len()) <= MAX_PAIRINGS;
    let mut used = vec![false; extra.len()];
    let mut unpaired = Vec::new();
    for (k, s) in missing {
        let best = extra
            .iter()
            .enumerate()
            .filter(|(j, _)| pairing && !used[*j])
            .map(|(j, (_, t))| {
                let n = (0..ncols).filter(|&i| s.column(i) != t.column(i)).count();
                (j, n)
            })
            .filter(|&(_, n)| n <= few && n < ncols)
            .min_by_key(|&(_, n)| n);
        match best {
            Some((j, _)) => {
                used[j] = true;
                out.differs += 1;
                for d in value_differences(table, &k, &s, &extra[j].1) {
                    push(out, d);
                }
            }
            None => unpaired.push(k),
        }
    }
    for key in unpaired {
        out.missing += 1;
        push(out, Difference::MissingInTarget { key, reason: None });
    }
    for ((key, _), u) in extra.into_iter().zip(used) {
        if !u {
            out.extra += 1;
            push(out, Difference::ExtraInTarget { key });
        }
    }
}
