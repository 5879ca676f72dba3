//! What `migrate rollback` did, per pass and per table, and its text for people.

use ficus_state::RouteSwitch;
use serde::{Deserialize, Serialize};

use super::options::ConflictPolicy;
use crate::drift::{drift_line, ColumnDiff, Drift};

/// What happens to one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RowAction {
    /// Missing in SQLite: inserted.
    Insert,
    /// Different in SQLite: replaced by new's version.
    Update,
    /// Legacy's version is newer (`newest-wins`).
    KeepLegacy,
    /// Both sides changed it since T (`abort`).
    Conflict,
}

/// One row written back (or that would be, or that conflicts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowChange {
    /// The row's key as JSON.
    pub key: String,
    /// What happens to it.
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
    /// The table (its PostgreSQL name).
    pub table: String,
    /// Which rows were in scope, in words.
    pub scope: String,
    /// Rows in scope (copies, for multiset tables).
    pub in_scope: u64,
    /// Rows inserted into SQLite (or that would be).
    pub inserted: u64,
    /// Rows updated in SQLite (or that would be).
    pub updated: u64,
    /// Rows SQLite already holds as new does.
    pub unchanged: u64,
    /// Rows whose newer legacy version was kept.
    pub kept_legacy: u64,
    /// Rows both sides changed since T (`abort`).
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
    /// Every table in scope.
    pub tables: Vec<TableRollback>,
    /// Conflicts under `abort`: nothing was written.
    pub aborted: bool,
    /// The SQLite transaction committed.
    pub written: bool,
    /// Reverse verify clean (also true when nothing was written).
    pub verified_clean: bool,
}

impl Pass {
    /// `f` summed over the tables.
    pub(super) fn count(&self, f: impl Fn(&TableRollback) -> u64) -> u64 {
        self.tables.iter().map(f).sum()
    }
}

/// The outcome of `migrate rollback`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackReport {
    /// Nothing was written.
    pub dry_run: bool,
    /// The conflict policy used.
    pub conflict: ConflictPolicy,
    /// The write-back pass.
    pub pass: Pass,
    /// Whether and how routes were switched to legacy.
    pub routes: RouteSwitch,
    /// The catch-up pass after the switch.
    pub catch_up: Option<Pass>,
    /// Everything done and verified.
    pub ok: bool,
    /// How long it took.
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
