//! Migrating a live legacy database end to end (`ficus migrate run --follow`): a 50k-task
//! legacy database, the legacy task app serving 4 concurrent HTTP writers (creates, claims,
//! notes, status) plus a "cron job" writing straight into SQLite (updates, deletes); the
//! follower starts while they run. When the writers stop, the follower drains the change log,
//! `ficus migrate verify` is clean, every acknowledged create is in PostgreSQL, every deleted
//! row is gone, and the legacy app answered no request with 5xx. The second test kills the
//! follower with SIGKILL three times at random moments and restarts it: the same clean end.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use testkit::TempDir;

const FICUS: &str = env!("CARGO_BIN_EXE_ficus");
const TASKS: usize = 50_000;
const WRITERS: u32 = 4;
/// The cron job deletes seeded tasks from this id down (HTTP writers work on others).
const CRON_FIRST: u64 = 40_000;

struct Live {
    _dir: TempDir,
    db: PathBuf,
    pg: pgtemp::TestDatabase,
    log: PathBuf,
}

fn ficus(args: &[&str]) -> std::process::Output {
    testkit::cli::run(FICUS, args)
}

fn start_follower(l: &Live) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&l.log)
        .unwrap();
    Command::new(FICUS)
        .args([
            "migrate",
            "run",
            "--follow",
            "--quiet",
            "--source",
            l.db.to_str().unwrap(),
            "--target",
            &l.pg.url,
        ])
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn()
        .unwrap()
}

async fn pg(url: &str) -> tokio_postgres::Client {
    testkit::pg::connect(url).await
}

/// Rounds the follower has committed (0 before it started following).
async fn rounds(c: &tokio_postgres::Client) -> i64 {
    match c
        .query_opt(
            "SELECT rounds FROM ficus.follow WHERE target_schema = 'public'",
            &[],
        )
        .await
    {
        Ok(Some(r)) => r.get(0),
        _ => 0,
    }
}

/// The follower's position and the log's last id.
async fn lag(c: &tokio_postgres::Client, db: &Path) -> (i64, i64) {
    let position: i64 = match c
        .query_opt(
            "SELECT position FROM ficus.follow WHERE target_schema = 'public'",
            &[],
        )
        .await
    {
        Ok(Some(r)) => r.get(0),
        _ => -1,
    };
    let s = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    s.busy_timeout(Duration::from_secs(5)).unwrap();
    let last: i64 = s
        .query_row("SELECT coalesce(max(id), 0) FROM _ficus_changes", [], |r| {
            r.get(0)
        })
        .unwrap();
    (position, last)
}

#[derive(Default)]
struct Tally {
    created: Mutex<Vec<String>>,
    deleted: Mutex<Vec<String>>,
    writes: AtomicU64,
    server_errors: AtomicU64,
    transport_errors: AtomicU64,
}

async fn http_writer(app: String, w: u32, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let client = ficus_demo::Client::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        // A task of this writer's own range, and what to do to it.
        let seeded = format!("TASK-{}", 101 + (u64::from(w) * 5_000 + n % 5_000));
        let (path, body) = match n % 4 {
            0 => (
                "/api/tasks/".to_string(),
                json!({"task_id": format!("LIVE-{w}-{n}"), "title": "created while migrating", "priority": "HIGH"}),
            ),
            1 => (
                format!("/api/tasks/{seeded}/claim"),
                json!({"agent_name": format!("agent-{w}")}),
            ),
            2 => (
                format!("/api/tasks/{seeded}/update-notes"),
                json!({"notes": format!("note {n}")}),
            ),
            _ => (
                format!("/api/tasks/{seeded}/set-status"),
                json!({"status": "in_review"}),
            ),
        };
        match client.post(&format!("{app}{path}"), &body).await {
            Ok(r) => {
                tally.writes.fetch_add(1, Ordering::Relaxed);
                if r.status >= 500 {
                    tally.server_errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!("5xx from legacy: {path} {} {:?}", r.status, r.body);
                }
                if n.is_multiple_of(4) && r.status == 201 {
                    let id = body["task_id"].as_str().unwrap_or_default().to_string();
                    tally.created.lock().unwrap().push(id);
                }
            }
            Err(e) => {
                tally.transport_errors.fetch_add(1, Ordering::Relaxed);
                eprintln!("writer {w}: {e}");
            }
        }
    }
}

/// A cron job: updates rows and deletes tasks (with their events) straight in SQLite.
fn cron_job(db: PathBuf, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let c = rusqlite::Connection::open(&db).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let id = format!("TASK-{}", CRON_FIRST + i);
        c.execute(
            "UPDATE tasks SET title = 'touched by cron ' || ?1, updated_at = '2026-01-01 00:00:00.000000' WHERE task_id = ?2",
            rusqlite::params![i as i64, format!("TASK-{}", 30_000 + i * 7 % 9_000)],
        )
        .unwrap();
        if i.is_multiple_of(3) {
            let tx = c.unchecked_transaction().unwrap();
            tx.execute("DELETE FROM task_events WHERE task_id = ?1", [&id])
                .unwrap();
            let n = tx
                .execute("DELETE FROM tasks WHERE task_id = ?1", [&id])
                .unwrap();
            tx.commit().unwrap();
            if n == 1 {
                tally.deleted.lock().unwrap().push(id);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

async fn live(name: &str) -> Live {
    let dir = testkit::temp_dir(&format!("follow-{name}"));
    let db = dir.path().join("legacy.db");
    ficus_taskapp::seed_sqlite(&db, &ficus_taskapp::seed_tasks(TASKS, 11)).unwrap();
    let pg = pgtemp::fresh_database(name).unwrap();
    let log = dir.path().join("follower.log");
    Live {
        _dir: dir,
        db,
        pg,
        log,
    }
}

/// Drives the writers until the follower has followed for a while (`kills` SIGKILLs of the
/// follower at random moments meanwhile, each followed by a restart), stops them, waits for
/// lag 0 and checks the end state.
async fn migrate_live(name: &str, kills: u32) {
    let l = live(name).await;
    let app = ficus_taskapp::serve_legacy(
        &l.db,
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        vec![],
    )
    .await
    .unwrap();
    let base = app.url();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        writers.push(tokio::spawn(http_writer(
            base.clone(),
            w,
            stop.clone(),
            tally.clone(),
        )));
    }
    let cron = {
        let (db, stop, tally) = (l.db.clone(), stop.clone(), tally.clone());
        std::thread::spawn(move || cron_job(db, stop, tally))
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut follower = start_follower(&l);
    let c = pg(&l.pg.url).await;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    eprintln!("kill seed {seed}");
    let mut rng = seed;
    for k in 0..kills {
        rng = rng.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        // The first kill falls anywhere (usually in the snapshot copy); the others while
        // following, once the restarted follower has committed a round.
        let wait = if k == 0 {
            Duration::from_millis(200 + u64::from(rng % 1_500))
        } else {
            let before = rounds(&c).await;
            let deadline = Instant::now() + Duration::from_secs(120);
            while rounds(&c).await <= before {
                assert!(
                    Instant::now() < deadline,
                    "the restarted follower never followed"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Duration::from_millis(u64::from(rng % 800))
        };
        tokio::time::sleep(wait).await;
        follower.kill().unwrap(); // SIGKILL
        let _ = follower.wait();
        eprintln!(
            "kill {k} after {wait:?}; follower rounds so far {}",
            rounds(&c).await
        );
        follower = start_follower(&l);
    }
    // Keep writing until the follower has committed a few rounds while the writers run.
    let deadline = Instant::now() + Duration::from_secs(120);
    while rounds(&c).await < 5 {
        assert!(
            Instant::now() < deadline,
            "the follower never followed:\n{}",
            std::fs::read_to_string(&l.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    cron.join().unwrap();
    let stopped = Instant::now();
    // Lag 0: the follower's position reaches the log's last change.
    loop {
        let (position, last) = lag(&c, &l.db).await;
        if position >= last {
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(60),
            "still behind: at {position} of {last}\n{}",
            std::fs::read_to_string(&l.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "lag 0 {:.0} ms after the writers stopped ({} HTTP writes, {} creates, {} cron deletes)",
        stopped.elapsed().as_secs_f64() * 1000.0,
        tally.writes.load(Ordering::Relaxed),
        tally.created.lock().unwrap().len(),
        tally.deleted.lock().unwrap().len()
    );
    // Ctrl-C: the follower stops cleanly.
    Command::new("kill")
        .args(["-INT", &follower.id().to_string()])
        .status()
        .unwrap();
    let status = follower.wait().unwrap();
    let log = std::fs::read_to_string(&l.log).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{status:?}\n{log}");

    let v = ficus(&[
        "migrate",
        "verify",
        "--source",
        l.db.to_str().unwrap(),
        "--target",
        &l.pg.url,
    ]);
    assert_eq!(
        v.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
    let in_pg: BTreeSet<String> = c
        .query("SELECT task_id FROM tasks", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let created = tally.created.lock().unwrap().clone();
    assert!(!created.is_empty());
    for id in &created {
        assert!(
            in_pg.contains(id),
            "acknowledged create {id} is not in PostgreSQL"
        );
    }
    let deleted = tally.deleted.lock().unwrap().clone();
    assert!(!deleted.is_empty());
    for id in &deleted {
        assert!(!in_pg.contains(id), "deleted {id} is still in PostgreSQL");
    }
    let dupes: i64 = c
        .query_one("SELECT count(*) - count(DISTINCT task_id) FROM tasks", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(dupes, 0);
    assert_eq!(
        tally.server_errors.load(Ordering::Relaxed),
        0,
        "legacy answered 5xx"
    );
    assert_eq!(tally.transport_errors.load(Ordering::Relaxed), 0);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_live_legacy_database_is_migrated_with_nothing_lost() {
    migrate_live("follow_live", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_killed_three_times_ends_the_same() {
    migrate_live("follow_killed", 3).await;
}
