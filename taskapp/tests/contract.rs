//! The contract suite: one script of calls — every endpoint, success and error cases — run
//! over real HTTP against the legacy side (SQLite) and the new side (PostgreSQL), seeded with
//! the same data. Without quirks the two must answer byte for byte the same; with a quirk on
//! one side they must differ by exactly what that quirk does.
//!
//! Timestamps: rather than normalising the timestamps generated at request time, both sides
//! get an injected deterministic clock (same start, same step; see `testkit::apps::test_clock`), and
//! the service reads it exactly once per write. Exact comparison then also covers the request-
//! time values — how each store round-trips them (truncation, time zones, the microsecond
//! rule) and the `[timestamp] notes` text — which normalising would hide. The system clock is
//! exercised separately (`startup.rs`).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{pair, test_clock, Http, Pair, Resp};
use ficus_taskapp::{seed_tasks, NewTask, Options, Quirk};
use serde_json::{json, Value};

const SEED_TASKS: usize = 60;
const SEED: u64 = 11;

/// Both sides seeded with `tasks`, each on its own [`test_clock`], with these quirks.
async fn start_pair(
    name: &str,
    tasks: &[NewTask],
    legacy_quirks: Vec<Quirk>,
    new_quirks: Vec<Quirk>,
) -> Pair {
    let options = |quirks| Options {
        quirks,
        clock: test_clock(),
    };
    pair(name)
        .tasks(tasks)
        .legacy(options(legacy_quirks))
        .new_side(options(new_quirks))
        .start()
        .await
}

/// One call of the script.
struct Step {
    name: String,
    method: &'static str,
    path: String,
    body: Option<String>,
    expect: u16,
}

fn step(name: &str, method: &'static str, path: &str, body: Option<&str>, expect: u16) -> Step {
    Step {
        name: name.to_string(),
        method,
        path: path.to_string(),
        body: body.map(str::to_string),
        expect,
    }
}

fn first_with(tasks: &[NewTask], pred: impl Fn(&NewTask) -> bool) -> &NewTask {
    tasks
        .iter()
        .find(|t| pred(t))
        .expect("seed has such a task")
}

/// The script, over the seeded tasks.
fn script(tasks: &[NewTask]) -> Vec<Step> {
    let pending = &first_with(tasks, |t| t.status == "pending").task_id;
    let busy = first_with(tasks, |t| t.status == "in_progress");
    let busy_agent = busy.assigned_agent.as_deref().unwrap();
    let busy = &busy.task_id;
    let done = &first_with(tasks, |t| t.status == "done").task_id;
    let t = |id: &str, action: &str| format!("/api/tasks/{id}/{action}");
    vec![
        // Reads of the seeded data.
        step("list", "GET", "/api/tasks/", None, 200),
        step("list without slash", "GET", "/api/tasks", None, 200),
        step("ready", "GET", "/api/tasks/ready", None, 200),
        step(
            "coordinator",
            "GET",
            "/api/tasks/coordinator-data",
            None,
            200,
        ),
        step("get", "GET", "/api/tasks/TASK-101", None, 200),
        step("get encoded", "GET", "/api/tasks/TASK%2D101", None, 200),
        step("get missing", "GET", "/api/tasks/TASK-404", None, 404),
        // Create.
        step(
            "create NEW-1",
            "POST",
            "/api/tasks/",
            Some(
                r#"{"task_id": "NEW-1", "title": "First new task", "priority": "HIGH",
                     "dependencies": "NEW-2", "estimated_effort": "2h",
                     "instructions": "do it", "ignored": true}"#,
            ),
            201,
        ),
        step(
            "create NEW-2",
            "POST",
            "/api/tasks/",
            Some(r#"{"task_id": "NEW-2", "title": "Second", "priority": "HIGH"}"#),
            201,
        ),
        step(
            "create NEW-3",
            "POST",
            "/api/tasks/",
            Some(r#"{"task_id": "NEW-3", "title": "Third", "dependencies": ["NEW-404"]}"#),
            201,
        ),
        step(
            "create duplicate",
            "POST",
            "/api/tasks/",
            Some(r#"{"task_id": "NEW-1", "title": "again"}"#),
            409,
        ),
        step(
            "create seeded duplicate",
            "POST",
            "/api/tasks/",
            Some(r#"{"task_id": "TASK-101", "title": "again"}"#),
            409,
        ),
        step(
            "create missing title",
            "POST",
            "/api/tasks/",
            Some(r#"{"task_id": "NEW-9"}"#),
            422,
        ),
        step(
            "create bad priority",
            "POST",
            "/api/tasks/",
            Some(r#"{"task_id": "NEW-9", "title": "x", "priority": "URGENT"}"#),
            422,
        ),
        step(
            "create title not a string",
            "POST",
            "/api/tasks/",
            Some(r#"{"task_id": "NEW-9", "title": 7}"#),
            422,
        ),
        step(
            "create malformed",
            "POST",
            "/api/tasks/",
            Some("{\"task_id\": \"NEW-9\",\n \"title\": }"),
            422,
        ),
        step("create array", "POST", "/api/tasks/", Some("[]"), 422),
        step("create empty body", "POST", "/api/tasks/", None, 422),
        step("ready after create", "GET", "/api/tasks/ready", None, 200),
        // Claim, heartbeat, notes, status on a new task.
        step(
            "claim alice",
            "POST",
            &t("NEW-2", "claim"),
            Some(r#"{"agent_name": "alice", "worktree": "wt/alice"}"#),
            200,
        ),
        step(
            "claim bob conflicts",
            "POST",
            &t("NEW-2", "claim"),
            Some(r#"{"agent_name": "bob"}"#),
            409,
        ),
        step(
            "reclaim alice",
            "POST",
            &t("NEW-2", "claim"),
            Some(r#"{"agent_name": "alice"}"#),
            200,
        ),
        step(
            "heartbeat bob forbidden",
            "POST",
            &t("NEW-2", "heartbeat"),
            Some(r#"{"agent_name": "bob"}"#),
            403,
        ),
        step(
            "heartbeat alice",
            "POST",
            &t("NEW-2", "heartbeat"),
            Some(r#"{"agent_name": "alice"}"#),
            200,
        ),
        step(
            "notes 1",
            "POST",
            &t("NEW-2", "update-notes"),
            Some(r#"{"notes": "started"}"#),
            200,
        ),
        step(
            "notes 2",
            "POST",
            &t("NEW-2", "update-notes"),
            Some(r#"{"notes": "half way", "agent_name": "alice"}"#),
            200,
        ),
        step(
            "notes missing",
            "POST",
            &t("NEW-2", "update-notes"),
            Some("{}"),
            422,
        ),
        step(
            "status bogus",
            "POST",
            &t("NEW-2", "set-status"),
            Some(r#"{"status": "bogus"}"#),
            422,
        ),
        step(
            "status blocked without reason",
            "POST",
            &t("NEW-2", "set-status"),
            Some(r#"{"status": "blocked"}"#),
            422,
        ),
        step(
            "status blocked",
            "POST",
            &t("NEW-2", "set-status"),
            Some(r#"{"status": "blocked", "blocked_reason": "waiting", "blocked_by": "NEW-3"}"#),
            200,
        ),
        step(
            "status in_review",
            "POST",
            &t("NEW-2", "set-status"),
            Some(r#"{"status": "in_review"}"#),
            200,
        ),
        step(
            "status done",
            "POST",
            &t("NEW-2", "set-status"),
            Some(r#"{"status": "done"}"#),
            200,
        ),
        step("ready after done", "GET", "/api/tasks/ready", None, 200),
        step(
            "claim carol",
            "POST",
            &t("NEW-1", "claim"),
            Some(r#"{"agent_name": "carol"}"#),
            200,
        ),
        step("unclaim", "POST", &t("NEW-1", "unclaim"), None, 200),
        step(
            "unclaim again",
            "POST",
            &t("NEW-1", "unclaim"),
            Some("ignored"),
            200,
        ),
        // Seeded tasks.
        step(
            "claim busy seeded",
            "POST",
            &t(busy, "claim"),
            Some(r#"{"agent_name": "mallory"}"#),
            409,
        ),
        step(
            "heartbeat seeded",
            "POST",
            &t(busy, "heartbeat"),
            Some(&format!(r#"{{"agent_name": "{busy_agent}"}}"#)),
            200,
        ),
        step(
            "claim done seeded",
            "POST",
            &t(done, "claim"),
            Some(r#"{"agent_name": "zed"}"#),
            409,
        ),
        step(
            "claim pending seeded",
            "POST",
            &t(pending, "claim"),
            Some(r#"{"agent_name": "dave"}"#),
            200,
        ),
        step(
            "claim malformed",
            "POST",
            &t(pending, "claim"),
            Some(r#"{"agent_name": "#),
            422,
        ),
        step(
            "claim no agent",
            "POST",
            &t(pending, "claim"),
            Some("{}"),
            422,
        ),
        step(
            "claim agent not a string",
            "POST",
            &t(pending, "claim"),
            Some(r#"{"agent_name": 5}"#),
            422,
        ),
        step(
            "heartbeat malformed",
            "POST",
            &t(pending, "heartbeat"),
            Some("not json"),
            422,
        ),
        // Unknown task on every write.
        step(
            "claim missing",
            "POST",
            &t("TASK-404", "claim"),
            Some(r#"{"agent_name": "x"}"#),
            404,
        ),
        step(
            "heartbeat missing",
            "POST",
            &t("TASK-404", "heartbeat"),
            Some(r#"{"agent_name": "x"}"#),
            404,
        ),
        step(
            "notes missing task",
            "POST",
            &t("TASK-404", "update-notes"),
            Some(r#"{"notes": "x"}"#),
            404,
        ),
        step(
            "status missing task",
            "POST",
            &t("TASK-404", "set-status"),
            Some(r#"{"status": "done"}"#),
            404,
        ),
        step(
            "bad status missing task",
            "POST",
            &t("TASK-404", "set-status"),
            Some(r#"{"status": "bogus"}"#),
            422,
        ),
        step(
            "unclaim missing",
            "POST",
            &t("TASK-404", "unclaim"),
            None,
            404,
        ),
        // Unknown paths and wrong methods.
        step("unknown path", "GET", "/api/nope", None, 404),
        step("unknown action", "POST", &t("NEW-1", "bogus"), None, 404),
        step("trailing slash", "GET", "/api/tasks/NEW-1/", None, 404),
        step("GET on action", "GET", &t("NEW-1", "claim"), None, 405),
        step("DELETE task", "DELETE", "/api/tasks/NEW-1", None, 405),
        step("PUT collection", "PUT", "/api/tasks/", None, 405),
        step("POST ready", "POST", "/api/tasks/ready", Some("{}"), 405),
        // Final state.
        step("list at end", "GET", "/api/tasks/", None, 200),
        step(
            "coordinator at end",
            "GET",
            "/api/tasks/coordinator-data",
            None,
            200,
        ),
        step("ready at end", "GET", "/api/tasks/ready", None, 200),
    ]
}

/// Runs the script against both sides, one step at a time on each.
async fn run_both(pair: &Pair, steps: &[Step]) -> (Vec<Resp>, Vec<Resp>) {
    let http = Http::new();
    let (legacy, new) = (pair.legacy.url(), pair.new.url());
    let mut out = (Vec::new(), Vec::new());
    for s in steps {
        let body = s.body.as_deref();
        out.0
            .push(http.call(&legacy, s.method, &s.path, body).await);
        out.1.push(http.call(&new, s.method, &s.path, body).await);
    }
    out
}

fn by_name<'a>(steps: &[Step], replies: &'a [Resp]) -> HashMap<String, &'a Resp> {
    steps
        .iter()
        .zip(replies)
        .map(|(s, r)| (s.name.clone(), r))
        .collect()
}

fn task_ids(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_id"].as_str().unwrap())
        .collect()
}

fn is_api_datetime(s: &str) -> bool {
    let plain = s.len() == 19 && s.as_bytes()[10] == b'T';
    let micro = s.len() == 26 && s.as_bytes()[19] == b'.' && !s.ends_with(".000000");
    (plain || micro) && ficus_taskapp::Timestamp::parse(s).is_some()
}

/// Behaviour checks on one side's replies: identical answers are only worth something if
/// they are also right.
fn check_semantics(steps: &[Step], replies: &[Resp], seeded: usize) {
    for (s, r) in steps.iter().zip(replies) {
        assert_eq!(
            r.status,
            s.expect,
            "step {:?}: status {} body {}",
            s.name,
            r.status,
            r.text()
        );
        assert_eq!(
            r.header("content-type"),
            "application/json",
            "step {:?}",
            s.name
        );
        let v = r.json();
        if r.status >= 400 {
            assert!(v["detail"].is_string(), "step {:?}: {}", s.name, r.text());
        }
    }
    let r = by_name(steps, replies);
    let detail = |name: &str| r[name].json()["detail"].as_str().unwrap().to_string();

    // Reads.
    let list = r["list"].json();
    assert_eq!(list.as_array().unwrap().len(), seeded);
    assert_eq!(r["list"].body, r["list without slash"].body);
    assert_eq!(r["get"].body, r["get encoded"].body);
    for t in list.as_array().unwrap() {
        assert!(t["completed"].is_boolean());
        for k in ["created_at", "updated_at"] {
            assert!(is_api_datetime(t[k].as_str().unwrap()), "{k}: {t}");
        }
    }
    assert_eq!(detail("get missing"), "Task TASK-404 not found");
    let groups = r["coordinator"].json();
    let keys: Vec<&String> = groups.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 5, "{keys:?}");
    let grouped: usize = groups
        .as_object()
        .unwrap()
        .iter()
        .map(|(status, tasks)| {
            for t in tasks.as_array().unwrap() {
                assert_eq!(t["status"], json!(status));
            }
            tasks.as_array().unwrap().len()
        })
        .sum();
    assert_eq!(grouped, seeded);
    // coordinator-data keys come in workflow order on the wire.
    let order: Vec<usize> = ["pending", "in_progress", "blocked", "in_review", "done"]
        .iter()
        .map(|k| r["coordinator"].text().find(&format!("\"{k}\":")).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");

    // Create.
    let created = r["create NEW-1"].json();
    assert_eq!(created["id"], json!(seeded + 1));
    assert_eq!(created["status"], "pending");
    assert_eq!(created["priority"], "HIGH");
    assert_eq!(created["completed"], false);
    assert_eq!(created["dependencies"], "NEW-2");
    assert_eq!(created["created_at"], created["updated_at"]);
    assert!(created.get("ignored").is_none());
    let third = r["create NEW-3"].json();
    assert_eq!(third["priority"], "MEDIUM");
    assert_eq!(third["dependencies"], "NEW-404");
    assert_eq!(detail("create duplicate"), "Task NEW-1 already exists");
    assert_eq!(detail("create missing title"), "title: field required");
    assert!(detail("create bad priority").starts_with("priority: must be one of HIGH"));
    assert_eq!(
        detail("create title not a string"),
        "title: must be a string, got a number"
    );
    assert_eq!(
        detail("create malformed"),
        "invalid JSON in request body: expected value at line 2 column 11"
    );
    assert!(detail("create array").contains("JSON object"));
    assert!(detail("create empty body").contains("required"));

    // Ready: NEW-2 (no deps) is ready; NEW-1 waits for NEW-2; NEW-3 on a task that does
    // not exist never is. Ordered by priority then task_id.
    let ready = r["ready after create"].json();
    let ids = task_ids(&ready);
    assert!(ids.contains(&"NEW-2") && !ids.contains(&"NEW-1") && !ids.contains(&"NEW-3"));
    let rank = |p: &str| {
        ["HIGH", "MEDIUM", "LOW"]
            .iter()
            .position(|x| *x == p)
            .unwrap()
    };
    let keys: Vec<(usize, &str)> = ready
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert_eq!(t["status"], "pending");
            (
                rank(t["priority"].as_str().unwrap()),
                t["task_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(keys.windows(2).all(|w| w[0] <= w[1]), "{keys:?}");
    assert!(task_ids(&r["ready after done"].json()).contains(&"NEW-1"));

    // Claim and friends.
    let claimed = r["claim alice"].json();
    assert_eq!(claimed["status"], "in_progress");
    assert_eq!(claimed["assigned_agent"], "alice");
    assert_eq!(claimed["worktree"], "wt/alice");
    assert_eq!(claimed["last_heartbeat"], claimed["updated_at"]);
    assert_eq!(
        detail("claim bob conflicts"),
        "Task NEW-2 is already claimed by alice"
    );
    assert_eq!(r["reclaim alice"].json()["worktree"], "wt/alice");
    assert_eq!(
        detail("heartbeat bob forbidden"),
        "Task NEW-2 is not assigned to bob"
    );
    let beat = r["heartbeat alice"].json();
    assert_ne!(beat["last_heartbeat"], claimed["last_heartbeat"]);
    let notes = r["notes 2"].json()["status_notes"]
        .as_str()
        .unwrap()
        .to_string();
    let lines: Vec<&str> = notes.lines().collect();
    assert_eq!(lines.len(), 2, "{notes}");
    for (line, text) in lines.iter().zip(["started", "half way"]) {
        // [YYYY-MM-DD HH:MM:SS.ffffff] text
        assert_eq!(&line[28..], format!(" {text}"), "{line}");
        assert!(
            ficus_taskapp::Timestamp::parse(&line[1..27]).is_some(),
            "{line}"
        );
    }
    assert_eq!(detail("notes missing"), "notes: field required");
    assert!(detail("status bogus").starts_with("status: must be one of pending"));
    assert_eq!(
        detail("status blocked without reason"),
        "blocked_reason: required when status is blocked"
    );
    let blocked = r["status blocked"].json();
    assert_eq!(blocked["blocked_reason"], "waiting");
    assert_eq!(blocked["blocked_by"], "NEW-3");
    let review = r["status in_review"].json();
    assert_eq!(review["blocked_reason"], Value::Null);
    assert_eq!(review["completed"], false);
    let done = r["status done"].json();
    assert_eq!(done["completed"], true);
    assert_eq!(done["status"], "done");
    let unclaimed = r["unclaim"].json();
    assert_eq!(unclaimed["status"], "pending");
    assert_eq!(unclaimed["assigned_agent"], Value::Null);
    assert_eq!(unclaimed["worktree"], Value::Null);
    assert!(detail("claim busy seeded").contains("is already claimed by agent-"));
    assert!(detail("claim malformed").contains("line 1 column 15"));
    assert_eq!(detail("claim no agent"), "agent_name: field required");
    assert!(detail("heartbeat malformed").contains("invalid JSON in request body"));
    assert_eq!(detail("claim missing"), "Task TASK-404 not found");
    assert_eq!(detail("unknown path"), "Not Found");
    assert_eq!(detail("GET on action"), "Method Not Allowed");
    assert_eq!(r["GET on action"].header_opt("allow"), Some("POST"));
    assert_eq!(r["DELETE task"].header_opt("allow"), Some("GET"));
    assert_eq!(r["PUT collection"].header_opt("allow"), Some("GET, POST"));
    assert_eq!(
        r["list at end"].json().as_array().unwrap().len(),
        seeded + 3
    );
}

/// `task_events` rows the script appended, the same way on both stores:
/// (task_id, kind, agent, payload, created_at).
type EventRow = (String, String, Option<String>, Value, String);

fn sqlite_events(path: &std::path::Path) -> Vec<EventRow> {
    testkit::sqlite::rows(
        path,
        "SELECT task_id, kind, agent, payload, created_at FROM task_events ORDER BY id",
        |r| {
            let payload: String = r.get(3)?;
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                serde_json::from_str(&payload).unwrap(),
                r.get(4)?,
            ))
        },
    )
}

async fn pg_events(url: &str) -> Vec<EventRow> {
    testkit::pg::rows(
        &testkit::pg::connect(url).await,
        "SELECT task_id, kind, agent, payload::text, \
         to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') \
         FROM task_events ORDER BY id",
        |r| {
            let payload: String = r.get(3);
            (
                r.get(0),
                r.get(1),
                r.get(2),
                serde_json::from_str(&payload).unwrap(),
                r.get(4),
            )
        },
    )
    .await
}

#[tokio::test]
async fn both_sides_answer_the_script_identically() {
    let tasks = seed_tasks(SEED_TASKS, SEED);
    let pair = start_pair("contract", &tasks, vec![], vec![]).await;
    let steps = script(&tasks);
    let (legacy, new) = run_both(&pair, &steps).await;
    for ((s, l), n) in steps.iter().zip(&legacy).zip(&new) {
        assert_eq!(
            (l.status, &l.body),
            (n.status, &n.body),
            "step {:?} ({} {}) differs: legacy vs new",
            s.name,
            s.method,
            s.path
        );
        assert_eq!(
            l.header_opt("allow"),
            n.header_opt("allow"),
            "step {:?}",
            s.name
        );
    }
    check_semantics(&steps, &legacy, SEED_TASKS);

    // Every successful write appended one event, identically on both stores.
    let writes = steps
        .iter()
        .zip(&legacy)
        .filter(|(s, r)| s.path.matches('/').count() == 4 && r.status == 200)
        .count();
    let (sq, pg) = (sqlite_events(&pair.sqlite), pg_events(pair.pg_url()).await);
    assert_eq!(sq.len(), writes);
    assert_eq!(sq, pg);
    let kinds: Vec<&str> = sq.iter().map(|e| e.1.as_str()).collect();
    for kind in ["claimed", "heartbeat", "notes", "status", "unclaimed"] {
        assert!(kinds.contains(&kind), "no {kind} event in {kinds:?}");
    }
    let (task_id, kind, agent, payload, at) = &sq[0];
    assert_eq!(
        (task_id.as_str(), kind.as_str(), agent.as_deref(), payload),
        (
            "NEW-2",
            "claimed",
            Some("alice"),
            &json!({"worktree": "wt/alice"})
        )
    );
    assert_eq!(
        Some(at.as_str()),
        r_updated_at(&legacy[steps.iter().position(|s| s.name == "claim alice").unwrap()])
            .as_deref()
    );
    pair.legacy.shutdown().await;
    pair.new.shutdown().await;
}

/// A reply's `updated_at` in SQLite storage form.
fn r_updated_at(r: &Resp) -> Option<String> {
    let at = r.json()["updated_at"].as_str()?.to_string();
    ficus_taskapp::Timestamp::parse(&at).map(|t| t.to_sqlite())
}

/// What a quirk does to one reply of the plain side.
type Transform = fn(&Step, Value) -> Value;

/// Runs the script with `quirk` on one side and checks every reply of the quirky side equals
/// the plain side's reply passed through `transform`, and that it changed something.
async fn assert_exact_quirk(name: &str, quirk: &str, on_new: bool, transform: Transform) {
    let tasks = seed_tasks(SEED_TASKS, SEED);
    let q: Quirk = quirk.parse().unwrap();
    let (lq, nq) = if on_new {
        (vec![], vec![q])
    } else {
        (vec![q], vec![])
    };
    let pair = start_pair(name, &tasks, lq, nq).await;
    let steps = script(&tasks);
    let (legacy, new) = run_both(&pair, &steps).await;
    let (plain, quirky) = if on_new {
        (&legacy, &new)
    } else {
        (&new, &legacy)
    };
    check_semantics(&steps, plain, SEED_TASKS);
    let mut changed = 0;
    for ((s, p), q) in steps.iter().zip(plain).zip(quirky) {
        assert_eq!(p.status, q.status, "step {:?}", s.name);
        let expected = transform(s, p.json());
        if expected != p.json() {
            changed += 1;
        }
        assert_eq!(
            q.json(),
            expected,
            "step {:?}: quirk {quirk} should change exactly its part",
            s.name
        );
    }
    assert!(changed > 0, "quirk {quirk} changed nothing in the script");
    pair.legacy.shutdown().await;
    pair.new.shutdown().await;
}

/// Applies `f` to every task object in a reply (single, list, or groups).
fn each_task(v: Value, f: &dyn Fn(&mut serde_json::Map<String, Value>)) -> Value {
    match v {
        Value::Object(mut m) if m.contains_key("task_id") && m.contains_key("created_at") => {
            f(&mut m);
            Value::Object(m)
        }
        Value::Object(m) => {
            Value::Object(m.into_iter().map(|(k, v)| (k, each_task(v, f))).collect())
        }
        Value::Array(a) => Value::Array(a.into_iter().map(|v| each_task(v, f)).collect()),
        other => other,
    }
}

#[tokio::test]
async fn quirk_timestamp_precision_only_adds_zero_micros() {
    assert_exact_quirk("q_ts", "timestamp-precision", true, |_, v| {
        each_task(v, &|t| {
            for k in ["last_heartbeat", "created_at", "updated_at"] {
                if let Some(Value::String(s)) = t.get_mut(k) {
                    if s.len() == 19 {
                        s.push_str(".000000");
                    }
                }
            }
        })
    })
    .await;
}

#[tokio::test]
async fn quirk_extra_field_only_adds_service_version() {
    // On the legacy side: the same flag works on both.
    assert_exact_quirk("q_extra", "extra-field", false, |_, v| {
        each_task(v, &|t| {
            t.insert("service_version".into(), json!("2"));
        })
    })
    .await;
}

#[tokio::test]
async fn quirk_ready_order_only_reorders_ready_ties() {
    assert_exact_quirk("q_ready", "ready-order", true, |s, v| {
        if s.method != "GET" || s.path != "/api/tasks/ready" {
            return v;
        }
        let mut tasks = v.as_array().unwrap().clone();
        let rank = |t: &Value| match t["priority"].as_str().unwrap() {
            "HIGH" => 0,
            "MEDIUM" => 1,
            "LOW" => 2,
            _ => 3,
        };
        tasks.sort_by_key(|t| (rank(t), std::cmp::Reverse(t["id"].as_i64().unwrap())));
        Value::Array(tasks)
    })
    .await;
}

#[tokio::test]
async fn quirk_slow_only_adds_latency() {
    const MS: u64 = 30;
    let tasks = seed_tasks(SEED_TASKS, SEED);
    let slow: Quirk = format!("slow:{MS}").parse().unwrap();
    let pair = start_pair("q_slow", &tasks, vec![slow], vec![]).await;
    let steps = script(&tasks);
    let (legacy, new) = run_both(&pair, &steps).await;
    for ((s, l), n) in steps.iter().zip(&legacy).zip(&new) {
        assert_eq!(
            (l.status, &l.body),
            (n.status, &n.body),
            "step {:?}",
            s.name
        );
        assert!(
            l.elapsed >= Duration::from_millis(MS),
            "step {:?} answered in {:?}, before the {MS} ms delay",
            s.name,
            l.elapsed
        );
    }
    pair.legacy.shutdown().await;
    pair.new.shutdown().await;
}

#[tokio::test]
async fn concurrent_claims_have_one_winner_and_creates_get_distinct_ids() {
    let tasks = seed_tasks(SEED_TASKS, SEED);
    let pending = first_with(&tasks, |t| t.status == "pending")
        .task_id
        .clone();
    let pair = start_pair("race", &tasks, vec![], vec![]).await;
    let http = Http::new();
    for base in [pair.legacy.url(), pair.new.url()] {
        let claims = (0..8).map(|i| {
            let (http, base, path) = (
                http.clone(),
                base.clone(),
                format!("/api/tasks/{pending}/claim"),
            );
            tokio::spawn(async move {
                let body = format!(r#"{{"agent_name": "racer-{i}"}}"#);
                http.call(&base, "POST", &path, Some(&body)).await.status
            })
        });
        let mut statuses = Vec::new();
        for c in claims.collect::<Vec<_>>() {
            statuses.push(c.await.unwrap());
        }
        statuses.sort();
        assert_eq!(statuses, [200, 409, 409, 409, 409, 409, 409, 409], "{base}");

        let creates = (0..8).map(|i| {
            let (http, base) = (http.clone(), base.clone());
            tokio::spawn(async move {
                let body = format!(r#"{{"task_id": "RACE-{i}", "title": "race"}}"#);
                let r = http.call(&base, "POST", "/api/tasks/", Some(&body)).await;
                assert_eq!(r.status, 201, "{}", r.text());
                r.json()["id"].as_i64().unwrap()
            })
        });
        let mut ids = Vec::new();
        for c in creates.collect::<Vec<_>>() {
            ids.push(c.await.unwrap());
        }
        ids.sort();
        let first = SEED_TASKS as i64 + 1;
        assert_eq!(ids, (first..first + 8).collect::<Vec<_>>(), "{base}");
    }
    pair.legacy.shutdown().await;
    pair.new.shutdown().await;
}
