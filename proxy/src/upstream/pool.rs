//! Per-worker upstream connection pools: `hyper::client::conn::http1` connections, and for a
//! backend with `protocol = "h2"`/`"h2c"` one multiplexed HTTP/2 connection per worker (its
//! [`Sender`] cloned for every request; re-dialled when it closes).
//!
//! Each connection's I/O future runs as a task of its own on the worker's `LocalSet`. (Driving
//! it inline from the client connection's task — one task for both sockets — was tried and
//! measured about 15 % slower here: every wake-up then polls both hyper dispatchers.)
//!
//! Each worker thread owns one pool per backend side: a LIFO stack of idle `SendRequest`s. A
//! connection goes back on the stack when its response body has been read to the end (its
//! [`Lease`] is given back, see `super::body::UpstreamBody`), so a pooled connection is idle
//! by construction. Nothing here is shared between threads: no locks and no cross-thread
//! wake-ups on the hot path.
//!
//! The pool is generic over the request body type `B` only so that it does not depend on the
//! body wrappers (which depend on it, to give connections back); the proxy uses one `B`.

use std::cell::RefCell;
use std::error::Error as StdError;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::future::Either;
use hyper::body::{Body, Incoming};
use hyper::client::conn::{http1, http2, TrySendError};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::exec::LocalExec;
use crate::table::Backend;
use ficus_core::Side;

/// The sending half of an upstream connection carrying `B` request bodies.
pub(crate) enum Sender<B> {
    /// An HTTP/1.1 connection: one request at a time, pooled between them.
    H1(http1::SendRequest<B>),
    /// A handle on the worker's HTTP/2 connection to the backend (multiplexed).
    H2(http2::SendRequest<B>),
}

impl<B> Sender<B>
where
    B: Body + 'static,
{
    /// Sends `req`; on failure before it was sent, the request comes back in the error.
    pub fn try_send_request(
        &mut self,
        req: Request<B>,
    ) -> impl std::future::Future<Output = Result<Response<Incoming>, TrySendError<Request<B>>>>
    {
        match self {
            Sender::H1(s) => Either::Left(s.try_send_request(req)),
            Sender::H2(s) => Either::Right(s.try_send_request(req)),
        }
    }
}

/// A pooled connection and when it went idle.
struct Idle<B> {
    sender: http1::SendRequest<B>,
    since: Instant,
}

struct Slot<B> {
    backend_id: u64,
    idle: Vec<Idle<B>>,
    /// The HTTP/2 connection of an `h2`/`h2c` backend.
    h2: Option<http2::SendRequest<B>>,
}

impl<B> Default for Slot<B> {
    fn default() -> Self {
        Slot {
            backend_id: 0,
            idle: Vec::new(),
            h2: None,
        }
    }
}

/// A connection checked out for one request.
pub(crate) struct Conn<B> {
    pub sender: Sender<B>,
    /// Taken from the idle stack (it may have been closed by the backend meanwhile).
    pub reused: bool,
    /// How long it sat idle (zero for a new one): a backend's keep-alive timeout can only
    /// have closed it under us if this is long.
    pub idle_for: Duration,
}

/// A connection on loan to one response: given back to its pool when the response body has
/// been read to the end; dropped instead (closing the connection) when it has not.
pub(crate) struct Lease<B> {
    pub pool: Rc<Pool<B>>,
    pub side: Side,
    pub backend_id: u64,
    pub max_idle: usize,
    pub sender: Sender<B>,
    /// False when the backend said it closes the connection after this response
    /// (`Connection: close`, or HTTP/1.0 without keep-alive): it is dropped, never pooled.
    pub reusable: bool,
}

impl<B> Lease<B> {
    /// Puts the connection back on its pool's idle stack (its response was read to the end),
    /// unless the backend marked it for closing.
    pub fn give_back(self) {
        if !self.reusable {
            return;
        }
        self.pool
            .checkin(self.side, self.backend_id, self.max_idle, self.sender);
    }
}

/// Why no connection could be had.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("connect timed out")]
    Timeout,
    #[error("connect failed")]
    Io(#[source] io::Error),
    /// The TLS handshake with an `https://` backend failed (certificate not trusted, another
    /// name, protocol); the message says which (no source: it is in the message).
    #[error("{}", tls_message(.0))]
    Tls(io::Error),
    #[error("HTTP handshake failed")]
    Handshake(#[source] hyper::Error),
}

/// A failed TLS handshake with a backend, said as an operator acts on it.
fn tls_message(e: &io::Error) -> String {
    match ficus_tls::find_failure(e) {
        Some(t) => match t.kind {
            ficus_tls::FailureKind::Untrusted => format!(
                "TLS: the backend's certificate is not trusted ({}); check ca_file",
                t.detail
            ),
            ficus_tls::FailureKind::NameMismatch => format!(
                "TLS: the backend's certificate is for another name ({}); set sni or fix the url's host",
                t.detail
            ),
            ficus_tls::FailureKind::Other => format!("TLS handshake failed: {}", t.detail),
        },
        None => format!("TLS handshake failed: {e}"),
    }
}

/// The pools of one worker.
pub(crate) struct Pool<B> {
    slots: [RefCell<Slot<B>>; 2],
}

impl<B> Default for Pool<B> {
    fn default() -> Self {
        Pool {
            slots: Default::default(),
        }
    }
}

impl<B> Pool<B>
where
    B: Body + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    /// An idle connection to `backend`, or a new one (always a new one when `fresh`: a
    /// retry does not try its luck with another pooled connection).
    pub async fn checkout(
        &self,
        backend: &Backend,
        fresh: bool,
        on_open: impl FnOnce(),
    ) -> Result<Conn<B>, ConnectError> {
        if backend.cfg.protocol.is_h2() {
            return self.checkout_h2(backend, fresh, on_open).await;
        }
        if !fresh {
            loop {
                let next = {
                    let mut slot = self.slots[backend.side.index()].borrow_mut();
                    if slot.backend_id != backend.id {
                        // The backend's configuration changed: its old connections go.
                        slot.idle.clear();
                        slot.h2 = None;
                        slot.backend_id = backend.id;
                    }
                    // Prefer the most recently used connection that is idle already; the very last
                    // one returned may still be waiting for its task to mark it idle.
                    match slot.idle.iter().rposition(|s| s.sender.is_ready()) {
                        Some(i) => Some(slot.idle.swap_remove(i)),
                        None => {
                            slot.idle.retain(|s| !s.sender.is_closed());
                            slot.idle.pop()
                        }
                    }
                };
                let Some(Idle { mut sender, since }) = next else {
                    break;
                };
                if sender.is_closed() {
                    continue;
                }
                let idle_for = since.elapsed();
                if sender.is_ready() {
                    return Ok(Conn {
                        sender: Sender::H1(sender),
                        reused: true,
                        idle_for,
                    });
                }
                // Its last response was read to the end but the connection task has not yet marked it
                // idle; that takes one poll of that task, so wait briefly rather than dial anew.
                match tokio::time::timeout(backend.cfg.connect_timeout, sender.ready()).await {
                    Ok(Ok(())) => {
                        return Ok(Conn {
                            sender: Sender::H1(sender),
                            reused: true,
                            idle_for,
                        })
                    }
                    _ => continue,
                }
            }
        }
        let sender = match connect(backend).await {
            // Out of file descriptors: this worker's idle connections (to either backend) are
            // closed to make room, and the connect is tried once more.
            Err(ConnectError::Io(e)) if is_fd_exhaustion(&e) && self.drop_idle() > 0 => {
                tracing::warn!(error = %e, "out of file descriptors; closed idle upstream connections to connect");
                connect(backend).await?
            }
            r => r?,
        };
        on_open();
        Ok(Conn {
            sender: Sender::H1(sender),
            reused: false,
            idle_for: Duration::ZERO,
        })
    }
}

impl<B> Pool<B>
where
    B: Body + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    /// The worker's HTTP/2 connection to `backend` (a new one when there is none open, or
    /// when `fresh`).
    async fn checkout_h2(
        &self,
        backend: &Backend,
        fresh: bool,
        on_open: impl FnOnce(),
    ) -> Result<Conn<B>, ConnectError> {
        let open = {
            let mut slot = self.slots[backend.side.index()].borrow_mut();
            if slot.backend_id != backend.id {
                slot.idle.clear();
                slot.h2 = None;
                slot.backend_id = backend.id;
            }
            slot.h2.as_ref().filter(|s| !s.is_closed()).cloned()
        };
        if let Some(sender) = open.filter(|_| !fresh) {
            return Ok(Conn {
                sender: Sender::H2(sender),
                reused: true,
                idle_for: Duration::ZERO,
            });
        }
        let sender = connect_h2(backend).await?;
        on_open();
        let mut slot = self.slots[backend.side.index()].borrow_mut();
        if slot.backend_id == backend.id {
            slot.h2 = Some(sender.clone());
        }
        Ok(Conn {
            sender: Sender::H2(sender),
            reused: false,
            idle_for: Duration::ZERO,
        })
    }
}

/// EMFILE or ENFILE.
fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

impl<B> Pool<B> {
    /// Closes every idle connection of this worker; how many there were.
    fn drop_idle(&self) -> usize {
        self.slots
            .iter()
            .map(|s| std::mem::take(&mut s.borrow_mut().idle).len())
            .sum()
    }

    /// Returns an idle connection (its response fully read) to the pool. (An HTTP/2 handle
    /// is simply dropped: its connection stays in its slot.)
    fn checkin(&self, side: Side, backend_id: u64, max_idle: usize, sender: Sender<B>) {
        let Sender::H1(sender) = sender else { return };
        if sender.is_closed() {
            return;
        }
        let mut slot = self.slots[side.index()].borrow_mut();
        if slot.idle.len() >= max_idle {
            slot.idle.retain(|s| !s.sender.is_closed());
        }
        if slot.backend_id == backend_id && slot.idle.len() < max_idle {
            slot.idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }
}

/// A connected socket to a backend: TCP, or TLS over it for `https://`.
enum Dialed {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// TCP (and TLS for `https://`) to `backend`, the handshake counting toward the connect
/// timeout.
async fn dial(backend: &Backend) -> Result<Dialed, ConnectError> {
    let host = backend.cfg.authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = backend.cfg.authority.port_u16().unwrap_or(80);
    let stream = match tokio::time::timeout(
        backend.cfg.connect_timeout,
        TcpStream::connect((host, port)),
    )
    .await
    {
        Err(_) => return Err(ConnectError::Timeout),
        Ok(Err(e)) => return Err(ConnectError::Io(e)),
        Ok(Ok(s)) => s,
    };
    let _ = stream.set_nodelay(true);
    let Some(tls) = &backend.cfg.tls else {
        return Ok(Dialed::Plain(stream));
    };
    let connector = tokio_rustls::TlsConnector::from(tls.client.config.clone());
    match tokio::time::timeout(
        backend.cfg.connect_timeout,
        connector.connect(tls.client.server_name.clone(), stream),
    )
    .await
    {
        Err(_) => Err(ConnectError::Timeout),
        Ok(Err(e)) => Err(ConnectError::Tls(e)),
        Ok(Ok(s)) => Ok(Dialed::Tls(Box::new(s))),
    }
}

/// A new HTTP/1.1 connection to `backend`.
async fn connect<B>(backend: &Backend) -> Result<http1::SendRequest<B>, ConnectError>
where
    B: Body + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    match dial(backend).await? {
        Dialed::Plain(s) => handshake(s).await,
        Dialed::Tls(s) => handshake(s).await,
    }
}

/// A new HTTP/2 connection to `backend`; its driver runs on the worker's `LocalSet`.
async fn connect_h2<B>(backend: &Backend) -> Result<http2::SendRequest<B>, ConnectError>
where
    B: Body + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    async fn over<B, I>(io: I) -> Result<http2::SendRequest<B>, ConnectError>
    where
        B: Body + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
    {
        let (sender, conn) = http2::Builder::new(LocalExec)
            .timer(hyper_util::rt::TokioTimer::new())
            .handshake(TokioIo::new(io))
            .await
            .map_err(ConnectError::Handshake)?;
        tokio::task::spawn_local(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream HTTP/2 connection ended with an error");
            }
        });
        Ok(sender)
    }
    match dial(backend).await? {
        Dialed::Plain(s) => over(s).await,
        Dialed::Tls(s) => over(s).await,
    }
}

/// HTTP/1.1 over `io`; the connection's task runs on the worker's `LocalSet`.
async fn handshake<B, I>(io: I) -> Result<http1::SendRequest<B>, ConnectError>
where
    B: Body + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(ConnectError::Handshake)?;
    tokio::task::spawn_local(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}
