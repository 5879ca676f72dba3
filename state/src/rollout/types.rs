//! What the rollout store holds and records: an operator's override, an audit row, a change.

use serde::Serialize;

/// An operator's run-time rollout value for one route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Override {
    /// Route name.
    pub route: String,
    /// The percentage chosen, in basis points.
    pub percent_bp: u32,
    /// The configuration's percentage (basis points) when the operator chose it.
    pub config_bp: u32,
    /// Who chose it.
    pub actor: String,
    /// When (RFC 3339, UTC).
    pub updated_at: String,
}

/// One audit row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Row id, increasing.
    pub id: i64,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// Route name.
    pub route: String,
    /// Percentage before, in basis points.
    pub from_bp: u32,
    /// Percentage after, in basis points.
    pub to_bp: u32,
    /// Who.
    pub actor: String,
    /// `set`, `rollback`, `reset` (back to the file's value), `config` (the file changed);
    /// for events that leave the percentage as it is (`from_bp == to_bp`, recorded with
    /// [`super::RolloutStore::note`]): `hold`, `release`, `hold-expired` (a proxy's write hold).
    pub action: String,
}

/// One change to record: route, from, to (basis points) and what happens to the override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Route name.
    pub route: String,
    /// Percentage before (basis points).
    pub from_bp: u32,
    /// Percentage after (basis points).
    pub to_bp: u32,
    /// `Some(config_bp)` stores an override at `to_bp` (remembering the configuration's
    /// value); `None` removes it, handing the route back to the configuration.
    pub keep_override: Option<u32>,
}
