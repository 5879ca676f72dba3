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

async fn to_new<F: FnMut(&CutoverStep)>(
    plan: &Plan,
    opts: &CutoverOptions,
    traffic: &dyn TrafficControl,
    client: &tokio_postgres::Client,
    views: &[TableView],
    run: &mut Run<'_, F>,
) -> std::result::Result<(), (String, String)> {
    let schema = &plan.schema;
    // 1. Preconditions.
    let st = follower_ready(client, schema, Direction::Forward, opts.max_lag)
        .await
        .map_err(|e| failed("preconditions", e))?;
    let routes = check_routes(traffic, &opts.routes)
        .await
        .map_err(|e| failed("preconditions", e))?;
    run.done(
        "preconditions",
        format!(
            "follower forward at change {}, lag {:.3} s; routes {routes}",
            st.position, st.lag_seconds
        ),
    );
    if opts.dry_run {
        run.report.state = "nothing changed (dry run)".into();
        return Ok(());
    }
    // 2. Pre-verify, outside the hold.
    let p0 = crate::follow::load_state(client, schema)
        .await
        .map_err(|e| failed("pre-verify", e))?
        .map_or(0, |s| s.position);
    let lits = crate::follow::keys_after(client, schema, 0)
        .await
        .map_err(|e| failed("pre-verify", e))?;
    let all =
        keys::from_literals(&opts.source, views, &lits).map_err(|e| failed("pre-verify", e))?;
    let first = keys::verify(plan, views, &opts.source, &opts.target, client, &all)
        .await
        .map_err(|e| failed("pre-verify", e))?;
    let count: usize = all.values().map(|k| k.as_ref().map_or(1, Vec::len)).sum();
    run.done(
        "pre-verify",
        format!(
            "{count} key(s) applied by the follower compared: {} differ for now (checked again in the hold)",
            first.len()
        ),
    );
    // 3. Hold.
    let max_ms = u64::try_from(opts.max_hold.as_millis()).unwrap_or(u64::MAX);
    let held_at = Instant::now();
    // Leave a tenth of the budget for the switch and the release.
    let deadline = held_at + opts.max_hold.mul_f64(0.9);
    hold_all(traffic, &opts.routes, max_ms)
        .await
        .map_err(|e| failed("hold", e))?;
    run.done(
        "hold",
        format!(
            "writes of {} held (at most {max_ms} ms)",
            opts.routes.join(", ")
        ),
    );
    let inside = async {
        // 4. In-flight.
        let polls = wait_in_flight(traffic, &opts.routes, deadline)
            .await
            .map_err(|e| failed("in-flight", e))?;
        run.done("in-flight", format!("no write in flight ({polls} poll(s))"));
        // 5. Drain.
        let src = opts.source.clone();
        let target_id = tokio::task::spawn_blocking(move || sqlite_last_id(&src))
            .await
            .map_err(|e| failed("drain", e))?
            .map_err(|e| failed("drain", e))?;
        loop {
            let (_, at) = crate::follow::direction(client, schema)
                .await
                .map_err(|e| failed("drain", e))?;
            if at >= target_id {
                break;
            }
            if Instant::now() >= deadline {
                return Err(failed(
                    "drain",
                    format!("the follower was at change {at} of {target_id} when the hold budget ran out"),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
        run.done("drain", format!("SQLite's change log applied up to {target_id} (lag 0)"));
        // 6. Verify.
        let mut recheck = crate::follow::keys_after(client, schema, p0)
            .await
            .map_err(|e| failed("verify", e))?;
        for d in &first {
            if let Some(t) = plan.tables.iter().find(|t| t.name == d.table) {
                recheck.entry(t.source_name.clone()).or_default();
            }
        }
        let mut ks = keys::from_literals(&opts.source, views, &recheck)
            .map_err(|e| failed("verify", e))?;
        for d in &first {
            // The keys that differed before the hold: by their display key.
            if let Some(vi) = views.iter().position(|v| v.plan.name == d.table) {
                let v = &views[vi];
                if let Some(k) = crate::drift::key_from_display(&v.display, &v.display.key_columns, &d.key) {
                    if let Some(Some(list)) = ks.get_mut(&vi) {
                        list.push(k);
                    } else {
                        ks.entry(vi).or_insert_with(|| Some(vec![k]));
                    }
                } else {
                    ks.insert(vi, None);
                }
            }
        }
        let diffs = keys::verify(plan, views, &opts.source, &opts.target, client, &ks)
            .await
            .map_err(|e| failed("verify", e))?;
        let n: usize = ks.values().map(|k| k.as_ref().map_or(1, Vec::len)).sum();
        if !diffs.is_empty() {
            let count = diffs.len();
            run.report.differences = diffs;
            return Err(failed("verify", format!("{count} row(s) differ between SQLite and PostgreSQL")));
        }
        run.done("verify", format!("{n} key(s) changed since the pre-verify: identical"));
        // 7. Sequences.
        let moved = move_sequences(plan, &opts.source, client)
            .await
            .map_err(|e| failed("sequences", e))?;
        run.done("sequences", moved);
        // 8. Reverse capture, follower turned around.
        let start = crate::reverse::capture::install(client, plan)
            .await
            .map_err(|e| failed("reverse capture", e))?;
        let src = opts.source.clone();
        let routes_moved = opts.routes.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let conn = capture::open_rw(&src).map_err(|e| MigrateError::Capture {
                path: src.clone(),
                detail: e.to_string(),
            })?;
            crate::reverse::follow::set_position(&conn, start)?;
            capture::meta_set(&conn, "reverse_start", &start.to_string())
                .table("_ficus_capture")?;
            let routes = serde_json::to_string(&routes_moved).unwrap_or_default();
            capture::meta_set(&conn, "cutover_routes", &routes).table("_ficus_capture")
        })
        .await
        .map_err(|e| failed("reverse capture", e))?
        .map_err(|e| failed("reverse capture", e))?;
        crate::follow::set_direction(client, schema, Direction::Reverse, None)
            .await
            .map_err(|e| failed("reverse capture", e))?;
        run.done(
            "reverse capture",
            format!("triggers on {} table(s); the follower now writes PostgreSQL's changes into SQLite", plan.tables.len()),
        );
        Ok(())
    }
    .await;
    if let Err(e) = inside {
        // Undo: routes as they were, the follower forward, no reverse capture.
        let _ = crate::reverse::capture::remove(client, plan).await;
        let _ = crate::follow::set_direction(client, schema, Direction::Forward, None).await;
        let released = release_all(traffic, &opts.routes).await;
        run.report.pause_ms = Some(held_at.elapsed().as_secs_f64() * 1000.0);
        run.report.state = match released {
            Ok(()) => "released: the routes are as they were (legacy primary); the follower goes on forward".to_string(),
            Err(r) => format!("release failed ({r}); the proxy releases the hold by itself at {max_ms} ms"),
        };
        return Err(e);
    }
    // 9. Switch.
    let mut moved: Vec<String> = Vec::new();
    for r in &opts.routes {
        if let Err(e) = traffic.set_percent(r, 100.0).await {
            let released = release_all(traffic, &opts.routes).await;
            run.report.pause_ms = Some(held_at.elapsed().as_secs_f64() * 1000.0);
            run.report.switched = !moved.is_empty();
            run.report.state = format!(
                "PARTLY SWITCHED: {} at 100 % new, {} not; the reverse capture is on and the follower runs reverse (new is primary for the moved routes); {}",
                if moved.is_empty() { "none".to_string() } else { moved.join(", ") },
                opts.routes.iter().filter(|x| !moved.contains(x)).cloned().collect::<Vec<_>>().join(", "),
                match released { Ok(()) => "writes released".to_string(), Err(e) => format!("release failed: {e}") }
            );
            return Err(failed("switch", format!("{r}: {e}")));
        }
        moved.push(r.clone());
    }
    run.report.switched = true;
    run.done(
        "switch",
        format!(
            "{} at 100 % new (audited by the proxy)",
            opts.routes.join(", ")
        ),
    );
    // 10. Release.
    let released = release_all(traffic, &opts.routes).await;
    run.report.pause_ms = Some(held_at.elapsed().as_secs_f64() * 1000.0);
    match released {
        Ok(()) => run.done("release", "held writes go to new"),
        Err(e) => {
            run.report.state = format!("switched; release failed ({e}): the proxy releases the hold by itself at {max_ms} ms");
            return Err(failed("release", e));
        }
    }
    run.report.state = "cut over: writes on new; legacy kept current by the reverse follower; `ficus migrate rollback --live` goes back".into();
    Ok(())
}

/// Moves every identity sequence past the highest key legacy allocated (its rows and, for
/// AUTOINCREMENT tables, `sqlite_sequence`).
async fn move_sequences(
    plan: &Plan,
    source: &std::path::Path,
    client: &tokio_postgres::Client,
) -> Result<String> {
    let floors: BTreeMap<String, i64> = {
        let src = source.to_path_buf();
        tokio::task::spawn_blocking(move || -> Result<BTreeMap<String, i64>> {
            let conn = open_source(&src)?;
            let mut out = BTreeMap::new();
            let has: bool = conn
                .query_row(
                    "SELECT count(*) > 0 FROM sqlite_master WHERE name = 'sqlite_sequence'",
                    [],
                    |r| r.get(0),
                )
                .table("sqlite_master")?;
            if has {
                let mut st = conn
                    .prepare("SELECT name, seq FROM sqlite_sequence")
                    .table("sqlite_sequence")?;
                let rows = st
                    .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                    .table("sqlite_sequence")?;
                for r in rows {
                    let (n, s) = r.table("sqlite_sequence")?;
                    out.insert(n, s);
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| MigrateError::Internal(format!("sequence thread: {e}")))??
    };
    let mut moved = Vec::new();
    for t in &plan.tables {
        let Some(id) = &t.identity else { continue };
        let col = &t.columns[id.column].name;
        let q = qualified(&plan.schema, &t.name);
        let floor = floors.get(&t.source_name).copied().unwrap_or(0);
        let next: i64 = client
            .query_one(
                &format!(
                    "SELECT setval(pg_get_serial_sequence({}, {}), greatest(coalesce(max({}), 0), {floor}) + 1, false) FROM {q}",
                    quote_literal(&q),
                    quote_literal(col),
                    quote_sqlite(col)
                ),
                &[],
            )
            .await
            .ctx(format!("moving the sequence of {}", t.name))?
            .get(0);
        moved.push(format!("{}.{col} next {next}", t.name));
    }
    Ok(if moved.is_empty() {
        "no identity column".to_string()
    } else {
        moved.join(", ")
    })
}

async fn to_legacy<F: FnMut(&CutoverStep)>(
    plan: &Plan,
    opts: &CutoverOptions,
    traffic: &dyn TrafficControl,
    client: &tokio_postgres::Client,
    views: &[TableView],
    run: &mut Run<'_, F>,
) -> std::result::Result<(), (String, String)> {
    let schema = &plan.schema;
    let st = follower_ready(client, schema, Direction::Reverse, opts.max_lag)
        .await
        .map_err(|e| failed("preconditions", e))?;
    let routes = check_routes(traffic, &opts.routes)
        .await
        .map_err(|e| failed("preconditions", e))?;
    run.done(
        "preconditions",
        format!(
            "follower reverse (since {}); routes {routes}",
            st.updated_at
        ),
    );
    if opts.dry_run {
        run.report.state = "nothing changed (dry run)".into();
        return Ok(());
    }
    let max_ms = u64::try_from(opts.max_hold.as_millis()).unwrap_or(u64::MAX);
    let held_at = Instant::now();
    let deadline = held_at + opts.max_hold.mul_f64(0.9);
    hold_all(traffic, &opts.routes, max_ms)
        .await
        .map_err(|e| failed("hold", e))?;
    run.done(
        "hold",
        format!(
            "writes of {} held (at most {max_ms} ms)",
            opts.routes.join(", ")
        ),
    );
    let inside = async {
        let polls = wait_in_flight(traffic, &opts.routes, deadline)
            .await
            .map_err(|e| failed("in-flight", e))?;
        run.done("in-flight", format!("no write in flight ({polls} poll(s))"));
        // Drain the reverse log into SQLite.
        let target_id = crate::reverse::capture::last_id(client, schema)
            .await
            .map_err(|e| failed("drain", e))?;
        let (start, at) = loop {
            let src = opts.source.clone();
            let (start, at) = tokio::task::spawn_blocking(move || -> Result<(i64, i64)> {
                let conn = open_source(&src)?;
                let start = capture::meta_get(&conn, "reverse_start")
                    .table("_ficus_capture")?
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                Ok((start, crate::reverse::follow::position(&conn)?))
            })
            .await
            .map_err(|e| failed("drain", e))?
            .map_err(|e| failed("drain", e))?;
            if at >= target_id {
                break (start, at);
            }
            if Instant::now() >= deadline {
                return Err(failed(
                    "drain",
                    format!("the reverse follower was at {at} of {target_id} when the hold budget ran out"),
                ));
            }
            tokio::time::sleep(POLL).await;
        };
        run.done("drain", format!("PostgreSQL's reverse log applied to SQLite up to {at}"));
        // Verify the keys the new side changed since the cut-over.
        let rows = client
            .query(
                "SELECT tbl, k::text, old_k::text FROM ficus.reverse_changes
                 WHERE target_schema = $1 AND id > $2",
                &[&schema, &start],
            )
            .await
            .ctx("reading ficus.reverse_changes")
            .map_err(|e| failed("verify", e))?;
        let mut by_table: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
        for r in &rows {
            let e = by_table.entry(r.get(0)).or_default();
            e.push(r.get(1));
            e.push(r.get(2));
        }
        let ks = keys::from_reverse_log(views, &by_table).map_err(|e| failed("verify", e))?;
        let diffs = keys::verify(plan, views, &opts.source, &opts.target, client, &ks)
            .await
            .map_err(|e| failed("verify", e))?;
        if !diffs.is_empty() {
            let count = diffs.len();
            run.report.differences = diffs;
            return Err(failed("verify", format!("{count} row(s) differ between PostgreSQL and SQLite")));
        }
        run.done("verify", format!("{} change(s) of the new side since the cut-over: legacy holds them", rows.len()));
        Ok(())
    }
    .await;
    if let Err(e) = inside {
        let released = release_all(traffic, &opts.routes).await;
        run.report.pause_ms = Some(held_at.elapsed().as_secs_f64() * 1000.0);
        run.report.state = match released {
            Ok(()) => {
                "released: the routes are as they were (new primary); the reverse follower goes on"
                    .into()
            }
            Err(r) => format!(
                "release failed ({r}); the proxy releases the hold by itself at {max_ms} ms"
            ),
        };
        return Err(e);
    }
    let mut moved: Vec<String> = Vec::new();
    for r in &opts.routes {
        if let Err(e) = traffic.set_percent(r, 0.0).await {
            let _ = release_all(traffic, &opts.routes).await;
            run.report.pause_ms = Some(held_at.elapsed().as_secs_f64() * 1000.0);
            run.report.switched = !moved.is_empty();
            run.report.state = format!(
                "PARTLY ROLLED BACK: {} at 0 % (legacy), the others not; the reverse follower still runs",
                if moved.is_empty() { "none".to_string() } else { moved.join(", ") }
            );
            return Err(failed("switch", format!("{r}: {e}")));
        }
        moved.push(r.clone());
    }
    run.report.switched = true;
    run.done(
        "switch",
        format!(
            "{} at 0 % (legacy; audited by the proxy)",
            opts.routes.join(", ")
        ),
    );
    // The follower forward again, past what the reverse follower wrote into SQLite.
    let forward = async {
        crate::reverse::capture::remove(client, plan).await?;
        let src = opts.source.clone();
        let last = tokio::task::spawn_blocking(move || sqlite_last_id(&src))
            .await
            .map_err(|e| MigrateError::Internal(format!("follow thread: {e}")))??;
        crate::follow::set_direction(client, schema, Direction::Forward, Some(last)).await?;
        Ok::<i64, MigrateError>(last)
    }
    .await;
    let released = release_all(traffic, &opts.routes).await;
    run.report.pause_ms = Some(held_at.elapsed().as_secs_f64() * 1000.0);
    match forward {
        Ok(last) => run.done(
            "forward",
            format!(
                "reverse capture removed; the follower follows SQLite again from change {last}"
            ),
        ),
        Err(e) => {
            run.report.state =
                format!("routes on legacy; turning the follower forward failed: {e}");
            return Err(failed("forward", e));
        }
    }
    match released {
        Ok(()) => run.done("release", "held writes go to legacy"),
        Err(e) => return Err(failed("release", e)),
    }
    run.report.state =
        "rolled back: writes on legacy; the follower keeps PostgreSQL current again".into();
    Ok(())
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
