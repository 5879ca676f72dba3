//! Change capture on SQLite and `migrate run --follow`: what the triggers record, that
//! `remove` leaves the app's schema exactly as it was, and that following converges
//! PostgreSQL to SQLite's rows — inserts, updates, deletes, key changes, rows arriving in an
//! order foreign keys and UNIQUE constraints dislike, tables without a key, quarantine.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{build_plan, pg, run, sqlite, temp_dir, verify};
use ficus_migrator::capture::{self, Installed};
use ficus_migrator::follow::{self, FollowMetrics, FollowOptions, FollowStop};
use ficus_migrator::{MigrationConfig, Plan, RunOptions};
use testkit::pgtemp;

const SCHEMA: &str = "
PRAGMA foreign_keys = ON;
CREATE TABLE teams (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE people (
  id INTEGER PRIMARY KEY,
  email TEXT NOT NULL UNIQUE,
  team_id INTEGER REFERENCES teams(id),
  score REAL
);
CREATE TABLE tags (person_id INTEGER NOT NULL, tag TEXT NOT NULL, PRIMARY KEY (person_id, tag)) WITHOUT ROWID;
CREATE TABLE log (msg TEXT, n INTEGER);
INSERT INTO teams VALUES (1, 'red'), (2, 'blue');
INSERT INTO people VALUES (1, 'a@x', 1, 1.5), (2, 'b@x', 2, 2.5), (3, 'c@x', NULL, NULL);
INSERT INTO tags VALUES (1, 'admin'), (2, 'ops');
INSERT INTO log VALUES ('hello', 1), ('hello', 1);
";

fn schema_dump(p: &Path) -> Vec<(String, String, String)> {
    let c = rusqlite::Connection::open(p).unwrap();
    let mut st = c
        .prepare("SELECT type, name, coalesce(sql, '') FROM sqlite_master ORDER BY type, name")
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn exec(p: &Path, sql: &str) {
    let c = rusqlite::Connection::open(p).unwrap();
    c.execute_batch(&format!("PRAGMA foreign_keys = ON; {sql}"))
        .unwrap();
}

#[test]
fn capture_records_keys_and_remove_restores_the_schema() {
    let d = temp_dir("capture");
    let src = sqlite(&d, SCHEMA);
    let before = schema_dump(&src);
    let plan = build_plan(&src, &MigrationConfig::default());
    let Installed::Created { tables } = capture::install(&src, &plan.capture_tables()).unwrap()
    else {
        panic!("not created")
    };
    assert_eq!(tables, ["teams", "people", "tags", "log"]);
    // Idempotent.
    assert!(matches!(
        capture::install(&src, &plan.capture_tables()).unwrap(),
        Installed::AlreadyThere { .. }
    ));
    exec(
        &src,
        "INSERT INTO people VALUES (4, 'd@x', 1, 0);
         UPDATE people SET score = 9 WHERE id = 1;
         UPDATE people SET id = 40 WHERE id = 4;
         DELETE FROM tags WHERE person_id = 2;
         INSERT INTO tags VALUES (3, 'it''s');
         INSERT INTO log VALUES ('x', 2);",
    );
    let c = rusqlite::Connection::open(&src).unwrap();
    let got: Vec<(String, String, Option<String>, Option<String>)> = c
        .prepare("SELECT tbl, op, k, old_k FROM _ficus_changes ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let s = |x: &str| Some(x.to_string());
    assert_eq!(
        got,
        vec![
            ("people".into(), "I".into(), s("4"), None),
            ("people".into(), "U".into(), s("1"), None),
            ("people".into(), "U".into(), s("40"), s("4")),
            ("tags".into(), "D".into(), s("2,'ops'"), None),
            ("tags".into(), "I".into(), s("3,'it''s'"), None),
            ("log".into(), "I".into(), None, None),
        ]
    );
    let st = capture::status(&src).unwrap();
    assert!(st.installed && st.logged == 6 && st.last_id == 6, "{st:?}");
    // Capture's objects are not the app's: the plan is the same with them installed.
    let again = build_plan(&src, &MigrationConfig::default());
    assert_eq!(again.tables.len(), plan.tables.len());
    capture::remove(&src).unwrap();
    assert_eq!(schema_dump(&src), before, "remove left the schema changed");
    assert!(!capture::status(&src).unwrap().installed);
}

#[test]
fn install_refuses_a_name_it_would_take() {
    let d = temp_dir("capture-clash");
    let src = sqlite(
        &d,
        "CREATE TABLE t (id INTEGER PRIMARY KEY); CREATE TABLE _ficus_changes (x);",
    );
    let plan = build_plan(&src, &MigrationConfig::default());
    let e = capture::install(&src, &plan.capture_tables())
        .unwrap_err()
        .to_string();
    assert!(e.contains("table _ficus_changes already exists"), "{e}");
    assert!(e.contains(&src.display().to_string()), "{e}");
}

async fn follow_once(plan: &Plan, src: &Path, url: &str) -> follow::FollowSummary {
    let mut opts = FollowOptions::new(src, url);
    opts.until_caught_up = true;
    let m = FollowMetrics::register(&prometheus::Registry::new()).unwrap();
    follow::follow(plan, &opts, &m, std::future::pending(), |_| {})
        .await
        .unwrap()
}

async fn capture_and_copy(src: &Path, url: &str) -> Plan {
    let plan0 = build_plan(src, &MigrationConfig::default());
    capture::install(src, &plan0.capture_tables()).unwrap();
    let plan = ficus_migrator::plan_for_run(src, url, "public", &MigrationConfig::default())
        .await
        .unwrap();
    assert!(plan.source.capture_epoch.is_some());
    run(&plan, src, url, &RunOptions::default()).await;
    plan
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_converges_inserts_updates_deletes_and_key_changes() {
    let d = temp_dir("follow-basic");
    let src = sqlite(&d, SCHEMA);
    let db = pgtemp::fresh_database("follow_basic").unwrap();
    // Writes between install and copy are in the snapshot and in the log: harmless.
    let plan = capture_and_copy(&src, &db.url).await;
    exec(
        &src,
        // A child before its parent (in log order the parent comes later), a unique value
        // swapped between two rows, a key change, deletes, a keyless table.
        "INSERT INTO teams VALUES (3, 'green');
         INSERT INTO people VALUES (5, 'e@x', 3, 5.0);
         UPDATE people SET email = 'tmp' WHERE id = 1;
         UPDATE people SET email = 'a@x' WHERE id = 2;
         UPDATE people SET email = 'b@x' WHERE id = 1;
         UPDATE teams SET name = 'crimson' WHERE id = 1;
         UPDATE people SET id = 30 WHERE id = 3;
         DELETE FROM tags WHERE person_id = 1;
         INSERT INTO tags VALUES (5, 'new');
         DELETE FROM log WHERE rowid = 1;
         INSERT INTO log VALUES ('bye', 3);",
    );
    let s = follow_once(&plan, &src, &db.url).await;
    assert_eq!(s.stop, FollowStop::CaughtUp);
    assert!(s.changes >= 11, "{s:?}");
    let v = verify(&plan, &src, &db.url).await;
    assert!(v.clean, "{}", v.text());
    let c = pg(&db.url).await;
    let n: i64 = c
        .query_one("SELECT count(*) FROM people WHERE id = 3", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "the old key of a re-keyed row is gone");
    // The log is trimmed below the applied position.
    let st = capture::status(&src).unwrap();
    assert!(st.logged <= 1, "{st:?}");
    // Nothing more: a second pass applies nothing.
    let s2 = follow_once(&plan, &src, &db.url).await;
    assert_eq!((s2.changes, s2.position), (0, s.position));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_that_does_not_convert_is_quarantined_and_its_row_leaves_postgres() {
    let d = temp_dir("follow-quarantine");
    let src = sqlite(&d, SCHEMA);
    let db = pgtemp::fresh_database("follow_quarantine").unwrap();
    let plan = capture_and_copy(&src, &db.url).await;
    exec(&src, "UPDATE people SET score = 'lots' WHERE id = 2;");
    follow_once(&plan, &src, &db.url).await;
    let c = pg(&db.url).await;
    let q = c
        .query_one(
            "SELECT key, column_name, raw_display FROM ficus.quarantine WHERE table_name = 'people'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (q.get::<_, String>(0), q.get::<_, String>(1)),
        ("{\"id\":2}".to_string(), "score".to_string())
    );
    let n: i64 = c
        .query_one("SELECT count(*) FROM people WHERE id = 2", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    // Fixed in SQLite: carried again, the quarantine record goes.
    exec(&src, "UPDATE people SET score = 3 WHERE id = 2;");
    follow_once(&plan, &src, &db.url).await;
    let q: i64 = c
        .query_one(
            "SELECT count(*) FROM ficus.quarantine WHERE table_name = 'people'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(q, 0);
    let v = verify(&plan, &src, &db.url).await;
    assert!(v.clean, "{}", v.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_change_does_not_invalidate_the_run_while_capture_is_on() {
    let d = temp_dir("follow-fingerprint");
    let src = sqlite(&d, SCHEMA);
    let db = pgtemp::fresh_database("follow_fingerprint").unwrap();
    let plan = capture_and_copy(&src, &db.url).await;
    exec(&src, "INSERT INTO teams VALUES (9, 'late');");
    let again = ficus_migrator::plan_for_run(&src, &db.url, "public", &MigrationConfig::default())
        .await
        .unwrap();
    assert_eq!(again.fingerprint, plan.fingerprint);
    let rep = ficus_migrator::run(
        &again,
        &src,
        &db.url,
        &RunOptions::default(),
        &Arc::new(ficus_migrator::Observer::silent()),
    )
    .await
    .unwrap();
    assert!(rep.already_complete);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_added_on_the_source_is_followed_with_its_values() {
    let d = temp_dir("follow-addcol");
    let src = sqlite(&d, SCHEMA);
    let db = pgtemp::fresh_database("follow_addcol").unwrap();
    let plan = capture_and_copy(&src, &db.url).await;
    exec(
        &src,
        "ALTER TABLE people ADD COLUMN nickname TEXT DEFAULT 'none';
         UPDATE people SET nickname = 'bee' WHERE id = 2;
         INSERT INTO people (id, email, nickname) VALUES (7, 'g@x', 'gee');",
    );
    let mut events = Vec::new();
    let mut opts = FollowOptions::new(&src, &db.url);
    opts.until_caught_up = true;
    let m = FollowMetrics::register(&prometheus::Registry::new()).unwrap();
    let s = follow::follow(&plan, &opts, &m, std::future::pending(), |e| {
        events.push(e.clone())
    })
    .await
    .unwrap();
    assert_eq!(s.stop, FollowStop::CaughtUp);
    assert!(
        events.iter().any(|e| matches!(e, follow::FollowEvent::ColumnsAdded { columns } if columns == &["people.nickname"])),
        "{events:?}"
    );
    let c = pg(&db.url).await;
    let rows: Vec<(i64, Option<String>)> = c
        .query("SELECT id, nickname FROM people ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let s = |x: &str| Some(x.to_string());
    assert_eq!(
        rows,
        vec![(1, s("none")), (2, s("bee")), (3, s("none")), (7, s("gee"))]
    );
    // The evolved plan is the migration's now: a restart goes on from it.
    let again = ficus_migrator::plan_for_run(&src, &db.url, "public", &MigrationConfig::default())
        .await
        .unwrap();
    assert_eq!(again.tables[1].columns.len(), 5);
    let v = verify(&again, &src, &db.url).await;
    assert!(v.clean, "{}", v.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_schema_change_stops_following_naming_it() {
    let d = temp_dir("follow-schema");
    let src = sqlite(&d, SCHEMA);
    let db = pgtemp::fresh_database("follow_schema").unwrap();
    let plan = capture_and_copy(&src, &db.url).await;
    exec(
        &src,
        "ALTER TABLE people DROP COLUMN score; INSERT INTO teams VALUES (8, 'x');",
    );
    let s = follow_once(&plan, &src, &db.url).await;
    let FollowStop::SchemaChanged { changes, position } = &s.stop else {
        panic!("{s:?}")
    };
    assert_eq!(*position, 0);
    assert_eq!(
        changes,
        &["table people: column(s) score dropped or renamed"]
    );
    // Nothing captured is lost: the log still holds the insert.
    assert!(capture::status(&src).unwrap().logged >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_recopies_every_differing_row_and_dry_run_only_lists() {
    let d = temp_dir("repair");
    let src = sqlite(&d, SCHEMA);
    let db = pgtemp::fresh_database("repair").unwrap();
    let plan = build_plan(&src, &MigrationConfig::default());
    run(&plan, &src, &db.url, &RunOptions::default()).await;
    let c = pg(&db.url).await;
    // Drift on both sides, behind the tools' backs.
    c.batch_execute(
        "UPDATE people SET email = 'edited' WHERE id = 1;
         DELETE FROM tags WHERE person_id = 2;
         INSERT INTO teams VALUES (77, 'only in postgres');
         INSERT INTO log VALUES ('extra', 9);",
    )
    .await
    .unwrap();
    exec(&src, "INSERT INTO people VALUES (8, 'h@x', 2, 8.0);");
    let obs = Arc::new(ficus_migrator::Observer::silent());
    let opts = ficus_migrator::repair::RepairOptions {
        dry_run: true,
        ..Default::default()
    };
    let dry = ficus_migrator::repair::repair(&plan, &src, &db.url, &opts, &obs)
        .await
        .unwrap();
    let mut listed: Vec<(String, String, String)> = dry
        .rows
        .iter()
        .map(|r| (r.table.clone(), r.key.clone(), r.action.clone()))
        .collect();
    listed.sort();
    let row = |t: &str, k: &str, a: &str| (t.to_string(), k.to_string(), a.to_string());
    assert_eq!(
        listed,
        vec![
            row("people", "{\"id\":1}", "update"),
            row("people", "{\"id\":8}", "insert"),
            row("tags", "{\"person_id\":2,\"tag\":\"ops\"}", "insert"),
            row("teams", "{\"id\":77}", "delete"),
        ]
    );
    assert_eq!(dry.replaced_tables, ["log"]);
    assert!(dry.after.is_none());
    let still: String = c
        .query_one("SELECT email FROM people WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(still, "edited", "a dry run wrote");
    let rep = ficus_migrator::repair::repair(
        &plan,
        &src,
        &db.url,
        &ficus_migrator::repair::RepairOptions::default(),
        &obs,
    )
    .await
    .unwrap();
    assert!(rep.ok(), "{}", rep.text());
    assert!(rep.after.as_ref().unwrap().clean);
}

/// The legacy app is never blocked into failing: a source in rollback-journal mode (the
/// strictest: a reader blocks a writer's commit) with a writer whose busy timeout is Python's
/// sqlite3 default (5 s) writing all through the snapshot copy and the follow rounds. No
/// write fails with "database is locked"; the longest write wait is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_journal_writer_is_never_locked_out() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let d = temp_dir("follow-journal");
    let src = sqlite(
        &d,
        "PRAGMA journal_mode = DELETE;
         CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, n INTEGER);
         WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 50000)
         INSERT INTO items SELECT i, 'item ' || i, i FROM s;",
    );
    let mode: String = rusqlite::Connection::open(&src)
        .unwrap()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
    let db = pgtemp::fresh_database("follow_journal").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (src, stop) = (src.clone(), stop.clone());
        std::thread::spawn(move || {
            let c = rusqlite::Connection::open(&src).unwrap();
            c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
            let (mut writes, mut failed, mut worst) = (0u64, Vec::new(), std::time::Duration::ZERO);
            let mut i = 0i64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let t = std::time::Instant::now();
                let r = c.execute_batch(&format!(
                    "BEGIN IMMEDIATE;
                     UPDATE items SET n = n + 1 WHERE id = {};
                     INSERT INTO items (name, n) VALUES ('new {i}', {i});
                     DELETE FROM items WHERE id = {};
                     COMMIT;",
                    1 + i * 7 % 40_000,
                    40_000 + i
                ));
                worst = worst.max(t.elapsed());
                match r {
                    Ok(()) => writes += 1,
                    Err(e) => {
                        let _ = c.execute_batch("ROLLBACK");
                        failed.push(e.to_string());
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            (writes, failed, worst)
        })
    };
    let plan = capture_and_copy(&src, &db.url).await;
    for _ in 0..3 {
        follow_once(&plan, &src, &db.url).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (writes, failed, worst) = writer.join().unwrap();
    eprintln!("rollback-journal writer: {writes} write transactions, longest {worst:?}");
    assert!(failed.is_empty(), "writes failed: {failed:?}");
    assert!(writes > 50, "the writer barely ran: {writes}");
    follow_once(&plan, &src, &db.url).await;
    let v = verify(&plan, &src, &db.url).await;
    assert!(v.clean, "{}", v.text());
}
