//! One write on a dual-write route, from the decision to its row in the dual-write log and
//! the release of its row's turn ([`DualWrite`]).
//!
//! On routes with `dual_write = true`, every write (a method other than GET, HEAD and OPTIONS)
//! is recorded in table `dual_writes` of the proxy's state store once both sides answered or
//! failed (the table, its writer thread and its reader belong to `ficus-state`). A write that
//! succeeded on one side only is flagged at once: `divergent = 1`, a warning in the log and
//! `ficus_dual_write_divergent_total{route}`.

use std::sync::Arc;

use ficus_core::Side;
use ficus_state::{DualWriteLog, DualWriteRecord};
use prometheus::IntCounter;

use crate::hold::InFlightWrite;
use crate::order::Turn;

/// What a dual-write route needs to record its writes.
pub(crate) struct DualRoute {
    pub log: Arc<DualWriteLog>,
    pub divergent: IntCounter,
}

/// A write in flight on a dual-write route. The primary's status is filled in when its head
/// arrives, the mirror's when shadow mode reports; dropped unfinished (not mirrored, aborted)
/// it is recorded with what is known, so every write leaves exactly one row.
pub(crate) struct PendingWrite {
    pub log: Arc<DualWriteLog>,
    pub divergent: IntCounter,
    pub row: DualWriteRecord,
    done: bool,
}

impl PendingWrite {
    pub fn new(route: &DualRoute, row: DualWriteRecord) -> PendingWrite {
        PendingWrite {
            log: route.log.clone(),
            divergent: route.divergent.clone(),
            row,
            done: false,
        }
    }

    /// Sets the status `side` answered with.
    pub fn set_status(&mut self, side: Side, status: Option<u16>) {
        self.row.set_status(side, status);
    }

    /// Records the row now (with the mirror's status, if it was sent and answered).
    pub fn finish(mut self, mirror_status: Option<u16>) {
        let mirror = self.row.primary.other();
        self.set_status(mirror, mirror_status);
        self.record();
    }

    fn record(&mut self) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let row = self.row.clone();
        if row.divergent() {
            self.divergent.inc();
            tracing::warn!(route = %row.route, key = %row.key, method = %row.method,
                primary = row.primary.as_str(), legacy_status = ?row.legacy_status,
                new_status = ?row.new_status, at = %row.at,
                "dual write succeeded on one side only");
        }
        self.log.record(row);
    }
}

impl Drop for PendingWrite {
    fn drop(&mut self) {
        self.record();
    }
}

/// A write in flight: on a dual-write route its row for the log and its turn on the row (see
/// `order`), both optional (a write whose turn timed out has neither; without a dual-write log
/// there is a turn but no row); on any route, its place in the route's count of writes in
/// flight (`ficus_in_flight_writes`, which a cut-over waits on; see `hold`).
///
/// # Architecture invariant: the row is recorded before the turn is released
/// So the log holds a row's writes in the order both sides applied them, and the next write to
/// the row is forwarded only after this one is on record. [`DualWrite::finish`] does it in that
/// order, and so does dropping a `DualWrite` unfinished (then without the mirror's status).
/// The write leaves the in-flight count last, so a count of 0 means every write is answered,
/// mirrored and on record.
#[derive(Default)]
pub(crate) struct DualWrite {
    pub row: Option<PendingWrite>,
    pub turn: Option<Turn>,
    pub in_flight: Option<InFlightWrite>,
}

impl DualWrite {
    /// Whether there is anything to record or release.
    pub fn is_some(&self) -> bool {
        self.row.is_some() || self.turn.is_some() || self.in_flight.is_some()
    }

    /// Sets the status `side` answered with (the primary's, at its response head).
    pub fn set_status(&mut self, side: Side, status: Option<u16>) {
        if let Some(row) = &mut self.row {
            row.set_status(side, status);
        }
    }

    /// Moves the write out (to travel with the response tee), leaving nothing here.
    pub fn take(&mut self) -> DualWrite {
        std::mem::take(self)
    }

    /// Records the row (with the mirror's status: `None` when it was not sent or did not
    /// answer), then releases the turn, then leaves the in-flight count.
    pub fn finish(mut self, mirror_status: Option<u16>) {
        if let Some(row) = self.row.take() {
            row.finish(mirror_status);
        }
        drop(self.turn.take());
        drop(self.in_flight.take());
    }
}

impl Drop for DualWrite {
    fn drop(&mut self) {
        // Unfinished (not mirrored, the primary failed, the client left): recorded with what
        // is known, then the row's next write may go.
        drop(self.row.take());
        drop(self.turn.take());
        drop(self.in_flight.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ficus_state::{DualWriteReader, LogCounters, StateLocation};
    use http::Method;
    use std::time::Duration;

    fn row() -> DualWriteRecord {
        DualWriteRecord {
            at: "2026-01-01T10:00:00.000000Z".into(),
            route: Arc::from("tasks-write"),
            key: "TASK-101".into(),
            method: Method::POST,
            primary: Side::Legacy,
            legacy_status: None,
            new_status: None,
        }
    }

    #[test]
    fn a_finished_write_and_a_dropped_one_each_leave_one_row() {
        let dir = tempfile::tempdir().unwrap();
        let loc = StateLocation::Sqlite(dir.path().join("state.db"));
        let c = |n: &str| IntCounter::new(n, "x").unwrap();
        let counters = LogCounters {
            written: c("w"),
            dropped: c("d"),
            failed: c("f"),
        };
        let log = Arc::new(DualWriteLog::open(&loc, counters.clone()).unwrap());
        let route = DualRoute {
            log: log.clone(),
            divergent: c("dv"),
        };
        let mut w = PendingWrite::new(&route, row());
        w.set_status(Side::Legacy, Some(200));
        w.finish(Some(200));
        let mut w = PendingWrite::new(&route, row());
        w.set_status(Side::Legacy, Some(201));
        drop(w); // never mirrored
        assert!(log.flush_blocking(Duration::from_secs(5)));
        assert_eq!(counters.written.get(), 2);
        assert_eq!(route.divergent.get(), 1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let got = rt.block_on(async {
            let r = DualWriteReader::open(&loc).await.unwrap();
            r.rows_after(0, i64::MAX, 10).await.unwrap()
        });
        let got: Vec<_> = got
            .iter()
            .map(|e| (e.legacy_status, e.new_status, e.divergent))
            .collect();
        assert_eq!(got, vec![(Some(200), Some(200), 0), (Some(201), None, 1)]);
    }
}
