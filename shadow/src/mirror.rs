//! The hot-path seam: [`Shadow`] decides, before forwarding, whether a request is mirrored
//! ([`Shadow::decide`]) and takes finished primary exchanges ([`Shadow::submit`]); everything
//! else happens on its own thread.
//!
//! # Architecture invariant: shadow never hurts the primary
//! `decide` and `submit` never block, never allocate more than the job itself, and never touch
//! SQLite or the network. The client gets the primary response as soon as it is ready (the
//! proxy tees bodies with [`TeeBody`](crate::TeeBody), which forwards frames unchanged).
//! Mirror jobs go through a bounded queue (`queue`) to a dedicated thread (`ficus-shadow`,
//! its own current-thread tokio runtime and its own hyper-util client) that runs at most
//! `concurrency` exchanges at once, each limited by `timeout_ms`. A full queue drops the job
//! and counts it (`result="dropped"`); a body larger than `max_body_bytes` is not mirrored
//! (`result="skipped"`). Nothing waits without bound and nothing queues without bound.
//!
//! # Architecture invariant: writes are not shadowed by accident
//! Only GET, HEAD and OPTIONS are mirrored unless the route is dual-write; mirrored writes
//! carry `X-Ficus-Shadow: 1` and an `Idempotency-Key` (the client's, else the request id).
//! Every mirrored request carries `X-Ficus-Shadow: 1`, so a backend can tell shadow traffic.
//!
//! The worker sends the request to the side that did not serve it, for a `learn_noise` share
//! of GETs also again to the primary side (see [`crate::noise`]), compares legacy with new
//! whichever side was primary, counts the outcome and writes mismatches to the store through
//! the store's writer thread.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prometheus::Registry;
use tokio::sync::mpsc;

use crate::capture::{CapturedBody, CapturedResponse, Side};
use crate::compare::{compare, CompareRules, DiffKind};
use crate::config::{RouteShadowConfig, ShadowGlobalConfig};
use crate::error::ShadowError;
use crate::metrics::{Metrics, Outcome, RouteMetrics};
use crate::noise::{self, NoiseBook};
use crate::redact::Redactor;
use crate::store::{
    self, now_ms, MismatchRecord, Op, Retention, Store, StoredBody, StoredResponse,
};

/// The marker header every mirrored request carries.
pub const SHADOW_HEADER: &str = "x-ficus-shadow";
/// The idempotency header mirrored writes carry.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Request headers not copied to a mirror request: hop-by-hop ones (RFC 9110 §7.6.1), and
/// those the client recomputes for the new body and target.
const NOT_COPIED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "expect",
];

/// What the proxy tells shadow mode about one of its routes.
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec<'a> {
    /// The configured route name (the only route label metrics get).
    pub name: &'a str,
    /// The route's `[routes.shadow]` table.
    pub config: &'a RouteShadowConfig,
    /// The route's `dual_write` setting: mirror writes too.
    pub dual_write: bool,
    /// Base URL of the legacy backend (`http://host:port`, optionally with a path prefix).
    pub legacy_url: &'a str,
    /// Base URL of the new backend.
    pub new_url: &'a str,
}

/// A route's compiled shadow settings and metric handles. Build with [`Shadow::route`] when
/// the proxy loads (or reloads) its configuration; share it with `Arc`.
#[derive(Clone)]
pub struct ShadowRoute {
    name: Arc<str>,
    sample: f64,
    learn_noise: f64,
    dual_write: bool,
    rules: CompareRules,
    legacy: Uri,
    new: Uri,
    metrics: RouteMetrics,
}

impl std::fmt::Debug for ShadowRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShadowRoute")
            .field("name", &self.name)
            .field("sample", &self.sample)
            .field("learn_noise", &self.learn_noise)
            .field("dual_write", &self.dual_write)
            .finish_non_exhaustive()
    }
}

impl ShadowRoute {
    /// The route name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether writes are mirrored on this route.
    pub fn dual_write(&self) -> bool {
        self.dual_write
    }

    fn base(&self, side: Side) -> &Uri {
        match side {
            Side::Legacy => &self.legacy,
            Side::New => &self.new,
        }
    }
}

/// Why a request is not mirrored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// A write on a route that is not dual-write.
    Method,
    /// Not in the route's `sample`.
    NotSampled,
    /// The mirror queue is full, or shadow mode is shutting down (counted `dropped`).
    QueueFull,
}

/// The answer of [`Shadow::decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirrorDecision {
    /// Tee the bodies and [`Shadow::submit`] the exchange when the response has ended.
    Mirror,
    /// Forward as usual; nothing to tee.
    Skip(SkipReason),
}

impl MirrorDecision {
    /// Whether the request is to be mirrored.
    pub fn is_mirror(self) -> bool {
        self == MirrorDecision::Mirror
    }
}

/// A finished primary exchange to mirror and compare.
#[derive(Debug)]
pub struct MirrorJob {
    /// The route it matched.
    pub route: Arc<ShadowRoute>,
    /// The request method.
    pub method: Method,
    /// The request target; only its path and query are used.
    pub uri: Uri,
    /// The request headers as forwarded to the primary side.
    pub request_headers: HeaderMap,
    /// The request body as forwarded (teed up to `max_body_bytes`).
    pub request_body: CapturedBody,
    /// The side that served the client.
    pub primary_side: Side,
    /// Its response (headers as the backend sent them; body teed up to `max_body_bytes`).
    pub primary: CapturedResponse,
    /// The proxy's request id (the `Idempotency-Key` of mirrored writes).
    pub request_id: String,
}

/// What [`Shadow::submit`] did with a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// Queued for the mirror worker.
    Queued,
    /// The queue was full; counted `dropped`.
    Dropped,
    /// A body was larger than `max_body_bytes`; counted `skipped`.
    Skipped,
    /// A write on a route that is not dual-write: refused, whatever `decide` said.
    NotAllowed,
}

/// State shared by the handle and the worker thread.
struct Shared {
    store: mpsc::Sender<Op>,
    pending: AtomicUsize,
    closed: AtomicBool,
    noise: NoiseBook,
    redactor: Redactor,
    max_body_bytes: usize,
    timeout: Duration,
}

impl Shared {
    fn count_in_store(&self, route: &ShadowRoute, outcome: Outcome) {
        // From the proxy's threads: never wait. A count lost here is still in the metrics.
        let _ = self.store.try_send(Op::Count {
            route: route.name.clone(),
            outcome,
            time_ms: now_ms(),
        });
    }
}

/// Shadow mode for one proxy instance: the mirror queue and worker, the store writer, the
/// metrics.
///
/// Dropping it closes the queue; the worker and store-writer threads finish what they hold
/// and exit on their own. Call [`Shadow::shutdown`] first to wait for that.
pub struct Shadow {
    jobs: mpsc::Sender<Box<MirrorJob>>,
    shared: Arc<Shared>,
    metrics: Metrics,
}

impl std::fmt::Debug for Shadow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shadow")
            .field("pending", &self.shared.pending.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Shadow {
    /// Validates `global`, opens (or creates) the store, reloads learned noise, registers
    /// the metrics into `registry` and starts the worker and store-writer threads.
    pub fn new(global: &ShadowGlobalConfig, registry: &Registry) -> Result<Shadow, ShadowError> {
        global.validate()?;
        let metrics = Metrics::new()?;
        let store = Store::open(&global.store)?;
        let noise = NoiseBook::new(store.learned_noise()?);
        metrics.register(registry)?;
        let retention = Retention {
            keep: global.keep,
            keep_days: global.keep_days,
        };
        let store_tx = store::spawn_writer(store, retention, metrics.store_errors.clone())?;
        let shared = Arc::new(Shared {
            store: store_tx,
            pending: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            noise,
            redactor: Redactor::new(global),
            max_body_bytes: global.max_body_bytes,
            timeout: Duration::from_millis(global.timeout_ms),
        });
        let (jobs, rx) = mpsc::channel(global.queue);
        let start = |source| ShadowError::Start {
            what: "shadow worker",
            source,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(start)?;
        let worker_shared = shared.clone();
        let concurrency = global.concurrency;
        std::thread::Builder::new()
            .name("ficus-shadow".into())
            .spawn(move || rt.block_on(run_worker(rx, worker_shared, concurrency)))
            .map_err(start)?;
        Ok(Shadow {
            jobs,
            shared,
            metrics,
        })
    }

    /// Compiles a route's shadow settings and resolves its metric handles. Call once per
    /// route and configuration (re)load, not per request.
    pub fn route(&self, spec: RouteSpec<'_>) -> Result<Arc<ShadowRoute>, ShadowError> {
        if spec.name.is_empty() {
            return Err(ShadowError::config("name", "a shadowed route needs a name"));
        }
        let rules = CompareRules::new(spec.config)?;
        Ok(Arc::new(ShadowRoute {
            name: Arc::from(spec.name),
            sample: spec.config.sample,
            learn_noise: spec.config.learn_noise,
            dual_write: spec.dual_write,
            rules,
            legacy: base_url(spec.legacy_url, "backends.legacy.url")?,
            new: base_url(spec.new_url, "backends.new.url")?,
            metrics: self.metrics.route(spec.name),
        }))
    }

    /// Bodies are teed up to this many bytes (`max_body_bytes`).
    pub fn max_body_bytes(&self) -> usize {
        self.shared.max_body_bytes
    }

    /// Whether this request is to be mirrored; cheap and non-blocking, made before
    /// forwarding so the proxy tees bodies only when needed. A full queue is counted
    /// `dropped` here.
    pub fn decide(&self, route: &ShadowRoute, method: &Method) -> MirrorDecision {
        if !is_safe(method) && !route.dual_write {
            return MirrorDecision::Skip(SkipReason::Method);
        }
        if route.sample < 1.0 && rand::random::<f64>() >= route.sample {
            return MirrorDecision::Skip(SkipReason::NotSampled);
        }
        if self.jobs.capacity() == 0 || self.shared.closed.load(Ordering::Relaxed) {
            route.metrics.count(Outcome::Dropped);
            self.shared.count_in_store(route, Outcome::Dropped);
            return MirrorDecision::Skip(SkipReason::QueueFull);
        }
        MirrorDecision::Mirror
    }

    /// Hands a finished primary exchange to the mirror worker; never blocks. A write on a
    /// route that is not dual-write is refused (not counted). A job with a truncated body is counted `skipped`; when the queue is full the job is dropped and
    /// counted `dropped`, as are jobs after [`Shadow::shutdown`].
    pub fn submit(&self, job: MirrorJob) -> Submitted {
        if !is_safe(&job.method) && !job.route.dual_write {
            return Submitted::NotAllowed;
        }
        if job.request_body.is_truncated() || job.primary.body.is_truncated() {
            job.route.metrics.count(Outcome::Skipped);
            self.shared.count_in_store(&job.route, Outcome::Skipped);
            return Submitted::Skipped;
        }
        // Counted before sending so the worker can never finish it first.
        self.shared.pending.fetch_add(1, Ordering::SeqCst);
        let refused = if self.shared.closed.load(Ordering::SeqCst) {
            Some(job.route)
        } else {
            match self.jobs.try_send(Box::new(job)) {
                Ok(()) => None,
                Err(mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j)) => {
                    Some(j.route)
                }
            }
        };
        match refused {
            None => Submitted::Queued,
            Some(route) => {
                self.shared.pending.fetch_sub(1, Ordering::SeqCst);
                route.metrics.count(Outcome::Dropped);
                self.shared.count_in_store(&route, Outcome::Dropped);
                Submitted::Dropped
            }
        }
    }

    /// Waits until every job submitted so far has been compared and its results committed
    /// to the store (tests, demos, shutdown).
    pub async fn flush(&self) {
        while self.shared.pending.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.shared.store.send(Op::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Stops accepting jobs (later ones are counted `dropped`), waits for queued and
    /// in-flight ones to finish (each bounded by `timeout_ms`) and commits the store. Callable
    /// through an `Arc`; the threads end when the `Shadow` is dropped.
    pub async fn shutdown(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.flush().await;
    }
}

/// The methods mirrored on every shadowed route.
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn base_url(url: &str, field: &str) -> Result<Uri, ShadowError> {
    let uri: Uri = url
        .parse()
        .map_err(|e| ShadowError::config(field, format!("{url:?} is not a URL: {e}")))?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err(ShadowError::config(
            field,
            format!("{url:?}: shadow mirrors to http://host:port URLs only"),
        ));
    }
    Ok(uri)
}

/// `base` (scheme, authority, optional path prefix) joined with `target`'s path and query.
fn join(base: &Uri, target: &Uri) -> Result<Uri, http::Error> {
    let pq = target.path_and_query().map_or("/", |pq| pq.as_str());
    let prefix = base.path().trim_end_matches('/');
    let mut parts = http::uri::Parts::default();
    parts.scheme = base.scheme().cloned();
    parts.authority = base.authority().cloned();
    parts.path_and_query = Some(format!("{prefix}{pq}").parse()?);
    Ok(Uri::from_parts(parts)?)
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

async fn run_worker(
    mut rx: mpsc::Receiver<Box<MirrorJob>>,
    shared: Arc<Shared>,
    concurrency: usize,
) {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(shared.timeout));
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(concurrency)
        .build(connector);
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency));
    while let Some(job) = rx.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (shared, client) = (shared.clone(), client.clone());
        tokio::spawn(async move {
            process(&shared, &client, *job).await;
            shared.pending.fetch_sub(1, Ordering::SeqCst);
            drop(permit);
        });
    }
    // Closed: wait for what is in flight.
    let _ = permits.acquire_many(concurrency as u32).await;
}

/// The request sent to `side` for `job`.
fn mirror_request(job: &MirrorJob, side: Side) -> Result<Request<Full<Bytes>>, http::Error> {
    let uri = join(job.route.base(side), &job.uri)?;
    let mut req = Request::builder()
        .method(job.method.clone())
        .uri(uri)
        .body(Full::new(job.request_body.to_bytes()))?;
    let connection_listed: Vec<String> = job
        .request_headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    let headers = req.headers_mut();
    for (name, value) in &job.request_headers {
        let n = name.as_str();
        if NOT_COPIED.contains(&n) || connection_listed.iter().any(|c| c == n) {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    headers.insert(
        HeaderName::from_static(SHADOW_HEADER),
        HeaderValue::from_static("1"),
    );
    if !is_safe(&job.method) && !headers.contains_key(IDEMPOTENCY_KEY) {
        let key = HeaderValue::from_str(&job.request_id)?;
        headers.insert(HeaderName::from_static(IDEMPOTENCY_KEY), key);
    }
    Ok(req)
}

/// One exchange under the time limit; the body is read up to `limit` bytes.
async fn exchange(
    client: &HttpClient,
    req: Request<Full<Bytes>>,
    timeout: Duration,
    limit: usize,
) -> (Result<CapturedResponse, String>, Duration) {
    let started = Instant::now();
    let work = async {
        let resp = client.request(req).await.map_err(|e| error_chain(&e))?;
        let (parts, mut body) = resp.into_parts();
        let mut captured = CapturedBody::default();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| error_chain(&e))?;
            if let Some(data) = frame.data_ref() {
                captured.push(data, limit);
                if captured.is_truncated() {
                    break;
                }
            }
        }
        Ok(CapturedResponse {
            status: parts.status,
            headers: parts.headers,
            body: captured,
        })
    };
    let result = match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {} ms", timeout.as_millis())),
    };
    (result, started.elapsed())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

async fn process(shared: &Shared, client: &HttpClient, job: MirrorJob) {
    let route = job.route.clone();
    let mirror_side = job.primary_side.other();
    let mirror_req = match mirror_request(&job, mirror_side) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(route = %route.name, error = %e, "shadow: cannot build mirror request");
            route.metrics.count(Outcome::Error);
            let _ = shared.store.send(count_op(&route, Outcome::Error)).await;
            return;
        }
    };
    let probe = job.method == Method::GET
        && route.learn_noise > 0.0
        && rand::random::<f64>() < route.learn_noise;
    let (limit, timeout) = (shared.max_body_bytes, shared.timeout);
    let ((mirrored, took), probed) = if probe {
        let probe_req = mirror_request(&job, job.primary_side).ok();
        let probe_fut = async {
            match probe_req {
                Some(r) => Some(exchange(client, r, timeout, limit).await.0),
                None => None,
            }
        };
        tokio::join!(exchange(client, mirror_req, timeout, limit), probe_fut)
    } else {
        (exchange(client, mirror_req, timeout, limit).await, None)
    };
    route.metrics.duration.observe(took.as_secs_f64());
    let mirror = match mirrored {
        Ok(m) => m,
        Err(e) => {
            tracing::debug!(route = %route.name, side = mirror_side.as_str(), error = %e, "shadow: mirror request failed");
            route.metrics.count(Outcome::Error);
            let _ = shared.store.send(count_op(&route, Outcome::Error)).await;
            return;
        }
    };
    // Noise first, so the very exchange that revealed it is already judged with it.
    if let Some(Ok(second)) = probed {
        let observed = noise::observe(&compare(&route.rules, &job.primary, &second));
        shared.noise.learn(&route.name, &observed);
        let op = Op::Noise {
            route: route.name.clone(),
            observed,
            time_ms: now_ms(),
        };
        let _ = shared.store.send(op).await;
    }
    let (legacy, new) = match job.primary_side {
        Side::Legacy => (&job.primary, &mirror),
        Side::New => (&mirror, &job.primary),
    };
    let cmp = compare(&route.rules, legacy, new);
    let text_truncated = cmp.truncated;
    let (real, noise_count) = shared.noise.split(&route.name, cmp.entries);
    let outcome = match (real.is_empty(), noise_count) {
        (true, 0) => Outcome::Match,
        (true, _) => Outcome::Noise,
        (false, _) => Outcome::Mismatch,
    };
    route.metrics.count(outcome);
    let _ = shared.store.send(count_op(&route, outcome)).await;
    if outcome != Outcome::Mismatch {
        return;
    }
    let mut kinds: Vec<DiffKind> = real.iter().map(|e| e.kind).collect();
    kinds.sort();
    kinds.dedup();
    for k in kinds {
        route.metrics.count_kind(k);
    }
    let record = build_record(shared, &job, legacy, new, real, text_truncated);
    let _ = shared.store.send(Op::Mismatch(Box::new(record))).await;
}

fn count_op(route: &ShadowRoute, outcome: Outcome) -> Op {
    Op::Count {
        route: route.name.clone(),
        outcome,
        time_ms: now_ms(),
    }
}

/// The stored form of a mismatch: redacted, bodies cut.
fn build_record(
    shared: &Shared,
    job: &MirrorJob,
    legacy: &CapturedResponse,
    new: &CapturedResponse,
    mut diff: Vec<crate::DiffEntry>,
    diff_truncated: bool,
) -> MismatchRecord {
    let r = &shared.redactor;
    let content_type = |h: &HeaderMap| {
        h.get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let body = |b: &CapturedBody, h: &HeaderMap| {
        let mut stored = StoredBody::cut(r.body(&b.to_bytes(), content_type(h).as_deref()));
        stored.truncated |= b.is_truncated();
        stored
    };
    let response = |resp: &CapturedResponse| StoredResponse {
        status: resp.status.as_u16(),
        headers: r.headers(&resp.headers),
        body: body(&resp.body, &resp.headers),
    };
    r.entries(&mut diff);
    MismatchRecord {
        id: 0,
        time_ms: now_ms(),
        route: job.route.name.to_string(),
        method: job.method.to_string(),
        path: r.path_and_query(job.uri.path_and_query().map_or("/", |pq| pq.as_str())),
        request_id: job.request_id.clone(),
        primary: job.primary_side,
        request_headers: r.headers(&job.request_headers),
        request_body: body(&job.request_body, &job.request_headers),
        legacy: response(legacy),
        new: response(new),
        diff,
        diff_truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Shadow>();
        send_sync::<ShadowRoute>();
        send_sync::<MirrorJob>();
    }

    #[test]
    fn joins_base_and_target() {
        let base: Uri = "http://127.0.0.1:8001".parse().unwrap();
        let t: Uri = "/api/tasks/?x=1".parse().unwrap();
        assert_eq!(
            join(&base, &t).unwrap().to_string(),
            "http://127.0.0.1:8001/api/tasks/?x=1"
        );
        let base: Uri = "http://h:1/prefix/".parse().unwrap();
        assert_eq!(
            join(&base, &t).unwrap().to_string(),
            "http://h:1/prefix/api/tasks/?x=1"
        );
        assert!(base_url("https://h", "f").is_err());
        assert!(base_url("nope", "f").is_err());
    }
}
