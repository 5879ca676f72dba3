//! TLS on the proxy's listeners: curl (`--cacert`) over HTTP/1.1 and HTTP/2 (ALPN), cleartext
//! HTTP/2 with prior knowledge, `X-Forwarded-Proto: https` upstream, a certificate rotated on
//! disk served to new connections without a restart while an open connection keeps working,
//! the admin listener with its own certificate, and configuration errors naming field and line.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use ficus_proxy::Config;
use testkit::tls::{TestCa, TlsClient};

const ROUTE: &str = "[[routes]]\nname = \"api\"\npath = \"/api/*\"\ntarget = \"legacy\"\n";

fn tls_table(dir: &Path, table: &str, stem: &str) -> String {
    format!(
        "[proxy.{table}]\ncert_file = {:?}\nkey_file = {:?}\n",
        dir.join(format!("{stem}.crt")).display().to_string(),
        dir.join(format!("{stem}.key")).display().to_string()
    )
}

/// `curl` with `args` (on a blocking thread: the proxy under test shares this runtime);
/// (stdout, the HTTP version it used). Panics when curl fails.
async fn curl(args: &[&str]) -> (String, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || curl_blocking(&args))
        .await
        .expect("curl thread")
}

fn curl_blocking(args: &[String]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_version}"])
        .args(args)
        .output()
        .expect("run curl (apt-get install -y curl)");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, version) = text.rsplit_once('\n').unwrap_or((&text, ""));
    (body.to_string(), version.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_over_tls_http1_and_http2_and_h2c_prior_knowledge() {
    let dir = testkit::temp_dir("tls-listener");
    let ca = TestCa::new("listener CA");
    let ca_file = ca.write(dir.path(), "ca");
    ca.server(&["localhost"]).write(dir.path(), "server");
    let legacy = echo("legacy").await;
    // [proxy.tls] is a table of its own, after everything else.
    let toml = format!(
        "{}\n{}",
        testkit::ProxyToml::new(&legacy, &legacy).routes(ROUTE),
        tls_table(dir.path(), "tls", "server")
    );
    let p = start_toml(&toml);
    let port = p.listen_addr().port();
    let url = format!("https://localhost:{port}/api/hello");
    let resolve = format!("localhost:{port}:127.0.0.1");
    let ca_arg = ca_file.display().to_string();
    for (flag, want) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let (body, version) = curl(&["--cacert", &ca_arg, "--resolve", &resolve, flag, &url]).await;
        assert_eq!(version, want, "{flag}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect(&body);
        assert_eq!(v["backend"], "legacy");
        assert_eq!(v["headers"]["x-forwarded-proto"], "https", "{body}");
    }

    // Cleartext HTTP/2 with prior knowledge, on a proxy without TLS.
    let plain = start_toml(
        &testkit::ProxyToml::new(&legacy, &legacy)
            .routes(ROUTE)
            .to_string(),
    );
    let h2c = format!("http://127.0.0.1:{}/api/h2c", plain.listen_addr().port());
    let (body, version) = curl(&["--http2-prior-knowledge", &h2c]).await;
    assert_eq!(version, "2", "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect(&body);
    assert_eq!(v["path"], "/api/h2c");
    assert_eq!(v["headers"]["x-forwarded-proto"], "http");
    // ...and plain HTTP/1.1 on the same listener.
    assert_eq!(get(plain.listen_addr(), "/api/h1", &[]).await.status, 200);
    plain.shutdown().await;
    p.shutdown().await;
}

/// A certificate rotated on disk (a new CA, even) is what new connections get, with no
/// restart and no signal; a connection opened before keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_rotated_on_disk_is_served_to_new_connections() {
    let dir = testkit::temp_dir("tls-rotate");
    let old_ca = TestCa::new("old CA");
    old_ca.server(&["localhost"]).write(dir.path(), "server");
    let legacy = echo("legacy").await;
    let toml = format!(
        "{}\n{}",
        testkit::ProxyToml::new(&legacy, &legacy).routes(ROUTE),
        tls_table(dir.path(), "tls", "server")
    );
    let p = start_toml(&toml);
    let addr = p.listen_addr();
    let mut before = TlsClient::connect(addr, "localhost", &old_ca.cert_pem())
        .await
        .expect("handshake with the old certificate");
    assert_eq!(before.get("/api/a").await, 200);

    // Rotate: write the new pair beside, then rename into place (as cert-manager does).
    let new_ca = TestCa::new("new CA");
    let fresh = new_ca.server(&["localhost"]);
    let (crt, key) = fresh.write(dir.path(), "incoming");
    std::fs::rename(&key, dir.path().join("server.key")).unwrap();
    std::fs::rename(&crt, dir.path().join("server.crt")).unwrap();

    // The file watcher picks it up; poll new handshakes until they present the new one.
    let limit = Instant::now() + Duration::from_secs(15);
    let after = loop {
        match TlsClient::connect(addr, "localhost", &new_ca.cert_pem()).await {
            Ok(c) => break c,
            Err(e) => {
                assert!(
                    Instant::now() < limit,
                    "never served the rotated certificate: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let mut after = after;
    assert_eq!(after.get("/api/b").await, 200);
    assert_ne!(after.peer_leaf, before.peer_leaf);
    // The connection opened before the rotation still works.
    assert_eq!(before.get("/api/c").await, 200);
    // New connections no longer get the old certificate.
    assert!(TlsClient::connect(addr, "localhost", &old_ca.cert_pem())
        .await
        .is_err());
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_has_its_own_certificate() {
    let dir = testkit::temp_dir("tls-admin");
    let ca = TestCa::new("admin CA");
    ca.server(&["localhost"]).write(dir.path(), "admin");
    let legacy = echo("legacy").await;
    let toml = format!(
        "{}\n{}",
        testkit::ProxyToml::new(&legacy, &legacy).routes(ROUTE),
        tls_table(dir.path(), "admin_tls", "admin")
    );
    let p = start_toml(&toml);
    let mut admin = TlsClient::connect(p.admin_addr(), "localhost", &ca.cert_pem())
        .await
        .expect("admin over TLS");
    assert_eq!(admin.get("/healthz").await, 200);
    // The data plane stays cleartext.
    assert_eq!(get(p.listen_addr(), "/api/x", &[]).await.status, 200);
    p.shutdown().await;
}

#[test]
fn listener_tls_errors_name_field_and_line() {
    let dir = testkit::temp_dir("tls-config");
    let ca = TestCa::new("config CA");
    ca.server(&["localhost"]).write(dir.path(), "a");
    ca.server(&["localhost"]).write(dir.path(), "b");
    std::fs::write(dir.path().join("junk.crt"), "nope\n").unwrap();
    let base = testkit::ProxyToml::new("127.0.0.1:1", "127.0.0.1:2").to_string();
    let d = |f: &str| dir.path().join(f).display().to_string();
    let cases = [
        (
            format!("[proxy.tls]\ncert_file = {:?}\n", d("a.crt")),
            "proxy.tls.key_file",
            "needs cert_file and key_file",
        ),
        (
            format!(
                "[proxy.tls]\ncert_file = {:?}\nkey_file = {:?}\n",
                d("a.crt"),
                d("b.key")
            ),
            "proxy.tls.key_file",
            "does not go with the certificate",
        ),
        (
            format!(
                "[proxy.tls]\ncert_file = {:?}\nkey_file = {:?}\n",
                d("junk.crt"),
                d("a.key")
            ),
            "proxy.tls.cert_file",
            "holds no PEM certificate",
        ),
        (
            format!(
                "[proxy.admin_tls]\ncert_file = {:?}\nkey_file = \"/nonexistent.key\"\n",
                d("a.crt")
            ),
            "proxy.admin_tls.key_file",
            "/nonexistent.key",
        ),
    ];
    for (table, field, words) in cases {
        let e = Config::from_toml_str(&format!("{base}\n{table}")).expect_err(&table);
        assert_eq!(e.field, field, "{e}");
        assert!(e.line.is_some(), "{e}");
        assert!(e.to_string().contains(words), "{e}");
    }
}
