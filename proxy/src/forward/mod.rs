//! Forwarding one request: route match, override check, split decision, request rewrite
//! (hop-by-hop headers removed per RFC 9110 §7.6.1, `X-Forwarded-*` and `X-Request-Id` added),
//! the upstream exchange with its timeout, and the response rewrite (`x-ficus-route`,
//! `x-ficus-backend`). Failures become JSON bodies naming route and backend: connect → 502,
//! timeout → 504, a dual write that did not get its row's turn (see [`crate::order`]) → 503.
//! `Upgrade` requests (WebSocket) are passed through to the routed side.
//!
//! A write on a held route first waits for the hold to end ([`crate::hold`]) — before the
//! route's split is read, so it goes where the route sends it when the hold ends. A read on a
//! route with `read_your_writes_ms` may follow its key's recent write ([`crate::recent`]).
//!
//! A request's state lives in one [`Exchange`], which also says in what order it is released
//! at the end of the response. Its steps — `take_turn` (dual writes), `begin_tee` (shadow mode
//! decides and stamps), `forward` (rewrite, send, await the head, wrap the body), `finish` —
//! are where shadow mode sits ([`crate::tee`]): decided before forwarding, the bodies teed as
//! they stream, the exchange handed over when the primary response has ended. Guarded routes
//! count the new side's answers in `finish`.
//!
//! # Layout
//! - this file: [`handle`], one request from arrival to response head;
//! - `exchange`: [`Exchange`](exchange::Exchange), the request's state and its release order;
//! - `rewrite`: override check, hop-by-hop removal, `Host` and `X-Forwarded-*`;
//! - `failure`: why a request failed and the JSON answer for it;
//! - `worker`: the per-worker and per-connection state.

mod admit;
mod exchange;
mod failure;
mod rewrite;
mod worker;

use std::convert::Infallible;
use std::rc::Rc;

use http::{Request, Response};
use hyper::body::Incoming;

use self::exchange::{Exchange, Inflight};
use self::rewrite::{check_override, is_upgrade};
use crate::access_log::{Capture, CaptureStart, Decision};
use crate::table::Route;
use crate::upstream::RespBody;

pub use self::rewrite::{
    BACKEND_HEADER, OVERRIDE_HEADER, OVERRIDE_TOKEN_HEADER, REQUEST_ID, ROUTE_HEADER,
};
pub(crate) use self::worker::{ConnInfo, Worker};

/// Serves one request.
pub(crate) async fn handle(
    worker: Rc<Worker>,
    conn: Rc<ConnInfo>,
    mut req: Request<Incoming>,
) -> Result<Response<RespBody>, Infallible> {
    let mut table = worker.table();
    let inflight = Inflight::new(&worker.shared.metrics.inflight);
    // Refused before routing (CONNECT, Host rules, codings, a path above the root); the path
    // is normalised here, so the route, the sticky key and the backend see the same one.
    if let Err(r) = admit::admit(&mut req) {
        let id = request_id(&worker, &mut req);
        tracing::debug!(status = r.status.as_u16(), detail = %r.detail, "request refused");
        let error = r.error;
        let capture = table.access_log.as_ref().and_then(|log| {
            let (parts, _) = req.into_parts();
            let start = capture_start(table.clock.now(), id.clone(), &conn, &parts, None);
            Capture::begin(&worker.access_log(log, &table.clock), start)
        });
        let resp = failure::rejection_response(r, &id);
        return Ok(match capture {
            Some(c) => {
                let now = table.clock.now();
                exchange::logged(resp, c, None, Some(error), &table, now, None)
            }
            None => resp,
        });
    }

    let mut route = table.match_route(req.method(), req.uri().path());
    // A write on a held route waits here, before anything about it is decided; then it is
    // routed by the table (and the route's percentage) in force when the hold ended.
    let mut held = false;
    if let Some(hold) = route.hold.as_ref().filter(|h| h.is_held()) {
        if !crate::route::is_safe(req.method()) {
            let hold = hold.clone();
            hold.wait(&table.clock).await;
            held = true;
            table = worker.table();
            route = table.match_route(req.method(), req.uri().path());
        }
    }
    // Durations (and the guard's samples) start after any hold.
    let started = table.clock.now();
    let request_id = request_id(&worker, &mut req);
    let forced = check_override(&table, route, req.headers_mut());
    let down_upgrade = is_upgrade(req.headers()).then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let (side, split) = match forced {
        Some(side) => (side, None),
        None => {
            let split = route.decide(&parts);
            let side = route.follow_recent_write(table.recent.as_deref(), &parts, split, started);
            (side, Some(split))
        }
    };
    // The access log: one branch when it is off or the route is left out.
    let capture = match &table.access_log {
        Some(log) if route.access_log => {
            let decision = match split {
                None => Decision::Override,
                Some(_) if held => Decision::Hold,
                Some(split) if split != side => Decision::Recent,
                Some(_) if route.sticky_applied(&parts) => Decision::Sticky,
                Some(_) => Decision::Percent,
            };
            let start = capture_start(
                started,
                request_id.clone(),
                &conn,
                &parts,
                Some((route, decision)),
            );
            Capture::begin(&worker.access_log(log, &table.clock), start)
        }
        _ => None,
    };
    let mut ex = Exchange::new(&table, route, side, request_id, started, inflight, capture);
    ex.decided(&parts);
    let result = match ex.take_turn(&parts).await {
        Ok(()) => {
            ex.begin_tee(&mut parts);
            ex.forward(&worker, &conn, parts, body, down_upgrade).await
        }
        Err(refused) => Err(refused),
    };
    Ok(ex.finish(result))
}

/// What the access log keeps of a request when it arrives (`routed`: its route and why it
/// goes where it goes; `None` for a request refused before routing).
fn capture_start(
    at: std::time::Instant,
    request_id: http::HeaderValue,
    conn: &ConnInfo,
    parts: &http::request::Parts,
    routed: Option<(&Route, Decision)>,
) -> CaptureStart {
    CaptureStart {
        at,
        request_id,
        client: conn.peer_ip.clone(),
        method: parts.method.clone(),
        uri: parts.uri.clone(),
        version: parts.version,
        route: routed.map(|(r, _)| r.name_arc.clone()),
        decision: routed.map(|(_, d)| d),
    }
}

/// The client's `X-Request-Id` (1–128 bytes), else a new one, set on the request.
fn request_id(worker: &Worker, req: &mut Request<Incoming>) -> http::HeaderValue {
    match req.headers().get(&REQUEST_ID) {
        Some(v) if !v.is_empty() && v.len() <= 128 => v.clone(),
        _ => {
            let id = worker.request_id();
            req.headers_mut().insert(REQUEST_ID, id.clone());
            id
        }
    }
}
