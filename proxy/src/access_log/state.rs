//! What the workers, the control plane and the writer thread share: the settings, the sampling
//! threshold, the reopen / stop / flush signals and the counters.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use prometheus::IntCounter;

use crate::config::{AccessLogFormat, AccessLogSettings};

/// What the workers, the control plane and the writer thread share.
pub(crate) struct Inner {
    pub settings: Mutex<AccessLogSettings>,
    /// `sample × 2³²`: a request is sampled when a random `u32` is below it (≥ 2³²: always).
    pub threshold: AtomicU64,
    pub all_errors: AtomicBool,
    /// The line format, read by whoever formats (0: JSON, 1: logfmt).
    pub format: AtomicU8,
    /// Ask the writer to reopen the file (with the current settings).
    pub reopen: AtomicBool,
    pub stop: AtomicBool,
    pub flush: Flush,
    pub lines: IntCounter,
    pub dropped: IntCounter,
    pub write_errors: IntCounter,
}

impl Inner {
    pub fn settings(&self) -> AccessLogSettings {
        lock(&self.settings).clone()
    }

    pub fn format(&self) -> AccessLogFormat {
        match self.format.load(Ordering::Relaxed) {
            1 => AccessLogFormat::Logfmt,
            _ => AccessLogFormat::Json,
        }
    }

    pub fn set_format(&self, f: AccessLogFormat) {
        let v = match f {
            AccessLogFormat::Json => 0,
            AccessLogFormat::Logfmt => 1,
        };
        self.format.store(v, Ordering::Relaxed);
    }
}

/// Formatted lines on their way to the writer.
pub(crate) struct Batch {
    pub bytes: Vec<u8>,
    pub lines: u64,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Flush requests and the writer's acknowledgements (request numbers).
#[derive(Default)]
pub(crate) struct Flush {
    pub asked_done: Mutex<(u64, u64)>,
    pub cv: Condvar,
}

impl Flush {
    /// The latest request number; what the writer drains next answers it.
    pub fn wanted(&self) -> u64 {
        lock(&self.asked_done).0
    }

    pub fn done(&self, n: u64) {
        let mut g = lock(&self.asked_done);
        if n > g.1 {
            g.1 = n;
            self.cv.notify_all();
        }
    }
}
