//! Reading the proxy's dual-write log (`dual_writes` in its state store): the rows committed
//! since the last poll, and the ids skipped below the highest one read — remembered as gaps
//! and looked up again on every poll for [`GAP_GRACE`] (by the watch's clock), because in a
//! PostgreSQL store several replicas draw ids from one sequence and commit out of order.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use ficus_core::SharedClock;
use ficus_state::{DualWriteEntry, DualWriteReader, StateLocation};

use crate::convert::parse_datetime;
use crate::error::DwResult;

/// How long an id skipped below the highest id read is looked for (see the module docs).
pub const GAP_GRACE: Duration = Duration::from_secs(30);
/// Gaps remembered at most; a larger jump in ids is not tracked id by id.
const MAX_GAP_IDS: i64 = 10_000;
/// Dual-write rows read per poll.
const POLL_ROWS: i64 = 20_000;

/// The dual-write log as the watch reads it.
pub(super) struct WriteLog {
    source: DualWriteReader,
    /// The highest id read.
    cursor: i64,
    /// `--once`: read up to this id only.
    until: Option<i64>,
    /// Ids below `cursor` not read yet (not committed yet, or never), with when they were
    /// noticed (µs since 1970); looked up on every poll until [`GAP_GRACE`] has passed.
    gaps: BTreeMap<i64, i64>,
    clock: SharedClock,
}

impl WriteLog {
    /// Opens the log of the state store at `path`, positioned after the last row stamped
    /// before `cutoff` (a `dual_writes.at` text); with `once`, reading stops at the highest
    /// id committed now.
    pub(super) async fn open(
        path: &Path,
        cutoff: &str,
        once: bool,
        clock: SharedClock,
    ) -> DwResult<WriteLog> {
        let source = DualWriteReader::open(&StateLocation::from_path(path)).await?;
        let cursor = source.max_id(Some(cutoff)).await?;
        let until = if once {
            Some(source.max_id(None).await?)
        } else {
            None
        };
        Ok(WriteLog {
            source,
            cursor,
            until,
            gaps: BTreeMap::new(),
            clock,
        })
    }

    /// The rows committed since the last call: new ones past the cursor, and ones that filled
    /// a gap. Remembers the gaps the new rows leave.
    pub(super) async fn poll(&mut self) -> DwResult<Vec<DualWriteEntry>> {
        let now = self.clock.unix_us();
        let until = self.until.unwrap_or(i64::MAX);
        let mut rows = self
            .source
            .rows_after(self.cursor, until, POLL_ROWS)
            .await?;
        for r in &rows {
            let missing = r.id - self.cursor - 1;
            if (1..=MAX_GAP_IDS).contains(&missing) {
                for id in self.cursor + 1..r.id {
                    self.gaps.insert(id, now);
                }
            } else if missing > MAX_GAP_IDS {
                tracing::debug!(
                    from = self.cursor + 1,
                    to = r.id - 1,
                    "dual_writes: ids skipped"
                );
            }
            self.cursor = r.id;
        }
        let grace = GAP_GRACE.as_micros() as i64;
        // Not new rows' own gaps: they were noticed just now and were not there when read.
        let look: Vec<i64> = self
            .gaps
            .iter()
            .filter(|(_, &noticed)| noticed < now)
            .map(|(&id, _)| id)
            .take(MAX_GAP_IDS as usize)
            .collect();
        if !look.is_empty() {
            let filled = self.source.rows_with_ids(&look).await?;
            for r in &filled {
                self.gaps.remove(&r.id);
            }
            rows.extend(filled);
        }
        self.gaps.retain(|_, noticed| now - *noticed <= grace);
        Ok(rows)
    }
}

/// µs since 1970 of a `dual_writes.at` text (UTC unless it carries an offset).
pub(super) fn parse_at(s: &str) -> Option<i64> {
    let p = parse_datetime(s)?;
    Some(p.unix_us - p.offset_s.unwrap_or(0) * 1_000_000)
}
