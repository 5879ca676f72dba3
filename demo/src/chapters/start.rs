//! Chapter 4, start everything: the legacy app, two builds of the new service (v1, which
//! answers like legacy — checked here with the same requests straight at each side — and v2,
//! the "next build" with deliberate differences), and the proxy in front, with the URLs an
//! operator needs.

use serde_json::{json, Value};

use crate::client::{Client, Reply};
use crate::narrator::Narrator;
use crate::proxy_config::{Phase, Writes};
use crate::stage::{loopback, serve_new_build, Apps, Ground, Stage};
use crate::traffic::stamp;
use crate::DemoError;

/// The differences build v2 ships with.
const V2_QUIRKS: [&str; 2] = ["timestamp-precision", "extra-field"];

pub async fn start_everything(n: &mut Narrator<'_>, ground: Ground) -> Result<Stage, DemoError> {
    n.step("Start everything: the legacy app, two builds of the new service, the proxy");
    let legacy =
        ficus_taskapp::serve_legacy(&ground.ws.legacy_db(), loopback().await?, vec![]).await?;
    let v1 = serve_new_build(&ground.pg_url, &[]).await?;
    let v2 = serve_new_build(&ground.pg_url, &V2_QUIRKS).await?;
    n.say(format!("legacy      (SQLite)      {}", legacy.url()));
    n.say(format!("new v1      (PostgreSQL)  {}", v1.url()));
    n.say(format!(
        "new v2      (PostgreSQL)  {}   the next build: {}",
        v2.url(),
        V2_QUIRKS.join(", ")
    ));
    n.say("the same requests straight at legacy and v1 (writes stamped once, as the proxy does):");
    compare_sides(n, &Client::new(), &legacy.url(), &v1.url()).await?;

    let phase = Phase {
        new_url: v2.url(),
        writes: Writes::Dual,
        guard: None,
        plan: None,
    };
    let stage = Stage::start(ground, Apps { legacy, v1, v2 }, phase)?;
    let admin = stage.admin();
    n.say(format!(
        "proxy                     {}   (config ficus.toml)",
        stage.entry()
    ));
    n.say(format!("admin page                {admin}/"));
    n.say(format!(
        "admin API and metrics     {admin}/admin/routes  {admin}/metrics"
    ));
    n.say(format!(
        "admin token               {}",
        stage.ws.path("admin-token").display()
    ));
    n.say("routes: tasks-read (GET one task) split by X-User-Id and shadowed; tasks-create and");
    n.say("        tasks-write dual-write (primary by rollout, the other side mirrored); the rest → legacy");
    n.say("new → v2 for now, every route at 0 %: legacy answers everything");
    n.cli(format!("ficus rollout status --admin {admin}"));
    Ok(stage)
}

/// One request of the side-by-side check.
struct Call {
    what: String,
    method: &'static str,
    path: String,
    body: Option<Value>,
    want: u16,
}

impl Call {
    fn new(
        what: impl Into<String>,
        method: &'static str,
        path: impl Into<String>,
        body: Option<Value>,
        want: u16,
    ) -> Call {
        Call {
            what: what.into(),
            method,
            path: path.into(),
            body,
            want,
        }
    }
}

/// Reads, writes and errors at each side directly: the same status and the same JSON.
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
        .and_then(|a| a.last())
        .and_then(|t| t["task_id"].as_str())
        .ok_or_else(|| DemoError::Step("the seeded data has no ready task".into()))?
        .to_string();
    let act = |a: &str| format!("/api/tasks/{pending}/{a}");
    let calls = [
        Call::new("list all tasks", "GET", "/api/tasks/", None, 200),
        Call::new("one task", "GET", "/api/tasks/TASK-101", None, 200),
        Call::new("ready queue", "GET", "/api/tasks/ready", None, 200),
        Call::new(
            "grouped by status",
            "GET",
            "/api/tasks/coordinator-data",
            None,
            200,
        ),
        Call::new("unknown task", "GET", "/api/tasks/TASK-999999", None, 404),
        Call::new(
            format!("claim {pending}"),
            "POST",
            act("claim"),
            Some(json!({"agent_name": "agent-demo"})),
            200,
        ),
        Call::new(
            "claim it as someone else",
            "POST",
            act("claim"),
            Some(json!({"agent_name": "agent-other"})),
            409,
        ),
        Call::new(
            "heartbeat by the wrong agent",
            "POST",
            act("heartbeat"),
            Some(json!({"agent_name": "agent-other"})),
            403,
        ),
        Call::new(
            "set an unknown status",
            "POST",
            act("set-status"),
            Some(json!({"status": "finished"})),
            422,
        ),
    ];
    n.say(format!(
        "{:<30} {:>6} {:>6}  same answer?",
        "request", "legacy", "new"
    ));
    for c in calls {
        let at = stamp();
        let headers: &[(&str, &str)] = if c.method == "GET" {
            &[]
        } else {
            &[("x-ficus-request-time", &at)]
        };
        let l = client
            .send(
                c.method,
                &format!("{legacy}{}", c.path),
                c.body.as_ref(),
                headers,
            )
            .await?;
        let r = client
            .send(
                c.method,
                &format!("{new}{}", c.path),
                c.body.as_ref(),
                headers,
            )
            .await?;
        let same = l.json() == r.json();
        n.say(format!(
            "{:<30} {:>6} {:>6}  {}{}",
            c.what,
            l.status,
            r.status,
            if same { "yes" } else { "NO" },
            summary(&l)
        ));
        crate::expect(l.status == c.want && r.status == c.want && same, || {
            format!(
                "{}: expected {} and the same answer on both sides, got legacy {} new {}",
                c.what, c.want, l.status, r.status
            )
        })?;
    }
    Ok(())
}

/// A short description of a reply body: list length or error detail.
fn summary(r: &Reply) -> String {
    match r.json() {
        Value::Array(a) => format!("  [{} tasks]", a.len()),
        Value::Object(o) if o.contains_key("detail") => {
            format!("  {}", o["detail"].as_str().unwrap_or(""))
        }
        _ => String::new(),
    }
}
