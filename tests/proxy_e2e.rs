//! End-to-end tests of the `ficus` binary's proxy commands: a real `ficus proxy` child process
//! between real loopback backends, driven through the CLI (`rollout`, `rollback`,
//! `check-config`) and killed with SIGKILL / SIGTERM.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

const FICUS: &str = env!("CARGO_BIN_EXE_ficus");
const TOKEN: &str = "e2e-admin-token";
type BoxErr = Box<dyn std::error::Error + Send + Sync>;

/// `n` bytes in 64 KiB frames, never held whole.
struct Generated(u64, Bytes);

impl Body for Generated {
    type Data = Bytes;
    type Error = BoxErr;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxErr>>> {
        if self.0 == 0 {
            return Poll::Ready(None);
        }
        let n = self.0.min(self.1.len() as u64) as usize;
        self.0 -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(self.1.slice(..n)))))
    }
    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

fn generated(n: u64) -> Generated {
    Generated(n, Bytes::from(vec![b'x'; 64 * 1024]))
}

async fn backend_handle(
    name: &'static str,
    req: Request<Incoming>,
) -> Result<Response<http_body_util::combinators::BoxBody<Bytes, BoxErr>>, BoxErr> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    match path.as_str() {
        "/upload" => {
            let mut body = req.into_body();
            let mut n = 0u64;
            while let Some(f) = body.frame().await {
                n += f?.data_ref().map_or(0, |d| d.len() as u64);
            }
            Ok(Response::new(
                Full::new(Bytes::from(n.to_string()))
                    .map_err(|e| match e {})
                    .boxed(),
            ))
        }
        "/download" => {
            let n = query
                .strip_prefix("n=")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            Ok(Response::new(generated(n).boxed()))
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(800)).await;
            Ok(Response::new(
                Full::new(Bytes::from(name)).map_err(|e| match e {}).boxed(),
            ))
        }
        _ => Ok(Response::new(
            Full::new(Bytes::from(name)).map_err(|e| match e {}).boxed(),
        )),
    }
}

async fn backend(name: &'static str) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(
                        TokioIo::new(s),
                        service_fn(move |r| backend_handle(name, r)),
                    )
                    .await;
            });
        }
    });
    a
}

struct Ficus {
    child: Child,
    listen: SocketAddr,
    admin: SocketAddr,
}

impl Drop for Ficus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `ficus proxy` and reads the bound addresses from its start-up line.
fn start(config: &Path) -> Ficus {
    let mut child = Command::new(FICUS)
        .args(["proxy", "--config"])
        .arg(config)
        .env("FICUS_ADMIN_TOKEN", TOKEN)
        .env("FICUS_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = loop {
        let l = lines
            .next()
            .expect("ficus proxy exited before listening")
            .unwrap();
        if l.contains("listening on") {
            break l;
        }
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = |i: usize| {
        words[i]
            .trim_matches(|c| c == '(' || c == ')' || c == ',')
            .parse()
            .unwrap()
    };
    let i = words.iter().position(|w| *w == "on").unwrap();
    Ficus {
        child,
        listen: at(i + 1),
        admin: at(i + 3),
    }
}

fn write_config(dir: &Path, legacy: SocketAddr, new: SocketAddr, percent: f64) -> PathBuf {
    let p = dir.join("ficus.toml");
    std::fs::write(
        &p,
        format!(
            r#"[proxy]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
state = "{state}"
workers = 1
max_request_bytes = 209715200
[backends.legacy]
url = "http://{legacy}"
[backends.new]
url = "http://{new}"
[[routes]]
name = "tasks"
path = "/api/tasks/*"
percent = {percent:.1}
sticky = "header:x-user-id"
"#,
            state = dir.join("state.db").display()
        ),
    )
    .unwrap();
    p
}

fn tempdir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let d = std::env::temp_dir().join(format!("ficus-e2e-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn cli(args: &[&str], token: Option<&str>) -> (i32, String, String) {
    let mut c = Command::new(FICUS);
    c.args(args).env_remove("FICUS_ADMIN_TOKEN");
    if let Some(t) = token {
        c.env("FICUS_ADMIN_TOKEN", t);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn status_json(admin: SocketAddr) -> serde_json::Value {
    let url = format!("http://{admin}");
    let (code, out, err) = cli(&["rollout", "status", "--json", "--admin", &url], None);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

async fn get(addr: SocketAddr, path: &str, user: &str) -> (u16, String, Bytes) {
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    let r = tx
        .send_request(
            Request::builder()
                .uri(path)
                .header("host", "x")
                .header("x-user-id", user)
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = r.status().as_u16();
    let backend = r
        .headers()
        .get("x-ficus-backend")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (
        status,
        backend,
        r.into_body().collect().await.unwrap().to_bytes(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_via_cli_survives_kill_9() {
    let (l, n) = (backend("legacy").await, backend("new").await);
    let dir = tempdir("kill9");
    let cfg = write_config(&dir, l, n, 10.0);
    let f = start(&cfg);
    let url = format!("http://{}", f.admin);

    // Auth through the CLI: no token, wrong token, right token.
    let (code, _, err) = cli(&["rollout", "set", "tasks", "40", "--admin", &url], None);
    assert_ne!(code, 0);
    assert!(err.contains("401"), "{err}");
    let (code, _, err) = cli(
        &["rollout", "set", "tasks", "40", "--admin", &url],
        Some("wrong"),
    );
    assert_ne!(code, 0);
    assert!(err.contains("403"), "{err}");
    let (code, out, err) = cli(
        &[
            "rollout", "set", "tasks", "40", "--admin", &url, "--actor", "e2e",
        ],
        Some(TOKEN),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("10% -> 40%"), "{out}");

    // SIGKILL: no chance to flush anything.
    drop(f);
    let f = start(&cfg);
    let s = status_json(f.admin);
    assert_eq!(s[0]["percent"], 40.0, "{s}");
    assert_eq!(s[0]["config_percent"], 10.0);
    assert_eq!(s[0]["source"], "runtime");
    assert_eq!(s[0]["updated_by"], "cli:e2e");
    let mut new = 0;
    for i in 0..400 {
        let (st, b, _) = get(f.listen, "/api/tasks/1", &format!("u{i}")).await;
        assert_eq!(st, 200);
        new += (b == "new") as usize;
    }
    assert!(
        (120..=200).contains(&new),
        "about 40% of 400 to new, got {new}"
    );

    // Rollback everything through the CLI, then kill -9 again: still rolled back.
    let url = format!("http://{}", f.admin);
    let (code, out, err) = cli(&["rollback", "--admin", &url], Some(TOKEN));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("tasks: 40% -> 0%"), "{out}");
    drop(f);
    let f = start(&cfg);
    assert_eq!(status_json(f.admin)[0]["percent"], 0.0);
    for i in 0..50 {
        assert_eq!(
            get(f.listen, "/api/tasks/1", &format!("u{i}")).await.1,
            "legacy"
        );
    }
    drop(f);
    let _ = std::fs::remove_dir_all(dir);
}

fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_100_mb_each_way_in_bounded_memory() {
    const SIZE: u64 = 100 * 1024 * 1024;
    let (l, n) = (backend("legacy").await, backend("new").await);
    let dir = tempdir("rss");
    let f = start(&write_config(&dir, l, n, 0.0));
    let _ = get(f.listen, "/api/tasks/1", "warm-up").await;
    let before = vm_hwm_kib(f.child.id());

    let s = tokio::net::TcpStream::connect(f.listen).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake::<_, Generated>(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    let r = tx
        .send_request(
            Request::builder()
                .method("POST")
                .uri("/upload")
                .header("host", "x")
                .body(generated(SIZE))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.into_body().collect().await.unwrap().to_bytes(),
        SIZE.to_string()
    );

    let s = tokio::net::TcpStream::connect(f.listen).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    let r = tx
        .send_request(
            Request::builder()
                .uri(format!("/download?n={SIZE}"))
                .header("host", "x")
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = r.into_body();
    let mut got = 0u64;
    while let Some(fr) = body.frame().await {
        got += fr.unwrap().data_ref().map_or(0, |d| d.len() as u64);
    }
    assert_eq!(got, SIZE);

    let after = vm_hwm_kib(f.child.id());
    let grown = after.saturating_sub(before) / 1024;
    eprintln!(
        "ficus proxy peak RSS: {} MiB before, {} MiB after 2 x 100 MiB",
        before / 1024,
        after / 1024
    );
    assert!(
        grown < 32,
        "proxy peak RSS grew by {grown} MiB streaming 2 x 100 MiB"
    );
    drop(f);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_request() {
    let (l, n) = (backend("legacy").await, backend("new").await);
    let dir = tempdir("term");
    let mut f = start(&write_config(&dir, l, n, 0.0));
    let listen = f.listen;
    let inflight = tokio::spawn(async move { get(listen, "/slow", "u").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t = Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &f.child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let (status, backend, body) = inflight.await.unwrap();
    assert_eq!(
        (status, backend.as_str(), &body[..]),
        (200, "legacy", &b"legacy"[..])
    );
    let code = f.child.wait().unwrap();
    assert!(code.success(), "exit status {code:?}");
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "waited for the in-flight request"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn check_config_reports_field_and_line() {
    let dir = tempdir("check");
    let good = dir.join("good.toml");
    std::fs::write(&good, "[backends.legacy]\nurl = \"http://127.0.0.1:1\"\n[backends.new]\nurl = \"http://127.0.0.1:2\"\n[[routes]]\nname = \"r\"\npath = \"/x/*\"\npercent = 5\n").unwrap();
    let (code, out, _) = cli(&["check-config", good.to_str().unwrap()], None);
    assert_eq!(code, 0);
    assert!(out.contains("1 route(s)"), "{out}");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[backends.legacy]\nurl = \"http://127.0.0.1:1\"\n[backends.new]\nurl = \"http://127.0.0.1:2\"\n[[routes]]\nname = \"r\"\npath = \"/x/*\"\nsticky = \"body:x\"\n").unwrap();
    let (code, _, err) = cli(&["check-config", bad.to_str().unwrap()], None);
    assert_eq!(code, 1);
    assert!(err.contains("bad.toml:8: routes[0].sticky"), "{err}");
    // The shipped example is valid.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/ficus.toml");
    let (code, out, err) = cli(&["check-config", example.to_str().unwrap()], None);
    assert_eq!(code, 0, "{out}{err}");
    let _ = std::fs::remove_dir_all(dir);
}
