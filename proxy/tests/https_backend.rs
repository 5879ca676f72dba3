//! `https://` backends with certificates a test CA issued: verification against `ca_file`
//! (the system store by default), SNI from the URL host or `sni`, client certificates (mTLS),
//! `insecure_skip_verify` only when written out, connections pooled like http://; a backend
//! whose certificate is not trusted answers 502 naming why; every TLS setting that cannot work
//! is a configuration error naming its field and line.

mod common;

use std::sync::atomic::Ordering;

use common::*;
use ficus_proxy::Config;
use testkit::tls::{TestCa, TlsBackend};

const ROUTE: &str = r#"
[[routes]]
name = "new-side"
path = "/api/*"
target = "new"
"#;

/// A proxy whose `new` backend is `url` with `lines` in its table.
fn config(legacy: std::net::SocketAddr, url: &str, lines: &str) -> String {
    testkit::ProxyToml::new(&legacy, url)
        .new_backend(lines)
        .routes(ROUTE)
        .to_string()
}

fn opened(p: &ficus_proxy::ProxyHandle) -> f64 {
    metric(
        &p.metrics_text(),
        "ficus_upstream_connections_opened_total{backend=\"new\"}",
    )
}

#[tokio::test]
async fn an_https_backend_is_verified_pooled_and_a_wrong_ca_is_a_502_that_says_why() {
    let dir = testkit::temp_dir("https-backend");
    let ca = TestCa::new("backend CA");
    let ca_file = ca.write(dir.path(), "ca");
    let backend = TlsBackend::start("new", &ca.server(&["localhost"]), None).await;
    let legacy = echo("legacy").await;
    let url = format!("https://localhost:{}", backend.addr.port());

    let p = start_toml(&config(
        legacy,
        &url,
        &format!("ca_file = {:?}", ca_file.display().to_string()),
    ));
    let mut conn = testkit::Conn::connect(p.listen_addr()).await;
    for i in 0..5 {
        let r = conn.get(&format!("/api/tasks/{i}"), &[]).await;
        assert_eq!(r.status, 200, "{:?}", r.text());
        let body = r.json();
        assert_eq!(body["backend"], "new");
        assert_eq!(
            body["headers"]["host"],
            format!("localhost:{}", backend.addr.port())
        );
    }
    // Keep-alive to the backend: one TLS handshake for five sequential requests.
    assert_eq!(backend.handshakes.load(Ordering::SeqCst), 1);
    assert_eq!(opened(&p), 1.0);
    p.shutdown().await;

    // Another CA: the backend's certificate is not trusted.
    let other = TestCa::new("another CA").write(dir.path(), "other");
    let p = start_toml(&config(
        legacy,
        &url,
        &format!("ca_file = {:?}", other.display().to_string()),
    ));
    let r = get(p.listen_addr(), "/api/tasks/1", &[]).await;
    assert_eq!(r.status, 502);
    let body = r.json();
    let msg = body["message"].as_str().unwrap_or_default().to_string();
    assert!(msg.contains("certificate is not trusted"), "{msg}");
    assert!(msg.contains("ca_file"), "says what to check: {msg}");
    assert_eq!(body["backend"], "new");
    p.shutdown().await;
}

#[tokio::test]
async fn sni_names_the_certificate_when_the_url_is_an_address_and_mismatch_is_named() {
    let dir = testkit::temp_dir("https-sni");
    let ca = TestCa::new("backend CA");
    let ca_file = ca.write(dir.path(), "ca").display().to_string();
    let backend = TlsBackend::start("new", &ca.server(&["new.internal"]), None).await;
    let legacy = echo("legacy").await;
    let url = format!("https://127.0.0.1:{}", backend.addr.port());

    // By address: the certificate names new.internal, not 127.0.0.1.
    let p = start_toml(&config(legacy, &url, &format!("ca_file = {ca_file:?}")));
    let r = get(p.listen_addr(), "/api/x", &[]).await;
    assert_eq!(r.status, 502);
    let msg = r.json()["message"].as_str().unwrap_or_default().to_string();
    assert!(
        msg.contains("another name") && msg.contains("new.internal"),
        "{msg}"
    );
    p.shutdown().await;

    let p = start_toml(&config(
        legacy,
        &url,
        &format!("ca_file = {ca_file:?}\nsni = \"new.internal\""),
    ));
    assert_eq!(get(p.listen_addr(), "/api/x", &[]).await.status, 200);
    p.shutdown().await;
}

#[tokio::test]
async fn client_certificates_for_a_backend_that_requires_them() {
    let dir = testkit::temp_dir("https-mtls");
    let ca = TestCa::new("mesh CA");
    let ca_file = ca.write(dir.path(), "ca").display().to_string();
    let (cert, key) = ca.client("ficus-proxy").write(dir.path(), "proxy");
    let backend = TlsBackend::start("new", &ca.server(&["localhost"]), Some(&ca)).await;
    let legacy = echo("legacy").await;
    let url = format!("https://localhost:{}", backend.addr.port());

    let p = start_toml(&config(legacy, &url, &format!("ca_file = {ca_file:?}")));
    assert_eq!(get(p.listen_addr(), "/api/x", &[]).await.status, 502);
    p.shutdown().await;
    assert!(
        backend
            .failures
            .lock()
            .unwrap()
            .iter()
            .any(|f| f.contains("certificate")),
        "{:?}",
        backend.failures.lock().unwrap()
    );

    let p = start_toml(&config(
        legacy,
        &url,
        &format!(
            "ca_file = {ca_file:?}\nclient_cert_file = {:?}\nclient_key_file = {:?}",
            cert.display().to_string(),
            key.display().to_string()
        ),
    ));
    assert_eq!(get(p.listen_addr(), "/api/x", &[]).await.status, 200);
    p.shutdown().await;
}

#[tokio::test]
async fn insecure_skip_verify_only_when_written_out() {
    let ca = TestCa::new("nobody trusts this");
    let backend = TlsBackend::start("new", &ca.server(&["localhost"]), None).await;
    let legacy = echo("legacy").await;
    let url = format!("https://localhost:{}", backend.addr.port());
    // Default: the system trust store, which does not hold the test CA.
    let p = start_toml(&config(legacy, &url, ""));
    let r = get(p.listen_addr(), "/api/x", &[]).await;
    assert_eq!(r.status, 502, "{}", r.text());
    p.shutdown().await;

    let p = start_toml(&config(legacy, &url, "insecure_skip_verify = true"));
    assert_eq!(get(p.listen_addr(), "/api/x", &[]).await.status, 200);
    let summary = get(p.admin_addr(), "/admin/summary", &[]).await.json();
    assert_eq!(summary["backends"]["new"]["tls"], "insecure_skip_verify");
    assert_eq!(summary["backends"]["legacy"]["tls"], "none");
    let warnings = summary["warnings"].to_string();
    assert!(
        warnings.contains("backends.new: insecure_skip_verify"),
        "{warnings}"
    );
    p.shutdown().await;
}

/// Shadow mode mirrors to an https:// backend with the same TLS settings as the primary
/// path: the mirror reaches it (a handshake, an outcome that is not `error`); with a CA that
/// did not sign it the mirror fails (`error`) — it never trusts what the primary would not.
#[tokio::test]
async fn shadow_mirrors_reach_an_https_backend_with_its_settings() {
    let dir = testkit::temp_dir("https-shadow");
    let ca = TestCa::new("backend CA");
    let backend = TlsBackend::start("new", &ca.server(&["localhost"]), None).await;
    let legacy = echo("legacy").await;
    let url = format!("https://localhost:{}", backend.addr.port());
    let route =
        "[[routes]]\nname = \"read\"\nmethods = [\"GET\"]\npath = \"/api/*\"\n[routes.shadow]\n";
    let outcome = |p: &ficus_proxy::ProxyHandle, result: &str| {
        metric(
            &p.metrics_text(),
            &format!("ficus_shadow_requests_total{{result=\"{result}\",route=\"read\"}}"),
        )
    };
    for (ca_file, trusted) in [
        (ca.write(dir.path(), "ca"), true),
        (TestCa::new("another").write(dir.path(), "other"), false),
    ] {
        let toml = testkit::ProxyToml::new(&legacy, url.as_str())
            .new_backend(&format!("ca_file = {:?}", ca_file.display().to_string()))
            .shadow(&dir.path().join(format!("shadow-{trusted}.db")), "")
            .routes(route)
            .to_string();
        let p = start_toml(&toml);
        let before = backend.handshakes.load(Ordering::SeqCst);
        for i in 0..3 {
            let r = get(p.listen_addr(), &format!("/api/tasks/{i}"), &[]).await;
            assert_eq!(r.header("x-ficus-backend"), "legacy");
        }
        tokio::time::timeout(std::time::Duration::from_secs(20), p.flush_shadow())
            .await
            .expect("flush");
        let reached = backend.handshakes.load(Ordering::SeqCst) - before;
        let compared = outcome(&p, "match") + outcome(&p, "mismatch") + outcome(&p, "noise");
        if trusted {
            assert!(reached >= 1, "the mirror reached the TLS backend");
            assert_eq!(compared, 3.0, "{}", p.metrics_text());
            assert_eq!(outcome(&p, "error"), 0.0);
        } else {
            assert_eq!(
                reached, 0,
                "no handshake completes with an untrusted certificate"
            );
            assert_eq!(compared, 0.0);
            assert_eq!(outcome(&p, "error"), 3.0, "{}", p.metrics_text());
        }
        p.shutdown().await;
    }
}

/// Every TLS setting that cannot work is an error naming the field and its line.
#[test]
fn tls_settings_are_validated_with_field_and_line() {
    let dir = testkit::temp_dir("https-config");
    let ca = TestCa::new("config CA");
    let ca_file = ca.write(dir.path(), "ca").display().to_string();
    let (cert, _) = ca.client("a").write(dir.path(), "a");
    let (_, other_key) = ca.client("b").write(dir.path(), "b");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "hello\n").unwrap();
    let legacy: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
    let https = "https://localhost:8443";
    let cases: Vec<(String, String, &str, &str)> = vec![
        (
            https.into(),
            "ca_file = \"/nonexistent/ca.pem\"".into(),
            "backends.new.ca_file",
            "/nonexistent/ca.pem",
        ),
        (
            https.into(),
            format!("ca_file = {:?}", junk.display().to_string()),
            "backends.new.ca_file",
            "holds no PEM certificate",
        ),
        (
            https.into(),
            format!(
                "client_cert_file = {:?}\nclient_key_file = {:?}",
                cert.display().to_string(),
                other_key.display().to_string()
            ),
            "backends.new.client_key_file",
            "does not go with the certificate",
        ),
        (
            https.into(),
            format!("client_cert_file = {:?}", cert.display().to_string()),
            "backends.new.client_key_file",
            "client_key_file is not",
        ),
        (
            https.into(),
            format!("ca_file = {ca_file:?}\ninsecure_skip_verify = true"),
            "backends.new.insecure_skip_verify",
            "cannot be true together with ca_file",
        ),
        (
            "http://127.0.0.1:8002".into(),
            format!("ca_file = {ca_file:?}"),
            "backends.new.ca_file",
            "url is http://",
        ),
        (
            https.into(),
            "sni = \"not a name!\"".into(),
            "backends.new.sni",
            "is not a DNS name",
        ),
    ];
    for (url, lines, field, words) in cases {
        let toml = config(legacy, &url, &lines);
        let e = Config::from_toml_str(&toml).expect_err(&lines);
        assert_eq!(e.field, field, "{e}");
        assert!(e.line.is_some(), "a line for {field}: {e}");
        assert!(e.to_string().contains(words), "{e}");
    }
}

/// A relative `ca_file` is found next to the configuration file, wherever ficus runs from.
#[test]
fn relative_tls_paths_are_relative_to_the_configuration_file() {
    let dir = testkit::temp_dir("https-relative");
    TestCa::new("relative CA").write(dir.path(), "ca");
    let legacy: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
    let file = dir.path().join("ficus.toml");
    std::fs::write(
        &file,
        config(legacy, "https://localhost:8443", "ca_file = \"ca.crt\""),
    )
    .unwrap();
    let c = Config::from_file(&file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.backends.new.tls.as_ref().map(|t| t.insecure()),
        Some(false)
    );
    // The same text read from elsewhere (no file) looks in the working directory and says so.
    let e = Config::from_toml_str(&std::fs::read_to_string(&file).unwrap()).unwrap_err();
    assert_eq!(e.field, "backends.new.ca_file");
}
