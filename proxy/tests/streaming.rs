//! Streaming 100 MB bodies through the proxy in both directions must not grow memory: the
//! proxy forwards frame by frame. Runs in its own test binary (its own process) so the peak
//! resident set it measures is not disturbed by other tests.

mod common;

use common::*;
use http_body_util::BodyExt;
use testkit::http::{body_len, empty};

const SIZE: u64 = 100 * 1024 * 1024;

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_megabytes_each_way_without_buffering() {
    let (l, n) = (echo("legacy").await, echo("new").await);
    let toml = config_toml(l, n, "max_request_bytes = 209715200", "");
    let p = ficus_proxy::Proxy::start(ficus_proxy::Config::from_toml_str(&toml).unwrap(), None)
        .unwrap();
    let a = p.listen_addr();
    // Warm up allocator arenas and connections before the baseline.
    let _ = get(a, "/download?n=1048576", &[]).await;
    let before = vm_hwm_kib();

    // Upload: chunked, 100 MB, counted by the backend.
    let mut c = Conn::connect(a).await;
    let req = http::Request::builder()
        .method("POST")
        .uri("/upload")
        .header("host", "x")
        .body(Generated::new(SIZE).boxed())
        .unwrap();
    let r = c.send(req).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["bytes"].as_u64(), Some(SIZE));

    // Download: 100 MB, counted frame by frame here.
    let mut d = Conn::connect(a).await;
    let resp = d
        .open(
            http::Request::builder()
                .uri(format!("/download?n={SIZE}"))
                .header("host", "x")
                .body(empty())
                .unwrap(),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(body_len(resp).await, SIZE);

    let grown_mib = (vm_hwm_kib().saturating_sub(before)) / 1024;
    // Buffering either body whole would add at least 100 MiB; streaming adds socket-sized buffers.
    assert!(
        grown_mib < 40,
        "peak RSS grew by {grown_mib} MiB while streaming 2 x 100 MiB"
    );
    eprintln!("peak RSS growth while streaming 2 x 100 MiB: {grown_mib} MiB");
    p.shutdown().await;
}
