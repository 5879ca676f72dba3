//! The human report of a plan: each table's key and read order, each column's decision with
//! what the profile found, each value that will not convert (sampled), the constraints, notes
//! and warnings — what `migrate plan` prints.

use std::fmt::Write as _;

use super::types::{ColumnPlan, Plan, TablePlan};
use crate::convert::PgType;
use crate::source::ReadKey;

/// A TOML key: bare when it can be, else a quoted string.
fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        let mut q = String::from("\"");
        for c in k.chars() {
            match c {
                '"' => q.push_str("\\\""),
                '\\' => q.push_str("\\\\"),
                c if c.is_control() => q.push_str(&format!("\\u{:04X}", c as u32)),
                c => q.push(c),
            }
        }
        q.push('"');
        q
    }
}

impl Plan {
    /// Columns of a type other than text where the profile found empty strings: where the
    /// `empty_string` rule applies.
    pub fn empty_string_columns(&self) -> Vec<(&TablePlan, &ColumnPlan)> {
        self.tables
            .iter()
            .flat_map(|t| t.columns.iter().map(move |c| (t, c)))
            .filter(|(_, c)| {
                let ty = c.conversion.pg_type;
                c.profile.empty_strings > 0 && !ty.is_text_like() && ty != PgType::Bytea
            })
            .collect()
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
            let after = if v.depends_on.is_empty() {
                String::new()
            } else {
                format!(" (after {})", v.depends_on.join(", "))
            };
            match &v.untranslated {
                None => {
                    let _ = writeln!(s, "\nview {}{after}: {}", v.name, v.sql);
                }
                Some(why) => {
                    let _ = writeln!(
                        s,
                        "\nview {}: NOT CREATED, cannot be translated: {why}\n  SQLite: {}",
                        v.name,
                        v.sqlite.split_whitespace().collect::<Vec<_>>().join(" ")
                    );
                }
            }
            for n in &v.notes {
                let _ = writeln!(s, "  note: {n}");
            }
        }
        for t in self.triggers.iter().chain(&self.skipped) {
            let _ = writeln!(s, "\n{} {}: NOT CARRIED: {}", t.kind, t.name, t.reason);
            for l in t.sql.lines() {
                let _ = writeln!(s, "  {l}");
            }
        }
        let empties = self.empty_string_columns();
        if !empties.is_empty() {
            let _ = writeln!(
                s,
                "\nempty strings ('') in non-text columns (rule empty_string: \"quarantine\", the default, or \"null\"):"
            );
            for (t, c) in empties {
                let n = c.profile.empty_strings;
                let ty = c.conversion.pg_type.sql();
                if c.conversion.empty_as_null {
                    let _ = writeln!(
                        s,
                        "  - {}.{} ({ty}): {n} value(s) loaded as NULL",
                        t.source_name, c.name
                    );
                } else {
                    let _ = writeln!(
                        s,
                        "  - {}.{} ({ty}): {n} value(s), their rows quarantined; to load them as NULL add to migration.toml:\n      [tables.{}.columns.{}]\n      empty_string = \"null\"",
                        t.source_name,
                        c.name,
                        toml_key(&t.source_name),
                        toml_key(&c.name)
                    );
                }
            }
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
        let untranslated = self
            .views
            .iter()
            .filter(|v| v.untranslated.is_some())
            .count();
        let _ = writeln!(
            s,
            "{} views ({} translated, {untranslated} not), {} trigger(s) not carried, {} object(s) skipped",
            self.views.len(),
            self.views.len() - untranslated,
            self.triggers.len(),
            self.skipped.len()
        );
        s
    }
}
