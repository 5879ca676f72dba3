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
//!
//! # Layout
//! - this file: [`Shadow`], the seam the proxy calls;
//! - `job`: [`MirrorJob`] and what the proxy hears back ([`OnDone`], [`MirrorReport`],
//!   [`Submitted`], [`MirrorDecision`]);
//! - `route`: [`ShadowRoute`], a route's compiled settings, counts and breakers;
//! - `breaker`: the circuit breaker of a mirror side, on the injected clock;
//! - `connector`: how the shadow client reaches a backend — TCP, or TLS with the proxy's own
//!   settings for that backend ([`Shadow::use_tls`]);
//! - `worker`: the shadow thread — the mirror exchange, comparison, counting, records.

mod breaker;
mod connector;
mod job;
mod route;
mod worker;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ficus_core::{SharedClock, SystemClock};
use http::Method;
use prometheus::Registry;
use tokio::sync::mpsc;

use self::job::is_safe;
use self::worker::{run_worker, Shared};
use crate::config::ShadowGlobalConfig;
use crate::error::ShadowError;
use crate::metrics::{Metrics, Outcome};
use crate::noise::NoiseBook;
use crate::redact::Redactor;
use crate::store::{self, Op, Retention, Store};

pub use self::job::{MirrorDecision, MirrorJob, MirrorReport, OnDone, SkipReason, Submitted};
pub use self::route::{RouteSpec, ShadowRoute};
pub use self::worker::{IDEMPOTENCY_KEY, SHADOW_HEADER};

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
        Shadow::with_clock(global, registry, SystemClock::shared())
    }

    /// [`Shadow::new`] with the time read from `clock` instead of the system's: the circuit
    /// breakers' pauses and the mirror exchanges' durations. Tests pass a
    /// [`ficus_core::ManualClock`] and advance it rather than sleep. (A mirror exchange's
    /// `timeout_ms` stays on the runtime's timer.)
    pub fn with_clock(
        global: &ShadowGlobalConfig,
        registry: &Registry,
        clock: SharedClock,
    ) -> Result<Shadow, ShadowError> {
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
            clock,
            connector: connector::Connector::new(Duration::from_millis(global.timeout_ms)),
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

    /// Mirrors to `https://{authority}` speak TLS as `tls` says (the proxy passes each
    /// https:// backend's settings when it builds its routes; a reload replaces them).
    pub fn use_tls(&self, authority: http::uri::Authority, tls: &ficus_tls::ClientTls) {
        self.shared.connector.register(authority, tls);
    }

    /// Compiles a route's shadow settings and resolves its metric handles. Call once per
    /// route and configuration (re)load, not per request.
    pub fn route(&self, spec: RouteSpec<'_>) -> Result<Arc<ShadowRoute>, ShadowError> {
        let route = Arc::new(ShadowRoute::new(
            spec,
            self.metrics.route(spec.name),
            self.shared.store.clone(),
            &self.shared.clock,
        )?);
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
        self.decide_sampled(route, method, route.sample)
    }

    /// [`Shadow::decide`] at 100 % whatever the route's `sample`: for requests the proxy wants
    /// compared every time (a step plan's pre-flight cohort).
    pub fn decide_all(&self, route: &ShadowRoute, method: &Method) -> MirrorDecision {
        self.decide_sampled(route, method, 1.0)
    }

    fn decide_sampled(&self, route: &ShadowRoute, method: &Method, sample: f64) -> MirrorDecision {
        if !is_safe(method) && !route.dual_write {
            return MirrorDecision::Skip(SkipReason::Method);
        }
        if sample < 1.0 && rand::random::<f64>() >= sample {
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
        if job.route.breaker(job.primary_side.other()).is_open() {
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
