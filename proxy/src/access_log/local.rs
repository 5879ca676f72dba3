//! A worker's side of the access log ([`LocalLog`]): it formats its requests' lines into a
//! buffer of its own and hands the buffer to the writer thread when it holds
//! [`BATCH_BYTES`], or when the worker's tick comes ([`LocalLog::tick`], every
//! [`super::writer::DRAIN_EVERY`]). No lock, no syscall, no cross-thread wake-up per request: one
//! `try_send` per batch of about a hundred lines.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use time::OffsetDateTime;

use super::entry::{Entry, Lines};
use super::log::AccessLog;
use super::state::Batch;
use ficus_core::SharedClock;

/// Bytes a worker formats before it hands them to the writer.
pub(crate) const BATCH_BYTES: usize = 32 * 1024;

/// A worker's buffer of formatted lines for one running [`AccessLog`].
pub(crate) struct LocalLog {
    log: Arc<AccessLog>,
    clock: SharedClock,
    buf: RefCell<Vec<u8>>,
    lines: Cell<u64>,
    format: RefCell<Lines>,
    /// Both clocks read together (at the last tick): an arrival instant becomes UTC from it.
    anchor: Cell<(Instant, OffsetDateTime)>,
}

impl LocalLog {
    pub fn new(log: Arc<AccessLog>, clock: SharedClock) -> Rc<LocalLog> {
        let anchor = (clock.now(), clock.utc());
        Rc::new(LocalLog {
            log,
            clock,
            buf: RefCell::new(Vec::with_capacity(BATCH_BYTES + 1024)),
            lines: Cell::new(0),
            format: RefCell::new(Lines::default()),
            anchor: Cell::new(anchor),
        })
    }

    /// The access log this buffer feeds.
    pub fn log(&self) -> &Arc<AccessLog> {
        &self.log
    }

    /// UTC of an instant on the proxy's clock.
    fn utc(&self, at: Instant) -> OffsetDateTime {
        let (now, utc) = self.anchor.get();
        match at.checked_duration_since(now) {
            Some(after) => utc + after,
            None => utc - now.saturating_duration_since(at),
        }
    }

    /// Formats a finished entry into the buffer (sent on once it is full).
    pub fn push(&self, e: Entry) {
        let time = self.utc(e.at);
        let full = {
            let mut buf = self.buf.borrow_mut();
            self.format
                .borrow_mut()
                .write(&e, time, self.log.inner.format(), &mut buf);
            buf.len() >= BATCH_BYTES
        };
        self.lines.set(self.lines.get() + 1);
        if full {
            self.send();
        }
    }

    /// The worker's tick: what is buffered goes to the writer; the clocks are read again.
    pub fn tick(&self) {
        self.anchor.set((self.clock.now(), self.clock.utc()));
        self.send();
    }

    fn send(&self) {
        let lines = self.lines.replace(0);
        if lines == 0 {
            return;
        }
        let bytes = std::mem::replace(
            &mut *self.buf.borrow_mut(),
            Vec::with_capacity(BATCH_BYTES + 1024),
        );
        self.log.send(Batch { bytes, lines });
    }
}

impl Drop for LocalLog {
    fn drop(&mut self) {
        self.send();
    }
}
