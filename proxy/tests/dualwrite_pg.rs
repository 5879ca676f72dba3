//! The dual-write log with a PostgreSQL state store: two proxy replicas on one `state =
//! "postgres://..."` both append their dual writes to `ficus_proxy.dual_writes`, with each
//! side's status, and shutdown commits what is still queued.

mod common;

use std::net::SocketAddr;

use common::{echo, free_addr, metric, send, DUAL_ROUTE};
use ficus_proxy::{Config, Proxy, ProxyHandle};
use testkit::{ProxyToml, TempDir};

fn replica(
    tmp: &TempDir,
    name: &str,
    url: &str,
    legacy: SocketAddr,
    new: SocketAddr,
) -> ProxyHandle {
    let toml = ProxyToml::new(&legacy, &new)
        .state(url)
        .new_backend("timeout_ms = 2000")
        .shadow(
            &tmp.path().join(format!("shadow-{name}.db")),
            "timeout_ms = 5000",
        )
        .routes(DUAL_ROUTE);
    Proxy::start(Config::from_toml_str(&toml.to_string()).unwrap(), None).unwrap()
}

/// (key, method, primary_side, legacy_status, new_status, divergent), by key.
type Row = (String, String, String, Option<i32>, Option<i32>, i32);

async fn rows(url: &str) -> Vec<Row> {
    testkit::pg::rows(
        &testkit::pg::connect(url).await,
        "SELECT key, method, primary_side, legacy_status, new_status, divergent, at
         FROM ficus_proxy.dual_writes ORDER BY key, id",
        |r| {
            let at: String = r.get(6);
            assert!(at.ends_with('Z') && at.len() == 27, "{at}");
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_record_dual_writes_in_the_postgres_state_store() {
    let db = testkit::pg::fresh_database("dualwrite_pg").expect("a PostgreSQL for the test");
    let tmp = testkit::temp_dir("proxy-dualwrite-pg");
    let (legacy, new, dead) = (echo("legacy").await, echo("new").await, free_addr());
    // Replica a mirrors to a live new side; replica b's new side is down: its writes succeed
    // on the primary only and are recorded divergent.
    let a = replica(&tmp, "a", &db.url, legacy, new);
    let b = replica(&tmp, "b", &db.url, legacy, dead);
    for i in 0..6 {
        let r = send(a.listen_addr(), "POST", &format!("/dual/A{i}"), &[], "{}").await;
        assert_eq!(r.status, 200);
    }
    for i in 0..3 {
        let r = send(b.listen_addr(), "PUT", &format!("/dual/B{i}"), &[], "{}").await;
        assert_eq!(r.status, 200);
    }
    // Reads are not recorded.
    assert_eq!(
        send(a.listen_addr(), "GET", "/dual/A0", &[], "")
            .await
            .status,
        200
    );

    a.flush_shadow().await;
    let m = a.metrics_text();
    assert_eq!(
        metric(&m, "ficus_dual_write_records_total{result=\"written\"}"),
        6.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "ficus_dual_write_records_total{result=\"dropped\"}"),
        0.0
    );
    assert_eq!(
        metric(&m, "ficus_dual_write_records_total{result=\"error\"}"),
        0.0
    );
    a.shutdown().await;
    // b is not flushed by hand: shutdown commits what its writer holds.
    b.shutdown().await;

    let got = rows(&db.url).await;
    let mut want: Vec<Row> = Vec::new();
    for i in 0..6 {
        want.push((
            format!("A{i}"),
            "POST".into(),
            "legacy".into(),
            Some(200),
            Some(200),
            0,
        ));
    }
    for i in 0..3 {
        want.push((
            format!("B{i}"),
            "PUT".into(),
            "legacy".into(),
            Some(200),
            None,
            1,
        ));
    }
    assert_eq!(got, want);
}
