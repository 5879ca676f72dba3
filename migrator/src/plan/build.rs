//! The planner: introspect the SQLite file, profile every table (in parallel, big rowid
//! tables cut into ranges), decide every column ([`super::decide`]), then the keys,
//! constraints and views ([`super::constraints`]) — and whether a stored plan is still valid
//! for the source and configuration it was built from.

use std::path::Path;

use super::constraints::{fk_plans, index_and_check_plans};
use super::ddl::{pg_ident_limit, qualified};
use super::decide::{decide_columns, prepare_table};
use super::types::{NotCarried, Plan, TablePlan, PLAN_VERSION};
use super::views::view_plans;
use crate::config::MigrationConfig;
use crate::error::{MigrateError, Result};
use crate::introspect::{introspect, quote_sqlite, TableInfo};
use crate::profile::{profile_range, ColumnProfile, ProfileSpec};
use crate::source::{open_source, ReadKey, SourceIdentity};
use crate::vtab::tsvector_suggestion;

fn config_hash(config: &MigrationConfig) -> String {
    let json = serde_json::to_vec(config).unwrap_or_default();
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&json))
}

/// Row count and column profiles of one table (or range).
type Profiled = Result<(u64, Vec<ColumnProfile>)>;

impl Plan {
    /// Introspect and profile `source`, and decide everything (a dry run: nothing is written).
    pub fn build(source: &Path, config: &MigrationConfig, schema: &str) -> Result<Plan> {
        if schema == "ficus" {
            return Err(MigrateError::Config {
                path: "--schema".into(),
                detail: "the ficus schema holds the migrator's own state; choose another".into(),
            });
        }
        let conn = open_source(source)?;
        let identity = SourceIdentity::of(source, &conn)?;
        let src = introspect(&conn)?;
        config.check_names(
            &src.tables
                .iter()
                .map(|t| {
                    (
                        t.name.as_str(),
                        t.columns.iter().map(|c| c.name.as_str()).collect(),
                    )
                })
                .collect::<Vec<_>>(),
            &src.skipped
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>(),
        )?;
        let mut warnings = Vec::new();
        let mut skipped = src.skipped.clone();
        let triggers = src
            .triggers
            .iter()
            .map(|t| NotCarried {
                kind: "trigger".into(),
                name: t.name.clone(),
                reason:
                    "recreate it in PostgreSQL (a trigger function) if the application needs it"
                        .into(),
                sql: t.sql.clone(),
            })
            .collect();
        let mut prepared: Vec<(TableInfo, TablePlan, Vec<ProfileSpec>)> = Vec::new();
        for t in &src.tables {
            let tc = config.tables.get(&t.name);
            if tc.is_some_and(|c| c.skip) {
                skipped.push(NotCarried {
                    kind: if t.fts.is_some() {
                        "virtual table"
                    } else {
                        "table"
                    }
                    .into(),
                    name: t.name.clone(),
                    reason: "skipped by configuration (skip = true)".into(),
                    sql: t.sql.clone(),
                });
                continue;
            }
            let (mut tp, specs) = prepare_table(t, config, &conn)?;
            if let Some(m) = &t.fts {
                let cols: Vec<String> = t.columns.iter().map(|c| quote_sqlite(&c.name)).collect();
                let index = quote_sqlite(&pg_ident_limit(format!("{}_search_idx", tp.name)));
                tp.notes.push(format!(
                    "{} full-text table in SQLite: migrated as an ordinary table with its content columns (its shadow tables are not copied). For full-text search in PostgreSQL: {}",
                    m.to_ascii_uppercase(),
                    tsvector_suggestion(&qualified(schema, &tp.name), &index, &cols)
                ));
            }
            prepared.push((t.clone(), tp, specs));
        }
        drop(conn);

        // Profile in parallel: rowid tables are cut into ranges of ~200k rowids, so one big
        // table does not leave the other core idle.
        let mut units: Vec<(usize, Option<(i64, i64)>)> = Vec::new();
        {
            let conn = open_source(source)?;
            for (ti, (info, tp, _)) in prepared.iter().enumerate() {
                let ReadKey::Rowid(r) = &tp.read_key else {
                    units.push((ti, None));
                    continue;
                };
                let (lo, hi): (Option<i64>, Option<i64>) = conn
                    .query_row(
                        &format!(
                            "SELECT min({r}), max({r}) FROM {}",
                            quote_sqlite(&info.name)
                        ),
                        [],
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )
                    .map_err(|source| MigrateError::Source {
                        table: info.name.clone(),
                        source,
                    })?;
                match (lo, hi) {
                    (Some(lo), Some(hi)) if (hi as i128 - lo as i128) > 300_000 => {
                        let span = (hi as i128 - lo as i128 + 1) as f64;
                        let parts = (span / 200_000.0).ceil().min(64.0) as i128;
                        let step = (hi as i128 - lo as i128 + 1) / parts + 1;
                        let mut after = lo as i128 - 1;
                        while after < hi as i128 {
                            let until = (after + step).min(hi as i128);
                            units.push((ti, Some((after as i64, until as i64))));
                            after = until;
                        }
                    }
                    _ => units.push((ti, None)),
                }
            }
        }
        let results: Vec<Profiled> = {
            let next = std::sync::atomic::AtomicUsize::new(0);
            let slots: Vec<std::sync::Mutex<Option<Profiled>>> =
                units.iter().map(|_| std::sync::Mutex::new(None)).collect();
            let workers = std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .clamp(1, 4);
            std::thread::scope(|s| {
                for _ in 0..workers.min(units.len().max(1)) {
                    s.spawn(|| loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((ti, range)) = units.get(i) else {
                            break;
                        };
                        let (_, tp, specs) = &prepared[*ti];
                        let r =
                            open_source(source).and_then(|c| profile_range(&c, tp, specs, *range));
                        if let Ok(mut g) = slots[i].lock() {
                            *g = Some(r);
                        }
                    });
                }
            });
            let mut per_table: Vec<Option<Profiled>> = prepared.iter().map(|_| None).collect();
            for ((ti, _), m) in units.iter().zip(slots) {
                let r =
                    m.into_inner().ok().flatten().unwrap_or_else(|| {
                        Err(MigrateError::Internal("profiling thread died".into()))
                    });
                per_table[*ti] = Some(match (per_table[*ti].take(), r) {
                    (None, r) => r,
                    (Some(Err(e)), _) | (Some(Ok(_)), Err(e)) => Err(e),
                    (Some(Ok((n, mut a))), Ok((m, b))) => {
                        for (x, y) in a.iter_mut().zip(b) {
                            x.merge(y);
                        }
                        Ok((n + m, a))
                    }
                });
            }
            per_table
                .into_iter()
                .map(|r| {
                    r.unwrap_or_else(|| Err(MigrateError::Internal("table not profiled".into())))
                })
                .collect()
        };

        let widen_over = config.widen_over.unwrap_or(0.5);
        let mut tables = Vec::new();
        let mut infos = Vec::new();
        for ((info, mut tp, _), r) in prepared.into_iter().zip(results) {
            let (rows, profs) = r?;
            tp.rows = rows;
            decide_columns(&info, &mut tp, profs, config, widen_over, &mut warnings);
            tables.push(tp);
            infos.push(info);
        }
        for (info, i) in infos.iter().zip(0..tables.len()) {
            let (idx, checks) = index_and_check_plans(info, &tables[i], schema);
            tables[i].indexes = idx;
            tables[i].checks = checks;
        }
        for i in 0..tables.len() {
            let fks = fk_plans(
                &infos[i],
                &tables[i],
                &infos,
                &tables,
                schema,
                &mut warnings,
            );
            tables[i].foreign_keys = fks;
        }
        let views = view_plans(&src.views, &tables, schema);
        let mut plan = Plan {
            version: PLAN_VERSION,
            source: identity,
            schema: schema.to_string(),
            fingerprint: String::new(),
            config_hash: config_hash(config),
            tables,
            views,
            triggers,
            skipped,
            warnings,
        };
        plan.fingerprint = plan.compute_fingerprint();
        Ok(plan)
    }

    /// Whether this (stored) plan still describes `source` under `config`: same file content
    /// identity, same configuration, same schema — so it need not be profiled again.
    pub fn still_valid_for(
        &self,
        source: &Path,
        config: &MigrationConfig,
        schema: &str,
    ) -> Result<bool> {
        let conn = open_source(source)?;
        let id = SourceIdentity::of(source, &conn)?;
        let same = |a: &SourceIdentity, b: &SourceIdentity| {
            a.size == b.size
                && a.mtime_ns == b.mtime_ns
                && a.change_counter == b.change_counter
                && a.schema_hash == b.schema_hash
                && a.capture_epoch == b.capture_epoch
        };
        Ok(self.version == PLAN_VERSION
            && self.schema == schema
            && self.config_hash == config_hash(config)
            && same(&self.source, &id)
            && self.fingerprint == self.compute_fingerprint())
    }
}
