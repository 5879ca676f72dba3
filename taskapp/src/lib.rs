//! ficus-taskapp: the reference Task API on both sides of the migration — the legacy monolith
//! on SQLite and the extracted service on PostgreSQL — with deliberate quirks for shadow tests.
//!
//! Both sides serve the same ten endpoints under `/api/tasks/` with the same JSON, status codes
//! and `{"detail": ...}` errors; they differ only in their store, and in whatever [`Quirk`]s
//! they are started with.
//!
//! ```no_run
//! # async fn demo(dir: &std::path::Path, pg_url: &str) -> Result<(), ficus_taskapp::TaskAppError> {
//! use ficus_taskapp::*;
//! let tasks = seed_tasks(100, 42);
//! let db = dir.join("legacy.db");
//! seed_sqlite(&db, &tasks)?;
//! seed_postgres(pg_url, &tasks).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let legacy = serve_legacy(&db, listener, vec![]).await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let new = serve_new(pg_url, listener, vec!["extra-field".parse().unwrap()]).await?;
//! println!("legacy on {}, new on {}", legacy.url(), new.url());
//! new.shutdown().await;
//! legacy.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - `server` — public entry points ([`serve_legacy`], [`serve_new`], [`Server`], [`Options`]),
//!   the hyper accept loop, the `slow` delay, graceful shutdown.
//! - `routes` — path and method to service call; results to JSON responses.
//! - `request` — request bodies parsed and validated (422 details name the field).
//! - `service` — the business rules, written once against the `Store` trait.
//! - `store` — the `Store` trait: list, get, insert, and locked read-modify-write.
//! - `sqlite_store` / `pg_store` — the two stores and their schemas.
//! - `render` — the wire form of tasks (and the rendering quirks).
//! - `model`, `timestamp`, `quirk`, `payload`, `error`, `seed` — data, time and clock, quirk
//!   names, event payload text, errors, sample data.
//!
//! **Invariant**: no business rule lives in a store, and no store call happens outside
//! `service` — so the two sides cannot drift apart except through their quirks.

#![forbid(unsafe_code)]

mod error;
mod model;
mod payload;
mod pg_store;
mod quirk;
mod render;
mod request;
mod routes;
mod seed;
mod server;
mod service;
mod sqlite_store;
mod store;
mod timestamp;

pub use self::error::TaskAppError;
pub use self::model::{NewTask, Priority, Status, Task};
pub use self::pg_store::POSTGRES_SCHEMA;
pub use self::quirk::{ParseQuirkError, Quirk};
pub use self::seed::{create_sqlite, seed_postgres, seed_sqlite, seed_tasks};
pub use self::server::{
    serve_legacy, serve_legacy_with, serve_new, serve_new_with, Options, Server,
};
pub use self::sqlite_store::SQLITE_SCHEMA;
pub use self::timestamp::{Clock, Timestamp};
