//! Write order on dual-write routes, through a real proxy over loopback: a write to a row is
//! forwarded only once the previous write to that row has reached both sides, so both sides
//! apply them in the same order; creates take turns per route, so each side numbers them
//! alike. Recording backends show what each side saw and when; the mirror side can be held
//! at a gate the test opens.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{get, metric, send, start_toml, Resp, DUAL_ROUTE};
use ficus_proxy::ProxyHandle;
use ficus_taskapp::seed_tasks;
use testkit::backend::{serve_async, Received, TestServer};
use testkit::ProxyToml;
use tokio::sync::watch;

/// Limit on any one step, so a broken turn fails the test instead of hanging it.
const STEP: Duration = Duration::from_secs(30);

/// Every write either side applied, in the order they were applied: `legacy <path> <body>`
/// when the primary received it, `new <path> <body>` when the mirror side finished it.
type Timeline = Arc<Mutex<Vec<String>>>;

/// A recording backend. The `new` one holds a request whose body contains `hold` until the
/// gate is open and sleeps `delay:N` milliseconds when the body says so.
async fn recorder(
    name: &'static str,
    timeline: Timeline,
    gate: watch::Receiver<bool>,
) -> TestServer {
    serve_async(move |req: Received, _| {
        let (timeline, mut gate) = (timeline.clone(), gate.clone());
        async move {
            let body = req.text();
            let entry = format!("{name} {} {} {body}", req.method, req.path());
            if name == "new" {
                if body.contains("hold") {
                    let _ = gate.wait_for(|open| *open).await;
                }
                if let Some(ms) = body
                    .split_once("delay:")
                    .and_then(|(_, v)| v.split(' ').next())
                    .and_then(|v| v.parse().ok())
                {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
            }
            if req.method != http::Method::GET {
                timeline.lock().unwrap().push(entry);
            }
            (
                200,
                vec![("content-type", "application/json".to_string())],
                "{\"ok\":true}".to_string(),
            )
        }
    })
    .await
}

/// Both recording sides, sharing one timeline; the gate starts as given.
struct Recorders {
    legacy: TestServer,
    new: TestServer,
    timeline: Timeline,
    gate: watch::Sender<bool>,
}

async fn recorders(open: bool) -> Recorders {
    let timeline = Timeline::default();
    let (gate, rx) = watch::channel(open);
    Recorders {
        legacy: recorder("legacy", timeline.clone(), rx.clone()).await,
        new: recorder("new", timeline.clone(), rx).await,
        timeline,
        gate,
    }
}

impl Recorders {
    fn timeline(&self) -> Vec<String> {
        self.timeline.lock().unwrap().clone()
    }

    /// What either side has received (finished or not): `<side> <method> <path> <body>`.
    fn arrived(&self) -> Vec<String> {
        [("legacy", &self.legacy), ("new", &self.new)]
            .into_iter()
            .flat_map(|(side, server)| {
                server
                    .received()
                    .into_iter()
                    .map(move |r| format!("{side} {} {} {}", r.method, r.path(), r.text()))
            })
            .collect()
    }
}

/// A proxy (2 workers, so concurrent requests meet across threads) with its state and shadow
/// store in `dir`; turns are waited for up to the legacy backend's `legacy_timeout_ms`.
fn proxy(
    dir: &Path,
    legacy: SocketAddr,
    new: SocketAddr,
    legacy_timeout_ms: u64,
    shadow: &str,
    routes: &str,
) -> ProxyHandle {
    let toml = ProxyToml::new(&legacy, &new)
        .state_file(&dir.join("state.db"))
        .legacy_backend(&format!("timeout_ms = {legacy_timeout_ms}"))
        .new_backend("timeout_ms = 30000")
        .shadow(
            &dir.join("shadow.db"),
            &format!("timeout_ms = 30000\n{shadow}"),
        )
        .routes(routes);
    start_toml(&toml.to_string())
}

async fn post(addr: SocketAddr, path: &str, body: &str) -> Resp {
    tokio::time::timeout(
        STEP,
        send(
            addr,
            "POST",
            path,
            &[("content-type", "application/json")],
            body,
        ),
    )
    .await
    .unwrap_or_else(|_| panic!("POST {path} {body}: no answer within {STEP:?}"))
}

async fn flush(p: &ProxyHandle) {
    tokio::time::timeout(STEP, p.flush_shadow())
        .await
        .expect("shadow flushed");
}

/// (key, legacy_status, new_status, divergent) of every recorded dual write, in order.
type DwRow = (String, Option<i64>, Option<i64>, i64);

fn dual_writes(dir: &Path) -> Vec<DwRow> {
    testkit::sqlite::rows(
        &dir.join("state.db"),
        "SELECT key, legacy_status, new_status, divergent FROM dual_writes ORDER BY id",
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )
}

/// Four clients write one row at once, each write's mirror taking its own time: every write
/// reaches the mirror side before the next one reaches the primary, so the two sides apply
/// them in the same order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_to_one_key_reach_the_mirror_in_the_primary_order() {
    let tmp = testkit::temp_dir("proxy-order-one-key");
    let r = recorders(true).await;
    let p = proxy(
        tmp.path(),
        r.legacy.addr,
        r.new.addr,
        30_000,
        "",
        DUAL_ROUTE,
    );
    let addr = p.listen_addr();
    let mut clients = Vec::new();
    for c in 0..4u64 {
        clients.push(tokio::spawn(async move {
            for i in 0..5u64 {
                let body = format!("c{c}-{i} delay:{}", (c * 3 + i * 7) % 4 * 40);
                let resp = post(addr, "/dual/K", &body).await;
                assert_eq!(resp.status, 200, "{body}: {:?}", resp.body);
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    flush(&p).await;
    let tl = r.timeline();
    assert_eq!(tl.len(), 40, "{tl:#?}");
    // legacy A, new A, legacy B, new B, ...: never a second primary write before the mirror.
    for pair in tl.chunks(2) {
        let body = |e: &str, side: &str| {
            e.strip_prefix(side)
                .unwrap_or_else(|| panic!("{side} expected, got {e}\n{tl:#?}"))
                .to_string()
        };
        assert_eq!(body(&pair[0], "legacy "), body(&pair[1], "new "), "{tl:#?}");
    }
    let rows = dual_writes(tmp.path());
    assert_eq!(rows.len(), 20);
    assert!(rows
        .iter()
        .all(|r| r == &("K".to_string(), Some(200), Some(200), 0)));
    p.shutdown().await;
}

/// Four clients create tasks at once through a create route without a key in the request:
/// creates take turns per route, and each side numbers them alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_get_the_same_ids_on_both_sides() {
    let apps = testkit::apps::pair("proxy_write_order_creates")
        .tasks(&seed_tasks(10, 5))
        .start()
        .await;
    let (tmp, legacy, new) = (apps.dir.path(), &apps.legacy, &apps.new);
    let routes = r#"
[[routes]]
name = "tasks-create"
methods = ["POST"]
path = "/api/tasks/"
dual_write = true
key = "header:X-Task-Id"
[routes.shadow]
ignore_headers = ["date"]
"#;
    let p = proxy(tmp, legacy.addr, new.addr, 30_000, "", routes);
    let addr = p.listen_addr();
    let mut clients = Vec::new();
    for c in 0..4u32 {
        clients.push(tokio::spawn(async move {
            for i in 0..6u32 {
                let body = format!(
                    r#"{{"task_id":"TASK-{}","title":"client {c}","priority":"HIGH"}}"#,
                    1000 + c * 100 + i
                );
                let resp = post(addr, "/api/tasks/", &body).await;
                assert_eq!(resp.status, 201, "{body}: {:?}", resp.body);
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    flush(&p).await;
    let ids = |addr: SocketAddr| async move {
        let list = get(addr, "/api/tasks/", &[]).await.json();
        list.as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["task_id"].as_str().unwrap().to_string(),
                    (t["id"].as_i64().unwrap(), t["created_at"].to_string()),
                )
            })
            .collect::<BTreeMap<_, _>>()
    };
    let (l, n) = (ids(legacy.addr).await, ids(new.addr).await);
    assert_eq!(l.len(), 10 + 24);
    assert_eq!(
        l, n,
        "ids (and stamped creation times) differ between the sides"
    );
    let rows = dual_writes(tmp);
    assert_eq!(rows.len(), 24);
    assert!(
        rows.iter()
            .all(|r| r.0.is_empty() && r.1 == Some(201) && r.2 == Some(201) && r.3 == 0),
        "{rows:?}"
    );
    p.shutdown().await;
    apps.shutdown().await;
}

/// While a write's mirror is held: the write itself was answered at once, reads and other
/// rows go on, and the next write to the row waits — up to the backend timeout, then 503
/// naming route and row, sent to neither side. Once the mirror is through, the row is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_waits_for_its_row_only_and_gives_up_after_the_backend_timeout() {
    let tmp = testkit::temp_dir("proxy-order-wait");
    let r = recorders(false).await;
    let p = proxy(tmp.path(), r.legacy.addr, r.new.addr, 1_000, "", DUAL_ROUTE);
    let addr = p.listen_addr();
    assert_eq!(post(addr, "/dual/K", "first hold").await.status, 200);
    let read = tokio::time::timeout(STEP, get(addr, "/dual/K", &[]))
        .await
        .expect("reads never wait");
    assert_eq!(read.status, 200);
    assert_eq!(post(addr, "/dual/L", "other row").await.status, 200);
    let refused = post(addr, "/dual/K", "second").await;
    assert_eq!(refused.status, 503, "{:?}", refused.body);
    let j = refused.json();
    assert_eq!(j["error"], "write_turn_timeout");
    assert_eq!(j["route"], "dual");
    assert_eq!(j["backend"], "none");
    let msg = j["message"].as_str().unwrap();
    assert!(msg.contains("key \"K\"") && msg.contains("1s"), "{msg}");
    assert_eq!(
        metric(
            &p.metrics_text(),
            "ficus_dual_write_turn_timeouts_total{route=\"dual\"}"
        ),
        1.0
    );
    assert!(
        !r.arrived().iter().any(|e| e.ends_with("second")),
        "the refused write reached a side"
    );
    // Open the gate: the held mirror completes and the row is free again.
    r.gate.send(true).unwrap();
    assert_eq!(post(addr, "/dual/K", "third").await.status, 200);
    flush(&p).await;
    let tl = r.timeline();
    let at = |e: &str| {
        tl.iter()
            .position(|x| x == e)
            .unwrap_or_else(|| panic!("{e}: {tl:#?}"))
    };
    assert!(at("new POST /dual/K first hold") < at("legacy POST /dual/K third"));
    // (Rows are recorded once both sides answered, so not in the order sent.)
    let mut keys: Vec<String> = dual_writes(tmp.path()).into_iter().map(|r| r.0).collect();
    keys.sort();
    assert_eq!(keys, ["K", "K", "L"], "the refused write is not recorded");
    p.shutdown().await;
}

/// A mirror dropped because shadow mode's queue is full releases its row at once (and is
/// recorded as divergent); a mirror still queued keeps its row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_mirror_releases_its_row_and_is_recorded_divergent() {
    let tmp = testkit::temp_dir("proxy-order-dropped");
    let r = recorders(false).await;
    // One mirror at a time, one queued: A is held at the mirror side, B waits for the worker,
    // so at least one of C and D finds the queue full.
    let p = proxy(
        tmp.path(),
        r.legacy.addr,
        r.new.addr,
        1_000,
        "queue = 1\nconcurrency = 1",
        DUAL_ROUTE,
    );
    let addr = p.listen_addr();
    assert_eq!(post(addr, "/dual/A", "a hold").await.status, 200);
    // A's mirror is in flight (the worker took it off the queue).
    tokio::time::timeout(STEP, async {
        while !r.arrived().iter().any(|e| e == "new POST /dual/A a hold") {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("A's mirror reaches the new side");
    for k in ["B", "C", "D"] {
        assert_eq!(post(addr, &format!("/dual/{k}"), k).await.status, 200);
    }
    // Again, with A still held: rows whose mirror is pending wait and give up; rows whose
    // mirror was dropped are free.
    let mut freed = Vec::new();
    for k in ["B", "C", "D"] {
        let resp = post(addr, &format!("/dual/{k}"), &format!("{k} again")).await;
        match resp.status {
            200 => freed.push(k),
            503 => assert_eq!(resp.json()["error"], "write_turn_timeout"),
            other => panic!("{k}: {other} {:?}", resp.body),
        }
    }
    assert!(!freed.contains(&"B"), "B's mirror was queued, not dropped");
    assert!(!freed.is_empty(), "C or D found the queue full");
    r.gate.send(true).unwrap();
    flush(&p).await;
    let rows = dual_writes(tmp.path());
    for k in &freed {
        let first = rows.iter().find(|r| r.0 == *k).unwrap();
        assert_eq!(
            first,
            &(k.to_string(), Some(200), None, 1),
            "dropped mirror: {rows:?}"
        );
    }
    let b = rows.iter().find(|r| r.0 == "B").unwrap();
    assert_eq!(b, &("B".to_string(), Some(200), Some(200), 0));
    p.shutdown().await;
}

/// One row, one turn: a create (route `tasks-create`, keyed by the `X-Task-Id` header, its
/// mirror held at the new side) and a claim on the same task (route `tasks-claim`, keyed by
/// the path) share the task's turn. While the create is being mirrored the claim waits — and,
/// here, gives up after the legacy timeout, having reached neither side; once the create is
/// on both sides, the claim goes, and reaches the mirror side after the create did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_waits_for_the_create_of_its_task_on_another_route() {
    let tmp = testkit::temp_dir("proxy-order-one-row");
    let r = recorders(false).await;
    let routes = r#"
[[routes]]
name = "tasks-create"
methods = ["POST"]
path = "/api/tasks/"
dual_write = true
key = "header:X-Task-Id"
write_order = "route"
[routes.shadow]

[[routes]]
name = "tasks-claim"
methods = ["POST"]
path = "/api/tasks/{task_id}/claim"
dual_write = true
key = "path:task_id"
[routes.shadow]
"#;
    let p = proxy(tmp.path(), r.legacy.addr, r.new.addr, 1_000, "", routes);
    let addr = p.listen_addr();
    let create = |body: &'static str| async move {
        tokio::time::timeout(
            STEP,
            send(
                addr,
                "POST",
                "/api/tasks/",
                &[("content-type", "application/json"), ("x-task-id", "T-7")],
                body,
            ),
        )
        .await
        .expect("create answered")
    };
    assert_eq!(create("create T-7 hold").await.status, 200);
    // The create's mirror is held at the new side: the claim on T-7 waits for its turn.
    let refused = post(addr, "/api/tasks/T-7/claim", "claim T-7 early").await;
    assert_eq!(refused.status, 503, "{:?}", refused.body);
    let j = refused.json();
    assert_eq!(
        (&j["error"], &j["route"]),
        (&"write_turn_timeout".into(), &"tasks-claim".into())
    );
    assert!(
        j["message"].as_str().unwrap().contains("key \"T-7\""),
        "{j}"
    );
    assert!(
        !r.arrived().iter().any(|e| e.contains("early")),
        "the claim reached a side while the create was being mirrored: {:#?}",
        r.arrived()
    );
    // A claim on another task does not wait.
    assert_eq!(
        post(addr, "/api/tasks/T-8/claim", "claim T-8").await.status,
        200
    );
    // The create reaches the new side: the claim goes.
    r.gate.send(true).unwrap();
    assert_eq!(
        post(addr, "/api/tasks/T-7/claim", "claim T-7").await.status,
        200
    );
    flush(&p).await;
    let tl = r.timeline();
    let at = |e: &str| {
        tl.iter()
            .position(|x| x == e)
            .unwrap_or_else(|| panic!("{e}: {tl:#?}"))
    };
    assert!(
        at("new POST /api/tasks/ create T-7 hold")
            < at("legacy POST /api/tasks/T-7/claim claim T-7"),
        "{tl:#?}"
    );
    assert!(
        at("new POST /api/tasks/ create T-7 hold") < at("new POST /api/tasks/T-7/claim claim T-7"),
        "{tl:#?}"
    );
    p.shutdown().await;
}
