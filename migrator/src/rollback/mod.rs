//! `migrate rollback`: back to the legacy with nothing lost.
//!
//! 1. **Scope.** Per table (the `[watch]` table settings apply: skipped tables are left
//!    alone, ignored columns are neither compared nor written), the PostgreSQL rows created or
//!    changed since T (`--since`; default: when the migration into this schema started):
//!    - tables with an `updated_at` column: rows with `updated_at >= T`;
//!    - other tables with a primary key: every row that differs from, or is missing in, SQLite
//!      (found by [`crate::verify()`]'s chunked checksums);
//!    - tables compared as a multiset (no key, or its key ignored, like an event log's
//!      per-side ids): the rows PostgreSQL holds more often than SQLite; they are inserted
//!      without the ignored columns, so SQLite assigns its own ids.
//! 2. **Write-back**, in one SQLite transaction (`BEGIN IMMEDIATE`: the legacy app's writers
//!    wait, the decisions are made on what SQLite holds under the lock). Each row is converted
//!    to the legacy's storage format ([`crate::writeback`]: timestamps in the column's text
//!    shape, booleans as 0/1 or the column's spellings ...) and checked to convert back to the
//!    very value PostgreSQL holds. A row missing in SQLite is inserted; an identical one is
//!    left; a differing one follows `--conflict`:
//!    - `newest-wins` (default): the newer `updated_at` wins — legacy's version is kept when
//!      it is strictly newer; without `updated_at`, new wins;
//!    - `abort`: if SQLite also changed the row since T (its `updated_at >= T`; without
//!      `updated_at`, any differing row), nothing at all is written and the conflicts are
//!      listed.
//!
//!    `--dry-run` makes the same decisions, lists them, and writes nothing.
//! 3. **Reverse verify**: every row in scope is read again from both sides and compared
//!    canonically — legacy must hold what new holds (rows where legacy was newer must still be
//!    newer; rows new changed again meanwhile are left to step 5).
//! 4. **Routes to legacy**: `POST {admin}/admin/rollback` `{}` with
//!    `Authorization: Bearer $FICUS_ADMIN_TOKEN` when `--admin` is given and reachable; else
//!    directly in the proxy's state store (`--proxy-state`): `rollout.percent_bp = 0`, actor
//!    `migrate-rollback`, one `audit` row per route (a running proxy applies it on its next
//!    restart or reload). Routes are those the state store knows (rollout, audit,
//!    dual_writes) plus those of `--proxy-config`. Not done when the reverse verify failed.
//! 5. **Catch-up**: once routes point at legacy, one more pass over rows changed on the new
//!    side since step 1 began (writes that landed between the snapshot and the switch), with
//!    its own transaction and verify. Under `abort`, conflicting rows are listed, not written.
//!
//! Nothing is ever written to PostgreSQL, and nothing is deleted from either side.
//!
//! # Layout
//! `options` (how it runs), `scope` (step 1), `write_back` (step 2), `reverse_verify`
//! (step 3), `report` (what it did); this module runs the passes and the switch.

mod options;
mod report;
mod reverse_verify;
mod scope;
mod write_back;

use std::time::Instant;

use ficus_state::RouteSwitch;

pub use self::options::{ConflictPolicy, RollbackOptions};
pub use self::report::{Pass, RollbackReport, RowAction, RowChange, TableRollback};
use self::reverse_verify::reverse_verify;
use self::scope::scope_of;
use self::write_back::write_back;
use crate::config::MigrationConfig;
use crate::convert::utc_text;
use crate::drift::{table_views, TableView};
use crate::error::{DualWriteError, DwResult};
use crate::plan::Plan;

/// Parse `--since` (the one syntax of [`ficus_core::since`]: RFC 3339, a UTC date or
/// date-time, or an age like `2h`) → µs since 1970.
pub fn parse_since(s: &str) -> DwResult<i64> {
    let t = ficus_core::since::parse_since(s, time::OffsetDateTime::now_utc())?;
    Ok(ficus_core::stamp::unix_us(t))
}

fn now_us() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64
}

/// Roll back: write back, verify, switch routes, catch up (see the module docs).
pub async fn rollback(
    opts: &RollbackOptions,
    config: &MigrationConfig,
) -> DwResult<RollbackReport> {
    let started = Instant::now();
    let plan = crate::verify::plan_for(&opts.source, &opts.target, &opts.schema, config).await?;
    let views = table_views(&plan, &config.watch)?;
    let client = crate::pg::connect(&opts.target).await?;
    let since = match &opts.since {
        Some(s) => parse_since(s)?,
        None => match crate::checkpoint::load_migration(&client, &opts.schema).await? {
            Some((m, _)) => parse_since(&m.started_at)?,
            None => {
                return Err(DualWriteError::NoSince(
                    "none given, and the target holds no ficus migration to start from".into(),
                ))
            }
        },
    };
    let pass_start = now_us();
    let pass = run_pass(opts, &plan, &views, &client, since, opts.dry_run, false).await?;
    let mut report = RollbackReport {
        dry_run: opts.dry_run,
        conflict: opts.conflict,
        routes: RouteSwitch::NotRequested,
        catch_up: None,
        ok: false,
        seconds: 0.0,
        pass,
    };
    let skip = if opts.dry_run {
        Some("dry run".to_string())
    } else if report.pass.aborted {
        Some("conflicts (--conflict abort)".into())
    } else if !report.pass.verified_clean {
        Some(
            "the reverse verify found differences; legacy does not hold everything new holds"
                .into(),
        )
    } else {
        None
    };
    report.routes = match skip {
        Some(reason) => RouteSwitch::Skipped { reason },
        None => match &opts.to_legacy {
            Some(t) => t.to_legacy("migrate-rollback").await,
            None => RouteSwitch::NotRequested,
        },
    };
    let switched = report.routes.switched();
    if switched {
        // Writes that reached new between the snapshot and the switch.
        let margin = 5_000_000;
        let c = run_pass(
            opts,
            &plan,
            &views,
            &client,
            pass_start - margin,
            false,
            true,
        )
        .await?;
        report.catch_up = Some(c);
    }
    report.ok = !opts.dry_run
        && report.pass.written
        && report.pass.verified_clean
        && switched
        && report
            .catch_up
            .as_ref()
            .is_some_and(|c| c.verified_clean && c.count(|t| t.conflicts) == 0);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

#[allow(clippy::too_many_arguments)]
async fn run_pass(
    opts: &RollbackOptions,
    plan: &Plan,
    views: &[TableView],
    client: &tokio_postgres::Client,
    since: i64,
    dry_run: bool,
    catch_up: bool,
) -> DwResult<Pass> {
    let mut scopes = Vec::new();
    for vi in 0..views.len() {
        scopes.push(scope_of(opts, plan, views, vi, client, since).await?);
    }
    let views_owned: Vec<TableView> = views.to_vec();
    let (src, policy) = (opts.source.clone(), opts.conflict);
    let max_listed = opts.max_listed;
    let (works, aborted, written) = tokio::task::spawn_blocking(move || {
        write_back(
            &src,
            &views_owned,
            scopes,
            since,
            policy,
            dry_run,
            catch_up,
            max_listed,
        )
    })
    .await
    .map_err(|e| DualWriteError::Internal(format!("write-back thread: {e}")))??;
    let mut pass = Pass {
        since: utc_text(since),
        tables: Vec::new(),
        aborted,
        written,
        verified_clean: true,
    };
    for mut w in works {
        if written {
            reverse_verify(opts, plan, views, client, &mut w).await?;
            if !w.report.differences.is_empty() {
                pass.verified_clean = false;
            }
        }
        pass.tables.push(w.report);
    }
    Ok(pass)
}
