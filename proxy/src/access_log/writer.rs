//! The access log's writer thread: every [`DRAIN_EVERY`] it takes the batches of lines the
//! workers formatted and writes them (64 KiB at a time); it reopens the file
//! when asked (SIGHUP, SIGUSR1, a reload that changed the settings) and answers `flush`
//! requests. Write errors are counted and logged once per failing streak; the proxy goes on.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

use super::state::{Batch, Inner};
use crate::config::{AccessLogSettings, AccessLogTarget};

/// How often queued entries are written. Workers never wake the writer (a wake-up is a
/// syscall on their path); they only queue.
pub(crate) const DRAIN_EVERY: Duration = Duration::from_millis(20);

/// Where lines go now.
enum Out {
    Stdout(io::Stdout),
    File(File),
}

impl Out {
    fn open(target: &AccessLogTarget) -> io::Result<Out> {
        match target {
            AccessLogTarget::Stdout => Ok(Out::Stdout(io::stdout())),
            AccessLogTarget::File(p) => OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map(Out::File),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Out::Stdout(s) => {
                let mut l = s.lock();
                l.write_all(buf)?;
                l.flush()
            }
            // O_APPEND: each write lands at the end, whoever else appends.
            Out::File(f) => f.write_all(buf),
        }
    }
}

/// Opens the target for the first time (the proxy refuses to start when this fails).
pub(super) fn open(settings: &AccessLogSettings) -> io::Result<()> {
    Out::open(&settings.target).map(drop)
}

/// The thread's body: runs until `inner.stop` and the queue is empty, or every sender is gone.
pub(super) fn run(inner: Arc<Inner>, rx: Receiver<Batch>) {
    let mut settings = inner.settings();
    let mut out = match Out::open(&settings.target) {
        Ok(o) => Some(o),
        Err(e) => {
            tracing::error!(target = ?settings.target, error = %e, "access log: cannot open; lines are dropped until a reopen succeeds");
            None
        }
    };
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut failing = false;
    loop {
        let stopping = inner.stop.load(Ordering::Acquire);
        let flush_wanted = inner.flush.wanted();
        let mut gone = false;
        let mut lines = 0u64;
        loop {
            match rx.try_recv() {
                Ok(b) => {
                    if buf.is_empty() {
                        buf = b.bytes;
                    } else {
                        buf.extend_from_slice(&b.bytes);
                    }
                    lines += b.lines;
                    if buf.len() >= 60 * 1024 {
                        write(&inner, &mut out, &mut buf, &mut failing);
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    gone = true;
                    break;
                }
            }
        }
        write(&inner, &mut out, &mut buf, &mut failing);
        inner.lines.inc_by(lines);
        if inner.reopen.swap(false, Ordering::AcqRel) {
            settings = inner.settings();
            match Out::open(&settings.target) {
                Ok(o) => {
                    out = Some(o);
                    failing = false;
                }
                Err(e) => {
                    tracing::error!(target = ?settings.target, error = %e, "access log: cannot reopen; writing on to the file open before")
                }
            }
        }
        inner.flush.done(flush_wanted);
        if stopping || gone {
            return;
        }
        std::thread::park_timeout(DRAIN_EVERY);
    }
}

fn write(inner: &Inner, out: &mut Option<Out>, buf: &mut Vec<u8>, failing: &mut bool) {
    if buf.is_empty() {
        return;
    }
    let r = match out {
        Some(o) => o.write_all(buf),
        None => Err(io::Error::other("not open")),
    };
    match r {
        Ok(()) => *failing = false,
        Err(e) => {
            inner.write_errors.inc();
            if !*failing {
                tracing::error!(error = %e, "access log: write failed; lines are lost until it works again");
            }
            *failing = true;
        }
    }
    buf.clear();
}
