//! testkit's own pieces against each other over real loopback: the client and the backends,
//! the metric lookups, temp dirs, SQLite rows.

use std::time::Duration;

use testkit::backend::{echo, fixed, json, serve};
use testkit::http::{body_len, empty, Conn, Http, Origin};
use testkit::metrics::{expect_metric, metric, sample};

#[tokio::test]
async fn echo_answers_what_it_received_on_one_or_many_connections() {
    let addr = echo("legacy").await;
    let r = testkit::get(addr, "/a/b?c=1", &[("x-test", "yes")]).await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(
        (j["backend"].as_str(), j["path"].as_str()),
        (Some("legacy"), Some("/a/b?c=1"))
    );
    assert_eq!(j["headers"]["x-test"], "yes");
    assert_eq!(r.header("x-hop"), "secret");

    let mut c = Conn::connect(addr).await;
    let up = c.request("POST", "/upload", &[], "12345").await;
    assert_eq!(up.json()["bytes"], 5);
    let down = c
        .open(
            http::Request::get("/download?n=200000")
                .header("host", "x")
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(body_len(down).await, 200_000);

    let h = Http::new();
    let r = h.call(&addr, "GET", "/x", None).await;
    assert_eq!(r.json()["headers"]["content-type"], "application/json");
    let r = h
        .call_at(
            &addr.origin(),
            "POST",
            "/y",
            Some("{}"),
            Some("2026-01-01T00:00:00Z"),
        )
        .await;
    assert_eq!(
        r.json()["headers"]["x-ficus-request-time"],
        "2026-01-01T00:00:00Z"
    );
}

#[tokio::test]
async fn fixed_and_recording_servers() {
    let addr = fixed(503, "down").await;
    let r = testkit::send(addr, "PUT", "/", &[], "x").await;
    assert_eq!((r.status, r.text().as_str()), (503, "down"));

    let s = serve(
        Duration::ZERO,
        json(|req, n| format!("[{n},{:?}]", req.text())),
    )
    .await;
    let h = Http::new();
    for body in ["a", "b"] {
        let r = h.send("POST", &format!("{}/p?q", s.url()), &[], body).await;
        assert_eq!(r.header("content-type"), "application/json");
        assert_eq!(
            r.json(),
            serde_json::json!([if body == "a" { 0 } else { 1 }, body])
        );
    }
    let got = s.received();
    assert_eq!(got.len(), 2);
    assert_eq!((got[1].path(), got[1].uri.as_str()), ("/p", "/p?q"));
    s.stop();
}

#[test]
fn metric_lookups_match_whole_series() {
    let text = "# TYPE x counter\nx_total{a=\"1\"} 3\nx_total{a=\"10\"} 4\ny 2.5\n";
    assert_eq!(metric(text, "x_total{a=\"1\"}"), 3.0);
    assert_eq!(metric(text, "x_total{a=\"10\"}"), 4.0);
    assert_eq!(sample(text, "x_total{a=\"2\"}"), None);
    assert_eq!(metric(text, "x_total{a=\"2\"}"), 0.0);
    assert_eq!(expect_metric(text, "y"), 2.5);
    assert!(std::panic::catch_unwind(|| expect_metric(text, "z")).is_err());
}

#[test]
fn origins_and_temp_dirs_and_sqlite_rows() {
    assert_eq!("127.0.0.1:1".origin(), "http://127.0.0.1:1");
    assert_eq!("http://h:2/".origin(), "http://h:2");
    let dir = testkit::temp_dir("kit test/with odd:chars");
    let path = dir.path().to_path_buf();
    assert!(path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("ficus-kit-test-with-odd-chars-"));
    let db = testkit::sqlite::create(
        dir.path(),
        "t.db",
        "CREATE TABLE t (a INTEGER, b TEXT); INSERT INTO t VALUES (1, 'x'), (2, 'y');",
    );
    let rows: Vec<(i64, String)> =
        testkit::sqlite::rows(&db, "SELECT a, b FROM t ORDER BY a", |r| {
            Ok((r.get(0)?, r.get(1)?))
        });
    assert_eq!(rows, vec![(1, "x".into()), (2, "y".into())]);
    drop(dir);
    assert!(!path.exists(), "removed on drop");
}
