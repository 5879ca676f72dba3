//! `migrate watch --proxy-state postgres://...`: the dual-write log of proxies whose state
//! store is PostgreSQL (`ficus_proxy.dual_writes`, appended to by every replica) is read like
//! the SQLite one — in its own database or in the `--target` one — including a row that
//! commits after a higher id was already read (two replicas inserting concurrently).

mod dualwrite;

use std::time::Duration;

use dualwrite::{once, stamp, watch_once, Env, Http, BASE_CONFIG};
use ficus_migrator::WatchEvent;

/// A connection to a proxy state database, `ficus_proxy.dual_writes` created as the proxy does.
async fn state_client(url: &str) -> tokio_postgres::Client {
    let mut c = testkit::pg::connect(url).await;
    ficus_state::schema::create_pg(&mut c).await.unwrap();
    c
}

/// The row a proxy replica appends for one write (statuses as the sides answered), written
/// by hand so the test controls when each replica's transaction commits.
async fn record_pg(
    c: &impl tokio_postgres::GenericClient,
    at: &str,
    key: &str,
    legacy: u16,
    new: u16,
) {
    let ok = |s: u16| (200..300).contains(&s);
    c.execute(
        "INSERT INTO ficus_proxy.dual_writes
             (at, route, key, method, primary_side, legacy_status, new_status, divergent)
         VALUES ($1, 'tasks-write', $2, 'POST', 'legacy', $3, $4, $5)",
        &[
            &at,
            &key,
            &i32::from(legacy),
            &i32::from(new),
            &i32::from(ok(legacy) != ok(new)),
        ],
    )
    .await
    .unwrap();
}

/// The same write to both task apps, stamped once; returns the stamp and both statuses.
async fn write_both(
    http: &Http,
    legacy: &str,
    new: &str,
    key: &str,
    body: &str,
) -> (String, u16, u16) {
    let at = stamp();
    let path = format!("/api/tasks/{key}/update-notes");
    let ls = http
        .call_at(legacy, "POST", &path, Some(body), Some(&at))
        .await
        .status;
    let ns = http
        .call_at(new, "POST", &path, Some(body), Some(&at))
        .await
        .status;
    assert_eq!((ls, ns), (200, 200), "{path}");
    (at, ls, ns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reads_dual_writes_from_a_postgres_state_store() {
    let env = Env::new("watch_pg_state", 12, BASE_CONFIG).await;
    let state_db = testkit::pg::fresh_database("watch_pg_state_proxy").unwrap();
    let (legacy, new) = (env.legacy().await, env.new_side().await);
    let http = Http::new();
    // Two "replicas" (connections) append to one table, alternating.
    let replicas = [
        state_client(&state_db.url).await,
        state_client(&state_db.url).await,
    ];
    let keys = ["TASK-101", "TASK-102", "TASK-103", "TASK-104", "TASK-102"];
    for (i, key) in keys.iter().enumerate() {
        let body = format!(r#"{{"notes":"pg state {i}"}}"#);
        let (at, ls, ns) = write_both(&http, &legacy.url(), &new.url(), key, &body).await;
        record_pg(&replicas[i % 2], &at, key, ls, ns).await;
    }
    let mut opts = once(&env, 200);
    opts.proxy_state = Some(state_db.url.clone().into());
    let (s, _, _) = watch_once(&env, &opts).await;
    assert!(s.clean, "{}", s.text());
    assert_eq!(s.written_keys, keys.len() as u64);
    assert_eq!(s.divergent_writes, 0);

    // The same log in the --target database (the table is created there if absent).
    let target = state_client(&env.pg.url).await;
    let (at, ls, ns) = write_both(
        &http,
        &legacy.url(),
        &new.url(),
        "TASK-105",
        r#"{"notes":"t"}"#,
    )
    .await;
    record_pg(&target, &at, "TASK-105", ls, ns).await;
    record_pg(&target, &stamp(), "TASK-106", 200, 500).await;
    let mut opts = once(&env, 200);
    opts.proxy_state = Some(env.pg.url.clone().into());
    let (s, events, _) = watch_once(&env, &opts).await;
    assert_eq!(s.written_keys, 2);
    assert_eq!(s.divergent_writes, 1, "{events:?}");
    assert!(events.iter().any(|e| matches!(e,
        WatchEvent::DivergentWrite { key, new_status: Some(500), .. } if key == "TASK-106")));
    new.shutdown().await;
    legacy.shutdown().await;
}

/// Replica A takes an id and commits late; replica B's higher id is read first. The watch
/// remembers the gap and reads A's row once it commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_committed_after_a_higher_id_is_still_read() {
    let env = Env::new("watch_pg_state_gap", 8, BASE_CONFIG).await;
    let state_db = testkit::pg::fresh_database("watch_pg_state_gap_proxy").unwrap();
    let (legacy, new) = (env.legacy().await, env.new_side().await);
    let http = Http::new();
    let mut slow = state_client(&state_db.url).await;
    let fast = state_client(&state_db.url).await;
    let (at_a, ls, ns) = write_both(
        &http,
        &legacy.url(),
        &new.url(),
        "TASK-101",
        r#"{"notes":"a"}"#,
    )
    .await;
    let tx = slow.transaction().await.unwrap();
    record_pg(&tx, &at_a, "TASK-101", ls, ns).await; // id 1, not committed yet
    let (at_b, ls, ns) = write_both(
        &http,
        &legacy.url(),
        &new.url(),
        "TASK-102",
        r#"{"notes":"b"}"#,
    )
    .await;
    record_pg(&fast, &at_b, "TASK-102", ls, ns).await; // id 2, committed
    let mut opts = once(&env, 3000);
    opts.proxy_state = Some(state_db.url.clone().into());
    let commit_late = async {
        // The watch has read id 2 by now (it polls every 50 ms; its pass lasts the 3 s settle).
        tokio::time::sleep(Duration::from_millis(1500)).await;
        tx.commit().await.unwrap();
    };
    let ((s, _, _), ()) = tokio::join!(watch_once(&env, &opts), commit_late);
    assert!(s.clean, "{}", s.text());
    assert_eq!(s.written_keys, 2, "{}", s.text());
    new.shutdown().await;
    legacy.shutdown().await;
}
