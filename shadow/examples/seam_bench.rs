//! Does shadow mode slow the primary down? A micro-benchmark of the seam, before it is wired
//! into the proxy: a closed loop of clients fetches a task-list-sized JSON body from a
//! "legacy" server, playing the proxy's part — `decide`, tee the response body with
//! `TeeBody`, `submit` at its end — against a mirror side that is healthy, slow (5 s) or down,
//! and without shadow mode for the baseline. Prints rps and latency percentiles per scenario.
//!
//! ```text
//! cargo run --release -p ficus-shadow --example seam_bench -- [REQUESTS] [CLIENTS]
//! ```

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ficus_shadow::{
    CapturedResponse, MirrorJob, RouteShadowConfig, RouteSpec, Shadow, ShadowGlobalConfig, Side,
    TeeBody,
};
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

fn body() -> Bytes {
    let tasks: Vec<serde_json::Value> = (1..=20)
        .map(|i| {
            serde_json::json!({"id": i, "task_id": format!("TASK-{i}"), "title": "A task",
                "priority": "HIGH", "status": "pending", "updated_at": "2026-01-01T10:00:00"})
        })
        .collect();
    Bytes::from(serde_json::to_vec(&tasks).unwrap_or_default())
}

/// A server on its own thread and runtime, answering `body` after `delay`.
fn server(delay: Duration) -> String {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = std_listener.local_addr().expect("addr");
    std_listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
            let payload = body();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let payload = payload.clone();
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
                            let payload = payload.clone();
                            async move {
                                if !delay.is_zero() {
                                    tokio::time::sleep(delay).await;
                                }
                                let mut r = Response::new(Full::new(payload));
                                r.headers_mut().insert(
                                    "content-type",
                                    "application/json".parse().expect("ct"),
                                );
                                Ok::<_, Infallible>(r)
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
    });
    format!("http://{addr}")
}

fn down() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    format!("http://{addr}")
}

#[derive(Clone)]
struct Outcome {
    rps: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

async fn run(
    legacy: &str,
    shadow: Option<(Arc<Shadow>, Arc<ficus_shadow::ShadowRoute>)>,
    requests: usize,
    clients: usize,
) -> Outcome {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: http::Uri = format!("{legacy}/api/tasks/").parse().expect("uri");
    let per = requests / clients;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, uri, shadow) = (client.clone(), uri.clone(), shadow.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per);
            for i in 0..per {
                let t = Instant::now();
                let mirror = shadow
                    .as_ref()
                    .is_some_and(|(s, r)| s.decide(r, &Method::GET).is_mirror());
                let resp = client
                    .request(Request::get(uri.clone()).body(Empty::new()).expect("req"))
                    .await
                    .expect("primary");
                let (head, body) = resp.into_parts();
                let n = match (&shadow, mirror) {
                    (Some((s, r)), true) => {
                        let (s2, r2, headers, status) =
                            (s.clone(), r.clone(), head.headers.clone(), head.status);
                        let uri = uri.clone();
                        let tee = TeeBody::new(body, s.max_body_bytes(), move |captured| {
                            s2.submit(MirrorJob {
                                route: r2,
                                method: Method::GET,
                                uri,
                                request_headers: http::HeaderMap::new(),
                                request_body: Default::default(),
                                primary_side: Side::Legacy,
                                primary: CapturedResponse {
                                    status,
                                    headers,
                                    body: captured,
                                },
                                request_id: format!("bench-{i}"),
                                on_done: None,
                            });
                        });
                        tee.collect().await.expect("body").to_bytes().len()
                    }
                    _ => body.collect().await.expect("body").to_bytes().len(),
                };
                assert!(n > 0);
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::with_capacity(requests);
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    let elapsed = started.elapsed();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Outcome {
        rps: all.len() as f64 / elapsed.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
        max: all[all.len() - 1],
    }
}

/// `result=n` for every non-zero `ficus_shadow_requests_total` series.
fn results(registry: &prometheus::Registry) -> String {
    let parts: Vec<String> = registry
        .gather()
        .iter()
        .filter(|mf| mf.name() == "ficus_shadow_requests_total")
        .flat_map(|mf| mf.get_metric().to_vec())
        .filter(|m| m.get_counter().get_value() > 0.0)
        .map(|m| {
            let result = m
                .get_label()
                .iter()
                .find(|l| l.name() == "result")
                .map(|l| l.value().to_string())
                .unwrap_or_default();
            format!("{result}={}", m.get_counter().get_value())
        })
        .collect();
    parts.join(" ")
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let requests = args.first().copied().unwrap_or(20_000);
    let clients = args.get(1).copied().unwrap_or(8);
    let legacy = server(Duration::ZERO);
    let healthy = server(Duration::ZERO);
    let slow = server(Duration::from_secs(5));
    let down = down();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::env::temp_dir().join(format!("ficus-seam-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    println!("{requests} requests, {clients} clients, 100% GET shadow, one client runtime thread");
    // Warm-up.
    rt.block_on(run(&legacy, None, 2000, clients));
    println!(
        "{:<22} {:>9} {:>9} {:>9} {:>9}   shadow results (median round)",
        "scenario", "rps", "p50 us", "p99 us", "max us"
    );
    let scenarios: [(&str, Option<&str>); 4] = [
        ("no shadow", None),
        ("mirror healthy", Some(healthy.as_str())),
        ("mirror slow:5000", Some(slow.as_str())),
        ("mirror down", Some(down.as_str())),
    ];
    // Rounds interleave the scenarios so machine noise spreads over all of them; the median
    // round is printed.
    let rounds = 3;
    let mut table: Vec<Vec<(Outcome, String)>> = vec![Vec::new(); scenarios.len()];
    for round in 0..rounds {
        for (k, (name, mirror)) in scenarios.iter().enumerate() {
            let registry = prometheus::Registry::new();
            let shadow = mirror.map(|m| {
                let cfg = ShadowGlobalConfig {
                    store: dir.join(format!("{round}-{}.db", name.replace([' ', ':'], "-"))),
                    ..Default::default()
                };
                let shadow = Arc::new(Shadow::new(&cfg, &registry).expect("shadow"));
                let route = shadow
                    .route(RouteSpec {
                        name: "bench",
                        config: &RouteShadowConfig::default(),
                        dual_write: false,
                        legacy_url: &legacy,
                        new_url: m,
                    })
                    .expect("route");
                (shadow, route)
            });
            let o = rt.block_on(run(&legacy, shadow.clone(), requests, clients));
            table[k].push((o, results(&registry)));
        }
    }
    for (k, (name, _)) in scenarios.iter().enumerate() {
        let runs = &mut table[k];
        runs.sort_by(|a, b| a.0.rps.total_cmp(&b.0.rps));
        let (o, results) = &runs[runs.len() / 2];
        let all: Vec<String> = runs.iter().map(|r| format!("{:.0}", r.0.rps)).collect();
        println!(
            "{:<22} {:>9.0} {:>9} {:>9} {:>9}   {} (rps of each round: {})",
            name,
            o.rps,
            o.p50.as_micros(),
            o.p99.as_micros(),
            o.max.as_micros(),
            results,
            all.join(" ")
        );
    }
    // The per-request cost on the proxy's thread, machine load aside: `decide` with room in
    // the queue, and with the queue full (the drop is counted there).
    let registry = prometheus::Registry::new();
    let cfg = ShadowGlobalConfig {
        store: dir.join("decide.db"),
        queue: 1,
        concurrency: 1,
        ..Default::default()
    };
    let shadow = Shadow::new(&cfg, &registry).expect("shadow");
    let route = shadow
        .route(RouteSpec {
            name: "bench",
            config: &RouteShadowConfig::default(),
            dual_write: false,
            legacy_url: &legacy,
            new_url: &slow,
        })
        .expect("route");
    let sampled = shadow
        .route(RouteSpec {
            name: "sampled",
            config: &RouteShadowConfig {
                sample: 0.5,
                ..Default::default()
            },
            dual_write: false,
            legacy_url: &legacy,
            new_url: &slow,
        })
        .expect("route");
    let time = |label: &str, route: &ficus_shadow::ShadowRoute| {
        let n = 2_000_000u32;
        let t = Instant::now();
        let mut mirrored = 0u32;
        for _ in 0..n {
            mirrored += u32::from(shadow.decide(route, &Method::GET).is_mirror());
        }
        println!(
            "decide() {label:<28} {:>6.1} ns/call ({mirrored} of {n} mirror)",
            t.elapsed().as_nanos() as f64 / f64::from(n)
        );
    };
    time("sample 1.0, queue has room", &route);
    time("sample 0.5, queue has room", &sampled);
    // Fill the queue (one in flight, one waiting for a permit, one queued).
    for i in 0..3 {
        let _ = shadow.submit(MirrorJob {
            route: route.clone(),
            method: Method::GET,
            uri: "/".parse().expect("uri"),
            request_headers: http::HeaderMap::new(),
            request_body: Default::default(),
            primary_side: Side::Legacy,
            primary: CapturedResponse {
                status: http::StatusCode::OK,
                headers: http::HeaderMap::new(),
                body: Default::default(),
            },
            request_id: format!("fill-{i}"),
            on_done: None,
        });
        std::thread::sleep(Duration::from_millis(50));
    }
    time("queue full (counts dropped)", &route);
    let _ = std::fs::remove_dir_all(&dir);
}
