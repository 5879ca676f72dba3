//! The dual-write log: on routes with `dual_write = true`, every write is recorded in table
//! `dual_writes` of the state store once both sides answered or failed (columns in
//! [`crate::schema`]). The proxy appends through [`DualWriteLog`] (a writer thread, off the
//! hot path); `migrate watch` and the demo read through [`DualWriteReader`].

mod reader;
mod writer;

use std::sync::Arc;

use ficus_core::Side;
use http::Method;

pub use self::reader::{DualWriteEntry, DualWriteReader, DualWriteSummary};
pub use self::writer::{DualWriteLog, LogCounters};

/// One write, as the proxy records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DualWriteRecord {
    /// The request time stamped on both sides ([`ficus_core::stamp::request_time`]).
    pub at: String,
    /// Route name.
    pub route: Arc<str>,
    /// The value of the route's `key` in this request (empty when it has none).
    pub key: String,
    /// The request method.
    pub method: Method,
    /// Whose answer the client got.
    pub primary: Side,
    /// Legacy's status; `None` when not sent or the exchange failed.
    pub legacy_status: Option<u16>,
    /// New's status; `None` when not sent or the exchange failed.
    pub new_status: Option<u16>,
}

impl DualWriteRecord {
    /// Exactly one side returned 2xx.
    pub fn divergent(&self) -> bool {
        let ok = |s: Option<u16>| s.is_some_and(|s| (200..300).contains(&s));
        ok(self.legacy_status) != ok(self.new_status)
    }

    /// Sets the status `side` answered with.
    pub fn set_status(&mut self, side: Side, status: Option<u16>) {
        match side {
            Side::Legacy => self.legacy_status = status,
            Side::New => self.new_status = status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StateLocation;
    use std::time::Duration;

    pub(crate) fn record(legacy: Option<u16>, new: Option<u16>) -> DualWriteRecord {
        DualWriteRecord {
            at: "2026-01-01T10:00:00.000000Z".into(),
            route: Arc::from("tasks-write"),
            key: "TASK-101".into(),
            method: Method::POST,
            primary: Side::Legacy,
            legacy_status: legacy,
            new_status: new,
        }
    }

    fn counters() -> LogCounters {
        let c = |n: &str| prometheus::IntCounter::new(n, "x").unwrap();
        LogCounters {
            written: c("w"),
            dropped: c("d"),
            failed: c("f"),
        }
    }

    #[test]
    fn divergence_is_exactly_one_side_2xx() {
        assert!(!record(Some(200), Some(201)).divergent());
        assert!(!record(Some(409), Some(409)).divergent());
        assert!(!record(None, None).divergent());
        assert!(record(Some(200), None).divergent());
        assert!(record(Some(500), Some(200)).divergent());
    }

    /// What the writer appends, the reader reads back — on both engines.
    fn round_trip(loc: StateLocation) {
        let c = counters();
        let log = DualWriteLog::open(&loc, c.clone()).unwrap();
        log.record(record(Some(200), Some(200)));
        log.record(record(Some(201), None));
        assert!(log.flush_blocking(Duration::from_secs(10)));
        assert_eq!(c.written.get(), 2);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let r = DualWriteReader::open(&loc).await.unwrap();
            let max = r.max_id(None).await.unwrap();
            let rows = r.rows_after(0, max, 100).await.unwrap();
            let got: Vec<_> = rows
                .iter()
                .map(|e| {
                    (
                        e.legacy_status,
                        e.new_status,
                        e.divergent,
                        e.primary_side.as_str(),
                    )
                })
                .collect();
            assert_eq!(
                got,
                vec![
                    (Some(200), Some(200), 0, "legacy"),
                    (Some(201), None, 1, "legacy")
                ]
            );
            let again = r.rows_with_ids(&[rows[1].id]).await.unwrap();
            assert_eq!(again, rows[1..].to_vec());
            let s = r.summary_after(0).await.unwrap();
            assert_eq!(
                (s.rows, s.agreed, s.divergent, s.primary_legacy),
                (2, 1, 1, 2)
            );
            assert_eq!(r.max_id(Some("2000-01-01")).await.unwrap(), 0);
        });
    }

    #[test]
    fn sqlite_round_trip() {
        let dir = testkit::temp_dir("state");
        round_trip(StateLocation::Sqlite(dir.path().join("state.db")));
    }

    #[test]
    fn postgres_round_trip() {
        let db = testkit::pg::fresh_database("state_dw").unwrap();
        round_trip(StateLocation::parse(&db.url));
    }
}
