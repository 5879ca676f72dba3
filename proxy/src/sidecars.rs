//! What runs beside the data plane when the configuration asks for it: shadow mode (one
//! [`Shadow`] per proxy, its metrics in the proxy's registry), the dual-write log (a writer
//! thread on the state store, SQLite or PostgreSQL), the read-your-writes map (`recent`) and
//! the access log (its writer thread). Each is started the first time a configuration needs
//! it — at start or by a reload — and kept until shutdown; changing the `[shadow]` section of
//! a running proxy needs a restart (the reload report says so), while a reload's
//! `[proxy.access_log]` is applied in place (sampling at once, the file reopened; removing
//! the section turns the log off).

use std::sync::Arc;
use std::time::Duration;

use ficus_core::SharedClock;
use ficus_shadow::{Shadow, ShadowGlobalConfig};

use crate::access_log::AccessLog;
use crate::config::Config;
use crate::error::ProxyError;
use crate::metrics::Metrics;
use crate::recent::RecentWrites;
use crate::table::Extras;
use ficus_state::{DualWriteLog, StateLocation};

/// How long shutdown waits for the dual-write log to commit what it holds.
const FLUSH_LIMIT: Duration = Duration::from_secs(10);

/// The running side components and the settings they were started with.
#[derive(Default)]
pub(crate) struct Sidecars {
    pub extras: Extras,
    shadow_settings: Option<ShadowGlobalConfig>,
}

impl Sidecars {
    /// Starts what `config` needs and is not running yet (shadow mode reading the time from
    /// `clock`). Returns the settings that changed but only take effect after a restart
    /// (`shadow`).
    pub fn ensure(
        &mut self,
        config: &Config,
        state: &StateLocation,
        metrics: &Metrics,
        clock: &SharedClock,
    ) -> Result<Vec<String>, ProxyError> {
        let mut needs_restart = Vec::new();
        let wanted = config.shadow.clone().unwrap_or_default();
        if config.routes.iter().any(|r| r.shadow.is_some()) {
            match &self.shadow_settings {
                None => {
                    let shadow = Shadow::with_clock(&wanted, metrics.registry(), clock.clone())?;
                    tracing::info!(store = %wanted.store.display(), "shadow mode on");
                    self.extras.shadow = Some(Arc::new(shadow));
                    self.shadow_settings = Some(wanted);
                }
                Some(running) if *running != wanted => needs_restart.push("shadow".to_string()),
                Some(_) => {}
            }
        } else if matches!(&self.shadow_settings, Some(running) if *running != wanted) {
            needs_restart.push("shadow".to_string());
        }
        if config.routes.iter().any(|r| r.dual_write) && self.extras.dual_log.is_none() {
            let counters = metrics.dual_write_counters()?;
            let log = DualWriteLog::open(state, counters)?;
            self.extras.dual_log = Some(Arc::new(log));
        }
        if let Some(wanted) = &config.proxy.access_log {
            match &self.extras.access_log {
                Some(log) => log.configure(wanted),
                None => {
                    let log = AccessLog::start(wanted, metrics.registry(), clock.clone())?;
                    tracing::info!(target = ?wanted.target, sample = wanted.sample, "access log on");
                    self.extras.access_log = Some(Arc::new(log));
                }
            }
        }
        if config.routes.iter().any(|r| r.read_your_writes.is_some())
            && self.extras.recent.is_none()
        {
            self.extras.recent = Some(Arc::new(RecentWrites::new(clock.now())));
        }
        Ok(needs_restart)
    }

    /// The mismatch store of the running shadow mode, if it runs (the admin page reads it).
    pub fn shadow_store(&self) -> Option<std::path::PathBuf> {
        self.shadow_settings.as_ref().map(|s| s.store.clone())
    }

    /// Handles for shutdown (taken out so the caller can await without holding a lock).
    pub fn handles(&self) -> Handles {
        Handles {
            shadow: self.extras.shadow.clone(),
            dual_log: self.extras.dual_log.clone(),
            access_log: self.extras.access_log.clone(),
        }
    }
}

/// What shutdown finishes, in order.
pub(crate) struct Handles {
    pub shadow: Option<Arc<Shadow>>,
    pub dual_log: Option<Arc<DualWriteLog>>,
    pub access_log: Option<Arc<AccessLog>>,
}

/// Finishes the mirror jobs in hand (each bounded by the shadow `timeout_ms`) and commits the
/// shadow store, then commits the dual-write rows those jobs completed, then writes the
/// access log's last lines (those of mirrored requests came with their comparison).
pub(crate) async fn shutdown(h: Handles) {
    let Handles {
        shadow,
        dual_log,
        access_log,
    } = h;
    if let Some(s) = shadow {
        s.shutdown().await;
    }
    if let Some(log) = dual_log {
        let flushed = tokio::task::spawn_blocking(move || log.flush_blocking(FLUSH_LIMIT)).await;
        if !matches!(flushed, Ok(true)) {
            tracing::warn!("dual-write log: not every row was committed before shutdown");
        }
    }
    if let Some(log) = access_log {
        let _ = tokio::task::spawn_blocking(move || log.close()).await;
    }
}
