//! Sweeps: how the watch finds writes that bypassed the proxy. A full sweep verifies tables
//! by chunked checksums ([`crate::verify()`]); a watermark sweep reads only the rows whose
//! `updated_at` is at or after the previous sweep's start minus the settle window and a 30 s
//! margin, on both sides. Differences of keyed tables are queued for a re-check a settle
//! window later ([`super::pending`]); a keyless (multiset) table that differed is verified
//! again as a whole then. Every time is by the watch's clock.

use std::collections::{HashMap, HashSet};

use ficus_core::SharedClock;

use super::event::{iso, WatchEvent};
use super::pending::PendingKeys;
use super::report::Reporter;
use super::sides::Sides;
use crate::convert::utc_text;
use crate::drift::{
    compare, key_from_display, source_rows_by_key, target_rows_by_key, ColumnDiff, Drift,
    DriftClass, LegacyRow,
};
use crate::error::{DualWriteError, DwResult};
use crate::introspect::quote_sqlite;
use crate::rows::{canon_source_row, scan_target, CanonRow};
use crate::source::{open_source, read_rows_where, KeyValue};
use crate::verify::Difference;

/// Margin added to the settle window when a watermark sweep looks back.
const WATERMARK_MARGIN_US: i64 = 30_000_000;

/// The sweeps' state: watermarks, keyless tables awaiting their re-check, sweeps done.
pub(super) struct Sweeper {
    watermarks: HashMap<usize, i64>,
    /// Keyless tables whose sweep differed: due time.
    table_rechecks: HashMap<usize, i64>,
    /// Sweeps done so far.
    pub(super) done: u32,
    settle_us: i64,
    clock: SharedClock,
}

impl Sweeper {
    /// No sweep done yet; `settle_us` is the settle window.
    pub(super) fn new(settle_us: i64, clock: SharedClock) -> Sweeper {
        Sweeper {
            watermarks: HashMap::new(),
            table_rechecks: HashMap::new(),
            done: 0,
            settle_us,
            clock,
        }
    }

    /// Whether a keyless table still awaits its re-check.
    pub(super) fn rechecks_pending(&self) -> bool {
        !self.table_rechecks.is_empty()
    }

    /// One sweep: `full`, or by watermark where a table allows it.
    pub(super) async fn sweep(
        &mut self,
        full: bool,
        sides: &Sides,
        reporter: &mut Reporter<'_>,
        pending: &mut PendingKeys,
    ) -> DwResult<()> {
        let started = self.clock.unix_us();
        let lookback = self.settle_us + WATERMARK_MARGIN_US;
        let mut checksum = Vec::new();
        let mut by_watermark = Vec::new();
        for vi in 0..sides.views.len() {
            match self.watermarks.get(&vi) {
                Some(wm) if !full && sides.watermark_ok(vi) => by_watermark.push((vi, *wm)),
                _ => checksum.push(vi),
            }
        }
        if !checksum.is_empty() {
            self.checksum_sweep(&checksum, sides, reporter, pending)
                .await?;
        }
        for (vi, wm) in by_watermark {
            self.watermark_sweep(vi, wm, sides, reporter, pending)
                .await?;
        }
        for vi in 0..sides.views.len() {
            self.watermarks.insert(vi, started - lookback);
        }
        self.done += 1;
        reporter.summary.sweeps += 1;
        reporter
            .metrics
            .last_sweep
            .set(self.clock.unix_us() as f64 / 1e6);
        Ok(())
    }

    async fn checksum_sweep(
        &mut self,
        which: &[usize],
        sides: &Sides,
        reporter: &mut Reporter<'_>,
        pending: &mut PendingKeys,
    ) -> DwResult<()> {
        let started = self.clock.now();
        let rep = sides.verify_views(which).await?;
        let mut rows = 0;
        let mut differing = 0;
        for (vi, t) in which.iter().zip(&rep) {
            let vi = *vi;
            let view = &sides.views[vi];
            rows += t.source_rows;
            reporter.checked(vi, t.source_rows);
            let total = t.missing + t.extra + t.differs;
            differing += total;
            let key_cols = view.plan.key_columns.clone();
            let mut keyless = key_cols.is_empty();
            if t.truncated || (t.differences.len() as u64) < total {
                reporter.warn(format!(
                    "table {}: {total} differing rows, more than a sweep lists; the rest are found by later sweeps",
                    t.table
                ));
            }
            if !keyless {
                let mut seen = HashSet::new();
                for d in &t.differences {
                    let key = match d {
                        Difference::MissingInTarget { key, .. }
                        | Difference::ExtraInTarget { key }
                        | Difference::ValueDiffers { key, .. } => key,
                    };
                    if !seen.insert(key.clone()) {
                        continue;
                    }
                    match key_from_display(&view.plan, &key_cols, key) {
                        Some(kv) => {
                            pending.candidate(view, vi, key_cols.clone(), kv, self.clock.unix_us())
                        }
                        None => keyless = true,
                    }
                }
                // Rows reported drifting earlier: re-check them too (resolved if clean now).
                let disp = view.display.key_columns.clone();
                for k in reporter.drifting_keys(vi) {
                    if let Some(kv) = key_from_display(&view.plan, &disp, &k) {
                        pending.candidate(view, vi, disp.clone(), kv, self.clock.unix_us());
                    }
                }
            }
            if keyless {
                if total > 0 || t.mismatched_chunks > 0 {
                    self.table_rechecks
                        .insert(vi, self.clock.unix_us() + self.settle_us);
                } else {
                    reporter.replace_table_drift(vi, Vec::new());
                }
            }
        }
        let tables = which
            .iter()
            .map(|v| sides.views[*v].name().to_string())
            .collect();
        let at = reporter.now_iso();
        reporter.emit(WatchEvent::Sweep {
            at,
            kind: "full".into(),
            tables,
            rows_checked: rows,
            differing,
            seconds: (self.clock.now() - started).as_secs_f64(),
        });
        Ok(())
    }

    /// Verify again the keyless tables whose re-check is due; their drifting rows become
    /// exactly what it finds.
    pub(super) async fn rechecks_due(
        &mut self,
        sides: &Sides,
        reporter: &mut Reporter<'_>,
    ) -> DwResult<()> {
        let now = self.clock.unix_us();
        let due: Vec<usize> = self
            .table_rechecks
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(v, _)| *v)
            .collect();
        for vi in due {
            self.table_rechecks.remove(&vi);
            let rep = sides.verify_views(&[vi]).await?;
            let Some(t) = rep.into_iter().next() else {
                continue;
            };
            reporter.checked(vi, t.source_rows);
            let table = sides.views[vi].name().to_string();
            let drifts = t
                .differences
                .iter()
                .map(|d| match d {
                    Difference::MissingInTarget { key, reason } => Drift {
                        table: table.clone(),
                        key: key.clone(),
                        class: DriftClass::MissingInNew,
                        columns: vec![],
                        note: reason.clone(),
                    },
                    Difference::ExtraInTarget { key } => Drift {
                        table: table.clone(),
                        key: key.clone(),
                        class: DriftClass::MissingInLegacy,
                        columns: vec![],
                        note: None,
                    },
                    Difference::ValueDiffers {
                        key,
                        column,
                        source,
                        target,
                    } => Drift {
                        table: table.clone(),
                        key: key.clone(),
                        class: DriftClass::ValueDiffers,
                        columns: vec![ColumnDiff {
                            column: column.clone(),
                            legacy: source.clone(),
                            new: target.clone(),
                        }],
                        note: None,
                    },
                })
                .collect();
            reporter.replace_table_drift(vi, drifts);
        }
        Ok(())
    }

    async fn watermark_sweep(
        &mut self,
        vi: usize,
        wm: i64,
        sides: &Sides,
        reporter: &mut Reporter<'_>,
        pending: &mut PendingKeys,
    ) -> DwResult<()> {
        let started = self.clock.now();
        let view = sides.views[vi].clone();
        let Some(u) = view.updated_at else {
            return Ok(());
        };
        let Some((cond, param)) = sides
            .style(vi)
            .and_then(|s| s.since_condition(&view.plan, u, wm))
        else {
            return Ok(());
        };
        // Looked up by primary key (unique whatever the display key is).
        let cols = view.plan.key_columns.clone();
        // New side: rows changed since the watermark.
        let mut new: HashMap<Vec<u8>, CanonRow> = HashMap::new();
        let filter = format!(
            "{} >= '{}+00'",
            quote_sqlite(&view.plan.columns[u].name),
            utc_text(wm)
        );
        scan_target(
            &sides.client,
            &sides.plan.schema,
            &view.plan,
            Some(&filter),
            |r| {
                new.insert(r.key(&cols), r.clone());
                Ok(())
            },
        )
        .await?;
        // Legacy side: the same, in its storage form.
        let (src, views, c2) = (sides.source().clone(), sides.views.clone(), cols.clone());
        let mut legacy =
            tokio::task::spawn_blocking(move || -> DwResult<HashMap<Vec<u8>, LegacyRow>> {
                let conn = open_source(&src)?;
                let v = &views[vi];
                let mut out = HashMap::new();
                let mut scratch = Vec::new();
                let mut canon = CanonRow::default();
                let mut rejects: Vec<Vec<KeyValue>> = Vec::new();
                read_rows_where(&conn, &v.plan, &cond, &[param], |row| {
                    match canon_source_row(&v.plan, row, &mut scratch, &mut canon) {
                        Ok(()) => {
                            out.insert(canon.key(&c2), LegacyRow::Row(canon.clone()));
                        }
                        Err(_) => rejects.push(
                            c2.iter()
                                .map(|c| KeyValue::from_ref(row.value(*c)))
                                .collect(),
                        ),
                    }
                    Ok(true)
                })?;
                if !rejects.is_empty() {
                    out.extend(source_rows_by_key(&conn, v, &c2, &rejects)?);
                }
                Ok(out)
            })
            .await
            .map_err(|e| DualWriteError::Internal(format!("source sweep: {e}")))??;
        // Keys seen on one side only: look the other side up.
        let only_new: Vec<Vec<KeyValue>> = new
            .iter()
            .filter(|(k, _)| !legacy.contains_key(*k))
            .filter_map(|(_, r)| view.key_of(&cols, r))
            .collect();
        let only_legacy: Vec<Vec<KeyValue>> = legacy
            .iter()
            .filter(|(k, _)| !new.contains_key(*k))
            .filter_map(|(_, r)| match r {
                LegacyRow::Row(r) => view.key_of(&cols, r),
                LegacyRow::Reject { .. } => None,
            })
            .collect();
        if !only_new.is_empty() {
            let (l, _) = sides.fetch(vi, &cols, only_new).await?;
            legacy.extend(l);
        }
        if !only_legacy.is_empty() {
            let n = target_rows_by_key(
                &sides.client,
                &sides.plan.schema,
                &view,
                &cols,
                &only_legacy,
            )
            .await?;
            new.extend(n);
        }
        let keys: HashSet<Vec<u8>> = new.keys().chain(legacy.keys()).cloned().collect();
        let mut differing = 0u64;
        for k in &keys {
            let (l, n) = (legacy.get(k), new.get(k));
            if compare(&view, l, n).is_none() {
                if let Some(n) = n {
                    reporter.resolve(vi, &view.row_display(n));
                }
            } else {
                differing += 1;
                let kv = n.and_then(|r| view.key_of(&cols, r)).or_else(|| match l {
                    Some(LegacyRow::Row(r)) => view.key_of(&cols, r),
                    _ => None,
                });
                if let Some(kv) = kv {
                    pending.candidate(&view, vi, cols.clone(), kv, self.clock.unix_us());
                }
            }
        }
        reporter.checked(vi, keys.len() as u64);
        let at = reporter.now_iso();
        reporter.emit(WatchEvent::Sweep {
            at,
            kind: format!("watermark (updated_at >= {})", iso(wm)),
            tables: vec![view.name().to_string()],
            rows_checked: keys.len() as u64,
            differing,
            seconds: (self.clock.now() - started).as_secs_f64(),
        });
        Ok(())
    }
}
