//! An HTTP/1 client's connection as hyper's server sees it (cleartext `TcpStream` or TLS
//! stream), read and written through unchanged, plus two things hyper does not do the way nginx
//! and haproxy do them:
//!
//! - **408 on a header-read timeout.** hyper closes a connection whose request head did not
//!   arrive within `header_read_timeout_ms` without a word. This wrapper remembers whether
//!   request bytes arrived since the last answer was written; when the connection ends with
//!   hyper's header timeout and a request was begun, `408 Request Timeout` is written as the
//!   connection closes. (A keep-alive connection that was merely idle is closed silently. Over
//!   TLS the connection is closed without it: a record cannot be written from `Drop`.)
//! - **`HTTP/1.2`, `HTTP/1.3`, … treated as HTTP/1.1** (RFC 9110 §2.5: a higher minor version is
//!   served as the highest one supported). hyper's parser refuses any version but 1.0 and 1.1,
//!   so the first read of each request — at the start of the connection and after each answer —
//!   has its request line's version rewritten in place (`HTTP/1.2` → `HTTP/1.1`, same length).
//!   A request line split across two reads is not recognised (hyper then answers 400 as before).
//!
//! Cost: two flag updates per read or write (relaxed atomics: hyper wants a `Send` socket for
//! upgrades), and a scan of the first line of each request.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A client connection that can write a few bytes at once without waiting (for the 408).
pub(crate) trait WriteNow {
    /// Best effort; nothing when that is not possible.
    fn write_now(&self, buf: &[u8]);
}

impl WriteNow for TcpStream {
    fn write_now(&self, buf: &[u8]) {
        let _ = self.try_write(buf);
    }
}

impl WriteNow for tokio_rustls::server::TlsStream<TcpStream> {
    fn write_now(&self, _: &[u8]) {}
}

/// What the connection's task tells the socket, and the socket tells it.
#[derive(Default)]
pub(crate) struct IoState {
    /// Request bytes arrived since the last answer was written.
    begun: AtomicBool,
    /// The next read starts a request (connection start, or an answer was written since).
    at_start: AtomicBool,
    /// Set by the connection's task: hyper gave up waiting for the request head.
    header_timeout: AtomicBool,
}

impl IoState {
    /// hyper ended the connection with its header-read timeout; the socket answers 408 when
    /// it is dropped, if a request was begun.
    pub fn header_timed_out(&self) {
        self.header_timeout.store(true, Relaxed);
    }
}

/// A client connection's socket (see the module doc).
pub(crate) struct ClientIo<S: WriteNow> {
    sock: S,
    state: Arc<IoState>,
}

impl<S: WriteNow> ClientIo<S> {
    pub fn new(sock: S) -> (ClientIo<S>, Arc<IoState>) {
        let state = Arc::new(IoState::default());
        state.at_start.store(true, Relaxed);
        (
            ClientIo {
                sock,
                state: state.clone(),
            },
            state,
        )
    }
}

const TIMEOUT_408: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nContent-Length: 86\r\nConnection: close\r\n\r\n{\"error\":\"request_timeout\",\"status\":408,\"message\":\"request head not received in time\"}";

impl<S: WriteNow> Drop for ClientIo<S> {
    fn drop(&mut self) {
        if self.state.header_timeout.load(Relaxed) && self.state.begun.load(Relaxed) {
            // Best effort on a non-blocking socket whose send buffer is empty: no answer has
            // been written since the request began.
            self.sock.write_now(TIMEOUT_408);
        }
    }
}

/// Rewrites `HTTP/1.d` (d = 2..9) at the end of the request line in `buf` to `HTTP/1.1`: a
/// line within the first 8 KiB that starts with an upper-case method and a space and ends in
/// `␠HTTP/1.d\r\n` (anything else — a body, a tunnel's bytes — is left alone).
fn minor_version_to_11(buf: &mut [u8]) {
    let scan = buf.len().min(8192);
    let Some(eol) = buf[..scan].iter().position(|&b| b == b'\n') else {
        return;
    };
    if eol < 15 || buf[eol - 1] != b'\r' {
        return;
    }
    let line = &mut buf[..eol - 1];
    let method = line.iter().take_while(|b| b.is_ascii_uppercase()).count();
    if method == 0 || line.get(method) != Some(&b' ') {
        return;
    }
    let n = line.len();
    if &line[n - 9..n - 1] == b" HTTP/1." && (b'2'..=b'9').contains(&line[n - 1]) {
        line[n - 1] = b'1';
    }
}

impl<S: WriteNow + AsyncRead + Unpin> AsyncRead for ClientIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.sock).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            if buf.filled().len() > before {
                this.state.begun.store(true, Relaxed);
                if this.state.at_start.load(Relaxed) {
                    this.state.at_start.store(false, Relaxed);
                    minor_version_to_11(&mut buf.filled_mut()[before..]);
                }
            }
        }
        r
    }
}

impl<S: WriteNow + AsyncWrite + Unpin> AsyncWrite for ClientIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.sock).poll_write(cx, buf);
        this.wrote(&r);
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.sock).poll_write_vectored(cx, bufs);
        this.wrote(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.sock.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().sock).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().sock).poll_shutdown(cx)
    }
}

impl<S: WriteNow> ClientIo<S> {
    #[inline]
    fn wrote(&self, r: &Poll<io::Result<usize>>) {
        if let Poll::Ready(Ok(n)) = r {
            if *n > 0 {
                self.state.begun.store(false, Relaxed);
                self.state.at_start.store(true, Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_minor_versions_become_11() {
        let mut b = *b"GET /x HTTP/1.2\r\nHost: a\r\n\r\n";
        minor_version_to_11(&mut b);
        assert_eq!(&b[..17], b"GET /x HTTP/1.1\r\n");
        for same in [
            &b"GET /x HTTP/1.0\r\n"[..],
            b"GET /x HTTP/2.0\r\n",
            b"GET /x HTTP/1.2",
            b"{\"a\": 1}\r\n",
        ] {
            let mut v = same.to_vec();
            minor_version_to_11(&mut v);
            assert_eq!(v, same);
        }
        assert_eq!(
            TIMEOUT_408
                .split(|&b| b == b'\n')
                .next_back()
                .unwrap()
                .len(),
            86
        );
    }
}
