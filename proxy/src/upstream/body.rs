//! Body types streamed through the proxy, frame by frame — never buffered whole.
//!
//! - [`ReqBody`]: the client's request body on its way upstream, counting bytes against
//!   `max_request_bytes` (the upstream exchange fails with [`BodyTooLarge`] past it → 413).
//! - [`RespBody`]: what the client receives — the backend's body ([`UpstreamBody`], which hands
//!   its connection back to the worker's pool once read to the end) or a small proxy-made body,
//!   either of them wrapped in [`Logged`] when the access log writes the request.
//!
//! Shadow mode hooks in here: on a mirrored request both wrappers carry a tee
//! ([`crate::tee`]) that keeps the data frames (up to `max_body_bytes`) as they pass; the
//! response's submits the exchange to shadow mode at end of stream (after the connection went
//! back to the pool: see `forward::Exchange` for the whole release order).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ficus_core::SharedClock;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::sync::Notify;
use tokio::time::Sleep;

use super::pool::Lease;
use crate::access_log::Pending;
use crate::error::BodyTooLarge;
use crate::tee::{ReqTee, RespTee};

/// Boxed error type of request bodies.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The client's body failed (client went away mid-body); found in the upstream error's source
/// chain to tell a client failure from a backend failure.
#[derive(Debug, thiserror::Error)]
#[error("client request body: {0}")]
pub(crate) struct DownstreamBodyError(pub hyper::Error);

/// The client paused its request body longer than `request_body_idle_timeout_ms` (→ 408).
#[derive(Debug, thiserror::Error)]
#[error("client sent no request body data for {0:?} (request_body_idle_timeout_ms)")]
pub(crate) struct RequestBodyTimeout(pub Duration);

/// The backend paused its response body longer than `response_body_idle_timeout_ms`.
#[derive(Debug, thiserror::Error)]
#[error("backend sent no response body data for {0:?} (response_body_idle_timeout_ms)")]
pub(crate) struct ResponseBodyTimeout(pub Duration);

/// A pause timer, armed only when a body has to wait for data (a body that is there at once —
/// most are — never touches the timer wheel), re-armed after each frame.
#[derive(Default)]
pub(crate) struct IdleTimer {
    sleep: Option<Pin<Box<Sleep>>>,
    /// A frame came since the timer was last armed.
    moved: bool,
}

impl IdleTimer {
    /// A frame arrived.
    #[inline]
    fn frame(&mut self) {
        self.moved = true;
    }

    /// The body is waiting for data: `true` when it has waited `idle` since the last frame (or
    /// since it first waited). `idle` zero: never.
    fn expired(&mut self, idle: Duration, cx: &mut Context<'_>) -> bool {
        if idle.is_zero() {
            return false;
        }
        let sleep = match &mut self.sleep {
            Some(s) => {
                if self.moved {
                    s.as_mut().reset(tokio::time::Instant::now() + idle);
                }
                s
            }
            None => self.sleep.insert(Box::pin(tokio::time::sleep(idle))),
        };
        self.moved = false;
        sleep.as_mut().poll(cx).is_ready()
    }
}

/// A request body on its way upstream.
pub(crate) enum ReqBody {
    /// No body (lets a request be retried on a fresh connection).
    Empty,
    /// The client's body, counted against a limit.
    Stream {
        inner: Incoming,
        seen: u64,
        limit: u64,
        /// The copy for the mirror, on a mirrored request.
        tee: Option<Box<ReqTee>>,
        /// Longest pause between frames, and its timer.
        idle: Duration,
        timer: IdleTimer,
        /// How the upload goes, for the response-head timeout (see [`Upload`]).
        upload: Rc<Upload>,
    },
}

/// How a request body's upload goes, watched by the exchange: the response-head timeout starts
/// when it is `done`, so the upload's own time does not count against it; an upload that makes
/// no progress while the client is not the one waited for (the backend stopped reading) is
/// timed out by the exchange rather than left hanging.
#[derive(Default)]
pub(crate) struct Upload {
    /// Notified once the whole body has gone upstream.
    pub done: Notify,
    /// Frames passed on so far.
    pub frames: Cell<u64>,
    /// The body is waiting for the client (its last poll was pending on the client's data).
    pub on_client: Cell<bool>,
    /// Body bytes read from the client so far (the access log's `bytes_in`).
    pub bytes: Cell<u64>,
}

impl ReqBody {
    /// The client's body, counted against `limit`, paused at most `idle` between frames.
    pub fn stream(inner: Incoming, limit: u64, idle: Duration, tee: Option<Box<ReqTee>>) -> Self {
        ReqBody::Stream {
            inner,
            seen: 0,
            limit,
            tee,
            idle,
            timer: IdleTimer::default(),
            upload: Rc::default(),
        }
    }

    /// How the upload goes (`None`: no body, sent with the head).
    pub fn upload(&self) -> Option<Rc<Upload>> {
        match self {
            ReqBody::Empty => None,
            ReqBody::Stream { upload, .. } => Some(upload.clone()),
        }
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ReqBody::Empty => Poll::Ready(None),
            ReqBody::Stream {
                inner,
                seen,
                limit,
                tee,
                idle,
                timer,
                upload,
            } => match Pin::new(&mut *inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    timer.frame();
                    upload.frames.set(upload.frames.get() + 1);
                    upload.on_client.set(false);
                    if let Some(d) = frame.data_ref() {
                        *seen += d.len() as u64;
                        upload.bytes.set(*seen);
                        if *seen > *limit {
                            return Poll::Ready(Some(Err(Box::new(BodyTooLarge {
                                limit: *limit,
                            }))));
                        }
                        if let Some(t) = tee {
                            t.push(d);
                        }
                    }
                    if inner.is_end_stream() {
                        if let Some(mut t) = tee.take() {
                            t.end();
                        }
                        upload.done.notify_one();
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => {
                    *tee = None;
                    Poll::Ready(Some(Err(Box::new(DownstreamBodyError(e)))))
                }
                Poll::Ready(None) => {
                    if let Some(mut t) = tee.take() {
                        t.end();
                    }
                    upload.done.notify_one();
                    Poll::Ready(None)
                }
                Poll::Pending => {
                    upload.on_client.set(true);
                    if timer.expired(*idle, cx) {
                        *tee = None;
                        return Poll::Ready(Some(Err(Box::new(RequestBodyTimeout(*idle)))));
                    }
                    Poll::Pending
                }
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ReqBody::Empty => true,
            ReqBody::Stream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ReqBody::Empty => SizeHint::with_exact(0),
            ReqBody::Stream { inner, .. } => inner.size_hint(),
        }
    }
}

/// A backend's response body; at end of stream it gives its connection back to the pool,
/// then submits the mirror job.
pub(crate) struct UpstreamBody {
    inner: Incoming,
    lease: Cell<Option<Lease<ReqBody>>>,
    done: Cell<bool>,
    /// The copy for the mirror, on a mirrored request; submitted at end of stream.
    tee: Cell<Option<Box<RespTee>>>,
    /// Longest pause between frames (`response_body_idle_timeout_ms`), and its timer.
    idle: Duration,
    timer: IdleTimer,
    /// A gRPC response whose status comes in the trailers.
    grpc: Option<crate::grpc::GrpcStatus>,
}

impl UpstreamBody {
    pub fn new(
        inner: Incoming,
        lease: Option<Lease<ReqBody>>,
        tee: Option<Box<RespTee>>,
        idle: Duration,
        grpc: Option<crate::grpc::GrpcStatus>,
    ) -> UpstreamBody {
        UpstreamBody {
            inner,
            lease: Cell::new(lease),
            done: Cell::new(false),
            tee: Cell::new(tee),
            idle,
            timer: IdleTimer::default(),
            grpc,
        }
    }

    /// The body has been read to the end. In this order: the connection goes back to the
    /// pool (the next request on this worker may use it at once), then the exchange goes to
    /// shadow mode (the mirror job carries the dual write, finished when the job is done).
    fn finish(&self) {
        self.done.set(true);
        if let Some(lease) = self.lease.take() {
            lease.give_back();
        }
        if let Some(t) = self.tee.take() {
            t.submit();
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // Dropped unread (client gone, HEAD, ...): the connection cannot be reused unless the body
        // was complete; dropping its sender closes it.
        if self.done.get() || self.inner.is_end_stream() {
            self.finish();
        }
    }
}

/// A response body sent to the client.
pub(crate) enum RespBody {
    /// Streamed from the backend.
    Upstream(UpstreamBody),
    /// Made by the proxy (errors, admin answers).
    Full(Option<Bytes>),
    /// Either of those, for a request the access log writes.
    Logged(Box<Logged>),
}

impl RespBody {
    pub fn full(b: impl Into<Bytes>) -> RespBody {
        RespBody::Full(Some(b.into()))
    }

    pub fn empty() -> RespBody {
        RespBody::Full(None)
    }
}

impl Body for RespBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            RespBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            RespBody::Logged(l) => l.poll_frame(cx),
            RespBody::Upstream(u) => {
                let r = Pin::new(&mut u.inner).poll_frame(cx);
                match &r {
                    Poll::Ready(None) => {
                        if let Some(g) = &mut u.grpc {
                            g.on_trailers(None);
                        }
                        u.finish()
                    }
                    Poll::Ready(Some(Ok(frame))) => {
                        u.timer.frame();
                        if let (Some(t), Some(d)) = (u.tee.get_mut(), frame.data_ref()) {
                            t.push(d);
                        }
                        if let (Some(g), Some(t)) = (&mut u.grpc, frame.trailers_ref()) {
                            g.on_trailers(Some(t));
                        }
                        if u.inner.is_end_stream() {
                            u.finish();
                        }
                    }
                    // A failed body is not mirrored.
                    Poll::Ready(Some(Err(_))) => drop(u.tee.take()),
                    Poll::Pending => {
                        if u.timer.expired(u.idle, cx) {
                            // Cut off: the connection is dropped with the body, not pooled.
                            drop(u.tee.take());
                            return Poll::Ready(Some(Err(Box::new(ResponseBodyTimeout(u.idle)))));
                        }
                    }
                }
                r.map_err(|e| Box::new(e) as BoxError)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RespBody::Full(b) => b.is_none(),
            RespBody::Logged(l) => l.is_end_stream(),
            RespBody::Upstream(u) => {
                let end = u.done.get() || u.inner.is_end_stream();
                if end {
                    u.finish();
                }
                end
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RespBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            RespBody::Full(None) => SizeHint::with_exact(0),
            RespBody::Logged(l) => l.size_hint(),
            RespBody::Upstream(u) => u.inner.size_hint(),
        }
    }
}

/// A response body whose request is written to the access log ([`crate::access_log`]): it
/// counts the bytes handed to the client and, when it is dropped — at the end of the body, or
/// earlier when the client left — completes the entry (bytes in and out, total time, complete
/// or not) and sends it on. Only requests that will be written get this wrapper.
pub(crate) struct Logged {
    inner: RespBody,
    pending: Option<Pending>,
    started: Instant,
    clock: SharedClock,
    /// The request body's upload (its byte count), when it had one.
    upload: Option<Rc<Upload>>,
    bytes_out: u64,
    ended: bool,
}

impl Logged {
    pub fn new(
        inner: RespBody,
        pending: Pending,
        started: Instant,
        clock: SharedClock,
        upload: Option<Rc<Upload>>,
    ) -> Logged {
        Logged {
            inner,
            pending: Some(pending),
            started,
            clock,
            upload,
            bytes_out: 0,
            ended: false,
        }
    }

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    self.bytes_out += d.len() as u64;
                }
                if self.inner.is_end_stream() {
                    self.ended = true;
                }
            }
            Poll::Ready(None) => self.ended = true,
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let Some(mut p) = self.pending.take() else {
            return;
        };
        let e = &mut p.entry;
        e.total = self.clock.now().saturating_duration_since(self.started);
        e.bytes_out = self.bytes_out;
        e.bytes_in = self.upload.as_ref().map_or(0, |u| u.bytes.get());
        e.complete = self.ended || self.inner.is_end_stream();
        p.done();
    }
}
