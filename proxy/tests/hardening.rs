//! Issue 15, items 3, 4, 5 and 8: what an adversarial client sends over a raw socket — path
//! tricks, Host games, odd methods, versions and codings — and what the proxy makes of it.

mod common;
mod raw;

use std::net::SocketAddr;

use raw::raw;

const ROUTES: &str = r#"
[[routes]]
name = "internal"
path = "/internal/*"
target = "new"

[[routes]]
name = "claim"
methods = ["POST"]
path = "/api/tasks/{task_id}/claim"
percent = 50.0
sticky = "path:task_id"

[[routes]]
name = "api"
path = "/api/tasks/{task_id}"
target = "legacy"
"#;

async fn proxy(extra_proxy: &str) -> (ficus_proxy::ProxyHandle, SocketAddr) {
    let legacy = common::echo("legacy").await;
    let new = common::echo("new").await;
    let p = common::start_toml(&common::config_toml(legacy, new, extra_proxy, ROUTES));
    let a = p.listen_addr();
    (p, a)
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes()
}

/// Item 3: routing matches the normalised path, and the backend gets that path.
#[tokio::test]
async fn routes_match_the_normalised_path_which_is_forwarded() {
    let (_p, a) = proxy("").await;
    for (sent, route, backend, seen) in [
        (
            "/internal/../api/tasks/T1",
            "api",
            "legacy",
            "/api/tasks/T1",
        ),
        ("/%69nternal/x", "internal", "new", "/internal/x"),
        ("//internal/x", "internal", "new", "/internal/x"),
        (
            "/internal/./a//b?q=%2e",
            "internal",
            "new",
            "/internal/a/b?q=%2e",
        ),
        (
            "/api/tasks/%2E%2E/%2e%2E/internal/y",
            "internal",
            "new",
            "/internal/y",
        ),
    ] {
        let r = raw(a, &get(sent)).await;
        assert_eq!(r.status, 200, "{sent}: {}", r.text);
        assert_eq!(r.header("x-ficus-route"), route, "{sent}");
        assert_eq!(r.json()["backend"], backend, "{sent}");
        assert_eq!(r.json()["path"], seen, "{sent}: the path the backend saw");
    }
    for sent in ["/../internal/x", "/api/../../internal/x", "/%2e%2e/x"] {
        let r = raw(a, &get(sent)).await;
        assert_eq!(r.status, 400, "{sent}: {}", r.text);
        assert_eq!(r.json()["error"], "bad_request");
        assert_eq!(r.header("connection"), "close");
    }
}

/// Item 4: the sticky `path:` key is the decoded segment: `%32` and `2` land on one side.
#[tokio::test]
async fn sticky_path_key_is_taken_from_the_normalised_path() {
    let (_p, a) = proxy("").await;
    let mut differ = Vec::new();
    for id in 0..40 {
        let plain = id.to_string();
        let encoded: String = plain.bytes().map(|b| format!("%{b:02X}")).collect();
        let side = |path: String| async move {
            let req = format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let r = raw(a, req.as_bytes()).await;
            assert_eq!(r.status, 200, "{path}: {}", r.text);
            assert_eq!(
                r.json()["path"],
                format!("/api/tasks/{}/claim", id_of(&path))
            );
            r.json()["backend"].as_str().unwrap_or("").to_string()
        };
        let s1 = side(format!("/api/tasks/{plain}/claim")).await;
        let s2 = side(format!("/api/tasks/{encoded}/claim")).await;
        if s1 != s2 {
            differ.push(plain);
        }
    }
    assert!(differ.is_empty(), "ids split across sides: {differ:?}");
}

fn id_of(path: &str) -> String {
    let seg = path.split('/').nth(3).unwrap_or("");
    let mut out = String::new();
    let b = seg.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(&seg[i + 1..i + 3], 16).unwrap() as char);
            i += 3;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// Item 5: Host per RFC 9112 §3.2.
#[tokio::test]
async fn host_rules_per_rfc_9112() {
    let (_p, a) = proxy("").await;
    let r = raw(a, b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").await;
    assert_eq!(r.status, 400, "two Host headers: {}", r.text);
    let r = raw(a, b"GET /x HTTP/1.1\r\n\r\n").await;
    assert_eq!(r.status, 400, "HTTP/1.1 without Host: {}", r.text);
    // HTTP/1.0 needs no Host.
    let r = raw(a, b"GET /x HTTP/1.0\r\n\r\n").await;
    assert_eq!(r.status, 200, "HTTP/1.0 without Host: {}", r.text);
    // The absolute-form target's authority wins over Host.
    let r = raw(
        a,
        b"GET http://target.example:81/x HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let j = r.json();
    assert_eq!(j["path"], "/x");
    assert_eq!(j["headers"]["x-forwarded-host"], "target.example:81");
}

/// Item 5 with `preserve_host`: the backend gets the target's authority as Host.
#[tokio::test]
async fn absolute_form_authority_is_the_preserved_host() {
    let (_p, a) = proxy("preserve_host = true").await;
    let r = raw(
        a,
        b"GET http://target.example/x HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["headers"]["host"], "target.example");
}

/// Item 8: CONNECT is refused, not forwarded.
#[tokio::test]
async fn connect_is_405() {
    let (_p, a) = proxy("").await;
    let r = raw(
        a,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 405, "{}", r.text);
    assert!(r.header("allow").contains("GET"), "{}", r.text);
}

/// Item 8: a chunked body on GET reaches the backend.
#[tokio::test]
async fn chunked_body_on_get_is_forwarded() {
    let (_p, a) = proxy("").await;
    let r = raw(
        a,
        b"GET /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["bytes"], 11, "{}", r.text);
}

/// Item 8: a transfer coding the proxy does not decode is refused, not silently dropped.
#[tokio::test]
async fn unknown_transfer_coding_is_501() {
    let (_p, a) = proxy("").await;
    let r = raw(
        a,
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 501, "{}", r.text);
}

/// Item 8: `HTTP/1.2` is served as HTTP/1.1 (RFC 9110 §2.5), not refused.
#[tokio::test]
async fn http_1_2_is_treated_as_1_1() {
    let (_p, a) = proxy("").await;
    let r = raw(
        a,
        b"GET /x HTTP/1.2\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["path"], "/x");
}

/// Item 8: a request head not finished within `header_read_timeout_ms` is answered 408; an
/// idle keep-alive connection is closed without a word.
#[tokio::test]
async fn header_read_timeout_answers_408() {
    let (_p, a) = proxy("header_read_timeout_ms = 300").await;
    let r = raw(a, b"GET /x HTTP/1.1\r\nHost: x\r\n").await;
    assert_eq!(r.status, 408, "{}", r.text);
    assert_eq!(r.json()["error"], "request_timeout");
    let started = std::time::Instant::now();
    let r = raw(a, b"").await;
    assert!(r.text.is_empty(), "idle connection got {:?}", r.text);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "an idle connection was held {:?}",
        started.elapsed()
    );
}

/// Item 8: an admin PUT that declares a body and never sends it gets 408 instead of holding
/// the connection open.
#[tokio::test]
async fn admin_body_never_sent_times_out() {
    let legacy = common::echo("legacy").await;
    let toml = common::config_toml(legacy, legacy, "header_read_timeout_ms = 300", ROUTES);
    let mut c = ficus_proxy::Config::from_toml_str(&toml).unwrap();
    c.proxy.admin_token = Some(ficus_proxy::config::Secret("t".into()));
    let p = ficus_proxy::Proxy::start(c, None).unwrap();
    let started = std::time::Instant::now();
    let r = raw(
        p.admin_addr(),
        b"PUT /admin/routes/api/rollout HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{\"perc",
    )
    .await;
    assert_eq!(r.status, 408, "{}", r.text);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

/// Item 8: the 502 names the cause, not only "connection error".
#[tokio::test]
async fn upstream_errors_name_their_cause() {
    let down = common::free_addr();
    let p = common::start_toml(&common::config_toml(down, down, "", ""));
    let r = raw(p.listen_addr(), &get("/x")).await;
    assert_eq!(r.status, 502, "{}", r.text);
    let msg = r.json()["message"].as_str().unwrap_or("").to_string();
    assert!(msg.contains("refused"), "{msg}");
}

const SPOOFED: &[u8] = b"GET /x HTTP/1.1\r\nHost: real.example\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-For: 1.2.3.4\r\nConnection: close\r\n\r\n";

/// Item 8: `X-Forwarded-*` from a peer outside `trusted_proxies` are replaced by this hop's.
#[tokio::test]
async fn forwarded_headers_of_untrusted_peers_are_replaced() {
    let (_p, a) = proxy(r#"trusted_proxies = ["10.0.0.0/8"]"#).await;
    let r = raw(a, SPOOFED).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let h = &r.json()["headers"];
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "real.example");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
}

/// Item 8: … and kept (`-For` appended to) from a trusted one.
#[tokio::test]
async fn forwarded_headers_of_trusted_peers_are_kept() {
    let (_p, a) = proxy(r#"trusted_proxies = ["127.0.0.0/8", "::1"]"#).await;
    let r = raw(a, SPOOFED).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let h = &r.json()["headers"];
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-host"], "evil.example");
    assert_eq!(h["x-forwarded-for"], "1.2.3.4, 127.0.0.1");
}

#[test]
fn trusted_proxies_must_be_addresses() {
    let toml = common::config_toml(
        common::free_addr(),
        common::free_addr(),
        r#"trusted_proxies = ["10.0.0.0/33"]"#,
        "",
    );
    let e = ficus_proxy::Config::from_toml_str(&toml)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("proxy.trusted_proxies") && e.contains("10.0.0.0/33"),
        "{e}"
    );
}
