//! What the watch says and keeps saying: every event goes to the report file (one JSON line)
//! and to the caller; the rows drifting now are kept here, with their gauges, and the
//! [`WatchSummary`] the watch returns is built up here.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::Write as _;
use std::sync::Mutex;

use ficus_core::SharedClock;

use super::event::{iso, FoundBy, WatchEvent, WatchSummary};
use super::metrics::DriftMetrics;
use crate::drift::{Drift, DriftClass};

/// The caller's event callback.
pub(super) type OnEvent<'a> = Box<dyn FnMut(&WatchEvent) + Send + 'a>;

/// Events out, drift kept, metrics and summary up to date.
pub(super) struct Reporter<'a> {
    clock: SharedClock,
    /// Name of each watched table (by view index), as reported.
    names: Vec<String>,
    file: Option<File>,
    on_event: Mutex<OnEvent<'a>>,
    /// The drift metrics.
    pub(super) metrics: DriftMetrics,
    /// Rows drifting now, by (view, display key).
    drifting: BTreeMap<(usize, String), Drift>,
    /// What the watch returns.
    pub(super) summary: WatchSummary,
}

impl<'a> Reporter<'a> {
    /// A reporter for the tables `names` (by view index).
    pub(super) fn new(
        clock: SharedClock,
        names: Vec<String>,
        file: Option<File>,
        on_event: OnEvent<'a>,
        metrics: DriftMetrics,
    ) -> Reporter<'a> {
        Reporter {
            clock,
            summary: WatchSummary {
                tables: names.clone(),
                ..WatchSummary::default()
            },
            names,
            file,
            on_event: Mutex::new(on_event),
            metrics,
            drifting: BTreeMap::new(),
        }
    }

    /// Now, as events stamp it.
    pub(super) fn now_iso(&self) -> String {
        iso(self.clock.unix_us())
    }

    /// Says `e`: to the report file and to the caller.
    pub(super) fn emit(&mut self, e: WatchEvent) {
        if let Some(f) = &mut self.file {
            if let Ok(line) = serde_json::to_string(&e) {
                if let Err(err) = writeln!(f, "{line}").and_then(|_| f.flush()) {
                    tracing::warn!("writing the watch report: {err}");
                }
            }
        }
        if let WatchEvent::Warning { message, .. } = &e {
            self.summary.warnings.push(message.clone());
        }
        if let Ok(mut f) = self.on_event.lock() {
            (*f)(&e);
        }
    }

    /// A warning event.
    pub(super) fn warn(&mut self, message: String) {
        let at = self.now_iso();
        self.emit(WatchEvent::Warning { at, message });
    }

    /// `n` rows of view `view` compared.
    pub(super) fn checked(&mut self, view: usize, n: u64) {
        self.metrics
            .keys_checked
            .with_label_values(&[self.names[view].as_str()])
            .inc_by(n);
        self.summary.keys_checked += n;
    }

    fn set_gauges(&self, view: usize) {
        let name = self.names[view].as_str();
        for c in DriftClass::ALL {
            let n = self
                .drifting
                .range((view, String::new())..(view + 1, String::new()))
                .filter(|(_, d)| d.class == c)
                .count();
            self.metrics
                .rows
                .with_label_values(&[name, c.as_str()])
                .set(n as i64);
        }
    }

    /// A row of view `view` drifts (reported once while it drifts the same way).
    pub(super) fn report_drift(
        &mut self,
        view: usize,
        d: Drift,
        found_by: FoundBy,
        route: Option<String>,
    ) {
        let id = (view, d.key.clone());
        if self.drifting.get(&id) == Some(&d) {
            return;
        }
        self.drifting.insert(id, d.clone());
        self.set_gauges(view);
        let at = self.now_iso();
        self.emit(WatchEvent::Drift {
            at,
            found_by,
            route,
            drift: d,
        });
    }

    /// The row `key` of view `view` agrees: resolved if it was drifting.
    pub(super) fn resolve(&mut self, view: usize, key: &str) {
        if self.drifting.remove(&(view, key.to_string())).is_some() {
            self.set_gauges(view);
            let table = self.names[view].clone();
            let at = self.now_iso();
            self.emit(WatchEvent::Resolved {
                at,
                table,
                key: key.to_string(),
            });
        }
    }

    /// The keys of the rows of view `view` drifting now.
    pub(super) fn drifting_keys(&self, view: usize) -> Vec<String> {
        self.drifting
            .range((view, String::new())..(view + 1, String::new()))
            .map(|((_, k), _)| k.clone())
            .collect()
    }

    /// Set the drifting rows of a (keyless) table to exactly `now`.
    pub(super) fn replace_table_drift(&mut self, view: usize, now: Vec<Drift>) {
        let keep: HashSet<String> = now.iter().map(|d| d.key.clone()).collect();
        let old: Vec<String> = self
            .drifting_keys(view)
            .into_iter()
            .filter(|k| !keep.contains(k))
            .collect();
        for k in old {
            self.resolve(view, &k);
        }
        for d in now {
            self.report_drift(view, d, FoundBy::Sweep, None);
        }
    }

    /// The summary, with the rows drifting now.
    pub(super) fn finish(self) -> WatchSummary {
        let mut s = self.summary;
        s.drift = self.drifting.into_values().collect();
        s.clean = s.drift.is_empty() && s.divergent_writes == 0;
        s
    }
}
