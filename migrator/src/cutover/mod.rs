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

mod checks;
mod keys;
mod report;
mod to_legacy;
mod to_new;

pub use report::{CutoverOptions, CutoverReport, CutoverStep, Toward, ALIVE};

use ficus_state::TrafficControl;

use crate::capture;
use crate::drift::table_views;
use crate::error::{MigrateError, Result, SqliteContext};
use crate::plan::Plan;
use crate::source::open_source;

use report::Run;
use to_legacy::to_legacy;
use to_new::to_new;

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
        last: std::time::Instant::now(),
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

/// The routes the last cut-over moved (kept in the legacy database), for `rollback --live`
/// without `--routes`.
pub fn cutover_routes(source: &std::path::Path) -> Result<Vec<String>> {
    let conn = open_source(source)?;
    Ok(capture::meta_get(&conn, "cutover_routes")
        .table("_ficus_capture")?
        .and_then(|v| serde_json::from_str(&v).ok())
        .unwrap_or_default())
}
