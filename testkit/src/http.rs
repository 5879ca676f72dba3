//! The HTTP test client: real HTTP/1.1 over loopback through hyper, answers collected whole
//! into a [`Resp`].
//!
//! - [`Http`] — a pooled client (hyper-util's) for URLs: cheap to clone, shared by tasks;
//!   [`Http::call`] / [`Http::call_at`] send JSON the way the task apps' clients do.
//! - [`Conn`] — one keep-alive HTTP/1 connection to one address, for tests that care which
//!   connection a request travels on, send streaming bodies, or read a response body frame by
//!   frame ([`Conn::open`]).
//! - [`get`] / [`send`] — one request on a fresh connection.
//! - [`get_blocking`] — a raw `GET` over a std socket for tests without a runtime.
//!
//! Every exchange is bounded by [`LIMIT`] so a hang fails the test instead of blocking it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

/// The longest any one exchange may take before the test fails (a loaded CI machine included).
/// A guard against hangs, not a performance assertion.
pub const LIMIT: Duration = Duration::from_secs(60);

/// The header a dual-writing proxy stamps writes with; see [`Http::call_at`].
pub const REQUEST_TIME: &str = "x-ficus-request-time";

/// A boxed request or response body.
pub type BoxBody =
    http_body_util::combinators::BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// `bytes` as a [`BoxBody`].
pub fn full(bytes: impl Into<Bytes>) -> BoxBody {
    Full::new(bytes.into()).map_err(|e| match e {}).boxed()
}

/// An empty [`BoxBody`].
pub fn empty() -> BoxBody {
    Empty::new().map_err(|e| match e {}).boxed()
}

/// One answer, its body read whole.
#[derive(Debug, Clone)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// From sending the request to having read the whole body.
    pub elapsed: Duration,
}

impl Resp {
    /// Reads `resp`'s body whole; `sent` is when its request was sent.
    pub async fn read<B>(resp: Response<B>, sent: Instant) -> Resp
    where
        B: hyper::body::Body,
        B::Error: std::fmt::Debug,
    {
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("response body").to_bytes();
        Resp {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
            elapsed: sent.elapsed(),
        }
    }

    /// The body as JSON; panics, showing the body, when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// The body as JSON, or `null` when it is not JSON (an empty body included).
    pub fn json_or_null(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value, `""` when absent.
    pub fn header(&self, name: &str) -> &str {
        self.header_opt(name).unwrap_or("")
    }

    /// A header's value, if present (and text).
    pub fn header_opt(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Where a request goes: an address (`127.0.0.1:8080`) or a base URL (`http://127.0.0.1:8080`).
pub trait Origin {
    /// `http://HOST:PORT`, no trailing slash.
    fn origin(&self) -> String;
}

impl Origin for SocketAddr {
    fn origin(&self) -> String {
        format!("http://{self}")
    }
}

impl Origin for str {
    fn origin(&self) -> String {
        let s = self.trim_end_matches('/');
        if s.contains("://") {
            s.to_string()
        } else {
            format!("http://{s}")
        }
    }
}

impl Origin for String {
    fn origin(&self) -> String {
        self.as_str().origin()
    }
}

/// A pooled HTTP/1 client (hyper-util's legacy client), cheap to clone.
#[derive(Clone)]
pub struct Http(Client<HttpConnector, Full<Bytes>>);

impl Default for Http {
    fn default() -> Self {
        Http::new()
    }
}

impl Http {
    /// A client with its own connection pool.
    pub fn new() -> Http {
        Http(Client::builder(TokioExecutor::new()).build_http())
    }

    /// Sends `req` (its URI absolute) and reads the answer, within [`LIMIT`].
    pub async fn request(&self, req: Request<Full<Bytes>>) -> Resp {
        let what = format!("{} {}", req.method(), req.uri());
        let sent = Instant::now();
        let resp = tokio::time::timeout(LIMIT, async {
            let resp = self.0.request(req).await.expect("request sent");
            Resp::read(resp, sent).await
        })
        .await;
        resp.unwrap_or_else(|_| panic!("{what}: no answer within {LIMIT:?}"))
    }

    /// `method url` with `headers` and `body`.
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Resp {
        let mut b = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.request(b.body(Full::new(body.into())).unwrap()).await
    }

    /// `method base+path` with `Content-Type: application/json` and `body` (empty if `None`).
    pub async fn call(
        &self,
        base: &(impl Origin + ?Sized),
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Resp {
        self.call_at(base, method, path, body, None).await
    }

    /// [`Http::call`], stamped with `X-Ficus-Request-Time: at` when `at` is given (as a
    /// dual-writing proxy stamps a write once for both sides).
    pub async fn call_at(
        &self,
        base: &(impl Origin + ?Sized),
        method: &str,
        path: &str,
        body: Option<&str>,
        at: Option<&str>,
    ) -> Resp {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(at) = at {
            headers.push((REQUEST_TIME, at));
        }
        let url = format!("{}{path}", base.origin());
        self.send(method, &url, &headers, body.unwrap_or("").to_string())
            .await
    }
}

/// One keep-alive HTTP/1 connection to one address (upgrades allowed).
pub struct Conn {
    sender: hyper::client::conn::http1::SendRequest<BoxBody>,
    addr: SocketAddr,
}

impl Conn {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> Conn {
        let s = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
            .await
            .unwrap();
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        Conn { sender, addr }
    }

    /// Sends `req` (its URI a path) and returns the response as it arrives, body unread.
    pub async fn open(&mut self, req: Request<BoxBody>) -> Response<Incoming> {
        tokio::time::timeout(LIMIT, async {
            self.sender.ready().await.expect("connection ready");
            self.sender.send_request(req).await.expect("request sent")
        })
        .await
        .unwrap_or_else(|_| panic!("no response head from {} within {LIMIT:?}", self.addr))
    }

    /// Sends `req` and reads the answer whole.
    pub async fn send(&mut self, req: Request<BoxBody>) -> Resp {
        let sent = Instant::now();
        let resp = self.open(req).await;
        tokio::time::timeout(LIMIT, Resp::read(resp, sent))
            .await
            .unwrap_or_else(|_| panic!("no whole body from {} within {LIMIT:?}", self.addr))
    }

    /// `method path` with `Host`, `headers` and `body`.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Resp {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.send(b.body(full(body)).unwrap()).await
    }

    /// `GET path` with `headers`.
    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.request("GET", path, headers, Bytes::new()).await
    }
}

/// The length of `resp`'s body, read frame by frame and never held whole.
pub async fn body_len(resp: Response<Incoming>) -> u64 {
    let mut body = resp.into_body();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        n += frame
            .expect("response body")
            .data_ref()
            .map_or(0, |d| d.len() as u64);
    }
    n
}

/// `GET path` on a fresh connection to `addr`.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    Conn::connect(addr).await.get(path, headers).await
}

/// `method path` with `headers` and `body` on a fresh connection to `addr`.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    Conn::connect(addr)
        .await
        .request(method, path, headers, body.to_string())
        .await
}

/// `GET path` written by hand on a std socket (`Connection: close`, 5 s read timeout); the
/// whole response as text — status line and headers included — or `None` while nothing
/// answers at `addr`. For tests without a runtime (e.g. polling a child process's endpoint).
pub fn get_blocking(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}
