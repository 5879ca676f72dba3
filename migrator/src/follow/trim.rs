//! Trimming the change log, off the follower's path: a thread of its own, with its own
//! connection, deletes applied changes below the latest committed position in small write
//! transactions. Its busy timeout is short and a busy database just means "later" — so the
//! legacy app's writers, which hold the same write lock many times a second, neither wait
//! long for the trimmer nor slow the follower (measured: trimming inline, behind the app's
//! writers at ~1,500 writes/s, stalled rounds for seconds).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::capture::{self, CaptureError, ChangeLog};

/// How long one trim statement waits for the write lock before giving up until later.
const TRIM_BUSY: Duration = Duration::from_millis(50);
/// Pause between trims.
const EVERY: Duration = Duration::from_millis(200);

/// The trimming thread's handle.
pub(super) struct Trimmer {
    target: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    path: std::path::PathBuf,
    batch: usize,
}

impl Trimmer {
    /// Starts the thread on `path`.
    pub fn start(path: &Path, batch: usize) -> Result<Trimmer, CaptureError> {
        let conn = capture::open_rw(path)?;
        conn.busy_timeout(TRIM_BUSY)
            .map_err(CaptureError::sqlite(path, "set busy timeout"))?;
        let target = Arc::new(AtomicI64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, s) = (target.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("ficus-follow-trim".into())
            .spawn(move || {
                let mut done = 0i64;
                while !s.load(Ordering::Relaxed) {
                    let want = t.load(Ordering::Acquire);
                    if want > done {
                        match ChangeLog::trim(&conn, want, batch) {
                            Ok(_) => done = want,
                            // Busy (the app is writing) or anything else: try again later.
                            Err(e) => tracing::debug!(error = %e, "follow: trim deferred"),
                        }
                    }
                    std::thread::sleep(EVERY);
                }
            })
            .map_err(|e| CaptureError::Sqlite {
                path: path.to_path_buf(),
                what: format!("start the trimming thread: {e}"),
                source: rusqlite::Error::InvalidQuery,
            })?;
        Ok(Trimmer {
            target,
            stop,
            thread: Some(thread),
            path: path.to_path_buf(),
            batch,
        })
    }

    /// Everything below `position` may go.
    pub fn advance(&self, position: i64) {
        self.target.fetch_max(position, Ordering::AcqRel);
    }

    /// Stops the thread, then trims what is left with the normal busy timeout (blocking).
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let want = self.target.load(Ordering::Acquire);
        if want > 0 {
            if let Ok(conn) = capture::open_rw(&self.path) {
                if let Err(e) = ChangeLog::trim(&conn, want, self.batch) {
                    tracing::warn!(error = %e, "follow: cannot trim the change log now; the next follower will");
                }
            }
        }
    }
}

impl Drop for Trimmer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
