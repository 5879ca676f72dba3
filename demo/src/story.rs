//! The demo's steps, in the order a team would live them. Each step prints what it did; a
//! step whose outcome is not what the story expects fails the demo with [`DemoError::Step`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::client::{Client, Reply};
use crate::narrator::Narrator;
use crate::{DemoError, DemoOptions};

/// Run the story, narrating to `out`.
pub async fn run(opts: DemoOptions, out: &mut (dyn Write + Send)) -> Result<(), DemoError> {
    let mut n = Narrator::new(out);
    let (dir, _tmp) = work_dir(opts.dir.clone())?;

    n.step("Start PostgreSQL (a throwaway cluster for the new service)");
    let pg_dir = dir.join("postgres");
    let cluster = tokio::task::spawn_blocking(move || pgtemp::Cluster::start(&pg_dir))
        .await
        .map_err(|e| DemoError::Step(format!("postgres start task: {e}")))??;
    let new_url = {
        let c = &cluster;
        let name = "tasks_new".to_string();
        tokio::task::block_in_place(|| c.create_database(&name))?
    };
    n.say(format!(
        "PostgreSQL on 127.0.0.1:{}  ({new_url})",
        cluster.port()
    ));

    n.step("Seed the legacy monolith's SQLite database");
    let legacy_db = dir.join("legacy.db");
    let tasks = ficus_taskapp::seed_tasks(opts.tasks, 42);
    let seeded = {
        let p = legacy_db.clone();
        let t = tasks;
        tokio::task::spawn_blocking(move || ficus_taskapp::seed_sqlite(&p, &t))
            .await
            .map_err(|e| DemoError::Step(format!("seed task: {e}")))??
    };
    n.say(format!("{seeded} tasks in {}", legacy_db.display()));

    n.step("Migrate the legacy data into PostgreSQL (plan, run, verify)");
    migrate(&mut n, &legacy_db, &new_url).await?;

    n.step("Start both task apps");
    let legacy = ficus_taskapp::serve_legacy(&legacy_db, bind().await?, vec![]).await?;
    let new = ficus_taskapp::serve_new(&new_url, bind().await?, vec![]).await?;
    n.say(format!("legacy (SQLite)     {}", legacy.url()));
    n.say(format!("new    (PostgreSQL) {}", new.url()));

    n.step("Drive the same requests at each side and compare");
    let client = Client::new();
    compare_sides(&mut n, &client, &legacy.url(), &new.url()).await?;

    n.step("Put the ficus proxy in front of both (reads split by user, sticky)");
    let token = demo_token();
    let quirks: Vec<ficus_taskapp::Quirk> = ["timestamp-precision", "extra-field"]
        .iter()
        .filter_map(|q| q.parse().ok())
        .collect();
    let next = ficus_taskapp::serve_new(&new_url, bind().await?, quirks).await?;
    n.say(format!(
        "the new service's next build runs at {} (same PostgreSQL) — it has two deliberate differences; shadow mode should find them",
        next.url()
    ));
    let proxy = start_proxy(&dir, &legacy.url(), &next.url(), &token)?;
    let admin = format!("http://{}", proxy.admin_addr());
    let entry = format!("http://{}", proxy.listen_addr());
    n.say(format!(
        "proxy {entry}   admin API {admin}   (token in {})",
        dir.join("admin-token").display()
    ));
    write_file(&dir.join("admin-token"), &token)?;
    let operator = ficus_proxy::client::AdminClient::new(
        &admin,
        Some(token.clone()),
        Some("demo-operator".into()),
    )
    .map_err(|e| DemoError::Step(format!("admin client: {e}")))?;

    n.step("Shadow the reads: legacy answers, new is asked too, and the answers are compared");
    for u in 0..60u32 {
        let r = client
            .send(
                "GET",
                &format!("{entry}/api/tasks/TASK-{}", 101 + u),
                None,
                &[("x-user-id", &format!("user-{u}"))],
            )
            .await?;
        if r.status != 200 || r.header("x-ficus-backend") != "legacy" {
            return Err(DemoError::Step(format!(
                "shadowed read answered {} by {:?}",
                r.status,
                r.header("x-ficus-backend")
            )));
        }
    }
    proxy.flush_shadow().await;
    let store_path = dir.join("ficus-shadow.db");
    let report = {
        let p = store_path.clone();
        tokio::task::spawn_blocking(move || {
            let store = ficus_shadow::Store::open_existing(&p)?;
            ficus_shadow::Report::build(&store, &ficus_shadow::ReportOptions::default())
        })
        .await
        .map_err(|e| DemoError::Step(format!("report task: {e}")))?
        .map_err(|e| DemoError::Step(format!("shadow report: {e}")))?
    };
    n.say("60 reads served by legacy; `ficus shadow report` says:");
    for line in report.to_text().lines().take(24) {
        n.say(format!("  {line}"));
    }
    n.say(format!(
        "(store {}; `ficus shadow report --store ... --format html --out report.html` for the page)",
        store_path.display()
    ));

    n.step("Roll reads out: 0 → 25 → 50 → 100 %, then roll back in one command");
    n.say(format!(
        "{:>8}  {:>7} {:>7}   {}",
        "percent", "legacy", "new", "(200 users, one GET each, sticky on X-User-Id)"
    ));
    let mut previous_new: std::collections::BTreeSet<u32> = Default::default();
    for pct in [0.0, 25.0, 50.0, 100.0] {
        operator
            .set_rollout(READ_ROUTE, pct)
            .await
            .map_err(|e| DemoError::Step(format!("rollout set {pct}: {e}")))?;
        let (l, on_new) = drive_reads(&client, &entry, 200).await?;
        let kept = previous_new.is_subset(&on_new);
        n.say(format!(
            "{pct:>7}%  {l:>7} {:>7}   {}",
            on_new.len(),
            match (pct > 0.0, kept) {
                (false, _) => "",
                (true, true) => "every user already on new stays there",
                (true, false) => "STICKINESS BROKEN",
            }
        ));
        if !kept {
            return Err(DemoError::Step(format!(
                "raising to {pct}% moved users back to legacy"
            )));
        }
        previous_new = on_new;
    }
    let rolled = operator
        .rollback(&[])
        .await
        .map_err(|e| DemoError::Step(format!("rollback: {e}")))?;
    let (l, on_new) = drive_reads(&client, &entry, 200).await?;
    n.say(format!(
        "rollback: {} → legacy {l}, new {}   (`ficus rollback` does the same)",
        rolled
            .iter()
            .map(|c| format!("{} {}%→{}%", c.route, c.from, c.to))
            .collect::<Vec<_>>()
            .join(", "),
        on_new.len()
    ));
    if !on_new.is_empty() {
        return Err(DemoError::Step(
            "after rollback some reads still went to new".into(),
        ));
    }

    if opts.serve {
        n.step("Serving until Ctrl-C");
        n.say(format!("legacy {}   new {}", legacy.url(), new.url()));
        n.say(format!(
            "proxy {entry}   admin {admin}   metrics {admin}/metrics"
        ));
        let _ = tokio::signal::ctrl_c().await;
    }

    n.step("Done");
    n.say(format!("work directory: {}", dir.display()));
    proxy.shutdown().await;
    legacy.shutdown().await;
    new.shutdown().await;
    next.shutdown().await;
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .map_err(|e| DemoError::Step(format!("postgres stop task: {e}")))?;
    Ok(())
}

/// `ficus migrate plan`, `run` and `verify`, as an operator would run them.
async fn migrate(n: &mut Narrator<'_>, source: &Path, target: &str) -> Result<(), DemoError> {
    use ficus_migrator::{MigrationConfig, Observer, Plan, RunOptions, VerifyOptions};
    let obs = Arc::new(Observer::silent());
    let plan = {
        let src = source.to_path_buf();
        tokio::task::spawn_blocking(move || {
            Plan::build(&src, &MigrationConfig::default(), "public")
        })
        .await
        .map_err(|e| DemoError::Step(format!("plan task: {e}")))??
    };
    n.say(format!(
        "plan: {} tables; e.g. {}",
        plan.tables.len(),
        plan.report()
            .lines()
            .find(|l| l.contains("last_heartbeat"))
            .unwrap_or("")
            .trim()
    ));
    let run = ficus_migrator::run(&plan, source, target, &RunOptions::default(), &obs).await?;
    for t in &run.tables {
        n.say(format!(
            "copied {:<12} {:>6} of {:>6} rows, {} quarantined",
            t.table, t.rows_copied, t.source_rows, t.rows_quarantined
        ));
    }
    n.say(format!("run took {:.2} s", run.seconds));
    let verify =
        ficus_migrator::verify(&plan, source, target, &VerifyOptions::default(), &obs).await?;
    n.say(format!(
        "verify: {} ({:.2} s, chunked checksums of every row on both sides)",
        if verify.clean { "clean" } else { "DIFFERENCES" },
        verify.seconds
    ));
    if !verify.clean {
        return Err(DemoError::Step(format!(
            "verify found differences:\n{}",
            verify.text()
        )));
    }
    Ok(())
}

/// The route the rollout steps move.
const READ_ROUTE: &str = "tasks-read";

fn start_proxy(
    dir: &Path,
    legacy: &str,
    new: &str,
    token: &str,
) -> Result<ficus_proxy::ProxyHandle, DemoError> {
    let toml = format!(
        r#"
[proxy]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
state = "{state}"
workers = 1
watch_config = false

[backends.legacy]
url = "{legacy}"
[backends.new]
url = "{new}"

[shadow]
store = "{shadow}"

[[routes]]
name = "{READ_ROUTE}"
methods = ["GET"]
path = "/api/tasks/{{task_id}}"
target = "split"
percent = 0.0
sticky = "header:X-User-Id"
[routes.shadow]
sample = 1.0
ignore_headers = ["date", "x-request-id", "content-length"]

[[routes]]
name = "tasks-write"
path = "/api/tasks/*"
target = "legacy"
"#,
        state = dir.join("ficus-state.db").display(),
        shadow = dir.join("ficus-shadow.db").display()
    );
    write_file(&dir.join("ficus.toml"), &toml)?;
    let mut config = ficus_proxy::Config::from_toml_str(&toml)
        .map_err(|e| DemoError::Step(format!("proxy config: {e}")))?;
    config.proxy.admin_token = Some(ficus_proxy::config::Secret(token.to_string()));
    ficus_proxy::Proxy::start(config, None).map_err(|e| DemoError::Step(format!("proxy: {e}")))
}

/// A per-run admin token (the demo's own; a real deployment reads it from the environment).
fn demo_token() -> String {
    use rand::RngExt as _;
    let mut r = rand::rng();
    (0..32)
        .map(|_| format!("{:x}", r.random_range(0..16u8)))
        .collect()
}

fn write_file(path: &Path, text: &str) -> Result<(), DemoError> {
    std::fs::write(path, text).map_err(|source| DemoError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// One GET per user through the proxy; returns (reads served by legacy, users served by new).
async fn drive_reads(
    client: &Client,
    entry: &str,
    users: u32,
) -> Result<(usize, std::collections::BTreeSet<u32>), DemoError> {
    let mut legacy = 0;
    let mut on_new = std::collections::BTreeSet::new();
    for u in 0..users {
        let user = format!("user-{u}");
        let task = 101 + (u % 50);
        let r = client
            .send(
                "GET",
                &format!("{entry}/api/tasks/TASK-{task}"),
                None,
                &[("x-user-id", &user)],
            )
            .await?;
        if r.status != 200 {
            return Err(DemoError::Step(format!(
                "GET through the proxy answered {}",
                r.status
            )));
        }
        match r.header("x-ficus-backend") {
            "new" => {
                on_new.insert(u);
            }
            _ => legacy += 1,
        }
    }
    Ok((legacy, on_new))
}

/// The demo's directory: the one asked for, or a fresh temporary one removed at the end.
fn work_dir(asked: Option<PathBuf>) -> Result<(PathBuf, Option<TempDir>), DemoError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DemoError::Io { path, source }
    };
    match asked {
        Some(d) => {
            std::fs::create_dir_all(&d).map_err(io(&d))?;
            Ok((d, None))
        }
        None => {
            let d = std::env::temp_dir().join(format!("ficus-demo-{}", std::process::id()));
            if d.exists() {
                std::fs::remove_dir_all(&d).map_err(io(&d))?;
            }
            std::fs::create_dir_all(&d).map_err(io(&d))?;
            Ok((d.clone(), Some(TempDir(d))))
        }
    }
}

/// Removes its directory when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn bind() -> Result<TcpListener, DemoError> {
    TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|source| DemoError::Io {
            path: "127.0.0.1:0".into(),
            source,
        })
}

/// Fields a write sets from the clock at request time: they legitimately differ by a few
/// microseconds between two sides that each handled the same write.
const REQUEST_TIME_FIELDS: &[&str] = &["updated_at", "last_heartbeat", "status_notes"];

fn without_request_time(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        for f in REQUEST_TIME_FIELDS {
            o.remove(*f);
        }
    }
    v
}

async fn compare_sides(
    n: &mut Narrator<'_>,
    client: &Client,
    legacy: &str,
    new: &str,
) -> Result<(), DemoError> {
    let ready = client
        .get(&format!("{legacy}/api/tasks/ready"))
        .await?
        .json();
    let pending = ready
        .as_array()
        .and_then(|a| a.first())
        .and_then(|t| t["task_id"].as_str())
        .ok_or_else(|| DemoError::Step("the seeded data has no ready task".into()))?
        .to_string();
    let calls: Vec<(String, &str, String, Option<Value>, u16)> = vec![
        (
            "list all tasks".into(),
            "GET",
            "/api/tasks/".into(),
            None,
            200,
        ),
        (
            "one task".into(),
            "GET",
            "/api/tasks/TASK-101".into(),
            None,
            200,
        ),
        (
            "ready queue".into(),
            "GET",
            "/api/tasks/ready".into(),
            None,
            200,
        ),
        (
            "grouped by status".into(),
            "GET",
            "/api/tasks/coordinator-data".into(),
            None,
            200,
        ),
        (
            "unknown task".into(),
            "GET",
            "/api/tasks/TASK-999999".into(),
            None,
            404,
        ),
        (
            format!("claim {pending}"),
            "POST",
            format!("/api/tasks/{pending}/claim"),
            Some(json!({"agent_name": "agent-demo"})),
            200,
        ),
        (
            "claim it as someone else".into(),
            "POST",
            format!("/api/tasks/{pending}/claim"),
            Some(json!({"agent_name": "agent-other"})),
            409,
        ),
        (
            "heartbeat by the wrong agent".into(),
            "POST",
            format!("/api/tasks/{pending}/heartbeat"),
            Some(json!({"agent_name": "agent-other"})),
            403,
        ),
        (
            "set an unknown status".into(),
            "POST",
            format!("/api/tasks/{pending}/set-status"),
            Some(json!({"status": "finished"})),
            422,
        ),
    ];
    n.say(format!(
        "{:<32} {:>7} {:>7}  {}",
        "request", "legacy", "new", "same answer?"
    ));
    for (what, method, path, body, want) in calls {
        let l = send(client, method, &format!("{legacy}{path}"), body.as_ref()).await?;
        let r = send(client, method, &format!("{new}{path}"), body.as_ref()).await?;
        let exact = l.json() == r.json();
        let same = exact
            || (method != "GET"
                && without_request_time(&l.json()) == without_request_time(&r.json()));
        let note = match (exact, same) {
            (true, _) => "yes",
            (false, true) => "yes (apart from request-time timestamps)",
            (false, false) => "NO",
        };
        n.say(format!(
            "{:<32} {:>7} {:>7}  {note}{}",
            what,
            l.status,
            r.status,
            summary(&l)
        ));
        if l.status != want || r.status != want || !same {
            return Err(DemoError::Step(format!(
                "{what}: expected {want} and the same answer on both sides, got legacy {} new {}",
                l.status, r.status
            )));
        }
    }
    Ok(())
}

async fn send(
    client: &Client,
    method: &str,
    url: &str,
    body: Option<&Value>,
) -> Result<Reply, DemoError> {
    client.send(method, url, body, &[]).await
}

/// A short description of a reply body: list length or error detail.
fn summary(r: &Reply) -> String {
    match r.json() {
        Value::Array(a) => format!("  [{} tasks]", a.len()),
        Value::Object(o) if o.contains_key("detail") => {
            format!("  detail: {}", o["detail"].as_str().unwrap_or(""))
        }
        _ => String::new(),
    }
}
