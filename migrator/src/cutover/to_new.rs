//! The cut-over proper (toward new): pre-verify, hold, in-flight, drain, verify, sequences,
//! reverse capture, switch, release — and the undo of everything before the switch. The
//! steps are listed in the module doc of [`super`].

use std::collections::BTreeMap;
use std::time::Instant;

use ficus_state::TrafficControl;

use crate::capture::{self};
use crate::drift::TableView;
use crate::error::{MigrateError, PgContext, Result, SqliteContext};
use crate::follow::Direction;
use crate::introspect::{quote_literal, quote_sqlite};
use crate::plan::{qualified, Plan};
use crate::source::open_source;

use super::checks::*;
use super::keys;
use super::report::*;

pub(super) async fn to_new<F: FnMut(&CutoverStep)>(
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
