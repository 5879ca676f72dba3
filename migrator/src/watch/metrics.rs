//! The drift metrics of `migrate watch` (`ficus_drift_*`), every series present at 0 from the
//! start.

use prometheus::{Gauge, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::drift::DriftClass;
use crate::error::{DualWriteError, DwResult};

/// The drift metrics, registered in a migrator [`crate::Metrics`] registry.
#[derive(Clone)]
pub(super) struct DriftMetrics {
    /// `ficus_drift_rows{table,class}`.
    pub(super) rows: IntGaugeVec,
    /// `ficus_drift_keys_checked_total{table}`.
    pub(super) keys_checked: IntCounterVec,
    /// `ficus_drift_verify_lag_seconds`.
    pub(super) verify_lag: Gauge,
    /// `ficus_drift_last_sweep_timestamp_seconds`.
    pub(super) last_sweep: Gauge,
    /// `ficus_drift_divergent_writes_total{route}`.
    pub(super) divergent: IntCounterVec,
}

fn merr(e: prometheus::Error) -> DualWriteError {
    DualWriteError::Internal(format!("metrics: {e}"))
}

impl DriftMetrics {
    /// Create and register them.
    pub(super) fn register(registry: &Registry) -> DwResult<DriftMetrics> {
        let rows = IntGaugeVec::new(
            Opts::new(
                "ficus_drift_rows",
                "Rows that differ between legacy and new now, by class",
            ),
            &["table", "class"],
        )
        .map_err(merr)?;
        let keys_checked = IntCounterVec::new(
            Opts::new(
                "ficus_drift_keys_checked_total",
                "Rows compared between legacy and new (written keys and sweeps)",
            ),
            &["table"],
        )
        .map_err(merr)?;
        let verify_lag = Gauge::new(
            "ficus_drift_verify_lag_seconds",
            "Age of the oldest written key not yet re-verified",
        )
        .map_err(merr)?;
        let last_sweep = Gauge::new(
            "ficus_drift_last_sweep_timestamp_seconds",
            "Unix time the last sweep finished",
        )
        .map_err(merr)?;
        let divergent = IntCounterVec::new(
            Opts::new(
                "ficus_drift_divergent_writes_total",
                "Dual writes that succeeded on one side only",
            ),
            &["route"],
        )
        .map_err(merr)?;
        for c in [
            Box::new(rows.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(keys_checked.clone()),
            Box::new(verify_lag.clone()),
            Box::new(last_sweep.clone()),
            Box::new(divergent.clone()),
        ] {
            registry.register(c).map_err(merr)?;
        }
        Ok(DriftMetrics {
            rows,
            keys_checked,
            verify_lag,
            last_sweep,
            divergent,
        })
    }
}

impl DriftMetrics {
    /// Every `{table,class}` and `{table}` series of `tables`, and every `{route}` series of
    /// `routes`, at 0.
    pub(super) fn zero<'a>(&self, tables: &[&str], routes: impl IntoIterator<Item = &'a String>) {
        for t in tables {
            self.keys_checked.with_label_values(&[*t]).reset();
            for c in DriftClass::ALL {
                self.rows.with_label_values(&[*t, c.as_str()]).set(0);
            }
        }
        for r in routes {
            self.divergent.with_label_values(&[r.as_str()]).reset();
        }
        self.verify_lag.set(0.0);
        self.last_sweep.set(0.0);
    }
}
