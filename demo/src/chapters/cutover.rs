//! Chapter 5: the zero-downtime cut-over of the live database of chapter 4. The follower runs
//! again; a proxy fronts the legacy app (live.db) and the new service (tasks_live); two writers
//! write through it the whole time. Reads move 10 → 50 → 100 %, then `migrate cutover` moves
//! the writes with a pause of a few milliseconds, the new side takes them (the reverse follower
//! keeps live.db current), a row deleted on new is deleted in SQLite by `rollback --live`, and
//! the writes are cut over again — no writer ever sees an answer other than an app's.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ficus_migrator::cutover::{CutoverOptions, CutoverReport, Toward};
use ficus_migrator::{MigrationConfig, Observer, Plan, VerifyOptions};
use ficus_proxy::client::AdminClient;
use ficus_proxy::config::Secret;
use ficus_proxy::{AdminTraffic, Config, Proxy, ProxyHandle};
use serde_json::json;

use crate::client::Client;
use crate::narrator::Narrator;
use crate::stage::Workspace;
use crate::traffic::drive_reads;
use crate::DemoError;

const READS: &str = "live-read";
const WRITES: &str = "live-write";
const TOKEN: &str = "demo-cutover-token";
const MAX_HOLD: Duration = Duration::from_millis(2000);
/// The task an admin deletes on the new side while writes are cut over.
const DELETED: &str = "TASK-170";

/// What the writers saw.
#[derive(Default)]
struct Tally {
    /// (task id, the side that acknowledged its create)
    created: Mutex<Vec<(String, String)>>,
    /// Answers not from an app (5xx, no `x-ficus-backend`, a failed connection).
    foreign: Mutex<Vec<String>>,
    longest_ms: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn proxy(ws: &Workspace, legacy: &str, new: &str) -> Result<ProxyHandle, DemoError> {
    let toml = format!(
        r#"[proxy]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
state = {state:?}
workers = 1
watch_config = false
[backends.legacy]
url = "{legacy}"
[backends.new]
url = "{new}"
[[routes]]
name = "{READS}"
methods = ["GET"]
path = "/api/tasks/{{task_id}}"
target = "split"
percent = 0.0
sticky = "header:X-User-Id"
[[routes]]
name = "{WRITES}"
methods = ["POST"]
path = "/api/tasks/*"
"#,
        state = ws.path("live-proxy-state.db"),
    );
    let mut config = Config::from_toml_str(&toml)?;
    config.proxy.admin_token = Some(Secret(TOKEN.into()));
    Ok(Proxy::start(config, None)?)
}

/// Two writers through the proxy until `stop`: a create, then a note on it.
fn writers(
    entry: String,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..2u32)
        .map(|w| {
            let (entry, stop, tally) = (entry.clone(), stop.clone(), tally.clone());
            tokio::spawn(async move {
                let client = Client::new();
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let id = format!("CUT-{w}-{i}");
                    let create = json!({"task_id": id, "title": "written during the cut-over", "priority": "LOW"});
                    let notes = json!({"notes": format!("note {i}")});
                    for (path, body) in [
                        (format!("{entry}/api/tasks/"), create),
                        (format!("{entry}/api/tasks/{id}/update-notes"), notes),
                    ] {
                        let started = Instant::now();
                        let r = client.post(&path, &body).await;
                        let ms = started.elapsed().as_millis() as u64;
                        tally.longest_ms.fetch_max(ms, Ordering::Relaxed);
                        match r {
                            Ok(r) => {
                                let side = r.header("x-ficus-backend").to_string();
                                if r.status >= 500 || !(side == "legacy" || side == "new") {
                                    lock(&tally.foreign).push(format!("{path}: {} {side}", r.status));
                                } else if r.status == 201 {
                                    lock(&tally.created).push((id.clone(), side));
                                }
                            }
                            Err(e) => lock(&tally.foreign).push(format!("{path}: {e}")),
                        }
                    }
                }
            })
        })
        .collect()
}

async fn move_writes(
    n: &mut Narrator<'_>,
    plan: &Plan,
    db: &Path,
    target: &str,
    admin: &str,
    toward: Toward,
) -> Result<CutoverReport, DemoError> {
    let actor = if toward == Toward::New {
        "cutover"
    } else {
        "rollback-live"
    };
    let traffic = AdminTraffic::new(&[admin.to_string()], Some(TOKEN.into()), actor)?;
    let opts = CutoverOptions {
        source: db.to_path_buf(),
        target: target.to_string(),
        routes: vec![WRITES.to_string()],
        max_hold: MAX_HOLD,
        max_lag: Duration::from_secs(if toward == Toward::New { 1 } else { 3600 }),
        dry_run: false,
        toward,
    };
    let rep = ficus_migrator::cutover::cutover(plan, &opts, &traffic, |_| {}).await?;
    for st in &rep.steps {
        n.say(format!(
            "  {:<16} {:>6.1} ms  {}",
            st.step, st.ms, st.detail
        ));
    }
    crate::expect(rep.ok(), || {
        format!("the writes did not move:\n{}", rep.text())
    })?;
    n.say(format!(
        "write pause: {:.1} ms — {}",
        rep.pause_ms.unwrap_or_default(),
        rep.state
    ));
    Ok(rep)
}

fn sqlite_ids(db: &Path) -> Result<BTreeSet<String>, DemoError> {
    let err = |source| DemoError::Sqlite {
        what: "reading live.db".into(),
        source,
    };
    let c = rusqlite::Connection::open(db).map_err(err)?;
    let mut st = c.prepare("SELECT task_id FROM tasks").map_err(err)?;
    let ids = st
        .query_map([], |r| r.get(0))
        .map_err(err)?
        .collect::<Result<_, _>>()
        .map_err(err)?;
    Ok(ids)
}

async fn pg_ids(pg: &tokio_postgres::Client) -> Result<BTreeSet<String>, DemoError> {
    Ok(pg
        .query("SELECT task_id FROM tasks", &[])
        .await
        .map_err(|source| DemoError::Sql {
            what: "reading tasks_live".into(),
            source,
        })?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Waits until both sides hold every id in `ids` (the follower, either way, has applied them).
async fn on_both(db: &Path, pg: &tokio_postgres::Client, ids: &[String]) -> Result<(), DemoError> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, p) = (sqlite_ids(db)?, pg_ids(pg).await?);
        let missing: Vec<&String> = ids
            .iter()
            .filter(|i| !(s.contains(*i) && p.contains(*i)))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        crate::expect(Instant::now() < deadline, || {
            format!(
                "{} acknowledged writes not on both sides, e.g. {}",
                missing.len(),
                missing[0]
            )
        })?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Chapter 5.
pub async fn live_cutover(
    n: &mut Narrator<'_>,
    ws: &Workspace,
    pg_url: &str,
) -> Result<(), DemoError> {
    n.step("Cut over the live app: reads first, then the writes with a pause of milliseconds, and back");
    let db = ws.path("live.db");
    let target = crate::stage::live_target(pg_url);
    let plan =
        ficus_migrator::plan_for(&db, &target, "public", &MigrationConfig::default()).await?;

    // The follower again (it resumes where chapter 4 stopped).
    let follower = crate::following::Following::start(&plan, &db, &target)?;
    let legacy = ficus_taskapp::serve_legacy(&db, crate::stage::loopback().await?, vec![]).await?;
    let new = ficus_taskapp::serve_new(&target, crate::stage::loopback().await?, vec![]).await?;
    let proxy = proxy(ws, &legacy.url(), &new.url())?;
    let (entry, admin) = (
        format!("http://{}", proxy.listen_addr()),
        format!("http://{}", proxy.admin_addr()),
    );
    n.say(format!(
        "follower running; proxy {entry} in front of legacy (live.db) and new (tasks_live); 2 writers write through it from now on"
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let ws_tasks = writers(entry.clone(), stop.clone(), tally.clone());

    // Reads first.
    let operator = AdminClient::new(&admin, Some(TOKEN.into()), Some("demo".into()))?;
    let client = Client::new();
    for pct in [10.0, 50.0, 100.0] {
        operator.set_rollout(READS, pct).await?;
        let reads = drive_reads(&client, &entry, 100).await?;
        n.say(format!(
            "reads at {pct:>3}%: {:>3} users on new, {:>3} on legacy",
            reads.on_new.len(),
            reads.legacy
        ));
    }
    n.cli(format!(
        "ficus rollout set {READS} 10   # then 50, then 100"
    ));

    // The writes: cut over.
    n.cli(format!(
        "ficus migrate cutover --source live.db --target $FICUS_LIVE_TARGET --admin {admin} --routes {WRITES}"
    ));
    let first = move_writes(n, &plan, &db, &target, &admin, Toward::New).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pg = crate::stores::postgres(&target).await?;
    let on_new: Vec<String> = lock(&tally.created)
        .iter()
        .filter(|(_, s)| s == "new")
        .map(|(id, _)| id.clone())
        .collect();
    crate::expect(!on_new.is_empty(), || {
        "no write reached new after the cut-over".into()
    })?;
    on_both(&db, &pg, &on_new).await?;
    n.say(format!(
        "writes on new: {} creates acknowledged by new, each already in live.db too (the reverse follower)",
        on_new.len()
    ));

    // A row deleted on new; the live rollback carries the deletion.
    for table in ["task_events", "tasks"] {
        let sql = format!("DELETE FROM {table} WHERE task_id = '{DELETED}'");
        crate::stores::pg_execute(&pg, &sql).await?;
    }
    n.say(format!(
        "an admin deletes {DELETED} on the new side (PostgreSQL)"
    ));
    n.cli(format!(
        "ficus migrate rollback --live --source live.db --target $FICUS_LIVE_TARGET --admin {admin}"
    ));
    let back = move_writes(n, &plan, &db, &target, &admin, Toward::Legacy).await?;
    let in_sqlite = sqlite_ids(&db)?.contains(DELETED);
    crate::expect(!in_sqlite, || {
        format!("{DELETED}, deleted on new, is still in live.db")
    })?;
    n.say(format!(
        "{DELETED} is gone from live.db too: the rollback lost nothing, deletions included"
    ));

    // And over again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    n.say("and cut over again:");
    let again = move_writes(n, &plan, &db, &target, &admin, Toward::New).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for w in ws_tasks {
        w.await?;
    }
    let created = lock(&tally.created).clone();
    let foreign = lock(&tally.foreign).clone();
    let longest = tally.longest_ms.load(Ordering::Relaxed);
    crate::expect(foreign.is_empty(), || {
        format!("answers not from an app: {foreign:?}")
    })?;
    crate::expect(longest <= MAX_HOLD.as_millis() as u64, || {
        format!("a write took {longest} ms, longer than the hold allows")
    })?;
    let ids: Vec<String> = created.iter().map(|(id, _)| id.clone()).collect();
    on_both(&db, &pg, &ids).await?;
    // The writers have stopped, but the reverse follower may still be applying their last
    // updates to live.db (`on_both` sees creates, not updates): verify until it has.
    let verifying = Instant::now();
    let deadline = verifying + Duration::from_secs(20);
    loop {
        let v = ficus_migrator::verify(
            &plan,
            &db,
            &target,
            &VerifyOptions::default(),
            &Arc::new(Observer::silent()),
        )
        .await?;
        if v.clean {
            break;
        }
        crate::expect(Instant::now() < deadline, || {
            format!("verify after the cut-overs:\n{}", v.text())
        })?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    n.say(format!(
        "{} creates acknowledged ({} by legacy, {} by new), every one on both sides; longest write {longest} ms; no answer but an app's; verify clean ({} ms after the writers stopped)",
        created.len(),
        created.iter().filter(|(_, s)| s == "legacy").count(),
        created.iter().filter(|(_, s)| s == "new").count(),
        verifying.elapsed().as_millis(),
    ));
    n.say(format!(
        "write pauses: cut-over {:.1} ms, rollback {:.1} ms, cut-over again {:.1} ms",
        first.pause_ms.unwrap_or_default(),
        back.pause_ms.unwrap_or_default(),
        again.pause_ms.unwrap_or_default()
    ));
    follower.stop().await?;
    proxy.shutdown().await;
    legacy.shutdown().await;
    new.shutdown().await;
    Ok(())
}
