//! Shadow-specific test helpers on top of testkit (whose recording servers, temp dirs and
//! HTTP client are re-exported here): a client playing the proxy's primary exchange, shadow
//! harnesses over temporary stores, metric lookups.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ficus_core::{SharedClock, SystemClock};
use ficus_shadow::{
    CapturedBody, CapturedResponse, MirrorJob, RouteShadowConfig, RouteSpec, Shadow,
    ShadowGlobalConfig, ShadowRoute, Side,
};
use http::{HeaderMap, Method, Request};
use http_body_util::Full;
use prometheus::Registry;

pub use testkit::backend::{json, serve};
pub use testkit::{temp_dir, TempDir};

/// A URL nothing listens on.
pub async fn down_url() -> String {
    format!("http://{}", testkit::free_addr())
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
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(body))
            .unwrap();
        *req.headers_mut() = headers;
        let resp = testkit::Http::new().request(req).await;
        CapturedResponse {
            status: http::StatusCode::from_u16(resp.status).unwrap(),
            headers: resp.headers,
            body: CapturedBody::from(resp.body),
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
