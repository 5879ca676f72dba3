//! Test helpers: real HTTP backends on 127.0.0.1:0, the reference task apps on both sides, a
//! small HTTP client, proxy configs.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use ficus_proxy::{Config, Proxy, ProxyHandle};
use ficus_taskapp::{
    seed_postgres, seed_sqlite, seed_tasks, serve_legacy, serve_new, NewTask, Quirk, Server,
};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub type BoxBody =
    http_body_util::combinators::BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A body of `n` bytes produced in 64 KiB chunks, never held whole.
pub struct Generated {
    pub left: u64,
    pub chunk: Bytes,
}

impl Generated {
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

fn full(s: impl Into<Bytes>) -> BoxBody {
    Full::new(s.into()).map_err(|e| match e {}).boxed()
}

fn query(req: &Request<Incoming>, k: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|p| {
        let (a, b) = p.split_once('=')?;
        (a == k).then(|| b.to_string())
    })
}

/// Backend behaviour: `/slow?ms=N` waits, `/upload` counts the body, `/download?n=N` streams N
/// bytes, `/ws` accepts an upgrade and echoes, anything else echoes method, path and headers.
async fn backend_handle(
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
    // A hop-by-hop header the proxy must not pass on.
    r.headers_mut()
        .insert("connection", "keep-alive, x-hop".parse().unwrap());
    r.headers_mut().insert("x-hop", "secret".parse().unwrap());
    Ok(r)
}

/// Starts a backend named `name`; returns its address.
pub async fn backend(name: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { break };
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(
                        TokioIo::new(s),
                        service_fn(move |r| backend_handle(name, r)),
                    )
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

/// An address nothing listens on.
pub async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a
}

/// A proxy configuration with the two backends and the given `[[routes]]` TOML.
pub fn config_toml(legacy: SocketAddr, new: SocketAddr, extra_proxy: &str, routes: &str) -> String {
    format!(
        r#"
[proxy]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
state = ":memory:"
workers = 2
watch_config = false
{extra_proxy}

[backends.legacy]
url = "http://{legacy}"
[backends.new]
url = "http://{new}"
timeout_ms = 2000

{routes}
"#
    )
}

/// Starts a proxy from a TOML configuration.
pub fn start_toml(toml: &str) -> ProxyHandle {
    Proxy::start(Config::from_toml_str(toml).unwrap(), None).unwrap()
}

fn bind() -> impl std::future::Future<Output = std::io::Result<TcpListener>> {
    TcpListener::bind("127.0.0.1:0")
}

/// The reference task apps on copies of one seeded SQLite database (`legacy.db` and `new.db`
/// in `dir`), both built as legacy; the new side with `quirks`.
pub async fn sqlite_sides(dir: &Path, quirks: &[&str]) -> (Server, Server) {
    let (l, n) = (dir.join("legacy.db"), dir.join("new.db"));
    seed_sqlite(&l, &seed_tasks(40, 7)).unwrap();
    std::fs::copy(&l, &n).unwrap();
    let quirks: Vec<Quirk> = quirks.iter().map(|q| q.parse().unwrap()).collect();
    let legacy = serve_legacy(&l, bind().await.unwrap(), vec![])
        .await
        .unwrap();
    let new = serve_legacy(&n, bind().await.unwrap(), quirks)
        .await
        .unwrap();
    (legacy, new)
}

/// Legacy on SQLite (`legacy.db` in `dir`), new on the PostgreSQL at `pg_url`, both seeded
/// with `tasks`.
pub async fn sqlite_and_postgres_sides(
    dir: &Path,
    pg_url: &str,
    tasks: &[NewTask],
) -> (Server, Server) {
    let sqlite = dir.join("legacy.db");
    seed_sqlite(&sqlite, tasks).unwrap();
    seed_postgres(pg_url, tasks).await.unwrap();
    let legacy = serve_legacy(&sqlite, bind().await.unwrap(), vec![])
        .await
        .unwrap();
    let new = serve_new(pg_url, bind().await.unwrap(), vec![])
        .await
        .unwrap();
    (legacy, new)
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
    pub fn header(&self, k: &str) -> &str {
        self.headers
            .get(k)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
}

/// A keep-alive HTTP/1 client to one address.
pub struct Client {
    sender: hyper::client::conn::http1::SendRequest<BoxBody>,
    addr: SocketAddr,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
            .await
            .unwrap();
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        Client { sender, addr }
    }

    pub async fn send(&mut self, req: Request<BoxBody>) -> Resp {
        self.sender.ready().await.unwrap();
        let resp = self.sender.send_request(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Resp {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Resp {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header("host", format!("{}", self.addr));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.send(b.body(full(body)).unwrap()).await
    }

    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.request("GET", path, headers, Bytes::new()).await
    }
}

/// One request on a fresh connection.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
    Client::connect(addr).await.get(path, headers).await
}

pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Resp {
    Client::connect(addr)
        .await
        .request(method, path, headers, Bytes::from(body.to_string()))
        .await
}

/// Value of a sample in a Prometheus exposition (`name{labels}` exactly as exposed), or 0.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}
