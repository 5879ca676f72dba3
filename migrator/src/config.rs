//! `migration.toml`: settings and per-column overrides of the plan, and the `[watch]` section
//! read by `migrate watch` and `migrate rollback`. Every field is optional; an empty file (or
//! none) gives the defaults.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::convert::{EpochUnit, PgType};
use crate::error::{MigrateError, Result};

/// The whole configuration file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MigrationConfig {
    /// PostgreSQL type for SQLite DATETIME/TIMESTAMP columns: `timestamptz` (naive values read
    /// as UTC; the default) or `timestamp`.
    pub datetime_type: Option<String>,
    /// A typed column whose share of unconvertible values exceeds this fraction (default 0.5)
    /// is widened to `text` when every value fits text; below it, the rows are quarantined.
    pub widen_over: Option<f64>,
    /// Per table settings, by SQLite table name.
    pub tables: BTreeMap<String, TableConfig>,
    /// `[watch]`: settings of `migrate watch` and `migrate rollback` (not part of the plan, so
    /// not serialized into its configuration hash).
    #[serde(skip_serializing)]
    pub watch: WatchConfig,
    /// Where the `[tables…]` entries are: the file, and the line of each table and column
    /// entry (for errors naming them). Not part of the configuration's hash.
    #[serde(skip)]
    pub origin: ConfigOrigin,
}

/// The file a configuration came from and the line of each `[tables.X]` /
/// `[tables.X.columns.Y]` entry in it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigOrigin {
    /// The file (or what the text was given as).
    pub path: String,
    /// Line (1-based) of each table entry, by SQLite table name.
    pub tables: BTreeMap<String, usize>,
    /// Line (1-based) of each column entry, by SQLite table and column name.
    pub columns: BTreeMap<(String, String), usize>,
}

impl ConfigOrigin {
    /// `file:line` of a table (column: None) or column entry; the file alone when unknown.
    pub fn at(&self, table: &str, column: Option<&str>) -> String {
        let path = if self.path.is_empty() {
            "migration.toml"
        } else {
            &self.path
        };
        let line = match column {
            None => self.tables.get(table),
            Some(c) => self
                .columns
                .get(&(table.to_string(), c.to_string()))
                .or_else(|| self.tables.get(table)),
        };
        match line {
            Some(l) => format!("{path}:{l}"),
            None => path.to_string(),
        }
    }
}

/// The `[tables]` keys with their places in the text (a second, lenient read of the file).
#[derive(Deserialize)]
struct SpannedDoc {
    #[serde(default)]
    tables: BTreeMap<toml::Spanned<String>, SpannedTable>,
}

#[derive(Deserialize)]
struct SpannedTable {
    #[serde(default)]
    columns: BTreeMap<toml::Spanned<String>, serde::de::IgnoredAny>,
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Settings of one table.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TableConfig {
    /// Leave this table out of the migration.
    pub skip: bool,
    /// Name of the table in PostgreSQL (default: the SQLite name).
    pub rename: Option<String>,
    /// Empty strings (`''`) in the table's non-text columns: `"quarantine"` (the default) or
    /// `"null"`; a column's own setting wins.
    pub empty_string: Option<EmptyString>,
    /// Per column overrides, by SQLite column name.
    pub columns: BTreeMap<String, ColumnConfig>,
}

/// Overrides of one column.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ColumnConfig {
    /// PostgreSQL type, e.g. `"text"`, `"bigint"`, `"timestamptz"`, `"varchar(40)"`.
    #[serde(rename = "type")]
    pub pg_type: Option<String>,
    /// Unit of integer epoch values in a date/time column: `s`, `ms`, `us` (default: guessed per
    /// value from its magnitude).
    pub epoch_unit: Option<EpochUnit>,
    /// Remove NUL bytes from text instead of quarantining the row.
    pub strip_nul: bool,
    /// Replace invalid UTF-8 with U+FFFD instead of quarantining the row.
    pub lossy_utf8: bool,
    /// PostgreSQL default expression, replacing the translated SQLite default.
    pub default: Option<String>,
    /// Empty strings (`''`) in this column, if it is not text: `"quarantine"` (the default:
    /// the row goes to `ficus.quarantine`) or `"null"` (loaded as NULL).
    pub empty_string: Option<EmptyString>,
}

/// What an empty string (`''`) in a non-text column becomes.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EmptyString {
    /// Its row goes to `ficus.quarantine` (the default).
    #[default]
    Quarantine,
    /// It is loaded as NULL.
    Null,
}

/// `[watch]` in `migration.toml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WatchConfig {
    /// Per proxy route: which table and column its key names.
    pub routes: BTreeMap<String, WatchRoute>,
    /// Per table (SQLite name).
    pub tables: BTreeMap<String, WatchTable>,
}

/// Which table and column a route's key names.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WatchRoute {
    /// The SQLite table (or its PostgreSQL name).
    pub table: Option<String>,
    /// A UNIQUE (or primary key) column of it.
    pub column: Option<String>,
}

/// Settings of one watched table.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WatchTable {
    /// Not watched (nor written back by rollback).
    pub skip: bool,
    /// The column rows are shown by (default: the route's column, else the primary key).
    pub key: Option<String>,
    /// Side-local columns (per-side surrogate ids), left out of every comparison; without
    /// its key the table is compared as a multiset.
    pub ignore_columns: Vec<String>,
    /// The change-time column (default: one named `updated_at`, if it is a timestamp).
    pub updated_at: Option<String>,
}

impl MigrationConfig {
    /// Read and validate a configuration file.
    pub fn load(path: &std::path::Path) -> Result<MigrationConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| MigrateError::Config {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parse configuration text (`origin` names it in errors).
    pub fn parse(text: &str, origin: &str) -> Result<MigrationConfig> {
        let mut cfg: MigrationConfig = toml::from_str(text).map_err(|e| MigrateError::Config {
            path: origin.to_string(),
            detail: e.to_string(),
        })?;
        cfg.validate(origin)?;
        cfg.origin.path = origin.to_string();
        if let Ok(doc) = toml::from_str::<SpannedDoc>(text) {
            for (t, tc) in doc.tables {
                let tname = t.get_ref().clone();
                cfg.origin
                    .tables
                    .insert(tname.clone(), line_of(text, t.span().start));
                for c in tc.columns.keys() {
                    cfg.origin.columns.insert(
                        (tname.clone(), c.get_ref().clone()),
                        line_of(text, c.span().start),
                    );
                }
            }
        }
        Ok(cfg)
    }

    fn validate(&self, origin: &str) -> Result<()> {
        let bad = |detail: String| MigrateError::Config {
            path: origin.to_string(),
            detail,
        };
        if let Some(t) = &self.datetime_type {
            match PgType::parse(t) {
                Some(PgType::Timestamp) | Some(PgType::Timestamptz) => {}
                _ => {
                    return Err(bad(format!(
                        "datetime_type must be timestamptz or timestamp, not {t:?}"
                    )))
                }
            }
        }
        if let Some(w) = self.widen_over {
            if !(0.0..=1.0).contains(&w) {
                return Err(bad(format!("widen_over must be between 0 and 1, not {w}")));
            }
        }
        for (t, tc) in &self.tables {
            for (c, cc) in &tc.columns {
                if let Some(ty) = &cc.pg_type {
                    if PgType::parse(ty).is_none() {
                        return Err(bad(format!(
                            "tables.{t}.columns.{c}: unsupported type {ty:?} (supported: {})",
                            PgType::SUPPORTED
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Every `[tables.X]` entry names a table of the source (`tables`: each with its columns;
    /// `others`: tables the source has but the plan does not migrate, e.g. virtual ones) and
    /// every `[tables.X.columns.Y]` a column of it; else an error naming the file and line.
    pub(crate) fn check_names(&self, tables: &[(&str, Vec<&str>)], others: &[&str]) -> Result<()> {
        let hint = |want: &str, have: &mut dyn Iterator<Item = &str>| {
            let have: Vec<&str> = have.collect();
            match have.iter().find(|h| h.eq_ignore_ascii_case(want)) {
                Some(h) => format!(" (names are matched exactly: did you mean {h:?}?)"),
                None => format!(" (it has: {})", have.join(", ")),
            }
        };
        for (t, tc) in &self.tables {
            let Some((_, cols)) = tables.iter().find(|(n, _)| n == t) else {
                if others.contains(&t.as_str()) {
                    if tc.columns.is_empty() {
                        continue;
                    }
                    return Err(MigrateError::Config {
                        path: self.origin.at(t, None),
                        detail: format!(
                            "[tables.{t}.columns]: table {t:?} is not migrated (see `migrate plan`: not migrated), so its columns cannot be configured; remove the entries"
                        ),
                    });
                }
                let mut all = tables.iter().map(|(n, _)| *n).chain(others.iter().copied());
                return Err(MigrateError::Config {
                    path: self.origin.at(t, None),
                    detail: format!(
                        "[tables.{t}]: the SQLite source has no table {t:?}{}; fix or remove the entry",
                        hint(t, &mut all)
                    ),
                });
            };
            for c in tc.columns.keys() {
                if !cols.contains(&c.as_str()) {
                    return Err(MigrateError::Config {
                        path: self.origin.at(t, Some(c)),
                        detail: format!(
                            "[tables.{t}.columns.{c}]: table {t:?} has no column {c:?}{}; fix or remove the entry",
                            hint(c, &mut cols.iter().copied())
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    pub(crate) fn column(&self, table: &str, column: &str) -> Option<&ColumnConfig> {
        self.tables.get(table).and_then(|t| t.columns.get(column))
    }

    /// The empty-string rule of a column: its own, else its table's, else quarantine.
    pub(crate) fn empty_string(&self, table: &str, column: &str) -> EmptyString {
        let t = self.tables.get(table);
        t.and_then(|t| t.columns.get(column))
            .and_then(|c| c.empty_string)
            .or_else(|| t.and_then(|t| t.empty_string))
            .unwrap_or_default()
    }

    pub(crate) fn datetime_type(&self) -> PgType {
        self.datetime_type
            .as_deref()
            .and_then(PgType::parse)
            .unwrap_or(PgType::Timestamptz)
    }
}
