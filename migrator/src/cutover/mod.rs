//! `migrate cutover` and `migrate rollback --live`: moving the writes from one side to the
//! other with a write pause of a fraction of a second and no failed request, coordinated
//! through the proxy ([`ficus_state::TrafficControl`]) and the follower (`ficus.follow`).
//!
//! Toward new (the cut-over), each step timed:
//! 1. **preconditions** — capture installed, the follower running forward (alive within
//!    [`ALIVE`]) with its lag under `--max-lag-ms`, the routes exist and none is held;
//! 2. **pre-verify** (before the hold) — every key the follower applied so far, compared on
//!    both sides; the ones that differ are checked again in the hold;
//! 3. **hold** the write routes (the proxy releases them by itself at `--max-hold-ms`);
//! 4. **in-flight** — wait until no write is in flight on them;
//! 5. **drain** — wait until the follower has applied SQLite's change log up to its last id;
//! 6. **verify** — the keys applied since the pre-verify, and those that differed;
//! 7. **sequences** — identity sequences past the highest key legacy allocated;
//! 8. **reverse capture** on PostgreSQL, the follower turned around (reverse);
//! 9. **switch** the routes to 100 % new (persisted, audited by the proxy);
//! 10. **release**.
//!
//! A failure before the switch undoes what was done (reverse capture removed, the follower
//! forward again), releases the routes as they were and names the step; a failure in the
//! switch reports which routes moved. Toward legacy (`rollback --live`) is the same dance
//! backwards: hold, in-flight, drain the *reverse* log into SQLite, verify the keys the new
//! side changed, routes to 0 %, the follower forward again past its own writes, release.

mod keys;
mod to_legacy;
mod to_new;

use to_legacy::to_legacy;
use to_new::to_new;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ficus_state::TrafficControl;
use serde::Serialize;

use crate::capture::{self, ChangeLog};
use crate::drift::{drift_line, table_views, Drift, TableView};
use crate::error::{MigrateError, PgContext, Result, SqliteContext};
use crate::follow::Direction;
use crate::introspect::{quote_literal, quote_sqlite};
use crate::plan::{qualified, Plan};
use crate::source::open_source;

/// A follower that has not written `ficus.follow` for longer is taken as not running.
pub const ALIVE: Duration = Duration::from_secs(5);
/// Poll interval of the waits inside the hold.
const POLL: Duration = Duration::from_millis(2);

/// Which way the writes move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Toward {
    /// `migrate cutover`: from legacy to new.
    New,
    /// `migrate rollback --live`: from new back to legacy.
    Legacy,
}

/// How a cut-over runs.
#[derive(Debug, Clone)]
pub struct CutoverOptions {
    /// The legacy SQLite database.
    pub source: PathBuf,
    /// PostgreSQL URL.
    pub target: String,
    /// The write routes to move.
    pub routes: Vec<String>,
    /// The longest write pause allowed (the proxy's hold ends by itself then).
    pub max_hold: Duration,
    /// The follower's lag allowed before starting.
    pub max_lag: Duration,
    /// Check the preconditions and say what would be done; change nothing.
    pub dry_run: bool,
    /// Which way.
    pub toward: Toward,
}

/// One step, as done.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CutoverStep {
    /// Its name.
    pub step: String,
    /// How long it took, ms.
    pub ms: f64,
    /// What it did.
    pub detail: String,
}

/// What a cut-over did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CutoverReport {
    /// Which way.
    pub toward: Toward,
    /// Only checked.
    pub dry_run: bool,
    /// The steps done, in order.
    pub steps: Vec<CutoverStep>,
    /// The write pause: from the hold to the release, ms.
    pub pause_ms: Option<f64>,
    /// The routes were moved.
    pub switched: bool,
    /// The step that failed, and why.
    pub failed: Option<String>,
    /// Where things stand at the end, in words.
    pub state: String,
    /// Rows that differed in the last verify.
    pub differences: Vec<Drift>,
}

impl CutoverReport {
    /// Everything asked for was done.
    pub fn ok(&self) -> bool {
        self.failed.is_none()
    }

    /// Text for people.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        for st in &self.steps {
            let _ = writeln!(s, "{:<16} {:>8.1} ms  {}", st.step, st.ms, st.detail);
        }
        for d in self.differences.iter().take(20) {
            let _ = writeln!(s, "  {}", drift_line(d));
        }
        if let Some(p) = self.pause_ms {
            let _ = writeln!(s, "write pause: {p:.1} ms");
        }
        match &self.failed {
            Some(f) => {
                let _ = writeln!(s, "FAILED at {f}");
            }
            None if self.dry_run => s.push_str("dry run: nothing changed\n"),
            None => {}
        }
        let _ = writeln!(s, "{}", self.state);
        s
    }
}

struct Run<'a, F: FnMut(&CutoverStep)> {
    report: CutoverReport,
    on_step: F,
    last: Instant,
    _p: std::marker::PhantomData<&'a ()>,
}

impl<F: FnMut(&CutoverStep)> Run<'_, F> {
    fn done(&mut self, step: &str, detail: impl Into<String>) {
        let st = CutoverStep {
            step: step.into(),
            ms: self.last.elapsed().as_secs_f64() * 1000.0,
            detail: detail.into(),
        };
        (self.on_step)(&st);
        self.report.steps.push(st);
        self.last = Instant::now();
    }
}

/// A failure of one step, naming it.
fn failed(step: &str, why: impl std::fmt::Display) -> (String, String) {
    (step.to_string(), why.to_string())
}

/// Runs a cut-over (or a live rollback) of `plan`'s migration.
pub async fn cutover<F: FnMut(&CutoverStep)>(
    plan: &Plan,
    opts: &CutoverOptions,
    traffic: &dyn TrafficControl,
    on_step: F,
) -> Result<CutoverReport> {
    let mut run = Run {
        report: CutoverReport {
            toward: opts.toward,
            dry_run: opts.dry_run,
            steps: Vec::new(),
            pause_ms: None,
            switched: false,
            failed: None,
            state: String::new(),
            differences: Vec::new(),
        },
        on_step,
        last: Instant::now(),
        _p: std::marker::PhantomData,
    };
    let views = table_views(plan, &crate::config::WatchConfig::default())
        .map_err(|e| MigrateError::Internal(e.to_string()))?;
    let client = crate::pg::connect(&opts.target).await?;
    let outcome = match opts.toward {
        Toward::New => to_new(plan, opts, traffic, &client, &views, &mut run).await,
        Toward::Legacy => to_legacy(plan, opts, traffic, &client, &views, &mut run).await,
    };
    if let Err((step, why)) = outcome {
        run.report.failed = Some(format!("{step}: {why}"));
    }
    Ok(run.report)
}

/// Every route named exists and none is held.
async fn check_routes(
    traffic: &dyn TrafficControl,
    routes: &[String],
) -> std::result::Result<String, String> {
    let all = traffic.routes().await?;
    let mut lines = Vec::new();
    for r in routes {
        let Some(s) = all.iter().find(|s| &s.name == r) else {
            return Err(format!("the proxy has no route {r:?}"));
        };
        if s.held {
            return Err(format!(
                "route {r} is held already (by {})",
                s.held_by.as_deref().unwrap_or("?")
            ));
        }
        lines.push(format!("{r} at {}%", s.percent));
    }
    Ok(lines.join(", "))
}

/// Holds every route; on failure releases those held.
async fn hold_all(
    traffic: &dyn TrafficControl,
    routes: &[String],
    max_ms: u64,
) -> std::result::Result<(), String> {
    for (i, r) in routes.iter().enumerate() {
        if let Err(e) = traffic.hold(r, max_ms).await {
            for h in &routes[..i] {
                let _ = traffic.release(h).await;
            }
            return Err(format!("{r}: {e}"));
        }
    }
    Ok(())
}

async fn release_all(
    traffic: &dyn TrafficControl,
    routes: &[String],
) -> std::result::Result<(), String> {
    let mut first = None;
    for r in routes {
        if let Err(e) = traffic.release(r).await {
            first.get_or_insert(format!("{r}: {e}"));
        }
    }
    first.map_or(Ok(()), Err)
}

/// Waits until no write is in flight on `routes`, or `deadline`.
async fn wait_in_flight(
    traffic: &dyn TrafficControl,
    routes: &[String],
    deadline: Instant,
) -> std::result::Result<u64, String> {
    let mut polls = 0u64;
    loop {
        let all = traffic.routes().await?;
        let n: u64 = all
            .iter()
            .filter(|r| routes.contains(&r.name))
            .map(|r| r.in_flight_writes)
            .sum();
        if n == 0 {
            return Ok(polls);
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{n} write(s) still in flight when the hold budget ran out"
            ));
        }
        polls += 1;
        tokio::time::sleep(POLL).await;
    }
}

/// The follower's record, checked alive and going `dir`.
async fn follower_ready(
    client: &tokio_postgres::Client,
    schema: &str,
    dir: Direction,
    max_lag: Duration,
) -> std::result::Result<crate::follow::FollowState, String> {
    let st = crate::follow::load_state(client, schema)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no follower has run for this migration (start `ficus migrate run --follow`)")?;
    if st.direction != dir {
        return Err(format!(
            "the follower runs {} (expected {})",
            st.direction.as_str(),
            dir.as_str()
        ));
    }
    if st.idle_seconds > ALIVE.as_secs_f64() {
        return Err(format!(
            "the follower has not been heard of for {:.0} s: is `ficus migrate run --follow` running?",
            st.idle_seconds
        ));
    }
    if st.lag_seconds > max_lag.as_secs_f64() {
        return Err(format!(
            "the follower is {:.2} s behind (more than --max-lag-ms {})",
            st.lag_seconds,
            max_lag.as_millis()
        ));
    }
    Ok(st)
}

fn sqlite_last_id(source: &std::path::Path) -> Result<i64> {
    let conn = open_source(source)?;
    ChangeLog::last_id(&conn).table(capture::LOG_TABLE)
}

/// The routes the last cut-over moved (kept in the legacy database), for `rollback --live`
/// without `--routes`.
pub fn cutover_routes(source: &std::path::Path) -> Result<Vec<String>> {
    let conn = open_source(source)?;
    Ok(capture::meta_get(&conn, "cutover_routes")
        .table("_ficus_capture")?
        .and_then(|v| serde_json::from_str(&v).ok())
        .unwrap_or_default())
}
