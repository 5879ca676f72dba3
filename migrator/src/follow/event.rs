//! What the follower reports: its events as it goes ([`FollowEvent`]), why it stopped
//! ([`FollowStop`]) and what a session did ([`FollowSummary`]).

use serde::Serialize;

use super::state;

/// What the follower reports as it goes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum FollowEvent {
    /// Following began (or resumed) at `position`.
    Started {
        /// The capture epoch followed.
        epoch: String,
        /// The applied position it starts from.
        position: i64,
        /// Foreign keys made deferrable for the rounds.
        deferrable_fks: Vec<String>,
    },
    /// A round committed.
    Applied {
        /// Change-log entries applied.
        changes: u64,
        /// Rows upserted or deleted.
        rows: u64,
        /// The applied position.
        position: i64,
        /// Changes still pending.
        lag_changes: i64,
        /// Read + apply time, seconds.
        seconds: f64,
    },
    /// Keys applied a settle window ago were read and applied again.
    Resettled {
        /// Rows upserted or deleted again.
        rows: u64,
    },
    /// Every change logged so far is applied.
    CaughtUp {
        /// The applied position.
        position: i64,
    },
    /// The lag passed `--max-lag-ms`.
    Behind {
        /// Age of the oldest unapplied change, seconds.
        lag_seconds: f64,
        /// Changes pending.
        lag_changes: i64,
    },
    /// Columns added on the source were added in PostgreSQL with their values.
    ColumnsAdded {
        /// `table.column` of each.
        columns: Vec<String>,
    },
    /// A cut-over or a live rollback turned the follower around.
    TurnedAround {
        /// The way it applies changes now.
        direction: state::Direction,
        /// The position it goes on from (the reverse log's, or SQLite's log's).
        position: i64,
    },
    /// A reverse round wrote PostgreSQL's changes into SQLite.
    Reversed {
        /// Reverse-log entries applied.
        changes: u64,
        /// Rows written or deleted in SQLite.
        rows: u64,
        /// The reverse position after it.
        position: i64,
    },
    /// A round failed; it is retried.
    RoundFailed {
        /// Why.
        error: String,
    },
}

impl FollowEvent {
    /// One line for people.
    pub fn text(&self) -> String {
        match self {
            FollowEvent::Started {
                epoch,
                position,
                deferrable_fks,
            } => {
                let mut s = format!("follow: capture epoch {epoch}, from change {position}");
                if !deferrable_fks.is_empty() {
                    s.push_str(&format!(
                        "; foreign keys made DEFERRABLE INITIALLY IMMEDIATE: {}",
                        deferrable_fks.join(", ")
                    ));
                }
                s
            }
            FollowEvent::Applied {
                changes,
                rows,
                position,
                lag_changes,
                seconds,
            } => format!(
                "follow: applied {changes} change(s), {rows} row(s) in {:.0} ms; at change {position}, {lag_changes} pending",
                seconds * 1000.0
            ),
            FollowEvent::Resettled { rows } => {
                format!("follow: settle re-check: {rows} row(s) applied again")
            }
            FollowEvent::CaughtUp { position } => {
                format!("follow: caught up at change {position} (lag 0)")
            }
            FollowEvent::Behind {
                lag_seconds,
                lag_changes,
            } => format!(
                "follow: BEHIND — oldest unapplied change {lag_seconds:.1} s old, {lag_changes} pending"
            ),
            FollowEvent::ColumnsAdded { columns } => format!(
                "follow: column(s) added on the source, added in PostgreSQL with their values: {}",
                columns.join(", ")
            ),
            FollowEvent::TurnedAround {
                direction,
                position,
            } => format!(
                "follow: turned {} (from position {position})",
                direction.as_str()
            ),
            FollowEvent::Reversed {
                changes,
                rows,
                position,
            } => format!(
                "follow (reverse): applied {changes} PostgreSQL change(s), {rows} row(s) written into SQLite; at {position}"
            ),
            FollowEvent::RoundFailed { error } => format!("follow: round failed (retrying): {error}"),
        }
    }
}

/// Why following stopped.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "why", rename_all = "snake_case")]
pub enum FollowStop {
    /// Asked to (Ctrl-C, or the stop future).
    Stopped,
    /// Everything logged is applied (`until_caught_up`).
    CaughtUp,
    /// The source's schema changed in a way following cannot carry; nothing past `position`
    /// was applied (the log keeps it).
    SchemaChanged {
        /// The applied position.
        position: i64,
        /// What changed, per table.
        changes: Vec<String>,
    },
}

/// What a follow session did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FollowSummary {
    /// Why it ended.
    pub stop: FollowStop,
    /// The applied position at the end.
    pub position: i64,
    /// Changes applied in this session.
    pub changes: u64,
    /// Rows upserted or deleted in this session.
    pub rows: u64,
    /// Rounds committed in this session.
    pub rounds: u64,
}
