//! What a running command shows and exports: indicatif bars with rows/s and ETA when stderr
//! is a terminal, periodic log lines otherwise, and the Prometheus metrics, through one
//! [`Observer`].

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::metrics::Metrics;

struct TableState {
    bar: Option<ProgressBar>,
    total: u64,
    done: u64,
    start_done: u64,
    started: Instant,
    last_log: Instant,
}

/// Progress display + metrics of one command.
pub struct Observer {
    /// The metrics this observer updates.
    pub metrics: Arc<Metrics>,
    multi: Option<MultiProgress>,
    quiet: bool,
    tables: Mutex<HashMap<String, TableState>>,
}

impl Observer {
    /// `quiet`: no bars, no log lines (metrics still count).
    pub fn new(metrics: Arc<Metrics>, quiet: bool) -> Observer {
        let multi = (!quiet && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Observer {
            metrics,
            multi,
            quiet,
            tables: Mutex::new(HashMap::new()),
        }
    }

    /// An observer that shows nothing (library use, tests).
    pub fn silent() -> Observer {
        let metrics = Metrics::new()
            .map(Arc::new)
            .unwrap_or_else(|_| unreachable_metrics());
        Observer::new(metrics, true)
    }

    /// The command entered `phase` (one of the `ficus_migrate_phase` labels).
    pub fn phase(&self, phase: &str) {
        self.metrics.set_phase(phase);
        self.log(&format!("phase {phase}"));
    }

    /// A table's copy begins (or resumes): `done` rows read, `copied` and `quarantined` rows
    /// committed by earlier runs. The copied and quarantined counters start from the
    /// checkpoint, so a resumed run's progress panel continues where the killed run stopped
    /// and `rate()` sees no reset.
    pub fn table_started(&self, table: &str, total: u64, done: u64, copied: u64, quarantined: u64) {
        self.metrics
            .source_rows
            .with_label_values(&[table])
            .set(total as i64);
        for (counter, from_checkpoint) in [
            (&self.metrics.rows_copied, copied),
            (&self.metrics.rows_quarantined, quarantined),
        ] {
            let c = counter.with_label_values(&[table]);
            c.inc_by(from_checkpoint.saturating_sub(c.get()));
        }
        let bar = self.multi.as_ref().map(|m| {
            let b = m.add(ProgressBar::new(total));
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix:>20} [{bar:30}] {pos}/{len} rows {rate} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .with_key(
                    "rate",
                    |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.0} rows/s", s.per_sec());
                    },
                )
                .progress_chars("=> "),
            );
            b.set_prefix(table.to_string());
            b.set_position(done);
            b
        });
        if let Ok(mut g) = self.tables.lock() {
            g.insert(
                table.to_string(),
                TableState {
                    bar,
                    total,
                    done,
                    start_done: done,
                    started: Instant::now(),
                    last_log: Instant::now(),
                },
            );
        }
    }

    /// A batch of `table` committed: totals read, copied and quarantined so far.
    pub fn batch(&self, table: &str, read: u64, copied: u64, quarantined: u64) {
        self.metrics
            .rows_copied
            .with_label_values(&[table])
            .inc_by(copied);
        if quarantined > 0 {
            self.metrics
                .rows_quarantined
                .with_label_values(&[table])
                .inc_by(quarantined);
        }
        let Ok(mut g) = self.tables.lock() else {
            return;
        };
        let Some(st) = g.get_mut(table) else { return };
        st.done += read;
        let secs = st.started.elapsed().as_secs_f64().max(1e-3);
        let rate = (st.done - st.start_done) as f64 / secs;
        self.metrics
            .rows_per_second
            .with_label_values(&[table])
            .set(rate);
        if let Some(b) = &st.bar {
            b.set_position(st.done);
        } else if !self.quiet && st.last_log.elapsed() >= Duration::from_secs(2) {
            st.last_log = Instant::now();
            let left = st.total.saturating_sub(st.done) as f64;
            tracing::info!(
                "{table}: {}/{} rows ({:.0}%), {:.0} rows/s, ETA {:.0} s",
                st.done,
                st.total,
                100.0 * st.done as f64 / st.total.max(1) as f64,
                rate,
                if rate > 0.0 { left / rate } else { 0.0 }
            );
        }
    }

    /// `table` is copied.
    pub fn table_done(&self, table: &str) {
        let Ok(mut g) = self.tables.lock() else {
            return;
        };
        if let Some(st) = g.get_mut(table) {
            if let Some(b) = &st.bar {
                b.finish();
            } else if !self.quiet {
                tracing::info!("{table}: done, {} rows", st.done);
            }
        }
    }

    /// Log one line (above the bars on a terminal).
    pub fn log(&self, msg: &str) {
        if self.quiet {
            return;
        }
        match &self.multi {
            Some(m) => {
                let _ = m.println(msg);
            }
            None => tracing::info!("{msg}"),
        }
    }
}

fn unreachable_metrics() -> Arc<Metrics> {
    // Metrics::new only fails on duplicate registration, which a fresh registry cannot have.
    Arc::new(Metrics::new().unwrap_or_else(|e| panic!("metrics registry: {e}")))
}
