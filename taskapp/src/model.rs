//! The data: a [`Task`] row as both stores hold it, a [`NewTask`] to insert, the known
//! [`Status`] and [`Priority`] names, and the [`Event`] a write appends to `task_events`.
//!
//! `status` and `priority` stay plain strings on [`Task`]: a legacy database may hold values
//! the API would refuse today, and the service must serve them as they are.

use std::fmt;
use std::str::FromStr;

use crate::timestamp::Timestamp;

/// One row of `tasks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: i64,
    pub task_id: String,
    pub title: String,
    pub priority: String,
    pub status: String,
    /// Comma-separated task ids.
    pub dependencies: Option<String>,
    pub assigned_agent: Option<String>,
    pub worktree: Option<String>,
    /// Lines of `[timestamp] text`.
    pub status_notes: Option<String>,
    pub estimated_effort: Option<String>,
    pub completed: bool,
    pub blocked_reason: Option<String>,
    pub blocked_by: Option<String>,
    pub last_heartbeat: Option<Timestamp>,
    pub instructions: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Task {
    /// The task ids this task depends on (empty entries skipped).
    pub fn dependency_ids(&self) -> impl Iterator<Item = &str> {
        self.dependencies
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
    }
}

/// A task to insert: every column but `id`, which the store assigns (`max(id) + 1`, as SQLite
/// does for an `INTEGER PRIMARY KEY`, so both sides number the same inserts the same way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    pub task_id: String,
    pub title: String,
    pub priority: String,
    pub status: String,
    pub dependencies: Option<String>,
    pub assigned_agent: Option<String>,
    pub worktree: Option<String>,
    pub status_notes: Option<String>,
    pub estimated_effort: Option<String>,
    pub completed: bool,
    pub blocked_reason: Option<String>,
    pub blocked_by: Option<String>,
    pub last_heartbeat: Option<Timestamp>,
    pub instructions: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl NewTask {
    /// The row this insert becomes once the store has given it `id`.
    pub fn into_task(self, id: i64) -> Task {
        Task {
            id,
            task_id: self.task_id,
            title: self.title,
            priority: self.priority,
            status: self.status,
            dependencies: self.dependencies,
            assigned_agent: self.assigned_agent,
            worktree: self.worktree,
            status_notes: self.status_notes,
            estimated_effort: self.estimated_effort,
            completed: self.completed,
            blocked_reason: self.blocked_reason,
            blocked_by: self.blocked_by,
            last_heartbeat: self.last_heartbeat,
            instructions: self.instructions,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

/// Error of parsing a [`Status`] or [`Priority`] name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be one of {allowed} (got {got:?})")]
pub struct UnknownName {
    allowed: &'static str,
    got: String,
}

macro_rules! names {
    ($(#[$doc:meta])* $ty:ident { $($variant:ident = $name:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $ty { $($variant),+ }

        impl $ty {
            /// Every value, in the API's order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];

            /// The name as stored and sent.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
        }

        impl FromStr for $ty {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<$ty, UnknownName> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(UnknownName {
                        allowed: concat!($($name, ", "),+).trim_end_matches(", "),
                        got: s.to_string(),
                    }),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

names! {
    /// The states a task moves through.
    Status {
        Pending = "pending",
        InProgress = "in_progress",
        Blocked = "blocked",
        InReview = "in_review",
        Done = "done",
    }
}

names! {
    /// Task priority; `ready` lists HIGH first.
    Priority {
        High = "HIGH",
        Medium = "MEDIUM",
        Low = "LOW",
    }
}

impl Priority {
    /// Sort rank of a stored priority: HIGH 0, MEDIUM 1, LOW 2, anything else after them.
    pub fn rank(stored: &str) -> u8 {
        match stored.parse::<Priority>() {
            Ok(Priority::High) => 0,
            Ok(Priority::Medium) => 1,
            Ok(Priority::Low) => 2,
            Err(_) => 3,
        }
    }
}

/// What a write appends to `task_events` (its `task_id` and `created_at` come from the task).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `claimed`, `heartbeat`, `notes`, `status` or `unclaimed`.
    pub kind: &'static str,
    pub agent: Option<String>,
    pub payload: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print() {
        assert_eq!("in_review".parse::<Status>(), Ok(Status::InReview));
        assert_eq!(Status::Done.to_string(), "done");
        let err = "bogus".parse::<Status>().unwrap_err().to_string();
        assert_eq!(
            err,
            "must be one of pending, in_progress, blocked, in_review, done (got \"bogus\")"
        );
        assert_eq!(Priority::rank("HIGH"), 0);
        assert_eq!(Priority::rank("LOW"), 2);
        assert_eq!(Priority::rank("urgent"), 3);
    }
}
