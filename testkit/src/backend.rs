//! Backends on `127.0.0.1:0`: real hyper HTTP/1 servers standing in for an application.
//!
//! - [`echo`] — answers with what it received (method, path, headers) as JSON, plus a few
//!   paths with behaviour: `/slow?ms=N`, `/upload` (counts a streamed body), `/download?n=N`
//!   (streams N bytes, see [`Generated`]), `/ws` (accepts an upgrade and echoes bytes).
//! - [`fixed`] — answers every request with one status and body.
//! - [`serve`] / [`serve_async`] — answers what a handler says (after a delay, for a slow
//!   backend) and records every request it received ([`TestServer::received`]).
//! - [`free_addr`] — an address nothing listens on.
//!
//! Servers live until the test's runtime ends (a [`TestServer`] can be stopped earlier), so a
//! test may keep just the address.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::http::{full, BoxBody};

/// A listener on a free loopback port.
pub async fn listener() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// A loopback address nothing listens on (bound to find a free port, then released).
pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Serves every connection `listener` accepts with `service` (HTTP/1, upgrades allowed).
fn spawn_server<S, B>(listener: TcpListener, service: S) -> tokio::task::JoinHandle<()>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let service = service.clone();
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), service)
                    .with_upgrades()
                    .await;
            });
        }
    })
}

/// A body of `n` bytes (`x`) produced in 64 KiB chunks, never held whole.
pub struct Generated {
    left: u64,
    chunk: Bytes,
}

impl Generated {
    /// `n` bytes.
    pub fn new(n: u64) -> Generated {
        Generated {
            left: n,
            chunk: Bytes::from(vec![b'x'; 64 * 1024]),
        }
    }
}

impl Body for Generated {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len() as u64) as usize;
        self.left -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }
    fn is_end_stream(&self) -> bool {
        self.left == 0
    }
    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

fn query(req: &Request<Incoming>, k: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|p| {
        let (a, b) = p.split_once('=')?;
        (a == k).then(|| b.to_string())
    })
}

/// What [`echo`] does with one request.
pub(crate) async fn echo_handle(
    name: &'static str,
    mut req: Request<Incoming>,
) -> Result<Response<BoxBody>, Infallible> {
    let path = req.uri().path().to_string();
    if path == "/slow" {
        let ms = query(&req, "ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if path == "/upload" {
        let mut body = req.into_body();
        let mut n = 0u64;
        while let Some(f) = body.frame().await {
            match f {
                Ok(f) => n += f.data_ref().map_or(0, |d| d.len() as u64),
                Err(_) => break,
            }
        }
        return Ok(Response::new(full(format!(
            "{{\"backend\":\"{name}\",\"bytes\":{n}}}"
        ))));
    }
    if path == "/download" {
        let n = query(&req, "n").and_then(|v| v.parse().ok()).unwrap_or(0);
        return Ok(Response::new(Generated::new(n).boxed()));
    }
    if path == "/ws" {
        let up = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(io) = up.await {
                let mut io = TokioIo::new(io);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let mut r = Response::new(full(""));
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut()
            .insert("connection", "upgrade".parse().unwrap());
        r.headers_mut().insert("upgrade", "echo".parse().unwrap());
        return Ok(r);
    }
    let mut headers = BTreeMap::new();
    for (k, v) in req.headers() {
        headers.insert(k.as_str().to_string(), v.to_str().unwrap_or("").to_string());
    }
    let body = serde_json::json!({
        "backend": name,
        "method": req.method().as_str(),
        "path": req.uri().to_string(),
        "headers": headers,
    });
    let mut r = Response::new(full(body.to_string()));
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    // A hop-by-hop header a proxy must not pass on.
    r.headers_mut()
        .insert("connection", "keep-alive, x-hop".parse().unwrap());
    r.headers_mut().insert("x-hop", "secret".parse().unwrap());
    Ok(r)
}

/// Starts an echo backend named `name` (the name is in every JSON answer); returns its address.
///
/// `GET /any/path` answers `{"backend", "method", "path", "headers"}` with a hop-by-hop
/// `Connection: keep-alive, x-hop` / `X-Hop` pair; `/slow?ms=N` waits N ms (2000 by default)
/// first; `/upload` answers `{"backend", "bytes"}` after counting the streamed request body;
/// `/download?n=N` streams N bytes; `/ws` switches protocols and echoes what it is sent.
pub async fn echo(name: &'static str) -> SocketAddr {
    let l = listener().await;
    let addr = l.local_addr().unwrap();
    spawn_server(l, service_fn(move |r| echo_handle(name, r)));
    addr
}

/// Starts a backend answering every request with `status` and `body` (no content type);
/// returns its address.
pub async fn fixed(status: u16, body: &'static str) -> SocketAddr {
    let l = listener().await;
    let addr = l.local_addr().unwrap();
    spawn_server(
        l,
        service_fn(move |_req: Request<Incoming>| async move {
            let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
            *r.status_mut() = StatusCode::from_u16(status).unwrap();
            Ok::<_, Infallible>(r)
        }),
    );
    addr
}

/// What a [`TestServer`] received: one request, its body read whole.
#[derive(Debug, Clone)]
pub struct Received {
    /// Request method.
    pub method: Method,
    /// Request target as sent (path and query).
    pub uri: String,
    /// Request headers.
    pub headers: HeaderMap,
    /// The whole request body.
    pub body: Bytes,
}

impl Received {
    /// The path of the request target, without the query.
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or("")
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A test server's answer: status, headers, body.
pub type Answer = (u16, Vec<(&'static str, String)>, String);

/// What a [`serve`] server answers, from the request and the number of requests it received
/// before this one.
pub type Handler = Arc<dyn Fn(&Received, usize) -> Answer + Send + Sync>;

/// A running server that records what it receives.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, in order of arrival.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Stops accepting connections (those already open are served to the end).
    pub fn stop(&self) {
        self.task.abort();
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Starts a recording server: each request is read whole, recorded, then answered by
/// `answer(request, requests received before it)`, which may wait (hold a request at a gate,
/// sleep) before answering.
pub async fn serve_async<F, Fut>(answer: F) -> TestServer
where
    F: Fn(Received, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Answer> + Send + 'static,
{
    let l = listener().await;
    let addr = l.local_addr().unwrap();
    let received: Arc<Mutex<Vec<Received>>> = Arc::default();
    let counter = Arc::new(AtomicUsize::new(0));
    let answer: Arc<dyn Fn(Received, usize) -> BoxFuture<Answer> + Send + Sync> =
        Arc::new(move |r, n| Box::pin(answer(r, n)));
    let rec = received.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        let (rec, answer, counter) = (rec.clone(), answer.clone(), counter.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let r = Received {
                method: parts.method,
                uri: parts.uri.to_string(),
                headers: parts.headers,
                body,
            };
            let n = counter.fetch_add(1, Ordering::SeqCst);
            rec.lock().unwrap().push(r.clone());
            let (status, headers, body) = answer(r, n).await;
            let mut resp = Response::new(Full::new(Bytes::from(body)));
            *resp.status_mut() = StatusCode::from_u16(status).unwrap();
            for (k, v) in headers {
                resp.headers_mut().append(k, v.parse().unwrap());
            }
            Ok::<_, Infallible>(resp)
        }
    });
    let task = spawn_server(l, svc);
    TestServer {
        addr,
        received,
        task,
    }
}

/// Starts a recording server answering with `handler` after `delay` (zero for none): a slow
/// backend when `delay` is long.
pub async fn serve(delay: Duration, handler: Handler) -> TestServer {
    serve_async(move |r, n| {
        let handler = handler.clone();
        async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            handler(&r, n)
        }
    })
    .await
}

/// A [`Handler`] answering 200 with `Content-Type: application/json` and the body `f` makes.
pub fn json(f: impl Fn(&Received, usize) -> String + Send + Sync + 'static) -> Handler {
    Arc::new(move |r, n| {
        (
            200,
            vec![("content-type", "application/json".to_string())],
            f(r, n),
        )
    })
}
