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
    /// [`super::RolloutStore::note`]): `hold`, `release`, `hold-expired` (a proxy's write hold);
    /// a step plan's `plan-start`, `plan-preflight`, `plan-promote`, `plan-done`,
    /// `plan-rollback:<gate>`, `plan-pause[:<gate>]`, `plan-resume`, `plan-abort`.
    pub action: String,
    /// What justified the change, when the actor said (a plan step's evidence: requests, error
    /// rates and p99 of both sides, mismatch rate, noise excluded; JSON).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A route's step plan as stored: its state (JSON, owned by the proxy's `plan` module) and a
/// version that every write bumps, so two replicas judging at once take one step once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanRow {
    /// Route name.
    pub route: String,
    /// The plan's state, JSON.
    pub state: String,
    /// Bumped by every write; a write naming an older version is refused.
    pub version: i64,
}

/// One write of a step plan: the plan's new state, the rollout changes that go with it and the
/// audit row that says why — one transaction, refused unless the stored version is still
/// `expected_version` (0: no plan stored yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanWrite {
    /// Route name.
    pub route: String,
    /// The version read before deciding (0: none stored).
    pub expected_version: i64,
    /// The new state (JSON).
    pub state: String,
    /// Percentage changes to record with it (each audited), possibly none.
    pub changes: Vec<Change>,
    /// With no change: the route's percentage for the audit row (`from_bp = to_bp`).
    pub note_bp: u32,
    /// Who (`plan` for the plan's own steps, else the operator).
    pub actor: String,
    /// The audit action.
    pub action: String,
    /// The evidence behind it.
    pub detail: Option<String>,
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
