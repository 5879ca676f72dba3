//! The proxy's side of shadow mode and dual writes, per request: the decision before forwarding
//! ([`begin`]), the request-time stamp, the copies of the request body ([`ReqTee`]) and of the
//! primary response ([`RespTee`]) taken while they stream, and the hand-over to
//! `ficus-shadow` when the primary response body has ended.
//!
//! # Architecture invariant: the mirror never delays the primary
//! Teeing keeps reference-counted `Bytes` of frames as they pass (up to `max_body_bytes`,
//! past which the exchange is served but not mirrored); the client's frames are forwarded
//! unchanged and at once. [`Shadow::submit`] never blocks. A request that is not mirrored
//! costs one branch per seam.
//!
//! The one exception is by design: on a dual-write route a *write* waits, before it is
//! forwarded, until the previous write to the same row has reached both sides (its turn, see
//! `order`; the turn rides here in the mirror job's `on_done`). A mirror still never delays
//! the response of the write it copies, nor any read.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use ficus_shadow::{
    CapturedBody, CapturedResponse, MirrorJob, MirrorReport, OnDone, Outcome, Shadow, ShadowRoute,
};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode, Uri};

use crate::access_log::OutcomeHalf;
use crate::dualwrite::{DualWrite, PendingWrite};
use crate::evidence::{Compared, Evidence};
use crate::plan::{CohortMismatch, PlanRuntime};
use crate::table::{Route, Table};
use ficus_core::headers::REQUEST_TIME;
use ficus_core::Side;
use ficus_state::DualWriteRecord;

/// Where the request body's copy lands when the request body has ended.
pub(crate) type ReqSlot = Rc<Cell<Option<CapturedBody>>>;

/// A mirrored request, between the decision and the end of the primary response.
pub(crate) struct Plan {
    shadow: Arc<Shadow>,
    route: Arc<ShadowRoute>,
    method: Method,
    uri: Uri,
    /// The request headers as forwarded (set after the rewrite).
    headers: HeaderMap,
    request_body: ReqSlot,
    primary_side: Side,
    request_id: String,
    /// The route's evidence record, which counts the comparison.
    evidence: Option<Arc<Evidence>>,
    /// In a step plan's pre-flight cohort: the plan and the request's sticky key.
    cohort: Option<(Arc<PlanRuntime>, String)>,
    /// The access log waits for the comparison's outcome (a request it writes).
    access: Option<OutcomeHalf>,
}

/// What [`begin`] decided for one request.
pub(crate) struct Begun {
    pub plan: Option<Plan>,
    pub write: Option<PendingWrite>,
}

pub(crate) use crate::route::is_safe;

/// Decides, before forwarding, whether the request is mirrored and whether it is a dual
/// write to record; stamps `X-Ficus-Request-Time` on dual-write routes and drops
/// `Accept-Encoding` from mirrored requests.
pub(crate) fn begin(
    table: &Table,
    route: &Route,
    side: Side,
    parts: &mut http::request::Parts,
    request_id: &HeaderValue,
) -> Begun {
    // `dual_write = true` needs `[routes.shadow]`, so the shadow route knows.
    let dual_write_route = route.shadow.as_ref().is_some_and(|s| s.dual_write());
    let stamp = dual_write_route.then(|| {
        // One stamp per request, overwriting any the client sent: the proxy is the clock
        // both sides agree on.
        let t = ficus_core::stamp::request_time(table.clock.utc());
        if let Ok(v) = HeaderValue::from_str(&t) {
            parts.headers.insert(REQUEST_TIME, v);
        }
        t
    });
    let write = match (&route.dual, stamp) {
        (Some(dual), Some(at)) if !is_safe(&parts.method) => {
            let key = route
                .write_key
                .as_ref()
                .and_then(|k| k.get(parts))
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default();
            Some(PendingWrite::new(
                dual,
                DualWriteRecord {
                    at,
                    route: route.name_arc.clone(),
                    key,
                    method: parts.method.clone(),
                    primary: side,
                    legacy_status: None,
                    new_status: None,
                },
            ))
        }
        _ => None,
    };
    // A plan's pre-flight cohort is mirrored every time, whatever the route's `sample`.
    let cohort = route
        .plan
        .as_ref()
        .filter(|_| route.in_preflight_cohort(parts));
    let plan = match (&route.shadow, &table.shadow) {
        (Some(sr), Some(shadow))
            if match cohort {
                Some(_) => shadow.decide_all(sr, &parts.method),
                None => shadow.decide(sr, &parts.method),
            }
            .is_mirror() =>
        {
            // Compression would make the comparison see bytes instead of JSON (and the two
            // sides may compress differently); the client copes with an uncompressed answer.
            parts.headers.remove(header::ACCEPT_ENCODING);
            Some(Plan {
                shadow: shadow.clone(),
                route: sr.clone(),
                method: parts.method.clone(),
                uri: parts.uri.clone(),
                headers: HeaderMap::new(),
                request_body: Rc::new(Cell::new(None)),
                primary_side: side,
                request_id: String::from_utf8_lossy(request_id.as_bytes()).into_owned(),
                evidence: route.evidence.clone(),
                cohort: cohort.map(|p| {
                    let key = route.sticky_key(parts).unwrap_or_default();
                    (p.clone(), String::from_utf8_lossy(key).into_owned())
                }),
                access: None,
            })
        }
        _ => None,
    };
    Begun { plan, write }
}

impl Plan {
    /// The access log's line for this request waits for the comparison's outcome.
    pub fn log_outcome(&mut self, half: OutcomeHalf) {
        self.access = Some(half);
    }

    /// Records the request headers as forwarded to the primary side.
    pub fn forwarded(&mut self, headers: &HeaderMap) {
        self.headers = headers.clone();
    }

    /// The body copy for a request: `None` when there is nothing to tee (no body, or one
    /// declared larger than `max_body_bytes`: the slot is filled at once).
    pub fn request_tee(&self, declared_len: Option<u64>, empty: bool) -> Option<Box<ReqTee>> {
        let limit = self.shadow.max_body_bytes();
        if empty {
            self.request_body.set(Some(CapturedBody::default()));
            return None;
        }
        if declared_len.is_some_and(|n| n > limit as u64) {
            self.request_body.set(Some(CapturedBody::too_large()));
            return None;
        }
        Some(Box::new(ReqTee {
            captured: CapturedBody::default(),
            limit,
            slot: self.request_body.clone(),
        }))
    }

    /// The response copy, from the head as the backend sent it; `write` is finished (row
    /// recorded with the mirror's status, then its turn released) when shadow mode reports.
    pub fn response_tee(
        self,
        status: StatusCode,
        headers: &HeaderMap,
        write: DualWrite,
    ) -> Box<RespTee> {
        let limit = self.shadow.max_body_bytes();
        Box::new(RespTee {
            status,
            headers: headers.clone(),
            captured: CapturedBody::default(),
            limit,
            plan: self,
            write,
        })
    }
}

/// Copies request body frames as they go upstream; fills the slot at end of stream.
pub(crate) struct ReqTee {
    captured: CapturedBody,
    limit: usize,
    slot: ReqSlot,
}

impl ReqTee {
    pub fn push(&mut self, data: &Bytes) {
        self.captured.push(data, self.limit);
    }

    pub fn end(&mut self) {
        self.slot.set(Some(std::mem::take(&mut self.captured)));
    }
}

/// Copies primary response body frames as they go to the client; submits the mirror job at
/// end of stream. Dropped before that (client gone, body failed), nothing is mirrored, a
/// pending dual write is recorded without the mirror and its turn released ([`DualWrite`]'s
/// drop).
pub(crate) struct RespTee {
    status: StatusCode,
    headers: HeaderMap,
    captured: CapturedBody,
    limit: usize,
    plan: Plan,
    write: DualWrite,
}

impl RespTee {
    pub fn push(&mut self, data: &Bytes) {
        self.captured.push(data, self.limit);
    }

    /// The primary response has ended: hand the exchange to shadow mode.
    pub fn submit(self: Box<Self>) {
        let RespTee {
            status,
            headers,
            captured,
            plan,
            write,
            ..
        } = *self;
        // The request body has not ended (the backend answered before reading it all): there
        // is no complete request to mirror.
        let Some(request_body) = plan.request_body.take() else {
            // Recorded without the mirror, then the row's next write may go.
            write.finish(None);
            return;
        };
        let evidence = plan.evidence;
        let cohort = plan.cohort;
        if let Some((p, _)) = &cohort {
            p.metrics.mirrored.inc();
        }
        let what = cohort
            .as_ref()
            .map(|_| format!("{} {}", plan.method, plan.uri));
        let request_id = plan.request_id.clone();
        let on_new = plan.primary_side == Side::New;
        let access = plan.access;
        // Every way the job ends fires `on_done` exactly once (shadow's contract), so the
        // turn is released whether the mirror answered, failed or was dropped.
        let on_done = (write.is_some() || evidence.is_some() || access.is_some()).then(|| {
            OnDone::new(move |r: MirrorReport| {
                // The comparison first (the evidence), then the row with the mirror's
                // status, then the turn (`DualWrite::finish`).
                if let Some(e) = &evidence {
                    let compared = match r.outcome {
                        Outcome::Match => Some(Compared::Match),
                        Outcome::Noise => Some(Compared::Noise),
                        Outcome::Mismatch => Some(Compared::Mismatch),
                        Outcome::Error => Some(Compared::Failed),
                        Outcome::Dropped | Outcome::Skipped => None,
                    };
                    if let Some(c) = compared {
                        let mirror_error =
                            c == Compared::Failed || r.status.is_some_and(|s| s.is_server_error());
                        e.compared(c, on_new, cohort.is_some(), mirror_error);
                        if let (Compared::Mismatch, Some((p, key))) = (c, &cohort) {
                            p.note_mismatch(CohortMismatch {
                                request_id,
                                request: what.unwrap_or_default(),
                                key: key.clone(),
                                new_status: r.status.map(|s| s.as_u16()),
                            });
                        }
                    }
                }
                write.finish(r.status.map(|s| s.as_u16()));
                if let Some(a) = access {
                    a.outcome(r.outcome.as_str());
                }
            })
        });
        plan.shadow.submit(MirrorJob {
            route: plan.route,
            method: plan.method,
            uri: plan.uri,
            request_headers: plan.headers,
            request_body,
            primary_side: plan.primary_side,
            primary: CapturedResponse {
                status,
                headers,
                body: captured,
            },
            request_id: plan.request_id,
            on_done,
        });
    }
}
