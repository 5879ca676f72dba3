//! [`AccessLog`]: the running access log — its settings, the batches' queue, the writer
//! thread, flush and close — and sampling.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ficus_core::SharedClock;
use prometheus::{IntCounter, Opts, Registry};

use super::entry::{Entry, Lines};
use super::state::{lock, Batch, Flush, Inner};
use super::writer::{self, DRAIN_EVERY};
use crate::config::AccessLogSettings;

/// Batches queued at most (of up to 32 KiB each: 8 MiB of lines).
const QUEUE: usize = 256;

/// How long [`AccessLog::flush`] waits for the writer.
const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// The running access log: the queue's sending end, the writer thread, the settings.
pub(crate) struct AccessLog {
    pub(super) inner: Arc<Inner>,
    tx: SyncSender<Batch>,
    thread: Mutex<Option<JoinHandle<()>>>,
    clock: SharedClock,
    /// Formats the lines finished off a worker (a mirrored request's, on shadow mode's thread).
    lines: Mutex<Lines>,
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
        clock: SharedClock,
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
            format: AtomicU8::new(0),
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
        inner.set_format(settings.format);
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
            clock,
            lines: Mutex::new(Lines::default()),
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
        self.inner.set_format(settings.format);
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

    /// Waits (up to a few seconds) until every line finished before the call is written: the
    /// workers' ticks hand over what they buffered (two [`DRAIN_EVERY`]s), then the writer
    /// writes what it was sent. Returns whether it did.
    pub fn flush(&self) -> bool {
        std::thread::sleep(DRAIN_EVERY * 3);
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

    /// Whether a request arriving now is sampled, and whether it is captured at all (sampled,
    /// or kept in case it turns out an error).
    #[inline]
    pub(super) fn sample(&self) -> (bool, bool) {
        let threshold = self.inner.threshold.load(Ordering::Relaxed);
        let sampled =
            threshold > u64::from(u32::MAX) || u64::from(rand::random::<u32>()) < threshold;
        (
            sampled,
            sampled || self.inner.all_errors.load(Ordering::Relaxed),
        )
    }

    /// Queues a batch of lines (never waits: a full queue drops it, its lines counted).
    pub(super) fn send(&self, b: Batch) {
        if let Err(TrySendError::Full(b) | TrySendError::Disconnected(b)) = self.tx.try_send(b) {
            self.inner.dropped.inc_by(b.lines);
        }
    }

    /// Formats and queues one entry finished off a worker (a mirrored request's line, once
    /// its comparison is in).
    pub fn push(&self, e: Entry) {
        let time = {
            let (now, utc) = (self.clock.now(), self.clock.utc());
            utc - now.saturating_duration_since(e.at)
        };
        let mut bytes = Vec::with_capacity(512);
        lock(&self.lines).write(&e, time, self.inner.format(), &mut bytes);
        self.send(Batch { bytes, lines: 1 });
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.close();
    }
}
