//! The access log (`[proxy.access_log]`): one structured line per request — time, request id,
//! client, method, path, route, routing decision (percent / sticky / override / hold /
//! recent), backend, status, bytes in and out, upstream and total latency, shadow outcome —
//! as JSON lines or logfmt, to standard output or a file that is reopened on SIGHUP and
//! SIGUSR1 (what `logrotate` expects), sampled, with errors always kept and routes opting out.
//!
//! # Architecture invariant: off the hot path
//! A worker never formats, allocates a line, takes a lock or makes a syscall for the log. A
//! request that will be written keeps a few cheap clones (method, URI, request id) in a
//! [`Capture`]; when its response body ends the worker fills in an [`Entry`] and queues it on
//! a bounded channel (`try_send`: a full queue drops the entry and counts it in
//! `ficus_access_log_dropped_total`, it never waits). The writer thread (`writer`) drains the
//! queue every [`writer::DRAIN_EVERY`] without being woken, formats and writes in batches.
//! With the log off, or on a route with `access_log = false`, a request pays one branch.
//!
//! Sampling is decided when the request arrives (`sample`); with `all_errors` every request is
//! captured and the 5xx and proxy-made errors among the unsampled ones are written too —
//! decided at the response head, once the status is known.
//!
//! A mirrored request's line waits for shadow mode's comparison (so it can say `match` or
//! `mismatch`): the entry and the outcome meet in a [`ShadowJoin`], and whichever comes
//! second queues the line. Such lines come later than their neighbours, by up to the
//! mirror's `timeout_ms`.
//!
//! # Layout
//! - this file: [`AccessLog`] (settings, queue, writer thread, flush), [`Capture`],
//!   [`ShadowJoin`];
//! - `entry`: [`Entry`], [`Decision`], the JSON and logfmt lines;
//! - `state`: what the workers, the control plane and the writer share (settings, signals,
//!   counters);
//! - `writer`: the writer thread (drain, write, reopen, flush acknowledgements).

mod entry;
mod state;
mod writer;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use http::header::HeaderValue;
use prometheus::{IntCounter, Opts, Registry};

use crate::config::AccessLogSettings;

pub(crate) use self::entry::{Decision, Entry};
use self::state::{lock, Flush, Inner};

/// Entries queued at most (what 400,000 requests a second queue in [`writer::DRAIN_EVERY`]; ~300 bytes each).
const QUEUE: usize = 8 * 1024;

/// How long [`AccessLog::flush`] waits for the writer.
const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// The running access log: the queue's sending end, the writer thread, the settings.
pub(crate) struct AccessLog {
    inner: Arc<Inner>,
    tx: SyncSender<Entry>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Why the access log cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AccessLogError {
    #[error("access log {path}: {source} (check [proxy.access_log] path and the directory's permissions)")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("access log: cannot start its writer thread: {0}")]
    Thread(#[source] std::io::Error),
    #[error("access log metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

fn threshold(sample: f64) -> u64 {
    (sample.clamp(0.0, 1.0) * 4_294_967_296.0) as u64
}

impl AccessLog {
    /// Opens the target (an error names it), registers the `ficus_access_log_*` counters in
    /// `registry` and starts the writer thread.
    pub fn start(
        settings: &AccessLogSettings,
        registry: &Registry,
    ) -> Result<AccessLog, AccessLogError> {
        writer::open(settings).map_err(|source| AccessLogError::Open {
            path: match &settings.target {
                crate::config::AccessLogTarget::Stdout => "stdout".into(),
                crate::config::AccessLogTarget::File(p) => p.display().to_string(),
            },
            source,
        })?;
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::with_opts(Opts::new(name, help))?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let inner = Arc::new(Inner {
            threshold: AtomicU64::new(threshold(settings.sample)),
            all_errors: AtomicBool::new(settings.all_errors),
            settings: Mutex::new(settings.clone()),
            reopen: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            flush: Flush::default(),
            lines: counter("ficus_access_log_lines_total", "Access log lines written.")?,
            dropped: counter(
                "ficus_access_log_dropped_total",
                "Access log entries dropped because the writer's queue was full.",
            )?,
            write_errors: counter(
                "ficus_access_log_write_errors_total",
                "Failed writes to the access log (each loses the lines of one batch).",
            )?,
        });
        let (tx, rx) = sync_channel(QUEUE);
        let for_thread = inner.clone();
        let thread = std::thread::Builder::new()
            .name("ficus-access-log".into())
            .spawn(move || writer::run(for_thread, rx))
            .map_err(AccessLogError::Thread)?;
        Ok(AccessLog {
            inner,
            tx,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// New settings from a reload: sampling at once, the target and format at the next drain
    /// (the file is reopened).
    pub fn configure(&self, settings: &AccessLogSettings) {
        let mut s = lock(&self.inner.settings);
        if *s == *settings {
            return;
        }
        *s = settings.clone();
        self.inner
            .threshold
            .store(threshold(settings.sample), Ordering::Relaxed);
        self.inner
            .all_errors
            .store(settings.all_errors, Ordering::Relaxed);
        self.inner.reopen.store(true, Ordering::Release);
    }

    /// Reopen the file at the next drain (SIGHUP, SIGUSR1: after `logrotate` moved it).
    pub fn reopen(&self) {
        self.inner.reopen.store(true, Ordering::Release);
        self.wake();
    }

    fn wake(&self) {
        if let Some(t) = lock(&self.thread).as_ref() {
            t.thread().unpark();
        }
    }

    /// Waits (up to a few seconds) until everything queued before the call is written.
    /// Returns whether it was.
    pub fn flush(&self) -> bool {
        let n = {
            let mut g = lock(&self.inner.flush.asked_done);
            g.0 += 1;
            g.0
        };
        self.wake();
        let g = lock(&self.inner.flush.asked_done);
        let (g, _) = self
            .inner
            .flush
            .cv
            .wait_timeout_while(g, FLUSH_WAIT, |g| g.1 < n)
            .unwrap_or_else(|p| p.into_inner());
        g.1 >= n
    }

    /// Writes what is queued and stops the writer thread.
    pub fn close(&self) {
        self.inner.stop.store(true, Ordering::Release);
        let t = lock(&self.thread).take();
        if let Some(t) = t {
            t.thread().unpark();
            let _ = t.join();
        }
    }

    /// What a request arriving now keeps for its line; `None` when it will not be written
    /// (not sampled, and errors are not kept).
    #[inline]
    pub fn begin(self: &Arc<Self>, start: CaptureStart) -> Option<Capture> {
        let threshold = self.inner.threshold.load(Ordering::Relaxed);
        let sampled =
            threshold > u64::from(u32::MAX) || u64::from(rand::random::<u32>()) < threshold;
        if !sampled && !self.inner.all_errors.load(Ordering::Relaxed) {
            return None;
        }
        Some(Capture {
            log: self.clone(),
            sampled,
            start,
            upstream: None,
            shadow: None,
        })
    }

    /// Queues a finished entry (never waits: a full queue drops it, counted).
    pub fn push(&self, e: Entry) {
        match self.tx.try_send(e) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.inner.dropped.inc(),
        }
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.close();
    }
}

/// The request's facts known when it arrives.
pub(crate) struct CaptureStart {
    pub time: time::OffsetDateTime,
    pub request_id: HeaderValue,
    pub client: IpAddr,
    pub method: http::Method,
    pub uri: http::Uri,
    pub version: http::Version,
    pub route: Option<Arc<str>>,
    pub decision: Option<Decision>,
}

/// What a request that may be written keeps until its response head.
pub(crate) struct Capture {
    log: Arc<AccessLog>,
    sampled: bool,
    pub start: CaptureStart,
    /// Time from sending upstream to the response head.
    pub upstream: Option<Duration>,
    /// A mirrored request: where its entry meets shadow mode's outcome.
    shadow: Option<EntryHalf>,
}

impl Capture {
    /// The request is mirrored: its line waits for the comparison. Returns the half shadow
    /// mode reports to.
    pub fn mirrored(&mut self) -> OutcomeHalf {
        let join = Arc::new(ShadowJoin {
            log: self.log.clone(),
            state: Mutex::new(JoinState::Waiting),
        });
        self.shadow = Some(EntryHalf(Some(join.clone())));
        OutcomeHalf(Some(join))
    }

    /// At the response head: whether the line is written (sampled, or an error kept by
    /// `all_errors`) and, if so, the entry without its end-of-body fields and where it goes.
    pub fn finish(
        self,
        backend: Option<ficus_core::Side>,
        status: u16,
        error: Option<&'static str>,
    ) -> Option<Pending> {
        let keep = self.sampled
            || (self.log.inner.all_errors.load(Ordering::Relaxed)
                && (status >= 500 || error.is_some()));
        if !keep {
            return None;
        }
        let s = self.start;
        Some(Pending {
            entry: Entry {
                time: s.time,
                request_id: s.request_id,
                client: s.client,
                method: s.method,
                uri: s.uri,
                version: s.version,
                route: s.route,
                decision: s.decision,
                backend,
                status,
                error,
                bytes_in: 0,
                bytes_out: 0,
                upstream: self.upstream,
                total: Duration::ZERO,
                shadow: None,
                complete: false,
            },
            to: match self.shadow {
                Some(half) => Destination::Join(half),
                None => Destination::Log(self.log),
            },
        })
    }
}

/// An entry waiting for its response body to end.
pub(crate) struct Pending {
    pub entry: Entry,
    to: Destination,
}

enum Destination {
    Log(Arc<AccessLog>),
    Join(EntryHalf),
}

impl Pending {
    /// The body ended (or the client left): the line goes to the queue, or waits for the
    /// comparison.
    pub fn done(self) {
        match self.to {
            Destination::Log(log) => log.push(self.entry),
            Destination::Join(half) => half.give(self.entry),
        }
    }
}

/// Where a mirrored request's entry and shadow mode's outcome meet (see the module doc).
pub(crate) struct ShadowJoin {
    log: Arc<AccessLog>,
    state: Mutex<JoinState>,
}

enum JoinState {
    Waiting,
    Entry(Box<Entry>),
    Outcome(&'static str),
    Done,
}

/// The entry's side of a [`ShadowJoin`]; dropped without an entry (the line is not written),
/// the outcome is not waited for.
pub(crate) struct EntryHalf(Option<Arc<ShadowJoin>>);

/// Shadow mode's side of a [`ShadowJoin`]; dropped without an outcome (the exchange was not
/// mirrored after all: client gone, body incomplete), the line says `incomplete`.
pub(crate) struct OutcomeHalf(Option<Arc<ShadowJoin>>);

impl EntryHalf {
    fn give(mut self, mut e: Entry) {
        let Some(j) = self.0.take() else { return };
        let mut st = lock(&j.state);
        match std::mem::replace(&mut *st, JoinState::Done) {
            JoinState::Outcome(o) => {
                e.shadow = Some(o);
                drop(st);
                j.log.push(e);
            }
            JoinState::Waiting => *st = JoinState::Entry(Box::new(e)),
            JoinState::Entry(_) | JoinState::Done => {}
        }
    }
}

impl Drop for EntryHalf {
    fn drop(&mut self) {
        if let Some(j) = self.0.take() {
            *lock(&j.state) = JoinState::Done;
        }
    }
}

impl OutcomeHalf {
    /// Shadow mode's outcome (`match`, `mismatch`, …).
    pub fn outcome(mut self, o: &'static str) {
        if let Some(j) = self.0.take() {
            j.outcome(o);
        }
    }
}

impl ShadowJoin {
    fn outcome(&self, o: &'static str) {
        let mut st = lock(&self.state);
        match std::mem::replace(&mut *st, JoinState::Done) {
            JoinState::Entry(mut e) => {
                e.shadow = Some(o);
                drop(st);
                self.log.push(*e);
            }
            JoinState::Waiting => *st = JoinState::Outcome(o),
            JoinState::Outcome(_) | JoinState::Done => {}
        }
    }
}

impl Drop for OutcomeHalf {
    fn drop(&mut self) {
        if let Some(j) = self.0.take() {
            j.outcome("incomplete");
        }
    }
}
