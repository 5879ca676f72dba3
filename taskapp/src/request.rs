//! Request bodies: the JSON of each write endpoint parsed into a typed request. A refusal is a
//! 422 whose detail names the field (`title: field required`) or, for bad JSON, quotes the
//! parser with its line and column. Unknown fields are ignored, as pydantic does.

use serde_json::{Map, Value};

use crate::error::TaskError;
use crate::model::{Priority, Status};

/// `POST /api/tasks/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CreateTask {
    pub task_id: String,
    pub title: String,
    pub priority: Priority,
    pub dependencies: Option<String>,
    pub estimated_effort: Option<String>,
    pub instructions: Option<String>,
}

/// `POST .../claim`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claim {
    pub agent_name: String,
    pub worktree: Option<String>,
}

/// `POST .../heartbeat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Heartbeat {
    pub agent_name: String,
}

/// `POST .../update-notes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UpdateNotes {
    pub notes: String,
    pub agent_name: Option<String>,
}

/// `POST .../set-status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SetStatus {
    pub status: Status,
    pub blocked_reason: Option<String>,
    pub blocked_by: Option<String>,
}

/// A request body type.
pub(crate) trait FromBody: Sized {
    /// Reads the fields; problems are recorded in `f`, and the value is then discarded.
    fn read(f: &mut Fields<'_>) -> Self;
}

/// Parses a JSON object body into `T`.
pub(crate) fn parse<T: FromBody>(body: &[u8]) -> Result<T, TaskError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(TaskError::Invalid(
            "request body is required: a JSON object".into(),
        ));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| TaskError::Invalid(format!("invalid JSON in request body: {e}")))?;
    let Value::Object(map) = value else {
        return Err(TaskError::Invalid(format!(
            "request body must be a JSON object, got {}",
            kind(&value)
        )));
    };
    let mut fields = Fields {
        map: &map,
        errors: Vec::new(),
    };
    let parsed = T::read(&mut fields);
    if fields.errors.is_empty() {
        Ok(parsed)
    } else {
        Err(TaskError::Invalid(fields.errors.join("; ")))
    }
}

/// The fields of a body object, and the problems found reading them.
pub(crate) struct Fields<'a> {
    map: &'a Map<String, Value>,
    errors: Vec<String>,
}

impl Fields<'_> {
    /// A string that must be present, not null and not blank.
    fn required(&mut self, name: &str) -> String {
        match self.map.get(name) {
            None | Some(Value::Null) => {
                self.errors.push(format!("{name}: field required"));
                String::new()
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                self.errors.push(format!("{name}: must not be empty"));
                String::new()
            }
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                self.wrong_type(name, "a string", other);
                String::new()
            }
        }
    }

    /// A string that may be absent or null.
    fn optional(&mut self, name: &str) -> Option<String> {
        match self.map.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                self.wrong_type(name, "a string", other);
                None
            }
        }
    }

    /// A comma-separated list given as a string or an array of strings; normalised to
    /// `A,B,C`, or `None` when empty.
    fn id_list(&mut self, name: &str) -> Option<String> {
        let items: Vec<String> = match self.map.get(name) {
            None | Some(Value::Null) => return None,
            Some(Value::String(s)) => s.split(',').map(|p| p.trim().to_string()).collect(),
            Some(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Value::String(s) => out.push(s.trim().to_string()),
                        other => {
                            self.wrong_type(name, "a string or a list of strings", other);
                            return None;
                        }
                    }
                }
                out
            }
            Some(other) => {
                self.wrong_type(name, "a string or a list of strings", other);
                return None;
            }
        };
        let items: Vec<String> = items.into_iter().filter(|s| !s.is_empty()).collect();
        (!items.is_empty()).then(|| items.join(","))
    }

    fn wrong_type(&mut self, name: &str, want: &str, got: &Value) {
        self.errors
            .push(format!("{name}: must be {want}, got {}", kind(got)));
    }

    fn invalid(&mut self, name: &str, why: impl std::fmt::Display) {
        self.errors.push(format!("{name}: {why}"));
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl FromBody for CreateTask {
    fn read(f: &mut Fields<'_>) -> CreateTask {
        let task_id = f.required("task_id");
        if task_id.contains(|c: char| c == '/' || c.is_whitespace()) {
            f.invalid("task_id", "must not contain '/' or whitespace");
        }
        let title = f.required("title");
        let priority = match f.optional("priority") {
            None => Priority::Medium,
            Some(p) => p.parse().unwrap_or_else(|e| {
                f.invalid("priority", e);
                Priority::Medium
            }),
        };
        CreateTask {
            task_id,
            title,
            priority,
            dependencies: f.id_list("dependencies"),
            estimated_effort: f.optional("estimated_effort"),
            instructions: f.optional("instructions"),
        }
    }
}

impl FromBody for Claim {
    fn read(f: &mut Fields<'_>) -> Claim {
        Claim {
            agent_name: f.required("agent_name"),
            worktree: f.optional("worktree"),
        }
    }
}

impl FromBody for Heartbeat {
    fn read(f: &mut Fields<'_>) -> Heartbeat {
        Heartbeat {
            agent_name: f.required("agent_name"),
        }
    }
}

impl FromBody for UpdateNotes {
    fn read(f: &mut Fields<'_>) -> UpdateNotes {
        UpdateNotes {
            notes: f.required("notes"),
            agent_name: f.optional("agent_name"),
        }
    }
}

impl FromBody for SetStatus {
    fn read(f: &mut Fields<'_>) -> SetStatus {
        let status = match f.map.get("status") {
            Some(Value::String(s)) => s.parse().unwrap_or_else(|e| {
                f.invalid("status", e);
                Status::Pending
            }),
            _ => {
                // Reports missing / wrong type.
                f.required("status");
                Status::Pending
            }
        };
        let blocked_reason = f.optional("blocked_reason");
        let blocked_by = f.optional("blocked_by");
        if status == Status::Blocked
            && blocked_reason
                .as_deref()
                .is_none_or(|r| r.trim().is_empty())
        {
            f.invalid("blocked_reason", "required when status is blocked");
        }
        SetStatus {
            status,
            blocked_reason,
            blocked_by,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail<T: FromBody + std::fmt::Debug>(body: &str) -> String {
        match parse::<T>(body.as_bytes()) {
            Err(TaskError::Invalid(d)) => d,
            other => panic!("expected 422, got {other:?}"),
        }
    }

    #[test]
    fn create_names_each_bad_field() {
        assert_eq!(
            detail::<CreateTask>(r#"{"task_id": "T-1"}"#),
            "title: field required"
        );
        assert_eq!(
            detail::<CreateTask>(r#"{"task_id": 5, "title": "", "priority": "URGENT"}"#),
            "task_id: must be a string, got a number; title: must not be empty; \
             priority: must be one of HIGH, MEDIUM, LOW (got \"URGENT\")"
        );
        assert_eq!(
            detail::<CreateTask>(r#"{"task_id": "a b", "title": "x"}"#),
            "task_id: must not contain '/' or whitespace"
        );
    }

    #[test]
    fn create_defaults_and_normalises_dependencies() {
        let c: CreateTask =
            parse(br#"{"task_id":"T-1","title":"x","dependencies":[" T-2","","T-3"]}"#).unwrap();
        assert_eq!(c.priority, Priority::Medium);
        assert_eq!(c.dependencies.as_deref(), Some("T-2,T-3"));
        let c: CreateTask =
            parse(br#"{"task_id":"T-1","title":"x","dependencies":" , "}"#).unwrap();
        assert_eq!(c.dependencies, None);
    }

    #[test]
    fn malformed_bodies() {
        assert_eq!(
            detail::<Claim>(r#"{"agent_name": "#),
            "invalid JSON in request body: EOF while parsing a value at line 1 column 15"
        );
        assert_eq!(
            detail::<Claim>(""),
            "request body is required: a JSON object"
        );
        assert_eq!(
            detail::<Claim>("[1]"),
            "request body must be a JSON object, got an array"
        );
    }

    #[test]
    fn set_status_rules() {
        assert_eq!(
            detail::<SetStatus>(r#"{"status": "bogus"}"#),
            "status: must be one of pending, in_progress, blocked, in_review, done (got \"bogus\")"
        );
        assert_eq!(
            detail::<SetStatus>(r#"{"status": "blocked"}"#),
            "blocked_reason: required when status is blocked"
        );
        assert_eq!(detail::<SetStatus>("{}"), "status: field required");
        let s: SetStatus = parse(br#"{"status":"done","extra":1}"#).unwrap();
        assert_eq!(s.status, Status::Done);
    }
}
