//! `ficus_migrate_follow_*`: what the follower applied, how far behind it is, what failed.

use prometheus::{Gauge, IntCounter, IntGauge, Opts, Registry};

use crate::error::{MigrateError, Result};

/// The follower's metric handles (registered in the migrator's registry).
#[derive(Clone)]
pub struct FollowMetrics {
    /// Rows upserted or deleted in PostgreSQL.
    pub applied: IntCounter,
    /// Change-log entries applied.
    pub changes: IntCounter,
    /// Changes logged but not applied yet.
    pub lag_changes: IntGauge,
    /// Age of the oldest change not applied yet, seconds.
    pub lag_seconds: Gauge,
    /// Rounds that failed (retried).
    pub apply_errors: IntCounter,
    /// The applied log position.
    pub position: IntGauge,
    /// Rows the reverse follower wrote into SQLite (after a cut-over).
    pub reverse_applied: IntCounter,
    /// The reverse follower's position in PostgreSQL's reverse log.
    pub reverse_position: IntGauge,
}

impl FollowMetrics {
    /// Registers the follower's metrics in `registry`.
    pub fn register(registry: &Registry) -> Result<FollowMetrics> {
        let err = |e: prometheus::Error| MigrateError::Internal(format!("metrics: {e}"));
        let m = FollowMetrics {
            applied: IntCounter::with_opts(Opts::new(
                "ficus_migrate_follow_applied_total",
                "Rows the follower upserted or deleted in PostgreSQL",
            ))
            .map_err(err)?,
            changes: IntCounter::with_opts(Opts::new(
                "ficus_migrate_follow_changes_total",
                "Change-log entries the follower applied",
            ))
            .map_err(err)?,
            lag_changes: IntGauge::with_opts(Opts::new(
                "ficus_migrate_follow_lag_changes",
                "Changes logged in SQLite and not applied to PostgreSQL yet",
            ))
            .map_err(err)?,
            lag_seconds: Gauge::with_opts(Opts::new(
                "ficus_migrate_follow_lag_seconds",
                "Age of the oldest change not applied to PostgreSQL yet",
            ))
            .map_err(err)?,
            apply_errors: IntCounter::with_opts(Opts::new(
                "ficus_migrate_follow_apply_errors_total",
                "Follow rounds that failed (and were retried)",
            ))
            .map_err(err)?,
            position: IntGauge::with_opts(Opts::new(
                "ficus_migrate_follow_position",
                "The applied change-log position",
            ))
            .map_err(err)?,
            reverse_applied: IntCounter::with_opts(Opts::new(
                "ficus_migrate_follow_reverse_applied_total",
                "Rows the reverse follower wrote into SQLite after a cut-over",
            ))
            .map_err(err)?,
            reverse_position: IntGauge::with_opts(Opts::new(
                "ficus_migrate_follow_reverse_position",
                "The reverse follower's position in ficus.reverse_changes",
            ))
            .map_err(err)?,
        };
        for c in [
            Box::new(m.applied.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.changes.clone()),
            Box::new(m.lag_changes.clone()),
            Box::new(m.lag_seconds.clone()),
            Box::new(m.apply_errors.clone()),
            Box::new(m.position.clone()),
            Box::new(m.reverse_applied.clone()),
            Box::new(m.reverse_position.clone()),
        ] {
            registry.register(c).map_err(err)?;
        }
        Ok(m)
    }
}
