//! Issue 15, item 2: a pooled connection the backend closed while idle. The backend's keep-alive
//! timeout races the proxy's reuse; a request caught in that race is retried once on a fresh
//! connection when it is safe (idempotent, no body), so the client never sees the 502.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Reads one request head (no bodies here); `None` on EOF, error or `idle` without a byte.
async fn read_head(s: &mut TcpStream, idle: Option<Duration>) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = match (idle, buf.is_empty()) {
            (Some(d), true) => match tokio::time::timeout(d, s.read(&mut chunk)).await {
                Ok(r) => r.ok()?,
                Err(_) => return None, // idle timeout: close
            },
            _ => s.read(&mut chunk).await.ok()?,
        };
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf)
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// A keep-alive backend that closes a connection idle for `idle` (like nginx's
/// `keepalive_timeout` or gunicorn's `--keep-alive`).
async fn idle_closing_backend(idle: Duration) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                while read_head(&mut s, Some(idle)).await.is_some() {
                    if s.write_all(OK).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_timeout_race_gives_no_502() {
    let backend = idle_closing_backend(Duration::from_millis(200)).await;
    let proxy = common::start_toml(&common::config_toml(backend, backend, "", ""));
    let mut conn = common::Conn::connect(proxy.listen_addr()).await;
    let mut bad = Vec::new();
    for i in 0..200u64 {
        // Spaced around the backend's idle timeout (197–203 ms, in 0.3 ms steps) to hit the
        // moment it closes the connection the proxy is about to reuse.
        tokio::time::sleep(Duration::from_micros(197_000 + (i % 20) * 300)).await;
        let r = conn.get("/x", &[]).await;
        if r.status != 200 {
            bad.push(format!("#{i}: {} {}", r.status, r.text()));
        }
    }
    assert!(bad.is_empty(), "{} of 200 failed: {bad:?}", bad.len());
}

/// A backend that answers the first request on each connection and, on the second, closes
/// without answering (its idle timer fired as the request arrived), counting the requests.
async fn closes_on_second_request() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                if read_head(&mut s, None).await.is_none() {
                    return;
                }
                count.fetch_add(1, Ordering::SeqCst);
                if s.write_all(OK).await.is_err() {
                    return;
                }
                if read_head(&mut s, None).await.is_some() {
                    count.fetch_add(1, Ordering::SeqCst);
                }
                // Dropped unanswered.
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn idempotent_request_lost_on_a_reused_connection_is_retried_once_but_a_post_is_not() {
    let (backend, seen) = closes_on_second_request().await;
    let proxy = common::start_toml(&common::config_toml(backend, backend, "", ""));
    let mut conn = common::Conn::connect(proxy.listen_addr()).await;
    // 1st: fresh connection, answered; pooled.
    assert_eq!(conn.get("/a", &[]).await.status, 200);
    // 2nd, after a pause (an idle connection is what a backend's keep-alive timeout closes):
    // the pooled connection takes it and is closed unanswered; the GET goes again on a fresh
    // connection.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = conn.get("/b", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        seen.load(Ordering::SeqCst),
        3,
        "sent twice: lost, then answered"
    );
    // A POST lost the same way may have been acted on: not repeated, 502.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = conn
        .request("POST", "/c", &[("content-length", "0")], "")
        .await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(seen.load(Ordering::SeqCst), 4, "the POST was sent once");
}
