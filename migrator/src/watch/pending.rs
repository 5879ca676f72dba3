//! Keys waiting for their check: a written key is due a settle window after its write, a
//! difference once more a settle window after it was seen (so a write still in flight is not
//! a false alarm), and only a difference seen twice is reported. Due times are µs since 1970
//! by the watch's clock.

use std::collections::{BTreeMap, HashMap};

use super::event::FoundBy;
use super::report::Reporter;
use super::sides::Sides;
use crate::drift::{compare, LegacyRow, TableView};
use crate::error::DwResult;
use crate::source::KeyValue;

/// (view, key columns, canonical key bytes).
pub(super) type PendKey = (usize, Vec<usize>, Vec<u8>);

/// Keys due together: (view, key columns) and their canonical key bytes.
pub(super) type DueGroup = ((usize, Vec<usize>), Vec<Vec<u8>>);

/// One key waiting.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Pending {
    /// Its values.
    pub(super) key: Vec<KeyValue>,
    /// When the write was stamped (written keys only).
    pub(super) written_at: Option<i64>,
    /// When it is checked.
    pub(super) due: i64,
    /// 0: not checked yet; 1: differed once (the next difference is reported).
    pub(super) attempt: u8,
    /// How it came here.
    pub(super) found_by: FoundBy,
    /// The route of the write.
    pub(super) route: Option<String>,
}

/// The keys waiting, by [`PendKey`].
#[derive(Debug, Default)]
pub(super) struct PendingKeys {
    keys: HashMap<PendKey, Pending>,
    /// The settle window, µs.
    settle_us: i64,
}

impl PendingKeys {
    /// No key waiting yet; `settle_us` is the settle window.
    pub(super) fn new(settle_us: i64) -> PendingKeys {
        PendingKeys {
            keys: HashMap::new(),
            settle_us,
        }
    }

    /// Whether no key is waiting.
    pub(super) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// When the oldest write still waiting was stamped.
    pub(super) fn oldest_written_at(&self) -> Option<i64> {
        self.keys.values().filter_map(|p| p.written_at).min()
    }

    /// Queue a key for a check at `p.due` (keeping the earliest write time, the latest due).
    pub(super) fn enqueue(&mut self, k: PendKey, p: Pending) {
        let settle = self.settle_us;
        match self.keys.get_mut(&k) {
            Some(old) => {
                old.written_at = match (old.written_at, p.written_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                if p.due > old.due {
                    // A key written again restarts its settle window, but a key written
                    // without pause is still checked within 5 windows of its first write.
                    let cap = old.written_at.map_or(i64::MAX, |w| w + 5 * settle);
                    old.due = p.due.min(cap).max(old.due);
                }
                if p.found_by == FoundBy::WrittenKey {
                    // A new write restarts the settle window and the re-check.
                    old.attempt = 0;
                    old.found_by = FoundBy::WrittenKey;
                    old.route = p.route.or(old.route.take());
                }
            }
            None => {
                self.keys.insert(k, p);
            }
        }
    }

    /// Queue a sweep's difference (row `key` by columns `cols` of view `vi`, seen at `now`)
    /// for its re-check.
    pub(super) fn candidate(
        &mut self,
        view: &TableView,
        vi: usize,
        cols: Vec<usize>,
        key: Vec<KeyValue>,
        now: i64,
    ) {
        let Some(ck) = view.canon_key(&cols, &key) else {
            return;
        };
        let due = now + self.settle_us;
        self.enqueue(
            (vi, cols, ck),
            Pending {
                key,
                written_at: None,
                due,
                attempt: 1,
                found_by: FoundBy::Sweep,
                route: None,
            },
        );
    }

    /// The keys due at `now`, grouped by (view, key columns); groups holding a written key
    /// first: when a sweep found the same row (by its primary key, a different column set) in
    /// the same tick, the drift is the write's, reported with its route.
    pub(super) fn due(&self, now: i64) -> Vec<DueGroup> {
        let mut groups: BTreeMap<(usize, Vec<usize>), Vec<Vec<u8>>> = BTreeMap::new();
        for (k, p) in &self.keys {
            if p.due <= now {
                groups
                    .entry((k.0, k.1.clone()))
                    .or_default()
                    .push(k.2.clone());
            }
        }
        let mut groups: Vec<_> = groups.into_iter().collect();
        groups.sort_by_key(|((vi, cols), cks)| {
            !cks.iter().any(|ck| {
                self.keys
                    .get(&(*vi, cols.clone(), ck.clone()))
                    .is_some_and(|p| p.found_by == FoundBy::WrittenKey)
            })
        });
        groups
    }

    /// Check the keys due at `now` on both sides: agreeing rows are resolved, a first
    /// difference is queued again a settle window later, a second one is reported.
    pub(super) async fn check_due(
        &mut self,
        now: i64,
        sides: &Sides,
        reporter: &mut Reporter<'_>,
    ) -> DwResult<()> {
        let settle = self.settle_us;
        for ((vi, cols), canon_keys) in self.due(now) {
            let keys: Vec<Vec<KeyValue>> = canon_keys
                .iter()
                .filter_map(|c| self.keys.get(&(vi, cols.clone(), c.clone())))
                .map(|p| p.key.clone())
                .collect();
            let (legacy, new) = sides.fetch(vi, &cols, keys).await?;
            reporter.checked(vi, canon_keys.len() as u64);
            let view = &sides.views[vi];
            for ck in canon_keys {
                let pk = (vi, cols.clone(), ck.clone());
                let Some(mut p) = self.keys.remove(&pk) else {
                    continue;
                };
                match compare(view, legacy.get(&ck), new.get(&ck)) {
                    None => {
                        let shown = match (legacy.get(&ck), new.get(&ck)) {
                            (_, Some(n)) => view.row_display(n),
                            (Some(LegacyRow::Row(l)), None) => view.row_display(l),
                            _ if cols == view.display.key_columns => {
                                view.key_display(&cols, &p.key)
                            }
                            _ => continue,
                        };
                        reporter.resolve(vi, &shown);
                    }
                    Some(_) if p.attempt == 0 => {
                        p.attempt = 1;
                        p.due = now + settle;
                        self.keys.insert(pk, p);
                    }
                    Some(d) => reporter.report_drift(vi, d, p.found_by, p.route),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTLE: i64 = 2_000_000;

    fn written(at: i64, route: &str) -> Pending {
        Pending {
            key: vec![KeyValue::Int(1)],
            written_at: Some(at),
            due: at + SETTLE,
            attempt: 0,
            found_by: FoundBy::WrittenKey,
            route: Some(route.into()),
        }
    }

    fn key(vi: usize, k: u8) -> PendKey {
        (vi, vec![0], vec![k])
    }

    #[test]
    fn a_key_is_due_one_settle_window_after_its_write() {
        let mut p = PendingKeys::new(SETTLE);
        p.enqueue(key(0, 1), written(10_000_000, "r"));
        assert!(p.due(10_000_000 + SETTLE - 1).is_empty());
        assert_eq!(
            p.due(10_000_000 + SETTLE),
            vec![((0, vec![0]), vec![vec![1]])]
        );
        assert_eq!(p.oldest_written_at(), Some(10_000_000));
    }

    #[test]
    fn rewrites_restart_the_window_but_at_most_five_windows_from_the_first() {
        let mut p = PendingKeys::new(SETTLE);
        let t0 = 10_000_000;
        p.enqueue(key(0, 1), written(t0, "r"));
        // Written again 1.5 windows later: due a window after that.
        p.enqueue(key(0, 1), written(t0 + 3 * SETTLE / 2, "r"));
        assert!(p.due(t0 + 2 * SETTLE).is_empty());
        assert_eq!(p.due(t0 + 5 * SETTLE / 2).len(), 1);
        // Written without pause: never later than five windows after the first write.
        for i in 2..20 {
            p.enqueue(key(0, 1), written(t0 + i * SETTLE, "r"));
        }
        assert_eq!(p.due(t0 + 5 * SETTLE).len(), 1);
        assert!(p.due(t0 + 5 * SETTLE - 1).is_empty());
        assert_eq!(
            p.oldest_written_at(),
            Some(t0),
            "the earliest write is kept"
        );
    }

    #[test]
    fn a_write_after_a_sweep_difference_restarts_the_recheck() {
        let mut p = PendingKeys::new(SETTLE);
        let t0 = 10_000_000;
        let view_key = key(0, 1);
        p.enqueue(
            view_key.clone(),
            Pending {
                key: vec![KeyValue::Int(1)],
                written_at: None,
                due: t0 + SETTLE,
                attempt: 1,
                found_by: FoundBy::Sweep,
                route: None,
            },
        );
        p.enqueue(view_key.clone(), written(t0 + SETTLE / 2, "tasks-write"));
        let got = &p.keys[&view_key];
        assert_eq!(got.attempt, 0, "checked twice again before it is reported");
        assert_eq!(got.found_by, FoundBy::WrittenKey);
        assert_eq!(got.route.as_deref(), Some("tasks-write"));
        assert_eq!(got.due, t0 + 3 * SETTLE / 2);
    }

    #[test]
    fn groups_with_a_written_key_come_first() {
        let mut p = PendingKeys::new(SETTLE);
        let t0 = 10_000_000;
        p.enqueue(
            (0, vec![0], vec![1]),
            Pending {
                found_by: FoundBy::Sweep,
                written_at: None,
                attempt: 1,
                ..written(t0, "r")
            },
        );
        p.enqueue((1, vec![2], vec![1]), written(t0, "r"));
        let due = p.due(t0 + SETTLE);
        assert_eq!(due.len(), 2);
        assert_eq!(due[0].0, (1, vec![2]));
    }
}
