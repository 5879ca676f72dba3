//! The DDL of a plan: CREATE TABLE without keys (the load is faster without indexes), the
//! post-load [`Step`]s in the order `run` applies them (keys, UNIQUE, indexes, CHECKs; foreign
//! keys; views and identity sequences), the `COPY` statement of a table, and the quoting
//! helpers every generated statement uses.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::types::{Plan, TablePlan};
use crate::introspect::quote_sqlite;

/// One post-load DDL step, recorded in `ficus.steps` when done.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Step {
    /// Unique within the migration, e.g. `index:tasks:tasks_pkey`.
    pub id: String,
    /// The table it belongs to (none for views).
    pub table: Option<String>,
    /// The statement(s).
    pub sql: String,
    /// Failing it fails the run (else it is recorded and reported as a warning).
    pub required: bool,
    /// 0: keys/indexes/checks (per table, in parallel), 1: foreign keys, 2: views, sequences.
    pub stage: u8,
}

/// `"a"."b"`.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_sqlite(schema), quote_sqlite(name))
}

pub use crate::introspect::quote_literal;

/// A PostgreSQL identifier of at most 63 bytes: longer names are cut and suffixed with a hash
/// of the whole name, so two long names stay apart.
pub(crate) fn pg_ident_limit(s: String) -> String {
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
    /// The tables change capture puts triggers on: every migrated table, by its SQLite name,
    /// with its key columns (empty for a table without a key).
    pub fn capture_tables(&self) -> Vec<crate::capture::CapturedTable> {
        self.tables
            .iter()
            .map(|t| {
                let key = t
                    .key_columns
                    .iter()
                    .map(|&c| t.columns[c].name.clone())
                    .collect();
                (t.source_name.clone(), key)
            })
            .collect()
    }

    /// CREATE TABLE statements (no keys, indexes or constraints: those come after the load).
    pub fn create_sql(&self) -> Vec<String> {
        let mut out = vec![format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            quote_sqlite(&self.schema)
        )];
        if self
            .tables
            .iter()
            .any(|t| t.columns.iter().any(|c| c.collation.is_some()))
        {
            out.push(crate::collation::pg_ci_collation_sql(&quote_sqlite(
                &self.schema,
            )));
        }
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
        for v in self.views.iter().filter(|v| v.untranslated.is_none()) {
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
                if let Some(coll) = &c.collation {
                    s.push_str(&format!(" COLLATE {}", qualified(schema, coll)));
                }
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
