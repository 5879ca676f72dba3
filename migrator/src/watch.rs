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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use prometheus::{Gauge, IntCounterVec, IntGaugeVec, Opts, Registry};
use serde::{Deserialize, Serialize};

use ficus_state::{DualWriteEntry, DualWriteReader, StateLocation};

use crate::config::MigrationConfig;
use crate::config::WatchConfig;
use crate::convert::utc_text;
use crate::convert::PgType;
use crate::drift::{
    compare, drift_line, key_from_display, key_value_from_text, source_rows_by_key, table_views,
    target_rows_by_key, verify_views, Drift, DriftClass, LegacyRow, TableView,
};
use crate::error::{DualWriteError, DwResult, MigrateError};
use crate::introspect::{introspect, quote_sqlite};
use crate::metrics::Metrics;
use crate::plan::{qualified, Plan};
use crate::rows::{canon_source_row, scan_target, CanonRow};
use crate::source::{open_source, read_rows_where, KeyValue};
use crate::verify::Difference;
use crate::writeback::LegacyStyle;

/// How long an id skipped below the highest id read is looked for (see the module docs).
pub const GAP_GRACE: Duration = Duration::from_secs(30);
/// Gaps remembered at most; a larger jump in ids is not tracked id by id.
const MAX_GAP_IDS: i64 = 10_000;

/// Margin added to the settle window when a watermark sweep looks back.
const WATERMARK_MARGIN_US: i64 = 30_000_000;
/// Dual-write rows read per poll.
const POLL_ROWS: i64 = 20_000;

/// How `migrate watch` runs.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    pub source: PathBuf,
    pub target: String,
    pub schema: String,
    /// The proxy's state store (written keys); without it only sweeps run.
    pub proxy_state: Option<PathBuf>,
    /// How long after a write its key is re-verified (and between a difference and its
    /// re-check).
    pub settle: Duration,
    pub sweep_interval: Duration,
    /// Every Nth sweep is a full (checksum) sweep; the first always is.
    pub full_sweep_every: u32,
    /// One pass, then return.
    pub once: bool,
    /// Append events as JSON lines here.
    pub report: Option<PathBuf>,
    /// Keys written this long before the start are re-verified too.
    pub lookback: Duration,
    /// How often the loop wakes up.
    pub tick: Duration,
}

impl WatchOptions {
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
        }
    }
}

/// How a difference was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FoundBy {
    WrittenKey,
    Sweep,
}

/// What the watch reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WatchEvent {
    /// A row that still differs after its re-check.
    Drift {
        at: String,
        found_by: FoundBy,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        route: Option<String>,
        #[serde(flatten)]
        drift: Drift,
    },
    /// A row reported drifting agrees again.
    Resolved {
        at: String,
        table: String,
        key: String,
    },
    /// The proxy recorded a write that succeeded on one side only.
    DivergentWrite {
        at: String,
        written_at: String,
        route: String,
        key: String,
        method: String,
        primary_side: String,
        legacy_status: Option<i64>,
        new_status: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        table: Option<String>,
    },
    /// A sweep finished.
    Sweep {
        at: String,
        kind: String,
        tables: Vec<String>,
        rows_checked: u64,
        /// Rows that differed (to be re-checked before they are reported).
        differing: u64,
        seconds: f64,
    },
    /// Which table and column a route's keys were found in.
    RouteMapped {
        at: String,
        route: String,
        table: String,
        column: String,
        how: String,
    },
    Warning {
        at: String,
        message: String,
    },
}

/// What a watch found, when it returns.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WatchSummary {
    /// No row drifting and no divergent write seen.
    pub clean: bool,
    /// Rows drifting now.
    pub drift: Vec<Drift>,
    pub divergent_writes: u64,
    /// Written keys read from the proxy state.
    pub written_keys: u64,
    /// Rows compared (key checks and sweeps).
    pub keys_checked: u64,
    pub sweeps: u64,
    /// Tables watched.
    pub tables: Vec<String>,
    /// Route → `table.column` and how it was chosen.
    pub routes: BTreeMap<String, String>,
    pub warnings: Vec<String>,
}

impl WatchSummary {
    /// Text for people.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        for (r, m) in &self.routes {
            let _ = writeln!(s, "route {r}: {m}");
        }
        for w in &self.warnings {
            let _ = writeln!(s, "warning: {w}");
        }
        for d in &self.drift {
            let _ = writeln!(s, "{}", drift_line(d));
        }
        let _ = writeln!(
            s,
            "watch: {} table(s), {} written key(s), {} row(s) checked, {} sweep(s): {}{}",
            self.tables.len(),
            self.written_keys,
            self.keys_checked,
            self.sweeps,
            if self.drift.is_empty() {
                "no drift".to_string()
            } else {
                format!("{} DRIFTING row(s)", self.drift.len())
            },
            if self.divergent_writes > 0 {
                format!(", {} DIVERGENT write(s)", self.divergent_writes)
            } else {
                String::new()
            }
        );
        s
    }
}

impl WatchEvent {
    /// One line for people.
    pub fn text(&self) -> String {
        match self {
            WatchEvent::Drift {
                at, found_by, drift, ..
            } => format!(
                "{at} DRIFT ({}) {}",
                match found_by {
                    FoundBy::WrittenKey => "written key",
                    FoundBy::Sweep => "sweep",
                },
                drift_line(drift)
            ),
            WatchEvent::Resolved { at, table, key } => format!("{at} resolved {table} {key}"),
            WatchEvent::DivergentWrite {
                at,
                written_at,
                route,
                key,
                method,
                primary_side,
                legacy_status,
                new_status,
                ..
            } => format!(
                "{at} DIVERGENT WRITE route {route} key {key}: {method} at {written_at}, primary {primary_side}, legacy {} new {}",
                legacy_status.map_or("-".into(), |s| s.to_string()),
                new_status.map_or("-".into(), |s| s.to_string())
            ),
            WatchEvent::Sweep {
                at,
                kind,
                tables,
                rows_checked,
                differing,
                seconds,
            } => format!(
                "{at} {kind} sweep of {}: {rows_checked} row(s) checked, {differing} differing, {seconds:.2} s",
                tables.join(", ")
            ),
            WatchEvent::RouteMapped {
                at,
                route,
                table,
                column,
                how,
            } => format!("{at} route {route} → {table}.{column} ({how})"),
            WatchEvent::Warning { at, message } => format!("{at} warning: {message}"),
        }
    }
}

/// The drift metrics, registered in a migrator [`Metrics`] registry.
#[derive(Clone)]
pub struct DriftMetrics {
    pub rows: IntGaugeVec,
    pub keys_checked: IntCounterVec,
    pub verify_lag: Gauge,
    pub last_sweep: Gauge,
    pub divergent: IntCounterVec,
}

fn merr(e: prometheus::Error) -> DualWriteError {
    DualWriteError::Internal(format!("metrics: {e}"))
}

impl DriftMetrics {
    /// Create and register them.
    pub fn register(registry: &Registry) -> DwResult<DriftMetrics> {
        let rows = IntGaugeVec::new(
            Opts::new(
                "ficus_drift_rows",
                "Rows that differ between legacy and new now, by class",
            ),
            &["table", "class"],
        )
        .map_err(merr)?;
        let keys_checked = IntCounterVec::new(
            Opts::new(
                "ficus_drift_keys_checked_total",
                "Rows compared between legacy and new (written keys and sweeps)",
            ),
            &["table"],
        )
        .map_err(merr)?;
        let verify_lag = Gauge::new(
            "ficus_drift_verify_lag_seconds",
            "Age of the oldest written key not yet re-verified",
        )
        .map_err(merr)?;
        let last_sweep = Gauge::new(
            "ficus_drift_last_sweep_timestamp_seconds",
            "Unix time the last sweep finished",
        )
        .map_err(merr)?;
        let divergent = IntCounterVec::new(
            Opts::new(
                "ficus_drift_divergent_writes_total",
                "Dual writes that succeeded on one side only",
            ),
            &["route"],
        )
        .map_err(merr)?;
        for c in [
            Box::new(rows.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(keys_checked.clone()),
            Box::new(verify_lag.clone()),
            Box::new(last_sweep.clone()),
            Box::new(divergent.clone()),
        ] {
            registry.register(c).map_err(merr)?;
        }
        Ok(DriftMetrics {
            rows,
            keys_checked,
            verify_lag,
            last_sweep,
            divergent,
        })
    }
}

/// Now, microseconds since 1970.
fn now_us() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64
}

/// `2025-01-01T10:00:00.000000Z`.
fn iso(unix_us: i64) -> String {
    let mut s = utc_text(unix_us);
    s.replace_range(10..11, "T");
    s.push('Z');
    s
}

fn parse_at(s: &str) -> Option<i64> {
    let p = crate::convert::parse_datetime(s)?;
    Some(p.unix_us - p.offset_s.unwrap_or(0) * 1_000_000)
}

/// Where a route's keys live.
#[derive(Debug, Clone)]
struct RouteTarget {
    view: usize,
    col: usize,
}

type PendKey = (usize, Vec<usize>, Vec<u8>);

#[derive(Debug, Clone)]
struct Pending {
    key: Vec<KeyValue>,
    /// When the write was stamped (written keys only).
    written_at: Option<i64>,
    due: i64,
    attempt: u8,
    found_by: FoundBy,
    route: Option<String>,
}

struct ProxyState {
    source: DualWriteReader,
    /// The highest id read.
    cursor: i64,
    /// `--once`: read up to this id only.
    until: Option<i64>,
    /// Ids below `cursor` not read yet (not committed yet, or never), with when they were
    /// noticed; looked up on every poll until [`GAP_GRACE`] has passed.
    gaps: BTreeMap<i64, i64>,
}

impl ProxyState {
    /// The rows committed since the last call: new ones past the cursor, and ones that filled
    /// a gap. Remembers the gaps the new rows leave.
    async fn poll(&mut self) -> DwResult<Vec<DualWriteEntry>> {
        let now = now_us();
        let until = self.until.unwrap_or(i64::MAX);
        let mut rows = self
            .source
            .rows_after(self.cursor, until, POLL_ROWS)
            .await?;
        for r in &rows {
            let missing = r.id - self.cursor - 1;
            if (1..=MAX_GAP_IDS).contains(&missing) {
                for id in self.cursor + 1..r.id {
                    self.gaps.insert(id, now);
                }
            } else if missing > MAX_GAP_IDS {
                tracing::debug!(
                    from = self.cursor + 1,
                    to = r.id - 1,
                    "dual_writes: ids skipped"
                );
            }
            self.cursor = r.id;
        }
        let grace = GAP_GRACE.as_micros() as i64;
        // Not new rows' own gaps: they were noticed just now and were not there when read.
        let look: Vec<i64> = self
            .gaps
            .iter()
            .filter(|(_, &noticed)| noticed < now)
            .map(|(&id, _)| id)
            .take(MAX_GAP_IDS as usize)
            .collect();
        if !look.is_empty() {
            let filled = self.source.rows_with_ids(&look).await?;
            for r in &filled {
                self.gaps.remove(&r.id);
            }
            rows.extend(filled);
        }
        self.gaps.retain(|_, noticed| now - *noticed <= grace);
        Ok(rows)
    }
}

struct Watcher<'a, F: FnMut(&WatchEvent)> {
    opts: &'a WatchOptions,
    cfg: &'a WatchConfig,
    plan: Plan,
    views: Arc<Vec<TableView>>,
    styles: Vec<Option<LegacyStyle>>,
    client: tokio_postgres::Client,
    /// (view, column) of every UNIQUE or single-column primary key column.
    unique: Vec<(usize, usize)>,
    routes: HashMap<String, RouteTarget>,
    warned_routes: HashSet<String>,
    /// Routes whose keys were not found: not probed again before this time.
    unmapped_until: HashMap<String, i64>,
    proxy: Option<ProxyState>,
    pending: HashMap<PendKey, Pending>,
    /// Keyless tables whose sweep differed: due time.
    table_rechecks: HashMap<usize, i64>,
    drifting: BTreeMap<(usize, String), Drift>,
    watermarks: HashMap<usize, i64>,
    metrics: DriftMetrics,
    report: Option<std::fs::File>,
    on_event: std::sync::Mutex<F>,
    summary: WatchSummary,
    sweeps_done: u32,
}

/// Watch until `stop` completes (or one pass with `opts.once`). Events go to `on_event` and
/// the report file; metrics are registered in `metrics`.
pub async fn watch<F: FnMut(&WatchEvent) + Send>(
    opts: &WatchOptions,
    config: &MigrationConfig,
    metrics: &Metrics,
    stop: impl Future<Output = ()>,
    on_event: F,
) -> DwResult<WatchSummary> {
    let plan = crate::verify::plan_for(&opts.source, &opts.target, &opts.schema, config).await?;
    let cfg = &config.watch;
    let views = table_views(&plan, cfg)?;
    let dm = DriftMetrics::register(&metrics.registry)?;
    for v in &views {
        dm.keys_checked.with_label_values(&[v.name()]).reset();
        for c in DriftClass::ALL {
            dm.rows.with_label_values(&[v.name(), c.as_str()]).set(0);
        }
    }
    for r in cfg.routes.keys() {
        dm.divergent.with_label_values(&[r.as_str()]).reset();
    }
    dm.verify_lag.set(0.0);
    dm.last_sweep.set(0.0);
    let views = Arc::new(views);

    // What the legacy stores (for watermark queries), and the UNIQUE columns (for routes).
    let (src, v2) = (opts.source.clone(), views.clone());
    let (styles, unique) = tokio::task::spawn_blocking(move || -> DwResult<_> {
        let conn = open_source(&src)?;
        let mut styles = Vec::new();
        for v in v2.iter() {
            styles.push(match v.updated_at {
                Some(_) => Some(LegacyStyle::learn(&conn, &v.plan)?),
                None => None,
            });
        }
        let schema = introspect(&conn)?;
        let mut unique = Vec::new();
        for (vi, v) in v2.iter().enumerate() {
            let Some(info) = schema.tables.iter().find(|t| t.name == v.plan.source_name) else {
                continue;
            };
            let mut cols: Vec<String> = Vec::new();
            if info.primary_key.len() == 1 {
                cols.push(info.primary_key[0].clone());
            }
            for ix in &info.indexes {
                if ix.unique && ix.partial.is_none() && ix.columns.len() == 1 {
                    if let Some(c) = &ix.columns[0].column {
                        cols.push(c.clone());
                    }
                }
            }
            for c in cols {
                if let Some(ci) = v.column(&c) {
                    if !unique.contains(&(vi, ci)) {
                        unique.push((vi, ci));
                    }
                }
            }
        }
        Ok((styles, unique))
    })
    .await
    .map_err(|e| DualWriteError::Internal(format!("reading the source: {e}")))??;

    let client = crate::pg::connect(&opts.target).await?;
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
    let start = now_us();
    let proxy = match &opts.proxy_state {
        Some(p) => {
            let source = DualWriteReader::open(&StateLocation::from_path(p)).await?;
            let cutoff = iso(start - opts.lookback.as_micros() as i64);
            let cursor = source.max_id(Some(&cutoff)).await?;
            let until = if opts.once {
                Some(source.max_id(None).await?)
            } else {
                None
            };
            Some(ProxyState {
                source,
                cursor,
                until,
                gaps: BTreeMap::new(),
            })
        }
        None => None,
    };
    let mut w = Watcher {
        opts,
        cfg,
        summary: WatchSummary {
            tables: views.iter().map(|v| v.name().to_string()).collect(),
            ..WatchSummary::default()
        },
        plan,
        views,
        styles,
        client,
        unique,
        routes: HashMap::new(),
        warned_routes: HashSet::new(),
        unmapped_until: HashMap::new(),
        proxy,
        pending: HashMap::new(),
        table_rechecks: HashMap::new(),
        drifting: BTreeMap::new(),
        watermarks: HashMap::new(),
        metrics: dm,
        report,
        on_event: std::sync::Mutex::new(on_event),
        sweeps_done: 0,
    };
    w.run(start, stop).await?;
    let mut s = std::mem::take(&mut w.summary);
    s.drift = w.drifting.values().cloned().collect();
    s.clean = s.drift.is_empty() && s.divergent_writes == 0;
    Ok(s)
}

impl<F: FnMut(&WatchEvent)> Watcher<'_, F> {
    fn settle_us(&self) -> i64 {
        self.opts.settle.as_micros() as i64
    }

    fn emit(&mut self, e: WatchEvent) {
        if let Some(f) = &mut self.report {
            if let Ok(line) = serde_json::to_string(&e) {
                if let Err(err) = writeln!(f, "{line}").and_then(|_| f.flush()) {
                    tracing::warn!("writing the watch report: {err}");
                }
            }
        }
        if let WatchEvent::Warning { message, .. } = &e {
            self.summary.warnings.push(message.clone());
        }
        if let Ok(mut f) = self.on_event.lock() {
            (*f)(&e);
        }
    }

    fn warn(&mut self, message: String) {
        self.emit(WatchEvent::Warning {
            at: iso(now_us()),
            message,
        });
    }

    async fn run(&mut self, start: i64, stop: impl Future<Output = ()>) -> DwResult<()> {
        tokio::pin!(stop);
        let mut next_sweep = start + self.settle_us();
        loop {
            self.poll_proxy().await?;
            self.check_due().await?;
            let now = now_us();
            if now >= next_sweep && (!self.opts.once || self.sweeps_done == 0) {
                let every = self.opts.full_sweep_every.max(1);
                let full = self.sweeps_done.is_multiple_of(every);
                self.sweep(full).await?;
                self.sweeps_done += 1;
                next_sweep = now_us() + self.opts.sweep_interval.as_micros() as i64;
            }
            self.table_rechecks_due().await?;
            self.update_lag();
            if self.opts.once
                && self.sweeps_done >= 1
                && self.pending.is_empty()
                && self.table_rechecks.is_empty()
            {
                return Ok(());
            }
            tokio::select! {
                _ = &mut stop => return Ok(()),
                _ = tokio::time::sleep(self.opts.tick) => {}
            }
        }
    }

    fn update_lag(&self) {
        let now = now_us();
        let oldest = self.pending.values().filter_map(|p| p.written_at).min();
        self.metrics
            .verify_lag
            .set(oldest.map_or(0.0, |t| ((now - t).max(0)) as f64 / 1e6));
    }

    fn set_gauges(&self, view: usize) {
        let name = self.views[view].name();
        for c in DriftClass::ALL {
            let n = self
                .drifting
                .range((view, String::new())..(view + 1, String::new()))
                .filter(|(_, d)| d.class == c)
                .count();
            self.metrics
                .rows
                .with_label_values(&[name, c.as_str()])
                .set(n as i64);
        }
    }

    fn report_drift(&mut self, view: usize, d: Drift, found_by: FoundBy, route: Option<String>) {
        let id = (view, d.key.clone());
        if self.drifting.get(&id) == Some(&d) {
            return;
        }
        self.drifting.insert(id, d.clone());
        self.set_gauges(view);
        self.emit(WatchEvent::Drift {
            at: iso(now_us()),
            found_by,
            route,
            drift: d,
        });
    }

    fn resolve(&mut self, view: usize, key: &str) {
        if self.drifting.remove(&(view, key.to_string())).is_some() {
            self.set_gauges(view);
            let table = self.views[view].name().to_string();
            self.emit(WatchEvent::Resolved {
                at: iso(now_us()),
                table,
                key: key.to_string(),
            });
        }
    }

    /// Queue a key for a check at `due` (keeping the earliest write time, the latest due).
    fn enqueue(&mut self, k: PendKey, p: Pending) {
        let settle = self.settle_us();
        match self.pending.get_mut(&k) {
            Some(old) => {
                old.written_at = match (old.written_at, p.written_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                if p.due > old.due {
                    // A key written again restarts its settle window, but a key written
                    // without pause is still checked within 5 windows of its first write.
                    let cap = old.written_at.map_or(i64::MAX, |w| w + 5 * settle);
                    old.due = p.due.min(cap).max(old.due);
                }
                if p.found_by == FoundBy::WrittenKey {
                    // A new write restarts the settle window and the re-check.
                    old.attempt = 0;
                    old.found_by = FoundBy::WrittenKey;
                    old.route = p.route.or(old.route.take());
                }
            }
            None => {
                self.pending.insert(k, p);
            }
        }
    }

    async fn poll_proxy(&mut self) -> DwResult<()> {
        let Some(ps) = &mut self.proxy else {
            return Ok(());
        };
        let rows = ps.poll().await?;
        let settle = self.settle_us();
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
            self.summary.written_keys += 1;
            let target = self.route_target(&route, &key).await?;
            let written_at = parse_at(&at).unwrap_or_else(now_us);
            if divergent != 0 {
                self.summary.divergent_writes += 1;
                self.metrics
                    .divergent
                    .with_label_values(&[route.as_str()])
                    .inc();
                let table = target
                    .as_ref()
                    .map(|t| self.views[t.view].name().to_string());
                self.emit(WatchEvent::DivergentWrite {
                    at: iso(now_us()),
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
            let v = &self.views[t.view];
            let kv = vec![key_value_from_text(
                v.plan.columns[t.col].conversion.pg_type,
                &key,
            )];
            let Some(canon) = v.canon_key(&[t.col], &kv) else {
                let msg = format!(
                    "route {route}: key {key:?} is not a valid {} value for {}.{}",
                    v.plan.columns[t.col].conversion.pg_type.sql(),
                    v.name(),
                    v.plan.columns[t.col].name
                );
                self.warn(msg);
                continue;
            };
            self.enqueue(
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

    /// The table and column of a route's keys: configured, else found by `sample` among the
    /// UNIQUE columns.
    async fn route_target(&mut self, route: &str, sample: &str) -> DwResult<Option<RouteTarget>> {
        if let Some(t) = self.routes.get(route) {
            return Ok(Some(t.clone()));
        }
        if self
            .unmapped_until
            .get(route)
            .is_some_and(|t| *t > now_us())
        {
            return Ok(None);
        }
        let rc = self.cfg.routes.get(route).cloned().unwrap_or_default();
        let find_view = |name: &str| {
            self.views
                .iter()
                .position(|v| v.plan.source_name == name || v.plan.name == name)
        };
        let mut how = String::new();
        let found: Option<RouteTarget> = match (&rc.table, &rc.column) {
            (Some(t), Some(c)) => {
                let vi = find_view(t).ok_or_else(|| {
                    DualWriteError::Config(format!(
                        "routes.{route}: table {t:?} is not in the plan (or is skipped)"
                    ))
                })?;
                let ci = self.views[vi].column(c).ok_or_else(|| {
                    DualWriteError::Config(format!(
                        "routes.{route}: table {t} has no compared column {c:?}"
                    ))
                })?;
                how = if self.unique.contains(&(vi, ci)) {
                    "configured".into()
                } else {
                    format!("configured; WARNING: {t}.{c} is not a UNIQUE column, a key may match several rows")
                };
                Some(RouteTarget { view: vi, col: ci })
            }
            (t, c) => {
                // Candidates: UNIQUE columns (of the table, with the name, when given).
                let cands: Vec<(usize, usize)> = self
                    .unique
                    .iter()
                    .copied()
                    .filter(|(vi, ci)| {
                        t.as_ref().is_none_or(|t| {
                            self.views[*vi].plan.source_name == *t
                                || self.views[*vi].plan.name == *t
                        }) && c
                            .as_ref()
                            .is_none_or(|c| self.views[*vi].plan.columns[*ci].name == *c)
                    })
                    .collect();
                let mut holding = Vec::new();
                for (vi, ci) in &cands {
                    if self.holds(*vi, *ci, sample).await? {
                        holding.push((*vi, *ci));
                    }
                }
                // Text columns first (a numeric key also matches an integer id).
                holding.sort_by_key(|(vi, ci)| {
                    !matches!(
                        self.views[*vi].plan.columns[*ci].conversion.pg_type,
                        PgType::Text | PgType::Varchar(_)
                    )
                });
                match holding.first() {
                    Some(&(vi, ci)) => {
                        let names: Vec<String> = holding
                            .iter()
                            .map(|(v, c)| {
                                format!(
                                    "{}.{}",
                                    self.views[*v].name(),
                                    self.views[*v].plan.columns[*c].name
                                )
                            })
                            .collect();
                        how = if names.len() == 1 {
                            format!(
                                "guessed: the only UNIQUE column holding {sample:?}; set [watch.routes.{route}] table and column to choose"
                            )
                        } else {
                            format!(
                                "guessed: first of {} holding {sample:?}; set [watch.routes.{route}] table and column to choose",
                                names.join(", ")
                            )
                        };
                        Some(RouteTarget { view: vi, col: ci })
                    }
                    None => None,
                }
            }
        };
        match found {
            Some(t) => {
                let (table, column) = (
                    self.views[t.view].name().to_string(),
                    self.views[t.view].plan.columns[t.col].name.clone(),
                );
                self.summary
                    .routes
                    .insert(route.to_string(), format!("{table}.{column} ({how})"));
                self.emit(WatchEvent::RouteMapped {
                    at: iso(now_us()),
                    route: route.to_string(),
                    table,
                    column,
                    how,
                });
                self.routes.insert(route.to_string(), t.clone());
                Ok(Some(t))
            }
            None => {
                self.unmapped_until
                    .insert(route.to_string(), now_us() + 10_000_000);
                if self.warned_routes.insert(route.to_string()) {
                    self.warn(format!(
                        "route {route}: no UNIQUE column of a watched table holds key {sample:?}; its keys are not re-verified until one does — set [watch.routes.{route}] table and column"
                    ));
                }
                Ok(None)
            }
        }
    }

    /// Whether either side holds `value` in column `col` of view `vi`.
    async fn holds(&self, vi: usize, ci: usize, value: &str) -> DwResult<bool> {
        let v = &self.views[vi];
        let kv = key_value_from_text(v.plan.columns[ci].conversion.pg_type, value);
        let col = quote_sqlite(&v.plan.columns[ci].name);
        let q = qualified(&self.plan.schema, &v.plan.name);
        let in_new = self
            .client
            .query_opt(
                &format!("SELECT 1 FROM {q} WHERE {col}::text = $1 LIMIT 1"),
                &[&value],
            )
            .await
            .map_err(|source| MigrateError::Target {
                context: format!("looking for key {value:?} in {}", v.name()),
                source,
            })?
            .is_some();
        if in_new {
            return Ok(true);
        }
        let (src, table) = (self.opts.source.clone(), v.plan.source_name.clone());
        tokio::task::spawn_blocking(move || -> DwResult<bool> {
            let conn = open_source(&src)?;
            let sql = format!(
                "SELECT 1 FROM {} WHERE {col} = ?1 LIMIT 1",
                quote_sqlite(&table)
            );
            conn.query_row(&sql, [&kv], |_| Ok(()))
                .map(|_| true)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(false),
                    source => Err(MigrateError::Source { table, source }.into()),
                })
        })
        .await
        .map_err(|e| DualWriteError::Internal(format!("source lookup: {e}")))?
    }

    /// Fetch both sides of `keys` (columns `cols` of view `vi`).
    async fn fetch(
        &self,
        vi: usize,
        cols: &[usize],
        keys: Vec<Vec<KeyValue>>,
    ) -> DwResult<(HashMap<Vec<u8>, LegacyRow>, HashMap<Vec<u8>, CanonRow>)> {
        let new = target_rows_by_key(
            &self.client,
            &self.plan.schema,
            &self.views[vi],
            cols,
            &keys,
        )
        .await?;
        let (src, views, c2) = (self.opts.source.clone(), self.views.clone(), cols.to_vec());
        let legacy = tokio::task::spawn_blocking(move || {
            let conn = open_source(&src)?;
            source_rows_by_key(&conn, &views[vi], &c2, &keys)
        })
        .await
        .map_err(|e| DualWriteError::Internal(format!("source lookup: {e}")))??;
        Ok((legacy, new))
    }

    /// Check the keys whose time has come.
    async fn check_due(&mut self) -> DwResult<()> {
        let now = now_us();
        let mut groups: BTreeMap<(usize, Vec<usize>), Vec<Vec<u8>>> = BTreeMap::new();
        for (k, p) in &self.pending {
            if p.due <= now {
                groups
                    .entry((k.0, k.1.clone()))
                    .or_default()
                    .push(k.2.clone());
            }
        }
        // Keys a write put here go first: when a sweep found the same row (by its primary key,
        // a different column set) in the same tick, the drift is the write's, reported with
        // its route.
        let mut groups: Vec<_> = groups.into_iter().collect();
        groups.sort_by_key(|((vi, cols), cks)| {
            !cks.iter().any(|ck| {
                self.pending
                    .get(&(*vi, cols.clone(), ck.clone()))
                    .is_some_and(|p| p.found_by == FoundBy::WrittenKey)
            })
        });
        let settle = self.settle_us();
        for ((vi, cols), canon_keys) in groups {
            let keys: Vec<Vec<KeyValue>> = canon_keys
                .iter()
                .filter_map(|c| self.pending.get(&(vi, cols.clone(), c.clone())))
                .map(|p| p.key.clone())
                .collect();
            let (legacy, new) = self.fetch(vi, &cols, keys).await?;
            self.metrics
                .keys_checked
                .with_label_values(&[self.views[vi].name()])
                .inc_by(canon_keys.len() as u64);
            self.summary.keys_checked += canon_keys.len() as u64;
            let views = self.views.clone();
            for ck in canon_keys {
                let pk = (vi, cols.clone(), ck.clone());
                let Some(mut p) = self.pending.remove(&pk) else {
                    continue;
                };
                let view = &views[vi];
                let drift = compare(view, legacy.get(&ck), new.get(&ck));
                match drift {
                    None => {
                        let shown = match (legacy.get(&ck), new.get(&ck)) {
                            (_, Some(n)) => view.row_display(n),
                            (Some(LegacyRow::Row(l)), None) => view.row_display(l),
                            _ if cols == view.display.key_columns => {
                                view.key_display(&cols, &p.key)
                            }
                            _ => continue,
                        };
                        self.resolve(vi, &shown);
                    }
                    Some(d) if p.attempt == 0 => {
                        let _ = d;
                        p.attempt = 1;
                        p.due = now + settle;
                        self.pending.insert(pk, p);
                    }
                    Some(d) => self.report_drift(vi, d, p.found_by, p.route),
                }
            }
        }
        Ok(())
    }

    /// Queue a sweep's difference for its re-check.
    fn candidate(&mut self, vi: usize, cols: Vec<usize>, key: Vec<KeyValue>) {
        let Some(ck) = self.views[vi].canon_key(&cols, &key) else {
            return;
        };
        let due = now_us() + self.settle_us();
        self.enqueue(
            (vi, cols, ck),
            Pending {
                key,
                written_at: None,
                due,
                attempt: 1,
                found_by: FoundBy::Sweep,
                route: None,
            },
        );
    }

    /// Whether view `vi` can be swept by its `updated_at` watermark.
    fn watermark_ok(&self, vi: usize) -> bool {
        let v = &self.views[vi];
        let (Some(u), Some(style)) = (v.updated_at, self.styles.get(vi).and_then(|s| s.as_ref()))
        else {
            return false;
        };
        !v.plan.key_columns.is_empty()
            && v.plan.key_columns.iter().all(|c| {
                matches!(
                    v.plan.columns[*c].conversion.pg_type,
                    PgType::Integer | PgType::Bigint | PgType::Text | PgType::Varchar(_)
                )
            })
            && style.since_condition(&v.plan, u, 0).is_some()
    }

    async fn sweep(&mut self, full: bool) -> DwResult<()> {
        let started = now_us();
        let lookback = self.settle_us() + WATERMARK_MARGIN_US;
        let mut checksum = Vec::new();
        let mut by_watermark = Vec::new();
        for vi in 0..self.views.len() {
            match self.watermarks.get(&vi) {
                Some(wm) if !full && self.watermark_ok(vi) => by_watermark.push((vi, *wm)),
                _ => checksum.push(vi),
            }
        }
        if !checksum.is_empty() {
            self.checksum_sweep(&checksum).await?;
        }
        for (vi, wm) in by_watermark {
            self.watermark_sweep(vi, wm).await?;
        }
        for vi in 0..self.views.len() {
            self.watermarks.insert(vi, started - lookback);
        }
        self.summary.sweeps += 1;
        self.metrics.last_sweep.set(now_us() as f64 / 1e6);
        Ok(())
    }

    async fn checksum_sweep(&mut self, which: &[usize]) -> DwResult<()> {
        let started = std::time::Instant::now();
        let rep = self.verify_views(which).await?;
        let mut rows = 0;
        let mut differing = 0;
        for (vi, t) in which.iter().zip(&rep) {
            let vi = *vi;
            rows += t.source_rows;
            self.metrics
                .keys_checked
                .with_label_values(&[self.views[vi].name()])
                .inc_by(t.source_rows);
            self.summary.keys_checked += t.source_rows;
            let total = t.missing + t.extra + t.differs;
            differing += total;
            let key_cols = self.views[vi].plan.key_columns.clone();
            let mut keyless = key_cols.is_empty();
            if t.truncated || (t.differences.len() as u64) < total {
                self.warn(format!(
                    "table {}: {total} differing rows, more than a sweep lists; the rest are found by later sweeps",
                    t.table
                ));
            }
            if !keyless {
                let mut seen = HashSet::new();
                for d in &t.differences {
                    let key = match d {
                        Difference::MissingInTarget { key, .. }
                        | Difference::ExtraInTarget { key }
                        | Difference::ValueDiffers { key, .. } => key,
                    };
                    if !seen.insert(key.clone()) {
                        continue;
                    }
                    match key_from_display(&self.views[vi].plan, &key_cols, key) {
                        Some(kv) => self.candidate(vi, key_cols.clone(), kv),
                        None => keyless = true,
                    }
                }
                // Rows reported drifting earlier: re-check them too (resolved if clean now).
                let disp = self.views[vi].display.key_columns.clone();
                let earlier: Vec<String> = self
                    .drifting
                    .range((vi, String::new())..(vi + 1, String::new()))
                    .map(|((_, k), _)| k.clone())
                    .collect();
                for k in earlier {
                    if let Some(kv) = key_from_display(&self.views[vi].plan, &disp, &k) {
                        self.candidate(vi, disp.clone(), kv);
                    }
                }
            }
            if keyless {
                if total > 0 || t.mismatched_chunks > 0 {
                    self.table_rechecks.insert(vi, now_us() + self.settle_us());
                } else {
                    self.replace_table_drift(vi, Vec::new());
                }
            }
        }
        let tables = which
            .iter()
            .map(|v| self.views[*v].name().to_string())
            .collect();
        self.emit(WatchEvent::Sweep {
            at: iso(now_us()),
            kind: "full".into(),
            tables,
            rows_checked: rows,
            differing,
            seconds: started.elapsed().as_secs_f64(),
        });
        Ok(())
    }

    /// Verify the views `which` (checksums, then the differing rows), in that order.
    async fn verify_views(&self, which: &[usize]) -> DwResult<Vec<crate::verify::TableVerify>> {
        verify_views(
            &self.plan,
            &self.views,
            which,
            &self.opts.source,
            &self.opts.target,
        )
        .await
    }

    /// Set the drifting rows of a (keyless) table to exactly `now`.
    fn replace_table_drift(&mut self, vi: usize, now: Vec<Drift>) {
        let keep: HashSet<String> = now.iter().map(|d| d.key.clone()).collect();
        let old: Vec<String> = self
            .drifting
            .range((vi, String::new())..(vi + 1, String::new()))
            .map(|((_, k), _)| k.clone())
            .filter(|k| !keep.contains(k))
            .collect();
        for k in old {
            self.resolve(vi, &k);
        }
        for d in now {
            self.report_drift(vi, d, FoundBy::Sweep, None);
        }
    }

    async fn table_rechecks_due(&mut self) -> DwResult<()> {
        let now = now_us();
        let due: Vec<usize> = self
            .table_rechecks
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(v, _)| *v)
            .collect();
        for vi in due {
            self.table_rechecks.remove(&vi);
            let rep = self.verify_views(&[vi]).await?;
            let Some(t) = rep.into_iter().next() else {
                continue;
            };
            self.metrics
                .keys_checked
                .with_label_values(&[self.views[vi].name()])
                .inc_by(t.source_rows);
            self.summary.keys_checked += t.source_rows;
            let table = self.views[vi].name().to_string();
            let drifts = t
                .differences
                .iter()
                .map(|d| match d {
                    Difference::MissingInTarget { key, reason } => Drift {
                        table: table.clone(),
                        key: key.clone(),
                        class: DriftClass::MissingInNew,
                        columns: vec![],
                        note: reason.clone(),
                    },
                    Difference::ExtraInTarget { key } => Drift {
                        table: table.clone(),
                        key: key.clone(),
                        class: DriftClass::MissingInLegacy,
                        columns: vec![],
                        note: None,
                    },
                    Difference::ValueDiffers {
                        key,
                        column,
                        source,
                        target,
                    } => Drift {
                        table: table.clone(),
                        key: key.clone(),
                        class: DriftClass::ValueDiffers,
                        columns: vec![crate::drift::ColumnDiff {
                            column: column.clone(),
                            legacy: source.clone(),
                            new: target.clone(),
                        }],
                        note: None,
                    },
                })
                .collect();
            self.replace_table_drift(vi, drifts);
        }
        Ok(())
    }

    async fn watermark_sweep(&mut self, vi: usize, wm: i64) -> DwResult<()> {
        let started = std::time::Instant::now();
        let view = self.views[vi].clone();
        let Some(u) = view.updated_at else {
            return Ok(());
        };
        let Some((cond, param)) = self
            .styles
            .get(vi)
            .and_then(|s| s.as_ref())
            .and_then(|s| s.since_condition(&view.plan, u, wm))
        else {
            return Ok(());
        };
        // Looked up by primary key (unique whatever the display key is).
        let cols = view.plan.key_columns.clone();
        // New side: rows changed since the watermark.
        let mut new: HashMap<Vec<u8>, CanonRow> = HashMap::new();
        let filter = format!(
            "{} >= '{}+00'",
            quote_sqlite(&view.plan.columns[u].name),
            utc_text(wm)
        );
        scan_target(
            &self.client,
            &self.plan.schema,
            &view.plan,
            Some(&filter),
            |r| {
                new.insert(r.key(&cols), r.clone());
                Ok(())
            },
        )
        .await?;
        // Legacy side: the same, in its storage form.
        let (src, views, c2) = (self.opts.source.clone(), self.views.clone(), cols.clone());
        let mut legacy =
            tokio::task::spawn_blocking(move || -> DwResult<HashMap<Vec<u8>, LegacyRow>> {
                let conn = open_source(&src)?;
                let v = &views[vi];
                let mut out = HashMap::new();
                let mut scratch = Vec::new();
                let mut canon = CanonRow::default();
                let mut rejects: Vec<Vec<KeyValue>> = Vec::new();
                read_rows_where(&conn, &v.plan, &cond, &[param], |row| {
                    match canon_source_row(&v.plan, row, &mut scratch, &mut canon) {
                        Ok(()) => {
                            out.insert(canon.key(&c2), LegacyRow::Row(canon.clone()));
                        }
                        Err(_) => rejects.push(
                            c2.iter()
                                .map(|c| KeyValue::from_ref(row.value(*c)))
                                .collect(),
                        ),
                    }
                    Ok(true)
                })?;
                if !rejects.is_empty() {
                    out.extend(source_rows_by_key(&conn, v, &c2, &rejects)?);
                }
                Ok(out)
            })
            .await
            .map_err(|e| DualWriteError::Internal(format!("source sweep: {e}")))??;
        // Keys seen on one side only: look the other side up.
        let only_new: Vec<Vec<KeyValue>> = new
            .iter()
            .filter(|(k, _)| !legacy.contains_key(*k))
            .filter_map(|(_, r)| view.key_of(&cols, r))
            .collect();
        let only_legacy: Vec<Vec<KeyValue>> = legacy
            .iter()
            .filter(|(k, _)| !new.contains_key(*k))
            .filter_map(|(_, r)| match r {
                LegacyRow::Row(r) => view.key_of(&cols, r),
                LegacyRow::Reject { .. } => None,
            })
            .collect();
        if !only_new.is_empty() {
            let (l, _) = self.fetch(vi, &cols, only_new).await?;
            legacy.extend(l);
        }
        if !only_legacy.is_empty() {
            let n = target_rows_by_key(&self.client, &self.plan.schema, &view, &cols, &only_legacy)
                .await?;
            new.extend(n);
        }
        let keys: HashSet<Vec<u8>> = new.keys().chain(legacy.keys()).cloned().collect();
        let mut differing = 0u64;
        for k in &keys {
            let (l, n) = (legacy.get(k), new.get(k));
            if compare(&view, l, n).is_none() {
                if let Some(n) = n {
                    self.resolve(vi, &view.row_display(n));
                }
            } else {
                differing += 1;
                let kv = n.and_then(|r| view.key_of(&cols, r)).or_else(|| match l {
                    Some(LegacyRow::Row(r)) => view.key_of(&cols, r),
                    _ => None,
                });
                if let Some(kv) = kv {
                    self.candidate(vi, cols.clone(), kv);
                }
            }
        }
        self.metrics
            .keys_checked
            .with_label_values(&[view.name()])
            .inc_by(keys.len() as u64);
        self.summary.keys_checked += keys.len() as u64;
        self.emit(WatchEvent::Sweep {
            at: iso(now_us()),
            kind: format!("watermark (updated_at >= {})", iso(wm)),
            tables: vec![view.name().to_string()],
            rows_checked: keys.len() as u64,
            differing,
            seconds: started.elapsed().as_secs_f64(),
        });
        Ok(())
    }
}
