//! How `migrate rollback` runs: its options and the conflict policy.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ficus_state::ToLegacy;
use serde::{Deserialize, Serialize};

/// Who the write-back trusts when both sides changed a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictPolicy {
    /// The newer `updated_at` wins (new wins without `updated_at`).
    NewestWins,
    /// Write nothing if SQLite also changed a differing row since T.
    Abort,
}

/// How `migrate rollback` runs.
#[derive(Clone)]
pub struct RollbackOptions {
    /// The legacy SQLite file (written back to).
    pub source: PathBuf,
    /// The target PostgreSQL URL (only read).
    pub target: String,
    /// The target schema of the migration.
    pub schema: String,
    /// T: RFC 3339 or `YYYY-MM-DD HH:MM:SS[.f]` (UTC). Default: the migration's start.
    pub since: Option<String>,
    /// Decide and list, write nothing, switch nothing.
    pub dry_run: bool,
    /// Who wins when both sides changed a row.
    pub conflict: ConflictPolicy,
    /// What sends every route to legacy once legacy holds everything (the proxy crate's
    /// `LegacySwitch`: admin API, else the state store); `None`: routes are left alone.
    pub to_legacy: Option<Arc<dyn ToLegacy>>,
    /// Row changes listed per table (all are counted).
    pub max_listed: usize,
}

impl RollbackOptions {
    /// The defaults for rolling `target` back into `source`: schema `public`, `--since` the
    /// migration's start, newest wins, 1000 changes listed per table, routes left alone.
    pub fn new(source: &Path, target: &str) -> RollbackOptions {
        RollbackOptions {
            source: source.to_path_buf(),
            target: target.to_string(),
            schema: "public".into(),
            since: None,
            dry_run: false,
            conflict: ConflictPolicy::NewestWins,
            to_legacy: None,
            max_listed: 1000,
        }
    }
}
