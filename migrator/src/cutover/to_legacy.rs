//! The live rollback (toward legacy): hold, in-flight, drain the reverse log into SQLite,
//! verify the keys the new side changed, routes to 0 %, the follower forward again past its
//! own writes, release.

use std::collections::BTreeMap;
use std::time::Instant;

use ficus_state::TrafficControl;

use crate::capture::{self};
use crate::drift::TableView;
use crate::error::{MigrateError, PgContext, Result, SqliteContext};
use crate::follow::Direction;
use crate::plan::Plan;
use crate::source::open_source;

use super::checks::*;
use super::keys;
use super::report::*;

pub(super) async fn to_legacy<F: FnMut(&CutoverStep)>(
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
