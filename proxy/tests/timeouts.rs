//! Issue 15, item 6: separate timeouts — request body idle (`request_body_idle_timeout_ms`),
//! response head counted from the end of the upload (`timeout_ms`), response body idle
//! (`response_body_idle_timeout_ms`) — so a slow upload is not a slow backend.

mod common;
mod raw;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn start(backend: SocketAddr, proxy: &str, legacy: &str) -> ficus_proxy::ProxyHandle {
    common::start_toml(
        &testkit::ProxyToml::new(&backend, &backend)
            .proxy(proxy)
            .legacy_backend(legacy)
            .to_string(),
    )
}

/// 400 KB at about 200 KB/s (2 s) against a 500 ms response timeout: the upload's time is the
/// client's, not the backend's, so the answer is 200, not 504.
#[tokio::test]
async fn upload_time_does_not_count_toward_the_response_timeout() {
    let backend = common::echo("legacy").await;
    let p = start(backend, "", "timeout_ms = 500");
    let mut s = TcpStream::connect(p.listen_addr()).await.unwrap();
    const CHUNK: usize = 20 * 1024;
    s.write_all(
        format!(
            "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            20 * CHUNK
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if s.write_all(&[b'x'; CHUNK]).await.is_err() {
            break; // answered early (the bug): read what came
        }
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let r = raw::parse(&buf);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["bytes"], 20 * CHUNK, "{}", r.text);
}

/// A client that stops sending its body is answered 408 after the idle timeout (and the
/// connection closed), instead of holding a backend connection.
#[tokio::test]
async fn stalled_request_body_gets_408() {
    let backend = common::echo("legacy").await;
    let p = start(backend, "request_body_idle_timeout_ms = 300", "");
    let started = Instant::now();
    let r = raw::raw(
        p.listen_addr(),
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc",
    )
    .await;
    assert_eq!(r.status, 408, "{}", r.text);
    assert_eq!(r.json()["error"], "request_timeout");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// A backend that sends its head and part of its body, then stalls: the response is cut off
/// after the idle timeout instead of hanging the client.
#[tokio::test]
async fn stalled_response_body_is_cut_off() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
                    .await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    let p = start(backend, "", "response_body_idle_timeout_ms = 300");
    let started = Instant::now();
    let r = raw::raw(
        p.listen_addr(),
        b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let took = started.elapsed();
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        took < Duration::from_secs(5),
        "the client waited {took:?} for a stalled body"
    );
    assert_eq!(r.body, "0123456789", "what arrived before the stall");
}

/// A backend that stops reading the upload (and never answers) is timed out by `timeout_ms`
/// — the upload making no progress — rather than holding the client forever.
#[tokio::test]
async fn backend_that_stops_reading_the_upload_is_504() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    let p = start(backend, "", "timeout_ms = 500");
    let s = TcpStream::connect(p.listen_addr()).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    const LEN: usize = 8 << 20;
    tokio::spawn(async move {
        let head = format!("POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: {LEN}\r\n\r\n");
        let _ = wr.write_all(head.as_bytes()).await;
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..LEN / chunk.len() {
            if wr.write_all(&chunk).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let started = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(10), rd.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    let r = raw::parse(&buf);
    assert_eq!(r.status, 504, "after {:?}: {}", started.elapsed(), r.text);
    assert!(started.elapsed() < Duration::from_secs(5));
}
