//! How `migrate watch` runs: [`WatchOptions`], the clock included.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ficus_core::{SharedClock, SystemClock};

/// How `migrate watch` runs.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// The legacy SQLite file.
    pub source: PathBuf,
    /// The target PostgreSQL URL.
    pub target: String,
    /// The target schema of the migration.
    pub schema: String,
    /// The proxy's state store (written keys); without it only sweeps run.
    pub proxy_state: Option<PathBuf>,
    /// How long after a write its key is re-verified (and between a difference and its
    /// re-check).
    pub settle: Duration,
    /// Time between sweeps.
    pub sweep_interval: Duration,
    /// Every Nth sweep is a full (checksum) sweep; the first always is.
    pub full_sweep_every: u32,
    /// One pass, then return.
    pub once: bool,
    /// Append events as JSON lines here.
    pub report: Option<PathBuf>,
    /// Keys written this long before the start are re-verified too.
    pub lookback: Duration,
    /// How often the loop wakes up (real time: the loop sleeps this long between looks at
    /// the clock).
    pub tick: Duration,
    /// Where every verdict reads time from — settle windows, re-check due times, sweep
    /// intervals, watermarks, the dual-write log's gap grace, verify lag, event stamps. The
    /// system clock by default; tests pass a [`ficus_core::ManualClock`].
    pub clock: SharedClock,
}

impl WatchOptions {
    /// The defaults for watching `source` against `target`: schema `public`, no proxy state,
    /// settle 2 s, a sweep every minute (every 10th a full one), an hour of lookback, the
    /// system clock.
    pub fn new(source: &Path, target: &str) -> WatchOptions {
        WatchOptions {
            source: source.to_path_buf(),
            target: target.to_string(),
            schema: "public".into(),
            proxy_state: None,
            settle: Duration::from_millis(2000),
            sweep_interval: Duration::from_secs(60),
            full_sweep_every: 10,
            once: false,
            report: None,
            lookback: Duration::from_secs(3600),
            tick: Duration::from_millis(200),
            clock: SystemClock::shared(),
        }
    }
}
