//! The plan itself — what `plan` prints, `run` executes and stores in the target (so a
//! resumed run uses the very same decisions), and every later command reads — apart from the
//! planner that builds it ([`super::build`]). Serialized as JSON; its fingerprint covers
//! everything but the source path.

use serde::{Deserialize, Serialize};

use crate::convert::Conversion;
pub use crate::not_carried::NotCarried;
use crate::profile::{ColumnProfile, RejectSample};
use crate::source::{ReadKey, SourceIdentity, SourceTable};

/// Format version of [`Plan`] (part of the fingerprint).
pub const PLAN_VERSION: u32 = 2;

/// The whole plan.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    /// [`PLAN_VERSION`] of the code that built it.
    pub version: u32,
    /// The SQLite file it was built from.
    pub source: SourceIdentity,
    /// Target schema.
    pub schema: String,
    /// xxh3-128 of the source identity and the plan: what checkpoints are valid for.
    pub fingerprint: String,
    /// xxh3-128 of the configuration the plan was built with.
    pub config_hash: String,
    /// Every migrated table, in the source's order.
    pub tables: Vec<TablePlan>,
    /// Every view of the source, in creation order (each after the views it reads); those
    /// that could not be translated say why.
    pub views: Vec<ViewPlan>,
    /// Triggers: never carried (PostgreSQL triggers call functions; SQLite's bodies do not
    /// translate), listed with their SQL.
    #[serde(default)]
    pub triggers: Vec<NotCarried>,
    /// Other objects of the source not carried, and why: virtual tables other than FTS, the
    /// shadow tables of virtual tables, tables skipped by the configuration.
    #[serde(default)]
    pub skipped: Vec<NotCarried>,
    /// Things not migrated or migrated approximately (triggers, untranslated defaults...).
    pub warnings: Vec<String>,
}

/// Plan of one table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TablePlan {
    /// Name in SQLite.
    pub source_name: String,
    /// Name in PostgreSQL.
    pub name: String,
    /// Rows when it was profiled.
    pub rows: u64,
    /// How it is read in order (and checkpointed).
    pub read_key: ReadKey,
    /// Primary key columns (indexes into `columns`): the row identity for quarantine and
    /// verify. Empty: the table has no key (verify compares rows as a multiset).
    pub key_columns: Vec<usize>,
    /// Every column, in the source's order.
    pub columns: Vec<ColumnPlan>,
    /// Identity column (the INTEGER PRIMARY KEY rowid alias) and the AUTOINCREMENT high mark.
    pub identity: Option<IdentityPlan>,
    /// Primary key, UNIQUE constraints and indexes, created after the load.
    pub indexes: Vec<IndexPlan>,
    /// CHECK constraints, created after the load.
    pub checks: Vec<CheckPlan>,
    /// Foreign keys, added after every table is loaded.
    pub foreign_keys: Vec<FkPlan>,
    /// Values that will not convert, summed over columns (an upper bound of rows).
    pub expected_rejects: u64,
    /// What the report says about the table besides its columns.
    pub notes: Vec<String>,
}

/// Plan of one column.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ColumnPlan {
    /// Name (the same on both sides).
    pub name: String,
    /// The type SQLite declares (may be empty).
    pub declared: String,
    /// The PostgreSQL type and how values are converted to it.
    pub conversion: Conversion,
    /// PostgreSQL default expression.
    pub default: Option<String>,
    /// Why this type, in words.
    pub decision: String,
    /// What the column stores.
    pub profile: ColumnProfile,
    /// Values that will not convert with the chosen conversion.
    pub rejects: u64,
    /// Some of them.
    pub samples: Vec<RejectSample>,
    /// PostgreSQL collation of the column (in the plan's schema), when its SQLite collation
    /// is one ficus compares case-insensitively (see the `collation` module).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collation: Option<String>,
}

/// Identity column.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IdentityPlan {
    /// The column (index into the table's columns).
    pub column: usize,
    /// sqlite_sequence value for AUTOINCREMENT tables.
    pub autoincrement_seq: Option<i64>,
}

/// One primary key, UNIQUE constraint or index, as PostgreSQL DDL.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IndexPlan {
    /// Its name in PostgreSQL.
    pub name: String,
    /// The statement creating it.
    pub sql: String,
    /// Failing to create it fails the run (else it is reported as a warning).
    pub required: bool,
    /// What the report says about it (e.g. a collation left out).
    pub note: Option<String>,
}

/// One CHECK constraint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CheckPlan {
    /// Its name in PostgreSQL.
    pub name: String,
    /// The expression in SQLite.
    pub sqlite: String,
    /// None: not created (see note).
    pub sql: Option<String>,
    /// Why it is not created, or how it was carried over.
    pub note: Option<String>,
}

/// One foreign key: added NOT VALID, then validated.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FkPlan {
    /// Its name in PostgreSQL.
    pub name: String,
    /// `ALTER TABLE … ADD CONSTRAINT … NOT VALID`.
    pub add_sql: String,
    /// `ALTER TABLE … VALIDATE CONSTRAINT …`.
    pub validate_sql: String,
}

/// One view.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ViewPlan {
    /// Its name.
    pub name: String,
    /// `CREATE OR REPLACE VIEW …` in PostgreSQL's SQL; empty when it could not be translated.
    pub sql: String,
    /// Its SQL in SQLite.
    #[serde(default)]
    pub sqlite: String,
    /// The views it reads (created before it).
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Where the translation may differ from SQLite's result.
    #[serde(default)]
    pub notes: Vec<String>,
    /// Why it could not be translated (then it is not created).
    #[serde(default)]
    pub untranslated: Option<String>,
}

impl Plan {
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

    /// Sum of expected rejects.
    pub fn expected_rejects(&self) -> u64 {
        self.tables.iter().map(|t| t.expected_rejects).sum()
    }
}

impl SourceTable for TablePlan {
    fn source_name(&self) -> &str {
        &self.source_name
    }
    fn read_key(&self) -> &ReadKey {
        &self.read_key
    }
    fn column_count(&self) -> usize {
        self.columns.len()
    }
    fn column_name(&self, i: usize) -> &str {
        &self.columns[i].name
    }
    fn key_columns(&self) -> &[usize] {
        &self.key_columns
    }
}
