//! `migrate plan --format json`: the plan in a stable shape for tools and CI, apart from the
//! stored [`Plan`] (whose JSON is the migrator's own and changes with it). The shape is named
//! by `format` (`ficus-plan/1`); within one format, fields are only ever added. Row keys are
//! JSON objects. docs/plan-json.md describes every field.

use serde::{Deserialize, Serialize};

use super::types::{NotCarried, Plan};

/// The value of `format`.
pub const PLAN_JSON_FORMAT: &str = "ficus-plan/1";

/// The whole plan, for tools.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PlanJson {
    /// [`PLAN_JSON_FORMAT`].
    pub format: String,
    /// The SQLite file: path and size in bytes.
    pub source: SourceJson,
    /// Target schema.
    pub schema: String,
    /// What checkpoints of a run are valid for (changes with the source or the plan).
    pub fingerprint: String,
    /// Every table carried, in the source's order.
    pub tables: Vec<TableJson>,
    /// Every view, in creation order.
    pub views: Vec<ViewJson>,
    /// Triggers: never carried, with their SQL.
    pub triggers: Vec<NotCarried>,
    /// Other objects not carried, with the reason.
    pub skipped: Vec<NotCarried>,
    /// Everything else carried approximately or not at all, in words.
    pub warnings: Vec<String>,
    /// Counts over the above.
    pub totals: TotalsJson,
    /// The DDL: what is created before the load, and the steps after it in order.
    pub ddl: DdlJson,
}

/// The SQLite file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceJson {
    /// Its path as given.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
}

/// One table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TableJson {
    /// Name in PostgreSQL.
    pub name: String,
    /// Name in SQLite.
    pub source_name: String,
    /// Rows when profiled.
    pub rows: u64,
    /// Primary key columns (empty: none; verify compares rows as a multiset).
    pub primary_key: Vec<String>,
    /// Values that will not convert (their rows go to `ficus.quarantine`), over all columns.
    pub expected_rejects: u64,
    /// Every column, in the source's order.
    pub columns: Vec<ColumnJson>,
    /// Keys, UNIQUE constraints and indexes, created after the load.
    pub indexes: Vec<IndexJson>,
    /// CHECK constraints (`sql` null: not created, `note` says why).
    pub checks: Vec<CheckJson>,
    /// Foreign keys, added NOT VALID after the load, then validated.
    pub foreign_keys: Vec<ForeignKeyJson>,
    /// What else the plan says about the table.
    pub notes: Vec<String>,
}

/// One column.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ColumnJson {
    /// Name (the same on both sides).
    pub name: String,
    /// Type declared in SQLite ("" when none).
    pub declared: String,
    /// Type in PostgreSQL.
    pub pg_type: String,
    /// NOT NULL in PostgreSQL.
    pub not_null: bool,
    /// Default expression in PostgreSQL.
    pub default: Option<String>,
    /// Why this type, in words.
    pub decision: String,
    /// Values that will not convert.
    pub rejects: u64,
    /// Some of them.
    pub reject_samples: Vec<RejectJson>,
}

/// One value that will not convert.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RejectJson {
    /// The row's key: `{"column": value, ...}` (`{"rowid": n}` without a primary key).
    pub key: serde_json::Value,
    /// The value as shown to people.
    pub value: String,
    /// Why it does not convert.
    pub reason: String,
}

/// One key, UNIQUE constraint or index.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IndexJson {
    /// Its name in PostgreSQL.
    pub name: String,
    /// The statement.
    pub sql: String,
    /// What the plan says about it.
    pub note: Option<String>,
}

/// One CHECK constraint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckJson {
    /// Its name in PostgreSQL.
    pub name: String,
    /// The expression in SQLite.
    pub sqlite: String,
    /// The statement, or null when it is not created.
    pub sql: Option<String>,
    /// Why it is not created, or how it was carried.
    pub note: Option<String>,
}

/// One foreign key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ForeignKeyJson {
    /// Its name in PostgreSQL.
    pub name: String,
    /// `ALTER TABLE … ADD CONSTRAINT … NOT VALID`.
    pub sql: String,
}

/// One view.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ViewJson {
    /// Its name.
    pub name: String,
    /// It was translated (`run` will create it unless PostgreSQL refuses it).
    pub translated: bool,
    /// `CREATE OR REPLACE VIEW …` in PostgreSQL (null when not translated).
    pub sql: Option<String>,
    /// Why it could not be translated.
    pub untranslated: Option<String>,
    /// Its SQL in SQLite.
    pub sqlite: String,
    /// The views it reads (created before it).
    pub depends_on: Vec<String>,
    /// Where its result may differ from SQLite's.
    pub notes: Vec<String>,
}

/// Counts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TotalsJson {
    /// Tables carried.
    pub tables: usize,
    /// Rows over all tables.
    pub rows: u64,
    /// Values that will not convert.
    pub expected_rejects: u64,
    /// Views.
    pub views: usize,
    /// Views that could not be translated.
    pub views_untranslated: usize,
    /// Triggers (never carried).
    pub triggers: usize,
    /// Skipped objects.
    pub skipped: usize,
}

/// The DDL.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DdlJson {
    /// Statements run before the load (schema, tables without keys).
    pub create: Vec<String>,
    /// Steps run after it, in order.
    pub post_load: Vec<StepJson>,
}

/// One post-load step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepJson {
    /// Its id (`index:table:name`, `check:…`, `fk:…`, `fk-validate:…`, `sequence:table`,
    /// `view:name`), as `ficus.steps` records it.
    pub id: String,
    /// The statement(s).
    pub sql: String,
    /// Failing it fails the run (else it is reported as not applied).
    pub required: bool,
}

impl Plan {
    /// The plan in the stable shape `plan --format json` prints.
    pub fn json(&self) -> PlanJson {
        let tables = self
            .tables
            .iter()
            .map(|t| TableJson {
                name: t.name.clone(),
                source_name: t.source_name.clone(),
                rows: t.rows,
                primary_key: t
                    .key_columns
                    .iter()
                    .map(|&c| t.columns[c].name.clone())
                    .collect(),
                expected_rejects: t.expected_rejects,
                columns: t
                    .columns
                    .iter()
                    .map(|c| ColumnJson {
                        name: c.name.clone(),
                        declared: c.declared.clone(),
                        pg_type: c.conversion.pg_type.sql(),
                        not_null: c.conversion.not_null,
                        default: c.default.clone(),
                        decision: c.decision.clone(),
                        rejects: c.rejects,
                        reject_samples: c
                            .samples
                            .iter()
                            .map(|r| RejectJson {
                                key: serde_json::from_str(&r.key)
                                    .unwrap_or_else(|_| r.key.clone().into()),
                                value: r.value.clone(),
                                reason: r.reason.clone(),
                            })
                            .collect(),
                    })
                    .collect(),
                indexes: t
                    .indexes
                    .iter()
                    .map(|i| IndexJson {
                        name: i.name.clone(),
                        sql: i.sql.clone(),
                        note: i.note.clone(),
                    })
                    .collect(),
                checks: t
                    .checks
                    .iter()
                    .map(|c| CheckJson {
                        name: c.name.clone(),
                        sqlite: c.sqlite.clone(),
                        sql: c.sql.clone(),
                        note: c.note.clone(),
                    })
                    .collect(),
                foreign_keys: t
                    .foreign_keys
                    .iter()
                    .map(|f| ForeignKeyJson {
                        name: f.name.clone(),
                        sql: f.add_sql.clone(),
                    })
                    .collect(),
                notes: t.notes.clone(),
            })
            .collect();
        let views: Vec<ViewJson> = self
            .views
            .iter()
            .map(|v| ViewJson {
                name: v.name.clone(),
                translated: v.untranslated.is_none(),
                sql: v.untranslated.is_none().then(|| v.sql.clone()),
                untranslated: v.untranslated.clone(),
                sqlite: v.sqlite.clone(),
                depends_on: v.depends_on.clone(),
                notes: v.notes.clone(),
            })
            .collect();
        PlanJson {
            format: PLAN_JSON_FORMAT.into(),
            source: SourceJson {
                path: self.source.path.clone(),
                size: self.source.size,
            },
            schema: self.schema.clone(),
            fingerprint: self.fingerprint.clone(),
            totals: TotalsJson {
                tables: self.tables.len(),
                rows: self.tables.iter().map(|t| t.rows).sum(),
                expected_rejects: self.expected_rejects(),
                views: views.len(),
                views_untranslated: views.iter().filter(|v| !v.translated).count(),
                triggers: self.triggers.len(),
                skipped: self.skipped.len(),
            },
            tables,
            views,
            triggers: self.triggers.clone(),
            skipped: self.skipped.clone(),
            warnings: self.warnings.clone(),
            ddl: DdlJson {
                create: self.create_sql(),
                post_load: self
                    .post_load_steps()
                    .into_iter()
                    .map(|s| StepJson {
                        id: s.id,
                        sql: s.sql,
                        required: s.required,
                    })
                    .collect(),
            },
        }
    }
}
