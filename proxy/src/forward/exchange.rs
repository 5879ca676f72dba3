//! One request's state, [`Exchange`], and its steps: the dual write's turn, shadow mode's
//! decision, the rewrite and upstream exchange, the response head — and the order in which
//! all of it is released.

use std::error::Error as _;
use std::rc::Rc;
use std::time::Instant;

use http::header::HeaderValue;
use http::{Request, Response, StatusCode};
use hyper::body::{Body, Incoming};
use hyper_util::rt::TokioIo;

use ficus_core::headers::{BACKEND as BACKEND_HEADER, REQUEST_ID, ROUTE as ROUTE_HEADER};
use ficus_core::Side;

use super::failure::{error_response, Failure};
use super::rewrite::{connection_has, content_length, prepare, strip_hop_by_hop};
use super::worker::{ConnInfo, Worker};
use crate::access_log::Capture;
use crate::dualwrite::DualWrite;
use crate::error::{BodyTooLarge, ErrorKind};
use crate::metrics::Metrics;
use crate::table::{Backend, Route, Table};
use crate::tee::{self, Plan, RespTee};
use crate::upstream::{
    ConnectError, DownstreamBodyError, Lease, Logged, Pool, ReqBody, RequestBodyTimeout, RespBody,
    Sender, Upload, UpstreamBody,
};

/// The in-flight gauge, incremented while a request is being served.
pub(super) struct Inflight<'a>(&'a prometheus::IntGauge);

impl<'a> Inflight<'a> {
    pub(super) fn new(gauge: &'a prometheus::IntGauge) -> Inflight<'a> {
        gauge.inc();
        Inflight(gauge)
    }
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One request's state, from the split decision to its response head, and the one place that
/// says in what order it is let go.
///
/// # Architecture invariant: what is released when
/// Correctness depends on the order (a dual write's row must be on record before the next
/// write to the row may go; a connection goes back to the pool only once its response was read
/// to the end), so it is written down here and done explicitly, not left to drop order:
///
/// At the response head, [`Exchange::finish`]:
/// 1. the route's evidence (its rollback guard's and step plan's) counts the answer (side,
///    status, time to head);
/// 2. a write whose side answered is remembered for read-your-writes (before the client can
///    see the answer and read);
/// 3. a write that will not be mirrored (the primary failed, the request was not mirrored):
///    on a dual-write route its row is recorded in the dual-write log, then its turn on the
///    row is released; then it leaves the route's in-flight writes ([`DualWrite::finish`]); a
///    mirrored write travels on with the response tee;
/// 4. the status and duration metrics;
/// 5. the in-flight gauge.
///
/// At the end of the response body (`UpstreamBody::finish`):
/// 6. the upstream connection goes back to the worker's pool ([`Lease::give_back`]);
/// 7. the response tee hands the exchange, with the dual write, to shadow mode.
///
/// When shadow mode is done with that job (its `on_done`, which fires exactly once however
/// the job ends; see `tee`):
/// 8. the evidence counts the comparison (match, noise or mismatch; a pre-flight cohort's
///    apart);
/// 9. the write's row is recorded with the mirror's status, then 10. its turn released, then
///    11. it leaves the route's in-flight writes.
///
/// A response body dropped before its end (client gone) closes its connection instead of
/// pooling it, and drops the tee unsubmitted: 9–11 at once, without the mirror's status. An
/// exchange dropped before `finish` (the client left while the request waited for its turn or
/// for the backend) drops its fields in declaration order, which is the same order: the shadow
/// plan, the write (row, turn, in-flight count), the in-flight gauge.
pub(crate) struct Exchange<'a> {
    table: &'a Table,
    route: &'a Route,
    backend: &'a Backend,
    side: Side,
    request_id: HeaderValue,
    /// When the request arrived, on the table's clock.
    started: Instant,
    /// Shadow mode's plan for a mirrored request, until the response head turns it into the
    /// response tee.
    plan: Option<Plan>,
    /// A write: on a dual-write route its pending row and its turn; its in-flight count.
    write: DualWrite,
    /// A write whose sticky key a read route follows: the key's hash (`recent`).
    written_key: Option<u64>,
    inflight: Inflight<'a>,
    /// What the access log keeps of a request it may write.
    access: Option<Capture>,
    /// The request body's upload, kept for the access log's `bytes_in`.
    upload: Option<Rc<Upload>>,
}

impl<'a> Exchange<'a> {
    /// Taking turns, teeing and forwarding are still to come.
    pub(super) fn new(
        table: &'a Table,
        route: &'a Route,
        side: Side,
        request_id: HeaderValue,
        started: Instant,
        inflight: Inflight<'a>,
        access: Option<Capture>,
    ) -> Exchange<'a> {
        Exchange {
            table,
            route,
            backend: &table.backends[side.index()],
            side,
            request_id,
            started,
            plan: None,
            write: DualWrite::default(),
            written_key: None,
            inflight,
            access,
            upload: None,
        }
    }

    /// The routing decision is made: a write counts in its route's in-flight writes from now
    /// on, and its key is kept to remember which side took it.
    pub(super) fn decided(&mut self, parts: &http::request::Parts) {
        if tee::is_safe(&parts.method) {
            return;
        }
        if let Some(hold) = &self.route.hold {
            self.write.in_flight = Some(hold.write_started());
        }
        self.written_key = self.route.written_key(parts);
    }

    /// A write on a dual-write route first waits for its row's turn (`order`); it is stamped
    /// and recorded only once it has it. A write that cannot get it in time fails here.
    pub(super) async fn take_turn(&mut self, parts: &http::request::Parts) -> Result<(), Failure> {
        let Some((order, timeouts)) = &self.route.write_order else {
            return Ok(());
        };
        if tee::is_safe(&parts.method) {
            return Ok(());
        }
        let key = self.route.write_key.as_ref().and_then(|k| k.get(parts));
        match order.acquire(key, self.backend.cfg.timeout).await {
            Ok(t) => {
                self.write.turn = Some(t);
                Ok(())
            }
            Err(e) => {
                timeouts.inc();
                Err(Failure::new(ErrorKind::WriteTurn, e.to_string()))
            }
        }
    }

    /// Shadow mode's decision for the request (and, on a dual-write route, its stamp and
    /// pending row).
    pub(super) fn begin_tee(&mut self, parts: &mut http::request::Parts) {
        let tee::Begun { plan, write } =
            tee::begin(self.table, self.route, self.side, parts, &self.request_id);
        self.plan = plan;
        self.write.row = write;
        // A mirrored request's line waits for the comparison's outcome.
        if let (Some(p), Some(a)) = (self.plan.as_mut(), self.access.as_mut()) {
            p.log_outcome(a.mirrored());
        }
    }

    /// Rewrites the request, sends it, waits for the response head and wraps the response
    /// body (pool return, tee).
    pub(super) async fn forward(
        &mut self,
        worker: &Worker,
        conn: &ConnInfo,
        mut parts: http::request::Parts,
        body: Incoming,
        down_upgrade: Option<hyper::upgrade::OnUpgrade>,
    ) -> Result<Response<RespBody>, Failure> {
        let table = self.table;
        let upgrade = down_upgrade.is_some();
        // Refuse early what is declared too large; chunked bodies are counted as they stream.
        let declared = content_length(&parts.headers);
        if let Some(len) = declared {
            if len > table.max_request_bytes {
                return Err(Failure::new(
                    ErrorKind::RequestTooLarge,
                    format!(
                        "request body of {len} bytes exceeds max_request_bytes = {}",
                        table.max_request_bytes
                    ),
                ));
            }
        }
        prepare(table, self.backend, conn, &mut parts, upgrade)?;
        if let Some(p) = self.plan.as_mut() {
            p.forwarded(&parts.headers);
        }
        let empty = body.is_end_stream();
        if !empty && declared.is_none() && !upgrade {
            // A body of unknown length goes up chunked whatever the method: hyper's client
            // would otherwise send a GET's or HEAD's body as empty (and drop it).
            parts.headers.insert(
                http::header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
        }
        let req_tee = self
            .plan
            .as_ref()
            .and_then(|p| p.request_tee(declared, empty));
        let body = if empty {
            ReqBody::Empty
        } else {
            ReqBody::stream(
                body,
                table.max_request_bytes,
                table.request_body_idle,
                req_tee,
            )
        };
        if self.access.is_some() {
            self.upload = body.upload();
        }
        let (resp, sender) = send(
            &worker.pool,
            self.backend,
            Request::from_parts(parts, body),
            &worker.shared.metrics,
        )
        .await?;

        self.write
            .set_status(self.side, Some(resp.status().as_u16()));
        // A mirrored write travels on with the response tee (see the release order above).
        let resp_tee = self
            .plan
            .take()
            .map(|p| p.response_tee(resp.status(), resp.headers(), self.write.take()));
        Ok(respond(
            worker,
            self.backend,
            self.route,
            resp,
            sender,
            down_upgrade,
            &self.request_id,
            resp_tee,
        ))
    }

    /// The response head is ready (or the exchange failed): counts it and releases what the
    /// request still holds, in the order documented on [`Exchange`].
    pub(super) fn finish(self, result: Result<Response<RespBody>, Failure>) -> Response<RespBody> {
        let Exchange {
            table,
            route,
            side,
            request_id,
            started,
            plan,
            write,
            written_key,
            inflight,
            access,
            upload,
            ..
        } = self;
        // Not mirrored after all (the exchange failed before its head).
        drop(plan);
        let took = table.clock.now().saturating_duration_since(started);
        let bm = &route.metrics.backend[side.index()];
        // The route's evidence (its guard's and plan's) counts both sides' answers.
        let evidence = route.evidence.as_deref();
        // 1. The evidence counts the answer.
        let answered = result.is_ok();
        let mut failed = None;
        let resp = match result {
            Ok(r) => {
                if let Some(e) = evidence {
                    e.request(side, r.status().as_u16(), took);
                }
                r
            }
            Err(f) => {
                failed = Some(f.kind.as_str());
                bm.error(f.kind);
                if matches!(
                    f.kind,
                    ErrorKind::UpstreamConnect | ErrorKind::UpstreamTimeout | ErrorKind::UpstreamIo
                ) {
                    if let Some(e) = evidence {
                        e.request(side, f.kind.status().as_u16(), took);
                    }
                    tracing::warn!(route = %route.name, backend = side.as_str(), kind = f.kind.as_str(), detail = %f.detail, "upstream failure");
                }
                if f.kind == ErrorKind::WriteTurn {
                    tracing::warn!(route = %route.name, detail = %f.detail, "dual write refused");
                }
                error_response(f, route, side, &request_id)
            }
        };
        // 2. The side that took a write, for the reads that follow it.
        if let (Some(key), Some(recent), true) = (written_key, &table.recent, answered) {
            recent.record(key, side, table.clock.now());
        }
        // 3. Not handed to shadow mode: recorded now, then the row's next write may go.
        write.finish(None);
        // 4. The request's metrics, 5. the in-flight gauge.
        bm.count(resp.status().as_u16());
        bm.duration.observe(took.as_secs_f64());
        drop(inflight);
        // The access log's entry completes when the body ends.
        match access {
            Some(mut c) => {
                // The access log's upstream time is the duration above: arrival to head.
                c.upstream = answered.then_some(took);
                logged(resp, c, Some(side), failed, table, started, upload)
            }
            None => resp,
        }
    }
}

/// Wraps the body of a response the access log writes (sampled, or an error it keeps) so the
/// entry is completed and queued when the body ends.
pub(super) fn logged(
    resp: Response<RespBody>,
    capture: Capture,
    backend: Option<Side>,
    error: Option<&'static str>,
    table: &Table,
    started: Instant,
    upload: Option<Rc<Upload>>,
) -> Response<RespBody> {
    match capture.finish(backend, resp.status().as_u16(), error) {
        None => resp,
        Some(pending) => resp.map(|b| {
            RespBody::Logged(Box::new(Logged::new(
                b,
                pending,
                started,
                table.clock.clone(),
                upload,
            )))
        }),
    }
}

/// Sends the request and waits for the response head (bounded by the backend's `timeout_ms`).
///
/// A request that failed on a reused connection before any answer is retried once, on a fresh
/// connection, when that is safe: it never left (the pooled connection turned out closed), or
/// it left but is idempotent and has no body (the backend closed the idle connection as the
/// request arrived — its keep-alive timeout racing our reuse). Only then, and only after the
/// connection sat idle for [`REPLAY_AFTER_IDLE`], is its head copied: nothing is copied under
/// load, on a fresh connection or for a request with a body.
async fn send(
    pool: &Pool,
    backend: &Backend,
    req: Request<ReqBody>,
    metrics: &Metrics,
) -> Result<(Response<Incoming>, Sender), Failure> {
    let replayable = matches!(req.body(), ReqBody::Empty) && is_idempotent(req.method());
    let mut req = req;
    for attempt in 0..2 {
        let opened = &metrics.connections_opened[backend.side.index()];
        let mut conn = pool
            .checkout(backend, attempt > 0, || opened.inc())
            .await
            .map_err(|e| match e {
                ConnectError::Timeout => Failure::new(
                    ErrorKind::UpstreamConnect,
                    format!(
                        "connect to {} timed out after {:?}",
                        backend.cfg.authority, backend.cfg.connect_timeout
                    ),
                ),
                other => Failure::new(
                    ErrorKind::UpstreamConnect,
                    format!("{}: {}", backend.cfg.authority, chain(&other)),
                ),
            })?;
        let retry = conn.reused && attempt == 0;
        // Only a connection idle long enough can have met the backend's keep-alive timeout:
        // under load connections are idle for microseconds and nothing is copied.
        let copy =
            (retry && replayable && conn.idle_for >= REPLAY_AFTER_IDLE).then(|| head_copy(&req));
        let upload = req.body().upload();
        let fut = conn.sender.try_send_request(req);
        // The response-head timeout counts from the end of the upload, not from its start.
        let answer = match upload {
            None => tokio::time::timeout(backend.cfg.timeout, fut).await.ok(),
            Some(upload) => {
                tokio::select! {
                    biased;
                    r = fut => Some(r),
                    _ = head_deadline(&upload, backend.cfg.timeout) => None,
                }
            }
        };
        match answer {
            None => {
                return Err(Failure::new(
                    ErrorKind::UpstreamTimeout,
                    format!(
                        "no response head from {} within {:?}",
                        backend.cfg.authority, backend.cfg.timeout
                    ),
                ))
            }
            Some(Ok(resp)) => return Ok((resp, conn.sender)),
            Some(Err(mut e)) => {
                if retry {
                    if let Some(back) = e.take_message() {
                        req = back;
                        continue;
                    }
                    if let Some(copy) = copy.filter(|_| closed_before_answer(e.error())) {
                        tracing::debug!(backend = %backend.cfg.authority, error = %chain(e.error()), "reused connection closed before the answer; retrying on a fresh one");
                        req = copy;
                        continue;
                    }
                }
                return Err(classify(e.into_error(), backend));
            }
        }
    }
    Err(Failure::new(ErrorKind::Internal, "retry loop ended"))
}

/// Resolves when the response head is late: `timeout` after the upload is done, or after
/// `timeout` without upload progress while the body was not waiting for the client (the
/// backend stopped reading it). A client that is slow to send is its own idle timer's business
/// (`request_body_idle_timeout_ms`), not the backend's.
async fn head_deadline(upload: &Upload, timeout: std::time::Duration) {
    loop {
        let before = upload.frames.get();
        match tokio::time::timeout(timeout, upload.done.notified()).await {
            Ok(()) => break,
            Err(_) if upload.frames.get() == before && !upload.on_client.get() => return,
            Err(_) => {}
        }
    }
    tokio::time::sleep(timeout).await;
}

/// A request sent on a connection idle at least this long keeps a copy of its head, to be sent
/// again if the backend closed the connection as it arrived. (No backend's keep-alive timeout is
/// shorter; a connection closed well before its reuse is seen closed at checkout.)
const REPLAY_AFTER_IDLE: std::time::Duration = std::time::Duration::from_millis(5);

/// RFC 9110 §9.2.2: methods whose repetition has the effect of one.
fn is_idempotent(m: &http::Method) -> bool {
    use http::Method;
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// The head of a body-less request, to send it again.
fn head_copy(req: &Request<ReqBody>) -> Request<ReqBody> {
    let mut r = Request::new(ReqBody::Empty);
    *r.method_mut() = req.method().clone();
    *r.uri_mut() = req.uri().clone();
    *r.version_mut() = req.version();
    *r.headers_mut() = req.headers().clone();
    r
}

/// The connection ended (EOF, reset, broken pipe) before an answer arrived.
fn closed_before_answer(e: &hyper::Error) -> bool {
    if e.is_incomplete_message() || e.is_canceled() {
        return true;
    }
    let mut src = e.source();
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::UnexpectedEof
            );
        }
        src = s.source();
    }
    false
}

/// An error with its causes, `outer: inner: innermost` (hyper's `Display` shows only the outer).
pub(super) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !out.ends_with(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        src = s.source();
    }
    out
}

fn classify(e: hyper::Error, backend: &Backend) -> Failure {
    let mut src: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(s) = src {
        if let Some(t) = s.downcast_ref::<BodyTooLarge>() {
            return Failure::new(ErrorKind::RequestTooLarge, t.to_string());
        }
        if let Some(t) = s.downcast_ref::<RequestBodyTimeout>() {
            return Failure::new(ErrorKind::RequestTimeout, t.to_string());
        }
        if s.downcast_ref::<DownstreamBodyError>().is_some() {
            return Failure::new(ErrorKind::Downstream, s.to_string());
        }
        src = s.source();
    }
    Failure::new(
        ErrorKind::UpstreamIo,
        format!("{}: {}", backend.cfg.authority, chain(&e)),
    )
}

/// Rewrites the response head and wraps its body so the connection returns to the pool (and,
/// on a mirrored request, so the body is teed).
#[allow(clippy::too_many_arguments)] // the seams of one exchange, each used once
fn respond(
    worker: &Worker,
    backend: &Backend,
    route: &Route,
    resp: Response<Incoming>,
    sender: Sender,
    down_upgrade: Option<hyper::upgrade::OnUpgrade>,
    request_id: &HeaderValue,
    tee: Option<Box<RespTee>>,
) -> Response<RespBody> {
    let (mut parts, body) = resp.into_parts();
    // Read before the hop-by-hop headers go: a connection the backend closes is not pooled.
    let reusable = !connection_has(&parts.headers, "close")
        && (parts.version != http::Version::HTTP_10
            || connection_has(&parts.headers, "keep-alive"));
    let switching = parts.status == StatusCode::SWITCHING_PROTOCOLS && down_upgrade.is_some();
    strip_hop_by_hop(&mut parts.headers, switching);
    parts.headers.insert(ROUTE_HEADER, route.name_hv.clone());
    parts
        .headers
        .insert(BACKEND_HEADER, backend.name_hv.clone());
    parts.headers.insert(REQUEST_ID, request_id.clone());
    if switching {
        let up = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
        if let (Some(down), Some(up)) = (down_upgrade, up) {
            // The upstream connection now belongs to the tunnel; it never returns to the pool.
            drop(sender);
            drop(body);
            tokio::task::spawn_local(async move {
                match tokio::try_join!(down, up) {
                    Ok((d, u)) => {
                        let mut d = TokioIo::new(d);
                        let mut u = TokioIo::new(u);
                        if let Err(e) = tokio::io::copy_bidirectional(&mut d, &mut u).await {
                            tracing::debug!(error = %e, "upgraded connection ended");
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "upgrade failed"),
                }
            });
            return Response::from_parts(parts, RespBody::empty());
        }
    }
    let grpc = if crate::grpc::is_grpc(&parts.headers) {
        crate::grpc::GrpcStatus::start(
            &worker.shared.metrics.grpc,
            &route.name,
            backend.side.as_str(),
            &parts.headers,
        )
    } else {
        None
    };
    let lease = Lease {
        pool: worker.pool.clone(),
        side: backend.side,
        backend_id: backend.id,
        max_idle: backend.cfg.max_idle_per_worker,
        sender,
        reusable,
    };
    Response::from_parts(
        parts,
        RespBody::Upstream(UpstreamBody::new(
            body,
            Some(lease),
            tee,
            backend.cfg.response_body_idle_timeout,
            grpc,
        )),
    )
}
