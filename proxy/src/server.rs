//! Starting and stopping a proxy: listeners, worker threads, the admin thread, graceful
//! shutdown.
//!
//! `workers` threads each run a current-thread tokio runtime with its own listener on the same
//! address (`SO_REUSEPORT`: the kernel spreads connections), its own upstream pools and its own
//! cached routing table — thread per core, nothing shared-mutable per request. One more thread
//! runs the admin API, the reload watcher, the guards' verdicts and the state follower
//! (`admin_thread`), so SQLite writes and metric encoding never stall the data plane. Shutdown
//! stops accepting, lets every connection finish its in-flight request (bounded by
//! `shutdown_grace_ms`), then ends the threads.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::{Rc, Weak};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ficus_core::{SharedClock, SystemClock};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch, Notify};

use crate::config::{percent_to_bp, Config, ConfigError};
use crate::conn::{ConnCtl, Protocols};
use crate::control::{
    Control, GuardRollback, HoldStatus, ReloadReport, RolloutChange, RouteStatus,
};
use crate::error::ProxyError;
use crate::forward::Worker;
use crate::shared::Shared;
use ficus_state::AuditEntry;

/// Entry point: `Proxy::start(config, path)` (or [`Proxy::start_with_clock`]).
pub struct Proxy;

/// A running proxy. Dropping it starts a shutdown without waiting; call
/// [`ProxyHandle::shutdown`] to wait for in-flight requests to drain.
pub struct ProxyHandle {
    listen: SocketAddr,
    admin: SocketAddr,
    workers: usize,
    control: Arc<Control>,
    stop: watch::Sender<bool>,
    done: Vec<oneshot::Receiver<()>>,
}

impl Proxy {
    /// Validates `config`, opens the state store, binds the listeners (port 0 picks a free
    /// port: read it back with [`ProxyHandle::listen_addr`]) and starts the threads.
    /// `config_path` enables reload on SIGHUP and (with `watch_config`) on file change.
    pub fn start(config: Config, config_path: Option<PathBuf>) -> Result<ProxyHandle, ProxyError> {
        Proxy::start_with_clock(config, config_path, SystemClock::shared())
    }

    /// [`Proxy::start`] with the time read from `clock` instead of the system's: the rollback
    /// guards' windows, the requests' durations, the dual-write stamps, shadow mode's circuit
    /// breakers, the write holds' deadlines and the read-your-writes windows. Tests pass a [`ficus_core::ManualClock`] and advance it rather than
    /// sleep. (Timeouts — of backends, of mirror exchanges, of turns — stay on the runtime's
    /// timer.)
    pub fn start_with_clock(
        config: Config,
        config_path: Option<PathBuf>,
        clock: SharedClock,
    ) -> Result<ProxyHandle, ProxyError> {
        config.validate()?;
        for w in config.backends.warnings() {
            tracing::warn!("{w}");
        }
        let workers = config.effective_workers().max(1);
        let listen = config.proxy.listen;
        let admin_listen = config.proxy.admin_listen;
        let grace = config.proxy.shutdown_grace;
        let header_timeout = config.proxy.header_read_timeout;
        let max_connections = config.proxy.max_connections;
        let watch_config = config.proxy.watch_config;
        let control = Arc::new(Control::new(config, config_path, clock)?);

        let listeners = bind_reuseport(listen, workers)?;
        let listen = listeners
            .first()
            .and_then(|l| l.local_addr().ok())
            .unwrap_or(listen);
        let admin_listener =
            std::net::TcpListener::bind(admin_listen).map_err(|source| ProxyError::Bind {
                addr: admin_listen,
                source,
            })?;
        let admin = admin_listener.local_addr().unwrap_or(admin_listen);
        admin_listener
            .set_nonblocking(true)
            .map_err(|source| ProxyError::Bind {
                addr: admin_listen,
                source,
            })?;

        let (stop, stop_rx) = watch::channel(false);
        let mut done = Vec::with_capacity(workers + 1);
        for (i, l) in listeners.into_iter().enumerate() {
            let rt = runtime()?;
            let (tx, rx) = oneshot::channel();
            done.push(rx);
            let shared = control.shared.clone();
            let stop_rx = stop_rx.clone();
            let tls = control.certs.data.as_ref().map(|s| s.acceptor.clone());
            std::thread::Builder::new()
                .name(format!("ficus-worker-{i}"))
                .spawn(move || {
                    let local = tokio::task::LocalSet::new();
                    let limits = Limits {
                        grace,
                        header_timeout,
                        max_connections,
                    };
                    local.block_on(&rt, worker_loop(l, shared, stop_rx, limits, tls));
                    drop(local);
                    let _ = tx.send(());
                })
                .map_err(|source| ProxyError::Start {
                    what: "worker thread",
                    source,
                })?;
        }
        let (tx, rx) = oneshot::channel();
        done.push(rx);
        crate::admin_thread::spawn(control.clone(), admin_listener, stop_rx, watch_config, tx)?;
        tracing::info!(%listen, %admin, workers, "ficus proxy listening");
        Ok(ProxyHandle {
            listen,
            admin,
            workers,
            control,
            stop,
            done,
        })
    }
}

impl ProxyHandle {
    /// The bound data-plane address.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// The bound admin address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The configuration in force.
    pub fn config(&self) -> Config {
        self.control.config()
    }

    /// Every route with its percentage in force and where it comes from.
    pub fn routes(&self) -> Result<Vec<RouteStatus>, ProxyError> {
        self.control.routes()
    }

    /// Sets a route's rollout (share to new, 0–100 in 0.01 steps); persisted and audited.
    pub fn set_rollout(
        &self,
        route: &str,
        percent: f64,
        actor: &str,
    ) -> Result<RolloutChange, ProxyError> {
        let bp = percent_to_bp(percent)
            .map_err(|m| ProxyError::Config(ConfigError::in_code("percent", m)))?;
        self.control.set_rollout(route, bp, actor)
    }

    /// Drops a route's run-time value; the configuration's percentage applies again.
    pub fn reset_rollout(&self, route: &str, actor: &str) -> Result<RolloutChange, ProxyError> {
        self.control.reset_rollout(route, actor)
    }

    /// Sets the named routes (all when empty) to 0 % at once.
    pub fn rollback(
        &self,
        routes: &[String],
        actor: &str,
    ) -> Result<Vec<RolloutChange>, ProxyError> {
        self.control.rollback(routes, actor)
    }

    /// Re-reads the configuration file now (`Ok(None)`: unchanged or no file).
    pub fn reload(&self) -> Result<Option<ReloadReport>, ProxyError> {
        self.control.reload_from_file()
    }

    /// Applies a configuration given in code.
    pub fn apply_config(&self, config: Config) -> Result<ReloadReport, ProxyError> {
        config.validate()?;
        let r = self.control.reload(config, None);
        self.control.shared.metrics.reloaded(r.is_ok());
        r
    }

    /// Newest audit rows first.
    pub fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, ProxyError> {
        self.control.audit(limit)
    }

    /// Judges every guarded route's window now, as the admin thread does once a second, and
    /// rolls back those that broke a threshold (persisted, audited as actor `guard`, counted).
    /// Returns the routes rolled back by this call.
    pub fn check_guards(&self) -> Vec<GuardRollback> {
        self.control.judge_guards()
    }

    /// Judges every running step plan now, as the admin thread does once a second, and takes
    /// the steps their evidence allows (persisted with the evidence, audited as actor `plan`).
    /// Returns what this call did.
    pub fn check_plans(&self) -> Vec<crate::PlanEvent> {
        crate::planner::judge(&self.control)
    }

    /// A route's step plan: its stored state, the running phase's evidence so far.
    pub fn plan_status(&self, route: &str) -> Result<crate::PlanStatus, ProxyError> {
        crate::planner::status(&self.control, route)
    }

    /// Starts, pauses, resumes or aborts a route's step plan on behalf of `actor`, as
    /// `POST /admin/routes/{name}/plan/{start|pause|resume|abort}` does: persisted and audited
    /// (`plan-start`, ...) before it takes effect.
    pub fn plan(
        &self,
        route: &str,
        command: crate::PlanCommand,
        actor: &str,
    ) -> Result<crate::PlanStatus, ProxyError> {
        crate::planner::command(&self.control, route, command, actor)
    }

    /// Holds `route`'s writes for at most `max_ms` (1..=60000) on behalf of `actor`, as
    /// `POST /admin/routes/{name}/hold` does: writes (not GET/HEAD/OPTIONS) wait before their
    /// routing decision until [`ProxyHandle::release`] or the deadline; audited `hold`.
    pub fn hold(&self, route: &str, max_ms: u64, actor: &str) -> Result<HoldStatus, ProxyError> {
        self.control.hold(route, max_ms, actor)
    }

    /// Releases `route`'s hold: the waiting writes go where the route sends them now; audited
    /// `release`.
    pub fn release(&self, route: &str, actor: &str) -> Result<HoldStatus, ProxyError> {
        self.control.release(route, actor)
    }

    /// Judges every hold on the proxy's clock now, as the admin thread does at each deadline:
    /// a hold past its deadline ends and is audited `hold-expired`. Returns the routes whose
    /// hold expired (and was recorded) by this call.
    pub fn check_holds(&self) -> Vec<String> {
        self.control.judge_holds().0
    }

    /// Points the admin page's mismatch list at a shadow mismatch store; `None` goes back to
    /// the store of the running shadow mode (`[shadow] store`), if any. The page reads it
    /// (newest first) when an operator with the admin token opens it.
    pub fn set_shadow_store(&self, path: Option<PathBuf>) {
        self.control.set_shadow_store(path);
    }

    /// The proxy's metrics registry (other components may register their collectors in it).
    pub fn registry(&self) -> &prometheus::Registry {
        self.control.shared.metrics.registry()
    }

    /// The Prometheus text exposition, as served on `/metrics`.
    pub fn metrics_text(&self) -> String {
        self.control.shared.metrics.encode()
    }

    /// Waits until every request mirrored so far has been compared, its mismatches are in
    /// the shadow store and its dual-write row is committed (tests, demos).
    pub async fn flush_shadow(&self) {
        let h = self.control.sidecar_handles();
        if let Some(s) = h.shadow {
            s.flush().await;
        }
        if let Some(log) = h.dual_log {
            let _ = tokio::task::spawn_blocking(move || {
                log.flush_blocking(std::time::Duration::from_secs(10))
            })
            .await;
        }
    }

    /// Stops accepting, waits for in-flight requests (up to `shutdown_grace_ms`), then lets
    /// shadow mode finish its jobs in hand, commits the shadow store and dual-write log, and
    /// writes the access log's last lines.
    pub async fn shutdown(mut self) {
        self.begin_shutdown();
        for d in std::mem::take(&mut self.done) {
            let _ = d.await;
        }
        crate::sidecars::shutdown(self.control.sidecar_handles()).await;
    }

    /// Waits until every access-log entry queued so far is written (it is within a few tens
    /// of milliseconds anyway; a mirrored request's line waits for its comparison — call
    /// [`ProxyHandle::flush_shadow`] first for those). `false` when there is no access log or
    /// its writer did not answer within seconds.
    pub async fn flush_access_log(&self) -> bool {
        let Some(log) = self.control.access_log() else {
            return false;
        };
        tokio::task::spawn_blocking(move || log.flush())
            .await
            .unwrap_or(false)
    }

    /// Asks the access log to reopen its file (what SIGHUP and SIGUSR1 do).
    pub fn reopen_access_log(&self) {
        if let Some(log) = self.control.access_log() {
            log.reopen();
        }
    }

    fn begin_shutdown(&self) {
        self.control.shared.draining.store(true, Ordering::SeqCst);
        let _ = self.stop.send(true);
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}

/// Resolves when the process receives SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut i), Ok(mut t)) => {
            tokio::select! {
                _ = i.recv() => {}
                _ = t.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, ProxyError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| ProxyError::Start {
            what: "tokio runtime",
            source,
        })
}

/// `n` listeners on one address with `SO_REUSEPORT`; with port 0 the first picks the port and
/// the others join it.
fn bind_reuseport(addr: SocketAddr, n: usize) -> Result<Vec<std::net::TcpListener>, ProxyError> {
    use socket2::{Domain, Protocol, Socket, Type};
    // SO_REUSEPORT would let us join a port another process (same user) already serves and
    // silently split its traffic; a plain bind first turns that into "address in use".
    if addr.port() != 0 {
        drop(
            std::net::TcpListener::bind(addr)
                .map_err(|source| ProxyError::Bind { addr, source })?,
        );
    }
    let mut out: Vec<std::net::TcpListener> = Vec::with_capacity(n);
    let mut at = addr;
    for _ in 0..n {
        let err = |source| ProxyError::Bind { addr, source };
        let s =
            Socket::new(Domain::for_address(at), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
        s.set_reuse_address(true).map_err(err)?;
        s.set_reuse_port(true).map_err(err)?;
        s.bind(&at.into()).map_err(err)?;
        s.listen(4096).map_err(err)?;
        s.set_nonblocking(true).map_err(err)?;
        let l: std::net::TcpListener = s.into();
        if at.port() == 0 {
            at = l.local_addr().map_err(err)?;
        }
        out.push(l);
    }
    Ok(out)
}

/// Connections open on one worker: counted, to wait for them at shutdown, and reachable, to ask
/// each to finish its request in flight and close. (A flag checked on each poll plus a waker
/// kept per connection: cheaper than a select on a channel at every wake-up.)
#[derive(Default)]
struct Tracker {
    active: Cell<usize>,
    idle: Notify,
    conns: RefCell<Vec<Weak<ConnCtl>>>,
}

impl Tracker {
    fn register(&self) -> Rc<ConnCtl> {
        let ctl = Rc::new(ConnCtl::default());
        let mut conns = self.conns.borrow_mut();
        if conns.len() > 2 * self.active.get() + 64 {
            conns.retain(|w| w.strong_count() > 0);
        }
        conns.push(Rc::downgrade(&ctl));
        ctl
    }

    fn stop_all(&self) {
        for w in self.conns.borrow_mut().drain(..) {
            if let Some(c) = w.upgrade() {
                c.stop.set(true);
                if let Some(w) = c.waker.borrow_mut().take() {
                    w.wake();
                }
            }
        }
    }
}

/// One open client connection: counted on its worker and in the proxy's total.
struct TrackGuard(Rc<Tracker>, Arc<Shared>);

impl Drop for TrackGuard {
    fn drop(&mut self) {
        let n = self.0.active.get() - 1;
        self.0.active.set(n);
        if n == 0 {
            self.0.idle.notify_one();
        }
        self.1.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A worker's settings bound at start.
#[derive(Clone, Copy)]
struct Limits {
    grace: Duration,
    header_timeout: Duration,
    /// Client connections open at once, all workers together (0 = no limit).
    max_connections: usize,
}

/// Accept errors back off from 5 ms, doubling up to 1 s while they last (EMFILE/ENFILE: the
/// process is out of file descriptors; accepting again at once would spin). The connections
/// already accepted go on being served meanwhile: they run on the same thread.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The answer to a connection past `max_connections`.
const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 81\r\nConnection: close\r\nRetry-After: 1\r\n\r\n{\"error\":\"too_many_connections\",\"status\":503,\"message\":\"max_connections reached\"}";

/// Answers a connection past `max_connections`: 503 with `Connection: close`, after reading
/// what the client sent first (at most 4 KiB, at most 1 s), so the answer is not lost to a
/// reset from closing with unread data.
async fn refuse(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await;
    let _ = stream.write_all(OVER_CAPACITY).await;
    let _ = stream.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await;
}

async fn worker_loop(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    limits: Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let Limits {
        grace,
        header_timeout,
        max_connections,
    } = limits;
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot register listener");
            return;
        }
    };
    let worker = Rc::new(Worker::new(shared.clone()));
    let protocols = Rc::new(Protocols::new(header_timeout, tls));
    let tracker = Rc::new(Tracker::default());
    let mut backoff = ACCEPT_BACKOFF_MIN;
    // The access log's lines buffered on this worker go to its writer at least this often.
    let ticker = {
        let worker = worker.clone();
        let mut stop = stop.clone();
        tokio::task::spawn_local(async move {
            let mut every = tokio::time::interval(crate::access_log::DRAIN_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    _ = stop.changed() => return,
                    _ = every.tick() => worker.tick_access_log(),
                }
            }
        })
    };
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    backoff = ACCEPT_BACKOFF_MIN;
                    let open = shared.connections.fetch_add(1, Ordering::Relaxed);
                    if max_connections > 0 && open >= max_connections {
                        shared.connections.fetch_sub(1, Ordering::Relaxed);
                        shared.metrics.connections_refused.inc();
                        tokio::task::spawn_local(refuse(stream));
                        continue;
                    }
                    tracker.active.set(tracker.active.get() + 1);
                    let guard = TrackGuard(tracker.clone(), shared.clone());
                    let ctl = tracker.register();
                    let worker = worker.clone();
                    let protocols = protocols.clone();
                    tokio::task::spawn_local(async move {
                        crate::conn::serve(stream, peer, worker, &protocols, ctl).await;
                        drop(guard);
                    });
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning (warned once a streak).
                    if backoff == ACCEPT_BACKOFF_MIN {
                        tracing::warn!(error = %e, open = shared.connections.load(Ordering::Relaxed),
                            "accept failed; backing off (raise the fd limit or lower max_connections)");
                    }
                    shared.metrics.accept_errors.inc();
                    tokio::select! {
                        biased;
                        _ = stop.changed() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                }
            }
        }
    }
    drop(listener);
    tracker.stop_all();
    let drained = tokio::time::timeout(grace, async {
        loop {
            let n = tracker.idle.notified();
            if tracker.active.get() == 0 {
                break;
            }
            n.await;
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = tracker.active.get(),
            "shutdown grace period over; closing remaining connections"
        );
    }
    ticker.abort();
    // The last access-log lines of this worker's requests.
    worker.tick_access_log();
}
