//! The business rules of the Task API, shared by both sides: what `ready` means and how it is
//! ordered, how tasks are grouped for the coordinator, and what each write may do to a task
//! (claim, heartbeat, notes, status, unclaim). Stores only persist what these rules decide.
//!
//! Each write reads the [`Clock`] exactly once, before touching the store, so two sides given
//! equal clocks and the same calls produce equal timestamps. A write given a request time (the
//! `X-Ficus-Request-Time` header a dual-writing proxy stamps once and sends to both sides)
//! uses it instead and does not read the clock, so both sides store identical timestamps.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};

use serde_json::json;

use crate::error::TaskError;
use crate::model::{Event, NewTask, Priority, Status, Task};
use crate::quirk::Quirks;
use crate::request::{Claim, CreateTask, Heartbeat, SetStatus, UpdateNotes};
use crate::store::Store;
use crate::timestamp::{Clock, Timestamp};

/// The Task API over one store.
pub(crate) struct Service<S> {
    store: S,
    clock: Clock,
    quirks: Quirks,
}

impl<S: Store> Service<S> {
    pub(crate) fn new(store: S, clock: Clock, quirks: Quirks) -> Service<S> {
        Service {
            store,
            clock,
            quirks,
        }
    }

    /// Every task, by id.
    pub(crate) async fn list(&self) -> Result<Vec<Task>, TaskError> {
        self.store.list().await
    }

    /// Pending tasks whose dependencies all exist and are done; HIGH > MEDIUM > LOW (unknown
    /// priorities last), then `task_id` (or `id` descending with the `ready-order` quirk).
    pub(crate) async fn ready(&self) -> Result<Vec<Task>, TaskError> {
        let tasks = self.store.list().await?;
        Ok(ready(tasks, self.quirks.ready_by_id_desc))
    }

    /// Tasks grouped by status: the five known statuses always (possibly empty), in workflow
    /// order, then any other status found in the data, by name. Each group by id.
    pub(crate) async fn coordinator_data(&self) -> Result<Vec<(String, Vec<Task>)>, TaskError> {
        let tasks = self.store.list().await?;
        Ok(group_by_status(tasks))
    }

    /// One task.
    pub(crate) async fn get(&self, task_id: &str) -> Result<Task, TaskError> {
        self.store
            .get(task_id)
            .await?
            .ok_or_else(|| TaskError::NotFound(task_id.to_string()))
    }

    /// `at` (the request's time), else the clock.
    fn now(&self, at: Option<Timestamp>) -> Timestamp {
        at.unwrap_or_else(|| self.clock.now())
    }

    /// Edit one task at the request's time (`at`, else the clock): `f` changes the task and
    /// says which event to append; `updated_at` is set to that time when `f` succeeds.
    async fn edit(
        &self,
        task_id: &str,
        at: Option<Timestamp>,
        f: impl FnOnce(&mut Task, Timestamp) -> Result<Event, TaskError> + Send + 'static,
    ) -> Result<Task, TaskError> {
        let now = self.now(at);
        self.store
            .modify(
                task_id,
                Box::new(move |t: &mut Task| {
                    let event = f(t, now)?;
                    t.updated_at = now;
                    Ok(event)
                }),
            )
            .await
    }

    /// A new pending task.
    pub(crate) async fn create(
        &self,
        req: CreateTask,
        at: Option<Timestamp>,
    ) -> Result<Task, TaskError> {
        let now = self.now(at);
        let new = NewTask {
            task_id: req.task_id,
            title: req.title,
            priority: req.priority.as_str().to_string(),
            status: Status::Pending.as_str().to_string(),
            dependencies: req.dependencies,
            assigned_agent: None,
            worktree: None,
            status_notes: None,
            estimated_effort: req.estimated_effort,
            completed: false,
            blocked_reason: None,
            blocked_by: None,
            last_heartbeat: None,
            instructions: req.instructions,
            created_at: now,
            updated_at: now,
        };
        let ids = self.store.insert(vec![new.clone()]).await?;
        let id = ids
            .first()
            .copied()
            .ok_or_else(|| TaskError::Store("insert returned no id".into()))?;
        Ok(new.into_task(id))
    }

    /// Claim for an agent: only a pending task, or one this agent already holds (409 otherwise).
    pub(crate) async fn claim(
        &self,
        task_id: &str,
        req: Claim,
        at: Option<Timestamp>,
    ) -> Result<Task, TaskError> {
        self.edit(task_id, at, move |t: &mut Task, now| {
            let mine = t.assigned_agent.as_deref() == Some(req.agent_name.as_str());
            if t.status != Status::Pending.as_str() && !mine {
                return Err(TaskError::Conflict(match &t.assigned_agent {
                    Some(other) => {
                        format!("Task {} is already claimed by {other}", t.task_id)
                    }
                    None => format!(
                        "Task {} cannot be claimed: status is {}",
                        t.task_id, t.status
                    ),
                }));
            }
            t.status = Status::InProgress.as_str().to_string();
            t.completed = false;
            t.assigned_agent = Some(req.agent_name.clone());
            if let Some(w) = req.worktree {
                t.worktree = Some(w);
            }
            t.last_heartbeat = Some(now);
            Ok(Event {
                kind: "claimed",
                agent: Some(req.agent_name),
                payload: json!({ "worktree": t.worktree }),
            })
        })
        .await
    }

    /// Heartbeat from the assigned agent (403 for anyone else).
    pub(crate) async fn heartbeat(
        &self,
        task_id: &str,
        req: Heartbeat,
        at: Option<Timestamp>,
    ) -> Result<Task, TaskError> {
        self.edit(task_id, at, move |t: &mut Task, now| {
            if t.assigned_agent.as_deref() != Some(req.agent_name.as_str()) {
                return Err(TaskError::Forbidden(format!(
                    "Task {} is not assigned to {}",
                    t.task_id, req.agent_name
                )));
            }
            t.last_heartbeat = Some(now);
            Ok(Event {
                kind: "heartbeat",
                agent: Some(req.agent_name),
                payload: json!({}),
            })
        })
        .await
    }

    /// Appends `[YYYY-MM-DD HH:MM:SS.ffffff] notes` as a new line of `status_notes`.
    pub(crate) async fn update_notes(
        &self,
        task_id: &str,
        req: UpdateNotes,
        at: Option<Timestamp>,
    ) -> Result<Task, TaskError> {
        self.edit(task_id, at, move |t: &mut Task, now| {
            let line = format!("[{}] {}", now.to_sqlite(), req.notes);
            t.status_notes = Some(match t.status_notes.take() {
                Some(old) if !old.is_empty() => format!("{old}\n{line}"),
                _ => line,
            });
            Ok(Event {
                kind: "notes",
                agent: req.agent_name.or_else(|| t.assigned_agent.clone()),
                payload: json!({ "notes": req.notes }),
            })
        })
        .await
    }

    /// Moves a task to a status. `blocked` records the reason (and blocker); leaving `blocked`
    /// clears them; `completed` is true exactly when the status is `done`.
    pub(crate) async fn set_status(
        &self,
        task_id: &str,
        req: SetStatus,
        at: Option<Timestamp>,
    ) -> Result<Task, TaskError> {
        self.edit(task_id, at, move |t: &mut Task, _now| {
            let from = std::mem::replace(&mut t.status, req.status.as_str().to_string());
            t.completed = req.status == Status::Done;
            if req.status == Status::Blocked {
                t.blocked_reason = req.blocked_reason.clone();
                t.blocked_by = req.blocked_by.clone();
            } else {
                t.blocked_reason = None;
                t.blocked_by = None;
            }
            Ok(Event {
                kind: "status",
                agent: t.assigned_agent.clone(),
                payload: json!({
                    "from": from,
                    "to": req.status.as_str(),
                    "blocked_reason": req.blocked_reason,
                }),
            })
        })
        .await
    }

    /// Releases a task back to pending, clearing its agent and worktree.
    pub(crate) async fn unclaim(
        &self,
        task_id: &str,
        at: Option<Timestamp>,
    ) -> Result<Task, TaskError> {
        self.edit(task_id, at, move |t: &mut Task, _now| {
            let from = std::mem::replace(&mut t.status, Status::Pending.as_str().into());
            let agent = t.assigned_agent.take();
            t.worktree = None;
            t.completed = false;
            Ok(Event {
                kind: "unclaimed",
                agent,
                payload: json!({ "from": from }),
            })
        })
        .await
    }
}

fn ready(tasks: Vec<Task>, by_id_desc: bool) -> Vec<Task> {
    let status: HashMap<&str, &str> = tasks
        .iter()
        .map(|t| (t.task_id.as_str(), t.status.as_str()))
        .collect();
    let done = Status::Done.as_str();
    let keep: Vec<bool> = tasks
        .iter()
        .map(|t| {
            t.status == Status::Pending.as_str()
                && t.dependency_ids().all(|d| status.get(d) == Some(&done))
        })
        .collect();
    let mut ready: Vec<Task> = tasks
        .into_iter()
        .zip(keep)
        .filter_map(|(t, k)| k.then_some(t))
        .collect();
    if by_id_desc {
        ready.sort_by_key(|t| (Priority::rank(&t.priority), Reverse(t.id)));
    } else {
        ready.sort_by(|a, b| {
            (Priority::rank(&a.priority), &a.task_id)
                .cmp(&(Priority::rank(&b.priority), &b.task_id))
        });
    }
    ready
}

fn group_by_status(tasks: Vec<Task>) -> Vec<(String, Vec<Task>)> {
    let mut known: Vec<(String, Vec<Task>)> = Status::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), Vec::new()))
        .collect();
    let mut other: BTreeMap<String, Vec<Task>> = BTreeMap::new();
    // `tasks` is ordered by id, and pushing keeps that order within each group.
    for t in tasks {
        match known.iter_mut().find(|(s, _)| *s == t.status) {
            Some((_, group)) => group.push(t),
            None => other.entry(t.status.clone()).or_default().push(t),
        }
    }
    known.extend(other);
    known
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timestamp::Timestamp;

    fn task(id: i64, task_id: &str, prio: &str, status: &str, deps: Option<&str>) -> Task {
        let at = Timestamp::parse("2025-01-01 00:00:00").unwrap();
        NewTask {
            task_id: task_id.into(),
            title: "t".into(),
            priority: prio.into(),
            status: status.into(),
            dependencies: deps.map(Into::into),
            assigned_agent: None,
            worktree: None,
            status_notes: None,
            estimated_effort: None,
            completed: status == "done",
            blocked_reason: None,
            blocked_by: None,
            last_heartbeat: None,
            instructions: None,
            created_at: at,
            updated_at: at,
        }
        .into_task(id)
    }

    fn ids(tasks: &[Task]) -> Vec<&str> {
        tasks.iter().map(|t| t.task_id.as_str()).collect()
    }

    #[test]
    fn ready_needs_every_dependency_done_and_existing() {
        let tasks = vec![
            task(1, "T-1", "LOW", "done", None),
            task(2, "T-2", "LOW", "pending", Some("T-1")),
            task(3, "T-3", "LOW", "pending", Some("T-1, T-4")),
            task(4, "T-4", "LOW", "in_progress", None),
            task(5, "T-5", "LOW", "pending", Some("T-404")),
            task(6, "T-6", "LOW", "blocked", None),
            task(7, "T-7", "LOW", "pending", Some(" , ")),
        ];
        assert_eq!(ids(&ready(tasks, false)), ["T-2", "T-7"]);
    }

    #[test]
    fn ready_order_and_its_quirk() {
        let tasks = vec![
            task(1, "T-a", "LOW", "pending", None),
            task(2, "T-b", "LOW", "pending", None),
            task(3, "T-c", "HIGH", "pending", None),
            task(4, "T-d", "weird", "pending", None),
            task(5, "T-e", "MEDIUM", "pending", None),
            task(6, "T-f", "HIGH", "pending", None),
        ];
        assert_eq!(
            ids(&ready(tasks.clone(), false)),
            ["T-c", "T-f", "T-e", "T-a", "T-b", "T-d"]
        );
        assert_eq!(
            ids(&ready(tasks, true)),
            ["T-f", "T-c", "T-e", "T-b", "T-a", "T-d"]
        );
    }

    #[test]
    fn groups_have_every_status_then_unknown_ones() {
        let tasks = vec![
            task(1, "T-1", "LOW", "done", None),
            task(2, "T-2", "LOW", "zombie", None),
            task(3, "T-3", "LOW", "done", None),
            task(4, "T-4", "LOW", "archived", None),
        ];
        let groups = group_by_status(tasks);
        let keys: Vec<&str> = groups.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "pending",
                "in_progress",
                "blocked",
                "in_review",
                "done",
                "archived",
                "zombie"
            ]
        );
        assert_eq!(ids(&groups[4].1), ["T-1", "T-3"]);
    }
}
