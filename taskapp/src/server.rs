//! Serving: the hyper 1 accept loop (HTTP/1.1 and HTTP/2 via `server::conn::auto`), the
//! `slow:MS` delay, graceful shutdown, and the public entry points that open a store and
//! start a [`Server`] on it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::TaskAppError;
use crate::pg_store::PgStore;
use crate::quirk::{Quirk, Quirks};
use crate::render::Render;
use crate::routes;
use crate::service::Service;
use crate::sqlite_store::SqliteStore;
use crate::store::Store;
use crate::timestamp::Clock;

/// How long shutdown waits for in-flight requests before dropping connections.
const DRAIN: Duration = Duration::from_secs(5);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How a side runs, beyond its store.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Deliberate differences (see [`Quirk`]).
    pub quirks: Vec<Quirk>,
    /// Source of request-time timestamps; [`Clock::system`] by default.
    pub clock: Clock,
}

impl Options {
    /// Default options with these quirks.
    pub fn with_quirks(quirks: Vec<Quirk>) -> Options {
        Options {
            quirks,
            ..Options::default()
        }
    }
}

/// A running task app. [`Server::shutdown`] stops it and waits for in-flight requests;
/// dropping it stops it without waiting.
#[derive(Debug)]
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    store: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Server {
    /// `http://ADDR`, for clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What it serves, for messages: `SQLite PATH` or `PostgreSQL user@host:port/db` (no
    /// password).
    pub fn store(&self) -> &str {
        &self.store
    }

    /// Stops accepting, lets in-flight requests finish (up to 5 s) and returns.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves the legacy side on the SQLite database at `sqlite`, which must exist (see
/// [`crate::create_sqlite`]); a new or empty database gets the schema.
pub async fn serve_legacy(
    sqlite: &Path,
    listener: TcpListener,
    quirks: Vec<Quirk>,
) -> Result<Server, TaskAppError> {
    serve_legacy_with(sqlite, listener, Options::with_quirks(quirks)).await
}

/// [`serve_legacy`] with full [`Options`].
pub async fn serve_legacy_with(
    sqlite: &Path,
    listener: TcpListener,
    options: Options,
) -> Result<Server, TaskAppError> {
    let path = sqlite.to_path_buf();
    let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path, false))
        .await
        .map_err(|e| TaskAppError::Internal(format!("opening SQLite: {e}")))??;
    start(
        store,
        format!("SQLite {}", sqlite.display()),
        listener,
        options,
    )
}

/// Serves the new side on the PostgreSQL database at `pg_url`, creating the schema if absent.
pub async fn serve_new(
    pg_url: &str,
    listener: TcpListener,
    quirks: Vec<Quirk>,
) -> Result<Server, TaskAppError> {
    serve_new_with(pg_url, listener, Options::with_quirks(quirks)).await
}

/// [`serve_new`] with full [`Options`].
pub async fn serve_new_with(
    pg_url: &str,
    listener: TcpListener,
    options: Options,
) -> Result<Server, TaskAppError> {
    let store = PgStore::connect(pg_url).await?;
    let what = format!("PostgreSQL {}", store.target());
    start(store, what, listener, options)
}

fn start<S: Store>(
    store: S,
    what: String,
    listener: TcpListener,
    options: Options,
) -> Result<Server, TaskAppError> {
    let addr = listener
        .local_addr()
        .map_err(|e| TaskAppError::Internal(format!("listener address: {e}")))?;
    let quirks = Quirks::new(&options.quirks);
    let render = Render {
        full_micros: quirks.full_micros,
        extra_field: quirks.extra_field,
        beta_accounts: quirks.beta_accounts,
    };
    let svc = Arc::new(Service::new(store, options.clock, quirks));
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(accept_loop(listener, svc, render, quirks.delay, stopped));
    Ok(Server {
        addr,
        store: what,
        stop: Some(stop),
        task: Some(task),
    })
}

async fn accept_loop<S: Store>(
    listener: TcpListener,
    svc: Arc<Service<S>>,
    render: Render,
    delay: Duration,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stopped => break,
        };
        let _ = stream.set_nodelay(true);
        let svc = Arc::clone(&svc);
        let service = service_fn(move |req: Request<Incoming>| {
            let svc = Arc::clone(&svc);
            async move {
                let resp = routes::respond(&svc, render, req).await;
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Ok::<_, Infallible>(resp)
            }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {DRAIN:?}; dropping them");
    }
}
