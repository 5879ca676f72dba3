//! The mirror seam against real servers: comparison results, orientation, method rules,
//! marker headers, timeouts, the queue bound and drop counting.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ficus_core::ManualClock;

use ficus_shadow::{
    CapturedBody, DiffKind, MirrorDecision, RouteShadowConfig, Side, SkipReason, Store, Submitted,
    TeeBody,
};
use http::{HeaderMap, Method};
use http_body_util::{BodyExt, Full};

use crate::support::*;

fn kinds(store: &Store, id: i64) -> Vec<(String, DiffKind)> {
    let rec = store.mismatch(id).unwrap().unwrap();
    rec.diff.into_iter().map(|e| (e.path, e.kind)).collect()
}

#[tokio::test]
async fn task_quirks_show_up_with_path_and_kind() {
    let legacy = serve(Duration::ZERO, json(|_, _| tasks(false, false, false))).await;
    let new = serve(Duration::ZERO, json(|_, _| tasks(true, true, true))).await;
    let h = harness("quirks", |_| {});
    let route = h.route(
        "tasks-read",
        RouteShadowConfig::default(),
        false,
        &legacy.url(),
        &new.url(),
    );
    assert_eq!(
        h.shadow.decide(&route, &Method::GET),
        MirrorDecision::Mirror
    );
    let j = get_job(&route, &legacy.url(), "/api/tasks/").await;
    assert_eq!(h.shadow.submit(j), Submitted::Queued);
    flush(&h.shadow).await;

    assert_eq!(h.results("tasks-read", "mismatch"), 1);
    let store = Store::open_existing(&h.store_path()).unwrap();
    let k = kinds(&store, 1);
    assert!(k.contains(&("".into(), DiffKind::Order)), "{k:?}");
    for i in 0..3 {
        assert!(
            k.contains(&(format!("/{i}/updated_at"), DiffKind::Value)),
            "{k:?}"
        );
        assert!(
            k.contains(&(format!("/{i}/service_version"), DiffKind::Extra)),
            "{k:?}"
        );
    }
    assert_eq!(k.len(), 7, "{k:?}");
    // The mirror got the request with the marker and without an idempotency key (a GET).
    let got = new.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].uri, "/api/tasks/");
    assert_eq!(got[0].headers["x-ficus-shadow"], "1");
    assert!(!got[0].headers.contains_key("idempotency-key"));
    assert_eq!(
        ficus_shadow_kind_count(&h, "tasks-read", "extra"),
        1,
        "mismatches are counted once per kind"
    );
}

fn ficus_shadow_kind_count(h: &Harness, route: &str, kind: &str) -> u64 {
    counter(
        &h.registry,
        "ficus_shadow_mismatches_total",
        &[("route", route), ("kind", kind)],
    )
}

#[tokio::test]
async fn ignore_rules_and_unordered_arrays_remove_exactly_their_differences() {
    let legacy = serve(Duration::ZERO, json(|_, _| tasks(false, false, false))).await;
    let new = serve(Duration::ZERO, json(|_, _| tasks(true, true, true))).await;
    let h = harness("ignore", |_| {});
    let ignoring = RouteShadowConfig {
        ignore: vec!["/*/updated_at".into(), "/**/service_version".into()],
        ..Default::default()
    };
    let r1 = h.route(
        "only-order",
        ignoring.clone(),
        false,
        &legacy.url(),
        &new.url(),
    );
    let r2 = h.route(
        "nothing",
        RouteShadowConfig {
            unordered_arrays: vec!["".into()],
            ..ignoring
        },
        false,
        &legacy.url(),
        &new.url(),
    );
    assert_eq!(
        h.shadow
            .submit(get_job(&r1, &legacy.url(), "/api/tasks/ready").await),
        Submitted::Queued
    );
    assert_eq!(
        h.shadow
            .submit(get_job(&r2, &legacy.url(), "/api/tasks/ready").await),
        Submitted::Queued
    );
    flush(&h.shadow).await;
    assert_eq!(h.results("only-order", "mismatch"), 1);
    assert_eq!(h.results("nothing", "match"), 1);
    let store = Store::open_existing(&h.store_path()).unwrap();
    assert_eq!(kinds(&store, 1), vec![("".to_string(), DiffKind::Order)]);
    assert_eq!(store.mismatch_count().unwrap(), 1);
}

#[tokio::test]
async fn comparison_is_legacy_versus_new_whichever_side_served() {
    let legacy = serve(Duration::ZERO, json(|_, _| r#"{"a":1}"#.into())).await;
    let new = serve(Duration::ZERO, json(|_, _| r#"{"a":1,"b":2}"#.into())).await;
    let h = harness("orientation", |_| {});
    let route = h.route(
        "r",
        RouteShadowConfig::default(),
        false,
        &legacy.url(),
        &new.url(),
    );
    let j = job(
        &route,
        Side::New,
        &new.url(),
        Method::GET,
        "/x",
        HeaderMap::new(),
        "",
        "id-1",
    )
    .await;
    h.shadow.submit(j);
    flush(&h.shadow).await;
    let store = Store::open_existing(&h.store_path()).unwrap();
    let rec = store.mismatch(1).unwrap().unwrap();
    assert_eq!(rec.primary, Side::New);
    assert_eq!(rec.diff.len(), 1);
    assert_eq!(
        rec.diff[0].kind,
        DiffKind::Extra,
        "b is extra on the new side"
    );
    assert_eq!(rec.legacy.body.data, br#"{"a":1}"#);
    // The mirror went to legacy.
    assert_eq!(legacy.received().len(), 1);
    assert_eq!(new.received().len(), 1);
}

#[tokio::test]
async fn writes_are_mirrored_only_on_dual_write_routes_with_marker_and_idempotency_key() {
    let legacy = serve(Duration::ZERO, json(|_, _| r#"{"ok":true}"#.into())).await;
    let new = serve(Duration::ZERO, json(|_, _| r#"{"ok":true}"#.into())).await;
    let h = harness("writes", |_| {});
    let plain = h.route(
        "plain",
        RouteShadowConfig::default(),
        false,
        &legacy.url(),
        &new.url(),
    );
    let dual = h.route(
        "dual",
        RouteShadowConfig::default(),
        true,
        &legacy.url(),
        &new.url(),
    );
    for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        assert_eq!(
            h.shadow.decide(&plain, &m),
            MirrorDecision::Skip(SkipReason::Method)
        );
        assert_eq!(h.shadow.decide(&dual, &m), MirrorDecision::Mirror);
    }
    for m in [Method::GET, Method::HEAD, Method::OPTIONS] {
        assert_eq!(h.shadow.decide(&plain, &m), MirrorDecision::Mirror);
    }
    // Even if the proxy submitted a write on the plain route, it is refused.
    let body = r#"{"agent_name":"a1"}"#;
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    let j = job(
        &plain,
        Side::Legacy,
        &legacy.url(),
        Method::POST,
        "/api/tasks/TASK-1/claim",
        headers.clone(),
        body,
        "req-plain",
    )
    .await;
    assert_eq!(h.shadow.submit(j), Submitted::NotAllowed);
    let j = job(
        &dual,
        Side::Legacy,
        &legacy.url(),
        Method::POST,
        "/api/tasks/TASK-1/claim",
        headers.clone(),
        body,
        "req-dual",
    )
    .await;
    assert_eq!(h.shadow.submit(j), Submitted::Queued);
    flush(&h.shadow).await;
    let got = new.received();
    assert_eq!(
        got.len(),
        1,
        "only the dual-write route's write reached the mirror side"
    );
    assert_eq!(got[0].method, Method::POST);
    assert_eq!(got[0].headers["x-ficus-shadow"], "1");
    assert_eq!(got[0].headers["idempotency-key"], "req-dual");
    assert_eq!(got[0].body, body.as_bytes());
    assert_eq!(h.results("dual", "match"), 1);
    assert_eq!(
        h.results("plain", "match") + h.results("plain", "skipped"),
        0
    );

    // A client's own Idempotency-Key is kept.
    headers.insert("idempotency-key", "client-key".parse().unwrap());
    let j = job(
        &dual,
        Side::Legacy,
        &legacy.url(),
        Method::POST,
        "/api/tasks/TASK-1/claim",
        headers,
        body,
        "req-2",
    )
    .await;
    h.shadow.submit(j);
    flush(&h.shadow).await;
    assert_eq!(new.received()[1].headers["idempotency-key"], "client-key");
}

#[tokio::test]
async fn submit_never_waits_for_the_mirror() {
    // The mirror side holds the request until the test lets it answer, after `submit`
    // returned: a `submit` that waited for the mirror could only return once the exchange
    // had ended (here: by its 10 s timeout, counted `error`).
    let legacy = serve(Duration::ZERO, json(|_, _| "{}".into())).await;
    let new = Held::start().await;
    let h = harness("no-wait", |g| g.timeout_ms = 10_000);
    let route = h.route(
        "r",
        RouteShadowConfig::default(),
        false,
        &legacy.url(),
        &new.url(),
    );
    let j = get_job(&route, &legacy.url(), "/held").await;
    assert_eq!(h.shadow.submit(j), Submitted::Queued);
    assert_eq!(
        ended(&h, "r"),
        0,
        "the job had not ended when submit returned"
    );
    new.open();
    flush(&h.shadow).await;
    assert_eq!(h.results("r", "match"), 1);
    assert_eq!(new.answered(), 1);
}

#[tokio::test]
async fn a_slow_mirror_times_out_and_is_counted_as_error() {
    // The mirror side receives the request and never answers: only the 200 ms timeout can
    // end the job (`flush` fails the test if it does not end).
    let legacy = serve(Duration::ZERO, json(|_, _| "{}".into())).await;
    let new = Held::start().await;
    let h = harness("timeout", |g| g.timeout_ms = 200);
    let route = h.route(
        "r",
        RouteShadowConfig::default(),
        false,
        &legacy.url(),
        &new.url(),
    );
    let j = get_job(&route, &legacy.url(), "/slow").await;
    assert_eq!(h.shadow.submit(j), Submitted::Queued);
    flush(&h.shadow).await;
    assert_eq!(h.results("r", "error"), 1);
    assert_eq!(
        (new.received(), new.answered()),
        (1, 0),
        "sent, never answered"
    );
    assert_eq!(
        counter(
            &h.registry,
            "ficus_shadow_mirror_duration_seconds",
            &[("route", "r")]
        ),
        1
    );
}

#[tokio::test]
async fn a_down_mirror_is_an_error_not_a_mismatch() {
    let legacy = serve(Duration::ZERO, json(|_, _| "{}".into())).await;
    let h = harness("down", |_| {});
    let route = h.route(
        "r",
        RouteShadowConfig::default(),
        false,
        &legacy.url(),
        &down_url().await,
    );
    h.shadow.submit(get_job(&route, &legacy.url(), "/").await);
    flush(&h.shadow).await;
    assert_eq!(h.results("r", "error"), 1);
    assert_eq!(h.results("r", "mismatch"), 0);
}

#[tokio::test]
async fn a_mirror_side_that_keeps_failing_is_paused() {
    // The mirror side accepts connections and closes them at once (every exchange fails);
    // the breaker's pause is measured on shadow mode's clock, moved by the test.
    let clock = ManualClock::new();
    let legacy = serve(Duration::ZERO, json(|_, _| "{}".into())).await;
    let (failing, connections) = closing().await;
    let h = harness_with_clock("breaker", clock.clone(), |_| {});
    let route = h.route(
        "r",
        RouteShadowConfig::default(),
        false,
        &legacy.url(),
        &failing,
    );
    let j = get_job(&route, &legacy.url(), "/").await;
    let again = |i: usize| ficus_shadow::MirrorJob {
        route: route.clone(),
        method: Method::GET,
        uri: j.uri.clone(),
        request_headers: HeaderMap::new(),
        request_body: CapturedBody::default(),
        primary_side: Side::Legacy,
        primary: j.primary.clone(),
        request_id: format!("req-{i}"),
        on_done: None,
    };
    let attempts = || connections.load(Ordering::SeqCst);
    for i in 0..5 {
        assert_eq!(h.shadow.submit(again(i)), Submitted::Queued);
        flush(&h.shadow).await;
    }
    // Five failures in a row: the next jobs are not even attempted, for 1 s of the clock.
    let tried = attempts();
    assert!(tried >= 5, "{tried}");
    assert_eq!(h.shadow.submit(again(5)), Submitted::MirrorFailing);
    clock.advance(Duration::from_millis(999));
    assert_eq!(h.shadow.submit(again(6)), Submitted::MirrorFailing);
    flush(&h.shadow).await;
    assert_eq!(h.results("r", "error"), 7);
    assert_eq!(attempts(), tried, "no connection attempt while paused");
    // The pause is over: the next job is sent; it fails too, and the pause doubles.
    clock.advance(Duration::from_millis(1));
    assert_eq!(h.shadow.submit(again(7)), Submitted::Queued);
    flush(&h.shadow).await;
    let tried = attempts();
    clock.advance(Duration::from_millis(1_999));
    assert_eq!(h.shadow.submit(again(8)), Submitted::MirrorFailing);
    assert_eq!(attempts(), tried);
    clock.advance(Duration::from_millis(1));
    assert_eq!(h.shadow.submit(again(9)), Submitted::Queued);
    flush(&h.shadow).await;
    assert!(attempts() > tried, "sent again after the doubled pause");
    assert_eq!(h.results("r", "error"), 10);
    // The mirror served by legacy (primary new) is a different side: not paused.
    let mut other = again(10);
    other.primary_side = Side::New;
    assert_eq!(h.shadow.submit(other), Submitted::Queued);
    flush(&h.shadow).await;
    let store = Store::open_existing(&h.store_path()).unwrap();
    let rep = ficus_shadow::Report::build(&store, &Default::default()).unwrap();
    assert_eq!(rep.routes[0].results["error"], 10, "counts reach the store");
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_and_never_blocks() {
    // The mirror side holds every request until the test lets it answer, so nothing leaves
    // the queue while the jobs are submitted: a `submit` that waited for room could not
    // return before a mirror was answered.
    let legacy = serve(Duration::ZERO, json(|_, _| "{}".into())).await;
    let new = Held::start().await;
    let h = harness("queue", |g| {
        g.queue = 2;
        g.concurrency = 1;
        g.timeout_ms = 10_000;
    });
    let route = h.route(
        "r",
        RouteShadowConfig::default(),
        false,
        &legacy.url(),
        &new.url(),
    );
    let template = get_job(&route, &legacy.url(), "/q").await;
    let mut queued = 0;
    let mut dropped = 0;
    for i in 0..20 {
        let j = ficus_shadow::MirrorJob {
            route: route.clone(),
            method: Method::GET,
            uri: template.uri.clone(),
            request_headers: HeaderMap::new(),
            request_body: CapturedBody::default(),
            primary_side: Side::Legacy,
            primary: template.primary.clone(),
            request_id: format!("req-{i}"),
            on_done: None,
        };
        match h.shadow.submit(j) {
            Submitted::Queued => queued += 1,
            Submitted::Dropped => dropped += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        new.answered(),
        0,
        "every submit returned before any mirror answered"
    );
    // The queue holds 2; the worker may have taken one into flight and one waiting for a permit.
    assert!((2..=4).contains(&queued), "queued {queued}");
    assert_eq!(queued + dropped, 20);
    // While full, decide says so (and counts the drop) so the proxy need not tee.
    let full_decision = h.shadow.decide(&route, &Method::GET);
    if full_decision == MirrorDecision::Skip(SkipReason::QueueFull) {
        dropped += 1;
    }
    assert_eq!(h.results("r", "dropped"), dropped);
    new.open();
    flush(&h.shadow).await;
    assert_eq!(h.results("r", "match"), queued);
    assert_eq!(new.answered(), queued);
}

/// Jobs of `route` that have ended, however.
fn ended(h: &Harness, route: &str) -> u64 {
    ["match", "mismatch", "noise", "error", "dropped", "skipped"]
        .iter()
        .map(|r| h.results(route, r))
        .sum()
}

/// A mirror side that holds every request until [`Held::open`]; then it answers `{}`.
struct Held {
    addr: std::net::SocketAddr,
    gate: tokio::sync::watch::Sender<bool>,
    received: Arc<AtomicU64>,
    answered: Arc<AtomicU64>,
}

impl Held {
    async fn start() -> Held {
        let (gate, open) = tokio::sync::watch::channel(false);
        let (received, answered) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (r, a) = (received.clone(), answered.clone());
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else { break };
                let (open, r, a) = (open.clone(), r.clone(), a.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |_req| {
                        let (mut open, r, a) = (open.clone(), r.clone(), a.clone());
                        async move {
                            r.fetch_add(1, Ordering::SeqCst);
                            let _ = open.wait_for(|o| *o).await;
                            a.fetch_add(1, Ordering::SeqCst);
                            let mut resp =
                                http::Response::new(Full::new(Bytes::from_static(b"{}")));
                            resp.headers_mut()
                                .insert("content-type", "application/json".parse().unwrap());
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        Held {
            addr,
            gate,
            received,
            answered,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn open(&self) {
        let _ = self.gate.send(true);
    }

    fn received(&self) -> u64 {
        self.received.load(Ordering::SeqCst)
    }

    fn answered(&self) -> u64 {
        self.answered.load(Ordering::SeqCst)
    }
}

/// A URL whose server accepts connections and closes them at once, and how many it accepted.
async fn closing() -> (String, Arc<AtomicU64>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let n = accepted.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            n.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    (format!("http://{addr}"), accepted)
}

#[tokio::test]
async fn bodies_over_max_body_bytes_are_skipped_and_counted() {
    let legacy = serve(Duration::ZERO, json(|_, _| "x".repeat(100))).await;
    let new = serve(Duration::ZERO, json(|_, _| "{}".into())).await;
    let h = harness("skip", |g| g.max_body_bytes = 64);
    let route = h.route(
        "r",
        RouteShadowConfig::default(),
        false,
        &legacy.url(),
        &new.url(),
    );
    let mut j = get_job(&route, &legacy.url(), "/big").await;
    // The proxy's tee marks the body truncated past the limit.
    let slot = Arc::new(std::sync::Mutex::new(None));
    let s2 = slot.clone();
    let tee = TeeBody::new(
        Full::new(j.primary.body.to_bytes()),
        h.shadow.max_body_bytes(),
        move |c| *s2.lock().unwrap() = Some(c),
    );
    let forwarded = tee.collect().await.unwrap().to_bytes();
    assert_eq!(forwarded.len(), 100, "the client still gets the whole body");
    j.primary.body = slot.lock().unwrap().take().unwrap();
    assert!(j.primary.body.is_truncated());
    assert_eq!(h.shadow.submit(j), Submitted::Skipped);
    let mut j = get_job(&route, &new.url(), "/").await;
    j.request_body = CapturedBody::too_large();
    assert_eq!(h.shadow.submit(j), Submitted::Skipped);
    flush(&h.shadow).await;
    assert_eq!(h.results("r", "skipped"), 2);
    assert!(new.received().len() <= 1, "skipped jobs are not mirrored");
}

#[tokio::test]
async fn a_larger_mirror_body_is_a_mismatch_not_a_crash() {
    let legacy = serve(Duration::ZERO, json(|_, _| "{}".into())).await;
    let new = serve(
        Duration::ZERO,
        json(|_, _| format!("[{}]", vec!["1"; 100].join(","))),
    )
    .await;
    let h = harness("bigmirror", |g| g.max_body_bytes = 64);
    let route = h.route(
        "r",
        RouteShadowConfig::default(),
        false,
        &legacy.url(),
        &new.url(),
    );
    h.shadow.submit(get_job(&route, &legacy.url(), "/").await);
    flush(&h.shadow).await;
    assert_eq!(h.results("r", "mismatch"), 1);
    let store = Store::open_existing(&h.store_path()).unwrap();
    let rec = store.mismatch(1).unwrap().unwrap();
    assert_eq!(rec.diff[0].kind, DiffKind::Text);
    assert!(rec.new.body.truncated);
}

#[tokio::test]
async fn shutdown_drains_and_commits() {
    let legacy = serve(Duration::ZERO, json(|_, _| r#"{"v":1}"#.into())).await;
    let new = serve(Duration::from_millis(50), json(|_, _| r#"{"v":2}"#.into())).await;
    let h = harness("shutdown", |_| {});
    let route = h.route(
        "r",
        RouteShadowConfig::default(),
        false,
        &legacy.url(),
        &new.url(),
    );
    for _ in 0..5 {
        assert_eq!(
            h.shadow.submit(get_job(&route, &legacy.url(), "/").await),
            Submitted::Queued
        );
    }
    let path = h.store_path();
    tokio::time::timeout(Duration::from_secs(20), h.shadow.shutdown())
        .await
        .unwrap();
    let store = Store::open_existing(&path).unwrap();
    assert_eq!(store.mismatch_count().unwrap(), 5);
    // After shutdown nothing more is taken; it is counted as dropped.
    assert_eq!(
        h.shadow.decide(&route, &Method::GET),
        MirrorDecision::Skip(SkipReason::QueueFull)
    );
    let j = get_job(&route, &legacy.url(), "/").await;
    assert_eq!(h.shadow.submit(j), Submitted::Dropped);
    assert_eq!(h.results("r", "dropped"), 2);
}

#[tokio::test]
async fn sampling_mirrors_the_configured_share() {
    let h = harness("sample", |_| {});
    let url = "http://127.0.0.1:9";
    let none = h.route(
        "none",
        RouteShadowConfig {
            sample: 0.0,
            ..Default::default()
        },
        false,
        url,
        url,
    );
    let half = h.route(
        "half",
        RouteShadowConfig {
            sample: 0.5,
            ..Default::default()
        },
        false,
        url,
        url,
    );
    let mut mirrored = 0;
    for _ in 0..4000 {
        assert_eq!(
            h.shadow.decide(&none, &Method::GET),
            MirrorDecision::Skip(SkipReason::NotSampled)
        );
        if h.shadow.decide(&half, &Method::GET).is_mirror() {
            mirrored += 1;
        }
    }
    assert!((1800..=2200).contains(&mirrored), "{mirrored} of 4000");
}

#[tokio::test]
async fn metrics_exposition_passes_promtool() {
    let legacy = serve(Duration::ZERO, json(|_, _| r#"{"a":1}"#.into())).await;
    let new = serve(Duration::ZERO, json(|_, _| r#"{"a":2}"#.into())).await;
    let h = harness("promtool", |_| {});
    let route = h.route(
        "tasks-read",
        RouteShadowConfig::default(),
        false,
        &legacy.url(),
        &new.url(),
    );
    h.shadow.submit(get_job(&route, &legacy.url(), "/").await);
    flush(&h.shadow).await;
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&h.registry.gather())
        .unwrap();
    assert!(
        text.contains(r#"ficus_shadow_requests_total{result="mismatch",route="tasks-read"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"ficus_shadow_mismatches_total{kind="value",route="tasks-read"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("ficus_shadow_mirror_duration_seconds_bucket"),
        "{text}"
    );
    testkit::metrics::promtool_check(&text);
}

#[tokio::test]
async fn on_done_reports_the_mirror_status_and_outcome_once() {
    use ficus_shadow::{MirrorReport, OnDone, Outcome};
    use std::sync::Mutex;
    let legacy = serve(Duration::ZERO, json(|_, _| tasks(false, false, false))).await;
    let new = serve(Duration::ZERO, json(|_, _| tasks(false, true, false))).await;
    let down = down_url().await;
    let h = harness("on-done", |_| {});
    let got: Arc<Mutex<Vec<(&'static str, MirrorReport)>>> = Arc::default();
    let tell = |name: &'static str| {
        let got = got.clone();
        Some(OnDone::new(move |r| got.lock().unwrap().push((name, r))))
    };
    let up = h.route(
        "up",
        RouteShadowConfig::default(),
        true,
        &legacy.url(),
        &new.url(),
    );
    let gone = h.route(
        "gone",
        RouteShadowConfig::default(),
        true,
        &legacy.url(),
        &down,
    );
    let mut j = get_job(&up, &legacy.url(), "/api/tasks/").await;
    j.on_done = tell("mismatch");
    assert_eq!(h.shadow.submit(j), Submitted::Queued);
    let mut j = get_job(&gone, &legacy.url(), "/api/tasks/").await;
    j.on_done = tell("down");
    assert_eq!(h.shadow.submit(j), Submitted::Queued);
    let mut j = get_job(&up, &legacy.url(), "/api/tasks/").await;
    j.primary.body = CapturedBody::too_large();
    j.on_done = tell("skipped");
    assert_eq!(h.shadow.submit(j), Submitted::Skipped);
    flush(&h.shadow).await;
    let mut got = got.lock().unwrap().clone();
    got.sort_by_key(|(n, _)| *n);
    assert_eq!(
        got,
        vec![
            (
                "down",
                MirrorReport {
                    status: None,
                    outcome: Outcome::Error
                }
            ),
            (
                "mismatch",
                MirrorReport {
                    status: Some(http::StatusCode::OK),
                    outcome: Outcome::Mismatch
                }
            ),
            (
                "skipped",
                MirrorReport {
                    status: None,
                    outcome: Outcome::Skipped
                }
            ),
        ]
    );
}
