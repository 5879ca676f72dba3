//! `X-Ficus-Request-Time`: a write stamped with a request time is performed as of that time on
//! either side, whatever its clock says — so a dual-writing proxy that stamps a write once and
//! sends it to both sides gets identical timestamps in both stores. The two sides here run on
//! deliberately different clocks (the system clock and a clock stuck in 2001) to show the
//! header, not the clocks, decides.

mod common;

use std::time::Duration;

use common::{pair, Http};
use ficus_taskapp::{seed_tasks, Clock, Options, Timestamp};
use serde_json::Value;

/// One request, stamped with `at` if given; (status, JSON body).
async fn call(
    http: &Http,
    base: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    at: Option<&str>,
) -> (u16, Value) {
    let r = http.call_at(base, method, path, body, at).await;
    (r.status, r.json())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stamped_writes_store_the_same_timestamps_on_both_sides() {
    let tasks = seed_tasks(10, 5);
    let stuck = Clock::stepping(
        Timestamp::parse("2001-01-01 00:00:00").unwrap(),
        Duration::from_secs(1),
    );
    let apps = pair("taskapp_request_time")
        .tasks(&tasks)
        .legacy(Options {
            quirks: vec![],
            clock: Clock::system(),
        })
        .new_side(Options {
            quirks: vec![],
            clock: stuck,
        })
        .start()
        .await;
    let (legacy, new) = (&apps.legacy, &apps.new);
    let http = Http::new();
    let pending = tasks
        .iter()
        .find(|t| t.status == "pending")
        .unwrap()
        .task_id
        .clone();

    // The same stamped writes to both sides.
    let writes: Vec<(String, String, &str)> = vec![
        (
            "/api/tasks/".to_string(),
            r#"{"task_id":"TASK-900","title":"stamped","priority":"HIGH"}"#.to_string(),
            "2026-05-01T10:00:00Z",
        ),
        (
            format!("/api/tasks/{pending}/claim"),
            r#"{"agent_name":"ann"}"#.to_string(),
            // An offset: stored as the UTC instant.
            "2026-05-01T12:00:01.250000+02:00",
        ),
        (
            format!("/api/tasks/{pending}/update-notes"),
            r#"{"notes":"half way"}"#.to_string(),
            // Nanoseconds: truncated to microseconds on both sides.
            "2026-05-01T10:00:02.123456789Z",
        ),
        (
            "/api/tasks/TASK-900/set-status".to_string(),
            r#"{"status":"blocked","blocked_reason":"waiting"}"#.to_string(),
            // The naive form, read as UTC.
            "2026-05-01 10:00:03.5",
        ),
    ];
    for (path, body, at) in &writes {
        let (ls, lj) = call(&http, &legacy.url(), "POST", path, Some(body), Some(at)).await;
        let (ns, nj) = call(&http, &new.url(), "POST", path, Some(body), Some(at)).await;
        assert!(ls < 300, "{path}: legacy {ls} {lj}");
        assert_eq!((ls, &lj), (ns, &nj), "{path}: the two sides differ");
    }
    let (_, created) = call(
        &http,
        &legacy.url(),
        "GET",
        "/api/tasks/TASK-900",
        None,
        None,
    )
    .await;
    assert_eq!(created["created_at"], "2026-05-01T10:00:00");
    assert_eq!(created["updated_at"], "2026-05-01T10:00:03.500000");
    let (_, claimed) = call(
        &http,
        &new.url(),
        "GET",
        &format!("/api/tasks/{pending}"),
        None,
        None,
    )
    .await;
    assert_eq!(claimed["last_heartbeat"], "2026-05-01T10:00:01.250000");
    assert_eq!(claimed["updated_at"], "2026-05-01T10:00:02.123456");
    let notes = claimed["status_notes"].as_str().unwrap();
    assert!(
        notes.ends_with("[2026-05-01 10:00:02.123456] half way"),
        "{notes}"
    );

    // The whole stores agree, events included.
    let (_, all_l) = call(&http, &legacy.url(), "GET", "/api/tasks/", None, None).await;
    let (_, all_n) = call(&http, &new.url(), "GET", "/api/tasks/", None, None).await;
    assert_eq!(all_l, all_n);
    let legacy_events: Vec<String> = testkit::sqlite::rows(
        &apps.sqlite,
        "SELECT created_at FROM task_events ORDER BY id",
        |r| r.get(0),
    );
    let pc = testkit::pg::connect(apps.pg_url()).await;
    let new_events: Vec<String> = testkit::pg::rows(&pc, "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') FROM task_events ORDER BY id", |r| r.get(0)).await;
    assert_eq!(legacy_events, new_events);
    assert_eq!(
        legacy_events.last().map(String::as_str),
        Some("2026-05-01 10:00:03.500000")
    );

    // Without the header each side uses its own clock.
    let (_, l) = call(
        &http,
        &legacy.url(),
        "POST",
        "/api/tasks/TASK-900/unclaim",
        None,
        None,
    )
    .await;
    let (_, n) = call(
        &http,
        &new.url(),
        "POST",
        "/api/tasks/TASK-900/unclaim",
        None,
        None,
    )
    .await;
    assert_ne!(l["updated_at"], n["updated_at"]);
    assert!(n["updated_at"].as_str().unwrap().starts_with("2001-01-01"));

    // A malformed stamp is refused before anything is written; reads ignore the header.
    let (s, j) = call(
        &http,
        &legacy.url(),
        "POST",
        "/api/tasks/",
        Some(r#"{"task_id":"TASK-901","title":"x","priority":"LOW"}"#),
        Some("yesterday"),
    )
    .await;
    assert_eq!(s, 422, "{j}");
    assert!(
        j["detail"]
            .as_str()
            .unwrap()
            .contains("X-Ficus-Request-Time"),
        "{j}"
    );
    let (s, _) = call(
        &http,
        &legacy.url(),
        "GET",
        "/api/tasks/TASK-901",
        None,
        Some("yesterday"),
    )
    .await;
    assert_eq!(s, 404);

    apps.shutdown().await;
}
