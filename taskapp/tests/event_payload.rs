//! `task_events.payload` on the new side, for each column type it may meet: in a `text`,
//! `varchar` or `json` column (what a migration makes of the legacy `TEXT`) the legacy's
//! `json.dumps` text is stored byte for byte; in a `jsonb` column (the schema the service
//! makes on an empty database) the same JSON value is stored and PostgreSQL prints it its own
//! way. Multi-key payloads (`set-status`) and non-ASCII text are the cases that tell.

mod common;

use common::{pair, test_clock, Http};
use ficus_taskapp::{seed_tasks, Options, POSTGRES_SCHEMA};
use serde_json::Value;

/// The same writes to both sides (the new side's payload column of type `column`); returns
/// every event payload of each side, in id order, as stored text.
async fn payloads(name: &str, column: &str) -> (Vec<String>, Vec<String>) {
    let tasks = seed_tasks(6, 11);
    // The service keeps tables that exist: this one as a migration would have made it.
    let schema = POSTGRES_SCHEMA.replace("payload JSONB", &format!("payload {column}"));
    assert!(schema.contains(&format!("payload {column},")), "{schema}");
    let options = || Options {
        quirks: vec![],
        clock: test_clock(),
    };
    let apps = pair(&format!("taskapp_{name}"))
        .tasks(&tasks)
        .pg_setup(&schema)
        .legacy(options())
        .new_side(options())
        .start()
        .await;
    let (legacy, new, sqlite) = (&apps.legacy, &apps.new, &apps.sqlite);
    let pc = testkit::pg::connect(apps.pg_url()).await;
    let pending = tasks
        .iter()
        .find(|t| t.status == "pending")
        .unwrap()
        .task_id
        .clone();
    let writes = [
        ("claim", r#"{"agent_name":"ann","worktree":"wt/ann"}"#),
        (
            "set-status",
            r#"{"status":"blocked","blocked_reason":"wartet auf Zoë","blocked_by":"TASK-101"}"#,
        ),
        ("set-status", r#"{"status":"in_review"}"#),
        ("update-notes", r#"{"notes":"«fertig» bald"}"#),
        ("unclaim", ""),
    ];
    let http = Http::new();
    for (action, body) in writes {
        let path = format!("/api/tasks/{pending}/{action}");
        let l = http.call(&legacy.url(), "POST", &path, Some(body)).await;
        let n = http.call(&new.url(), "POST", &path, Some(body)).await;
        assert_eq!(l.status, 200, "{path}: {}", l.text());
        assert_eq!((l.status, &l.body), (n.status, &n.body), "{path}");
    }
    let legacy_payloads: Vec<String> =
        testkit::sqlite::rows(sqlite, "SELECT payload FROM task_events ORDER BY id", |r| {
            r.get(0)
        });
    let new_payloads: Vec<String> = testkit::pg::rows(
        &pc,
        "SELECT payload::text FROM task_events ORDER BY id",
        |r| r.get(0),
    )
    .await;
    apps.shutdown().await;
    assert_eq!(legacy_payloads.len(), writes.len());
    (legacy_payloads, new_payloads)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_and_json_columns_store_the_legacy_text_verbatim() {
    for column in ["TEXT", "VARCHAR", "JSON"] {
        let (legacy, new) = payloads(&format!("payload_{}", column.to_lowercase()), column).await;
        assert_eq!(legacy, new, "payload column {column}");
        // The multi-key one, as Python's json.dumps wrote it: keys sorted, ASCII only.
        assert_eq!(
            legacy[1],
            r#"{"blocked_reason": "wartet auf Zo\u00eb", "from": "in_progress", "to": "blocked"}"#
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jsonb_column_stores_the_same_value_in_postgresql_s_text() {
    let (legacy, new) = payloads("payload_jsonb", "JSONB").await;
    for (l, n) in legacy.iter().zip(&new) {
        let (lv, nv): (Value, Value) = (
            serde_json::from_str(l).unwrap(),
            serde_json::from_str(n).unwrap(),
        );
        assert_eq!(lv, nv, "legacy {l} new {n}");
    }
    // jsonb keeps a value, not text: keys by length, escapes decoded.
    assert_eq!(
        new[1],
        r#"{"to": "blocked", "from": "in_progress", "blocked_reason": "wartet auf Zoë"}"#
    );
    assert_ne!(legacy[1], new[1]);
}
