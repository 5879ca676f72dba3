//! Starting a side on real and bad inputs: a database made by `gen_taskdb.py` served as is,
//! missing / unreadable / foreign SQLite files, unreachable PostgreSQL, schema creation, the
//! system clock, graceful shutdown.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{listener, temp_dir, Http};
use ficus_taskapp::{
    create_sqlite, seed_sqlite, seed_tasks, serve_legacy, serve_new, TaskAppError, Timestamp,
};
use serde_json::Value;

/// The shared generator when this checkout sits beside `shared/`, else the copy vendored in
/// `tests/fixtures` (identical when taken) so a lone clone still runs the test.
fn gen_taskdb_script() -> PathBuf {
    if let Ok(p) = std::env::var("FICUS_GEN_TASKDB") {
        return PathBuf::from(p);
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shared = manifest.join("../../shared/bench/gen_taskdb.py");
    if shared.exists() {
        shared
    } else {
        manifest.join("tests/fixtures/gen_taskdb.py")
    }
}

fn python3_available() -> bool {
    Command::new("python3")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn schema_of(path: &std::path::Path) -> Vec<(String, String)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test]
async fn serves_a_gen_taskdb_database_as_is() {
    if !python3_available() {
        eprintln!("SKIPPED serves_a_gen_taskdb_database_as_is: python3 is not installed");
        return;
    }
    let dir = temp_dir("taskapp-gen");
    let db = dir.path().join("gen.db");
    let script = gen_taskdb_script();
    let out = Command::new("python3")
        .arg(&script)
        .arg(&db)
        .args(["--tasks", "1000"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let schema_before = schema_of(&db);
    let (events_before, row): (i64, (String, String, i64, Option<String>, String)) = {
        let c = rusqlite::Connection::open(&db).unwrap();
        (
            c.query_row("SELECT count(*) FROM task_events", [], |r| r.get(0))
                .unwrap(),
            c.query_row(
                "SELECT task_id, status, completed, last_heartbeat, created_at FROM tasks \
                 WHERE status = 'done' AND last_heartbeat IS NOT NULL ORDER BY id LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap(),
        )
    };

    let server = serve_legacy(&db, listener().await, vec![]).await.unwrap();
    let http = Http::new();
    let base = server.url();

    let list = http.call(&base, "GET", "/api/tasks/", None).await;
    assert_eq!(list.status, 200);
    let list = list.json();
    assert_eq!(list.as_array().unwrap().len(), 1000);

    // One task read straight from the file, rendered by the API.
    let (task_id, status, completed, heartbeat, created) = row;
    let got = http
        .call(&base, "GET", &format!("/api/tasks/{task_id}"), None)
        .await
        .json();
    assert_eq!(got["status"], Value::from(status));
    assert_eq!(got["completed"], Value::from(completed == 1));
    let api = |s: &str| Timestamp::parse(s).unwrap().to_api(false);
    assert_eq!(got["created_at"], Value::from(api(&created)));
    assert_eq!(got["last_heartbeat"], Value::from(api(&heartbeat.unwrap())));

    let ready = http.call(&base, "GET", "/api/tasks/ready", None).await;
    assert_eq!(ready.status, 200);
    assert!(!ready.json().as_array().unwrap().is_empty());
    let groups = http
        .call(&base, "GET", "/api/tasks/coordinator-data", None)
        .await
        .json();
    let total: usize = groups
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_array().unwrap().len())
        .sum();
    assert_eq!(total, 1000);

    // A write works and appends an event the way the monolith's rows look.
    let pending = ready.json()[0]["task_id"].as_str().unwrap().to_string();
    let claim = http
        .call(
            &base,
            "POST",
            &format!("/api/tasks/{pending}/claim"),
            Some(r#"{"agent_name": "agent-65", "worktree": "wt/agent-65"}"#),
        )
        .await;
    assert_eq!(claim.status, 200, "{}", claim.text());
    let create = http
        .call(
            &base,
            "POST",
            "/api/tasks/",
            Some(r#"{"task_id": "TASK-5000", "title": "new"}"#),
        )
        .await;
    assert_eq!(create.status, 201, "{}", create.text());
    assert_eq!(create.json()["id"], 1001);
    server.shutdown().await;

    let c = rusqlite::Connection::open(&db).unwrap();
    let (events_after, kind, payload, at_type): (i64, String, String, String) = c
        .query_row(
            "SELECT (SELECT count(*) FROM task_events), kind, payload, typeof(created_at) \
             FROM task_events ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(events_after, events_before + 1);
    assert_eq!(kind, "claimed");
    assert_eq!(payload, r#"{"worktree": "wt/agent-65"}"#);
    assert_eq!(at_type, "text");
    let (completed_type, created_text): (String, String) = c
        .query_row(
            "SELECT typeof(completed), created_at FROM tasks WHERE task_id = 'TASK-5000'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(completed_type, "integer");
    assert_eq!(created_text.len(), "2025-01-01 00:00:00.000000".len());
    // Nothing about the schema changed.
    assert_eq!(schema_of(&db), schema_before);
}

#[tokio::test]
async fn missing_file_is_an_error_unless_created() {
    let dir = temp_dir("taskapp-missing");
    let db = dir.path().join("nope.db");
    let err = serve_legacy(&db, listener().await, vec![])
        .await
        .unwrap_err();
    assert!(matches!(err, TaskAppError::SqliteMissing { .. }), "{err}");
    assert!(!db.exists(), "a failed start must not create the file");
    assert_eq!(
        err.to_string(),
        format!("SQLite database {} does not exist", db.display())
    );

    create_sqlite(&db).unwrap();
    let server = serve_legacy(&db, listener().await, vec![]).await.unwrap();
    let list = Http::new()
        .call(&server.url(), "GET", "/api/tasks/", None)
        .await;
    assert_eq!((list.status, list.text().as_str()), (200, "[]"));
    server.shutdown().await;
    // Same schema as gen_taskdb.py (modulo IF NOT EXISTS, which SQLite does not store).
    let names: Vec<String> = schema_of(&db).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "ix_task_events_task_id",
            "ix_tasks_status",
            "ix_tasks_task_id",
            "task_events",
            "tasks"
        ]
    );
}

#[tokio::test]
async fn unusable_sqlite_files_are_one_line_errors() {
    let dir = temp_dir("taskapp-bad");
    // A directory.
    let err = serve_legacy(dir.path(), listener().await, vec![])
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot open SQLite database {}: it is a directory",
            dir.path().display()
        )
    );
    // Not a SQLite file.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, "this is not a database, just text ".repeat(40)).unwrap();
    let err = serve_legacy(&junk, listener().await, vec![])
        .await
        .unwrap_err();
    assert!(err.to_string().ends_with("file is not a database"), "{err}");
    // A SQLite database whose tasks table is not the monolith's.
    let other = dir.path().join("other.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE tasks (id INTEGER PRIMARY KEY, name TEXT)")
        .unwrap();
    let err = serve_legacy(&other, listener().await, vec![])
        .await
        .unwrap_err();
    assert!(matches!(err, TaskAppError::SqliteSchema { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("table tasks lacks column(s) task_id, title"),
        "{err}"
    );
    assert!(!err.to_string().contains('\n'), "{err}");
}

#[tokio::test]
async fn empty_file_gets_the_schema() {
    let dir = temp_dir("taskapp-empty");
    let db = dir.path().join("empty.db");
    std::fs::write(&db, b"").unwrap();
    let server = serve_legacy(&db, listener().await, vec![]).await.unwrap();
    assert_eq!(server.store(), format!("SQLite {}", db.display()));
    let r = Http::new()
        .call(&server.url(), "GET", "/api/tasks/", None)
        .await;
    assert_eq!((r.status, r.text().as_str()), (200, "[]"));
    server.shutdown().await;
}

#[tokio::test]
async fn unreachable_postgres_is_a_one_line_error() {
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let err = serve_new(
        "postgres://postgres:secret@127.0.0.1:1/tasks",
        listener().await,
        vec![],
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("PostgreSQL postgres://postgres:***@127.0.0.1:1/tasks: cannot connect: "),
        "{msg}"
    );
    assert!(msg.contains("refused"), "says why: {msg}");
    assert!(!msg.contains("secret") && !msg.contains('\n'), "{msg}");
    let err = serve_new("not a url at all =", listener().await, vec![])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            TaskAppError::Postgres(ficus_pg::PgError::Syntax { .. })
        ),
        "{err}"
    );
}

#[tokio::test]
async fn postgres_schema_is_created_with_proper_types_and_reused() {
    let pg = testkit::pg::fresh_database("taskapp_schema").unwrap();
    let first = serve_new(&pg.url, listener().await, vec![]).await.unwrap();
    let second = serve_new(&pg.url, listener().await, vec![]).await.unwrap();
    assert!(
        first.store().starts_with("PostgreSQL "),
        "{}",
        first.store()
    );
    assert!(
        first.store().ends_with(&format!("/{}", pg.name)),
        "{}",
        first.store()
    );
    let http = Http::new();
    let r = http
        .call(
            &first.url(),
            "POST",
            "/api/tasks/",
            Some(r#"{"task_id": "T-1", "title": "x"}"#),
        )
        .await;
    assert_eq!(r.status, 201);
    let r = http
        .call(&second.url(), "GET", "/api/tasks/T-1", None)
        .await;
    assert_eq!(r.status, 200);
    first.shutdown().await;
    second.shutdown().await;

    let client = testkit::pg::connect(&pg.url).await;
    let types: Vec<(String, String)> = testkit::pg::rows(
        &client,
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_name = 'tasks' AND column_name IN \
             ('id', 'completed', 'created_at', 'last_heartbeat') ORDER BY column_name",
        |r| (r.get(0), r.get(1)),
    )
    .await;
    let types: Vec<(&str, &str)> = types
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        types,
        [
            ("completed", "boolean"),
            ("created_at", "timestamp with time zone"),
            ("id", "bigint"),
            ("last_heartbeat", "timestamp with time zone"),
        ]
    );
    let indexes: Vec<String> = testkit::pg::rows(
        &client,
        "SELECT indexname::text FROM pg_indexes WHERE tablename = 'tasks' ORDER BY 1",
        |r| r.get(0),
    )
    .await;
    assert_eq!(
        indexes,
        ["ix_tasks_status", "ix_tasks_task_id", "tasks_pkey"]
    );
}

#[tokio::test]
async fn system_clock_stamps_writes_with_now() {
    let dir = temp_dir("taskapp-clock");
    let db = dir.path().join("clock.db");
    seed_sqlite(&db, &seed_tasks(3, 1)).unwrap();
    let server = serve_legacy(&db, listener().await, vec![]).await.unwrap();
    let before = Timestamp::now();
    let r = Http::new()
        .call(
            &server.url(),
            "POST",
            "/api/tasks/",
            Some(r#"{"task_id": "T-now", "title": "x"}"#),
        )
        .await;
    let after = Timestamp::now();
    server.shutdown().await;
    assert_eq!(r.status, 201);
    let created = r.json()["created_at"].as_str().unwrap().to_string();
    // ISO with 'T'; six fraction digits unless the fraction is zero.
    assert!(created.len() == 26 || created.len() == 19, "{created}");
    assert_eq!(&created[10..11], "T");
    let t = Timestamp::parse(&created).unwrap();
    assert!(
        before <= t && t <= after,
        "{before:?} <= {t:?} <= {after:?}"
    );
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let dir = temp_dir("taskapp-shutdown");
    let db = dir.path().join("s.db");
    seed_sqlite(&db, &seed_tasks(3, 1)).unwrap();
    let server = serve_legacy(&db, listener().await, vec!["slow:300".parse().unwrap()])
        .await
        .unwrap();
    let base = server.url();
    let http = Http::new();
    let in_flight = {
        let (http, base) = (http.clone(), base.clone());
        tokio::spawn(async move { http.call(&base, "GET", "/api/tasks/TASK-101", None).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.shutdown().await;
    let r = in_flight.await.unwrap();
    assert_eq!(r.status, 200);
    assert!(
        tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn postgres_foreign_tasks_table_is_a_schema_error() {
    let pg = testkit::pg::fresh_database("taskapp_foreign").unwrap();
    testkit::pg::connect(&pg.url)
        .await
        .batch_execute("CREATE TABLE tasks (id int PRIMARY KEY, name text)")
        .await
        .unwrap();
    let err = serve_new(&pg.url, listener().await, vec![])
        .await
        .unwrap_err();
    assert!(matches!(err, TaskAppError::PostgresSchema { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("table tasks lacks column(s) task_id, title"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
}

/// A schema the way a straightforward migration of the SQLite one may leave it: `integer`
/// ids without defaults filled with explicit values, naive `timestamp`s, a text payload.
#[tokio::test]
async fn new_side_works_on_a_migrated_schema() {
    let pg = testkit::pg::fresh_database("taskapp_migrated").unwrap();
    testkit::pg::connect(&pg.url)
        .await
        .batch_execute(
            "CREATE TABLE tasks (id integer NOT NULL PRIMARY KEY, task_id varchar NOT NULL,
               title varchar NOT NULL, priority varchar NOT NULL, status varchar NOT NULL,
               dependencies varchar, assigned_agent varchar, worktree varchar,
               status_notes text, estimated_effort varchar, completed boolean NOT NULL,
               blocked_reason text, blocked_by varchar, last_heartbeat timestamp,
               instructions text, created_at timestamp NOT NULL, updated_at timestamp NOT NULL);
             CREATE UNIQUE INDEX ix_tasks_task_id ON tasks (task_id);
             CREATE TABLE task_events (id integer NOT NULL PRIMARY KEY,
               task_id varchar NOT NULL, kind varchar NOT NULL, agent varchar, payload text,
               created_at timestamp NOT NULL);
             INSERT INTO tasks VALUES (41, 'TASK-141', 'migrated', 'HIGH', 'pending', NULL,
               NULL, NULL, NULL, '1h', false, NULL, NULL, NULL, 'x',
               '2025-02-03 04:05:06.5', '2025-02-03 04:05:06.5');
             INSERT INTO task_events VALUES (7, 'TASK-141', 'notes', 'a', '{}',
               '2025-02-03 04:05:06');",
        )
        .await
        .unwrap();
    let server = serve_new(&pg.url, listener().await, vec![]).await.unwrap();
    let http = Http::new();
    let base = server.url();
    let got = http.call(&base, "GET", "/api/tasks/TASK-141", None).await;
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.json()["created_at"], "2025-02-03T04:05:06.500000");
    let created = http
        .call(
            &base,
            "POST",
            "/api/tasks/",
            Some(r#"{"task_id": "TASK-142", "title": "after migration"}"#),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.json()["id"], 42);
    let claim = http
        .call(
            &base,
            "POST",
            "/api/tasks/TASK-141/claim",
            Some(r#"{"agent_name": "a"}"#),
        )
        .await;
    assert_eq!(claim.status, 200, "{}", claim.text());
    server.shutdown().await;
    let row = testkit::pg::connect(&pg.url)
        .await
        .query_one(
            "SELECT id, payload FROM task_events ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 8);
    assert_eq!(row.get::<_, String>(1), r#"{"worktree": null}"#);
}
