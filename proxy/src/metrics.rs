//! Prometheus metrics of one proxy instance, in a registry of its own (never the process-global
//! default), so several proxies in one process — tests, the demo — keep separate counts.
//!
//! | metric | labels |
//! | --- | --- |
//! | `ficus_requests_total` | route, backend, class (1xx..5xx) |
//! | `ficus_request_duration_seconds` | route, backend (time to the response head) |
//! | `ficus_upstream_errors_total` | route, backend, kind (connect, timeout, upstream_io) |
//! | `ficus_upstream_connections_opened_total` | backend |
//! | `ficus_rollout_percent` | route |
//! | `ficus_rollout_changes_total` | route, action (set, rollback, reset, config) |
//! | `ficus_rollbacks_total` | — (one per rollback command) |
//! | `ficus_override_attempts_total` | route, result (honoured, rejected) |
//! | `ficus_sticky_key_missing_total` | route |
//! | `ficus_config_reloads_total` | result (success, failure) |
//! | `ficus_inflight_requests` | — |
//! | `ficus_client_connections_refused_total` | — (answered 503: `max_connections` reached) |
//! | `ficus_accept_errors_total` | — (failed accepts, e.g. out of file descriptors; each backs off) |
//! | `ficus_dual_write_records_total` | result (written, dropped, error): rows of the dual-write log |
//! | `ficus_dual_write_divergent_total` | route (writes that succeeded on one side only) |
//! | `ficus_dual_write_turn_timeouts_total` | route (writes answered 503: the previous write to their row had not reached both sides in time) |
//! | `ficus_guard_rollbacks_total` | route, reason (error_rate, p99, mismatch_rate) |
//! | `ficus_route_held` | route (1 while the route's writes are held) |
//! | `ficus_held_writes` | route (writes waiting on the hold now) |
//! | `ficus_hold_wait_seconds` | — (how long held writes waited, on the proxy's clock) |
//! | `ficus_in_flight_writes` | route (writes past their routing decision, not yet answered and mirrored) |
//! | `ficus_grpc_responses_total` | route, backend, grpc_status (0..16, unknown): gRPC responses, from the head (trailers-only) or the trailers |
//! | `ficus_read_your_writes_total` | route (reads sent to the side that took their key's recent write instead of where the split sent them) |
//! | `ficus_plan_status` | route, status (running, paused, done, failed, aborted): 1 for the plan's status |
//! | `ficus_plan_step_percent` | route (the percentage the plan put the route at) |
//! | `ficus_plan_step_seconds` | route (time at the current step, on the proxy's clock) |
//! | `ficus_plan_preflight_active` | route (1 while the next cohort is pre-flighted) |
//! | `ficus_plan_gate_value`, `ficus_plan_gate_threshold` | route, gate (error_rate, error_rate_ratio, p99_ms, p99_ratio, mismatch_rate, preflight_mismatch_rate, preflight_error_rate, preflight_error_rate_ratio): the last judged value and its threshold |
//! | `ficus_plan_steps_total` | route, action (start, preflight, promote, done, rollback, pause, resume, abort) |
//! | `ficus_plan_preflight_requests_total` | route (pre-flight cohort requests mirrored to the new side) |
//! | `ficus_plan_preflight_mismatches_total` | route (their mismatches) |
//!
//! | `ficus_access_log_lines_total` | — (access log lines written; with `[proxy.access_log]`) |
//! | `ficus_access_log_dropped_total` | — (entries dropped: the writer's queue was full) |
//! | `ficus_access_log_write_errors_total` | — (failed writes, each losing one batch) |
//!
//! With shadow mode on, the `ficus_shadow_*` families of `ficus-shadow` are in the same
//! registry.
//!
//! The hot path never looks a label up: [`RouteMetrics`] holds the resolved handles and lives in
//! the routing table, built once per configuration.

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

use crate::error::ErrorKind;
use crate::hold::HoldMetrics;
use ficus_core::Side;

/// Handles for one (route, backend) pair.
#[derive(Clone)]
pub(crate) struct BackendMetrics {
    /// Indexed by status class: 0 = 1xx .. 4 = 5xx.
    pub requests: [IntCounter; 5],
    pub duration: Histogram,
    /// Indexed by [`ErrorKind::index`]; only the upstream kinds are exported.
    pub errors: [Option<IntCounter>; ErrorKind::COUNT],
}

impl BackendMetrics {
    #[inline]
    pub fn count(&self, status: u16) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.requests[class].inc();
    }

    #[inline]
    pub fn error(&self, kind: ErrorKind) {
        if let Some(c) = &self.errors[kind.index()] {
            c.inc();
        }
    }
}

/// Handles for one route.
#[derive(Clone)]
pub(crate) struct RouteMetrics {
    pub backend: [BackendMetrics; 2],
    pub override_honoured: IntCounter,
    pub override_rejected: IntCounter,
    pub missing_key: IntCounter,
    pub percent: Gauge,
}

/// The registry and metric families of one proxy.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    upstream_errors: IntCounterVec,
    pub(crate) connections_opened: [IntCounter; 2],
    rollout_percent: GaugeVec,
    rollout_changes: IntCounterVec,
    pub(crate) rollbacks: IntCounter,
    overrides: IntCounterVec,
    missing_key: IntCounterVec,
    reloads: IntCounterVec,
    pub(crate) inflight: IntGauge,
    pub(crate) connections_refused: IntCounter,
    pub(crate) accept_errors: IntCounter,
    dual_write_records: IntCounterVec,
    dual_write_divergent: IntCounterVec,
    dual_write_turn_timeouts: IntCounterVec,
    guard_rollbacks: IntCounterVec,
    route_held: IntGaugeVec,
    held_writes: IntGaugeVec,
    in_flight_writes: IntGaugeVec,
    hold_wait: Histogram,
    read_your_writes: IntCounterVec,
    /// `ficus_grpc_responses_total` (see `grpc`).
    pub(crate) grpc: IntCounterVec,
    /// The `ficus_plan_*` families.
    pub(crate) plan: PlanMetrics,
}

/// The step plans' metric families.
pub(crate) struct PlanMetrics {
    pub status: IntGaugeVec,
    pub step_percent: GaugeVec,
    pub step_seconds: GaugeVec,
    pub preflight_active: IntGaugeVec,
    pub gate_value: GaugeVec,
    pub gate_threshold: GaugeVec,
    pub steps: IntCounterVec,
    preflight_requests: IntCounterVec,
    preflight_mismatches: IntCounterVec,
}

impl PlanMetrics {
    fn new(registry: &Registry) -> Result<PlanMetrics, prometheus::Error> {
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = GaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok::<_, prometheus::Error>(g)
        };
        let int_gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok::<_, prometheus::Error>(g)
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        Ok(PlanMetrics {
            status: int_gauge(
                "ficus_plan_status",
                "1 for the status of the route's step plan (running, paused, done, failed, aborted).",
                &["route", "status"],
            )?,
            step_percent: gauge(
                "ficus_plan_step_percent",
                "The percentage the route's step plan put it at.",
                &["route"],
            )?,
            step_seconds: gauge(
                "ficus_plan_step_seconds",
                "Time the route's step plan has been at its current step, on the proxy's clock.",
                &["route"],
            )?,
            preflight_active: int_gauge(
                "ficus_plan_preflight_active",
                "1 while the route's next cohort is shadowed to the new side before it moves.",
                &["route"],
            )?,
            gate_value: gauge(
                "ficus_plan_gate_value",
                "A step plan gate's last judged value, by route and gate.",
                &["route", "gate"],
            )?,
            gate_threshold: gauge(
                "ficus_plan_gate_threshold",
                "A step plan gate's threshold, by route and gate.",
                &["route", "gate"],
            )?,
            steps: counter(
                "ficus_plan_steps_total",
                "Step plan events, by route and action (start, preflight, promote, done, rollback, pause, resume, abort).",
                &["route", "action"],
            )?,
            preflight_requests: counter(
                "ficus_plan_preflight_requests_total",
                "Requests of a pre-flight cohort mirrored to the new side, by route.",
                &["route"],
            )?,
            preflight_mismatches: counter(
                "ficus_plan_preflight_mismatches_total",
                "Mismatches of a pre-flight cohort (after learned noise), by route.",
                &["route"],
            )?,
        })
    }

    /// The cohort counters of a planned route (created at 0, with its event counters, so
    /// `increase()` sees the first event).
    pub fn cohort(&self, route: &str) -> Result<crate::plan::CohortMetrics, prometheus::Error> {
        for a in [
            "start",
            "preflight",
            "promote",
            "done",
            "rollback",
            "pause",
            "resume",
            "abort",
        ] {
            self.steps.get_metric_with_label_values(&[route, a])?;
        }
        Ok(crate::plan::CohortMetrics {
            mirrored: self
                .preflight_requests
                .get_metric_with_label_values(&[route])?,
            mismatches: self
                .preflight_mismatches
                .get_metric_with_label_values(&[route])?,
        })
    }

    /// Counts a plan event.
    pub fn step(&self, route: &str, action: &str) {
        if let Ok(c) = self.steps.get_metric_with_label_values(&[route, action]) {
            c.inc();
        }
    }
}

const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Metrics {
    /// Creates the families in a fresh registry.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "ficus_requests_total",
                "Requests answered, by route, backend and status class.",
            ),
            &["route", "backend", "class"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "ficus_request_duration_seconds",
                "Time from receiving a request to sending its response head, by route and backend.",
            )
            .buckets(BUCKETS.to_vec()),
            &["route", "backend"],
        )?;
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "ficus_upstream_errors_total",
                "Failed upstream exchanges, by route, backend and kind.",
            ),
            &["route", "backend", "kind"],
        )?;
        let opened = IntCounterVec::new(
            Opts::new(
                "ficus_upstream_connections_opened_total",
                "Upstream TCP connections opened, by backend.",
            ),
            &["backend"],
        )?;
        let rollout_percent = GaugeVec::new(
            Opts::new(
                "ficus_rollout_percent",
                "Share of a route's traffic sent to the new backend, in percent.",
            ),
            &["route"],
        )?;
        let rollout_changes = IntCounterVec::new(
            Opts::new(
                "ficus_rollout_changes_total",
                "Rollout percentage changes, by route and action.",
            ),
            &["route", "action"],
        )?;
        let rollbacks = IntCounter::new("ficus_rollbacks_total", "Rollback commands executed.")?;
        let overrides = IntCounterVec::new(
            Opts::new(
                "ficus_override_attempts_total",
                "Requests carrying X-Ficus-Backend, by route and whether the override was honoured.",
            ),
            &["route", "result"],
        )?;
        let missing_key = IntCounterVec::new(
            Opts::new(
                "ficus_sticky_key_missing_total",
                "Split requests without their sticky key, by route.",
            ),
            &["route"],
        )?;
        let reloads = IntCounterVec::new(
            Opts::new(
                "ficus_config_reloads_total",
                "Configuration reloads, by result.",
            ),
            &["result"],
        )?;
        let inflight = IntGauge::new(
            "ficus_inflight_requests",
            "Requests being proxied right now.",
        )?;
        let dual_write_records = IntCounterVec::new(
            Opts::new(
                "ficus_dual_write_records_total",
                "Writes on dual-write routes handed to the dual-write log, by result (written, dropped when its queue was full, error).",
            ),
            &["result"],
        )?;
        let dual_write_divergent = IntCounterVec::new(
            Opts::new(
                "ficus_dual_write_divergent_total",
                "Writes on dual-write routes that returned 2xx on exactly one side, by route.",
            ),
            &["route"],
        )?;
        let dual_write_turn_timeouts = IntCounterVec::new(
            Opts::new(
                "ficus_dual_write_turn_timeouts_total",
                "Writes on dual-write routes answered 503 because the previous write to their row had not reached both sides within the backend timeout, by route.",
            ),
            &["route"],
        )?;
        let guard_rollbacks = IntCounterVec::new(
            Opts::new(
                "ficus_guard_rollbacks_total",
                "Routes set to 0% by their rollback guard, by route and broken threshold.",
            ),
            &["route", "reason"],
        )?;
        let route_held = IntGaugeVec::new(
            Opts::new(
                "ficus_route_held",
                "1 while the route's writes are held (POST /admin/routes/{name}/hold), by route.",
            ),
            &["route"],
        )?;
        let held_writes = IntGaugeVec::new(
            Opts::new(
                "ficus_held_writes",
                "Writes waiting on their route's hold now, by route.",
            ),
            &["route"],
        )?;
        let in_flight_writes = IntGaugeVec::new(
            Opts::new(
                "ficus_in_flight_writes",
                "Writes past their routing decision whose answer (and, on dual-write routes, mirror) is not in yet, by route.",
            ),
            &["route"],
        )?;
        let hold_wait = Histogram::with_opts(
            HistogramOpts::new(
                "ficus_hold_wait_seconds",
                "How long writes waited on a route's hold before being routed.",
            )
            .buckets(BUCKETS.to_vec()),
        )?;
        let read_your_writes = IntCounterVec::new(
            Opts::new(
                "ficus_read_your_writes_total",
                "Reads sent to the side that took their sticky key's recent write instead of where the split sent them, by route.",
            ),
            &["route"],
        )?;
        registry.register(Box::new(route_held.clone()))?;
        registry.register(Box::new(held_writes.clone()))?;
        registry.register(Box::new(in_flight_writes.clone()))?;
        registry.register(Box::new(hold_wait.clone()))?;
        registry.register(Box::new(read_your_writes.clone()))?;
        registry.register(Box::new(dual_write_records.clone()))?;
        registry.register(Box::new(dual_write_divergent.clone()))?;
        registry.register(Box::new(dual_write_turn_timeouts.clone()))?;
        registry.register(Box::new(guard_rollbacks.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(opened.clone()))?;
        registry.register(Box::new(rollout_percent.clone()))?;
        registry.register(Box::new(rollout_changes.clone()))?;
        registry.register(Box::new(rollbacks.clone()))?;
        registry.register(Box::new(overrides.clone()))?;
        registry.register(Box::new(missing_key.clone()))?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(inflight.clone()))?;
        let connections_refused = IntCounter::new(
            "ficus_client_connections_refused_total",
            "Client connections answered 503 because max_connections were open.",
        )?;
        let accept_errors = IntCounter::new(
            "ficus_accept_errors_total",
            "Failed accepts of client connections (out of file descriptors, ...); each backs off.",
        )?;
        registry.register(Box::new(connections_refused.clone()))?;
        registry.register(Box::new(accept_errors.clone()))?;
        let grpc = crate::grpc::family()?;
        registry.register(Box::new(grpc.clone()))?;
        let plan = PlanMetrics::new(&registry)?;
        // Present from the start so dashboards and `increase()` see both series at zero.
        for r in ["success", "failure"] {
            reloads.get_metric_with_label_values(&[r])?;
        }
        let connections_opened = [
            opened.get_metric_with_label_values(&["legacy"])?,
            opened.get_metric_with_label_values(&["new"])?,
        ];
        Ok(Metrics {
            registry,
            requests,
            duration,
            upstream_errors,
            connections_opened,
            rollout_percent,
            rollout_changes,
            rollbacks,
            overrides,
            missing_key,
            reloads,
            inflight,
            connections_refused,
            accept_errors,
            grpc,
            dual_write_records,
            dual_write_divergent,
            dual_write_turn_timeouts,
            guard_rollbacks,
            route_held,
            held_writes,
            in_flight_writes,
            hold_wait,
            read_your_writes,
            plan,
        })
    }

    /// The handles of a route's write hold (series created at 0).
    pub(crate) fn hold(&self, route: &str) -> Result<HoldMetrics, prometheus::Error> {
        Ok(HoldMetrics {
            held: self.route_held.get_metric_with_label_values(&[route])?,
            waiting: self.held_writes.get_metric_with_label_values(&[route])?,
            in_flight: self
                .in_flight_writes
                .get_metric_with_label_values(&[route])?,
            wait_seconds: self.hold_wait.clone(),
        })
    }

    /// `ficus_read_your_writes_total{route}` (created at 0).
    pub(crate) fn read_your_writes(&self, route: &str) -> Result<IntCounter, prometheus::Error> {
        self.read_your_writes.get_metric_with_label_values(&[route])
    }

    /// The dual-write log's outcome counters (series created at 0).
    pub(crate) fn dual_write_counters(
        &self,
    ) -> Result<ficus_state::LogCounters, prometheus::Error> {
        let c = |r: &str| self.dual_write_records.get_metric_with_label_values(&[r]);
        Ok(ficus_state::LogCounters {
            written: c("written")?,
            dropped: c("dropped")?,
            failed: c("error")?,
        })
    }

    /// `ficus_dual_write_divergent_total{route}` (created at 0).
    pub(crate) fn dual_write_divergent(
        &self,
        route: &str,
    ) -> Result<IntCounter, prometheus::Error> {
        self.dual_write_divergent
            .get_metric_with_label_values(&[route])
    }

    /// `ficus_dual_write_turn_timeouts_total{route}` (created at 0).
    pub(crate) fn dual_write_turn_timeouts(
        &self,
        route: &str,
    ) -> Result<IntCounter, prometheus::Error> {
        self.dual_write_turn_timeouts
            .get_metric_with_label_values(&[route])
    }

    /// `ficus_guard_rollbacks_total{route,reason}` (created at 0); `reason` as the guard
    /// names it (`error_rate`, `p99`, `mismatch_rate`).
    pub(crate) fn guard_rollback(
        &self,
        route: &str,
        reason: &str,
    ) -> Result<IntCounter, prometheus::Error> {
        self.guard_rollbacks
            .get_metric_with_label_values(&[route, reason])
    }

    /// The registry, to gather or to register more collectors (e.g. shadow metrics) into.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition format of everything in the registry.
    pub fn encode(&self) -> String {
        prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }

    pub(crate) fn route(&self, route: &str) -> Result<RouteMetrics, prometheus::Error> {
        let backend = |side: Side| -> Result<BackendMetrics, prometheus::Error> {
            let b = side.as_str();
            let req = |class: &str| {
                self.requests
                    .get_metric_with_label_values(&[route, b, class])
            };
            let mut errors: [Option<IntCounter>; ErrorKind::COUNT] = Default::default();
            for k in [
                ErrorKind::UpstreamConnect,
                ErrorKind::UpstreamTimeout,
                ErrorKind::UpstreamIo,
            ] {
                errors[k.index()] = Some(self.upstream_errors.get_metric_with_label_values(&[
                    route,
                    b,
                    k.as_str(),
                ])?);
            }
            Ok(BackendMetrics {
                requests: [
                    req("1xx")?,
                    req("2xx")?,
                    req("3xx")?,
                    req("4xx")?,
                    req("5xx")?,
                ],
                duration: self.duration.get_metric_with_label_values(&[route, b])?,
                errors,
            })
        };
        Ok(RouteMetrics {
            backend: [backend(Side::Legacy)?, backend(Side::New)?],
            override_honoured: self
                .overrides
                .get_metric_with_label_values(&[route, "honoured"])?,
            override_rejected: self
                .overrides
                .get_metric_with_label_values(&[route, "rejected"])?,
            missing_key: self.missing_key.get_metric_with_label_values(&[route])?,
            percent: self
                .rollout_percent
                .get_metric_with_label_values(&[route])?,
        })
    }

    pub(crate) fn rollout_changed(&self, route: &str, action: &str) {
        if let Ok(c) = self
            .rollout_changes
            .get_metric_with_label_values(&[route, action])
        {
            c.inc();
        }
    }

    pub(crate) fn reloaded(&self, ok: bool) {
        if let Ok(c) =
            self.reloads
                .get_metric_with_label_values(&[if ok { "success" } else { "failure" }])
        {
            c.inc();
        }
    }

    /// Drops the series of a route that a reload removed, so the exposition does not keep
    /// reporting a stale rollout gauge for it.
    pub(crate) fn forget_route(&self, route: &str) {
        let _ = self.rollout_percent.remove_label_values(&[route]);
        let _ = self.route_held.remove_label_values(&[route]);
        let _ = self.held_writes.remove_label_values(&[route]);
        let _ = self.in_flight_writes.remove_label_values(&[route]);
    }
}
