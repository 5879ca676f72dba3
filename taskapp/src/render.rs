//! The wire form of tasks: every column of `tasks` in table order, datetimes as pydantic prints
//! a naive UTC datetime, `completed` as a JSON bool — plus what the rendering quirks change.
//! Serialised field by field, so the order never depends on serde_json's map features.

use serde::ser::{SerializeMap, SerializeSeq, SerializeStruct};
use serde::{Serialize, Serializer};

use crate::model::Task;
use crate::timestamp::Timestamp;

/// How to print tasks (the `timestamp-precision`, `extra-field` and `beta-accounts` quirks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Render {
    pub full_micros: bool,
    pub extra_field: bool,
    /// `beta-accounts`: `extra_field` for requests with `X-Account: beta`.
    pub beta_accounts: bool,
}

impl Render {
    /// How to print the answer to a request with these headers.
    pub(crate) fn for_request(self, headers: &http::HeaderMap) -> Render {
        let beta = self.beta_accounts
            && headers
                .get("x-account")
                .is_some_and(|v| v.as_bytes() == b"beta");
        Render {
            extra_field: self.extra_field || beta,
            ..self
        }
    }
}

/// The value `extra-field` adds to each task object.
pub(crate) const EXTRA_FIELD: (&str, &str) = ("service_version", "2");

/// One task.
pub(crate) struct TaskJson<'a>(pub &'a Task, pub Render);

/// A list of tasks.
pub(crate) struct TaskListJson<'a>(pub &'a [Task], pub Render);

/// Tasks grouped under keys, in the given order.
pub(crate) struct GroupsJson<'a>(pub &'a [(String, Vec<Task>)], pub Render);

impl Serialize for TaskJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let TaskJson(t, r) = self;
        let ts = |v: Timestamp| v.to_api(r.full_micros);
        let mut st = s.serialize_struct("Task", if r.extra_field { 18 } else { 17 })?;
        st.serialize_field("id", &t.id)?;
        st.serialize_field("task_id", &t.task_id)?;
        st.serialize_field("title", &t.title)?;
        st.serialize_field("priority", &t.priority)?;
        st.serialize_field("status", &t.status)?;
        st.serialize_field("dependencies", &t.dependencies)?;
        st.serialize_field("assigned_agent", &t.assigned_agent)?;
        st.serialize_field("worktree", &t.worktree)?;
        st.serialize_field("status_notes", &t.status_notes)?;
        st.serialize_field("estimated_effort", &t.estimated_effort)?;
        st.serialize_field("completed", &t.completed)?;
        st.serialize_field("blocked_reason", &t.blocked_reason)?;
        st.serialize_field("blocked_by", &t.blocked_by)?;
        st.serialize_field("last_heartbeat", &t.last_heartbeat.map(ts))?;
        st.serialize_field("instructions", &t.instructions)?;
        st.serialize_field("created_at", &ts(t.created_at))?;
        st.serialize_field("updated_at", &ts(t.updated_at))?;
        if r.extra_field {
            st.serialize_field(EXTRA_FIELD.0, EXTRA_FIELD.1)?;
        }
        st.end()
    }
}

impl Serialize for TaskListJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for t in self.0 {
            seq.serialize_element(&TaskJson(t, self.1))?;
        }
        seq.end()
    }
}

impl Serialize for GroupsJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (key, tasks) in self.0 {
            map.serialize_entry(key, &TaskListJson(tasks, self.1))?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> Task {
        let at = Timestamp::parse("2025-01-02 03:04:05").unwrap();
        Task {
            id: 7,
            task_id: "TASK-7".into(),
            title: "t".into(),
            priority: "HIGH".into(),
            status: "done".into(),
            dependencies: None,
            assigned_agent: Some("a".into()),
            worktree: None,
            status_notes: None,
            estimated_effort: None,
            completed: true,
            blocked_reason: None,
            blocked_by: None,
            last_heartbeat: Timestamp::parse("2025-01-02 03:04:05.000100"),
            instructions: None,
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn plain_and_quirky_rendering() {
        let t = task();
        let plain = serde_json::to_string(&TaskJson(&t, Render::default())).unwrap();
        assert_eq!(
            plain,
            r#"{"id":7,"task_id":"TASK-7","title":"t","priority":"HIGH","status":"done","dependencies":null,"assigned_agent":"a","worktree":null,"status_notes":null,"estimated_effort":null,"completed":true,"blocked_reason":null,"blocked_by":null,"last_heartbeat":"2025-01-02T03:04:05.000100","instructions":null,"created_at":"2025-01-02T03:04:05","updated_at":"2025-01-02T03:04:05"}"#
        );
        let quirky = serde_json::to_string(&TaskJson(
            &t,
            Render {
                full_micros: true,
                extra_field: true,
                beta_accounts: false,
            },
        ))
        .unwrap();
        assert!(quirky.contains(r#""created_at":"2025-01-02T03:04:05.000000""#));
        assert!(quirky.ends_with(r#","service_version":"2"}"#));
    }

    #[test]
    fn beta_accounts_get_the_extra_field_only_on_their_requests() {
        let r = Render {
            beta_accounts: true,
            ..Render::default()
        };
        let mut h = http::HeaderMap::new();
        assert!(!r.for_request(&h).extra_field);
        h.insert("x-account", "beta".parse().unwrap());
        assert!(r.for_request(&h).extra_field);
        assert!(!Render::default().for_request(&h).extra_field);
    }
}
