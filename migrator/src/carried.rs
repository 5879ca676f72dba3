//! What a migration carried and what it did not, one line per kind — tables, rows,
//! quarantined rows, views created / not created, triggers not carried, skipped objects,
//! constraints and indexes not applied — from the plan and the post-load steps recorded in
//! `ficus.steps`. `run` ends with it (and exits 2 unless it is complete), `status` shows it.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::plan::{NotCarried, Plan};

/// What the migration carried, and each thing of the source it did not.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Carried {
    /// Tables created in PostgreSQL.
    pub tables: usize,
    /// Rows copied, all runs together.
    pub rows_copied: u64,
    /// Rows quarantined (in `ficus.quarantine`, not in their table).
    pub rows_quarantined: u64,
    /// Views created, in creation order.
    pub views_created: Vec<String>,
    /// Views not created: not translated, or refused by PostgreSQL (its message).
    pub views_not_created: Vec<NotCarried>,
    /// Views not created yet (the migration has not reached them).
    pub views_pending: Vec<String>,
    /// Triggers, never carried, with their SQL.
    pub triggers_not_carried: Vec<NotCarried>,
    /// Other objects of the source not carried (virtual tables, tables skipped by
    /// configuration...), with the reason.
    pub skipped_objects: Vec<NotCarried>,
    /// Keys, indexes, CHECKs and foreign keys not applied: `step: reason`.
    pub constraints_not_applied: Vec<String>,
    /// Everything the source holds was carried: no row quarantined, nothing above not
    /// carried or pending.
    pub complete: bool,
}

impl Carried {
    /// From the plan, the recorded post-load steps (step, outcome, error) and the row totals.
    pub fn of(
        plan: &Plan,
        steps: &[(String, String, Option<String>)],
        rows_copied: u64,
        rows_quarantined: u64,
    ) -> Carried {
        let outcome = |id: &str| steps.iter().find(|(s, _, _)| s == id);
        let mut c = Carried {
            tables: plan.tables.len(),
            rows_copied,
            rows_quarantined,
            triggers_not_carried: plan.triggers.clone(),
            skipped_objects: plan.skipped.clone(),
            ..Carried::default()
        };
        for v in &plan.views {
            let not_created = |reason: String| NotCarried {
                kind: "view".into(),
                name: v.name.clone(),
                reason,
                sql: v.sqlite.clone(),
            };
            if let Some(why) = &v.untranslated {
                c.views_not_created
                    .push(not_created(format!("not translated: {why}")));
                continue;
            }
            match outcome(&format!("view:{}", v.name)) {
                Some((_, o, _)) if o == "ok" => c.views_created.push(v.name.clone()),
                Some((_, _, e)) => c.views_not_created.push(not_created(format!(
                    "PostgreSQL refused it: {}",
                    e.clone().unwrap_or_default()
                ))),
                None => c.views_pending.push(v.name.clone()),
            }
        }
        for (s, o, e) in steps {
            if o != "ok" && !s.starts_with("view:") {
                c.constraints_not_applied
                    .push(format!("{s}: {}", e.clone().unwrap_or_default()));
            }
        }
        for t in &plan.tables {
            for k in t.checks.iter().filter(|k| k.sql.is_none()) {
                c.constraints_not_applied.push(format!(
                    "check:{}:{}: CHECK ({}) not translated: {}",
                    t.name,
                    k.name,
                    k.sqlite,
                    k.note.clone().unwrap_or_default()
                ));
            }
        }
        c.complete = rows_quarantined == 0
            && c.views_not_created.is_empty()
            && c.views_pending.is_empty()
            && c.triggers_not_carried.is_empty()
            && c.skipped_objects.is_empty()
            && c.constraints_not_applied.is_empty();
        c
    }

    /// One line per kind, each thing not carried indented under its line.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "tables: {} created", self.tables);
        let _ = writeln!(s, "rows: {} copied", self.rows_copied);
        let _ = writeln!(
            s,
            "quarantined: {} row(s){}",
            self.rows_quarantined,
            if self.rows_quarantined > 0 {
                " (in ficus.quarantine: table, key, column, raw value, reason)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            s,
            "views: {} created, {} not created{}",
            self.views_created.len(),
            self.views_not_created.len(),
            if self.views_pending.is_empty() {
                String::new()
            } else {
                format!(", {} pending", self.views_pending.len())
            }
        );
        for v in &self.views_not_created {
            let _ = writeln!(s, "  view {}: {}", v.name, v.reason);
        }
        let _ = writeln!(
            s,
            "triggers: {} not carried",
            self.triggers_not_carried.len()
        );
        for t in &self.triggers_not_carried {
            let _ = writeln!(s, "  trigger {}: {}", t.name, one_line(&t.sql));
        }
        let _ = writeln!(s, "skipped objects: {}", self.skipped_objects.len());
        for o in &self.skipped_objects {
            let _ = writeln!(s, "  {} {}: {}", o.kind, o.name, o.reason);
        }
        let _ = writeln!(
            s,
            "constraints/indexes not applied: {}",
            self.constraints_not_applied.len()
        );
        for c in &self.constraints_not_applied {
            let _ = writeln!(s, "  {c}");
        }
        s
    }
}

/// SQL on one line (whitespace runs as one space).
fn one_line(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}
