//! Test plumbing shared by every ficus crate's tests, each piece written once: a dev-only crate
//! (`publish = false`), used only under `[dev-dependencies]` as `testkit`.
//!
//! Everything here is a real component — HTTP over loopback, real SQLite files, a real
//! PostgreSQL — never a mock.
//!
//! # Layout
//!
//! - [`http`] — the HTTP test client: [`Http`] (pooled, by URL), [`Conn`] (one keep-alive
//!   connection), [`get`] / [`send`] on a fresh connection, [`Resp`] with its JSON helpers,
//!   [`http::get_blocking`] for tests without a runtime.
//! - [`backend`] — servers on `127.0.0.1:0`: [`echo`], [`fixed`], the recording
//!   [`serve`] / [`serve_async`] (slow when given a delay), [`free_addr`].
//! - [`apps`] — the reference task apps on both sides ([`apps::pair`]: legacy on SQLite, new
//!   on a fresh PostgreSQL or a SQLite copy, seeded alike), and each side alone.
//! - [`pg`] — a fresh PostgreSQL database ([`pg::fresh_database`], re-exported from `pgtemp`)
//!   and [`pg::connect`].
//! - [`realdb`] — `../shared/realdb/`, real databases written by others, copied for a test.
//! - [`sqlite`] — SQLite files made from SQL, connections, rows read in one call.
//! - [`metrics`] — samples of a Prometheus exposition; `promtool check metrics`.
//! - [`browser`] — running `tests/browser/*.mjs` in headless Chromium.
//! - [`tls`] — a throwaway CA issuing server/client certificates ([`tls::TestCa`]) and a
//!   PostgreSQL that speaks only TLS ([`tls::TlsPostgres`]).
//! - [`cli`] — running the binary under test.
//! - [`config`] — a proxy configuration (TOML) around two backends.
//! - [`temp_dir`] — a self-removing temp directory.
//!
//! # pgtemp
//!
//! The throwaway PostgreSQL stays its own crate, `pgtemp/`, rather than a module here: `ficus
//! demo` starts one at run time ([`pgtemp::Cluster`]), and a test-only crate must not be a
//! run-time dependency of the binary. Tests reach it through [`pg`] (and [`pgtemp`] itself is
//! re-exported), so no test crate needs its own dependency on it.

#![warn(missing_docs)]

pub mod apps;
pub mod backend;
pub mod browser;
pub mod cli;
pub mod config;
pub mod http;
pub mod metrics;
pub mod pg;
pub mod realdb;
pub mod sqlite;
pub mod tls;

pub use pgtemp;

pub use backend::{echo, fixed, free_addr, json, serve, serve_async, Received, TestServer};
pub use config::ProxyToml;
pub use http::{get, send, Conn, Http, Resp};
pub use metrics::{expect_metric, metric};
pub use tempfile::TempDir;

/// A fresh directory under the system temp dir, named `ficus-<name>-XXXX`, removed (with
/// everything in it) when the value is dropped.
pub fn temp_dir(name: &str) -> TempDir {
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    TempDir::with_prefix(format!("ficus-{name}-")).expect("a temp dir")
}
