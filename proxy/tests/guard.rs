//! The rollback guard through a real proxy: a new side answering 500 is rolled back to 0 % by
//! the proxy itself within the window (audited, counted), thin traffic never trips it, and an
//! operator can raise the route again (the guard re-arms with a fresh window).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use ficus_proxy::{Config, Proxy, ProxyHandle};

/// A backend answering every request with `status`.
async fn answering(status: u16) -> SocketAddr {
    fixed(status, "{}").await
}

fn start(legacy: SocketAddr, new: SocketAddr) -> ProxyHandle {
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
"#;
    let toml = config_toml(legacy, new, "", routes);
    Proxy::start(Config::from_toml_str(&toml).unwrap(), None).unwrap()
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

async fn wait_for_percent(p: &ProxyHandle, route: &str, want: f64, within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if percent(p, route) == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn failing_new_side_is_rolled_back_thin_traffic_is_not_and_an_operator_can_re_raise() {
    let legacy = answering(200).await;
    let new = answering(500).await;
    let p = start(legacy, new);
    let text = p.metrics_text();
    for reason in ["error_rate", "p99", "mismatch_rate"] {
        let s = format!("ficus_guard_rollbacks_total{{reason=\"{reason}\",route=\"busy\"}} 0");
        assert!(text.contains(&s), "pre-created: {s}");
    }

    hit(&p, "/thin/x", 60).await;
    hit(&p, "/busy/x", 60).await;
    assert!(
        wait_for_percent(&p, "busy", 0.0, Duration::from_secs(5)).await,
        "the guard set busy to 0%"
    );
    // Thin traffic (60 < min_requests = 1000) got no verdict, also after a few checks.
    tokio::time::sleep(Duration::from_millis(2500)).await;
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
    let text = p.metrics_text();
    assert_eq!(
        metric(
            &text,
            "ficus_guard_rollbacks_total{reason=\"error_rate\",route=\"busy\"}"
        ),
        1.0
    );
    // Traffic now goes to legacy.
    assert_eq!(get(p.listen_addr(), "/busy/x", &[]).await.status, 200);

    // The operator raises it again: it stays up (the old window is gone) until the new side
    // fails enough again, and the guard fires a second time.
    p.set_rollout("busy", 100.0, "alice").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(percent(&p, "busy"), 100.0, "no verdict on stale samples");
    hit(&p, "/busy/x", 60).await;
    assert!(wait_for_percent(&p, "busy", 0.0, Duration::from_secs(5)).await);
    assert_eq!(
        metric(
            &p.metrics_text(),
            "ficus_guard_rollbacks_total{reason=\"error_rate\",route=\"busy\"}"
        ),
        2.0
    );
    p.shutdown().await;
}

#[tokio::test]
async fn healthy_new_side_is_left_alone() {
    let (legacy, new) = (answering(200).await, answering(200).await);
    let p = start(legacy, new);
    hit(&p, "/busy/x", 120).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(percent(&p, "busy"), 100.0);
    p.shutdown().await;
}
