//! Prometheus metrics of a migration (names prefixed `ficus_migrate_`), in a registry of
//! their own (the binary serves it on `--metrics-addr` while a command runs).

use prometheus::{Encoder, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::error::{MigrateError, Result};

/// The phases a run goes through, exported as `ficus_migrate_phase{phase=…} 1`.
pub const PHASES: [&str; 6] = ["plan", "copy", "postload", "verify", "done", "failed"];

/// Metric handles (resolved once) and their registry.
pub struct Metrics {
    /// The registry every metric below is registered in (served as `/metrics`).
    pub registry: Registry,
    /// `ficus_migrate_rows_copied_total{table}`.
    pub rows_copied: IntCounterVec,
    /// `ficus_migrate_rows_quarantined_total{table}`.
    pub rows_quarantined: IntCounterVec,
    /// `ficus_migrate_rows_per_second{table}`.
    pub rows_per_second: GaugeVec,
    /// `ficus_migrate_source_rows{table}`.
    pub source_rows: IntGaugeVec,
    /// `ficus_migrate_phase{phase}`: 1 for the current phase.
    pub phase: IntGaugeVec,
    /// `ficus_migrate_verify_rows{table,kind}`: the last verify's counts.
    pub verify_rows: IntGaugeVec,
}

fn err(e: prometheus::Error) -> MigrateError {
    MigrateError::Internal(format!("metrics: {e}"))
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Result<Metrics> {
        let registry = Registry::new();
        let rows_copied = IntCounterVec::new(
            Opts::new(
                "ficus_migrate_rows_copied_total",
                "Rows copied into PostgreSQL",
            ),
            &["table"],
        )
        .map_err(err)?;
        let rows_quarantined = IntCounterVec::new(
            Opts::new(
                "ficus_migrate_rows_quarantined_total",
                "Rows sent to ficus.quarantine",
            ),
            &["table"],
        )
        .map_err(err)?;
        let rows_per_second = GaugeVec::new(
            Opts::new(
                "ficus_migrate_rows_per_second",
                "Copy rate of the current run",
            ),
            &["table"],
        )
        .map_err(err)?;
        let source_rows = IntGaugeVec::new(
            Opts::new("ficus_migrate_source_rows", "Rows in the SQLite table"),
            &["table"],
        )
        .map_err(err)?;
        let phase = IntGaugeVec::new(
            Opts::new("ficus_migrate_phase", "1 for the current phase"),
            &["phase"],
        )
        .map_err(err)?;
        let verify_rows = IntGaugeVec::new(
            Opts::new(
                "ficus_migrate_verify_rows",
                "Rows by verify outcome (matched, missing, extra, differs, quarantined)",
            ),
            &["table", "outcome"],
        )
        .map_err(err)?;
        for c in [
            Box::new(rows_copied.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(rows_quarantined.clone()),
            Box::new(rows_per_second.clone()),
            Box::new(source_rows.clone()),
            Box::new(phase.clone()),
            Box::new(verify_rows.clone()),
        ] {
            registry.register(c).map_err(err)?;
        }
        Ok(Metrics {
            registry,
            rows_copied,
            rows_quarantined,
            rows_per_second,
            source_rows,
            phase,
            verify_rows,
        })
    }

    /// Mark `phase` current.
    pub fn set_phase(&self, phase: &str) {
        for p in PHASES {
            self.phase
                .with_label_values(&[p])
                .set(i64::from(p == phase));
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}
