//! `migrate rollback` end to end: writes made on the new side (PostgreSQL, through the
//! reference task app over HTTP) are written back into the legacy SQLite file in its own
//! storage format, verified, and every route is set back to legacy — through the admin API or
//! the proxy's state store.

mod dualwrite;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dualwrite::{record, stamp, DualWrite, Env, Http, BASE_CONFIG};
use ficus_migrator::{ConflictPolicy, RollbackOptions};
use ficus_migrator::{RouteSwitch, RowAction};
use ficus_proxy::{LegacySwitch, StateLocation};
use ficus_state::{Change, RolloutStore};

/// Every row of every table, in a stable order: to show a file did not change.
fn dump(path: &Path) -> String {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut out = String::new();
    for t in ["tasks", "task_events"] {
        let mut st = c
            .prepare(&format!("SELECT * FROM {t} ORDER BY rowid"))
            .unwrap();
        let n = st.column_count();
        let mut rows = st.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            for i in 0..n {
                out.push_str(&format!("{:?}|", r.get_ref(i).unwrap()));
            }
            out.push('\n');
        }
    }
    out
}

fn state_rows(state: &Path) -> Vec<(String, i64, i64, String)> {
    testkit::sqlite::rows(
        state,
        "SELECT route, percent_bp, config_bp, actor FROM rollout ORDER BY route",
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )
}

/// The proxy's state store as a proxy left it: an operator put tasks-write on new (100 %).
fn proxy_state(state: &Path) {
    let mut store = RolloutStore::open(&StateLocation::from_path(state), "test").unwrap();
    store
        .record(
            &[Change {
                route: "tasks-write".into(),
                from_bp: 5000,
                to_bp: 10_000,
                keep_override: Some(5000),
            }],
            "ops",
            "set",
        )
        .unwrap();
}

async fn count(pg: &tokio_postgres::Client, table: &str) -> i64 {
    pg.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

/// New is primary and takes writes alone; rollback brings every one of them into SQLite in
/// the legacy's format, the legacy app then serves exactly what the new one does, and the
/// routes go back to legacy in the state store (the admin API being down).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_side_writes_survive_rollback() {
    let env = Env::new("rollback_keeps", 20, BASE_CONFIG).await;
    proxy_state(&env.state);
    record(
        &env.state,
        &DualWrite {
            at: &stamp(),
            route: "tasks-claim",
            key: "TASK-101",
            method: "POST",
            primary: "new",
            legacy_status: Some(200),
            new_status: Some(200),
        },
    );
    let proxy_config = env.dir.path().join("ficus.toml");
    std::fs::write(
        &proxy_config,
        proxy_toml(
            "[[routes]]\nname = \"tasks-read\"\nmethods = [\"GET\"]\npath = \"/api/tasks/*\"\npercent = 25.0\n\n[[routes]]\nname = \"tasks-write\"\npath = \"/api/tasks/*\"\npercent = 50\n",
        ),
    )
    .unwrap();
    let new = env.new_side().await;
    let http = Http::new();
    let writes: Vec<(String, String)> = vec![
        (
            "/api/tasks/".into(),
            r#"{"task_id":"TASK-500","title":"born on new","priority":"HIGH","instructions":"ünïcode ✓"}"#.into(),
        ),
        (
            "/api/tasks/".into(),
            r#"{"task_id":"TASK-501","title":"also new","priority":"LOW","dependencies":"TASK-500"}"#.into(),
        ),
        ("/api/tasks/TASK-500/claim".into(), r#"{"agent_name":"ann","worktree":"wt-500"}"#.into()),
        ("/api/tasks/TASK-103/update-notes".into(), r#"{"notes":"noted on new"}"#.into()),
        ("/api/tasks/TASK-104/set-status".into(), r#"{"status":"done"}"#.into()),
        (
            "/api/tasks/TASK-106/set-status".into(),
            r#"{"status":"blocked","blocked_reason":"needs ops","blocked_by":"TASK-101"}"#.into(),
        ),
        ("/api/tasks/TASK-500/heartbeat".into(), r#"{"agent_name":"ann"}"#.into()),
    ];
    for (path, body) in &writes {
        let r = http
            .call_at(&new.url(), "POST", path, Some(body), Some(&stamp()))
            .await;
        assert!(r.status < 300, "{path}: {} {}", r.status, r.text());
    }
    let pg = env.pg().await;
    let (pg_tasks, pg_events) = (count(&pg, "tasks").await, count(&pg, "task_events").await);
    let before = dump(&env.sqlite);
    let state_before = state_rows(&env.state);

    // Dry run: the list, and nothing written anywhere.
    let mut opts = RollbackOptions::new(&env.sqlite, &env.pg.url);
    opts.dry_run = true;
    opts.to_legacy = Some(Arc::new(LegacySwitch {
        state: Some(StateLocation::from_path(&env.state)),
        ..LegacySwitch::default()
    }));
    let rep = ficus_migrator::rollback(&opts, &env.config).await.unwrap();
    let tasks = rep.pass.tables.iter().find(|t| t.table == "tasks").unwrap();
    assert_eq!((tasks.inserted, tasks.updated), (2, 3), "{}", rep.text());
    assert!(tasks.changes.iter().any(|c| c.action == RowAction::Update
        && c.key == "{\"id\":4}"
        && c.columns.iter().any(|d| d.column == "status")));
    let events = rep
        .pass
        .tables
        .iter()
        .find(|t| t.table == "task_events")
        .unwrap();
    assert_eq!(events.inserted, 5, "{}", rep.text());
    assert!(!rep.pass.written && !rep.ok);
    assert!(matches!(rep.routes, RouteSwitch::Skipped { .. }));
    assert_eq!(dump(&env.sqlite), before, "a dry run wrote to SQLite");
    assert_eq!(state_rows(&env.state), state_before);
    assert!(rep.text().contains("dry run: would insert"));

    // The rollback: the admin API is down, so the state store is written.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut opts = RollbackOptions::new(&env.sqlite, &env.pg.url);
    opts.to_legacy = Some(Arc::new(LegacySwitch {
        admin: Some(admin),
        token: Some("secret".into()),
        state: Some(StateLocation::from_path(&env.state)),
        config: Some(proxy_config),
    }));
    let rep = ficus_migrator::rollback(&opts, &env.config).await.unwrap();
    assert!(rep.ok, "{}", rep.text());
    assert!(rep.pass.written && rep.pass.verified_clean);
    let tasks = rep.pass.tables.iter().find(|t| t.table == "tasks").unwrap();
    assert_eq!((tasks.inserted, tasks.updated, tasks.verified), (2, 3, 5));
    assert!(tasks.differences.is_empty());
    let RouteSwitch::StateStore { routes, note, .. } = &rep.routes else {
        panic!("{:?}", rep.routes)
    };
    assert_eq!(routes, &["tasks-claim", "tasks-read", "tasks-write"]);
    assert!(note.contains("unreachable"), "{note}");
    let catch_up = rep.catch_up.as_ref().unwrap();
    assert!(catch_up.verified_clean);
    assert!(
        catch_up.tables.iter().all(|t| t.inserted + t.updated == 0),
        "{}",
        rep.text()
    );

    // Every route at 0 %, audited; the operator's config_bp kept.
    assert_eq!(
        state_rows(&env.state),
        vec![
            ("tasks-claim".into(), 0, 0, "migrate-rollback".into()),
            ("tasks-read".into(), 0, 2500, "migrate-rollback".into()),
            ("tasks-write".into(), 0, 5000, "migrate-rollback".into()),
        ]
    );
    let c = rusqlite::Connection::open(&env.state).unwrap();
    let audit: Vec<(String, i64, i64, String)> = c
        .prepare("SELECT route, from_bp, to_bp, action FROM audit WHERE actor = 'migrate-rollback' ORDER BY route")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        audit,
        vec![
            ("tasks-claim".into(), 0, 0, "rollback".into()),
            ("tasks-read".into(), 2500, 0, "rollback".into()),
            ("tasks-write".into(), 10000, 0, "rollback".into()),
        ]
    );

    // The legacy's storage format: SQLAlchemy text timestamps, booleans 0/1.
    let s = env.sqlite();
    let (completed_type, completed, updated_at, heartbeat): (String, i64, String, String) = s
        .query_row(
            "SELECT typeof(completed), completed, updated_at, (SELECT last_heartbeat FROM tasks WHERE task_id = 'TASK-500') FROM tasks WHERE task_id = 'TASK-104'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!((completed_type.as_str(), completed), ("integer", 1));
    for t in [&updated_at, &heartbeat] {
        let b = t.as_bytes();
        assert!(
            t.len() == 26 && b[10] == b' ' && b[19] == b'.',
            "not the legacy's text form: {t}"
        );
    }
    // The events new appended are in legacy, numbered by SQLite.
    let legacy_events: i64 = s
        .query_row("SELECT count(*) FROM task_events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(legacy_events, pg_events);

    // Nothing deleted from PostgreSQL.
    assert_eq!(count(&pg, "tasks").await, pg_tasks);
    assert_eq!(count(&pg, "task_events").await, pg_events);

    // The legacy app now serves exactly what the new one does.
    let legacy = env.legacy().await;
    for path in [
        "/api/tasks/",
        "/api/tasks/ready",
        "/api/tasks/coordinator-data",
        "/api/tasks/TASK-500",
    ] {
        let l = http.call(&legacy.url(), "GET", path, None).await;
        let n = http.call(&new.url(), "GET", path, None).await;
        assert_eq!(
            (l.status, l.json_or_null()),
            (n.status, n.json_or_null()),
            "{path}"
        );
    }
    // A second rollback finds nothing left to do.
    let rep = ficus_migrator::rollback(&opts, &env.config).await.unwrap();
    assert!(rep.ok, "{}", rep.text());
    assert!(
        rep.pass.tables.iter().all(|t| t.inserted + t.updated == 0),
        "{}",
        rep.text()
    );
    legacy.shutdown().await;
    new.shutdown().await;
}

/// The sections a proxy configuration needs before its routes.
/// A proxy configuration whose backends are never reached, with these routes.
fn proxy_toml(routes: &str) -> String {
    testkit::ProxyToml::new("127.0.0.1:9", "127.0.0.1:9")
        .routes(routes)
        .to_string()
}

/// A real proxy whose admin API takes token `secret`, with tasks-write put on new by an
/// operator.
fn proxy_with_writes_on_new() -> ficus_proxy::ProxyHandle {
    let mut config = ficus_proxy::Config::from_toml_str(&proxy_toml(
        "[[routes]]\nname = \"tasks-write\"\nmethods = [\"POST\"]\npath = \"/api/tasks/*\"\n",
    ))
    .unwrap();
    config.proxy.admin_token = Some(ficus_proxy::config::Secret("secret".into()));
    let proxy = ficus_proxy::Proxy::start(config, None).unwrap();
    proxy.set_rollout("tasks-write", 100.0, "ops").unwrap();
    proxy
}

/// Both sides changed the same row since T: `--conflict abort` refuses and writes nothing;
/// `newest-wins` keeps legacy's newer version and writes the rest; the routes go back
/// through the admin API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_abort_or_newest_wins() {
    let env = Env::new("rollback_conflict", 20, BASE_CONFIG).await;
    let (legacy, new) = (env.legacy().await, env.new_side().await);
    let http = Http::new();
    let since = stamp();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let notes = |n: &str| format!(r#"{{"notes":"{n}"}}"#);
    // New changes TASK-103 and TASK-104; legacy changes TASK-103 later.
    for (id, n) in [("TASK-103", "new says"), ("TASK-104", "only new")] {
        let r = http
            .call_at(
                &new.url(),
                "POST",
                &format!("/api/tasks/{id}/update-notes"),
                Some(&notes(n)),
                Some(&stamp()),
            )
            .await;
        assert_eq!(r.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    let r = http
        .call_at(
            &legacy.url(),
            "POST",
            "/api/tasks/TASK-103/update-notes",
            Some(&notes("legacy says, later")),
            Some(&stamp()),
        )
        .await;
    assert_eq!(r.status, 200);
    legacy.shutdown().await;
    let before = dump(&env.sqlite);

    let proxy = proxy_with_writes_on_new();
    let admin = format!("http://{}", proxy.admin_addr());
    let switch = |token: &str| {
        Some(Arc::new(LegacySwitch {
            admin: Some(admin.clone()),
            token: Some(token.into()),
            ..LegacySwitch::default()
        }) as Arc<dyn ficus_state::ToLegacy>)
    };
    let mut opts = RollbackOptions::new(&env.sqlite, &env.pg.url);
    opts.since = Some(since.clone());
    opts.conflict = ConflictPolicy::Abort;
    opts.to_legacy = switch("secret");
    let rep = ficus_migrator::rollback(&opts, &env.config).await.unwrap();
    assert!(
        rep.pass.aborted && !rep.pass.written && !rep.ok,
        "{}",
        rep.text()
    );
    let tasks = rep.pass.tables.iter().find(|t| t.table == "tasks").unwrap();
    assert_eq!((tasks.conflicts, tasks.updated), (1, 1), "{}", rep.text());
    let c = tasks
        .changes
        .iter()
        .find(|c| c.action == RowAction::Conflict)
        .unwrap();
    assert_eq!(c.key, "{\"id\":3}");
    assert!(c.columns.iter().any(|d| d.column == "status_notes"));
    assert!(rep.text().contains("ABORTED"), "{}", rep.text());
    assert!(matches!(rep.routes, RouteSwitch::Skipped { .. }));
    assert_eq!(dump(&env.sqlite), before, "abort wrote to SQLite");
    let audit = proxy.audit(10).unwrap();
    assert_eq!(
        audit.len(),
        1,
        "routes switched despite the abort: {audit:?}"
    );

    // newest-wins: legacy's later TASK-103 stays, new's TASK-104 comes back.
    opts.conflict = ConflictPolicy::NewestWins;
    let rep = ficus_migrator::rollback(&opts, &env.config).await.unwrap();
    assert!(rep.ok, "{}", rep.text());
    let tasks = rep.pass.tables.iter().find(|t| t.table == "tasks").unwrap();
    assert_eq!(
        (tasks.kept_legacy, tasks.updated, tasks.conflicts),
        (1, 1, 0)
    );
    let s = env.sqlite();
    let get = |id: &str| -> String {
        s.query_row(
            "SELECT status_notes FROM tasks WHERE task_id = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert!(get("TASK-103").ends_with("legacy says, later"));
    assert!(!get("TASK-103").contains("new says"));
    assert!(get("TASK-104").ends_with("only new"));
    let RouteSwitch::AdminApi { response, .. } = &rep.routes else {
        panic!("{:?}", rep.routes)
    };
    assert_eq!(response["rolled_back"][0]["route"], "tasks-write");
    assert_eq!(response["rolled_back"][0]["from"], 100.0);
    let audit = proxy.audit(10).unwrap();
    assert_eq!(
        (audit[0].route.as_str(), audit[0].from_bp, audit[0].to_bp),
        ("tasks-write", 10_000, 0)
    );
    assert_eq!(audit[0].actor, "migrate-rollback");
    assert_eq!(proxy.routes().unwrap()[0].percent, 0.0);

    // A wrong token is a failure, not a silent fallback.
    proxy.set_rollout("tasks-write", 100.0, "ops").unwrap();
    opts.to_legacy = switch("wrong");
    let rep = ficus_migrator::rollback(&opts, &env.config).await.unwrap();
    assert!(!rep.ok);
    assert!(
        matches!(&rep.routes, RouteSwitch::Failed { detail } if detail.contains("403")),
        "{:?}",
        rep.routes
    );
    assert_eq!(proxy.routes().unwrap()[0].percent, 100.0);
    proxy.shutdown().await;
    new.shutdown().await;
}
