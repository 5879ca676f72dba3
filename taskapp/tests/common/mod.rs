//! Test helpers: a scratch directory, a small HTTP client, and starting both sides seeded with
//! the same data.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ficus_taskapp::{
    seed_postgres, seed_sqlite, serve_legacy_with, serve_new_with, Clock, NewTask, Options, Quirk,
    Server, Timestamp,
};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// A directory under cargo's target tmpdir, emptied on creation and removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "taskapp-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One HTTP exchange's outcome.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub allow: Option<String>,
    /// The raw body, for byte-for-byte comparison.
    pub body: String,
    pub elapsed: Duration,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.body))
    }
}

#[derive(Clone)]
pub struct Http(Client<HttpConnector, Full<Bytes>>);

impl Http {
    pub fn new() -> Http {
        Http(Client::builder(TokioExecutor::new()).build_http())
    }

    pub async fn call(&self, base: &str, method: &str, path: &str, body: Option<&str>) -> Reply {
        let req = hyper::Request::builder()
            .method(method)
            .uri(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or("").to_string())))
            .unwrap();
        let started = Instant::now();
        let resp = tokio::time::timeout(Duration::from_secs(30), self.0.request(req))
            .await
            .expect("response within 30 s")
            .expect("request sent");
        let status = resp.status().as_u16();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        let content_type = header("content-type").unwrap_or_default();
        let allow = header("allow");
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            content_type,
            allow,
            body: String::from_utf8(bytes.to_vec()).unwrap(),
            elapsed: started.elapsed(),
        }
    }
}

/// The clock both sides get in comparison tests: same start, same step.
pub fn test_clock() -> Clock {
    let start = Timestamp::parse("2026-03-01 12:00:00").unwrap();
    // 250 ms steps: some readings have a zero fraction, most do not, so both datetime forms
    // appear in generated timestamps too.
    Clock::stepping(start, Duration::from_millis(250))
}

/// Both sides, each on its own fresh store seeded with `tasks`, each with its own
/// [`test_clock`].
pub struct Pair {
    pub legacy: Server,
    pub new: Server,
    pub sqlite: PathBuf,
    pub pg_url: String,
    // Dropped after the servers (field order).
    _pg: pgtemp::TestDatabase,
    _dir: Scratch,
}

pub async fn start_pair(
    name: &str,
    tasks: &[NewTask],
    legacy_quirks: Vec<Quirk>,
    new_quirks: Vec<Quirk>,
) -> Pair {
    let dir = Scratch::new(name);
    let sqlite = dir.path("legacy.db");
    seed_sqlite(&sqlite, tasks).unwrap();
    let pg = pgtemp::fresh_database(&format!("taskapp_{name}")).unwrap();
    seed_postgres(&pg.url, tasks).await.unwrap();
    let legacy = serve_legacy_with(
        &sqlite,
        listener().await,
        Options {
            quirks: legacy_quirks,
            clock: test_clock(),
        },
    )
    .await
    .unwrap();
    let new = serve_new_with(
        &pg.url,
        listener().await,
        Options {
            quirks: new_quirks,
            clock: test_clock(),
        },
    )
    .await
    .unwrap();
    Pair {
        legacy,
        new,
        sqlite,
        pg_url: pg.url.clone(),
        _pg: pg,
        _dir: dir,
    }
}

pub async fn listener() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()
}
