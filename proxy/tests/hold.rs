//! The write hold through a real proxy over loopback: `POST /admin/routes/{name}/hold` makes
//! the route's writes wait in the proxy while its reads pass; writes already forwarded are
//! counted until answered; a release sends the held writes where the route points *then* (a
//! rollout change made during the hold included); a hold nobody releases ends by itself at
//! `max_ms` on the proxy's clock; a held write is never failed by the hold; every hold,
//! release and expiry is audited; the admin API refuses what it must.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{metric, send, Resp};
use ficus_proxy::client::{AdminClient, ClientError};
use ficus_proxy::config::Secret;
use ficus_proxy::{Config, ManualClock, Proxy, ProxyHandle, RouteStatus};
use testkit::backend::{serve_async, TestServer};
use testkit::ProxyToml;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const TOKEN: &str = "hold-admin-token";
const ROUTE: &str = "tasks";
/// Limit on any one step, so a write stuck for good fails the test instead of hanging it.
const STEP: Duration = Duration::from_secs(30);

/// A recording backend named `name`: answers `{"backend": name}`; a POST whose body says
/// `gate` waits until the gate is open.
async fn backend(name: &'static str, gate: watch::Receiver<bool>) -> TestServer {
    serve_async(move |req, _| {
        let mut gate = gate.clone();
        async move {
            if req.text().contains("gate") {
                let _ = gate.wait_for(|open| *open).await;
            }
            (
                200,
                vec![("content-type", "application/json".to_string())],
                format!("{{\"backend\":\"{name}\"}}"),
            )
        }
    })
    .await
}

struct Setup {
    proxy: ProxyHandle,
    legacy: TestServer,
    new: TestServer,
    gate: watch::Sender<bool>,
    admin: AdminClient,
}

/// Both backends (the gate closed), and a proxy with one route `tasks` (every method, 0 % to
/// new) whose legacy backend times out after `legacy_timeout_ms`, on `clock` if given.
async fn setup(legacy_timeout_ms: u64, clock: Option<Arc<ManualClock>>) -> Setup {
    let (gate, rx) = watch::channel(false);
    let legacy = backend("legacy", rx.clone()).await;
    let new = backend("new", rx).await;
    let toml = ProxyToml::new(&legacy.addr, &new.addr)
        .legacy_backend(&format!("timeout_ms = {legacy_timeout_ms}"))
        .routes(
            r#"
[[routes]]
name = "tasks"
path = "/api/tasks/*"
percent = 0.0
"#,
        )
        .to_string();
    let mut c = Config::from_toml_str(&toml).unwrap();
    c.proxy.admin_token = Some(Secret(TOKEN.into()));
    let proxy = match clock {
        Some(clock) => Proxy::start_with_clock(c, None, clock).unwrap(),
        None => Proxy::start(c, None).unwrap(),
    };
    let admin = AdminClient::new(
        &format!("http://{}", proxy.admin_addr()),
        Some(TOKEN.into()),
        Some("cutover".into()),
    )
    .unwrap();
    Setup {
        proxy,
        legacy,
        new,
        gate,
        admin,
    }
}

/// A write through the proxy, sent from a task of its own (it may be held).
fn write(addr: SocketAddr, body: &str) -> JoinHandle<Resp> {
    let body = body.to_string();
    tokio::spawn(async move {
        tokio::time::timeout(
            STEP,
            send(
                addr,
                "POST",
                "/api/tasks/",
                &[("content-type", "application/json")],
                &body,
            ),
        )
        .await
        .unwrap_or_else(|_| panic!("POST {body}: no answer within {STEP:?}"))
    })
}

async fn answered(w: JoinHandle<Resp>) -> Resp {
    tokio::time::timeout(STEP, w)
        .await
        .expect("the write is answered")
        .unwrap()
}

async fn status(admin: &AdminClient) -> RouteStatus {
    admin
        .routes()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.name == ROUTE)
        .unwrap()
}

/// Polls the route's status until `cond` holds (a step's limit, not a timing assertion).
async fn until(admin: &AdminClient, what: &str, cond: impl Fn(&RouteStatus) -> bool) {
    tokio::time::timeout(STEP, async {
        loop {
            if cond(&status(admin).await) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: not within {STEP:?}"));
}

/// POSTs each backend received.
fn posts(s: &TestServer) -> Vec<String> {
    s.received()
        .into_iter()
        .filter(|r| r.method == http::Method::POST)
        .map(|r| r.text())
        .collect()
}

fn route_metric(p: &ProxyHandle, name: &str) -> f64 {
    metric(&p.metrics_text(), &format!("{name}{{route=\"{ROUTE}\"}}"))
}

/// (action, actor, from_bp, to_bp) of the route's audit rows, oldest first.
fn audit(p: &ProxyHandle) -> Vec<(String, String, u32, u32)> {
    let mut rows: Vec<_> = p
        .audit(100)
        .unwrap()
        .into_iter()
        .filter(|a| a.route == ROUTE)
        .map(|a| (a.action, a.actor, a.from_bp, a.to_bp))
        .collect();
    rows.reverse();
    rows
}

/// Polls the audit log until a row with `action` is there (a hold that ended by itself is
/// recorded by the admin thread).
async fn until_audited(p: &ProxyHandle, action: &str) {
    tokio::time::timeout(STEP, async {
        while !audit(p).iter().any(|r| r.0 == action) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {action} row within {STEP:?}"));
}

fn row(action: &str, actor: &str, from: u32, to: u32) -> (String, String, u32, u32) {
    (action.into(), actor.into(), from, to)
}

/// Hold, writes wait while reads pass; set 100 % new during the hold; release: the held
/// writes reach new, none reached legacy, none failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_writes_wait_reads_pass_and_the_release_sends_them_where_the_route_points_then() {
    let s = setup(30_000, None).await;
    let addr = s.proxy.listen_addr();
    for m in [
        "ficus_route_held",
        "ficus_held_writes",
        "ficus_in_flight_writes",
    ] {
        let text = s.proxy.metrics_text();
        assert!(
            text.contains(&format!("{m}{{route=\"{ROUTE}\"}} 0")),
            "{m} at 0 from the start"
        );
    }

    let h = s.admin.hold(ROUTE, 10_000).await.unwrap();
    assert!(h.held, "{h:?}");
    assert_eq!(h.route, ROUTE);
    assert_eq!(h.held_by.as_deref(), Some("cutover"));
    let (since, until_) = (h.held_since.clone().unwrap(), h.held_until.clone().unwrap());
    let since = ficus_core_stamp(&since);
    let until_t = ficus_core_stamp(&until_);
    assert_eq!((until_t - since).whole_milliseconds(), 10_000);
    assert_eq!((h.waiting_writes, h.in_flight_writes), (0, 0));
    assert_eq!(route_metric(&s.proxy, "ficus_route_held"), 1.0);

    let writes: Vec<_> = (0..3).map(|i| write(addr, &format!("w{i}"))).collect();
    until(&s.admin, "three writes waiting", |r| r.waiting_writes == 3).await;
    let st = status(&s.admin).await;
    assert!(
        st.held && st.held_by.as_deref() == Some("cutover"),
        "{st:?}"
    );
    assert_eq!(st.held_until.as_deref(), Some(until_.as_str()));
    assert_eq!(st.in_flight_writes, 0, "held writes are not in flight yet");
    assert_eq!(route_metric(&s.proxy, "ficus_held_writes"), 3.0);

    // Reads flow.
    let read = tokio::time::timeout(STEP, common::get(addr, "/api/tasks/1", &[]))
        .await
        .expect("reads are not held");
    assert_eq!(
        (read.status, read.header("x-ficus-backend")),
        (200, "legacy")
    );
    assert!(posts(&s.legacy).is_empty() && posts(&s.new).is_empty());

    // The cut-over: every write to new, then release.
    s.admin.set_rollout(ROUTE, 100.0).await.unwrap();
    let r = s.admin.release(ROUTE).await.unwrap();
    assert!(
        !r.held && r.held_by.is_none() && r.held_until.is_none(),
        "{r:?}"
    );
    for w in writes {
        let resp = answered(w).await;
        assert_eq!(resp.status, 200, "{:?}", resp.body);
        assert_eq!(resp.header("x-ficus-backend"), "new");
    }
    let mut got = posts(&s.new);
    got.sort();
    assert_eq!(got, ["w0", "w1", "w2"]);
    assert!(posts(&s.legacy).is_empty(), "a held write reached legacy");

    let text = s.proxy.metrics_text();
    testkit::metrics::promtool_check(&text);
    assert_eq!(route_metric(&s.proxy, "ficus_route_held"), 0.0);
    assert_eq!(route_metric(&s.proxy, "ficus_held_writes"), 0.0);
    assert_eq!(metric(&text, "ficus_hold_wait_seconds_count"), 3.0);
    assert!(metric(&text, "ficus_hold_wait_seconds_sum") > 0.0);
    assert_eq!(
        audit(&s.proxy),
        [
            row("hold", "cutover", 0, 0),
            row("set", "cutover", 0, 10_000),
            row("release", "cutover", 10_000, 10_000),
        ]
    );
    s.proxy.shutdown().await;
}

/// Writes forwarded before the hold are counted in flight until answered; the count reaches 0
/// while the hold keeps new writes waiting (not counted in flight).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_in_flight_are_counted_until_answered() {
    let s = setup(30_000, None).await;
    let addr = s.proxy.listen_addr();
    let early: Vec<_> = (0..2).map(|i| write(addr, &format!("gate {i}"))).collect();
    tokio::time::timeout(STEP, async {
        while posts(&s.legacy).len() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("both writes reach legacy");
    let h = s.admin.hold(ROUTE, 10_000).await.unwrap();
    assert_eq!((h.in_flight_writes, h.waiting_writes), (2, 0), "{h:?}");
    assert_eq!(route_metric(&s.proxy, "ficus_in_flight_writes"), 2.0);
    let late = write(addr, "late");
    until(&s.admin, "the late write waits", |r| r.waiting_writes == 1).await;
    assert_eq!(status(&s.admin).await.in_flight_writes, 2);
    // The backend answers: nothing is in flight any more, the late write still waits.
    s.gate.send(true).unwrap();
    for w in early {
        assert_eq!(answered(w).await.status, 200);
    }
    until(&s.admin, "no write in flight", |r| r.in_flight_writes == 0).await;
    let st = status(&s.admin).await;
    assert_eq!((st.held, st.waiting_writes), (true, 1), "{st:?}");
    assert_eq!(route_metric(&s.proxy, "ficus_in_flight_writes"), 0.0);
    assert!(!posts(&s.legacy).contains(&"late".to_string()));
    s.admin.release(ROUTE).await.unwrap();
    let resp = answered(late).await;
    assert_eq!(
        (resp.status, resp.header("x-ficus-backend")),
        (200, "legacy")
    );
    until(&s.admin, "the late write answered", |r| {
        r.in_flight_writes == 0
    })
    .await;
    s.proxy.shutdown().await;
}

/// A hold nobody releases ends by itself at `max_ms` on the proxy's clock (not before: the
/// clock decides), its writes go on normally and its expiry is audited `hold-expired`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_nobody_releases_expires_at_max_ms_on_the_proxys_clock() {
    let clock = ManualClock::new();
    let s = setup(30_000, Some(clock.clone())).await;
    let addr = s.proxy.listen_addr();
    s.admin.hold(ROUTE, 2_000).await.unwrap();
    let writes: Vec<_> = (0..2).map(|i| write(addr, &format!("w{i}"))).collect();
    until(&s.admin, "two writes waiting", |r| r.waiting_writes == 2).await;
    clock.advance(Duration::from_millis(1_999));
    assert!(s.proxy.check_holds().is_empty(), "not yet due on the clock");
    let st = status(&s.admin).await;
    assert!(st.held && st.waiting_writes == 2, "{st:?}");
    // The orchestrator is gone; the clock reaches the deadline and the proxy lets go by itself
    // (no release, no check_holds from here on).
    clock.advance(Duration::from_millis(1));
    for w in writes {
        let resp = answered(w).await;
        assert_eq!(
            (resp.status, resp.header("x-ficus-backend")),
            (200, "legacy")
        );
    }
    let st = status(&s.admin).await;
    assert!(!st.held && st.held_by.is_none(), "{st:?}");
    assert_eq!(route_metric(&s.proxy, "ficus_route_held"), 0.0);
    let text = s.proxy.metrics_text();
    assert_eq!(metric(&text, "ficus_hold_wait_seconds_count"), 2.0);
    until_audited(&s.proxy, "hold-expired").await;
    assert_eq!(
        metric(&text, "ficus_hold_wait_seconds_sum"),
        4.0,
        "both waited 2 s on the proxy's clock"
    );
    assert_eq!(
        audit(&s.proxy),
        [
            row("hold", "cutover", 0, 0),
            row("hold-expired", "cutover", 0, 0)
        ]
    );
    // Releasing what expired is a conflict; holding again works.
    let e = s.admin.release(ROUTE).await.unwrap_err();
    assert!(
        matches!(e, ClientError::Status { status, .. } if status == 409),
        "{e}"
    );
    assert!(s.admin.hold(ROUTE, 100).await.unwrap().held);
    s.proxy.shutdown().await;
}

/// On the system clock, a short hold expires by itself too (the waiting write's own timer and
/// the admin thread at the deadline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_hold_expires_by_itself_on_the_system_clock() {
    let s = setup(30_000, None).await;
    s.admin.hold(ROUTE, 200).await.unwrap();
    let resp = answered(write(s.proxy.listen_addr(), "w")).await;
    assert_eq!(resp.status, 200);
    until(&s.admin, "the hold is gone", |r| !r.held).await;
    until_audited(&s.proxy, "hold-expired").await;
    s.proxy.shutdown().await;
}

/// A write held longer than its backend's timeout is not failed: the timeout starts when it
/// leaves the hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_held_past_its_backend_timeout_is_not_failed_by_the_hold() {
    let s = setup(300, None).await;
    s.admin.hold(ROUTE, 10_000).await.unwrap();
    let w = write(s.proxy.listen_addr(), "w");
    until(&s.admin, "the write waits", |r| r.waiting_writes == 1).await;
    // Longer than the legacy backend's timeout_ms.
    tokio::time::sleep(Duration::from_millis(600)).await;
    s.admin.release(ROUTE).await.unwrap();
    let resp = answered(w).await;
    assert_eq!(resp.status, 200, "{:?}", resp.body);
    // (Implied by the sleep above: the write did wait longer than its backend's timeout.)
    assert!(resp.elapsed >= Duration::from_millis(600));
    assert_eq!(posts(&s.legacy), ["w"]);
    s.proxy.shutdown().await;
}

/// 409 when held (naming who since when) or not held, 404 for an unknown route, 400 naming
/// `max_ms`, 401 without the token, 405 for another method; the actor from `X-Ficus-Actor`
/// when the body has none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_refuses_what_it_must() {
    let s = setup(30_000, None).await;
    let a = s.proxy.admin_addr();
    let auth = format!("Bearer {TOKEN}");
    let call = |method: &'static str, path: &'static str, body: &'static str| {
        let auth = auth.clone();
        async move {
            send(
                a,
                method,
                path,
                &[
                    ("authorization", auth.as_str()),
                    ("x-ficus-actor", "alice"),
                    ("content-type", "application/json"),
                ],
                body,
            )
            .await
        }
    };
    let hold_path = "/admin/routes/tasks/hold";
    for (body, what) in [
        (r#"{"max_ms": 0}"#, "got 0"),
        (r#"{"max_ms": 60001}"#, "got 60001"),
        (r#"{"max_ms": "soon"}"#, "\"soon\""),
        (r#"{"max_ms": 1.5}"#, "1.5"),
        (r#"{"actor": "x"}"#, "missing"),
    ] {
        let r = call("POST", hold_path, body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        let msg = r.json()["error"].as_str().unwrap().to_string();
        assert!(
            msg.starts_with("max_ms: ") && msg.contains(what),
            "{body}: {msg}"
        );
    }
    let r = call("POST", "/admin/routes/nope/hold", r#"{"max_ms": 100}"#).await;
    assert_eq!(r.status, 404, "{}", r.text());
    let r = call("DELETE", "/admin/routes/nope/hold", "").await;
    assert_eq!(r.status, 404, "{}", r.text());
    let r = call("DELETE", hold_path, "").await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert!(r.json()["error"].as_str().unwrap().contains("not held"));
    let r = send(a, "POST", hold_path, &[], r#"{"max_ms": 100}"#).await;
    assert_eq!(r.status, 401);
    let r = call("GET", hold_path, "").await;
    assert_eq!(r.status, 405);

    // Held by alice (the header names the actor when the body does not).
    let r = call("POST", hold_path, r#"{"max_ms": 60000}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let held = r.json();
    assert_eq!(held["held_by"], "alice");
    let r = call("POST", hold_path, r#"{"max_ms": 100, "actor": "bob"}"#).await;
    assert_eq!(r.status, 409, "{}", r.text());
    let j = r.json();
    let msg = j["error"].as_str().unwrap();
    let since = held["held_since"].as_str().unwrap();
    assert!(
        msg.contains("held by alice since") && msg.contains(since),
        "{msg}"
    );
    assert_eq!(
        (&j["held_by"], &j["held_since"]),
        (&held["held_by"], &held["held_since"])
    );
    // The client sees the conflict as a 409.
    let e = s.admin.hold(ROUTE, 100).await.unwrap_err();
    assert!(
        matches!(&e, ClientError::Status { status, message } if *status == 409 && message.contains("alice")),
        "{e}"
    );
    let r = call("DELETE", hold_path, "").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["held"], false);
    assert_eq!(
        audit(&s.proxy),
        [row("hold", "alice", 0, 0), row("release", "alice", 0, 0)]
    );
    s.proxy.shutdown().await;
}

fn ficus_core_stamp(s: &str) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{s:?}: {e}"))
}
