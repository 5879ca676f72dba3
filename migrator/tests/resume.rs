//! Kill -9 mid-run, resume, no gap, no duplicate; one changed byte found by verify; the
//! gen_taskdb.py database end to end.
//!
//! The migrating process is this test binary re-executed as a child (test `child_migrator`,
//! which does nothing unless FICUS_MIG_CHILD_* are set), so the parent can SIGKILL it.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use ficus_migrator::{Difference, MigrationConfig, RunOptions};

const SRC: &str = "FICUS_MIG_CHILD_SOURCE";
const DST: &str = "FICUS_MIG_CHILD_TARGET";

/// The child side: migrate slowly (small batches, a pause after each) so it can be killed.
#[tokio::test]
async fn child_migrator() {
    let (Ok(src), Ok(dst)) = (std::env::var(SRC), std::env::var(DST)) else {
        return;
    };
    let src = std::path::PathBuf::from(src);
    let plan = build_plan(&src, &MigrationConfig::default());
    let opts = RunOptions {
        batch_rows: 400,
        pause_after_batch: Some(Duration::from_millis(15)),
        ..Default::default()
    };
    run(&plan, &src, &dst, &opts).await;
}

fn spawn_child(src: &std::path::Path, url: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_migrator",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(SRC, src)
        .env(DST, url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn sigkill(mut c: Child) {
    // std's Child::kill is SIGKILL on Unix.
    c.kill().unwrap();
    let st = c.wait().unwrap();
    assert!(!st.success(), "child finished before it could be killed");
}

async fn progress(c: &tokio_postgres::Client) -> (i64, String) {
    let copied = c
        .query_opt(
            "SELECT coalesce(sum(rows_copied), 0)::bigint FROM ficus.checkpoints WHERE target_schema = 'public'",
            &[],
        )
        .await
        .ok()
        .flatten()
        .map_or(0, |r| r.get(0));
    let phase = c
        .query_opt(
            "SELECT phase FROM ficus.migrations WHERE target_schema = 'public'",
            &[],
        )
        .await
        .ok()
        .flatten()
        .map_or(String::new(), |r| r.get(0));
    (copied, phase)
}

async fn wait_for(c: &tokio_postgres::Client, what: &str, f: impl Fn(i64, &str) -> bool) {
    let start = Instant::now();
    loop {
        let (n, p) = progress(c).await;
        if f(n, &p) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what} (copied {n}, phase {p:?})"
        );
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
}

#[tokio::test]
async fn sigkill_at_several_points_then_resume_finishes_clean_without_duplicates() {
    let d = temp_dir("kill");
    let src = d.path().join("taskdb.sqlite");
    gen_taskdb(&src, 2500);
    let db = testkit::pg::fresh_database("mig_kill").unwrap();
    let c = pg(&db.url).await;

    // 1: right after start (before or during table creation).
    let child = spawn_child(&src, &db.url);
    tokio::time::sleep(Duration::from_millis(30)).await;
    sigkill(child);
    // 2: early in the copy.
    let child = spawn_child(&src, &db.url);
    wait_for(&c, "first batches", |n, _| n >= 1_000).await;
    sigkill(child);
    let (after2, _) = progress(&c).await;
    // 3: later in the copy (resumed from the checkpoint, not from zero).
    let child = spawn_child(&src, &db.url);
    wait_for(&c, "more batches", |n, _| n >= after2 + 3_000).await;
    sigkill(child);
    // 4: during the post-load steps.
    let child = spawn_child(&src, &db.url);
    wait_for(&c, "post-load", |_, p| p == "postload").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    sigkill(child);

    // Final run in-process finishes.
    let plan = build_plan(&src, &MigrationConfig::default());
    let metrics = Arc::new(ficus_migrator::Metrics::new().unwrap());
    let obs = Arc::new(ficus_migrator::Observer::new(metrics.clone(), true));
    let rep = ficus_migrator::run(&plan, &src, &db.url, &RunOptions::default(), &obs)
        .await
        .unwrap();
    assert!(rep.resumed && !rep.already_complete);
    // The resumed run's counters start from the checkpoint: copied = all rows, not just
    // this run's share.
    for t in &rep.tables {
        assert!(
            t.copied_now < t.rows_copied,
            "{}: resumed, not recopied",
            t.table
        );
        assert_eq!(
            metrics
                .rows_copied
                .with_label_values(&[t.table.as_str()])
                .get(),
            t.rows_copied,
            "{}",
            t.table
        );
    }
    let v = verify(&plan, &src, &db.url).await;
    assert!(v.clean, "{}", v.text());
    for t in &rep.tables {
        assert_eq!(t.rows_copied, t.source_rows, "{}", t.table);
        let dup: i64 = c
            .query_one(
                &format!("SELECT count(*) - count(DISTINCT id) FROM {}", t.table),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(dup, 0, "duplicates in {}", t.table);
        let n: i64 = c
            .query_one(&format!("SELECT count(*) FROM {}", t.table), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n as u64, t.source_rows);
    }
    // Re-running a finished migration is a no-op.
    let again = run(&plan, &src, &db.url, &RunOptions::default()).await;
    assert!(again.already_complete);
    let st = ficus_migrator::status(&db.url, "public").await.unwrap();
    assert_eq!(st.phase, "done");
    assert!(st
        .tables
        .iter()
        .all(|t| t.copy_done && t.verified_clean == Some(true)));
}

#[tokio::test]
async fn one_changed_byte_is_named_by_row_and_column() {
    let d = temp_dir("byte");
    let src = d.path().join("taskdb.sqlite");
    gen_taskdb(&src, 1500);
    let db = testkit::pg::fresh_database("mig_byte").unwrap();
    let (plan, _) = migrate_clean(&src, &db.url, &MigrationConfig::default()).await;
    let c = pg(&db.url).await;
    // One byte of one value of one row.
    c.execute(
        "UPDATE task_events SET payload = overlay(payload placing 'X' from 3 for 1) WHERE id = 777",
        &[],
    )
    .await
    .unwrap();
    let v = verify(&plan, &src, &db.url).await;
    assert!(!v.clean);
    let ev = v.tables.iter().find(|t| t.table == "task_events").unwrap();
    assert_eq!(
        (ev.missing, ev.extra, ev.differs),
        (0, 0, 1),
        "{}",
        v.text()
    );
    assert_eq!(ev.mismatched_chunks, 1);
    match &ev.differences[..] {
        [Difference::ValueDiffers {
            key,
            column,
            source,
            target,
        }] => {
            assert_eq!(key, r#"{"id":777}"#);
            assert_eq!(column, "payload");
            assert_ne!(source, target);
            assert!(target.contains('X'), "{target}");
        }
        other => panic!("{other:?}"),
    }
    assert!(v.tables.iter().find(|t| t.table == "tasks").unwrap().clean);

    // A missing row and an extra row are named too.
    c.execute("DELETE FROM task_events WHERE id = 5", &[])
        .await
        .unwrap();
    c.execute(
        "INSERT INTO task_events (id, task_id, kind, created_at) VALUES (99999999, 'TASK-101', 'x', now())",
        &[],
    )
    .await
    .unwrap();
    let v = verify(&plan, &src, &db.url).await;
    let ev = v.tables.iter().find(|t| t.table == "task_events").unwrap();
    assert_eq!(
        (ev.missing, ev.extra, ev.differs),
        (1, 1, 1),
        "{}",
        v.text()
    );
    assert!(ev.differences.contains(&Difference::MissingInTarget {
        key: r#"{"id":5}"#.into(),
        reason: None
    }));
    assert!(ev.differences.contains(&Difference::ExtraInTarget {
        key: r#"{"id":99999999}"#.into()
    }));
    let st = ficus_migrator::status(&db.url, "public").await.unwrap();
    let t = st.tables.iter().find(|t| t.table == "task_events").unwrap();
    assert_eq!(t.verified_clean, Some(false));
}

#[tokio::test]
async fn taskdb_end_to_end_keeps_types_and_constraints() {
    let d = temp_dir("taskdb");
    let src = d.path().join("taskdb.sqlite");
    gen_taskdb(&src, 800);
    let db = testkit::pg::fresh_database("mig_taskdb").unwrap();
    let (_, rep) = migrate_clean(&src, &db.url, &MigrationConfig::default()).await;
    assert_eq!(rep.rows_quarantined, 0);
    assert!(rep.warnings.is_empty(), "{:?}", rep.warnings);
    let c = pg(&db.url).await;
    assert_eq!(col_type(&c, "tasks", "completed").await, "boolean");
    assert_eq!(
        col_type(&c, "tasks", "created_at").await,
        "timestamp with time zone"
    );
    let nn: i64 = c
        .query_one("SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public' AND is_nullable = 'NO'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(nn, 8 + 4, "NOT NULL columns kept");
    let fk: bool = c
        .query_one(
            "SELECT convalidated FROM pg_constraint WHERE contype = 'f'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(fk);
    let src_conn = rusqlite::Connection::open(&src).unwrap();
    let (a, b): (String, String) = src_conn
        .query_row(
            "SELECT created_at, task_id FROM tasks WHERE id = 42",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let pg_ts: String = c
        .query_one("SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') FROM tasks WHERE task_id = $1", &[&b])
        .await
        .unwrap()
        .get(0);
    assert_eq!(pg_ts, a);
}
