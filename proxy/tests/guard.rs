//! The rollback guard through a real proxy on a manual clock: a new side answering 500 is
//! rolled back to 0 % by the proxy itself (audited, counted), thin traffic never trips it,
//! samples leave the window as the clock moves, an operator can raise the route again (the
//! guard re-arms with a fresh window), and a new side that is slow *on the proxy's clock*
//! trips the p99 threshold without anything sleeping.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use ficus_proxy::{Config, GuardReason, ManualClock, Proxy, ProxyHandle};

/// A backend answering every request with `status`.
async fn answering(status: u16) -> SocketAddr {
    answering_after(status, None).await
}

/// A backend answering every request with `status`, after moving `clock` forward by the given
/// time: a backend that is slow on the proxy's clock, at no cost in real time.
async fn answering_after(status: u16, slow: Option<(Arc<ManualClock>, Duration)>) -> SocketAddr {
    // Dropping the handle leaves the server running until the test process ends.
    testkit::backend::serve_async(move |_, _| {
        if let Some((clock, by)) = &slow {
            clock.advance(*by);
        }
        async move { (status, Vec::new(), "{}".to_string()) }
    })
    .await
    .addr
}

fn start(legacy: SocketAddr, new: SocketAddr, clock: &Arc<ManualClock>) -> ProxyHandle {
    let routes = r#"
[[routes]]
name = "busy"
path = "/busy/*"
percent = 100.0
[routes.guard]
max_error_rate = 0.02
window_s = 10
min_requests = 50

[[routes]]
name = "thin"
path = "/thin/*"
percent = 100.0
[routes.guard]
max_error_rate = 0.02
window_s = 10
min_requests = 1000

[[routes]]
name = "slow"
path = "/slow/*"
percent = 100.0
[routes.guard]
max_p99_ms = 500
window_s = 60
min_requests = 50
"#;
    let toml = config_toml(legacy, new, "", routes);
    let config = Config::from_toml_str(&toml).unwrap();
    Proxy::start_with_clock(config, None, clock.clone()).unwrap()
}

fn percent(p: &ProxyHandle, route: &str) -> f64 {
    p.routes()
        .unwrap()
        .into_iter()
        .find(|r| r.name == route)
        .unwrap()
        .percent
}

async fn hit(p: &ProxyHandle, path: &str, n: usize) {
    let mut c = Conn::connect(p.listen_addr()).await;
    for _ in 0..n {
        c.get(path, &[]).await;
    }
}

/// Polls until `route` is at `want` percent (the admin thread judges once a second).
async fn wait_for_percent(p: &ProxyHandle, route: &str, want: f64, within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if percent(p, route) == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn rollbacks(p: &ProxyHandle, route: &str, reason: &str) -> f64 {
    metric(
        &p.metrics_text(),
        &format!("ficus_guard_rollbacks_total{{reason=\"{reason}\",route=\"{route}\"}}"),
    )
}

#[tokio::test]
async fn failing_new_side_is_rolled_back_thin_traffic_is_not_and_an_operator_can_re_raise() {
    let clock = ManualClock::new();
    let legacy = answering(200).await;
    let new = answering(500).await;
    let p = start(legacy, new, &clock);
    let text = p.metrics_text();
    for reason in ["error_rate", "p99", "mismatch_rate"] {
        let s = format!("ficus_guard_rollbacks_total{{reason=\"{reason}\",route=\"busy\"}} 0");
        assert!(text.contains(&s), "pre-created: {s}");
    }

    hit(&p, "/thin/x", 60).await;
    hit(&p, "/busy/x", 60).await;
    // The admin thread judges by itself.
    assert!(
        wait_for_percent(&p, "busy", 0.0, Duration::from_secs(10)).await,
        "the guard set busy to 0%"
    );
    // Thin traffic (60 < min_requests = 1000) gets no verdict, however often it is judged.
    for _ in 0..3 {
        assert_eq!(p.check_guards(), vec![]);
    }
    assert_eq!(percent(&p, "thin"), 100.0);

    let audit = p.audit(10).unwrap();
    let a = audit.iter().find(|a| a.route == "busy").unwrap();
    assert_eq!(
        (a.actor.as_str(), a.action.as_str(), a.from_bp, a.to_bp),
        ("guard", "rollback:error_rate", 10_000, 0)
    );
    let status = p.routes().unwrap();
    let busy = status.iter().find(|r| r.name == "busy").unwrap();
    assert_eq!(
        (busy.source.as_str(), busy.updated_by.as_deref()),
        ("runtime", Some("guard")),
        "persisted like an operator's rollback"
    );
    assert_eq!(rollbacks(&p, "busy", "error_rate"), 1.0);
    // Traffic now goes to legacy.
    assert_eq!(get(p.listen_addr(), "/busy/x", &[]).await.status, 200);

    // The operator raises it again: it stays up (the old window is gone) ...
    p.set_rollout("busy", 100.0, "alice").unwrap();
    assert_eq!(p.check_guards(), vec![]);
    assert_eq!(percent(&p, "busy"), 100.0, "no verdict on stale samples");
    // ... and samples older than the window (10 s on the proxy's clock) do not count: 30
    // failures, 11 s later 30 more, is 30 in the window (< min_requests = 50).
    hit(&p, "/busy/x", 30).await;
    clock.advance(Duration::from_secs(11));
    hit(&p, "/busy/x", 30).await;
    assert_eq!(p.check_guards(), vec![], "the first 30 left the window");
    assert_eq!(percent(&p, "busy"), 100.0);
    // 20 more within the window make 50: the guard fires a second time (by this judge or
    // the admin thread's, whichever came first).
    hit(&p, "/busy/x", 20).await;
    p.check_guards();
    assert_eq!(percent(&p, "busy"), 0.0);
    assert_eq!(rollbacks(&p, "busy", "error_rate"), 2.0);
    p.shutdown().await;
}

#[tokio::test]
async fn healthy_new_side_is_left_alone() {
    let clock = ManualClock::new();
    let (legacy, new) = (answering(200).await, answering(200).await);
    let p = start(legacy, new, &clock);
    hit(&p, "/busy/x", 120).await;
    hit(&p, "/slow/x", 120).await;
    assert_eq!(p.check_guards(), vec![]);
    assert_eq!(percent(&p, "busy"), 100.0);
    assert_eq!(percent(&p, "slow"), 100.0);
    p.shutdown().await;
}

#[tokio::test]
async fn a_new_side_slow_on_the_proxys_clock_breaks_p99() {
    // Every new-side answer takes 600 ms on the proxy's clock (the backend moves it), none
    // in real time: the requests' durations come from the injected clock.
    let clock = ManualClock::new();
    let legacy = answering(200).await;
    let new = answering_after(200, Some((clock.clone(), Duration::from_millis(600)))).await;
    let p = start(legacy, new, &clock);
    hit(&p, "/slow/x", 49).await;
    assert_eq!(p.check_guards(), vec![], "49 < min_requests");
    hit(&p, "/slow/x", 1).await;
    let fired = p.check_guards();
    // The admin thread may have judged first; either way the route is rolled back for p99.
    if let Some(f) = fired.first() {
        assert_eq!((f.route.as_str(), f.reason), ("slow", GuardReason::P99));
        assert!(f.detail.contains("p99 > 500 ms"), "{}", f.detail);
    }
    assert_eq!(percent(&p, "slow"), 0.0);
    assert_eq!(rollbacks(&p, "slow", "p99"), 1.0);
    let h = metric(
        &p.metrics_text(),
        "ficus_request_duration_seconds_sum{backend=\"new\",route=\"slow\"}",
    );
    assert!(h >= 50.0 * 0.6, "durations on the proxy's clock: {h} s");
    p.shutdown().await;
}
