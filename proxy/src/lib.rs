//! ficus-proxy: the strangler-fig routing proxy — route matching, monotone sticky split,
//! forwarding, admin API, durable rollout state with audit, configuration reload, metrics.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ficus_proxy::ProxyError> {
//! let config = ficus_proxy::Config::from_toml_str(r#"
//!     [proxy]
//!     listen = "127.0.0.1:0"
//!     admin_listen = "127.0.0.1:0"
//!     state = ":memory:"
//!     [backends.legacy]
//!     url = "http://127.0.0.1:8001"
//!     [backends.new]
//!     url = "http://127.0.0.1:8002"
//!     [[routes]]
//!     name = "tasks-read"
//!     methods = ["GET"]
//!     path = "/api/tasks/{task_id}"
//!     percent = 25.0
//!     sticky = "header:X-User-Id"
//! "#)?;
//! let proxy = ficus_proxy::Proxy::start(config, None)?;
//! println!("proxy on {}, admin on {}", proxy.listen_addr(), proxy.admin_addr());
//! proxy.set_rollout("tasks-read", 50.0, "demo")?;
//! proxy.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! Modules in dependency order: each uses only modules above it (no module cycles; checked by
//! `scripts/module-graph.py proxy`).
//! - [`route`]: path templates (`{param}`, `/*` prefix), which methods are writes. `path`: the
//!   request path normalised before routing (escapes of unreserved characters decoded, slashes
//!   merged, dot segments removed; `..` above the root refused). [`split`]:
//!   xxh3 into 10,000 buckets, monotone in the percentage; sticky key sources. `recent`: read
//!   your writes — which side took each sticky key's latest write, in a bounded lock-free map
//!   per proxy whose entries expire on the proxy's clock (`read_your_writes_ms`).
//! - `evidence`: one windowed record per route of both sides' answers (requests, 5xx, exact
//!   slow counts, a latency histogram) and the shadow comparisons (noise and a plan's
//!   pre-flight cohort apart), on the proxy's clock — what the guard and a plan judge.
//!   `guard`: per-route rollback guard — its settings ([`GuardConfig`]) and verdicts over the
//!   evidence's sliding window. [`plan`]: step plans — settings, gates, durable state and
//!   engine, the pre-flight cohort on the hot path (`plan/{config, gates, state, runtime}`). `order`: write order on dual-write routes — a
//!   write waits for its row's turn (one turn per row, shared by every dual-write route) until
//!   the previous write to the row reached both sides. `hold`: the write hold — a held route's
//!   writes wait before their routing decision until released or until the deadline on the
//!   proxy's clock; the route's writes waiting and in flight. `dualwrite`: one write in flight,
//!   its log row, its turn and its place in the in-flight count.
//! - [`config`]: TOML → validated [`Config`]; errors name field and line
//!   (`config/{raw, parse, proxy, access_log, backend, backend_tls, route, validate, error, percent}`;
//!   `backend_tls`: an https:// backend's CA, SNI, client certificate — read and checked once).
//! - `error`: [`ProxyError`], and [`ErrorKind`], who failed a request. [`metrics`]: the
//!   per-proxy registry and the handles the hot path bumps.
//! - `access_log`: `[proxy.access_log]` — the per-request entry workers queue (never
//!   formatting, locking or waiting), the writer thread (JSON lines or logfmt, stdout or a
//!   file reopened on SIGHUP/SIGUSR1), sampling, errors always kept, the wait for a mirrored
//!   request's comparison.
//! - `table`: the configuration compiled for the hot path (published through `ArcSwap`);
//!   `shared`: what workers and the control plane share (the table, its generation, metrics).
//! - `tee`: shadow mode per request — the mirror decision, `X-Ficus-Request-Time`, the body
//!   copies, the hand-over to `ficus-shadow`.
//! - `upstream`: per-worker pools of HTTP/1 connections, no locks (`upstream/pool`), and the
//!   bodies streamed through them (`upstream/body`: size limit; pool return at end of stream;
//!   `upstream/logged`: the body of a request the access log writes).
//! - `forward`: one request — `admit` (what is refused before routing: CONNECT, Host rules,
//!   unknown transfer codings, a path above the root; the path normalised), an `Exchange` that
//!   decides, rewrites, sends (retrying once what a reused connection lost, when safe) and
//!   responds, and that states the order in which a request's state is released; 502/504 JSON.
//! - `sidecars`: shadow mode, the dual-write log and the read-your-writes map, started when
//!   the configuration needs them. `control`: rollout changes, rollbacks, reloads, write holds
//!   (hold, release, expiry) and the guards' verdicts, persisted (audited) before applied. The rollout state, audit log and dual-write log live in `ficus-state`
//!   (SQLite, or PostgreSQL shared by replicas with LISTEN/NOTIFY).
//! - `planner`: runs the step plans under the control lock — judged once a second, each step
//!   persisted (compare-and-set, with its evidence) before it is applied; start, pause, resume,
//!   abort; [`PlanStatus`].
//! - `admin`: the admin API; `page`: the admin web page (assets compiled in) and its JSON;
//!   `reload`: SIGHUP and file watch; `admin_thread`: the thread running those, the guards'
//!   verdicts once a second, the holds' deadlines and the shared-state follower.
//! - `server`: [`Proxy`], [`ProxyHandle`] — listeners (`SO_REUSEPORT`), `max_connections` (503
//!   past it), accept backoff, thread-per-core workers, graceful shutdown. `conn`: one client
//!   connection — TLS handshake, protocol (ALPN h2 / the h2c preface / HTTP/1.1), hyper's
//!   server, graceful stop. `client_io`: an HTTP/1 client's socket under hyper — 408 on a
//!   header-read timeout with a request begun (cleartext), `HTTP/1.2`+ served as 1.1.
//!   `listener_tls`: the listeners' certificates, swapped in place on SIGHUP, reload and file
//!   change. `exec`: the `LocalSet` executor of HTTP/2 (server and client side). `grpc`:
//!   `grpc-status` accounting.
//! - Beside the proxy: [`client`], a client of the admin API (used by the CLI); `to_legacy`:
//!   [`LegacySwitch`], every route to legacy from outside the proxy (admin API, else the state
//!   store); `traffic`: [`AdminTraffic`], hold/move/release routes on every replica for a
//!   cut-over; `metrics_endpoint`: [`serve_metrics`], a bare `/metrics` for another registry (the
//!   migrator's).
//!
//! `ARCHITECTURE.md` beside this crate's `Cargo.toml` explains the design and its invariants.
#![forbid(unsafe_code)]

mod access_log;
mod admin;
mod admin_thread;
pub mod client;
mod client_io;
pub mod config;
mod conn;
mod control;
mod dualwrite;
mod error;
mod evidence;
mod exec;
mod forward;
mod grpc;
mod guard;
mod hold;
mod listener_tls;
pub mod metrics;
mod metrics_endpoint;
mod order;
mod page;
mod path;
pub mod plan;
mod planner;
mod recent;
mod reload;
pub mod route;
mod server;
mod shared;
mod sidecars;
pub mod split;
mod table;
mod tee;
mod to_legacy;
mod traffic;
mod upstream;

pub use self::config::{Config, ConfigError};
pub use self::control::{GuardRollback, HoldStatus, ReloadReport, RolloutChange, RouteStatus};
pub use self::error::{ErrorKind, ProxyError};
pub use self::forward::{
    BACKEND_HEADER, OVERRIDE_HEADER, OVERRIDE_TOKEN_HEADER, REQUEST_ID, ROUTE_HEADER,
};
pub use self::guard::{GuardConfig, Reason as GuardReason};
pub use self::hold::MAX_HOLD;
pub use self::metrics_endpoint::serve_metrics;
pub use self::planner::{PlanCommand, PlanEvent, PlanStatus};
pub use self::server::{shutdown_signal, Proxy, ProxyHandle};
pub use self::split::Side;
pub use self::table::UNMATCHED;
pub use self::to_legacy::LegacySwitch;
pub use self::traffic::AdminTraffic;
pub use ficus_core::headers::REQUEST_TIME;
pub use ficus_core::{Clock, ManualClock, SharedClock, SystemClock};
pub use ficus_state::{AuditEntry, StateError, StateLocation};
