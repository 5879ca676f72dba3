//! `migrate watch`: while both stores take writes, keep checking that SQLite (legacy) and
//! PostgreSQL (new) agree, and say so in a report and in metrics.
//!
//! # What it checks
//! - **Written keys.** The proxy records the key of every write on a dual-write route (see the
//!   contract below). Each key is re-verified once the settle window (`--settle-ms`) has passed
//!   since the write: the row is read from both sides by that key and compared canonically
//!   ([`crate::drift`]). A key that differs is checked **once more** a settle window later and
//!   reported only if it still differs, so writes still in flight are not false alarms.
//! - **Divergent writes** (`divergent = 1`: exactly one side returned 2xx) are reported at
//!   once, and their key is re-verified like any other.
//! - **Sweeps**, every `--sweep-interval-s`: writes that bypassed the proxy (a script, an
//!   operator's UPDATE) are found here. The first sweep, and every `--full-sweep-every`-th, is a
//!   full one: chunked checksums of every watched table through [`crate::verify()`]. The others
//!   read only rows whose `updated_at` is at or after a watermark (the previous sweep's start
//!   minus the settle window and a 30 s margin) on both sides — tables without `updated_at`
//!   (or whose legacy values cannot be compared in SQL) get a full sweep every time. A sweep's
//!   differences are re-checked a settle window later before they are reported, like keys.
//! - Drift is classified `missing_in_new`, `missing_in_legacy` or `value_differs` (with the
//!   column and both values). A drifting row that agrees again is reported `resolved`.
//!
//! `--once` runs one pass — settle, re-verify the keys written in the last `--lookback-s`
//! (default an hour) up to the moment it started, one full sweep, the re-checks — and the CLI
//! exits non-zero when drift or a divergent write was found.
//!
//! # Report and metrics
//! Every event ([`WatchEvent`]: drift, resolved, divergent write, sweep, route mapped,
//! warning) goes to the caller and, with `--report FILE`, is appended to FILE as one JSON
//! line. Metrics (registered in the migrator's registry, served by `--metrics-addr`):
//! `ficus_drift_rows{table,class}` (gauge: rows drifting now), `ficus_drift_keys_checked_total{table}`,
//! `ficus_drift_verify_lag_seconds` (age of the oldest written key not yet re-verified),
//! `ficus_drift_last_sweep_timestamp_seconds`, and `ficus_drift_divergent_writes_total{route}`.
//! Every `{table,class}` and `{table}` series exists at 0 from the start.
//!
//! # Contract with the proxy
//! The proxy's state store (`[proxy] state`) holds table `dual_writes`: in a SQLite state
//! store `dual_writes`, in a PostgreSQL one `ficus_proxy.dual_writes` (appended to by every
//! replica; the tables are `ficus-state`'s, defined once there); the proxy and this reader both
//! create it if absent. `--proxy-state` is the SQLite file or the `postgres://` URL (the same
//! database as `--target` or another). For every write
//! (non-GET/HEAD request) on a route with `dual_write = true` and a `key = "path:PARAM"`
//! setting, the proxy appends one row, after both sides answered (or failed):
//!
//! | column | meaning |
//! | --- | --- |
//! | `id` | increasing (AUTOINCREMENT; `bigserial` in PostgreSQL); the reader's cursor |
//! | `at` | when the write was stamped, UTC, `%Y-%m-%dT%H:%M:%S.%6fZ` (the `X-Ficus-Request-Time` value sent to both sides) |
//! | `route` | route name |
//! | `key` | the value of the route's key in this request, e.g. `TASK-101` |
//! | `method` | HTTP method |
//! | `primary_side` | `legacy` or `new`: whose answer the client got |
//! | `legacy_status`, `new_status` | HTTP status of each side; NULL when not sent or transport failure |
//! | `divergent` | 1 when exactly one side returned 2xx, else 0 |
//!
//! The reader reads rows past the highest id it has read. In SQLite ids commit in order; in
//! PostgreSQL several replicas draw ids from one sequence and a lower id can commit after a
//! higher one was read. So every id skipped below the highest read is remembered as a gap and
//! looked up again on every poll for [`GAP_GRACE`] after it was noticed; a row that commits
//! later than that (or an id whose insert failed or rolled back, which never appears) is left
//! to the sweeps. `--once` reads up to the highest id committed when it starts, gaps below it
//! included while the pass runs.
//!
//! Which table and column a route's key names comes from the migration config:
//!
//! ```toml
//! [watch.routes.tasks-write]      # route name, as in the proxy config
//! table = "tasks"                 # SQLite table name
//! column = "task_id"              # a UNIQUE (or primary key) column of it
//!
//! [watch.tables.task_events]      # per table (SQLite name), all optional:
//! ignore_columns = ["id"]         # side-local columns (per-side surrogate ids): left out of
//!                                 # comparisons; without its key the table is a multiset
//! # key = "task_id"               # the column rows are shown by (default: the route's column,
//!                                 # else the primary key)
//! # updated_at = "modified_at"    # the change-time column (default: one named updated_at)
//! # skip = true                   # not watched (nor written back by rollback)
//! ```
//!
//! With no route entry, the watch looks for the key among the UNIQUE and single-column
//! primary key columns of every table (the one that holds the key's value on either side;
//! text columns first) and says which it picked in a `route_mapped` event.
//!
//! # Time
//! Every verdict reads time from [`WatchOptions::clock`] (the system clock unless a test
//! passes a [`ficus_core::ManualClock`]): settle windows and re-check due times, sweep
//! intervals and watermarks, the log's gap grace, the verify lag, event stamps. Only the
//! loop's wake-up (`tick`) is real time.
//!
//! # Layout
//! `options`; `event` (what it says); `metrics`; `write_log` (the proxy's dual-write log);
//! `route_map` (route → table and column); `pending` (keys waiting for their check, and the
//! check); `sides` (both stores, rows by key); `report` (events out, drift kept, summary);
//! `sweep`. This module wires them and runs the loop.

mod event;
mod metrics;
mod options;
mod pending;
mod report;
mod route_map;
mod sides;
mod sweep;
mod write_log;

use std::future::Future;

use ficus_core::SharedClock;
use ficus_state::DualWriteEntry;

use self::event::iso;
pub use self::event::{FoundBy, WatchEvent, WatchSummary};
use self::metrics::DriftMetrics;
pub use self::options::WatchOptions;
use self::pending::{Pending, PendingKeys};
use self::report::Reporter;
use self::route_map::RouteMap;
use self::sides::Sides;
use self::sweep::Sweeper;
pub use self::write_log::GAP_GRACE;
use self::write_log::{parse_at, WriteLog};
use crate::config::MigrationConfig;
use crate::drift::{key_value_from_text, table_views};
use crate::error::{DualWriteError, DwResult};
use crate::metrics::Metrics;
use crate::verify::plan_for;

/// Watch until `stop` completes (or one pass with `opts.once`). Events go to `on_event` and
/// the report file; metrics are registered in `metrics`.
pub async fn watch<F: FnMut(&WatchEvent) + Send>(
    opts: &WatchOptions,
    config: &MigrationConfig,
    metrics: &Metrics,
    stop: impl Future<Output = ()>,
    on_event: F,
) -> DwResult<WatchSummary> {
    let clock = opts.clock.clone();
    let plan = plan_for(&opts.source, &opts.target, &opts.schema, config).await?;
    let cfg = &config.watch;
    let views = table_views(&plan, cfg)?;
    let names: Vec<String> = views.iter().map(|v| v.name().to_string()).collect();
    let dm = DriftMetrics::register(&metrics.registry)?;
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    dm.zero(&name_refs, cfg.routes.keys());

    // What the legacy stores (for watermark queries), and the UNIQUE columns (for routes).
    let sides = Sides::open(opts.source.clone(), opts.target.clone(), plan, views).await?;
    let report = match &opts.report {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|source| DualWriteError::Report {
                    path: p.clone(),
                    source,
                })?,
        ),
        None => None,
    };
    let start = clock.unix_us();
    let log = match &opts.proxy_state {
        Some(p) => {
            let cutoff = iso(start - opts.lookback.as_micros() as i64);
            Some(WriteLog::open(p, &cutoff, opts.once, clock.clone()).await?)
        }
        None => None,
    };
    let settle_us = opts.settle.as_micros() as i64;
    let mut w = Watcher {
        opts,
        reporter: Reporter::new(clock.clone(), names, report, Box::new(on_event), dm),
        sides,
        pending: PendingKeys::new(settle_us),
        routes: RouteMap::new(cfg.routes.clone(), clock.clone()),
        log,
        sweeper: Sweeper::new(settle_us, clock.clone()),
        clock,
    };
    w.run(start, stop).await?;
    Ok(w.reporter.finish())
}

/// One watch: its parts, and the loop that drives them.
struct Watcher<'a> {
    opts: &'a WatchOptions,
    clock: SharedClock,
    sides: Sides,
    reporter: Reporter<'a>,
    pending: PendingKeys,
    routes: RouteMap,
    log: Option<WriteLog>,
    sweeper: Sweeper,
}

impl Watcher<'_> {
    async fn run(&mut self, start: i64, stop: impl Future<Output = ()>) -> DwResult<()> {
        tokio::pin!(stop);
        let settle_us = self.opts.settle.as_micros() as i64;
        let mut next_sweep = start + settle_us;
        loop {
            self.poll_log().await?;
            let now = self.clock.unix_us();
            self.pending
                .check_due(now, &self.sides, &mut self.reporter)
                .await?;
            let now = self.clock.unix_us();
            if now >= next_sweep && (!self.opts.once || self.sweeper.done == 0) {
                let every = self.opts.full_sweep_every.max(1);
                let full = self.sweeper.done.is_multiple_of(every);
                self.sweeper
                    .sweep(full, &self.sides, &mut self.reporter, &mut self.pending)
                    .await?;
                next_sweep = self.clock.unix_us() + self.opts.sweep_interval.as_micros() as i64;
            }
            self.sweeper
                .rechecks_due(&self.sides, &mut self.reporter)
                .await?;
            self.update_lag();
            if self.opts.once
                && self.sweeper.done >= 1
                && self.pending.is_empty()
                && !self.sweeper.rechecks_pending()
            {
                return Ok(());
            }
            tokio::select! {
                _ = &mut stop => return Ok(()),
                _ = tokio::time::sleep(self.opts.tick) => {}
            }
        }
    }

    /// `ficus_drift_verify_lag_seconds`: the age of the oldest written key not re-verified.
    fn update_lag(&self) {
        let now = self.clock.unix_us();
        let oldest = self.pending.oldest_written_at();
        self.reporter
            .metrics
            .verify_lag
            .set(oldest.map_or(0.0, |t| ((now - t).max(0)) as f64 / 1e6));
    }

    /// Read the dual-write log: divergent writes reported, every key queued for its check a
    /// settle window after its write.
    async fn poll_log(&mut self) -> DwResult<()> {
        let Some(log) = &mut self.log else {
            return Ok(());
        };
        let rows = log.poll().await?;
        let settle = self.opts.settle.as_micros() as i64;
        for DualWriteEntry {
            at,
            route,
            key,
            method,
            primary_side: primary,
            legacy_status: ls,
            new_status: ns,
            divergent,
            ..
        } in rows
        {
            self.reporter.summary.written_keys += 1;
            let target = self
                .routes
                .target(&route, &key, &self.sides, &mut self.reporter)
                .await?;
            let written_at = parse_at(&at).unwrap_or_else(|| self.clock.unix_us());
            if divergent != 0 {
                self.reporter.summary.divergent_writes += 1;
                self.reporter
                    .metrics
                    .divergent
                    .with_label_values(&[route.as_str()])
                    .inc();
                let table = target.map(|t| self.sides.views[t.view].name().to_string());
                let now = self.reporter.now_iso();
                self.reporter.emit(WatchEvent::DivergentWrite {
                    at: now,
                    written_at: at.clone(),
                    route: route.clone(),
                    key: key.clone(),
                    method,
                    primary_side: primary,
                    legacy_status: ls,
                    new_status: ns,
                    table,
                });
            }
            let Some(t) = target else { continue };
            let v = &self.sides.views[t.view];
            let column = &v.plan.columns[t.col];
            let kv = vec![key_value_from_text(column.conversion.pg_type, &key)];
            let Some(canon) = v.canon_key(&[t.col], &kv) else {
                let msg = format!(
                    "route {route}: key {key:?} is not a valid {} value for {}.{}",
                    column.conversion.pg_type.sql(),
                    v.name(),
                    column.name
                );
                self.reporter.warn(msg);
                continue;
            };
            self.pending.enqueue(
                (t.view, vec![t.col], canon),
                Pending {
                    key: kv,
                    written_at: Some(written_at),
                    due: written_at + settle,
                    attempt: 0,
                    found_by: FoundBy::WrittenKey,
                    route: Some(route),
                },
            );
        }
        Ok(())
    }
}
