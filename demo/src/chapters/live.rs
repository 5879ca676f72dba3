//! Chapter 4: migrating a database that is still being written to. A copy of the legacy
//! database is served by a legacy app under concurrent writers while a "cron job" changes rows
//! straight in SQLite; `ficus migrate run --follow` installs change capture, copies the
//! snapshot and follows the change log until, the writers stopped, the lag is 0 and verify
//! is clean — every acknowledged create in PostgreSQL, every deleted task gone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ficus_migrator::{MigrationConfig, Observer, RunOptions, VerifyOptions};
use serde_json::json;

use crate::client::Client;
use crate::narrator::Narrator;
use crate::stage::Workspace;
use crate::DemoError;

/// How long the writers write.
const WRITING: Duration = Duration::from_millis(1500);
const WRITERS: u32 = 4;

fn sqlite_err(what: &str) -> impl Fn(rusqlite::Error) -> DemoError + '_ {
    move |source| DemoError::Sqlite {
        what: what.to_string(),
        source,
    }
}

/// The "cron job": every few milliseconds an update, and now and then a task deleted with
/// its events — all straight in SQLite, past any proxy. Returns the deleted task ids.
fn cron_job(
    db: std::path::PathBuf,
    stop: Arc<AtomicBool>,
    first: usize,
) -> Result<Vec<String>, DemoError> {
    let c = rusqlite::Connection::open(&db).map_err(sqlite_err("opening the live database"))?;
    c.busy_timeout(Duration::from_secs(5))
        .map_err(sqlite_err("setting a busy timeout"))?;
    let mut deleted = Vec::new();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        c.execute(
            "UPDATE tasks SET status_notes = coalesce(status_notes, '') || ' [cron]' WHERE task_id = ?1",
            [format!("TASK-{}", 101 + i % first)],
        )
        .map_err(sqlite_err("cron update"))?;
        if i.is_multiple_of(10) && deleted.len() < first / 4 {
            let id = format!("TASK-{}", 100 + first - deleted.len());
            let tx = c
                .unchecked_transaction()
                .map_err(sqlite_err("cron delete"))?;
            tx.execute("DELETE FROM task_events WHERE task_id = ?1", [&id])
                .map_err(sqlite_err("cron delete"))?;
            let n = tx
                .execute("DELETE FROM tasks WHERE task_id = ?1", [&id])
                .map_err(sqlite_err("cron delete"))?;
            tx.commit().map_err(sqlite_err("cron delete"))?;
            if n == 1 {
                deleted.push(id);
            }
        }
        std::thread::sleep(Duration::from_millis(3));
    }
    Ok(deleted)
}

/// Chapter 4.
pub async fn live_migration(
    n: &mut Narrator<'_>,
    ws: &Workspace,
    pg_url: &str,
) -> Result<(), DemoError> {
    n.step("Migrate a live database: the legacy app keeps writing, ficus follows");
    let db = ws.path("live.db");
    let _ = std::fs::remove_file(&db);
    {
        let legacy = ws.legacy_db();
        let out = db.clone();
        tokio::task::spawn_blocking(move || {
            let c = rusqlite::Connection::open(&legacy).map_err(sqlite_err("opening legacy.db"))?;
            c.execute("VACUUM INTO ?1", [out.to_string_lossy()])
                .map_err(sqlite_err("copying legacy.db to live.db"))
        })
        .await??;
    }
    // A second database on the same server, beside the new service's.
    let target = crate::stage::live_target(pg_url);
    let admin = crate::stores::postgres(pg_url).await?;
    crate::stores::pg_execute(&admin, "DROP DATABASE IF EXISTS tasks_live").await?;
    crate::stores::pg_execute(&admin, "CREATE DATABASE tasks_live").await?;
    let app = ficus_taskapp::serve_legacy(
        &db,
        tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| DemoError::Http(e.to_string()))?,
        vec![],
    )
    .await?;
    n.say(format!(
        "live.db (a copy of legacy.db) served by a legacy app at {}; PostgreSQL database tasks_live",
        app.url()
    ));

    // Writers and the cron job start first: the migration begins on a moving database.
    let stop = Arc::new(AtomicBool::new(false));
    let created = Arc::new(Mutex::new(Vec::<String>::new()));
    let server_errors = Arc::new(Mutex::new(0u32));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (url, stop, created, errs) = (
            app.url(),
            stop.clone(),
            created.clone(),
            server_errors.clone(),
        );
        writers.push(tokio::spawn(async move {
            let client = Client::new();
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let id = format!("LIVE-{w}-{i}");
                let body = json!({"task_id": id, "title": "created during the migration", "priority": "MEDIUM"});
                if let Ok(r) = client.post(&format!("{url}/api/tasks/"), &body).await {
                    if r.status == 201 {
                        created.lock().unwrap_or_else(|p| p.into_inner()).push(id.clone());
                    } else if r.status >= 500 {
                        *errs.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                    }
                }
                let notes = json!({"notes": format!("note {i}")});
                let _ = client
                    .post(&format!("{url}/api/tasks/{id}/update-notes"), &notes)
                    .await;
            }
        }));
    }
    let cron = {
        let (db, stop, first) = (db.clone(), stop.clone(), ws.tasks);
        tokio::task::spawn_blocking(move || cron_job(db, stop, first))
    };

    n.cli("ficus migrate run --follow --source live.db --target $FICUS_LIVE_TARGET   # Ctrl-C stops following");
    let config = MigrationConfig::default();
    let started = Instant::now();
    let plan0 = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || {
            ficus_migrator::Plan::build(&db, &MigrationConfig::default(), "public")
        })
        .await??
    };
    let installed = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || {
            ficus_migrator::capture::install(&db, &plan0.capture_tables())
        })
        .await?
        .map_err(|e| DemoError::Step(e.to_string()))?
    };
    if let ficus_migrator::capture::Installed::Created { tables } = installed {
        n.say(format!(
            "change capture installed first: log table _ficus_changes, triggers on {}",
            tables.join(", ")
        ));
    }
    let plan = ficus_migrator::plan_for_run(&db, &target, "public", &config).await?;
    let obs = Arc::new(Observer::silent());
    let rep = ficus_migrator::run(&plan, &db, &target, &RunOptions::default(), &obs).await?;
    n.say(format!(
        "snapshot: {} rows copied in {:.2} s while the writers wrote",
        rep.rows_copied, rep.seconds
    ));
    let follower = crate::following::Following::start(&plan, &db, &target)?;
    let left = WRITING.saturating_sub(started.elapsed());
    tokio::time::sleep(left.max(Duration::from_millis(500))).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await?;
    }
    let deleted = cron.await??;
    let stopped = Instant::now();
    let last_id = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || {
            let c = rusqlite::Connection::open(&db).map_err(sqlite_err("opening live.db"))?;
            c.query_row("SELECT coalesce(max(id), 0) FROM _ficus_changes", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(sqlite_err("reading the change log"))
        })
        .await??
    };
    while follower.metrics.position.get() < last_id {
        crate::expect(stopped.elapsed() < Duration::from_secs(30), || {
            format!(
                "the follower is still behind: at change {} of {last_id}",
                follower.metrics.position.get()
            )
        })?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let lag0 = stopped.elapsed();
    let summary = follower.stop().await?;
    let created = created.lock().unwrap_or_else(|p| p.into_inner()).clone();
    n.say(format!(
        "{WRITERS} writers created {} tasks and added notes; the cron job deleted {} tasks and updated others, straight in SQLite",
        created.len(),
        deleted.len()
    ));
    n.say(format!(
        "follow: {} changes applied in {} rounds; lag 0 {:.0} ms after the writers stopped",
        summary.changes,
        summary.rounds,
        lag0.as_secs_f64() * 1000.0
    ));
    let v = ficus_migrator::verify(&plan, &db, &target, &VerifyOptions::default(), &obs).await?;
    crate::expect(v.clean, || format!("verify after follow:\n{}", v.text()))?;
    let pg = crate::stores::postgres(&target).await?;
    let ids: std::collections::HashSet<String> = pg
        .query("SELECT task_id FROM tasks", &[])
        .await
        .map_err(|source| DemoError::Sql {
            what: "reading tasks_live".into(),
            source,
        })?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let missing = created.iter().filter(|c| !ids.contains(*c)).count();
    let kept = deleted.iter().filter(|d| ids.contains(*d)).count();
    let errors = *server_errors.lock().unwrap_or_else(|p| p.into_inner());
    crate::expect(
        missing == 0 && kept == 0 && errors == 0 && !created.is_empty() && !deleted.is_empty(),
        || format!("{missing} creates missing, {kept} deleted rows still there, {errors} 5xx"),
    )?;
    n.say("verify: clean — every acknowledged create is in PostgreSQL, every deleted task is gone, no request failed");
    n.cli("ficus migrate verify --source live.db --target $FICUS_LIVE_TARGET && ficus migrate status --source live.db --target $FICUS_LIVE_TARGET");
    app.shutdown().await;
    n.say("capture stays installed: the next chapter cuts this database over");
    Ok(())
}
