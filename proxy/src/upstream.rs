//! Per-worker upstream connection pools of `hyper::client::conn::http1` connections, driven
//! inline by the client connection's own task.
//!
//! A pooled [`Upstream`] is the pair hyper hands out: the `SendRequest` half and the
//! `Connection` future that does the socket I/O. Instead of spawning that future as a task of its
//! own (one more task, and a cross-task wake-up for the request, the response head and every
//! body chunk), the request path polls it in place: while waiting for the response head, then
//! from the response body's `poll_frame`. One task per client connection thus serves both
//! sockets, as an event loop in C would. The pair returns to the worker's LIFO idle stack when
//! the response body has been read to the end; nothing is shared between threads, no locks.
//!
//! Idle connections are not polled; one the backend closed is found out (and dropped) when it
//! is next checked out, before any request is written to it.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::body::ReqBody;
use crate::split::Side;
use crate::table::Backend;

pub(crate) type Sender = SendRequest<ReqBody>;
pub(crate) type Conn = Connection<TokioIo<TcpStream>, ReqBody>;

/// One upstream HTTP/1 connection: its request half and its I/O future.
pub(crate) struct Upstream {
    pub sender: Sender,
    conn: Conn,
    /// The I/O future completed (closed or failed): it must not be polled again.
    done: bool,
    /// Taken from the idle stack rather than freshly dialled.
    pub reused: bool,
}

impl Upstream {
    /// Drives the connection's I/O. Returns `false` once the connection is finished.
    #[inline]
    pub fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if self.done {
            return false;
        }
        match Pin::new(&mut self.conn).poll(cx) {
            Poll::Pending => true,
            Poll::Ready(r) => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "upstream connection ended with an error");
                }
                self.done = true;
                false
            }
        }
    }

    /// Whether the connection is alive and idle right now (polls it once).
    fn ready_now(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.drive(cx) {
            return false;
        }
        matches!(self.sender.poll_ready(cx), Poll::Ready(Ok(())))
    }

    /// Hands the connection to a task of its own (for upgrades, where it outlives the exchange).
    pub fn into_parts(self) -> (Sender, Conn) {
        (self.sender, self.conn)
    }
}

#[derive(Default)]
struct Slot {
    backend_id: u64,
    idle: Vec<Upstream>,
}

/// Why no connection could be had.
#[derive(Debug)]
pub(crate) enum ConnectError {
    Timeout,
    Io(io::Error),
    Handshake(hyper::Error),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Timeout => f.write_str("connect timed out"),
            ConnectError::Io(e) => write!(f, "connect failed: {e}"),
            ConnectError::Handshake(e) => write!(f, "HTTP handshake failed: {e}"),
        }
    }
}

/// The pools of one worker.
#[derive(Default)]
pub(crate) struct Pool {
    slots: [RefCell<Slot>; 2],
}

impl Pool {
    /// An idle connection to `backend`, or a new one.
    pub async fn checkout(
        &self,
        backend: &Backend,
        on_open: impl FnOnce(),
    ) -> Result<Upstream, ConnectError> {
        loop {
            let next = {
                let mut slot = self.slots[backend.side.index()].borrow_mut();
                if slot.backend_id != backend.id {
                    // The backend's configuration changed: its old connections go.
                    slot.idle.clear();
                    slot.backend_id = backend.id;
                }
                slot.idle.pop()
            };
            let Some(mut up) = next else { break };
            // One poll settles it: a closed connection reads EOF, a finished exchange becomes
            // idle. Anything else (a request body still being written) is not worth waiting for.
            if poll_fn(|cx| Poll::Ready(up.ready_now(cx))).await {
                up.reused = true;
                return Ok(up);
            }
        }
        self.connect(backend, on_open).await
    }

    /// A new connection to `backend`.
    pub async fn connect(
        &self,
        backend: &Backend,
        on_open: impl FnOnce(),
    ) -> Result<Upstream, ConnectError> {
        let up = connect(backend).await?;
        on_open();
        Ok(up)
    }

    /// Returns a connection whose response was read to the end.
    pub fn checkin(&self, side: Side, backend_id: u64, max_idle: usize, up: Upstream) {
        if up.done || up.sender.is_closed() {
            return;
        }
        let mut slot = self.slots[side.index()].borrow_mut();
        if slot.backend_id == backend_id && slot.idle.len() < max_idle {
            slot.idle.push(up);
        }
    }
}

async fn connect(backend: &Backend) -> Result<Upstream, ConnectError> {
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
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(ConnectError::Handshake)?;
    Ok(Upstream {
        sender,
        conn,
        done: false,
        reused: false,
    })
}
