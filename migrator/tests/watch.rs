//! `migrate watch` end to end: a legacy task database migrated into a real PostgreSQL, the
//! reference task apps serving both stores over real HTTP, writes mirrored to both the way the
//! proxy does it (stamped once with `X-Ficus-Request-Time`, recorded in `dual_writes`), and
//! drift injected behind the apps' backs.

mod dualwrite;

use std::sync::Arc;
use std::time::Duration;

use dualwrite::{dual_write, once, record, stamp, watch_once, DualWrite, Env, Http, BASE_CONFIG};
use ficus_migrator::DriftClass;
use ficus_migrator::FoundBy;
use ficus_migrator::WatchEvent;
use testkit::expect_metric as metric;
use tokio::sync::Mutex;

/// The next event `f` accepts; a drift or resolved event it does not accept is a failure.
async fn next(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<WatchEvent>,
    what: &str,
    f: impl Fn(&WatchEvent) -> bool,
) -> WatchEvent {
    let wait = async {
        loop {
            let e = rx.recv().await.expect("watch still running");
            if f(&e) {
                return e;
            }
            if let WatchEvent::Drift { .. } | WatchEvent::Resolved { .. } = &e {
                panic!("unexpected {e:?} while waiting for {what}");
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .unwrap_or_else(|_| panic!("no {what} within 20 s"))
}

/// Several writers hit both task apps with the same writes for a while; the watch finds no
/// drift, and says which table/column the route's keys were found in (no route configured).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_dual_writes_show_no_drift() {
    let env = Env::new("watch_concurrent", 40, BASE_CONFIG).await;
    let (legacy, new) = (env.legacy().await, env.new_side().await);
    let http = Http::new();
    // Creates take a lock: each side numbers tasks itself (max(id) + 1), so two creates
    // racing could be numbered in a different order on each side — real drift, which the
    // proxy prevents the same way (one create at a time on a dual-write route).
    let create_lock = Arc::new(Mutex::new(()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut writers = Vec::new();
    for w in 0..4u32 {
        let (http, l, n, state, lock) = (
            http.clone(),
            legacy.url(),
            new.url(),
            env.state.clone(),
            create_lock.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut i = 0u32;
            let mut writes = 0u32;
            let mut keys = std::collections::BTreeSet::new();
            while tokio::time::Instant::now() < deadline {
                i += 1;
                // Each writer owns every 4th seeded task.
                let id = format!("TASK-{}", 101 + w + 4 * (i % 10));
                let agent = format!("agent-{w}");
                let (path, body, key) = match i % 6 {
                    0 => {
                        let key = format!("TASK-{}", 1000 + w * 1000 + i);
                        let body = format!(
                            r#"{{"task_id":"{key}","title":"made by writer {w}","priority":"MEDIUM","dependencies":"TASK-101"}}"#
                        );
                        let _g = lock.lock().await;
                        dual_write(&http, &l, &n, &state, "tasks-write", &key, "/api/tasks/", &body)
                            .await;
                        writes += 1;
                        keys.insert(key);
                        continue;
                    }
                    1 => ("claim", format!(r#"{{"agent_name":"{agent}"}}"#), id.clone()),
                    2 => ("heartbeat", format!(r#"{{"agent_name":"{agent}"}}"#), id.clone()),
                    3 => (
                        "update-notes",
                        format!(r#"{{"notes":"step {i} by {agent}"}}"#),
                        id.clone(),
                    ),
                    // Multi-key event payloads (and non-ASCII text): the new side stores
                    // the legacy's text verbatim in the migrated `text` column.
                    4 => (
                        "set-status",
                        if i.is_multiple_of(4) {
                            format!(r#"{{"status":"blocked","blocked_reason":"wartet auf {agent} — ß","blocked_by":"TASK-101"}}"#)
                        } else {
                            r#"{"status":"in_review"}"#.to_string()
                        },
                        id.clone(),
                    ),
                    _ => ("unclaim", String::new(), id.clone()),
                };
                let path = format!("/api/tasks/{key}/{path}");
                dual_write(&http, &l, &n, &state, "tasks-write", &key, &path, &body).await;
                writes += 1;
                keys.insert(key);
            }
            (writes, keys)
        }));
    }
    let mut total = 0;
    let mut keys = std::collections::BTreeSet::new();
    for w in writers {
        let (n, k) = w.await.unwrap();
        total += n;
        keys.extend(k);
    }
    assert!(total > 40, "only {total} writes");

    let (s, events, metrics) = watch_once(&env, &once(&env, 300)).await;
    assert!(s.clean, "drift after identical dual writes:\n{}", s.text());
    assert_eq!(s.written_keys, total as u64);
    // A key written several times within the settle window is re-checked once.
    assert!(
        s.keys_checked >= keys.len() as u64,
        "{} keys checked, {} distinct keys written",
        s.keys_checked,
        keys.len()
    );
    assert_eq!(s.sweeps, 1);
    assert!(
        s.routes["tasks-write"].starts_with("tasks.task_id (guessed"),
        "{:?}",
        s.routes
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, WatchEvent::RouteMapped { column, .. } if column == "task_id")));
    // Every series exists, at 0 drift.
    for t in ["tasks", "task_events"] {
        for c in ["missing_in_new", "missing_in_legacy", "value_differs"] {
            assert_eq!(
                metric(
                    &metrics,
                    &format!("ficus_drift_rows{{class=\"{c}\",table=\"{t}\"}}")
                ),
                0.0
            );
        }
        assert!(
            metric(
                &metrics,
                &format!("ficus_drift_keys_checked_total{{table=\"{t}\"}}")
            ) > 0.0
        );
    }
    assert_eq!(metric(&metrics, "ficus_drift_verify_lag_seconds"), 0.0);
    assert!(metric(&metrics, "ficus_drift_last_sweep_timestamp_seconds") > 1.7e9);

    new.shutdown().await;
    legacy.shutdown().await;
}

/// A `set-status` stores a multi-key event payload (`from`, `to`, `blocked_reason`): written
/// to both apps one after the other, the rows are identical — to `verify` (every column,
/// event ids included) and to the watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_status_payloads_are_identical_on_both_sides() {
    let env = Env::new("watch_set_status", 12, BASE_CONFIG).await;
    let (legacy, new) = (env.legacy().await, env.new_side().await);
    let http = Http::new();
    let writes = [
        ("TASK-102", "set-status", r#"{"status":"in_progress"}"#),
        (
            "TASK-102",
            "set-status",
            r#"{"status":"blocked","blocked_reason":"wartet auf Zoë","blocked_by":"TASK-101"}"#,
        ),
        ("TASK-102", "set-status", r#"{"status":"in_review"}"#),
        ("TASK-103", "set-status", r#"{"status":"done"}"#),
        ("TASK-104", "update-notes", r#"{"notes":"«bientôt»"}"#),
    ];
    for (key, action, body) in writes {
        let path = format!("/api/tasks/{key}/{action}");
        let (st, _) = dual_write(
            &http,
            &legacy.url(),
            &new.url(),
            &env.state,
            "tasks-write",
            key,
            &path,
            body,
        )
        .await;
        assert_eq!(st, 200, "{path}");
    }
    let payload: String = env
        .sqlite()
        .query_row(
            "SELECT payload FROM task_events WHERE kind = 'status' ORDER BY id LIMIT 1 OFFSET 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        payload,
        r#"{"blocked_reason": "wartet auf Zo\u00eb", "from": "in_progress", "to": "blocked"}"#
    );
    let plan = ficus_migrator::plan_for(&env.sqlite, &env.pg.url, "public", &env.config)
        .await
        .unwrap();
    let v = ficus_migrator::verify(
        &plan,
        &env.sqlite,
        &env.pg.url,
        &Default::default(),
        &Arc::new(ficus_migrator::Observer::silent()),
    )
    .await
    .unwrap();
    assert!(v.clean, "{}", v.text());
    let events = v.tables.iter().find(|t| t.table == "task_events").unwrap();
    assert_eq!(events.source_rows, writes.len() as u64);
    let (s, _, _) = watch_once(&env, &once(&env, 200)).await;
    assert!(s.clean, "{}", s.text());
    assert_eq!(s.written_keys, writes.len() as u64);
    new.shutdown().await;
    legacy.shutdown().await;
}

/// Drift made behind the apps' backs — an UPDATE in PostgreSQL, a row only one side has — and
/// a write the proxy saw succeed on one side only, each reported and classified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_drift_is_found_and_classified() {
    let cfg = format!(
        "{BASE_CONFIG}
[watch.routes.tasks-write]
table = \"tasks\"
column = \"task_id\"
"
    );
    let env = Env::new("watch_injected", 20, &cfg).await;
    let pg = env.pg().await;
    let report = env.dir.path().join("drift.jsonl");

    // A clean start.
    let mut opts = once(&env, 200);
    opts.report = Some(report.clone());
    let (s, _, _) = watch_once(&env, &opts).await;
    assert!(s.clean, "{}", s.text());

    // An operator's UPDATE straight into PostgreSQL (updated_at untouched).
    pg.execute(
        "UPDATE tasks SET title = 'tampered' WHERE task_id = 'TASK-105'",
        &[],
    )
    .await
    .unwrap();
    // A row only PostgreSQL has, one only SQLite has.
    pg.execute(
        "INSERT INTO tasks (id, task_id, title, priority, status, completed, created_at, updated_at) \
         VALUES (900, 'TASK-900', 'pg only', 'LOW', 'pending', false, now(), now())",
        &[],
    )
    .await
    .unwrap();
    env.sqlite()
        .execute(
            "INSERT INTO tasks (id, task_id, title, priority, status, completed, created_at, updated_at) \
             VALUES (901, 'TASK-901', 'sqlite only', 'LOW', 'pending', 0, '2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000')",
            [],
        )
        .unwrap();
    let (s, events, metrics) = watch_once(&env, &opts).await;
    // One pass: one full sweep, whose differences are reported only after their re-check.
    assert_eq!(s.sweeps, 1, "{}", s.text());
    let sweep = events
        .iter()
        .position(|e| matches!(e, WatchEvent::Sweep { .. }))
        .expect("a sweep event");
    let first_drift = events
        .iter()
        .position(|e| matches!(e, WatchEvent::Drift { .. }))
        .expect("a drift event");
    assert!(sweep < first_drift, "{events:?}");
    assert!(!s.clean);
    let find = |key: &str| {
        s.drift
            .iter()
            .find(|d| d.key == format!("{{\"task_id\":\"{key}\"}}"))
            .unwrap_or_else(|| panic!("{key} not reported:\n{}", s.text()))
    };
    let d = find("TASK-105");
    assert_eq!(
        (d.table.as_str(), d.class),
        ("tasks", DriftClass::ValueDiffers)
    );
    assert_eq!(d.columns.len(), 1, "{d:?}");
    assert_eq!(d.columns[0].column, "title");
    assert_eq!(d.columns[0].new, "\"tampered\"");
    assert_eq!(find("TASK-900").class, DriftClass::MissingInLegacy);
    assert_eq!(find("TASK-901").class, DriftClass::MissingInNew);
    assert_eq!(s.drift.len(), 3, "{}", s.text());
    assert_eq!(
        metric(
            &metrics,
            "ficus_drift_rows{class=\"value_differs\",table=\"tasks\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &metrics,
            "ficus_drift_rows{class=\"missing_in_legacy\",table=\"tasks\"}"
        ),
        1.0
    );
    assert!(events.iter().all(|e| !matches!(
        e,
        WatchEvent::Drift {
            found_by: FoundBy::WrittenKey,
            ..
        }
    )));

    // Undo the injected drift; a write that reached the new side only (legacy answered 500).
    let (legacy_title,): (String,) = env
        .sqlite()
        .query_row(
            "SELECT title FROM tasks WHERE task_id = 'TASK-105'",
            [],
            |r| Ok((r.get(0)?,)),
        )
        .unwrap();
    pg.execute(
        "UPDATE tasks SET title = $1 WHERE task_id = 'TASK-105'",
        &[&legacy_title],
    )
    .await
    .unwrap();
    pg.execute("DELETE FROM tasks WHERE task_id = 'TASK-900'", &[])
        .await
        .unwrap();
    env.sqlite()
        .execute("DELETE FROM tasks WHERE task_id = 'TASK-901'", [])
        .unwrap();
    let new = env.new_side().await;
    let http = Http::new();
    let at = stamp();
    let r = http
        .call_at(
            &new.url(),
            "POST",
            "/api/tasks/TASK-110/update-notes",
            Some(r#"{"notes":"only new has this"}"#),
            Some(&at),
        )
        .await;
    assert_eq!(r.status, 200);
    record(
        &env.state,
        &DualWrite {
            at: &at,
            route: "tasks-write",
            key: "TASK-110",
            method: "POST",
            primary: "new",
            legacy_status: Some(500),
            new_status: Some(200),
        },
    );
    let (s, events, metrics) = watch_once(&env, &opts).await;
    assert_eq!(s.divergent_writes, 1);
    let div = events
        .iter()
        .position(|e| matches!(e, WatchEvent::DivergentWrite { key, legacy_status: Some(500), new_status: Some(200), table: Some(t), .. } if key == "TASK-110" && t == "tasks"))
        .expect("divergent write reported");
    let drift = events
        .iter()
        .position(|e| matches!(e, WatchEvent::Drift { found_by: FoundBy::WrittenKey, route: Some(r), drift, .. } if r == "tasks-write" && drift.key == "{\"task_id\":\"TASK-110\"}"))
        .expect("the key re-verified and reported");
    assert!(
        div < drift,
        "the divergent write is reported at once, before its re-check"
    );
    let d = s
        .drift
        .iter()
        .find(|d| d.table == "tasks")
        .expect("tasks drift");
    let cols: Vec<&str> = d.columns.iter().map(|c| c.column.as_str()).collect();
    assert_eq!(cols, ["status_notes", "updated_at"], "{d:?}");
    // The event the new side appended is missing in legacy (task_events, ids ignored).
    assert!(
        s.drift
            .iter()
            .any(|d| d.table == "task_events" && d.class == DriftClass::MissingInLegacy),
        "{}",
        s.text()
    );
    assert!(
        !s.drift
            .iter()
            .any(|d| d.key.contains("TASK-105") || d.key.contains("TASK-90")),
        "{}",
        s.text()
    );
    assert_eq!(
        metric(
            &metrics,
            "ficus_drift_divergent_writes_total{route=\"tasks-write\"}"
        ),
        1.0
    );

    // The report file holds every event as a JSON line.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&report)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.iter().any(|l| l["event"] == "drift"
        && l["class"] == "value_differs"
        && l["key"] == "{\"task_id\":\"TASK-105\"}"
        && l["columns"][0]["column"] == "title"));
    assert!(lines
        .iter()
        .any(|l| l["event"] == "divergent_write" && l["key"] == "TASK-110"));
    new.shutdown().await;
}

/// The long-running watch: a change in PostgreSQL is caught by a watermark sweep
/// (`updated_at`), reported once, resolved when undone; a keyed write still in flight is not
/// a false alarm; Ctrl-C (the stop future) ends it cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_running_watch_catches_and_resolves() {
    let env = Env::new("watch_loop", 20, BASE_CONFIG).await;
    let pg = env.pg().await;
    let mut opts = once(&env, 300);
    opts.once = false;
    opts.sweep_interval = Duration::from_millis(500);
    opts.full_sweep_every = 1000;
    let metrics = Arc::new(ficus_migrator::Metrics::new().unwrap());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (env_cfg, m2, o2) = (env.config.clone(), metrics.clone(), opts.clone());
    let task = tokio::spawn(async move {
        ficus_migrator::watch(
            &o2,
            &env_cfg,
            &m2,
            async {
                let _ = stop_rx.await;
            },
            move |e: &WatchEvent| {
                let _ = tx.send(e.clone());
            },
        )
        .await
    });
    // The first (full) sweep, then watermark sweeps.
    next(
        &mut rx,
        "full sweep",
        |e| matches!(e, WatchEvent::Sweep { kind, .. } if kind == "full"),
    )
    .await;
    next(
        &mut rx,
        "watermark sweep",
        |e| matches!(e, WatchEvent::Sweep { kind, .. } if kind.starts_with("watermark")),
    )
    .await;
    pg.execute(
        "UPDATE tasks SET priority = 'LOW', status = 'done', updated_at = now() WHERE task_id = 'TASK-107'",
        &[],
    )
    .await
    .unwrap();
    let e = next(&mut rx, "drift", |e| matches!(e, WatchEvent::Drift { .. })).await;
    let WatchEvent::Drift {
        drift, found_by, ..
    } = e
    else {
        unreachable!()
    };
    assert_eq!(found_by, FoundBy::Sweep);
    assert_eq!(drift.key, "{\"id\":7}");
    let cols: Vec<&str> = drift.columns.iter().map(|c| c.column.as_str()).collect();
    assert!(
        cols.contains(&"status") && cols.contains(&"updated_at"),
        "{cols:?}"
    );
    assert_eq!(
        metric(
            &metrics.render(),
            "ficus_drift_rows{class=\"value_differs\",table=\"tasks\"}"
        ),
        1.0
    );
    // Put PostgreSQL back to what SQLite holds: resolved by the next sweeps.
    let (prio, status, upd): (String, String, String) = env
        .sqlite()
        .query_row(
            "SELECT priority, status, updated_at FROM tasks WHERE task_id = 'TASK-107'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    pg.execute(
        "UPDATE tasks SET priority = $1, status = $2, updated_at = ($3::text || '+00')::timestamptz WHERE task_id = 'TASK-107'",
        &[&prio, &status, &upd],
    )
    .await
    .unwrap();
    // Only the full sweep re-checks a drifting row that no longer shows in the watermark, so
    // touch it within the watermark on both sides the same way: a stamped write.
    let (legacy, new) = (env.legacy().await, env.new_side().await);
    let http = Http::new();
    dual_write(
        &http,
        &legacy.url(),
        &new.url(),
        &env.state,
        "tasks-write",
        "TASK-107",
        "/api/tasks/TASK-107/update-notes",
        r#"{"notes":"back in sync"}"#,
    )
    .await;
    let e = next(&mut rx, "resolved", |e| {
        matches!(e, WatchEvent::Resolved { .. })
    })
    .await;
    assert!(matches!(e, WatchEvent::Resolved { key, .. } if key == "{\"id\":7}"));
    assert_eq!(
        metric(
            &metrics.render(),
            "ficus_drift_rows{class=\"value_differs\",table=\"tasks\"}"
        ),
        0.0
    );
    let _ = stop_tx.send(());
    let s = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops promptly")
        .unwrap()
        .unwrap();
    assert!(s.clean, "{}", s.text());
    assert!(s.sweeps >= 3);
    new.shutdown().await;
    legacy.shutdown().await;
}

/// A write still in flight when its key is first checked (the second side not written yet)
/// is not reported: the re-check a settle window later finds both sides agreeing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_write_is_not_a_false_alarm() {
    let env = Env::new("watch_inflight", 10, BASE_CONFIG).await;
    let (legacy, new) = (env.legacy().await, env.new_side().await);
    let http = Http::new();
    let at = stamp();
    let (path, body) = (
        "/api/tasks/TASK-102/update-notes",
        r#"{"notes":"slow second side"}"#,
    );
    let r = http
        .call_at(&legacy.url(), "POST", path, Some(body), Some(&at))
        .await;
    assert_eq!(r.status, 200);
    record(
        &env.state,
        &DualWrite {
            at: &at,
            route: "tasks-write",
            key: "TASK-102",
            method: "POST",
            primary: "legacy",
            legacy_status: Some(200),
            new_status: Some(200),
        },
    );
    // The new side gets the write after the first check (at + settle), before the re-check
    // (at + 2 settle): half a settle window of margin each way, so a loaded machine still
    // orders them.
    const SETTLE_MS: u64 = 2000;
    let (h2, n2, at2) = (http.clone(), new.url(), at.clone());
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(SETTLE_MS * 3 / 2)).await;
        h2.call_at(&n2, "POST", path, Some(body), Some(&at2))
            .await
            .status
    });
    let (s, events, _) = watch_once(&env, &once(&env, SETTLE_MS)).await;
    assert_eq!(late.await.unwrap(), 200);
    assert!(s.clean, "{}", s.text());
    assert!(!events.iter().any(|e| matches!(e, WatchEvent::Drift { .. })));
    new.shutdown().await;
    legacy.shutdown().await;
}

/// Polls `f` every 10 ms (the watch's clock does not move meanwhile) until it holds.
async fn until(what: &str, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within 20 s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The settle window and the re-check on a manual clock, no sleeping through windows: a key
/// written to legacy only is not checked before its settle window has passed, is checked
/// when the clock reaches it (a difference, not reported yet), and is reported only when the
/// re-check a window later still finds it; the late mirror, logged as a new write, resolves
/// it a window after that, and the next sweep, an interval of the clock later, resolves the
/// event log. The verify lag follows the clock exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settle_window_and_recheck_on_a_manual_clock() {
    let cfg = format!(
        "{BASE_CONFIG}
[watch.routes.tasks-write]
table = \"tasks\"
column = \"task_id\"
"
    );
    let env = Env::new("watch_manual_clock", 10, &cfg).await;
    let (legacy, new) = (env.legacy().await, env.new_side().await);
    let http = Http::new();
    let clock = ficus_core::ManualClock::new();
    const SETTLE: Duration = Duration::from_secs(2);

    // A write stamped now by the watch's clock, answered by legacy; its mirror is late.
    let at = ficus_core::stamp::request_time(ficus_core::Clock::utc(&*clock));
    let (path, body) = (
        "/api/tasks/TASK-102/update-notes",
        r#"{"notes":"mirror still on its way"}"#,
    );
    let r = http
        .call_at(&legacy.url(), "POST", path, Some(body), Some(&at))
        .await;
    assert_eq!(r.status, 200);
    let logged = |at: &str| {
        record(
            &env.state,
            &DualWrite {
                at,
                route: "tasks-write",
                key: "TASK-102",
                method: "POST",
                primary: "legacy",
                legacy_status: Some(200),
                new_status: Some(200),
            },
        )
    };
    logged(&at);

    let mut opts = once(&env, SETTLE.as_millis() as u64);
    opts.once = false;
    opts.tick = Duration::from_millis(10);
    opts.sweep_interval = Duration::from_secs(3600);
    let shared: ficus_core::SharedClock = clock.clone();
    opts.clock = shared;
    let metrics = Arc::new(ficus_migrator::Metrics::new().unwrap());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (cfg, m2, o2) = (env.config.clone(), metrics.clone(), opts.clone());
    let task = tokio::spawn(async move {
        ficus_migrator::watch(
            &o2,
            &cfg,
            &m2,
            async {
                let _ = stop_rx.await;
            },
            move |e: &WatchEvent| {
                let _ = tx.send(e.clone());
            },
        )
        .await
    });
    let gauge = |name: &str| metric(&metrics.render(), name);
    let checked = || gauge("ficus_drift_keys_checked_total{table=\"tasks\"}");
    let lag = || gauge("ficus_drift_verify_lag_seconds");

    // The watch read the write (its route mapped) and holds the key.
    next(&mut rx, "route mapped", |e| {
        matches!(e, WatchEvent::RouteMapped { .. })
    })
    .await;
    // Half a window on: the key waits (its lag is exactly the clock's half window), nothing
    // is checked, no sweep has run.
    clock.advance(SETTLE / 2);
    until("verify lag of 1 s", || lag() == 1.0).await;
    assert_eq!(checked(), 0.0);
    assert!(rx.try_recv().is_err(), "no event before the settle window");

    // The window has passed: the key is checked (it differs: not reported yet), and the
    // first full sweep runs (its difference, too, waits for its re-check).
    clock.advance(SETTLE / 2);
    next(
        &mut rx,
        "the first sweep",
        |e| matches!(e, WatchEvent::Sweep { kind, .. } if kind == "full"),
    )
    .await;
    let after_first = checked();
    assert!(after_first >= 1.0);
    until("verify lag of 2 s", || lag() == 2.0).await;
    assert!(rx.try_recv().is_err(), "a first difference is not reported");

    // A window later the re-check still finds it: reported as the write's drift.
    clock.advance(SETTLE);
    let e = next(&mut rx, "drift", |e| matches!(e, WatchEvent::Drift { .. })).await;
    let WatchEvent::Drift {
        found_by,
        route,
        drift,
        ..
    } = e
    else {
        unreachable!()
    };
    assert_eq!(found_by, FoundBy::WrittenKey);
    assert_eq!(route.as_deref(), Some("tasks-write"));
    assert_eq!(drift.key, r#"{"task_id":"TASK-102"}"#);
    assert_eq!(drift.class, DriftClass::ValueDiffers);
    let cols: Vec<&str> = drift.columns.iter().map(|c| c.column.as_str()).collect();
    assert_eq!(cols, ["status_notes", "updated_at"], "{drift:?}");
    assert!(checked() > after_first);
    // The write also appended to the event log, which legacy alone has now: the sweep saw
    // that table differ and, having no key, it is verified again a window later — drifting.
    let e = next(
        &mut rx,
        "task_events drift",
        |e| matches!(e, WatchEvent::Drift { drift, .. } if drift.table == "task_events"),
    )
    .await;
    assert!(matches!(
        e,
        WatchEvent::Drift { found_by: FoundBy::Sweep, drift, .. }
            if drift.class == DriftClass::MissingInNew
    ));
    until("no key waiting", || lag() == 0.0).await;
    assert_eq!(
        gauge("ficus_drift_rows{class=\"value_differs\",table=\"tasks\"}"),
        1.0
    );

    // The mirror arrives and is logged: a window later the row agrees again.
    let r = http
        .call_at(&new.url(), "POST", path, Some(body), Some(&at))
        .await;
    assert_eq!(r.status, 200);
    let again = ficus_core::stamp::request_time(ficus_core::Clock::utc(&*clock));
    logged(&again);
    clock.advance(SETTLE / 2);
    until("the second write read", || lag() == 1.0).await;
    clock.advance(SETTLE / 2);
    let e = next(&mut rx, "resolved", |e| {
        matches!(e, WatchEvent::Resolved { .. })
    })
    .await;
    assert!(matches!(e, WatchEvent::Resolved { key, .. } if key == r#"{"task_id":"TASK-102"}"#));
    // The next sweep is due a sweep interval (an hour of this clock) after the first: the
    // event log agrees again.
    clock.advance(opts.sweep_interval);
    let e = next(
        &mut rx,
        "task_events resolved",
        |e| matches!(e, WatchEvent::Resolved { table, .. } if table == "task_events"),
    )
    .await;
    assert!(matches!(e, WatchEvent::Resolved { .. }));
    let _ = stop_tx.send(());
    let s = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stops promptly")
        .unwrap()
        .unwrap();
    assert!(s.clean, "{}", s.text());
    assert_eq!(s.written_keys, 2);
    assert_eq!(s.sweeps, 2);
    new.shutdown().await;
    legacy.shutdown().await;
}
