//! The migration plan: for each table, the PostgreSQL type and conversion of every column
//! (from the declared type, the profile of stored values and the config overrides), defaults,
//! keys, constraints, indexes, foreign keys, views; the DDL; and the human report saying each
//! decision and each value that will not convert. `plan` prints it; `run` executes it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use rusqlite::types::ValueRef;
use serde::{Deserialize, Serialize};

use crate::config::MigrationConfig;
use crate::convert::{display_field, Conversion, PgType};
use crate::error::{MigrateError, Result};
use crate::introspect::{introspect, quote_sqlite, view_select, IndexInfo, TableInfo};
use crate::profile::{profile_range, ColumnProfile, ProfileSpec, RejectSample};
use crate::source::{open_source, SourceIdentity};

/// Format version of [`Plan`] (part of the fingerprint).
pub const PLAN_VERSION: u32 = 1;

/// The whole plan.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    pub version: u32,
    pub source: SourceIdentity,
    /// Target schema.
    pub schema: String,
    /// xxh3-128 of the source identity and the plan: what checkpoints are valid for.
    pub fingerprint: String,
    /// xxh3-128 of the configuration the plan was built with.
    pub config_hash: String,
    pub tables: Vec<TablePlan>,
    pub views: Vec<ViewPlan>,
    /// Things not migrated or migrated approximately (triggers, untranslated defaults...).
    pub warnings: Vec<String>,
}

/// How the source table is read in order (and checkpointed).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum ReadKey {
    /// By rowid (every rowid table), selected under this name.
    Rowid(String),
    /// By primary key columns (WITHOUT ROWID tables).
    Pk(Vec<usize>),
}

/// Plan of one table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TablePlan {
    pub source_name: String,
    /// Name in PostgreSQL.
    pub name: String,
    pub rows: u64,
    pub read_key: ReadKey,
    /// Primary key columns (indexes into `columns`): the row identity for quarantine and
    /// verify. Empty: the table has no key (verify compares rows as a multiset).
    pub key_columns: Vec<usize>,
    pub columns: Vec<ColumnPlan>,
    /// Identity column (the INTEGER PRIMARY KEY rowid alias) and the AUTOINCREMENT high mark.
    pub identity: Option<IdentityPlan>,
    pub indexes: Vec<IndexPlan>,
    pub checks: Vec<CheckPlan>,
    pub foreign_keys: Vec<FkPlan>,
    /// Values that will not convert, summed over columns (an upper bound of rows).
    pub expected_rejects: u64,
    pub notes: Vec<String>,
}

/// Plan of one column.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ColumnPlan {
    pub name: String,
    pub declared: String,
    pub conversion: Conversion,
    /// PostgreSQL default expression.
    pub default: Option<String>,
    /// Why this type, in words.
    pub decision: String,
    pub profile: ColumnProfile,
    /// Values that will not convert with the chosen conversion.
    pub rejects: u64,
    pub samples: Vec<RejectSample>,
}

/// Identity column.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IdentityPlan {
    pub column: usize,
    /// sqlite_sequence value for AUTOINCREMENT tables.
    pub autoincrement_seq: Option<i64>,
}

/// One primary key, UNIQUE constraint or index, as PostgreSQL DDL.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IndexPlan {
    pub name: String,
    pub sql: String,
    /// Failing to create it fails the run (else it is reported as a warning).
    pub required: bool,
    pub note: Option<String>,
}

/// One CHECK constraint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckPlan {
    pub name: String,
    pub sqlite: String,
    /// None: not created (see note).
    pub sql: Option<String>,
    pub note: Option<String>,
}

/// One foreign key: added NOT VALID, then validated.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FkPlan {
    pub name: String,
    pub add_sql: String,
    pub validate_sql: String,
}

/// One view.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ViewPlan {
    pub name: String,
    pub sql: String,
}

/// One post-load DDL step, recorded in `ficus.steps` when done.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Step {
    pub id: String,
    pub table: Option<String>,
    pub sql: String,
    pub required: bool,
    /// 0: keys/indexes/checks (per table, in parallel), 1: foreign keys, 2: views, sequences.
    pub stage: u8,
}

fn config_hash(config: &MigrationConfig) -> String {
    let json = serde_json::to_vec(config).unwrap_or_default();
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&json))
}

/// Row count and column profiles of one table (or range).
type Profiled = Result<(u64, Vec<ColumnProfile>)>;

/// `"a"."b"`.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_sqlite(schema), quote_sqlite(name))
}

/// A PostgreSQL string literal.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn pg_ident_limit(s: String) -> String {
    if s.len() <= 63 {
        return s;
    }
    let mut end = 55;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}_{:07x}",
        &s[..end],
        xxhash_rust::xxh3::xxh3_64(s.as_bytes()) & 0xfff_ffff
    )
}

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
        let mut warnings = Vec::new();
        if !src.triggers.is_empty() {
            warnings.push(format!(
                "triggers are not migrated: {}",
                src.triggers.join(", ")
            ));
        }
        let mut prepared: Vec<(TableInfo, TablePlan, Vec<ProfileSpec>)> = Vec::new();
        for t in &src.tables {
            let tc = config.tables.get(&t.name);
            if tc.is_some_and(|c| c.skip) {
                warnings.push(format!("table {} skipped by configuration", t.name));
                continue;
            }
            let (tp, specs) = prepare_table(t, config, &conn)?;
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
        let views = src
            .views
            .iter()
            .filter_map(|v| match view_select(&v.sql) {
                Some(sel) => Some(ViewPlan {
                    name: v.name.clone(),
                    sql: format!(
                        "CREATE OR REPLACE VIEW {} AS {}",
                        qualified(schema, &v.name),
                        sel
                    ),
                }),
                None => {
                    warnings.push(format!(
                        "view {}: cannot read its SELECT; not migrated",
                        v.name
                    ));
                    None
                }
            })
            .collect();
        let mut plan = Plan {
            version: PLAN_VERSION,
            source: identity,
            schema: schema.to_string(),
            fingerprint: String::new(),
            config_hash: config_hash(config),
            tables,
            views,
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

    /// Fingerprint over everything but the source path and the fingerprint itself.
    pub fn compute_fingerprint(&self) -> String {
        let mut p = self.clone();
        p.fingerprint.clear();
        p.source.path.clear();
        let json = serde_json::to_vec(&p).unwrap_or_default();
        format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&json))
    }

    /// Table plan by source name.
    pub fn table(&self, source_name: &str) -> Option<&TablePlan> {
        self.tables.iter().find(|t| t.source_name == source_name)
    }

    /// CREATE TABLE statements (no keys, indexes or constraints: those come after the load).
    pub fn create_sql(&self) -> Vec<String> {
        let mut out = vec![format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            quote_sqlite(&self.schema)
        )];
        for t in &self.tables {
            out.push(t.create_sql(&self.schema));
        }
        out
    }

    /// Post-load steps in order: keys, UNIQUE, indexes, checks; foreign keys; views and
    /// identity sequence resets.
    pub fn post_load_steps(&self) -> Vec<Step> {
        let mut steps = Vec::new();
        for t in &self.tables {
            for i in &t.indexes {
                steps.push(Step {
                    id: format!("index:{}:{}", t.name, i.name),
                    table: Some(t.name.clone()),
                    sql: i.sql.clone(),
                    required: i.required,
                    stage: 0,
                });
            }
            for c in &t.checks {
                if let Some(sql) = &c.sql {
                    steps.push(Step {
                        id: format!("check:{}:{}", t.name, c.name),
                        table: Some(t.name.clone()),
                        sql: sql.clone(),
                        required: false,
                        stage: 0,
                    });
                }
            }
        }
        for t in &self.tables {
            for f in &t.foreign_keys {
                steps.push(Step {
                    id: format!("fk:{}:{}", t.name, f.name),
                    table: Some(t.name.clone()),
                    sql: f.add_sql.clone(),
                    required: false,
                    stage: 1,
                });
                steps.push(Step {
                    id: format!("fk-validate:{}:{}", t.name, f.name),
                    table: Some(t.name.clone()),
                    sql: f.validate_sql.clone(),
                    required: false,
                    stage: 1,
                });
            }
        }
        for t in &self.tables {
            if let Some(id) = &t.identity {
                let col = &t.columns[id.column].name;
                let q = qualified(&self.schema, &t.name);
                let floor = id.autoincrement_seq.unwrap_or(0);
                steps.push(Step {
                    id: format!("sequence:{}", t.name),
                    table: Some(t.name.clone()),
                    sql: format!(
                        "SELECT setval(pg_get_serial_sequence({}, {}), greatest(coalesce(max({}), 0), {floor}) + 1, false) FROM {q}",
                        quote_literal(&q),
                        quote_literal(col),
                        quote_sqlite(col)
                    ),
                    required: true,
                    stage: 2,
                });
            }
        }
        for v in &self.views {
            steps.push(Step {
                id: format!("view:{}", v.name),
                table: None,
                sql: format!(
                    "SET LOCAL search_path TO {}, public; {}",
                    quote_sqlite(&self.schema),
                    v.sql
                ),
                required: false,
                stage: 2,
            });
        }
        steps
    }

    /// The full DDL script, as `plan` prints it.
    pub fn ddl(&self) -> String {
        let mut s = String::from("-- ficus migration plan: DDL\n");
        for c in self.create_sql() {
            let _ = writeln!(s, "{c};");
        }
        let _ = writeln!(s, "-- after the data is loaded:");
        for st in self.post_load_steps() {
            let _ = writeln!(s, "{};", st.sql);
        }
        s
    }

    /// Sum of expected rejects.
    pub fn expected_rejects(&self) -> u64 {
        self.tables.iter().map(|t| t.expected_rejects).sum()
    }

    /// The human report: each decision and each value that will not convert (sampled).
    pub fn report(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "source {} ({} bytes) → schema {}  fingerprint {}",
            self.source.path,
            self.source.size,
            self.schema,
            &self.fingerprint[..16.min(self.fingerprint.len())]
        );
        for t in &self.tables {
            let key = if t.key_columns.is_empty() {
                "no primary key (rows compared as a multiset by verify)".to_string()
            } else {
                format!(
                    "primary key ({})",
                    t.key_columns
                        .iter()
                        .map(|c| t.columns[*c].name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            let read = match &t.read_key {
                ReadKey::Rowid(_) => "read by rowid",
                ReadKey::Pk(_) => "WITHOUT ROWID, read by primary key",
            };
            let _ = writeln!(
                s,
                "\ntable {} → {}.{}: {} rows, {key}, {read}",
                t.source_name, self.schema, t.name, t.rows
            );
            for c in &t.columns {
                let nn = if c.conversion.not_null {
                    " NOT NULL"
                } else {
                    ""
                };
                let decl = if c.declared.is_empty() {
                    "(no type)"
                } else {
                    &c.declared
                };
                let _ = writeln!(
                    s,
                    "  {:<20} {:<12} → {}{}: {}",
                    c.name,
                    decl,
                    c.conversion.pg_type.sql(),
                    nn,
                    c.decision
                );
                if let Some(d) = &c.default {
                    let _ = writeln!(s, "  {:<20} default {d}", "");
                }
                if c.rejects > 0 {
                    let _ = writeln!(s, "  {:<20} ! {} value(s) will not convert; their rows go to ficus.quarantine:", "", c.rejects);
                    for r in &c.samples {
                        let _ = writeln!(
                            s,
                            "  {:<20}   key {} value {}: {}",
                            "", r.key, r.value, r.reason
                        );
                    }
                    if (c.samples.len() as u64) < c.rejects {
                        let _ = writeln!(
                            s,
                            "  {:<20}   … and {} more",
                            "",
                            c.rejects - c.samples.len() as u64
                        );
                    }
                }
            }
            for i in &t.indexes {
                let _ = writeln!(
                    s,
                    "  {}{}",
                    i.sql,
                    i.note
                        .as_ref()
                        .map(|n| format!("  -- {n}"))
                        .unwrap_or_default()
                );
            }
            for c in &t.checks {
                match (&c.sql, &c.note) {
                    (Some(sql), n) => {
                        let _ = writeln!(
                            s,
                            "  {sql}{}",
                            n.as_ref().map(|n| format!("  -- {n}")).unwrap_or_default()
                        );
                    }
                    (None, n) => {
                        let _ = writeln!(
                            s,
                            "  CHECK ({}) not created: {}",
                            c.sqlite,
                            n.clone().unwrap_or_default()
                        );
                    }
                }
            }
            for f in &t.foreign_keys {
                let _ = writeln!(s, "  {}", f.add_sql);
            }
            for n in &t.notes {
                let _ = writeln!(s, "  note: {n}");
            }
        }
        for v in &self.views {
            let _ = writeln!(s, "\nview {}: {}", v.name, v.sql);
        }
        if !self.warnings.is_empty() {
            let _ = writeln!(s, "\nwarnings:");
            for w in &self.warnings {
                let _ = writeln!(s, "  - {w}");
            }
        }
        let _ = writeln!(
            s,
            "\n{} tables, {} rows, {} value(s) will not convert",
            self.tables.len(),
            self.tables.iter().map(|t| t.rows).sum::<u64>(),
            self.expected_rejects()
        );
        s
    }
}

impl TablePlan {
    /// CREATE TABLE for this table in `schema`.
    pub fn create_sql(&self, schema: &str) -> String {
        let cols: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut s = format!("{} {}", quote_sqlite(&c.name), c.conversion.pg_type.sql());
                if self.identity.as_ref().is_some_and(|id| id.column == i) {
                    s.push_str(" GENERATED BY DEFAULT AS IDENTITY");
                } else if let Some(d) = &c.default {
                    s.push_str(" DEFAULT ");
                    s.push_str(d);
                }
                if c.conversion.not_null {
                    s.push_str(" NOT NULL");
                }
                s
            })
            .collect();
        format!(
            "CREATE TABLE {} (\n  {}\n)",
            qualified(schema, &self.name),
            cols.join(",\n  ")
        )
    }

    /// `COPY … FROM STDIN (FORMAT binary)` for this table.
    pub fn copy_in_sql(&self, schema: &str) -> String {
        let cols: Vec<String> = self.columns.iter().map(|c| quote_sqlite(&c.name)).collect();
        format!(
            "COPY {} ({}) FROM STDIN (FORMAT binary)",
            qualified(schema, &self.name),
            cols.join(", ")
        )
    }
}

// ---------------------------------------------------------------------------------------

enum Kind {
    Typed(PgType),
    Untyped,
}

fn declared_kind(decl: &str, config: &MigrationConfig) -> (Kind, Option<u32>) {
    let u = decl.to_ascii_uppercase();
    let varchar = u
        .find('(')
        .filter(|_| u.contains("CHAR"))
        .and_then(|i| u[i + 1..].split([')', ',']).next())
        .and_then(|n| n.trim().parse::<u32>().ok())
        .filter(|n| *n > 0);
    let k = if u.is_empty() {
        Kind::Untyped
    } else if u.contains("BOOL") {
        Kind::Typed(PgType::Boolean)
    } else if u.contains("DATETIME") || u.contains("TIMESTAMP") {
        Kind::Typed(config.datetime_type())
    } else if u.starts_with("DATE") {
        Kind::Typed(PgType::Date)
    } else if u.starts_with("TIME") {
        Kind::Typed(PgType::Time)
    } else if u.contains("JSON") {
        Kind::Typed(PgType::Json)
    } else if u.contains("INT") {
        Kind::Typed(PgType::Bigint)
    } else if u.contains("CHAR") || u.contains("CLOB") || u.contains("TEXT") {
        Kind::Typed(PgType::Text)
    } else if u.contains("BLOB") {
        Kind::Typed(PgType::Bytea)
    } else if u.contains("REAL") || u.contains("FLOA") || u.contains("DOUB") {
        Kind::Typed(PgType::Double)
    } else if u.contains("DEC") || u.contains("NUMERIC") {
        Kind::Typed(PgType::Numeric)
    } else {
        Kind::Untyped
    };
    (k, varchar)
}

fn prepare_table(
    t: &TableInfo,
    config: &MigrationConfig,
    conn: &rusqlite::Connection,
) -> Result<(TablePlan, Vec<ProfileSpec>)> {
    let name = config
        .tables
        .get(&t.name)
        .and_then(|c| c.rename.clone())
        .unwrap_or_else(|| t.name.clone());
    let key_columns: Vec<usize> = t
        .primary_key
        .iter()
        .filter_map(|k| t.columns.iter().position(|c| &c.name == k))
        .collect();
    let read_key = match &t.rowid_name {
        Some(r) if !t.without_rowid => ReadKey::Rowid(r.clone()),
        _ => match t.rowid_alias {
            Some(i) if !t.without_rowid => ReadKey::Rowid(quote_sqlite(&t.columns[i].name)),
            _ => ReadKey::Pk(key_columns.clone()),
        },
    };
    let mut columns = Vec::new();
    let mut specs = Vec::new();
    for c in &t.columns {
        let cc = config.column(&t.name, &c.name);
        let not_null = c.not_null || c.pk > 0;
        let (kind, varchar) = declared_kind(&c.declared, config);
        let forced = cc
            .and_then(|cc| cc.pg_type.as_deref())
            .and_then(PgType::parse);
        let ty = forced.or(match kind {
            Kind::Typed(t) => Some(t),
            Kind::Untyped => None,
        });
        let conversion = Conversion {
            pg_type: ty.unwrap_or(PgType::Text),
            not_null,
            epoch_unit: cc.and_then(|c| c.epoch_unit),
            strip_nul: cc.is_some_and(|c| c.strip_nul),
            lossy_utf8: cc.is_some_and(|c| c.lossy_utf8),
        };
        let is_dt = |t: Option<PgType>| {
            matches!(
                t,
                Some(PgType::Timestamp | PgType::Timestamptz | PgType::Date | PgType::Time)
            )
        };
        specs.push(ProfileSpec {
            candidate: ty.map(|_| conversion.clone()),
            datetime: is_dt(ty)
                || is_dt(match kind {
                    Kind::Typed(t) => Some(t),
                    _ => None,
                }),
            boolean: matches!(ty, Some(PgType::Boolean))
                || matches!(kind, Kind::Typed(PgType::Boolean)),
            varchar: if forced.is_none() { varchar } else { None },
        });
        columns.push(ColumnPlan {
            name: c.name.clone(),
            declared: c.declared.clone(),
            conversion,
            default: None,
            decision: String::new(),
            profile: ColumnProfile::default(),
            rejects: 0,
            samples: Vec::new(),
        });
    }
    let autoincrement_seq = if t.autoincrement {
        conn.query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = ?1",
            [&t.name],
            |r| r.get::<_, i64>(0),
        )
        .ok()
    } else {
        None
    };
    let identity = t.rowid_alias.map(|column| IdentityPlan {
        column,
        autoincrement_seq,
    });
    Ok((
        TablePlan {
            source_name: t.name.clone(),
            name,
            rows: 0,
            read_key,
            key_columns,
            columns,
            identity,
            indexes: Vec::new(),
            checks: Vec::new(),
            foreign_keys: Vec::new(),
            expected_rejects: 0,
            notes: Vec::new(),
        },
        specs,
    ))
}

fn classes(p: &ColumnProfile) -> String {
    let mut v = Vec::new();
    for (n, k) in [
        (p.integers, "integer"),
        (p.reals, "real"),
        (p.texts, "text"),
        (p.blobs, "blob"),
        (p.nulls, "null"),
    ] {
        if n > 0 {
            v.push(format!("{k} ×{n}"));
        }
    }
    if v.is_empty() {
        "no rows".into()
    } else {
        v.join(", ")
    }
}

fn decide_columns(
    info: &TableInfo,
    tp: &mut TablePlan,
    profs: Vec<ColumnProfile>,
    config: &MigrationConfig,
    widen_over: f64,
    warnings: &mut Vec<String>,
) {
    let mut expected = 0;
    for ((c, p), ci) in tp.columns.iter_mut().zip(profs).zip(&info.columns) {
        let cc = config.column(&info.name, &c.name);
        let forced = cc
            .and_then(|cc| cc.pg_type.as_deref())
            .and_then(PgType::parse);
        let (kind, varchar) = declared_kind(&c.declared, config);
        let null_rejects = if c.conversion.not_null { p.nulls } else { 0 };
        let mut detail = vec![classes(&p)];
        if !p.epochs.is_empty() {
            detail.push(format!("epochs {:?}", p.epochs));
        }
        if !p.date_formats.is_empty() {
            detail.push(format!("text dates {:?}", p.date_formats));
        }
        if !p.spellings.is_empty() {
            detail.push(format!("spellings {:?}", p.spellings));
        }
        if let (Some(a), Some(b)) = (p.int_min, p.int_max) {
            detail.push(format!("integers {a}..{b}"));
        }
        if let (Some(a), Some(b)) = (p.real_min, p.real_max) {
            detail.push(format!("reals {a:?}..{b:?}"));
        }
        if p.non_finite > 0 {
            detail.push(format!("{} infinite", p.non_finite));
        }
        if p.negative_zero > 0 {
            detail.push(format!("{} negative zero", p.negative_zero));
        }
        if p.max_len > 0 {
            detail.push(format!("max {} bytes", p.max_len));
        }
        if p.invalid_utf8 > 0 {
            detail.push(format!("{} invalid UTF-8", p.invalid_utf8));
        }
        if p.nul_bytes > 0 {
            detail.push(format!("{} with NUL bytes", p.nul_bytes));
        }
        let (ty, rejects, samples, why): (PgType, u64, Vec<RejectSample>, String) = if let Some(f) =
            forced
        {
            (
                f,
                p.rejects,
                p.samples.clone(),
                "type set in configuration".into(),
            )
        } else {
            match kind {
                Kind::Typed(t) => {
                    let nn = p.non_null().max(1) as f64;
                    let value_rejects = p.rejects.saturating_sub(null_rejects);
                    if p.rejects == 0 {
                        match (t, varchar) {
                            (PgType::Text, Some(n)) if p.too_long == 0 => {
                                (PgType::Varchar(n), 0, vec![], format!("declared type; every value fits varchar({n})"))
                            }
                            (PgType::Text, Some(n)) => (
                                PgType::Text,
                                0,
                                vec![],
                                format!("{} value(s) longer than the declared {n} characters (SQLite does not enforce it): text", p.too_long),
                            ),
                            _ => (t, 0, vec![], "declared type; every value converts".into()),
                        }
                    } else if !t.is_text_like()
                        && t != PgType::Bytea
                        && p.text_rejects() == 0
                        && value_rejects as f64 / nn > widen_over
                    {
                        (
                            PgType::Text,
                            null_rejects,
                            vec![],
                            format!(
                                "widened to text: {value_rejects} of {} values would not convert to {} (over {}%)",
                                p.non_null(),
                                t.sql(),
                                widen_over * 100.0
                            ),
                        )
                    } else {
                        (
                            t,
                            p.rejects,
                            p.samples.clone(),
                            "declared type; the values that do not convert are quarantined".into(),
                        )
                    }
                }
                Kind::Untyped => {
                    let (i, r, t, b) = (p.integers > 0, p.reals > 0, p.texts > 0, p.blobs > 0);
                    let text_r = p.text_rejects() + null_rejects;
                    match (i, r, t, b) {
                        (false, false, false, false) => (PgType::Text, null_rejects, vec![], "no type, no values: text".into()),
                        (true, false, false, false) => (PgType::Bigint, null_rejects, vec![], "no type; only integers: bigint".into()),
                        (_, _, false, false) if p.ints_beyond_f64 == 0 => {
                            (PgType::Double, null_rejects, vec![], "no type; numbers: double precision".into())
                        }
                        (_, _, false, false) => {
                            (PgType::Numeric, null_rejects, vec![], "no type; numbers incl. integers beyond 2^53: numeric".into())
                        }
                        (false, false, false, true) => (PgType::Bytea, null_rejects, vec![], "no type; only blobs: bytea".into()),
                        (_, _, _, true) if p.text_rejects() > 0 => (
                            PgType::Bytea,
                            null_rejects,
                            vec![],
                            "mixed storage classes incl. binary blobs: bytea (numbers as their text)".into(),
                        ),
                        _ => (
                            PgType::Text,
                            text_r,
                            p.text_samples.clone(),
                            "no type or mixed storage classes: text (numbers as their text)".into(),
                        ),
                    }
                }
            }
        };
        c.conversion.pg_type = ty;
        c.decision = format!("{why} [{}]", detail.join("; "));
        c.rejects = rejects;
        c.samples = samples;
        c.profile = p;
        expected += rejects;
        // Default.
        let d = cc.and_then(|cc| cc.default.clone());
        c.default = match (d, &ci.default) {
            (Some(d), _) => Some(d),
            (None, None) => None,
            (None, Some(sq)) => match translate_default(sq, &c.conversion) {
                Ok(v) => v,
                Err(e) => {
                    warnings.push(format!(
                        "{}.{}: default {sq} not translated ({e}); the column gets no default",
                        info.name, c.name
                    ));
                    None
                }
            },
        };
        if ci.generated {
            tp.notes.push(format!(
                "{} is a generated column in SQLite; copied as plain values",
                c.name
            ));
        }
    }
    if let Some(id) = &tp.identity {
        if !matches!(
            tp.columns[id.column].conversion.pg_type,
            PgType::Bigint | PgType::Integer
        ) {
            tp.identity = None;
        }
    }
    tp.expected_rejects = expected;
}

fn index_and_check_plans(
    info: &TableInfo,
    tp: &TablePlan,
    schema: &str,
) -> (Vec<IndexPlan>, Vec<CheckPlan>) {
    let q = qualified(schema, &tp.name);
    let mut out = Vec::new();
    if !tp.key_columns.is_empty() {
        let cols: Vec<String> = tp
            .key_columns
            .iter()
            .map(|c| quote_sqlite(&tp.columns[*c].name))
            .collect();
        let name = pg_ident_limit(format!("{}_pkey", tp.name));
        out.push(IndexPlan {
            sql: format!(
                "ALTER TABLE {q} ADD CONSTRAINT {} PRIMARY KEY ({})",
                quote_sqlite(&name),
                cols.join(", ")
            ),
            name,
            required: true,
            note: None,
        });
    }
    let bools: Vec<String> = tp
        .columns
        .iter()
        .filter(|c| c.conversion.pg_type == PgType::Boolean)
        .map(|c| c.name.clone())
        .collect();
    for ix in &info.indexes {
        if ix.origin == "pk" {
            continue;
        }
        out.push(index_plan(ix, tp, &q, schema, &bools));
    }
    let mut checks = Vec::new();
    for (n, c) in info.checks.iter().enumerate() {
        let name = pg_ident_limit(format!("{}_check{}", tp.name, n + 1));
        let toks = tokens(c);
        let norm: Vec<String> = toks.iter().map(|t| t.to_ascii_lowercase()).collect();
        let is_bool_in = norm.len() == 7
            && bools.iter().any(|b| unquote(&toks[0]) == *b)
            && norm[1] == "in"
            && matches!(norm[2..].join(" ").as_str(), "( 0 , 1 )" | "( 1 , 0 )");
        if is_bool_in {
            checks.push(CheckPlan {
                name,
                sqlite: c.clone(),
                sql: None,
                note: Some("the boolean type already enforces it".into()),
            });
            continue;
        }
        checks.push(CheckPlan {
            name: name.clone(),
            sqlite: c.clone(),
            sql: Some(format!(
                "ALTER TABLE {q} ADD CONSTRAINT {} CHECK ({})",
                quote_sqlite(&name),
                rewrite_expr(c, &bools)
            )),
            note: Some("SQLite expression carried over; reported if PostgreSQL rejects it".into()),
        });
    }
    (out, checks)
}

fn index_plan(
    ix: &IndexInfo,
    tp: &TablePlan,
    q: &str,
    schema: &str,
    bools: &[String],
) -> IndexPlan {
    let mut notes = Vec::new();
    let mut plain = true;
    let items: Vec<String> = ix
        .columns
        .iter()
        .map(|c| {
            let mut s = match (&c.column, &c.expr) {
                (Some(col), _) => quote_sqlite(col),
                (None, Some(e)) => {
                    plain = false;
                    format!("({})", rewrite_expr(e, bools))
                }
                (None, None) => {
                    plain = false;
                    "rowid".into()
                }
            };
            if !c.collation.eq_ignore_ascii_case("BINARY") && !c.collation.is_empty() {
                notes.push(format!(
                    "collation {} has no PostgreSQL equivalent: default collation used",
                    c.collation
                ));
            }
            if c.desc {
                s.push_str(" DESC");
            }
            s
        })
        .collect();
    if ix.origin == "u" && plain {
        let cols: Vec<&str> = ix
            .columns
            .iter()
            .filter_map(|c| c.column.as_deref())
            .collect();
        let name = pg_ident_limit(format!("{}_{}_key", tp.name, cols.join("_")));
        return IndexPlan {
            sql: format!(
                "ALTER TABLE {q} ADD CONSTRAINT {} UNIQUE ({})",
                quote_sqlite(&name),
                items.join(", ")
            ),
            name,
            required: true,
            note: if notes.is_empty() {
                None
            } else {
                Some(notes.join("; "))
            },
        };
    }
    let name = pg_ident_limit(ix.name.clone());
    let mut sql = format!(
        "CREATE {}INDEX IF NOT EXISTS {} ON {q} ({})",
        if ix.unique { "UNIQUE " } else { "" },
        quote_sqlite(&name),
        items.join(", ")
    );
    let _ = schema;
    if let Some(w) = &ix.partial {
        let _ = write!(sql, " WHERE {}", rewrite_expr(w, bools));
        plain = false;
    }
    if !plain {
        notes.push(
            "expression/predicate carried over from SQLite; reported if PostgreSQL rejects it"
                .into(),
        );
    }
    IndexPlan {
        name,
        sql,
        required: plain,
        note: if notes.is_empty() {
            None
        } else {
            Some(notes.join("; "))
        },
    }
}

fn fk_plans(
    info: &TableInfo,
    tp: &TablePlan,
    infos: &[TableInfo],
    tables: &[TablePlan],
    schema: &str,
    warnings: &mut Vec<String>,
) -> Vec<FkPlan> {
    let mut out = Vec::new();
    for fk in &info.foreign_keys {
        let Some(pi) = infos
            .iter()
            .position(|t| t.name.eq_ignore_ascii_case(&fk.ref_table))
        else {
            warnings.push(format!(
                "{}: foreign key ({}) references table {} which is not migrated; not created",
                info.name,
                fk.columns.join(", "),
                fk.ref_table
            ));
            continue;
        };
        let parent = &tables[pi];
        let pinfo = &infos[pi];
        let refs = if fk.ref_columns.is_empty() {
            pinfo.primary_key.clone()
        } else {
            fk.ref_columns.clone()
        };
        let mut sorted = refs.clone();
        sorted.sort();
        let unique = {
            let mut pk = pinfo.primary_key.clone();
            pk.sort();
            pk == sorted
                || pinfo.indexes.iter().any(|ix| {
                    let mut cols: Vec<String> =
                        ix.columns.iter().filter_map(|c| c.column.clone()).collect();
                    cols.sort();
                    ix.unique
                        && ix.partial.is_none()
                        && cols.len() == ix.columns.len()
                        && cols == sorted
                })
        };
        if !unique || refs.len() != fk.columns.len() {
            warnings.push(format!(
                "{}: foreign key ({}) → {}({}) references columns without a unique key; PostgreSQL cannot enforce it; not created",
                info.name,
                fk.columns.join(", "),
                fk.ref_table,
                refs.join(", ")
            ));
            continue;
        }
        let name = pg_ident_limit(format!("{}_{}_fkey", tp.name, fk.columns.join("_")));
        let q = qualified(schema, &tp.name);
        let act = |a: &str| {
            let a = a.to_ascii_uppercase();
            if a.is_empty() {
                "NO ACTION".to_string()
            } else {
                a
            }
        };
        let cols: Vec<String> = fk.columns.iter().map(|c| quote_sqlite(c)).collect();
        let rcols: Vec<String> = refs.iter().map(|c| quote_sqlite(c)).collect();
        out.push(FkPlan {
            add_sql: format!(
                "ALTER TABLE {q} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({}) ON UPDATE {} ON DELETE {} NOT VALID",
                quote_sqlite(&name),
                cols.join(", "),
                qualified(schema, &parent.name),
                rcols.join(", "),
                act(&fk.on_update),
                act(&fk.on_delete)
            ),
            validate_sql: format!("ALTER TABLE {q} VALIDATE CONSTRAINT {}", quote_sqlite(&name)),
            name,
        });
    }
    out
}

/// Split a SQL expression into tokens (identifiers, quoted names, strings, numbers,
/// operators).
fn tokens(s: &str) -> Vec<String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'\'' || c == b'"' || c == b'`' || c == b'[' {
            let close = if c == b'[' { b']' } else { c };
            let st = i;
            i += 1;
            while i < b.len() {
                if b[i] == close {
                    if close != b']' && b.get(i + 1) == Some(&close) {
                        i += 2;
                        continue;
                    }
                    break;
                }
                i += 1;
            }
            i = (i + 1).min(b.len());
            out.push(s[st..i].to_string());
        } else if c.is_ascii_alphanumeric() || c == b'_' || c == b'.' {
            let st = i;
            while i < b.len()
                && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'.' || b[i] >= 0x80)
            {
                i += 1;
            }
            out.push(s[st..i].to_string());
        } else if c >= 0x80 {
            let st = i;
            while i < b.len() && b[i] >= 0x80 {
                i += 1;
            }
            out.push(s[st..i].to_string());
        } else {
            let two = s.get(i..i + 2).unwrap_or("");
            if matches!(two, "==" | "!=" | "<>" | "<=" | ">=" | "||") {
                out.push(two.to_string());
                i += 2;
            } else {
                out.push((c as char).to_string());
                i += 1;
            }
        }
    }
    out
}

fn unquote(t: &str) -> String {
    let b = t.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' || b[0] == b'`') {
        t[1..t.len() - 1].replace("\"\"", "\"")
    } else if b.len() >= 2 && b[0] == b'[' {
        t[1..t.len() - 1].to_string()
    } else {
        t.to_string()
    }
}

/// Carry a SQLite expression over: `==` → `=`, `[x]`/`` `x` `` → `"x"`, and comparisons of
/// boolean columns with 0/1 → false/true.
fn rewrite_expr(e: &str, bools: &[String]) -> String {
    let toks = tokens(e);
    let mut out: Vec<String> = Vec::with_capacity(toks.len());
    for (i, t) in toks.iter().enumerate() {
        let mut t = t.clone();
        if t == "==" {
            t = "=".into();
        }
        if t.starts_with('[') || t.starts_with('`') {
            t = quote_sqlite(&unquote(&t));
        }
        if (t == "0" || t == "1") && i >= 2 {
            let op = toks[i - 1].to_ascii_lowercase();
            if matches!(op.as_str(), "=" | "==" | "!=" | "<>" | "is")
                && bools.contains(&unquote(&toks[i - 2]))
            {
                t = if t == "1" {
                    "true".into()
                } else {
                    "false".into()
                };
            }
        }
        out.push(t);
    }
    let mut s = String::new();
    for (i, t) in out.iter().enumerate() {
        if i > 0
            && !(t == "(" && out[i - 1].chars().all(|c| c.is_alphanumeric() || c == '_'))
            && t != ")"
            && t != ","
            && out[i - 1] != "("
        {
            s.push(' ');
        }
        s.push_str(t);
    }
    s
}

/// Translate a SQLite default expression for a column converted by `conv`.
/// Ok(None): no default (NULL).
pub fn translate_default(
    expr: &str,
    conv: &Conversion,
) -> std::result::Result<Option<String>, String> {
    let mut e = expr.trim().to_string();
    while e.starts_with('(') && e.ends_with(')') {
        e = e[1..e.len() - 1].trim().to_string();
    }
    let norm: String = e
        .to_ascii_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join("")
        .replace('"', "'");
    let ty = conv.pg_type;
    let text_like = matches!(ty, PgType::Text | PgType::Varchar(_));
    let to_char = |fmt: &str| format!("to_char(now() AT TIME ZONE 'UTC', {})", quote_literal(fmt));
    // Time functions.
    let now_like = matches!(
        norm.as_str(),
        "current_timestamp" | "datetime('now')" | "datetime('now','utc')" | "now()"
    );
    if now_like {
        return match ty {
            PgType::Timestamptz => Ok(Some("now()".into())),
            PgType::Timestamp => Ok(Some("(now() AT TIME ZONE 'UTC')".into())),
            PgType::Date => Ok(Some("CURRENT_DATE".into())),
            _ if text_like => Ok(Some(to_char("YYYY-MM-DD HH24:MI:SS"))),
            _ => Err(format!(
                "a current timestamp cannot default a {} column",
                ty.sql()
            )),
        };
    }
    if matches!(norm.as_str(), "current_date" | "date('now')") {
        return match ty {
            PgType::Date => Ok(Some("CURRENT_DATE".into())),
            PgType::Timestamptz | PgType::Timestamp => Ok(Some("CURRENT_DATE".into())),
            _ if text_like => Ok(Some(to_char("YYYY-MM-DD"))),
            _ => Err(format!(
                "a current date cannot default a {} column",
                ty.sql()
            )),
        };
    }
    if matches!(norm.as_str(), "current_time" | "time('now')") {
        return match ty {
            PgType::Time => Ok(Some("(now() AT TIME ZONE 'UTC')::time(0)".into())),
            _ if text_like => Ok(Some(to_char("HH24:MI:SS"))),
            _ => Err(format!(
                "a current time cannot default a {} column",
                ty.sql()
            )),
        };
    }
    if matches!(
        norm.as_str(),
        "unixepoch()" | "unixepoch('now')" | "strftime('%s','now')"
    ) {
        return match ty {
            PgType::Bigint | PgType::Integer => {
                Ok(Some("(extract(epoch from now()))::bigint".into()))
            }
            PgType::Double | PgType::Numeric => Ok(Some("extract(epoch from now())".into())),
            PgType::Timestamptz => Ok(Some("date_trunc('second', now())".into())),
            _ if text_like => Ok(Some("((extract(epoch from now()))::bigint)::text".into())),
            _ => Err(format!("an epoch cannot default a {} column", ty.sql())),
        };
    }
    if norm == "julianday('now')" {
        return match ty {
            PgType::Double | PgType::Numeric => Ok(Some(
                "(extract(epoch from now()) / 86400.0 + 2440587.5)".into(),
            )),
            PgType::Timestamptz => Ok(Some("now()".into())),
            _ => Err(format!(
                "julianday('now') cannot default a {} column",
                ty.sql()
            )),
        };
    }
    if let Some(rest) = norm.strip_prefix("strftime('") {
        if let Some(fmt) = rest.strip_suffix("','now')") {
            return match ty {
                PgType::Timestamptz if fmt.contains("%Y") || fmt.contains("%y") => {
                    Ok(Some("now()".into()))
                }
                PgType::Timestamp => Ok(Some("(now() AT TIME ZONE 'UTC')".into())),
                PgType::Date => Ok(Some("CURRENT_DATE".into())),
                _ if text_like => {
                    // re-read the format with original case
                    let orig = e
                        .find('\'')
                        .and_then(|i| {
                            e[i + 1..]
                                .find('\'')
                                .map(|j| e[i + 1..i + 1 + j].to_string())
                        })
                        .unwrap_or_default();
                    Ok(Some(to_char(&strftime_to_pg(&orig)?)))
                }
                _ => Err(format!("strftime cannot default a {} column", ty.sql())),
            };
        }
    }
    // Literals: pass through the column's conversion.
    let lit = parse_literal(&e)
        .ok_or_else(|| format!("SQLite expression {e:?} has no PostgreSQL translation"))?;
    let v = match &lit {
        Lit::Null => return Ok(None),
        Lit::Int(i) => ValueRef::Integer(*i),
        Lit::Real(f) => ValueRef::Real(*f),
        Lit::Text(s) => ValueRef::Text(s.as_bytes()),
        Lit::Blob(b) => ValueRef::Blob(b),
    };
    let mut c = conv.clone();
    c.not_null = false;
    let mut buf = Vec::new();
    c.encode(v, &mut buf).map_err(|e| e.0)?;
    Ok(Some(pg_literal(ty, &buf[4..])))
}

fn strftime_to_pg(f: &str) -> std::result::Result<String, String> {
    let mut out = String::new();
    let mut it = f.chars();
    while let Some(c) = it.next() {
        if c != '%' {
            if c.is_ascii_alphabetic() {
                out.push('"');
                out.push(c);
                out.push('"');
            } else {
                out.push(c);
            }
            continue;
        }
        let s = match it.next() {
            Some('Y') => "YYYY",
            Some('m') => "MM",
            Some('d') => "DD",
            Some('H') => "HH24",
            Some('M') => "MI",
            Some('S') => "SS",
            Some('f') => "SS.MS",
            Some('j') => "DDD",
            Some('%') => "%",
            other => {
                return Err(format!(
                    "strftime %{} has no to_char equivalent",
                    other.unwrap_or(' ')
                ))
            }
        };
        out.push_str(s);
    }
    Ok(out)
}

enum Lit {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

fn parse_literal(e: &str) -> Option<Lit> {
    let u = e.to_ascii_uppercase();
    match u.as_str() {
        "NULL" => return Some(Lit::Null),
        "TRUE" => return Some(Lit::Int(1)),
        "FALSE" => return Some(Lit::Int(0)),
        _ => {}
    }
    if e.len() >= 2 && e.starts_with('\'') && e.ends_with('\'') {
        let inner = &e[1..e.len() - 1];
        if inner.replace("''", "").contains('\'') {
            return None;
        }
        return Some(Lit::Text(inner.replace("''", "'")));
    }
    if (u.starts_with("X'")) && u.ends_with('\'') {
        let h = &e[2..e.len() - 1];
        if !h.len().is_multiple_of(2) {
            return None;
        }
        let bytes: Option<Vec<u8>> = (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).ok())
            .collect();
        return bytes.map(Lit::Blob);
    }
    let n = e.trim_start_matches('+');
    if let Ok(i) = n.parse::<i64>() {
        return Some(Lit::Int(i));
    }
    if let Ok(f) = n.parse::<f64>() {
        return Some(Lit::Real(f));
    }
    None
}

fn pg_literal(ty: PgType, field: &[u8]) -> String {
    match ty {
        PgType::Boolean | PgType::Integer | PgType::Bigint | PgType::Numeric => {
            display_field(ty, Some(field))
        }
        PgType::Text | PgType::Varchar(_) | PgType::Json => {
            quote_literal(&String::from_utf8_lossy(field))
        }
        PgType::Bytea => {
            let mut s = String::from("'\\x");
            for b in field {
                let _ = write!(s, "{b:02x}");
            }
            s + "'::bytea"
        }
        _ => format!(
            "{}::{}",
            quote_literal(&display_field(ty, Some(field))),
            ty.sql()
        ),
    }
}

/// Table plans by target name (for status and verify lookups).
pub fn by_target_name(plan: &Plan) -> BTreeMap<&str, &TablePlan> {
    plan.tables.iter().map(|t| (t.name.as_str(), t)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(t: PgType) -> Conversion {
        Conversion {
            pg_type: t,
            not_null: false,
            epoch_unit: None,
            strip_nul: false,
            lossy_utf8: false,
        }
    }

    #[test]
    fn defaults_translate() {
        let ts = conv(PgType::Timestamptz);
        assert_eq!(
            translate_default("CURRENT_TIMESTAMP", &ts)
                .unwrap()
                .unwrap(),
            "now()"
        );
        assert_eq!(
            translate_default("(datetime('now'))", &ts)
                .unwrap()
                .unwrap(),
            "now()"
        );
        assert_eq!(
            translate_default("strftime('%Y-%m-%d %H:%M:%f', 'now')", &ts)
                .unwrap()
                .unwrap(),
            "now()"
        );
        let t = conv(PgType::Text);
        assert_eq!(
            translate_default("strftime('%Y-%m-%d', 'now')", &t)
                .unwrap()
                .unwrap(),
            "to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
        );
        assert_eq!(
            translate_default("'it''s'", &t).unwrap().unwrap(),
            "'it''s'"
        );
        assert_eq!(
            translate_default("0", &conv(PgType::Boolean))
                .unwrap()
                .unwrap(),
            "false"
        );
        assert_eq!(translate_default("NULL", &t).unwrap(), None);
        assert!(translate_default("random()", &t).is_err());
        assert_eq!(
            translate_default("'2025-01-01'", &ts).unwrap().unwrap(),
            "'2025-01-01 00:00:00.000000Z'::timestamptz"
        );
    }

    #[test]
    fn expressions_rewrite() {
        let b = vec!["done".to_string()];
        assert_eq!(
            rewrite_expr("done == 1 AND [x] <> 'a b'", &b),
            "done = true AND \"x\" <> 'a b'"
        );
        assert_eq!(rewrite_expr("lower(code)", &b), "lower(code)");
    }
}
