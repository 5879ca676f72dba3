//! Test helpers: real hyper servers on 127.0.0.1:0 that record what they receive, a client
//! playing the proxy's primary exchange, temporary stores, metric lookups.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ficus_core::{SharedClock, SystemClock};
use ficus_shadow::{
    CapturedBody, CapturedResponse, MirrorJob, RouteShadowConfig, RouteSpec, Shadow,
    ShadowGlobalConfig, ShadowRoute, Side,
};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus::Registry;

/// What a test server received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// What a test server answers: (status, headers, body) from the request and the number of
/// requests served before it.
pub type Handler =
    Arc<dyn Fn(&Received, usize) -> (u16, Vec<(&'static str, String)>, String) + Send + Sync>;

pub struct TestServer {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a server answering with `handler` after `delay`.
pub async fn serve(delay: Duration, handler: Handler) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received: Arc<Mutex<Vec<Received>>> = Arc::default();
    let counter = Arc::new(AtomicUsize::new(0));
    let rec = received.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (rec, handler, counter) = (rec.clone(), handler.clone(), counter.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (rec, handler, counter) = (rec.clone(), handler.clone(), counter.clone());
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let r = Received {
                            method: parts.method,
                            uri: parts.uri.to_string(),
                            headers: parts.headers,
                            body,
                        };
                        let n = counter.fetch_add(1, Ordering::SeqCst);
                        rec.lock().unwrap().push(r.clone());
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        let (status, headers, body) = handler(&r, n);
                        let mut resp = Response::new(Full::new(Bytes::from(body)));
                        *resp.status_mut() = StatusCode::from_u16(status).unwrap();
                        for (k, v) in headers {
                            resp.headers_mut().append(k, v.parse().unwrap());
                        }
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    TestServer {
        addr,
        received,
        task,
    }
}

/// A URL nothing listens on.
pub async fn down_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

/// JSON handler helper.
pub fn json(f: impl Fn(&Received, usize) -> String + Send + Sync + 'static) -> Handler {
    Arc::new(move |r, n| {
        (
            200,
            vec![("content-type", "application/json".to_string())],
            f(r, n),
        )
    })
}

/// A task list like the reference Task API's, with the new side's quirks optional.
pub fn tasks(micros: bool, extra_field: bool, reversed: bool) -> String {
    let ts = |s: &str| {
        if micros {
            format!("{s}.000000")
        } else {
            s.to_string()
        }
    };
    let mut list: Vec<serde_json::Value> = (1..=3)
        .map(|i| {
            let mut t = serde_json::json!({
                "id": i,
                "task_id": format!("TASK-10{i}"),
                "title": format!("Task {i}"),
                "priority": "HIGH",
                "status": "pending",
                "updated_at": ts(&format!("2026-01-0{i}T10:00:00")),
            });
            if extra_field {
                t["service_version"] = "2".into();
            }
            t
        })
        .collect();
    if reversed {
        list.reverse();
    }
    serde_json::to_string(&list).unwrap()
}

pub use tempfile::TempDir;

/// A temporary directory, removed when dropped.
pub fn temp_dir(name: &str) -> TempDir {
    TempDir::with_prefix(format!("ficus-shadow-it-{name}-")).unwrap()
}

pub fn global(dir: &std::path::Path) -> ShadowGlobalConfig {
    ShadowGlobalConfig {
        store: dir.join("shadow.db"),
        timeout_ms: 2000,
        ..Default::default()
    }
}

pub struct Harness {
    pub shadow: Shadow,
    pub registry: Registry,
    pub dir: PathBuf,
    _tmp: TempDir,
}

pub fn harness(name: &str, tweak: impl FnOnce(&mut ShadowGlobalConfig)) -> Harness {
    harness_with_clock(name, SystemClock::shared(), tweak)
}

/// A harness whose shadow mode reads the time from `clock` (a `ManualClock` in tests).
pub fn harness_with_clock(
    name: &str,
    clock: SharedClock,
    tweak: impl FnOnce(&mut ShadowGlobalConfig),
) -> Harness {
    let tmp = temp_dir(name);
    let mut g = global(tmp.path());
    tweak(&mut g);
    let registry = Registry::new();
    let shadow = Shadow::with_clock(&g, &registry, clock).unwrap();
    Harness {
        shadow,
        registry,
        dir: tmp.path().to_path_buf(),
        _tmp: tmp,
    }
}

impl Harness {
    pub fn route(
        &self,
        name: &str,
        cfg: RouteShadowConfig,
        dual_write: bool,
        legacy: &str,
        new: &str,
    ) -> Arc<ShadowRoute> {
        self.shadow
            .route(RouteSpec {
                name,
                config: &cfg,
                dual_write,
                legacy_url: legacy,
                new_url: new,
            })
            .unwrap()
    }

    pub fn store_path(&self) -> PathBuf {
        self.dir.join("shadow.db")
    }

    pub fn results(&self, route: &str, result: &str) -> u64 {
        counter(
            &self.registry,
            "ficus_shadow_requests_total",
            &[("route", route), ("result", result)],
        )
    }
}

/// Value of a counter (or sample count of a histogram) with these labels; 0 when absent.
pub fn counter(reg: &Registry, name: &str, labels: &[(&str, &str)]) -> u64 {
    for mf in reg.gather() {
        if mf.name() != name {
            continue;
        }
        for m in mf.get_metric() {
            let all = labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            });
            if all {
                let c = m.get_counter().get_value();
                let h = m.get_histogram().get_sample_count();
                return (c as u64).max(h);
            }
        }
    }
    0
}

type BoxFut<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Plays the proxy: sends the request to the primary side and captures its response.
pub fn primary_exchange(
    url: String,
    method: Method,
    path: &str,
    headers: HeaderMap,
    body: Bytes,
) -> BoxFut<CapturedResponse> {
    let uri = format!("{url}{path}");
    Box::pin(async move {
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(body))
            .unwrap();
        *req.headers_mut() = headers;
        let resp = client.request(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        CapturedResponse {
            status: parts.status,
            headers: parts.headers,
            body: CapturedBody::from(body),
        }
    })
}

/// A job for `route` as the proxy would submit it after serving `path` from `primary_side`.
#[allow(clippy::too_many_arguments)] // a test helper mirroring MirrorJob's fields
pub async fn job(
    route: &Arc<ShadowRoute>,
    primary_side: Side,
    primary_url: &str,
    method: Method,
    path: &str,
    headers: HeaderMap,
    body: &str,
    request_id: &str,
) -> MirrorJob {
    let body = Bytes::from(body.to_string());
    let primary = primary_exchange(
        primary_url.to_string(),
        method.clone(),
        path,
        headers.clone(),
        body.clone(),
    )
    .await;
    MirrorJob {
        route: route.clone(),
        method,
        uri: path.parse().unwrap(),
        request_headers: headers,
        request_body: CapturedBody::from(body),
        primary_side,
        primary,
        request_id: request_id.to_string(),
        on_done: None,
    }
}

pub async fn get_job(route: &Arc<ShadowRoute>, primary_url: &str, path: &str) -> MirrorJob {
    job(
        route,
        Side::Legacy,
        primary_url,
        Method::GET,
        path,
        HeaderMap::new(),
        "",
        "req-1",
    )
    .await
}

/// Flushes with a deadline so a hang fails the test instead of blocking it.
pub async fn flush(shadow: &Shadow) {
    tokio::time::timeout(Duration::from_secs(20), shadow.flush())
        .await
        .expect("flush timed out");
}
