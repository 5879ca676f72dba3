//! The [`Store`] trait: the only thing that differs between the legacy side (SQLite) and the
//! new side (PostgreSQL). It persists; it decides nothing. Business rules live in
//! [`crate::service`] and reach the row through [`Store::modify`]'s [`Edit`].

use std::future::Future;

use crate::error::TaskError;
use crate::model::{Event, NewTask, Task};

/// A read-modify-write of one task, run by the store inside a transaction that holds the row:
/// it changes the task and says what to append to `task_events`, or refuses (nothing is written).
pub(crate) type Edit = Box<dyn FnOnce(&mut Task) -> Result<Event, TaskError> + Send>;

/// Persistence of `tasks` and `task_events`.
pub(crate) trait Store: Send + Sync + 'static {
    /// Every task, ordered by `id`.
    fn list(&self) -> impl Future<Output = Result<Vec<Task>, TaskError>> + Send;

    /// One task by `task_id`.
    fn get(&self, task_id: &str) -> impl Future<Output = Result<Option<Task>, TaskError>> + Send;

    /// Inserts tasks in order, in one transaction, giving each `max(id) + 1`; returns their ids.
    /// [`TaskError::AlreadyExists`] (and nothing inserted) if a `task_id` is taken.
    fn insert(
        &self,
        tasks: Vec<NewTask>,
    ) -> impl Future<Output = Result<Vec<i64>, TaskError>> + Send;

    /// Runs `edit` on the task `task_id` with the row locked, then writes every column back and
    /// appends the event (stamped with the task's new `updated_at`), all in one transaction.
    /// [`TaskError::NotFound`] if there is no such task; the edit's own error if it refuses.
    fn modify(
        &self,
        task_id: &str,
        edit: Edit,
    ) -> impl Future<Output = Result<Task, TaskError>> + Send;
}
