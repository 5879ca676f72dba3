//! Forwarding one request: route match, override check, split decision, request rewrite
//! (hop-by-hop headers removed per RFC 9110 §7.6.1, `X-Forwarded-*` and `X-Request-Id` added),
//! the upstream exchange with its timeout, and the response rewrite (`x-ficus-route`,
//! `x-ficus-backend`). Failures become JSON bodies naming route and backend: connect → 502,
//! timeout → 504, a dual write that did not get its row's turn (see [`crate::order`]) → 503.
//! `Upgrade` requests (WebSocket) are passed through to the routed side.
//!
//! A request's state lives in one [`Exchange`], which also says in what order it is released
//! at the end of the response. Its steps — `take_turn` (dual writes), `begin_tee` (shadow mode
//! decides and stamps), `forward` (rewrite, send, await the head, wrap the body), `finish` —
//! are where shadow mode sits ([`crate::tee`]): decided before forwarding, the bodies teed as
//! they stream, the exchange handed over when the primary response has ended. Guarded routes
//! count the new side's answers in `finish`.

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::error::Error as _;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use hyper::body::{Body, Incoming};
use hyper_util::rt::TokioIo;

use ficus_core::headers::HOP_BY_HOP;
use ficus_core::Side;

use crate::dualwrite::DualWrite;
use crate::error::{BodyTooLarge, ErrorKind};
use crate::metrics::Metrics;
use crate::shared::Shared;
use crate::table::{Backend, Route, Table};
use crate::tee::{self, Plan, RespTee};
use crate::upstream::{
    ConnectError, DownstreamBodyError, Lease, Pool, ReqBody, RespBody, Sender, UpstreamBody,
};

/// `X-Ficus-Backend: legacy|new` asks for a side; honoured only with a valid override token.
pub const OVERRIDE_HEADER: HeaderName = ficus_core::headers::BACKEND;
/// The token that makes `X-Ficus-Backend` count.
pub const OVERRIDE_TOKEN_HEADER: HeaderName = HeaderName::from_static("x-ficus-override-token");
pub use ficus_core::headers::{BACKEND as BACKEND_HEADER, REQUEST_ID, ROUTE as ROUTE_HEADER};
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Per-connection facts.
pub(crate) struct ConnInfo {
    pub peer_ip: HeaderValue,
}

impl ConnInfo {
    pub fn new(peer: SocketAddr) -> ConnInfo {
        // An IP address always makes a valid header value.
        let peer_ip = HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or(HeaderValue::from_static("unknown"));
        ConnInfo { peer_ip }
    }
}

/// Per-worker state: the cached table, the upstream pools, the request-id generator.
pub(crate) struct Worker {
    shared: Arc<Shared>,
    // `Rc<Arc<_>>` on purpose: requests clone the `Rc` (non-atomic), never the shared `Arc`.
    #[allow(clippy::redundant_allocation)]
    current: RefCell<Rc<Arc<Table>>>,
    seen: Cell<u64>,
    pub pool: Rc<Pool>,
    id_prefix: u64,
    id_counter: Cell<u64>,
}

impl Worker {
    pub fn new(shared: Arc<Shared>) -> Worker {
        let seen = shared.generation.load(Ordering::Acquire);
        let table = shared.table.load_full();
        Worker {
            shared,
            current: RefCell::new(Rc::new(table)),
            seen: Cell::new(seen),
            pool: Rc::new(Pool::default()),
            id_prefix: rand::random(),
            id_counter: Cell::new(0),
        }
    }

    /// The current table; refreshed from the shared `ArcSwap` only when its generation moved,
    /// so the common case is one atomic load and a non-atomic `Rc` clone.
    #[inline]
    #[allow(clippy::redundant_allocation)]
    fn table(&self) -> Rc<Arc<Table>> {
        let g = self.shared.generation.load(Ordering::Acquire);
        if g != self.seen.get() {
            *self.current.borrow_mut() = Rc::new(self.shared.table.load_full());
            self.seen.set(g);
        }
        self.current.borrow().clone()
    }

    fn request_id(&self) -> HeaderValue {
        let n = self.id_counter.get().wrapping_add(1);
        self.id_counter.set(n);
        let mut buf = [0u8; 32];
        hex(self.id_prefix, &mut buf[..16]);
        hex(n, &mut buf[16..]);
        HeaderValue::from_maybe_shared(Bytes::copy_from_slice(&buf))
            .unwrap_or(HeaderValue::from_static("0"))
    }
}

fn hex(mut v: u64, out: &mut [u8]) {
    const D: &[u8; 16] = b"0123456789abcdef";
    for b in out.iter_mut().rev() {
        *b = D[(v & 0xf) as usize];
        v >>= 4;
    }
}

struct Failure {
    kind: ErrorKind,
    detail: String,
}

impl Failure {
    fn new(kind: ErrorKind, detail: impl Into<String>) -> Failure {
        Failure {
            kind,
            detail: detail.into(),
        }
    }
}

/// The in-flight gauge, incremented while a request is being served.
struct Inflight<'a>(&'a prometheus::IntGauge);

impl<'a> Inflight<'a> {
    fn new(gauge: &'a prometheus::IntGauge) -> Inflight<'a> {
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
/// 1. the rollback guard counts the new side's answer (status, time to head);
/// 2. a dual write that will not be mirrored (the primary failed, the request was not
///    mirrored): its row is recorded in the dual-write log, then its turn on the row is
///    released ([`DualWrite::finish`]); a mirrored write travels on with the response tee;
/// 3. the status and duration metrics;
/// 4. the in-flight gauge.
///
/// At the end of the response body (`UpstreamBody::finish`):
/// 5. the upstream connection goes back to the worker's pool ([`Lease::give_back`]);
/// 6. the response tee hands the exchange, with the dual write, to shadow mode.
///
/// When shadow mode is done with that job (its `on_done`, which fires exactly once however
/// the job ends; see `tee`):
/// 7. the guard counts the comparison (match or mismatch);
/// 8. the write's row is recorded with the mirror's status, then 9. its turn released.
///
/// A response body dropped before its end (client gone) closes its connection instead of
/// pooling it, and drops the tee unsubmitted: 8–9 at once, without the mirror's status. An
/// exchange dropped before `finish` (the client left while the request waited for its turn or
/// for the backend) drops its fields in declaration order, which is the same order: the shadow
/// plan, the dual write (row, then turn), the in-flight gauge.
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
    /// A write on a dual-write route: its pending row and its turn.
    write: DualWrite,
    inflight: Inflight<'a>,
}

impl<'a> Exchange<'a> {
    /// Taking turns, teeing and forwarding are still to come.
    fn new(
        table: &'a Table,
        route: &'a Route,
        side: Side,
        request_id: HeaderValue,
        started: Instant,
        inflight: Inflight<'a>,
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
            inflight,
        }
    }

    /// A write on a dual-write route first waits for its row's turn (`order`); it is stamped
    /// and recorded only once it has it. A write that cannot get it in time fails here.
    async fn take_turn(&mut self, parts: &http::request::Parts) -> Result<(), Failure> {
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
    fn begin_tee(&mut self, parts: &mut http::request::Parts) {
        let tee::Begun { plan, write } =
            tee::begin(self.table, self.route, self.side, parts, &self.request_id);
        self.plan = plan;
        self.write.row = write;
    }

    /// Rewrites the request, sends it, waits for the response head and wraps the response
    /// body (pool return, tee).
    async fn forward(
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
        let req_tee = self
            .plan
            .as_ref()
            .and_then(|p| p.request_tee(declared, empty));
        let body = if empty {
            ReqBody::Empty
        } else {
            ReqBody::Stream {
                inner: body,
                seen: 0,
                limit: table.max_request_bytes,
                tee: req_tee,
            }
        };
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
    fn finish(self, result: Result<Response<RespBody>, Failure>) -> Response<RespBody> {
        let Exchange {
            table,
            route,
            side,
            request_id,
            started,
            plan,
            write,
            inflight,
            ..
        } = self;
        // Not mirrored after all (the exchange failed before its head).
        drop(plan);
        let took = table.clock.now().saturating_duration_since(started);
        let bm = &route.metrics.backend[side.index()];
        let guard = match side {
            Side::New => route.guard.as_deref(),
            Side::Legacy => None,
        };
        // 1. The guard counts the new side's answer.
        let resp = match result {
            Ok(r) => {
                if let Some(g) = guard {
                    g.request(r.status().as_u16(), took);
                }
                r
            }
            Err(f) => {
                bm.error(f.kind);
                if matches!(
                    f.kind,
                    ErrorKind::UpstreamConnect | ErrorKind::UpstreamTimeout | ErrorKind::UpstreamIo
                ) {
                    if let Some(g) = guard {
                        g.request(f.kind.status().as_u16(), took);
                    }
                    tracing::warn!(route = %route.name, backend = side.as_str(), kind = f.kind.as_str(), detail = %f.detail, "upstream failure");
                }
                if f.kind == ErrorKind::WriteTurn {
                    tracing::warn!(route = %route.name, detail = %f.detail, "dual write refused");
                }
                error_response(f, route, side, &request_id)
            }
        };
        // 2. Not handed to shadow mode: recorded now, then the row's next write may go.
        write.finish(None);
        // 3. The request's metrics, 4. the in-flight gauge.
        bm.count(resp.status().as_u16());
        bm.duration.observe(took.as_secs_f64());
        drop(inflight);
        resp
    }
}

/// Serves one request.
pub(crate) async fn handle(
    worker: Rc<Worker>,
    conn: Rc<ConnInfo>,
    mut req: Request<Incoming>,
) -> Result<Response<RespBody>, Infallible> {
    let table = worker.table();
    let started = table.clock.now();
    let inflight = Inflight::new(&worker.shared.metrics.inflight);

    let route = table.match_route(req.method(), req.uri().path());
    let request_id = match req.headers().get(&REQUEST_ID) {
        Some(v) if !v.is_empty() && v.len() <= 128 => v.clone(),
        _ => {
            let id = worker.request_id();
            req.headers_mut().insert(REQUEST_ID, id.clone());
            id
        }
    };
    let forced = check_override(&table, route, req.headers_mut());
    let down_upgrade = is_upgrade(req.headers()).then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let side = forced.unwrap_or_else(|| route.decide(&parts));
    let mut ex = Exchange::new(&table, route, side, request_id, started, inflight);
    let result = match ex.take_turn(&parts).await {
        Ok(()) => {
            ex.begin_tee(&mut parts);
            ex.forward(&worker, &conn, parts, body, down_upgrade).await
        }
        Err(refused) => Err(refused),
    };
    Ok(ex.finish(result))
}

/// Applies `X-Ficus-Backend`: honoured only with the override token; both headers are removed
/// so neither the request nor the token reaches a backend.
fn check_override(table: &Table, route: &Route, headers: &mut HeaderMap) -> Option<Side> {
    let want = headers.remove(&OVERRIDE_HEADER)?;
    let token = headers.remove(&OVERRIDE_TOKEN_HEADER);
    let valid = match (&table.override_token, &token) {
        (Some(t), Some(given)) => constant_time_eq(t, given.as_bytes()),
        _ => false,
    };
    match (valid, Side::parse_bytes(want.as_bytes())) {
        (true, Some(side)) => {
            route.metrics.override_honoured.inc();
            Some(side)
        }
        _ => {
            route.metrics.override_rejected.inc();
            None
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn is_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE) && connection_has(h, "upgrade")
}

fn connection_has(h: &HeaderMap, token: &str) -> bool {
    h.get_all(header::CONNECTION).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1): `Connection` and every header it names,
/// `Keep-Alive`, `Proxy-Connection`, `Proxy-Authenticate`, `Proxy-Authorization`, `TE`,
/// `Trailer`, `Transfer-Encoding`, `Upgrade`. For an upgrade, `Connection: upgrade` and
/// `Upgrade` are kept: they are the point of the exchange.
pub(crate) fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    // One pass to see what is there; usually only `Connection: keep-alive`, so usually one
    // removal rather than nine lookups.
    let mut found = 0u16;
    for name in h.keys() {
        found |= hop_bit(name);
    }
    if found == 0 {
        return;
    }
    if found & 1 != 0 {
        let mut named: Vec<HeaderName> = Vec::new();
        for v in h.get_all(header::CONNECTION) {
            for t in v.as_bytes().split(|&b| b == b',') {
                let t = t.trim_ascii();
                if t.is_empty()
                    || t.eq_ignore_ascii_case(b"keep-alive")
                    || t.eq_ignore_ascii_case(b"close")
                    || t.eq_ignore_ascii_case(b"upgrade")
                {
                    continue;
                }
                if let Ok(n) = HeaderName::from_bytes(t) {
                    named.push(n);
                }
            }
        }
        for n in named {
            h.remove(n);
        }
    }
    for (bit, name) in HOP_BY_HOP.iter().enumerate() {
        if found & (1 << bit) == 0 {
            continue;
        }
        let is_upgrade_pair = *name == header::CONNECTION || *name == header::UPGRADE;
        if !(keep_upgrade && is_upgrade_pair) {
            h.remove(name);
        }
    }
    if keep_upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

#[inline]
/// Bit i stands for entry i of [`HOP_BY_HOP`] (`Connection` is bit 0).
fn hop_bit(n: &HeaderName) -> u16 {
    for (i, h) in HOP_BY_HOP.iter().enumerate() {
        if n == h {
            return 1 << i;
        }
    }
    0
}

/// Rewrites the request head for the backend.
fn prepare(
    table: &Table,
    backend: &Backend,
    conn: &ConnInfo,
    parts: &mut http::request::Parts,
    upgrade: bool,
) -> Result<(), Failure> {
    // Origin-form request target, with the backend's path prefix if it has one.
    if parts.uri.scheme().is_some() || !backend.cfg.prefix.is_empty() {
        let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let target = if backend.cfg.prefix.is_empty() {
            pq.to_string()
        } else {
            format!("{}{}", backend.cfg.prefix, pq)
        };
        parts.uri = Uri::try_from(target)
            .map_err(|e| Failure::new(ErrorKind::Downstream, format!("bad request target: {e}")))?;
    }
    let h = &mut parts.headers;
    strip_hop_by_hop(h, upgrade);
    // Host: from an absolute-form target, else the Host header (HTTP/1.1 requires one of them).
    let host = match parts.uri.authority() {
        Some(_) => None,
        None => h.get(header::HOST).cloned(),
    };
    if let Some(host) = &host {
        if !h.contains_key(&X_FORWARDED_HOST) {
            h.insert(X_FORWARDED_HOST, host.clone());
        }
    }
    if !(table.preserve_host && host.is_some()) {
        h.insert(header::HOST, backend.host_hv.clone());
    }
    // X-Forwarded-For: append this hop's client address to any list already there.
    match h.get(&X_FORWARDED_FOR) {
        None => {
            h.insert(X_FORWARDED_FOR, conn.peer_ip.clone());
        }
        Some(prev) => {
            let mut v = Vec::with_capacity(prev.len() + 2 + conn.peer_ip.len());
            v.extend_from_slice(prev.as_bytes());
            v.extend_from_slice(b", ");
            v.extend_from_slice(conn.peer_ip.as_bytes());
            if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(v)) {
                h.insert(X_FORWARDED_FOR, v);
            }
        }
    }
    if !h.contains_key(&X_FORWARDED_PROTO) {
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    Ok(())
}

/// Sends the request and waits for the response head (bounded by the backend's `timeout_ms`).
/// A request that never left (a pooled connection turned out closed) is retried once on a
/// fresh connection.
async fn send(
    pool: &Pool,
    backend: &Backend,
    req: Request<ReqBody>,
    metrics: &Metrics,
) -> Result<(Response<Incoming>, Sender), Failure> {
    let mut req = req;
    for attempt in 0..2 {
        let opened = &metrics.connections_opened[backend.side.index()];
        let mut conn = pool
            .checkout(backend, || opened.inc())
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
                    format!("{}: {other}", backend.cfg.authority),
                ),
            })?;
        let fut = conn.sender.try_send_request(req);
        match tokio::time::timeout(backend.cfg.timeout, fut).await {
            Err(_) => {
                return Err(Failure::new(
                    ErrorKind::UpstreamTimeout,
                    format!(
                        "no response head from {} within {:?}",
                        backend.cfg.authority, backend.cfg.timeout
                    ),
                ))
            }
            Ok(Ok(resp)) => return Ok((resp, conn.sender)),
            Ok(Err(mut e)) => match e.take_message() {
                Some(back) if conn.reused && attempt == 0 => {
                    req = back;
                    continue;
                }
                _ => return Err(classify(e.into_error(), backend)),
            },
        }
    }
    Err(Failure::new(ErrorKind::Internal, "retry loop ended"))
}

fn classify(e: hyper::Error, backend: &Backend) -> Failure {
    let mut src: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(s) = src {
        if let Some(t) = s.downcast_ref::<BodyTooLarge>() {
            return Failure::new(ErrorKind::RequestTooLarge, t.to_string());
        }
        if s.downcast_ref::<DownstreamBodyError>().is_some() {
            return Failure::new(ErrorKind::Downstream, s.to_string());
        }
        src = s.source();
    }
    Failure::new(
        ErrorKind::UpstreamIo,
        format!("{}: {e}", backend.cfg.authority),
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
    let lease = Lease {
        pool: worker.pool.clone(),
        side: backend.side,
        backend_id: backend.id,
        max_idle: backend.cfg.max_idle_per_worker,
        sender,
    };
    Response::from_parts(
        parts,
        RespBody::Upstream(UpstreamBody::new(body, Some(lease), tee)),
    )
}

/// A JSON error body naming what failed, the route and the backend.
fn error_response(
    f: Failure,
    route: &Route,
    side: Side,
    request_id: &HeaderValue,
) -> Response<RespBody> {
    let backend = match f.kind {
        ErrorKind::RequestTooLarge | ErrorKind::Downstream | ErrorKind::WriteTurn => "none",
        _ => side.as_str(),
    };
    let body = serde_json::json!({
        "error": f.kind.as_str(),
        "status": f.kind.status().as_u16(),
        "message": f.detail,
        "route": &*route.name,
        "backend": backend,
        "request_id": request_id.to_str().unwrap_or(""),
    });
    let mut r = Response::new(RespBody::full(body.to_string()));
    *r.status_mut() = f.kind.status();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(ROUTE_HEADER, route.name_hv.clone());
    h.insert(BACKEND_HEADER, HeaderValue::from_static(backend));
    h.insert(REQUEST_ID, request_id.clone());
    if f.kind == ErrorKind::RequestTooLarge {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_removed() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, X-Secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert(header::TE, "trailers".parse().unwrap());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        h.insert(header::PROXY_AUTHORIZATION, "Basic x".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn upgrade_kept_when_asked() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "Upgrade".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get(header::UPGRADE).unwrap(), "websocket");
        assert_eq!(h.get(header::CONNECTION).unwrap(), "upgrade");
    }

    #[test]
    fn request_ids_are_hex_and_distinct() {
        let mut a = [0u8; 16];
        hex(0xabc, &mut a);
        assert_eq!(&a, b"0000000000000abc");
    }
}
