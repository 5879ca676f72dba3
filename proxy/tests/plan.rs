//! Step plans through a real proxy on a manual clock: a plan promotes only after `hold` and
//! `min_requests`, thin traffic neither promotes nor rolls back, a failing gate rolls the
//! route back, a proxy restarted mid-plan continues at the same step, and a pre-flight shadows
//! exactly the next cohort's keys and stops a step whose cohort mismatches while the current
//! cohort is clean.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use ficus_proxy::plan::Status;
use ficus_proxy::split::bucket;
use ficus_proxy::{Config, ManualClock, PlanCommand, Proxy, ProxyHandle};
use testkit::backend::{serve_async, TestServer};
use testkit::ProxyToml;

const USER: &str = "x-user";

/// A backend answering `{"user": ..., "total": 1}` (2 for users whose bucket is in `quirk`),
/// with `status`.
async fn backend(status: u16, quirk: Option<(u32, u32)>) -> TestServer {
    serve_async(move |r, _| async move {
        let user = r
            .headers
            .get(USER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let odd = quirk.is_some_and(|(lo, hi)| (lo..hi).contains(&bucket(user.as_bytes())));
        let total = if odd { 2 } else { 1 };
        (
            status,
            vec![("content-type", "application/json".to_string())],
            format!("{{\"user\":\"{user}\",\"total\":{total}}}"),
        )
    })
    .await
}

fn start(
    dir: &Path,
    legacy: SocketAddr,
    new: SocketAddr,
    clock: &Arc<ManualClock>,
    routes: &str,
) -> ProxyHandle {
    let toml = ProxyToml::new(&legacy, &new)
        .state_file(&dir.join("state.db"))
        .proxy("admin_token_env = \"FICUS_PLAN_TEST_TOKEN\"")
        .shadow(&dir.join("shadow.db"), "timeout_ms = 2000")
        .routes(routes)
        .to_string();
    let config = Config::from_toml_str(&toml).unwrap();
    Proxy::start_with_clock(config, None, clock.clone()).unwrap()
}

const PLANNED: &str = r#"
[[routes]]
name = "r"
path = "/r/*"
sticky = "header:x-user"
[routes.plan]
steps = [10, 50, 100]
hold = "60s"
min_requests = 30
max_error_rate = 0.05
max_p99_ms = 1000
"#;

/// One GET per user `from..to` (each a distinct sticky key).
async fn hit(p: &ProxyHandle, from: usize, to: usize) {
    let mut c = Conn::connect(p.listen_addr()).await;
    for u in from..to {
        let user = format!("u{u}");
        c.get("/r/x", &[(USER, user.as_str())]).await;
    }
}

fn percent(p: &ProxyHandle) -> f64 {
    p.routes()
        .unwrap()
        .into_iter()
        .find(|r| r.name == "r")
        .unwrap()
        .percent
}

fn status(p: &ProxyHandle) -> ficus_proxy::plan::PlanState {
    p.plan_status("r").unwrap().plan.unwrap()
}

/// Judges like the admin thread (which may judge first: the state is what is asserted).
fn judge(p: &ProxyHandle) {
    p.check_plans();
}

const SEC: Duration = Duration::from_secs(1);

#[tokio::test]
async fn promotes_after_hold_and_min_requests_thin_traffic_waits_and_a_restart_continues() {
    let dir = testkit::temp_dir("plan");
    let clock = ManualClock::new();
    let (legacy, new) = (backend(200, None).await, backend(200, None).await);
    let p = start(dir.path(), legacy.addr, new.addr, &clock, PLANNED);
    let s = p.plan("r", PlanCommand::Start, "alice").unwrap();
    assert_eq!(s.plan.as_ref().unwrap().status, Status::Running);
    // At 0 % there is nothing to hold at: the first step is taken at once.
    judge(&p);
    assert_eq!(percent(&p), 10.0);

    // Enough traffic, but the hold (60 s on the proxy's clock) is not over.
    hit(&p, 0, 600).await;
    judge(&p);
    clock.advance(30 * SEC);
    judge(&p);
    assert_eq!(percent(&p), 10.0, "hold not over");
    clock.advance(31 * SEC);
    judge(&p);
    assert_eq!(percent(&p), 50.0, "hold over, min_requests met");
    let audit = p.audit(10).unwrap();
    let step = audit
        .iter()
        .find(|a| a.action == "plan-promote" && a.to_bp == 5000)
        .unwrap();
    assert_eq!((step.actor.as_str(), step.from_bp), ("plan", 1000));
    let detail: serde_json::Value = serde_json::from_str(step.detail.as_deref().unwrap()).unwrap();
    let ev = &detail["evidence"];
    assert!(ev["new"]["requests"].as_u64().unwrap() >= 30, "{detail}");
    assert!(ev["legacy"]["requests"].as_u64().unwrap() > 400, "{detail}");
    assert_eq!(ev["new"]["error_rate"], 0.0);
    assert!(ev["new"]["p99_ms"].as_f64().is_some() && ev["legacy"]["p99_ms"].as_f64().is_some());

    // Thin traffic at 50 %: long past the hold, no verdict either way.
    hit(&p, 0, 20).await;
    clock.advance(61 * SEC);
    for _ in 0..3 {
        judge(&p);
    }
    assert_eq!(percent(&p), 50.0);
    let st = p.plan_status("r").unwrap();
    assert_eq!(st.plan.as_ref().unwrap().status, Status::Running);
    assert!(
        st.waiting.as_deref().unwrap().contains("min_requests"),
        "{st:?}"
    );

    // Restarted mid-plan: the same step, the hold already served; fresh evidence decides.
    p.shutdown().await;
    let p = start(dir.path(), legacy.addr, new.addr, &clock, PLANNED);
    assert_eq!(percent(&p), 50.0);
    let s = status(&p);
    assert_eq!((s.status, s.at_bp, s.next), (Status::Running, 5000, 2));
    judge(&p);
    assert_eq!(percent(&p), 50.0, "no evidence since the restart");
    hit(&p, 0, 200).await;
    judge(&p);
    assert_eq!(percent(&p), 100.0);
    assert_eq!(status(&p).status, Status::Done);
    let text = p.metrics_text();
    assert_eq!(
        metric(&text, "ficus_plan_status{route=\"r\",status=\"done\"}"),
        1.0
    );
    assert_eq!(metric(&text, "ficus_plan_step_percent{route=\"r\"}"), 100.0);
    p.shutdown().await;
}

#[tokio::test]
async fn a_failing_gate_rolls_back_but_not_on_thin_traffic() {
    let dir = testkit::temp_dir("plan");
    let clock = ManualClock::new();
    let (legacy, new) = (backend(200, None).await, backend(500, None).await);
    let p = start(dir.path(), legacy.addr, new.addr, &clock, PLANNED);
    p.plan("r", PlanCommand::Start, "alice").unwrap();
    judge(&p);
    assert_eq!(percent(&p), 10.0);
    // ~10 new-side 500s: fewer than min_requests, no verdict.
    hit(&p, 0, 100).await;
    judge(&p);
    assert_eq!(percent(&p), 10.0, "thin traffic does not roll back");
    // Enough of them: the gate fails at once, before the hold is over.
    hit(&p, 100, 600).await;
    judge(&p);
    assert_eq!(percent(&p), 0.0);
    let s = status(&p);
    assert_eq!(s.status, Status::Failed);
    assert!(s.reason.as_deref().unwrap().contains("error_rate"), "{s:?}");
    let a = p.audit(5).unwrap();
    let rb = a
        .iter()
        .find(|a| a.action == "plan-rollback:error_rate")
        .unwrap();
    assert_eq!((rb.from_bp, rb.to_bp, rb.actor.as_str()), (1000, 0, "plan"));
    assert!(
        rb.detail.as_deref().unwrap().contains("\"error_rate\":1.0"),
        "{rb:?}"
    );
    let text = p.metrics_text();
    assert_eq!(
        metric(&text, "ficus_plan_status{route=\"r\",status=\"failed\"}"),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "ficus_plan_gate_value{gate=\"error_rate\",route=\"r\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "ficus_plan_gate_threshold{gate=\"error_rate\",route=\"r\"}"
        ),
        0.05
    );
    // A failed plan may be started again; a running one may not be started twice.
    p.plan("r", PlanCommand::Start, "alice").unwrap();
    assert!(p.plan("r", PlanCommand::Start, "alice").is_err());
    p.plan("r", PlanCommand::Abort, "alice").unwrap();
    p.shutdown().await;
}

const PREFLIGHT: &str = r#"
[[routes]]
name = "r"
path = "/r/*"
sticky = "header:x-user"
[routes.shadow]
sample = 0.0
[routes.plan]
steps = [10, 25, 100]
hold = "60s"
preflight = "30s"
min_requests = 20
max_error_rate = 0.05
max_mismatch_rate = 0.01
on_fail = "pause"
"#;

#[tokio::test]
async fn a_pre_flight_shadows_exactly_the_next_cohort_and_stops_on_its_mismatches() {
    let dir = testkit::temp_dir("plan");
    let clock = ManualClock::new();
    // The new side differs only for the keys the step from 10 % to 25 % would move.
    let legacy = backend(200, None).await;
    let new = backend(200, Some((1000, 2500))).await;
    let p = start(dir.path(), legacy.addr, new.addr, &clock, PREFLIGHT);
    p.set_rollout("r", 10.0, "alice").unwrap();
    p.plan("r", PlanCommand::Start, "alice").unwrap();
    const USERS: usize = 400;
    // The hold at 10 %: the current cohort is clean (no 5xx, identical answers).
    hit(&p, 0, USERS).await;
    clock.advance(61 * SEC);
    judge(&p);
    let s = status(&p);
    assert_eq!(s.phase, ficus_proxy::plan::Phase::Preflight, "{s:?}");
    assert_eq!(percent(&p), 10.0, "a pre-flight moves nobody");
    assert!(new
        .received()
        .iter()
        .all(|r| r.headers.get("x-ficus-shadow").is_none()));

    // During the pre-flight every user comes back once: exactly the cohort is shadowed.
    hit(&p, 0, USERS).await;
    p.flush_shadow().await;
    let shadowed: BTreeSet<String> = new
        .received()
        .iter()
        .filter(|r| r.headers.get("x-ficus-shadow").is_some())
        .map(|r| r.headers[USER].to_str().unwrap().to_string())
        .collect();
    let cohort: BTreeSet<String> = (0..USERS)
        .map(|u| format!("u{u}"))
        .filter(|u| (1000..2500).contains(&bucket(u.as_bytes())))
        .collect();
    assert!(cohort.len() >= 40, "{} keys in the cohort", cohort.len());
    assert_eq!(
        shadowed, cohort,
        "the shadowed keys are exactly the next cohort"
    );
    let mirrored = new
        .received()
        .iter()
        .filter(|r| r.headers.get("x-ficus-shadow").is_some())
        .count();
    assert_eq!(mirrored, cohort.len(), "each once");
    assert_eq!(
        metric(
            &p.metrics_text(),
            "ficus_plan_preflight_requests_total{route=\"r\"}"
        ),
        cohort.len() as f64
    );

    // Every cohort key mismatches: the step does not go ahead; the plan pauses at 10 %.
    judge(&p);
    let s = status(&p);
    assert_eq!(s.status, Status::Paused, "{s:?}");
    assert_eq!(percent(&p), 10.0);
    assert!(
        s.reason
            .as_deref()
            .unwrap()
            .contains("preflight_mismatch_rate"),
        "{s:?}"
    );
    let listed: BTreeSet<String> = s.cohort_mismatches.iter().map(|m| m.key.clone()).collect();
    assert!(
        !listed.is_empty() && listed.is_subset(&cohort),
        "{listed:?}"
    );
    assert!(s.cohort_mismatches[0].request.starts_with("GET /r/x"));
    let cohort_ev = s.last.as_ref().unwrap().cohort.as_ref().unwrap();
    assert_eq!((cohort_ev.from_percent, cohort_ev.to_percent), (10.0, 25.0));
    assert_eq!(cohort_ev.mismatched, cohort.len() as u64);
    let a = p.audit(5).unwrap();
    let paused = a
        .iter()
        .find(|a| a.action == "plan-pause:preflight_mismatch_rate")
        .unwrap();
    assert!(paused
        .detail
        .as_deref()
        .unwrap()
        .contains("cohort_mismatches"));
    assert_eq!(
        metric(
            &p.metrics_text(),
            "ficus_plan_status{route=\"r\",status=\"paused\"}"
        ),
        1.0
    );
    // Paused: no more cohort shadowing.
    let before = new.received().len();
    hit(&p, 0, USERS).await;
    p.flush_shadow().await;
    let after = new.received();
    assert!(after[before..]
        .iter()
        .all(|r| r.headers.get("x-ficus-shadow").is_none()));
    p.shutdown().await;
}

/// The percentage a replica applies to traffic (its gauge is set only when it applies a value).
fn applied(p: &ProxyHandle) -> f64 {
    metric(&p.metrics_text(), "ficus_rollout_percent{route=\"r\"}")
}

/// Waits (real time) until `p` applies `want` percent.
async fn until_applied(p: &ProxyHandle, want: f64) {
    let limit = std::time::Instant::now() + Duration::from_secs(10);
    while applied(p) != want {
        assert!(
            std::time::Instant::now() < limit,
            "{} never applied {want}%",
            p.listen_addr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn with_replicas_on_postgresql_one_promotes_and_all_follow() {
    let db = testkit::pg::fresh_database("plan").unwrap();
    let clock = ManualClock::new();
    let (legacy, new) = (backend(200, None).await, backend(200, None).await);
    let replica = || {
        let toml = ProxyToml::new(&legacy.addr, &new.addr)
            .state(&db.url)
            .routes(PLANNED)
            .to_string();
        Proxy::start_with_clock(Config::from_toml_str(&toml).unwrap(), None, clock.clone()).unwrap()
    };
    let (a, b) = (replica(), replica());
    a.plan("r", PlanCommand::Start, "alice").unwrap();
    judge(&a);
    until_applied(&b, 10.0).await;
    // Only b sees traffic: b's evidence takes the step, a follows.
    hit(&b, 0, 600).await;
    clock.advance(61 * SEC);
    judge(&a);
    assert_eq!(percent(&a), 10.0, "a saw no traffic: no verdict");
    judge(&b);
    judge(&a);
    until_applied(&a, 50.0).await;
    assert_eq!(
        status(&a).status,
        Status::Running,
        "a did not take the step for an outside change"
    );
    let promotes: Vec<_> = a
        .audit(50)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "plan-promote")
        .map(|e| (e.from_bp, e.to_bp))
        .collect();
    assert_eq!(promotes, vec![(1000, 5000), (0, 1000)], "each step once");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn the_admin_api_and_page_summary_show_and_drive_a_plan() {
    let clock = ManualClock::new();
    let (legacy, new) = (backend(200, None).await, backend(200, None).await);
    let toml = ProxyToml::new(&legacy.addr, &new.addr)
        .routes(PLANNED)
        .to_string();
    let mut c = Config::from_toml_str(&toml).unwrap();
    c.proxy.admin_token = Some(ficus_proxy::config::Secret("t0ken".into()));
    let p = Proxy::start_with_clock(c, None, clock.clone()).unwrap();
    let url = format!("http://{}", p.admin_addr());
    let anon = ficus_proxy::client::AdminClient::new(&url, None, None).unwrap();
    let admin =
        ficus_proxy::client::AdminClient::new(&url, Some("t0ken".into()), Some("ops".into()))
            .unwrap();
    assert!(
        anon.plan("r", PlanCommand::Start).await.is_err(),
        "needs the token"
    );
    let s = admin.plan("r", PlanCommand::Start).await.unwrap();
    assert_eq!(s.plan.unwrap().started_by, "ops");
    let err = admin
        .plan("r", PlanCommand::Resume)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("409") && err.contains("cannot resume a plan that is running"),
        "{err}"
    );
    admin.plan("r", PlanCommand::Pause).await.unwrap();
    assert_eq!(
        anon.plan_status("r").await.unwrap().plan.unwrap().status,
        Status::Paused
    );
    let summary: serde_json::Value = anon
        .call(http::Method::GET, "/admin/summary", None)
        .await
        .unwrap();
    assert_eq!(summary["plans"][0]["route"], "r");
    assert_eq!(summary["plans"][0]["plan"]["status"], "paused");
    let actions: Vec<String> = p.audit(5).unwrap().into_iter().map(|a| a.action).collect();
    assert_eq!(actions[..2], ["plan-pause", "plan-start"]);
    let err = anon.plan_status("nope").await.unwrap_err().to_string();
    assert!(err.contains("404"), "{err}");
    p.shutdown().await;
}
