//! What a cut-over waits for and checks, on the proxy (routes, holds, writes in flight) and on
//! the follower (alive, which way, how far behind), shared by both directions.

use std::time::{Duration, Instant};

use ficus_state::TrafficControl;

use crate::capture::{self, ChangeLog};
use crate::error::{Result, SqliteContext};
use crate::follow::Direction;
use crate::source::open_source;

use super::report::{ALIVE, POLL};

/// Every route named exists and none is held.
pub(super) async fn check_routes(
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
pub(super) async fn hold_all(
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

pub(super) async fn release_all(
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
pub(super) async fn wait_in_flight(
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
pub(super) async fn follower_ready(
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

pub(super) fn sqlite_last_id(source: &std::path::Path) -> Result<i64> {
    let conn = open_source(source)?;
    ChangeLog::last_id(&conn).table(capture::LOG_TABLE)
}
