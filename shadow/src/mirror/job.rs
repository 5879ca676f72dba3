//! What the proxy hands to shadow mode and hears back: a [`MirrorJob`] per finished primary
//! exchange, the [`OnDone`] callback told once what became of it ([`MirrorReport`]), and the
//! answers of `Shadow::decide` ([`MirrorDecision`]) and `Shadow::submit` ([`Submitted`]).

use std::sync::Arc;

use http::{HeaderMap, Method, StatusCode, Uri};

use super::route::ShadowRoute;
use crate::capture::{CapturedBody, CapturedResponse, Side};
use crate::metrics::Outcome;

/// Why a request is not mirrored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// A write on a route that is not dual-write.
    Method,
    /// Not in the route's `sample`.
    NotSampled,
    /// The mirror queue is full, or shadow mode is shutting down (counted `dropped`).
    QueueFull,
}

/// The answer of [`Shadow::decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MirrorDecision {
    /// Tee the bodies and [`Shadow::submit`] the exchange when the response has ended.
    Mirror,
    /// Forward as usual; nothing to tee.
    Skip(SkipReason),
}

impl MirrorDecision {
    /// Whether the request is to be mirrored.
    pub fn is_mirror(self) -> bool {
        self == MirrorDecision::Mirror
    }
}

/// A finished primary exchange to mirror and compare.
#[derive(Debug)]
pub struct MirrorJob {
    /// The route it matched.
    pub route: Arc<ShadowRoute>,
    /// The request method.
    pub method: Method,
    /// The request target; only its path and query are used.
    pub uri: Uri,
    /// The request headers as forwarded to the primary side.
    pub request_headers: HeaderMap,
    /// The request body as forwarded (teed up to `max_body_bytes`).
    pub request_body: CapturedBody,
    /// The side that served the client.
    pub primary_side: Side,
    /// Its response (headers as the backend sent them; body teed up to `max_body_bytes`).
    pub primary: CapturedResponse,
    /// The proxy's request id (the `Idempotency-Key` of mirrored writes).
    pub request_id: String,
    /// Told what became of the job (the mirror's status, the outcome); `None` for most jobs.
    pub on_done: Option<OnDone>,
}

/// What became of a mirror job, as told to its [`OnDone`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MirrorReport {
    /// The mirror side's status; `None` when the request was not sent or the exchange failed.
    pub status: Option<StatusCode>,
    /// How the job was counted (`match`/`mismatch`/`noise` after a comparison).
    pub outcome: Outcome,
}

/// A callback told once what became of a job: the proxy learns the mirror side's status of a
/// dual write and the comparison outcome for its rollback guard without a second mirror.
///
/// It runs on the shadow thread (or on the thread calling [`Shadow::submit`] when the job is
/// refused there), so it must be short and must not block. It always runs exactly once: a
/// job dropped without an answer (shadow mode shutting down) reports `dropped`. The proxy
/// relies on that: a dual write's row turn is released from it, so the next write to the row
/// can go.
pub struct OnDone(Option<Box<dyn FnOnce(MirrorReport) + Send + Sync>>);

impl OnDone {
    /// Wraps `f`.
    pub fn new(f: impl FnOnce(MirrorReport) + Send + Sync + 'static) -> OnDone {
        OnDone(Some(Box::new(f)))
    }

    fn fire(&mut self, report: MirrorReport) {
        if let Some(f) = self.0.take() {
            f(report);
        }
    }
}

impl Drop for OnDone {
    fn drop(&mut self) {
        self.fire(MirrorReport {
            status: None,
            outcome: Outcome::Dropped,
        });
    }
}

impl std::fmt::Debug for OnDone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnDone(..)")
    }
}

impl MirrorJob {
    /// Tells the job's [`OnDone`], if any.
    pub(super) fn report(&mut self, status: Option<StatusCode>, outcome: Outcome) {
        report(&mut self.on_done, status, outcome);
    }
}

pub(super) fn report(on_done: &mut Option<OnDone>, status: Option<StatusCode>, outcome: Outcome) {
    if let Some(mut d) = on_done.take() {
        d.fire(MirrorReport { status, outcome });
    }
}

/// What [`Shadow::submit`] did with a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// Queued for the mirror worker.
    Queued,
    /// The queue was full; counted `dropped`.
    Dropped,
    /// A body was larger than `max_body_bytes`; counted `skipped`.
    Skipped,
    /// A write on a route that is not dual-write: refused, whatever `decide` said.
    NotAllowed,
    /// The mirror side kept failing and mirroring to it is paused; counted `error`.
    MirrorFailing,
}

/// The methods mirrored on every shadowed route (others only on dual-write routes).
pub(super) fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}
