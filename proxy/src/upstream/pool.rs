//! Per-worker upstream connection pools of `hyper::client::conn::http1` connections.
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

use hyper::body::Body;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::table::Backend;
use ficus_core::Side;

/// The sending half of an upstream connection carrying `B` request bodies.
pub(crate) type Sender<B> = SendRequest<B>;

/// A pooled connection and when it went idle.
struct Idle<B> {
    sender: Sender<B>,
    since: Instant,
}

struct Slot<B> {
    backend_id: u64,
    idle: Vec<Idle<B>>,
}

impl<B> Default for Slot<B> {
    fn default() -> Self {
        Slot {
            backend_id: 0,
            idle: Vec::new(),
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
#[derive(Debug)]
pub(crate) enum ConnectError {
    Timeout,
    Io(io::Error),
    /// The TLS handshake with an `https://` backend failed (certificate not trusted, another
    /// name, protocol).
    Tls(io::Error),
    Handshake(hyper::Error),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Timeout => f.write_str("connect timed out"),
            ConnectError::Io(e) => write!(f, "connect failed: {e}"),
            ConnectError::Tls(e) => match ficus_tls::find_failure(e) {
                Some(t) => match t.kind {
                    ficus_tls::FailureKind::Untrusted => write!(
                        f,
                        "TLS: the backend's certificate is not trusted ({}); check ca_file",
                        t.detail
                    ),
                    ficus_tls::FailureKind::NameMismatch => write!(
                        f,
                        "TLS: the backend's certificate is for another name ({}); set sni or fix the url's host",
                        t.detail
                    ),
                    ficus_tls::FailureKind::Other => write!(f, "TLS handshake failed: {}", t.detail),
                },
                None => write!(f, "TLS handshake failed: {e}"),
            },
            ConnectError::Handshake(e) => write!(f, "HTTP handshake failed: {e}"),
        }
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
    B: Body + 'static,
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
        if !fresh {
            loop {
                let next = {
                    let mut slot = self.slots[backend.side.index()].borrow_mut();
                    if slot.backend_id != backend.id {
                        // The backend's configuration changed: its old connections go.
                        slot.idle.clear();
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
                        sender,
                        reused: true,
                        idle_for,
                    });
                }
                // Its last response was read to the end but the connection task has not yet marked it
                // idle; that takes one poll of that task, so wait briefly rather than dial anew.
                match tokio::time::timeout(backend.cfg.connect_timeout, sender.ready()).await {
                    Ok(Ok(())) => {
                        return Ok(Conn {
                            sender,
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
            sender,
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

    /// Returns an idle connection (its response fully read) to the pool.
    fn checkin(&self, side: Side, backend_id: u64, max_idle: usize, sender: Sender<B>) {
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

async fn connect<B>(backend: &Backend) -> Result<Sender<B>, ConnectError>
where
    B: Body + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
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
    match &backend.cfg.tls {
        None => handshake(stream).await,
        Some(tls) => {
            let connector = tokio_rustls::TlsConnector::from(tls.client.config.clone());
            // The handshake counts toward the connect timeout.
            let stream = match tokio::time::timeout(
                backend.cfg.connect_timeout,
                connector.connect(tls.client.server_name.clone(), stream),
            )
            .await
            {
                Err(_) => return Err(ConnectError::Timeout),
                Ok(Err(e)) => return Err(ConnectError::Tls(e)),
                Ok(Ok(s)) => s,
            };
            handshake(stream).await
        }
    }
}

/// HTTP/1.1 over `io`; the connection's task runs on the worker's `LocalSet`.
async fn handshake<B, I>(io: I) -> Result<Sender<B>, ConnectError>
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
