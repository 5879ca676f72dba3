//! One client connection on a data-plane worker: the TLS handshake when the listener has
//! `[proxy.tls]`, the protocol (ALPN `h2` over TLS; on cleartext, the HTTP/2 connection preface
//! — h2c with prior knowledge — else HTTP/1.1), hyper's server for it, and the graceful stop
//! the worker asks for at shutdown ([`ConnCtl`]).
//!
//! HTTP/1.1 connections are served exactly as before HTTP/2 existed (same builder, upgrades);
//! choosing costs one `peek` per cleartext connection, nothing per request. HTTP/2 streams run
//! as tasks of the worker's `LocalSet` (`exec::LocalExec`) and go upstream as HTTP/1.1 like every
//! request.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Waker;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::client_io::{ClientIo, WriteNow};
use crate::exec::LocalExec;
use crate::forward::{self, ConnInfo, Worker};

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A connection's stop flag and the waker to poke when it is set.
#[derive(Default)]
pub(crate) struct ConnCtl {
    pub stop: Cell<bool>,
    pub waker: RefCell<Option<Waker>>,
}

/// How a worker serves its connections.
pub(crate) struct Protocols {
    http1: hyper::server::conn::http1::Builder,
    http2: hyper::server::conn::http2::Builder<LocalExec>,
    tls: Option<TlsAcceptor>,
    /// Time allowed for the TLS handshake or, on cleartext, the first bytes.
    first_bytes: Duration,
}

impl Protocols {
    pub fn new(header_timeout: Duration, tls: Option<TlsAcceptor>) -> Protocols {
        let mut http1 = hyper::server::conn::http1::Builder::new();
        http1.timer(TokioTimer::new());
        if !header_timeout.is_zero() {
            http1.header_read_timeout(header_timeout);
        }
        let mut http2 = hyper::server::conn::http2::Builder::new(LocalExec);
        http2.timer(TokioTimer::new());
        let first_bytes = if header_timeout.is_zero() {
            Duration::from_secs(30)
        } else {
            header_timeout
        };
        Protocols {
            http1,
            http2,
            tls,
            first_bytes,
        }
    }
}

/// Serves one accepted connection until it closes or is stopped.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    worker: Rc<Worker>,
    protocols: &Protocols,
    ctl: Rc<ConnCtl>,
) {
    let _ = stream.set_nodelay(true);
    match &protocols.tls {
        Some(acceptor) => {
            let Some(tls) =
                crate::listener_tls::handshake(acceptor, stream, protocols.first_bytes).await
            else {
                return;
            };
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let info = Rc::new(ConnInfo::new(peer, true));
            run(tls, h2, info, worker, protocols, ctl).await;
        }
        None => {
            let Some(h2) = starts_with_preface(&stream, protocols.first_bytes).await else {
                return;
            };
            let info = Rc::new(ConnInfo::new(peer, false));
            run(stream, h2, info, worker, protocols, ctl).await;
        }
    }
}

/// Whether a cleartext connection opens with the HTTP/2 preface (h2c, prior knowledge), from
/// its first bytes; `None` when it closes or sends nothing within `limit`. `PRI` is not an
/// HTTP/1 method anyone sends, so three bytes decide (POST, PUT, PATCH differ by then).
async fn starts_with_preface(stream: &TcpStream, limit: Duration) -> Option<bool> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = [0u8; 3];
    loop {
        tokio::time::timeout_at(deadline, stream.readable())
            .await
            .ok()?
            .ok()?;
        // Under the deadline too: `readable()` may report a fresh socket ready before any byte
        // came, and a peek without a deadline then waited for the client forever.
        match tokio::time::timeout_at(deadline, stream.peek(&mut buf))
            .await
            .ok()?
        {
            Ok(0) => return None,
            Ok(n) if buf[..n] != PREFACE[..n] => return Some(false),
            Ok(3) => return Some(true),
            // One or two bytes of "PRI" so far (a segment that small is rare): look again.
            Ok(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            Err(_) => return None,
        }
    }
}

async fn run<I>(
    io: I,
    h2: bool,
    info: Rc<ConnInfo>,
    worker: Rc<Worker>,
    protocols: &Protocols,
    ctl: Rc<ConnCtl>,
) where
    I: AsyncRead + AsyncWrite + WriteNow + Unpin + Send + 'static,
{
    let peer = info.peer_ip.clone();
    let svc = service_fn(move |req| forward::handle(worker.clone(), info.clone(), req));
    let res = if h2 {
        let conn = protocols.http2.serve_connection(TokioIo::new(io), svc);
        drive(std::pin::pin!(conn), &ctl).await
    } else {
        // `client_io`: 408 on a header timeout with a request begun, HTTP/1.2+ as 1.1.
        let (io, io_state) = ClientIo::new(io);
        let conn = protocols
            .http1
            .serve_connection(TokioIo::new(io), svc)
            .with_upgrades();
        let mut conn = std::pin::pin!(conn);
        let res = drive(conn.as_mut(), &ctl).await;
        if res.as_ref().is_err_and(hyper::Error::is_timeout) {
            // The socket answers 408 as it closes (when `conn` is dropped, right after).
            io_state.header_timed_out();
        }
        res
    };
    if let Err(e) = res {
        tracing::debug!(error = %e, peer = ?peer, h2, "client connection ended with an error");
    }
}

/// What both hyper connection types offer: finish what is in flight, then close.
trait Graceful: Future<Output = Result<(), hyper::Error>> {
    fn graceful(self: Pin<&mut Self>);
}

impl<I, S, B> Graceful for hyper::server::conn::http2::Connection<I, S, LocalExec>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    LocalExec: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn graceful(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, B> Graceful for hyper::server::conn::http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Polls `conn` to the end, asking it to stop gracefully once `ctl.stop` is set. (Borrowed:
/// the caller drops it, and its socket, after looking at the result.)
async fn drive<C: Graceful>(mut conn: Pin<&mut C>, ctl: &ConnCtl) -> Result<(), hyper::Error> {
    let mut graceful = false;
    poll_fn(|cx| {
        if ctl.stop.get() && !graceful {
            // Finish the request in flight (if any), then close.
            conn.as_mut().graceful();
            graceful = true;
        }
        {
            let mut w = ctl.waker.borrow_mut();
            if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *w = Some(cx.waker().clone());
            }
        }
        conn.as_mut().poll(cx)
    })
    .await
}
