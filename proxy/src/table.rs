//! The routing table: a configuration compiled for the hot path — routes in match order with
//! their sticky-key source resolved, the rollout percentage as an atomic, metric handles and
//! header values prepared once. Published through an `ArcSwap`; a reload builds a new table.
//!
//! Architecture invariant: a request reads the table and the rollout atomics, nothing else
//! shared and mutable; it never takes a lock and never looks a metric label up. (Shadowed
//! routes add shadow mode's own lock-free queue; guarded routes a few atomic adds; writes on
//! dual-write routes take their row's turn, see `order`; writes on a held route wait, see
//! `hold`; writes and reads keyed for read-your-writes touch a few words of `recent`; a
//! request the access log writes queues one entry, see `access_log`.)

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ficus_core::SharedClock;
use ficus_shadow::{RouteSpec, Shadow, ShadowRoute};
use http::{HeaderName, HeaderValue, Method};
use prometheus::IntCounter;
use tokio::sync::Notify;

use crate::access_log::AccessLog;
use crate::config::{
    bp_to_percent, takes_writes, BackendConfig, Config, RouteConfig, WriteOrderScope,
};
use crate::dualwrite::DualRoute;
use crate::evidence::{Evidence, EvidenceSpec, GUARD, PLAN};
use crate::guard::{Guard, Reason, BUCKETS as GUARD_BUCKETS};
use crate::hold::Hold;
use crate::metrics::{Metrics, RouteMetrics};
use crate::order::{RowTurns, WriteOrder};
use crate::plan::PlanRuntime;
use crate::recent::{self, RecentWrites};
use crate::route::{is_safe, PathTemplate};
use crate::split::{self, cookie_value, query_value, MissingKey, Sticky};
use ficus_core::Side;
use ficus_state::DualWriteLog;

/// Name used in metrics and headers for requests no route matched.
pub const UNMATCHED: &str = "_unmatched";

static BACKEND_IDS: AtomicU64 = AtomicU64::new(1);

/// One backend as the hot path sees it.
pub(crate) struct Backend {
    pub side: Side,
    /// Distinguishes configurations: a worker's idle pool for this side is flushed when it changes.
    pub id: u64,
    pub cfg: BackendConfig,
    pub name_hv: HeaderValue,
    pub host_hv: HeaderValue,
}

impl Backend {
    fn new(side: Side, cfg: &BackendConfig) -> Result<Backend, String> {
        Ok(Backend {
            side,
            id: BACKEND_IDS.fetch_add(1, Ordering::Relaxed),
            cfg: cfg.clone(),
            name_hv: HeaderValue::from_static(side.as_str()),
            host_hv: HeaderValue::from_str(cfg.authority.as_str()).map_err(|e| e.to_string())?,
        })
    }
}

pub(crate) enum KeySource {
    Header(HeaderName),
    Cookie(Box<str>),
    PathSeg(usize),
    Query(Box<str>),
    Random,
}

impl KeySource {
    /// Resolves a sticky-source setting against the route's path template.
    fn new(sticky: &Sticky, rc: &RouteConfig) -> Result<KeySource, String> {
        Ok(match sticky {
            Sticky::Header(h) => KeySource::Header(h.clone()),
            Sticky::Cookie(c) => KeySource::Cookie(c.as_str().into()),
            Sticky::Path(p) => KeySource::PathSeg(
                rc.path
                    .param_index(p)
                    .ok_or_else(|| format!("route {}: path has no parameter {{{p}}}", rc.name))?,
            ),
            Sticky::Query(q) => KeySource::Query(q.as_str().into()),
            Sticky::Random => KeySource::Random,
        })
    }

    /// The key's bytes in this request (`None` for `Random` or when the request lacks it).
    #[inline]
    pub fn get<'a>(&self, parts: &'a http::request::Parts) -> Option<&'a [u8]> {
        match self {
            KeySource::Random => None,
            KeySource::Header(h) => parts.headers.get(h).map(HeaderValue::as_bytes),
            KeySource::Cookie(c) => cookie_value(&parts.headers, c),
            KeySource::PathSeg(i) => PathTemplate::segment(parts.uri.path(), *i).map(str::as_bytes),
            KeySource::Query(q) => query_value(parts.uri.query(), q),
        }
    }
}

/// What a table needs beyond the configuration and what outlives one table: shadow mode, the
/// dual-write log and the read-your-writes map, when the configuration uses them (see
/// `sidecars`), the proxy's row turns, and how holds wake the control plane.
#[derive(Clone, Default)]
pub(crate) struct Extras {
    pub shadow: Option<Arc<Shadow>>,
    pub dual_log: Option<Arc<DualWriteLog>>,
    /// The turns of keyed rows, shared by every dual-write route (`order`).
    pub turns: RowTurns,
    /// Which side took recent writes, per sticky key (`read_your_writes_ms`).
    pub recent: Option<Arc<RecentWrites>>,
    /// Signalled when a hold is placed or ends at its deadline (`hold`).
    pub hold_events: Arc<Notify>,
    /// The access log, once a configuration asked for it (`[proxy.access_log]`).
    pub access_log: Option<Arc<AccessLog>>,
}

/// Read your writes on a read route: the window, the key source's seed, the counter.
pub(crate) struct ReadYourWrites {
    within: std::time::Duration,
    seed: u64,
    redirected: IntCounter,
}

/// One compiled route.
pub(crate) struct Route {
    pub name: Box<str>,
    pub name_hv: HeaderValue,
    methods: Vec<Method>,
    path: Option<PathTemplate>,
    key: KeySource,
    missing: MissingKey,
    /// Effective rollout in basis points; written by the control plane, read per request.
    pub percent_bp: AtomicU32,
    pub metrics: RouteMetrics,
    /// The route's name shared with what outlives a table (dual-write rows).
    pub name_arc: Arc<str>,
    /// Shadow settings, when the route has `[routes.shadow]`.
    pub shadow: Option<Arc<ShadowRoute>>,
    /// `dual_write = true` with a log to record into (`None` also when the state store is not
    /// SQLite).
    pub dual: Option<DualRoute>,
    /// Where a write's row key comes from (`key`).
    pub write_key: Option<KeySource>,
    /// On dual-write routes: the rows' turns, and the counter of writes that did not get theirs.
    pub write_order: Option<(WriteOrder, IntCounter)>,
    /// What both sides answered and the shadow comparisons, windowed: when the route has a
    /// guard or a plan (they judge it; see `evidence`).
    pub evidence: Option<Arc<Evidence>>,
    /// The rollback guard, when the route has `[routes.guard]`.
    pub guard: Option<Arc<Guard>>,
    /// The step plan's hot-path part, when the route has `[routes.plan]`.
    pub plan: Option<Arc<PlanRuntime>>,
    /// The write hold (`None` only for the catch-all route); a reload keeps it.
    pub hold: Option<Arc<Hold>>,
    /// `read_your_writes_ms`: reads follow their key's recent write.
    ryw_read: Option<ReadYourWrites>,
    /// Writes whose sticky key some read route follows: the key source's seed.
    ryw_record: Option<u64>,
    /// Written to the access log (`access_log = false` leaves the route out).
    pub access_log: bool,
}

impl Route {
    fn new(
        rc: &RouteConfig,
        percent_bp: u32,
        metrics: &Metrics,
        extras: &Extras,
        config: &Config,
        previous: Option<&Route>,
        clock: &SharedClock,
    ) -> Result<Route, String> {
        let key = KeySource::new(&rc.sticky, rc)?;
        let m = metrics.route(&rc.name).map_err(|e| e.to_string())?;
        m.percent.set(bp_to_percent(percent_bp));
        let shadow = match (&rc.shadow, &extras.shadow) {
            (None, _) => None,
            (Some(cfg), Some(shadow)) => Some({
                // Mirrors to an https:// backend speak TLS exactly as the primary path does.
                for b in [&config.backends.legacy, &config.backends.new] {
                    if let Some(tls) = &b.tls {
                        shadow.use_tls(b.authority.clone(), &tls.client);
                    }
                }
                shadow
                    .route(RouteSpec {
                        name: &rc.name,
                        config: cfg,
                        dual_write: rc.dual_write,
                        legacy_url: &config.backends.legacy.url.to_string(),
                        new_url: &config.backends.new.url.to_string(),
                    })
                    .map_err(|e| format!("route {}: {e}", rc.name))?
            }),
            (Some(_), None) => {
                return Err(format!("route {}: shadow mode is not running", rc.name))
            }
        };
        let dual = match (rc.dual_write, &extras.dual_log) {
            (true, Some(log)) => Some(DualRoute {
                log: log.clone(),
                divergent: metrics
                    .dual_write_divergent(&rc.name)
                    .map_err(|e| e.to_string())?,
            }),
            _ => None,
        };
        let write_key = match &rc.key {
            Some(k) => Some(KeySource::new(k, rc)?),
            None => None,
        };
        // Writes in flight across a reload keep their turns: the successor shares them.
        let write_order = if rc.dual_write {
            let whole_route = rc.write_order == WriteOrderScope::Route;
            let order = match previous.and_then(|p| p.write_order.as_ref()) {
                Some((prev, _)) => prev.with_scope(whole_route),
                None => WriteOrder::new(&extras.turns, whole_route),
            };
            let timeouts = metrics
                .dual_write_turn_timeouts(&rc.name)
                .map_err(|e| e.to_string())?;
            Some((order, timeouts))
        } else {
            None
        };
        let hold = match previous.and_then(|p| p.hold.as_ref()) {
            Some(h) => h.clone(),
            None => Arc::new(Hold::new(
                metrics.hold(&rc.name).map_err(|e| e.to_string())?,
                extras.hold_events.clone(),
            )),
        };
        // Read your writes: reads on this route follow recent writes of their key; writes on
        // any route with the same sticky source are remembered.
        let ryw_read = match (rc.read_your_writes, &extras.recent) {
            (Some(within), Some(_)) => Some(ReadYourWrites {
                within,
                seed: recent::source_seed(&rc.sticky),
                redirected: metrics
                    .read_your_writes(&rc.name)
                    .map_err(|e| e.to_string())?,
            }),
            _ => None,
        };
        let followed = config
            .routes
            .iter()
            .any(|r| r.read_your_writes.is_some() && r.sticky == rc.sticky);
        let ryw_record = (extras.recent.is_some()
            && followed
            && rc.sticky != Sticky::Random
            && takes_writes(rc))
        .then(|| recent::source_seed(&rc.sticky));
        // A record whose shape did not change keeps its counts across reloads.
        let evidence =
            evidence_spec(rc).map(|spec| match previous.and_then(|p| p.evidence.as_ref()) {
                Some(prev) if prev.spec == spec => prev.clone(),
                _ => Arc::new(Evidence::new(spec, clock.clone())),
            });
        // A guard whose settings did not change keeps its window (and its disarmed state)
        // across reloads.
        let guard = match (&rc.guard, &evidence) {
            (Some(g), Some(evidence)) => match previous.and_then(|p| p.guard.as_ref()) {
                Some(prev) if prev.cfg == *g && Arc::ptr_eq(prev.evidence(), evidence) => {
                    Some(prev.clone())
                }
                _ => {
                    let fired = |r: Reason| {
                        metrics
                            .guard_rollback(&rc.name, r.as_str())
                            .map_err(|e| e.to_string())
                    };
                    let [a, b, c] = Reason::ALL;
                    let fired = [fired(a)?, fired(b)?, fired(c)?];
                    Some(Arc::new(Guard::new(g.clone(), fired, evidence.clone())))
                }
            },
            _ => None,
        };
        // The cohort in force is set again by the planner after every judge.
        let sampled = rc.shadow.as_ref().is_some_and(|s| s.sample > 0.0);
        let plan = match &rc.plan {
            None => None,
            Some(p) => Some(match previous.and_then(|r| r.plan.as_ref()) {
                Some(prev) if prev.cfg == *p && prev.sampled == sampled => prev.clone(),
                prev => {
                    let cohort = metrics.plan.cohort(&rc.name).map_err(|e| e.to_string())?;
                    let run = Arc::new(PlanRuntime::new(p.clone(), sampled, cohort));
                    run.set_cohort(prev.and_then(|r| r.cohort()));
                    run
                }
            }),
        };
        Ok(Route {
            name_arc: Arc::from(rc.name.as_str()),
            shadow,
            dual,
            write_key,
            write_order,
            evidence,
            guard,
            plan,
            hold: Some(hold),
            ryw_read,
            ryw_record,
            access_log: rc.access_log,
            name: rc.name.as_str().into(),
            name_hv: HeaderValue::from_str(&rc.name).map_err(|e| e.to_string())?,
            methods: rc.methods.clone(),
            path: Some(rc.path.clone()),
            key,
            missing: rc.missing_key,
            percent_bp: AtomicU32::new(percent_bp),
            metrics: m,
        })
    }

    fn unmatched(metrics: &Metrics) -> Result<Route, String> {
        Ok(Route {
            name: UNMATCHED.into(),
            name_hv: HeaderValue::from_static(UNMATCHED),
            methods: Vec::new(),
            path: None,
            key: KeySource::Random,
            missing: MissingKey::Legacy,
            percent_bp: AtomicU32::new(0),
            metrics: metrics.route(UNMATCHED).map_err(|e| e.to_string())?,
            name_arc: Arc::from(UNMATCHED),
            shadow: None,
            dual: None,
            write_key: None,
            write_order: None,
            evidence: None,
            guard: None,
            plan: None,
            hold: None,
            ryw_read: None,
            ryw_record: None,
            access_log: true,
        })
    }

    #[inline]
    fn matches(&self, method: &Method, path: &str) -> bool {
        (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
            && self.path.as_ref().is_some_and(|p| p.matches(path))
    }

    /// The split decision for a request (no override involved).
    #[inline]
    pub fn decide(&self, parts: &http::request::Parts) -> Side {
        let bp = self.percent_bp.load(Ordering::Relaxed);
        if bp == 0 {
            return Side::Legacy;
        }
        if bp >= split::BUCKETS {
            return Side::New;
        }
        if matches!(self.key, KeySource::Random) {
            return split::decide(bp, false, None, self.missing);
        }
        let key = self.key.get(parts).filter(|k| !k.is_empty());
        if key.is_none() {
            self.metrics.missing_key.inc();
        }
        split::decide(bp, true, key, self.missing)
    }

    /// Whether the split applied to a sticky key: a percentage strictly between 0 and 100 and
    /// the request carrying its key (the access log's `sticky` decision).
    pub fn sticky_applied(&self, parts: &http::request::Parts) -> bool {
        let bp = self.percent_bp.load(Ordering::Relaxed);
        bp > 0
            && bp < split::BUCKETS
            && !matches!(self.key, KeySource::Random)
            && self.key.get(parts).is_some_and(|k| !k.is_empty())
    }

    /// Read your writes: a read on a route with `read_your_writes_ms` whose sticky key was
    /// written less than that long before `now` goes to the side that took the write;
    /// otherwise `side` (the split's decision) stands. Counts the reads it redirects.
    #[inline]
    pub fn follow_recent_write(
        &self,
        recent: Option<&RecentWrites>,
        parts: &http::request::Parts,
        side: Side,
        now: Instant,
    ) -> Side {
        let (Some(ryw), Some(recent)) = (&self.ryw_read, recent) else {
            return side;
        };
        if !is_safe(&parts.method) {
            return side;
        }
        let Some(key) = self.key.get(parts).filter(|k| !k.is_empty()) else {
            return side;
        };
        match recent.lookup(recent::key_hash(ryw.seed, key), ryw.within, now) {
            Some(wrote) if wrote != side => {
                ryw.redirected.inc();
                wrote
            }
            _ => side,
        }
    }

    /// Whether the request's sticky key is in the route's pre-flight cohort (a plan is
    /// shadowing the keys its next step moves). Hashes the key only while a pre-flight runs.
    #[inline]
    pub fn in_preflight_cohort(&self, parts: &http::request::Parts) -> bool {
        let Some((lo, hi)) = self.plan.as_ref().and_then(|p| p.cohort()) else {
            return false;
        };
        let Some(key) = self.key.get(parts).filter(|k| !k.is_empty()) else {
            return false;
        };
        (lo..hi).contains(&split::bucket(key))
    }

    /// The request's sticky key (for the pre-flight's list of mismatches).
    pub fn sticky_key<'a>(&self, parts: &'a http::request::Parts) -> Option<&'a [u8]> {
        self.key.get(parts)
    }

    /// For a write on a route whose sticky key some read route follows: the key's hash, to
    /// remember which side takes the write.
    #[inline]
    pub fn written_key(&self, parts: &http::request::Parts) -> Option<u64> {
        let seed = self.ryw_record?;
        if is_safe(&parts.method) {
            return None;
        }
        let key = self.key.get(parts).filter(|k| !k.is_empty())?;
        Some(recent::key_hash(seed, key))
    }
}

/// The shape of a route's evidence record: as fine as its guard's window needs, reaching as
/// far back as the longer of the guard's window and the plan's phases; `None` without either.
fn evidence_spec(rc: &RouteConfig) -> Option<EvidenceSpec> {
    if rc.guard.is_none() && rc.plan.is_none() {
        return None;
    }
    let guard_window = rc.guard.as_ref().map(|g| g.window);
    let span = guard_window
        .into_iter()
        .chain(rc.plan.as_ref().map(|p| p.span()))
        .max()
        .unwrap_or(std::time::Duration::from_secs(60));
    let mut slow_ms = [u64::MAX; 2];
    slow_ms[GUARD] = rc
        .guard
        .as_ref()
        .and_then(|g| g.max_p99_ms)
        .unwrap_or(u64::MAX);
    slow_ms[PLAN] = rc
        .plan
        .as_ref()
        .and_then(|p| p.max_p99_ms)
        .unwrap_or(u64::MAX);
    Some(EvidenceSpec {
        span,
        resolution: guard_window.unwrap_or(span) / GUARD_BUCKETS,
        slow_ms,
    })
}

/// A compiled configuration.
pub(crate) struct Table {
    pub routes: Vec<Route>,
    pub unmatched: Route,
    pub backends: [Arc<Backend>; 2],
    pub max_request_bytes: u64,
    /// Longest pause between two parts of a request body (`request_body_idle_timeout_ms`).
    pub request_body_idle: std::time::Duration,
    pub preserve_host: bool,
    /// Peers whose `X-Forwarded-*` are kept (`trusted_proxies`).
    pub trusted_proxies: Box<[ipnet::IpNet]>,
    pub override_token: Option<Box<[u8]>>,
    /// Shadow mode, when any route is shadowed.
    pub shadow: Option<Arc<Shadow>>,
    /// Which side took recent writes, when a route reads its writes.
    pub recent: Option<Arc<RecentWrites>>,
    /// The access log, when the configuration has `[proxy.access_log]`.
    pub access_log: Option<Arc<AccessLog>>,
    /// Where requests read the time (their duration, the dual-write stamp).
    pub clock: SharedClock,
}

impl Table {
    /// Builds a table; `percent_of(route)` gives each route's effective rollout, and backends
    /// whose configuration did not change are taken over from `previous` (keeping pools warm).
    /// Guards and requests read the time from `clock`.
    pub fn build(
        config: &Config,
        metrics: &Metrics,
        previous: Option<&Table>,
        extras: &Extras,
        clock: &SharedClock,
        mut percent_of: impl FnMut(&RouteConfig) -> u32,
    ) -> Result<Table, String> {
        let backend = |side: Side, cfg: &BackendConfig| -> Result<Arc<Backend>, String> {
            if let Some(prev) = previous {
                let b = &prev.backends[side.index()];
                if b.cfg == *cfg {
                    return Ok(b.clone());
                }
            }
            Ok(Arc::new(Backend::new(side, cfg)?))
        };
        let mut routes = Vec::with_capacity(config.routes.len());
        for rc in &config.routes {
            let prev = previous.and_then(|p| p.route(&rc.name));
            routes.push(Route::new(
                rc,
                percent_of(rc),
                metrics,
                extras,
                config,
                prev,
                clock,
            )?);
        }
        Ok(Table {
            routes,
            unmatched: Route::unmatched(metrics)?,
            backends: [
                backend(Side::Legacy, &config.backends.legacy)?,
                backend(Side::New, &config.backends.new)?,
            ],
            max_request_bytes: config.proxy.max_request_bytes,
            request_body_idle: config.proxy.request_body_idle_timeout,
            preserve_host: config.proxy.preserve_host,
            trusted_proxies: config.proxy.trusted_proxies.clone().into(),
            override_token: config
                .proxy
                .resolved_override_token()
                .map(|t| t.into_bytes().into_boxed_slice()),
            shadow: extras.shadow.clone(),
            recent: extras.recent.clone(),
            access_log: config
                .proxy
                .access_log
                .as_ref()
                .and(extras.access_log.clone()),
            clock: clock.clone(),
        })
    }

    /// The first route matching, or the catch-all that sends unmatched traffic to legacy.
    #[inline]
    pub fn match_route(&self, method: &Method, path: &str) -> &Route {
        self.routes
            .iter()
            .find(|r| r.matches(method, path))
            .unwrap_or(&self.unmatched)
    }

    pub fn route(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|r| &*r.name == name)
    }
}
