//! The control plane: the one place that changes what traffic sees — rollout changes,
//! rollbacks, resets, configuration reloads and write holds. Each change is persisted (state
//! store + audit) before it is applied, under one mutex, so the admin API and a reload never
//! interleave. (One exception, on purpose: releasing a hold takes effect even when its audit
//! row cannot be written — a bookkeeping failure must not keep writes waiting.)
//!
//! Precedence (see `ARCHITECTURE.md`): an operator's run-time value for a route stays in force
//! across reloads and restarts until an operator changes it again or resets the route to the
//! file's value; a reload that changes a route's `percent` under a run-time value is logged and
//! shown by `GET /admin/routes` (`config_percent` beside `percent`), never applied silently.
//!
//! One file (~900 lines) on purpose: every method here takes the one `Inner` mutex and persists
//! before it applies; keeping them side by side keeps that lock discipline readable in one place
//! (a split into child modules would also be a module cycle, each reaching back for `Inner`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwap;
use ficus_core::SharedClock;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::config::{bp_to_percent, Config, ConfigError, RouteConfig};
use crate::error::ProxyError;
use crate::guard::Reason;
use crate::hold::{Active, Hold, MAX_HOLD};
use crate::metrics::Metrics;
use crate::shared::Shared;
use crate::sidecars::Sidecars;
use crate::table::{Route, Table};
use ficus_core::stamp::rfc3339;
use ficus_state::{AuditEntry, Change, Override, RolloutStore as StateStore, StateLocation};

/// One route as the admin API reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RouteStatus {
    /// Route name.
    pub name: String,
    /// Methods matched (empty: all).
    pub methods: Vec<String>,
    /// Path template.
    pub path: String,
    /// `legacy`, `new` or `split`, from the file.
    pub target: String,
    /// The percentage in force (share to new).
    pub percent: f64,
    /// The percentage the file gives.
    pub config_percent: f64,
    /// Where `percent` comes from: `config` or `runtime` (an operator's change).
    pub source: String,
    /// Sticky key source.
    pub sticky: String,
    /// Policy for requests without the sticky key.
    pub missing_key: String,
    /// Who set the run-time value.
    pub updated_by: Option<String>,
    /// When the run-time value was set.
    pub updated_at: Option<String>,
    /// Whether the route's writes are held now (`POST /admin/routes/{name}/hold`).
    #[serde(default)]
    pub held: bool,
    /// Who holds them.
    #[serde(default)]
    pub held_by: Option<String>,
    /// Since when (RFC 3339).
    #[serde(default)]
    pub held_since: Option<String>,
    /// Until when at the latest: the hold ends by itself then (RFC 3339).
    #[serde(default)]
    pub held_until: Option<String>,
    /// Writes waiting on the hold now.
    #[serde(default)]
    pub waiting_writes: u64,
    /// Writes past their routing decision whose answer (and, on a dual-write route, mirror)
    /// is not in yet; a cut-over waits for 0 after holding.
    #[serde(default)]
    pub in_flight_writes: u64,
}

/// A route's write hold, as `POST` / `DELETE /admin/routes/{name}/hold` answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HoldStatus {
    /// Route name.
    pub route: String,
    /// Whether the route's writes are held now.
    pub held: bool,
    /// Who holds them.
    #[serde(default)]
    pub held_by: Option<String>,
    /// Since when (RFC 3339).
    #[serde(default)]
    pub held_since: Option<String>,
    /// Until when at the latest: the hold ends by itself then (RFC 3339).
    #[serde(default)]
    pub held_until: Option<String>,
    /// Writes waiting on the hold now.
    #[serde(default)]
    pub waiting_writes: u64,
    /// Writes past their routing decision whose answer (and mirror) is not in yet.
    #[serde(default)]
    pub in_flight_writes: u64,
}

/// One applied rollout change.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RolloutChange {
    /// Route name.
    pub route: String,
    /// Percentage before.
    pub from: f64,
    /// Percentage after.
    pub to: f64,
}

/// A route its rollback guard set to 0 %.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardRollback {
    /// Route name.
    pub route: String,
    /// The broken threshold.
    pub reason: Reason,
    /// The numbers behind the verdict (`new-side 5xx share 100.00% > 2.00% (60 of 60 ...)`).
    pub detail: String,
}

/// Result of a reload.
#[derive(Debug, Clone, Default)]
pub struct ReloadReport {
    /// Settings that changed in the file but only take effect after a restart.
    pub needs_restart: Vec<String>,
    /// Routes whose file percentage changed while a run-time value stays in force.
    pub shadowed_by_runtime: Vec<String>,
}

struct Inner {
    config: Config,
    state: StateStore,
    location: StateLocation,
    /// Shadow mode and the dual-write log, once a configuration needed them.
    sidecars: Sidecars,
    admin_token: Option<String>,
    last_src: Option<String>,
}

/// Owner of the configuration, the state store and the published table.
pub(crate) struct Control {
    pub shared: Arc<Shared>,
    inner: Mutex<Inner>,
    pub config_path: Option<PathBuf>,
    /// Signalled when another replica may have changed the shared state (`None`: SQLite).
    state_changes: Option<Arc<Notify>>,
    /// `sqlite` or `postgres`.
    state_kind: &'static str,
    /// The shadow mismatch store the admin page reads, when there is one.
    shadow_store: Mutex<Option<PathBuf>>,
    /// Where the guards, shadow mode's breakers and request timings read the time.
    clock: SharedClock,
    /// Held while the guards are judged: one judge at a time (the admin thread's loop, or
    /// [`crate::ProxyHandle::check_guards`]).
    judging: Mutex<()>,
    /// Signalled when a hold is placed or ended at its deadline by a waiting write.
    hold_events: Arc<Notify>,
    /// The listeners' TLS certificates (re-read on reload; see `listener_tls`).
    pub(crate) certs: Arc<crate::listener_tls::Certs>,
}

/// Holds that ended at their deadline, to be recorded: route, its percentage, its hold and the
/// expired holds.
type Expired = Vec<(String, u32, Arc<Hold>, Vec<Active>)>;

fn hold_status(route: &str, hold: Option<&Hold>) -> HoldStatus {
    let active = hold.and_then(Hold::active);
    HoldStatus {
        route: route.to_string(),
        held: active.is_some(),
        held_by: active.as_ref().map(|a| a.by.clone()),
        held_since: active.as_ref().map(|a| rfc3339(a.since)),
        held_until: active.as_ref().map(|a| rfc3339(a.until)),
        waiting_writes: hold.map_or(0, Hold::waiting),
        in_flight_writes: hold.map_or(0, Hold::in_flight),
    }
}

fn already_held(route: &str, a: &Active) -> ProxyError {
    ProxyError::AlreadyHeld {
        route: route.to_string(),
        by: a.by.clone(),
        since: rfc3339(a.since),
        until: rfc3339(a.until),
    }
}

/// The hold of a route of `table`.
fn hold_of<'t>(table: &'t Table, route: &str) -> Result<(&'t Route, &'t Arc<Hold>), ProxyError> {
    table
        .route(route)
        .and_then(|r| Some((r, r.hold.as_ref()?)))
        .ok_or_else(|| ProxyError::UnknownRoute(route.to_string()))
}

/// How a bearer token compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Auth {
    Ok,
    Missing,
    Wrong,
}

fn effective(state: &StateStore, rc: &RouteConfig) -> Result<(u32, Option<Override>), ProxyError> {
    let o = state.get(&rc.name)?;
    Ok((o.as_ref().map_or(rc.percent_bp, |o| o.percent_bp), o))
}

impl Control {
    pub fn new(
        config: Config,
        config_path: Option<PathBuf>,
        clock: SharedClock,
    ) -> Result<Control, ProxyError> {
        let certs = Arc::new(crate::listener_tls::Certs::load(
            config.proxy.tls.as_ref(),
            config.proxy.admin_tls.as_ref(),
        )?);
        let location =
            StateLocation::resolve(&config.proxy.state, config.proxy.state_env.as_deref())?;
        let state = StateStore::open(&location, "ficus-proxy")?;
        let state_changes = state.changes();
        let state_kind = state.kind();
        let metrics = Arc::new(Metrics::new()?);
        let mut sidecars = Sidecars::default();
        sidecars.ensure(&config, &location, &metrics, &clock)?;
        let mut failed = None;
        let table =
            Table::build(
                &config,
                &metrics,
                None,
                &sidecars.extras,
                &clock,
                |rc| match effective(&state, rc) {
                    Ok((bp, _)) => bp,
                    Err(e) => {
                        failed = Some(e);
                        rc.percent_bp
                    }
                },
            )
            .map_err(|m| internal_config(&config_path, m))?;
        if let Some(e) = failed {
            return Err(e);
        }
        for o in state.all()? {
            if let Some(rc) = config.route(&o.route) {
                tracing::info!(route = %o.route, percent = bp_to_percent(o.percent_bp),
                    config_percent = bp_to_percent(rc.percent_bp), set_by = %o.actor, at = %o.updated_at,
                    "run-time rollout restored from state store");
            }
        }
        let last_src = config_path
            .as_deref()
            .and_then(|p| std::fs::read_to_string(p).ok());
        let hold_events = sidecars.extras.hold_events.clone();
        Ok(Control {
            shared: Arc::new(Shared {
                table: ArcSwap::from_pointee(table),
                generation: AtomicU64::new(1),
                metrics,
                draining: AtomicBool::new(false),
                connections: std::sync::atomic::AtomicUsize::new(0),
            }),
            inner: Mutex::new(Inner {
                admin_token: config.proxy.resolved_admin_token(),
                config,
                state,
                location,
                sidecars,
                last_src,
            }),
            config_path,
            state_changes,
            state_kind,
            shadow_store: Mutex::new(None),
            clock,
            judging: Mutex::new(()),
            hold_events,
            certs,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every change is one SQLite
        // transaction followed by atomic stores), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The configuration in force.
    pub fn config(&self) -> Config {
        self.lock().config.clone()
    }

    pub fn check_admin(&self, authorization: Option<&[u8]>) -> Auth {
        let Some(h) = authorization else {
            return Auth::Missing;
        };
        let Some(given) = h
            .strip_prefix(b"Bearer ")
            .or_else(|| h.strip_prefix(b"bearer "))
        else {
            return Auth::Missing;
        };
        match &self.lock().admin_token {
            Some(t) if constant_time_eq(t.as_bytes(), given) => Auth::Ok,
            _ => Auth::Wrong,
        }
    }

    /// Re-reads the overrides from the state store and applies every route whose value there
    /// differs from what traffic sees (another replica changed it). Returns what changed.
    pub fn sync_from_state(&self) -> Result<Vec<RolloutChange>, ProxyError> {
        let inner = self.lock();
        let overrides = inner.state.all()?;
        let table = self.shared.table.load();
        let mut applied = Vec::new();
        for rc in &inner.config.routes {
            let want = overrides
                .iter()
                .find(|o| o.route == rc.name)
                .map_or(rc.percent_bp, |o| o.percent_bp);
            let Some(r) = table.route(&rc.name) else {
                continue;
            };
            let have = r.percent_bp.load(Ordering::Relaxed);
            if have != want {
                self.apply(&inner, &rc.name, want);
                tracing::info!(route = %rc.name, from = bp_to_percent(have), to = bp_to_percent(want),
                    "rollout applied from the shared state store");
                applied.push(RolloutChange {
                    route: rc.name.clone(),
                    from: bp_to_percent(have),
                    to: bp_to_percent(want),
                });
            }
        }
        Ok(applied)
    }

    /// Signalled when another replica may have changed the shared state (`None`: SQLite, no
    /// other replica).
    pub fn state_changes(&self) -> Option<Arc<Notify>> {
        self.state_changes.clone()
    }

    /// The clock the proxy reads time from.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// `sqlite` or `postgres`.
    pub fn state_kind(&self) -> &'static str {
        self.state_kind
    }

    /// The shadow mismatch store the admin page reads: the one given with
    /// [`Control::set_shadow_store`], else the store of the running shadow mode (`[shadow]
    /// store`), else none.
    pub fn shadow_store(&self) -> Option<PathBuf> {
        let given = self
            .shadow_store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        given.or_else(|| self.lock().sidecars.shadow_store())
    }

    pub fn set_shadow_store(&self, path: Option<PathBuf>) {
        *self.shadow_store.lock().unwrap_or_else(|p| p.into_inner()) = path;
    }

    pub fn admin_token_configured(&self) -> bool {
        self.lock().admin_token.is_some()
    }

    /// The control lock, for the step planner: what it reads and writes under it (the
    /// configuration, the state store) and how it applies a persisted percentage.
    pub(crate) fn locked(&self) -> Locked<'_> {
        Locked {
            control: self,
            inner: self.lock(),
        }
    }

    /// Applies a persisted change to traffic; `_held` proves the control lock is held.
    fn apply(&self, _held: &Inner, route: &str, bp: u32) {
        let table = self.shared.table.load();
        if let Some(r) = table.route(route) {
            r.percent_bp.store(bp, Ordering::Relaxed);
            r.metrics.percent.set(bp_to_percent(bp));
        }
    }

    /// Sets one route's rollout (basis points) at run time.
    pub fn set_rollout(
        &self,
        route: &str,
        bp: u32,
        actor: &str,
    ) -> Result<RolloutChange, ProxyError> {
        let mut inner = self.lock();
        let rc = inner
            .config
            .route(route)
            .cloned()
            .ok_or_else(|| ProxyError::UnknownRoute(route.to_string()))?;
        let (from, _) = effective(&inner.state, &rc)?;
        inner.state.record(
            &[Change {
                route: route.to_string(),
                from_bp: from,
                to_bp: bp,
                keep_override: Some(rc.percent_bp),
            }],
            actor,
            "set",
        )?;
        self.apply(&inner, route, bp);
        self.shared.metrics.rollout_changed(route, "set");
        tracing::info!(
            route,
            from = bp_to_percent(from),
            to = bp_to_percent(bp),
            actor,
            "rollout set"
        );
        Ok(RolloutChange {
            route: route.to_string(),
            from: bp_to_percent(from),
            to: bp_to_percent(bp),
        })
    }

    /// Drops the run-time value of a route: the file's percentage applies again.
    pub fn reset_rollout(&self, route: &str, actor: &str) -> Result<RolloutChange, ProxyError> {
        let mut inner = self.lock();
        let rc = inner
            .config
            .route(route)
            .cloned()
            .ok_or_else(|| ProxyError::UnknownRoute(route.to_string()))?;
        let (from, _) = effective(&inner.state, &rc)?;
        inner.state.record(
            &[Change {
                route: route.to_string(),
                from_bp: from,
                to_bp: rc.percent_bp,
                keep_override: None,
            }],
            actor,
            "reset",
        )?;
        self.apply(&inner, route, rc.percent_bp);
        self.shared.metrics.rollout_changed(route, "reset");
        tracing::info!(
            route,
            from = bp_to_percent(from),
            to = bp_to_percent(rc.percent_bp),
            actor,
            "rollout reset to config"
        );
        Ok(RolloutChange {
            route: route.to_string(),
            from: bp_to_percent(from),
            to: bp_to_percent(rc.percent_bp),
        })
    }

    /// Sets every named route (all routes when `routes` is empty) to 0 % in one transaction.
    pub fn rollback(
        &self,
        routes: &[String],
        actor: &str,
    ) -> Result<Vec<RolloutChange>, ProxyError> {
        self.rollback_as(routes, actor, "rollback")
    }

    /// Judges every guarded route's window now; a broken threshold (with `min_requests`
    /// behind it) rolls the route back through the operator's rollback path, audited as actor
    /// `guard` with action `rollback:<reason>`, counted in `ficus_guard_rollbacks_total`.
    /// Returns the routes rolled back. One judge at a time; the admin thread calls this once a
    /// second.
    pub fn judge_guards(&self) -> Vec<GuardRollback> {
        let _judging = self.judging.lock().unwrap_or_else(|p| p.into_inner());
        let table = self.shared.table.load_full();
        let mut fired = Vec::new();
        for route in &table.routes {
            let Some(guard) = &route.guard else { continue };
            let bp = route.percent_bp.load(Ordering::Relaxed);
            let Some(v) = guard.check(bp) else {
                continue;
            };
            let action = format!("rollback:{}", v.reason.as_str());
            match self.rollback_as(&[route.name.to_string()], "guard", &action) {
                Ok(_) => {
                    guard.fired[v.reason as usize].inc();
                    tracing::warn!(route = %route.name, reason = v.reason.as_str(), detail = %v.detail,
                        "guard: new side broke a threshold; route set to 0% (raise it again with `ficus rollout set`)");
                    fired.push(GuardRollback {
                        route: route.name.to_string(),
                        reason: v.reason,
                        detail: v.detail,
                    });
                }
                Err(e) => {
                    // Persisting failed: traffic keeps its percentage; try again next time.
                    guard.rearm();
                    tracing::error!(route = %route.name, reason = v.reason.as_str(), detail = %v.detail, error = %e,
                        "guard: rollback failed");
                }
            }
        }
        fired
    }

    /// Holds `route`'s writes for at most `max_ms` (1..=60000) on behalf of `actor`: audited
    /// (`hold`) before it takes effect. 409 ([`ProxyError::AlreadyHeld`]) when it is held.
    pub fn hold(&self, route: &str, max_ms: u64, actor: &str) -> Result<HoldStatus, ProxyError> {
        let max = Duration::from_millis(max_ms);
        if max_ms == 0 || max > MAX_HOLD {
            return Err(ProxyError::Invalid {
                field: "max_ms",
                message: format!(
                    "must be from 1 to {} milliseconds (got {max_ms})",
                    MAX_HOLD.as_millis()
                ),
            });
        }
        let mut inner = self.lock();
        // A hold past its deadline ends (and is on record) before another may be placed.
        let (expired, _) = self.collect_expired();
        self.record_expired(&mut inner, expired);
        let table = self.shared.table.load_full();
        let (r, hold) = hold_of(&table, route)?;
        if let Some(a) = hold.active() {
            return Err(already_held(route, &a));
        }
        let bp = r.percent_bp.load(Ordering::Relaxed);
        inner.state.note(route, bp, actor, "hold")?;
        let a = hold
            .begin(actor, max, &self.clock)
            .map_err(|a| already_held(route, &a))?;
        tracing::warn!(route, held_by = actor, until = %rfc3339(a.until), max_ms,
            "writes held: they wait in the proxy until released or until max_ms");
        Ok(hold_status(route, Some(hold)))
    }

    /// Releases `route`'s hold: its waiting writes go where the route sends them now. 409
    /// ([`ProxyError::NotHeld`]) when it is not held. The release takes effect even when its
    /// audit row (`release`) cannot be written ([`ProxyError::Unaudited`] then says so).
    pub fn release(&self, route: &str, actor: &str) -> Result<HoldStatus, ProxyError> {
        let mut inner = self.lock();
        let (expired, _) = self.collect_expired();
        self.record_expired(&mut inner, expired);
        let table = self.shared.table.load_full();
        let (r, hold) = hold_of(&table, route)?;
        let Some(a) = hold.release() else {
            return Err(ProxyError::NotHeld(route.to_string()));
        };
        let held_ms = (self.clock.utc() - a.since).whole_milliseconds();
        tracing::info!(route, by = actor, held_by = %a.by, held_ms, "writes released");
        let bp = r.percent_bp.load(Ordering::Relaxed);
        inner
            .state
            .note(route, bp, actor, "release")
            .map_err(|source| ProxyError::Unaudited {
                what: format!("the hold on route {route:?} was released"),
                source: Box::new(source),
            })?;
        Ok(hold_status(route, Some(hold)))
    }

    /// Judges every hold on the clock now: those past their deadline end (their writes go)
    /// and are audited `hold-expired` (actor: who held). Returns the routes whose hold expired
    /// and how long until the next deadline of a hold still in force.
    pub fn judge_holds(&self) -> (Vec<String>, Option<Duration>) {
        let (expired, left) = self.collect_expired();
        if expired.is_empty() {
            return (Vec::new(), left);
        }
        let mut inner = self.lock();
        (self.record_expired(&mut inner, expired), left)
    }

    /// Signalled when a hold is placed or ended at its deadline by a waiting write.
    pub fn hold_events(&self) -> Arc<Notify> {
        self.hold_events.clone()
    }

    /// Ends every hold past its deadline; returns them (and whose expiry a waiting write
    /// already saw) with the shortest time left of the holds still in force.
    fn collect_expired(&self) -> (Expired, Option<Duration>) {
        let table = self.shared.table.load_full();
        let mut out = Vec::new();
        let mut next: Option<Duration> = None;
        for r in &table.routes {
            let Some(hold) = &r.hold else { continue };
            let (expired, left) = hold.take_expired(&self.clock);
            if let Some(l) = left {
                next = Some(next.map_or(l, |n| n.min(l)));
            }
            if !expired.is_empty() {
                let bp = r.percent_bp.load(Ordering::Relaxed);
                out.push((r.name.to_string(), bp, hold.clone(), expired));
            }
        }
        (out, next)
    }

    /// Audits expired holds (`hold-expired`); those that cannot be recorded are kept for the
    /// next attempt. Returns the routes recorded.
    fn record_expired(&self, inner: &mut Inner, expired: Expired) -> Vec<String> {
        let mut done = Vec::new();
        for (route, bp, hold, list) in expired {
            let mut failed = Vec::new();
            for a in list {
                match inner.state.note(&route, bp, &a.by, "hold-expired") {
                    Ok(()) => {
                        tracing::warn!(route = %route, held_by = %a.by, since = %rfc3339(a.since),
                            until = %rfc3339(a.until), "hold expired: writes released by the proxy (max_ms reached)");
                        done.push(route.clone());
                    }
                    Err(e) => {
                        tracing::error!(route = %route, error = %e, "cannot record a hold's expiry; will retry");
                        failed.push(a);
                    }
                }
            }
            if !failed.is_empty() {
                hold.unrecorded(failed);
            }
        }
        done
    }

    /// Shadow mode, the dual-write log and the access log, for shutdown.
    pub fn sidecar_handles(&self) -> crate::sidecars::Handles {
        self.lock().sidecars.handles()
    }

    /// The access log, when one runs (flush, reopen).
    pub fn access_log(&self) -> Option<Arc<crate::access_log::AccessLog>> {
        self.lock().sidecars.extras.access_log.clone()
    }

    fn rollback_as(
        &self,
        routes: &[String],
        actor: &str,
        action: &str,
    ) -> Result<Vec<RolloutChange>, ProxyError> {
        let mut inner = self.lock();
        let targets: Vec<RouteConfig> = if routes.is_empty() {
            inner.config.routes.clone()
        } else {
            let mut v = Vec::with_capacity(routes.len());
            for name in routes {
                let rc = inner
                    .config
                    .route(name)
                    .cloned()
                    .ok_or_else(|| ProxyError::UnknownRoute(name.clone()))?;
                if !v.iter().any(|x: &RouteConfig| x.name == rc.name) {
                    v.push(rc);
                }
            }
            v
        };
        let mut froms = Vec::with_capacity(targets.len());
        for rc in &targets {
            froms.push(effective(&inner.state, rc)?.0);
        }
        let changes: Vec<Change> = targets
            .iter()
            .zip(&froms)
            .map(|(rc, &from)| Change {
                route: rc.name.clone(),
                from_bp: from,
                to_bp: 0,
                keep_override: Some(rc.percent_bp),
            })
            .collect();
        inner.state.record(&changes, actor, action)?;
        drop(changes);
        for rc in &targets {
            self.apply(&inner, &rc.name, 0);
            self.shared.metrics.rollout_changed(&rc.name, "rollback");
        }
        self.shared.metrics.rollbacks.inc();
        tracing::warn!(routes = ?targets.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), actor, action, "rollback");
        Ok(targets
            .iter()
            .zip(froms)
            .map(|(rc, from)| RolloutChange {
                route: rc.name.clone(),
                from: bp_to_percent(from),
                to: 0.0,
            })
            .collect())
    }

    /// Status of every route (holds judged on the clock first).
    pub fn routes(&self) -> Result<Vec<RouteStatus>, ProxyError> {
        let mut inner = self.lock();
        let (expired, _) = self.collect_expired();
        self.record_expired(&mut inner, expired);
        let table = self.shared.table.load_full();
        let mut out = Vec::with_capacity(inner.config.routes.len());
        for rc in &inner.config.routes {
            let (bp, o) = effective(&inner.state, rc)?;
            let hold = table.route(&rc.name).and_then(|r| r.hold.as_deref());
            let h = hold_status(&rc.name, hold);
            out.push(RouteStatus {
                name: rc.name.clone(),
                methods: rc.methods.iter().map(|m| m.to_string()).collect(),
                path: rc.path.to_string(),
                target: rc.target.as_str().into(),
                percent: bp_to_percent(bp),
                config_percent: bp_to_percent(rc.percent_bp),
                source: if o.is_some() { "runtime" } else { "config" }.into(),
                sticky: rc.sticky.to_string(),
                missing_key: rc.missing_key.as_str().into(),
                updated_by: o.as_ref().map(|o| o.actor.clone()),
                updated_at: o.map(|o| o.updated_at),
                held: h.held,
                held_by: h.held_by,
                held_since: h.held_since,
                held_until: h.held_until,
                waiting_writes: h.waiting_writes,
                in_flight_writes: h.in_flight_writes,
            });
        }
        Ok(out)
    }

    /// Newest audit rows first.
    pub fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, ProxyError> {
        Ok(self.lock().state.audit(limit)?)
    }

    /// Applies a new configuration. Listener addresses, `workers` and `state` need a restart.
    pub fn reload(&self, mut new: Config, src: Option<String>) -> Result<ReloadReport, ProxyError> {
        for w in new.backends.warnings() {
            tracing::warn!("{w}");
        }
        let mut inner = self.lock();
        let mut report = ReloadReport::default();
        let old = &inner.config;
        // Settings bound at start stay as they are; say so rather than pretend.
        macro_rules! keep {
            ($($f:ident),*) => {$(
                if new.proxy.$f != old.proxy.$f {
                    report.needs_restart.push(format!("proxy.{}", stringify!($f)));
                    new.proxy.$f = old.proxy.$f.clone();
                }
            )*};
        }
        keep!(
            listen,
            admin_listen,
            state,
            state_env,
            workers,
            shutdown_grace,
            header_read_timeout,
            max_connections,
            admin_token,
            override_token,
            tls,
            admin_tls
        );
        // Same files, perhaps new contents (a rotated certificate): new connections get them.
        self.certs.reread();
        // Record file-driven changes of routes without a run-time value, so the audit log tells
        // the whole story of what traffic saw.
        let mut file_changes: Vec<(String, u32, u32)> = Vec::new();
        for rc in &new.routes {
            let o = inner.state.get(&rc.name)?;
            let old_bp = old.route(&rc.name).map(|r| r.percent_bp);
            match (&o, old_bp) {
                (Some(o), Some(prev)) if prev != rc.percent_bp => {
                    report.shadowed_by_runtime.push(rc.name.clone());
                    tracing::warn!(route = %rc.name, config_percent = bp_to_percent(rc.percent_bp),
                        runtime_percent = bp_to_percent(o.percent_bp), set_by = %o.actor,
                        "config changed this route's percent, but an operator's run-time value stays in force; \
                         `ficus rollout set` or DELETE /admin/routes/{{name}}/rollout to change it");
                }
                (None, Some(prev)) if prev != rc.percent_bp => {
                    file_changes.push((rc.name.clone(), prev, rc.percent_bp));
                }
                _ => {}
            }
        }
        let metrics = self.shared.metrics.clone();
        {
            let inner = &mut *inner;
            let restart = inner
                .sidecars
                .ensure(&new, &inner.location, &metrics, &self.clock)?;
            if !restart.is_empty() {
                // Like the proxy settings above: the running values stay in force.
                new.shadow = inner.config.shadow.clone();
                report.needs_restart.extend(restart);
            }
        }
        let previous = self.shared.table.load_full();
        let mut failed = None;
        let table = Table::build(
            &new,
            &metrics,
            Some(&previous),
            &inner.sidecars.extras,
            &self.clock,
            |rc| match effective(&inner.state, rc) {
                Ok((bp, _)) => bp,
                Err(e) => {
                    failed = Some(e);
                    rc.percent_bp
                }
            },
        )
        .map_err(|m| internal_config(&self.config_path, m))?;
        if let Some(e) = failed {
            return Err(e);
        }
        if !file_changes.is_empty() {
            let changes: Vec<Change> = file_changes
                .iter()
                .map(|(r, from, to)| Change {
                    route: r.to_string(),
                    from_bp: *from,
                    to_bp: *to,
                    keep_override: None,
                })
                .collect();
            inner.state.record(&changes, "config-reload", "config")?;
            for (r, _, _) in &file_changes {
                metrics.rollout_changed(r, "config");
            }
        }
        let (expired, _) = self.collect_expired();
        self.record_expired(&mut inner, expired);
        for r in &previous.routes {
            if new.route(&r.name).is_none() {
                // Its waiting writes go (to the route that matches them in the new table).
                if let Some(a) = r.hold.as_ref().and_then(|h| h.release()) {
                    let bp = r.percent_bp.load(Ordering::Relaxed);
                    tracing::warn!(route = %r.name, held_by = %a.by, "route removed by a reload: its hold is released");
                    if let Err(e) = inner.state.note(&r.name, bp, "config-reload", "release") {
                        tracing::error!(route = %r.name, error = %e, "cannot record the release of a removed route's hold");
                    }
                }
                metrics.forget_route(&r.name);
            }
        }
        self.shared.table.store(Arc::new(table));
        self.shared.generation.fetch_add(1, Ordering::Release);
        inner.admin_token = new.proxy.resolved_admin_token();
        inner.config = new;
        if src.is_some() {
            inner.last_src = src;
        }
        for f in &report.needs_restart {
            tracing::warn!(field = %f, "changed in the config file; takes effect after a restart");
        }
        Ok(report)
    }

    /// Re-reads the configuration file: an invalid file is rejected and the old one stays.
    /// `Ok(None)` means the file is byte-for-byte what is already in force.
    pub fn reload_from_file(&self) -> Result<Option<ReloadReport>, ProxyError> {
        let Some(path) = self.config_path.clone() else {
            return Ok(None);
        };
        let src = std::fs::read_to_string(&path).map_err(|e| {
            self.shared.metrics.reloaded(false);
            ProxyError::ReadConfig {
                path: path.clone(),
                source: e,
            }
        })?;
        if self.lock().last_src.as_deref() == Some(src.as_str()) {
            return Ok(None);
        }
        let result = parse_file(&src, &path).and_then(|cfg| self.reload(cfg, Some(src)));
        self.shared.metrics.reloaded(result.is_ok());
        match &result {
            Ok(_) => tracing::info!(path = %path.display(), "configuration reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "configuration reload rejected; the previous configuration stays in force")
            }
        }
        result.map(Some)
    }
}

/// The control lock held by the step planner (`planner`), which persists before it applies,
/// like every method of [`Control`].
pub(crate) struct Locked<'a> {
    control: &'a Control,
    inner: MutexGuard<'a, Inner>,
}

impl Locked<'_> {
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn state(&mut self) -> &mut StateStore {
        &mut self.inner.state
    }

    pub fn state_ref(&self) -> &StateStore {
        &self.inner.state
    }

    /// The percentage the state store gives `rc` (basis points).
    pub fn stored_bp(&self, rc: &RouteConfig) -> Result<u32, ProxyError> {
        Ok(effective(&self.inner.state, rc)?.0)
    }

    /// Applies a percentage already persisted.
    pub fn apply(&self, route: &str, bp: u32) {
        self.control.apply(&self.inner, route, bp);
    }
}

fn parse_file(src: &str, path: &Path) -> Result<Config, ProxyError> {
    Config::from_toml_str(src).map_err(|mut e| {
        e.file = Some(path.to_path_buf());
        ProxyError::Config(e)
    })
}

fn internal_config(path: &Option<PathBuf>, message: String) -> ProxyError {
    ProxyError::Config(ConfigError {
        file: path.clone(),
        line: None,
        field: "(routes)".into(),
        message,
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A route status from a proxy that knows nothing of holds still parses (the hold fields
    /// default), so a newer client reads an older proxy.
    #[test]
    fn route_status_without_hold_fields_parses() {
        let old = serde_json::json!({
            "name": "tasks", "methods": ["GET"], "path": "/api/tasks/*", "target": "split",
            "percent": 25.0, "config_percent": 25.0, "source": "config",
            "sticky": "header:x-user-id", "missing_key": "legacy",
            "updated_by": null, "updated_at": null,
        });
        let r: RouteStatus = serde_json::from_value(old).unwrap();
        assert!(!r.held && r.held_by.is_none() && r.held_until.is_none());
        assert_eq!((r.waiting_writes, r.in_flight_writes), (0, 0));
        let h: HoldStatus =
            serde_json::from_value(serde_json::json!({"route": "tasks", "held": false})).unwrap();
        assert_eq!(h.held_since, None);
    }
}
