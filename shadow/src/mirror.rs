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
//! After 5 failed mirror exchanges in a row to one side, a route stops sending to it for 1 s
//! (doubling to 30 s while it keeps failing) and counts those jobs `error`, so a down mirror
//! side costs no connection attempt per request.
//!
//! Outcomes are counted with one atomic add per request (plus the metric); a timer on the
//! shadow thread moves them to the store once a second.
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

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, StatusCode, Uri};
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
pub use ficus_core::headers::SHADOW as SHADOW_HEADER;
/// The idempotency header mirrored writes carry.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Request headers not copied to a mirror request besides the hop-by-hop ones
/// ([`ficus_core::headers::HOP_BY_HOP`]): those the client recomputes for the new body and
/// target.
const NOT_COPIED: &[&str] = &["host", "content-length", "expect"];

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
pub struct ShadowRoute {
    name: Arc<str>,
    sample: f64,
    learn_noise: f64,
    dual_write: bool,
    rules: CompareRules,
    legacy: Uri,
    new: Uri,
    metrics: RouteMetrics,
    /// Outcomes not yet written to the store, by [`Outcome`] index; harvested every second.
    counts: [AtomicU64; 6],
    /// Mirroring to a side that keeps failing pauses, by [`Side`] (legacy, new).
    breakers: [Breaker; 2],
    store: mpsc::Sender<Op>,
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

    fn breaker(&self, side: Side) -> &Breaker {
        &self.breakers[side as usize]
    }

    /// Counts an outcome: the metric now, the store at the next harvest. One atomic add each,
    /// so the proxy's threads can count without touching the store.
    fn record(&self, outcome: Outcome) {
        self.metrics.count(outcome);
        self.counts[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn take_counts(&self) -> Vec<(Arc<str>, Outcome, u64)> {
        Outcome::ALL
            .iter()
            .filter_map(|o| {
                let n = self.counts[*o as usize].swap(0, Ordering::Relaxed);
                (n > 0).then(|| (self.name.clone(), *o, n))
            })
            .collect()
    }
}

impl Drop for ShadowRoute {
    fn drop(&mut self) {
        // A route replaced by a reload hands over what it counted since the last harvest.
        let counts = self.take_counts();
        if !counts.is_empty() {
            let _ = self.store.try_send(Op::Counts {
                counts,
                time_ms: now_ms(),
            });
        }
    }
}

/// Consecutive failures of one mirror side (per route) that pause mirroring to it.
const BREAKER_FAILURES: u32 = 5;
/// First pause; each further failure doubles it up to [`BREAKER_MAX_MS`].
const BREAKER_MIN_MS: u64 = 1_000;
const BREAKER_MAX_MS: u64 = 30_000;

/// Milliseconds on a monotonic clock local to this process.
fn mono_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// A circuit breaker: after [`BREAKER_FAILURES`] failed mirror exchanges in a row, jobs for
/// that side are counted `error` without being sent for a while (1 s, doubling to 30 s), so a
/// down mirror side costs no connection attempt per request. The first job after the pause
/// is sent; its success closes the breaker.
#[derive(Debug, Default)]
struct Breaker {
    failures: AtomicU32,
    open_until_ms: AtomicU64,
    pause_ms: AtomicU64,
}

impl Breaker {
    fn is_open(&self, now_ms: u64) -> bool {
        now_ms < self.open_until_ms.load(Ordering::Relaxed)
    }

    fn succeeded(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.pause_ms.store(0, Ordering::Relaxed);
    }

    /// Records a failure; returns the pause when the breaker opens.
    fn failed(&self, now_ms: u64) -> Option<u64> {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n < BREAKER_FAILURES || self.is_open(now_ms) {
            return None;
        }
        let pause =
            (self.pause_ms.load(Ordering::Relaxed) * 2).clamp(BREAKER_MIN_MS, BREAKER_MAX_MS);
        self.pause_ms.store(pause, Ordering::Relaxed);
        self.open_until_ms.store(now_ms + pause, Ordering::Relaxed);
        Some(pause)
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
    /// Told what became of the job (the mirror's status, the outcome); `None` for most jobs.
    pub on_done: Option<OnDone>,
}

/// What became of a mirror job, as told to its [`OnDone`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MirrorReport {
    /// The mirror side's status; `None` when the request was not sent or the exchange failed.
    pub status: Option<StatusCode>,
    /// How the job was counted (`match`/`mismatch`/`noise` after a comparison).
    pub outcome: Outcome,
}

/// A callback told once what became of a job: the proxy learns the mirror side's status of a
/// dual write and the comparison outcome for its rollback guard without a second mirror.
///
/// It runs on the shadow thread (or on the thread calling [`Shadow::submit`] when the job is
/// refused there), so it must be short and must not block. It always runs exactly once: a
/// job dropped without an answer (shadow mode shutting down) reports `dropped`. The proxy
/// relies on that: a dual write's row turn is released from it, so the next write to the row
/// can go.
pub struct OnDone(Option<Box<dyn FnOnce(MirrorReport) + Send + Sync>>);

impl OnDone {
    /// Wraps `f`.
    pub fn new(f: impl FnOnce(MirrorReport) + Send + Sync + 'static) -> OnDone {
        OnDone(Some(Box::new(f)))
    }

    fn fire(&mut self, report: MirrorReport) {
        if let Some(f) = self.0.take() {
            f(report);
        }
    }
}

impl Drop for OnDone {
    fn drop(&mut self) {
        self.fire(MirrorReport {
            status: None,
            outcome: Outcome::Dropped,
        });
    }
}

impl std::fmt::Debug for OnDone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnDone(..)")
    }
}

impl MirrorJob {
    /// Tells the job's [`OnDone`], if any.
    fn report(&mut self, status: Option<StatusCode>, outcome: Outcome) {
        report(&mut self.on_done, status, outcome);
    }
}

fn report(on_done: &mut Option<OnDone>, status: Option<StatusCode>, outcome: Outcome) {
    if let Some(mut d) = on_done.take() {
        d.fire(MirrorReport { status, outcome });
    }
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
    /// The mirror side kept failing and mirroring to it is paused; counted `error`.
    MirrorFailing,
}

/// State shared by the handle and the worker thread.
struct Shared {
    store: mpsc::Sender<Op>,
    pending: AtomicUsize,
    closed: AtomicBool,
    /// Every route built, for harvesting their counts.
    routes: Mutex<Vec<Weak<ShadowRoute>>>,
    noise: NoiseBook,
    redactor: Redactor,
    max_body_bytes: usize,
    timeout: Duration,
}

impl Shared {
    /// Takes every route's counts since the last harvest, as one store write.
    fn harvest(&self) -> Option<Op> {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        routes.retain(|w| w.strong_count() > 0);
        let counts: Vec<_> = routes
            .iter()
            .filter_map(Weak::upgrade)
            .flat_map(|r| r.take_counts())
            .collect();
        (!counts.is_empty()).then(|| Op::Counts {
            counts,
            time_ms: now_ms(),
        })
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
            routes: Mutex::new(Vec::new()),
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
        let route = Arc::new(ShadowRoute {
            name: Arc::from(spec.name),
            sample: spec.config.sample,
            learn_noise: spec.config.learn_noise,
            dual_write: spec.dual_write,
            rules,
            legacy: base_url(spec.legacy_url, "backends.legacy.url")?,
            new: base_url(spec.new_url, "backends.new.url")?,
            metrics: self.metrics.route(spec.name),
            counts: Default::default(),
            breakers: Default::default(),
            store: self.shared.store.clone(),
        });
        let mut routes = self.shared.routes.lock().unwrap_or_else(|p| p.into_inner());
        routes.retain(|w| w.strong_count() > 0);
        routes.push(Arc::downgrade(&route));
        Ok(route)
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
            route.record(Outcome::Dropped);
            return MirrorDecision::Skip(SkipReason::QueueFull);
        }
        MirrorDecision::Mirror
    }

    /// Hands a finished primary exchange to the mirror worker; never blocks. A write on a
    /// route that is not dual-write is refused (not counted). A job with a truncated body is
    /// counted `skipped`; one whose mirror side is paused (see the circuit breaker in the
    /// module docs) `error`; when the queue is full the job is dropped and counted `dropped`,
    /// as are jobs after [`Shadow::shutdown`].
    pub fn submit(&self, mut job: MirrorJob) -> Submitted {
        if !is_safe(&job.method) && !job.route.dual_write {
            job.report(None, Outcome::Skipped);
            return Submitted::NotAllowed;
        }
        if job.request_body.is_truncated() || job.primary.body.is_truncated() {
            job.route.record(Outcome::Skipped);
            job.report(None, Outcome::Skipped);
            return Submitted::Skipped;
        }
        if job
            .route
            .breaker(job.primary_side.other())
            .is_open(mono_ms())
        {
            job.route.record(Outcome::Error);
            job.report(None, Outcome::Error);
            return Submitted::MirrorFailing;
        }
        // Counted before sending so the worker can never finish it first.
        self.shared.pending.fetch_add(1, Ordering::SeqCst);
        let refused = if self.shared.closed.load(Ordering::SeqCst) {
            Some(Box::new(job))
        } else {
            match self.jobs.try_send(Box::new(job)) {
                Ok(()) => None,
                Err(mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j)) => {
                    Some(j)
                }
            }
        };
        match refused {
            None => Submitted::Queued,
            Some(mut job) => {
                self.shared.pending.fetch_sub(1, Ordering::SeqCst);
                job.route.record(Outcome::Dropped);
                job.report(None, Outcome::Dropped);
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
        if let Some(op) = self.shared.harvest() {
            let _ = self.shared.store.send(op).await;
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
    let ticker = shared.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if let Some(op) = ticker.harvest() {
                let _ = ticker.store.send(op).await;
            }
        }
    });
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
    if let Some(op) = shared.harvest() {
        let _ = shared.store.send(op).await;
    }
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
        if NOT_COPIED.contains(&n)
            || ficus_core::headers::is_hop_by_hop(n)
            || connection_listed.iter().any(|c| c == n)
        {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    headers.insert(SHADOW_HEADER, HeaderValue::from_static("1"));
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

async fn process(shared: &Shared, client: &HttpClient, mut job: MirrorJob) {
    let route = job.route.clone();
    let mirror_side = job.primary_side.other();
    let mirror_req = match mirror_request(&job, mirror_side) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(route = %route.name, error = %e, "shadow: cannot build mirror request");
            route.record(Outcome::Error);
            job.report(None, Outcome::Error);
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
    let breaker = route.breaker(mirror_side);
    let mirror = match mirrored {
        Ok(m) => {
            breaker.succeeded();
            m
        }
        Err(e) => {
            tracing::debug!(route = %route.name, side = mirror_side.as_str(), error = %e, "shadow: mirror request failed");
            if let Some(pause) = breaker.failed(mono_ms()) {
                tracing::warn!(
                    route = %route.name,
                    side = mirror_side.as_str(),
                    error = %e,
                    "shadow: mirror side keeps failing; pausing mirroring to it for {pause} ms"
                );
            }
            route.record(Outcome::Error);
            job.report(None, Outcome::Error);
            return;
        }
    };
    // Noise first, so the very exchange that revealed it is already judged with it. A probe
    // answered with another status says the resource changed in between (or the side is
    // flaky), not which fields are noisy: it teaches nothing, and status is never noise.
    if let Some(Ok(second)) =
        probed.filter(|p| matches!(p, Ok(s) if s.status == job.primary.status))
    {
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
    let diff_truncated = cmp.truncated;
    let (real, noise_count) = shared.noise.split(&route.name, cmp.entries);
    let outcome = match (real.is_empty(), noise_count) {
        (true, 0) => Outcome::Match,
        (true, _) => Outcome::Noise,
        (false, _) => Outcome::Mismatch,
    };
    route.record(outcome);
    report(&mut job.on_done, Some(mirror.status), outcome);
    if outcome != Outcome::Mismatch {
        return;
    }
    let mut kinds: Vec<DiffKind> = real.iter().map(|e| e.kind).collect();
    kinds.sort();
    kinds.dedup();
    for k in kinds {
        route.metrics.count_kind(k);
    }
    let record = build_record(shared, &job, legacy, new, real, diff_truncated);
    let _ = shared.store.send(Op::Mismatch(Box::new(record))).await;
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
    fn breaker_opens_after_consecutive_failures_and_backs_off() {
        let b = Breaker::default();
        for _ in 0..BREAKER_FAILURES - 1 {
            assert_eq!(b.failed(0), None);
        }
        assert_eq!(b.failed(0), Some(1_000));
        assert!(b.is_open(999) && !b.is_open(1_000));
        // Failing again while open changes nothing; after the pause it doubles.
        assert_eq!(b.failed(500), None);
        assert_eq!(b.failed(1_000), Some(2_000));
        assert!(b.is_open(2_999));
        b.succeeded();
        for _ in 0..BREAKER_FAILURES - 1 {
            assert_eq!(b.failed(5_000), None);
        }
        assert_eq!(b.failed(5_000), Some(1_000), "success reset the pause");
        for _ in 0..10 {
            let now = b.open_until_ms.load(Ordering::Relaxed);
            b.failed(now);
        }
        assert_eq!(b.pause_ms.load(Ordering::Relaxed), BREAKER_MAX_MS);
    }

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
