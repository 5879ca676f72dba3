//! `ficus taskapp legacy|new`: run one side of the reference Task API until Ctrl-C / SIGTERM.

use std::path::PathBuf;

use anyhow::Context as _;
use ficus_taskapp::{Quirk, Server, TaskAppError};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    side: Side,
}

#[derive(clap::Subcommand)]
enum Side {
    /// The monolith's Task API on a SQLite database laid out as SQLAlchemy leaves it.
    Legacy(LegacyArgs),
    /// The extracted Task Service on PostgreSQL (creates its tables if absent).
    New(NewArgs),
}

const QUIRKS_HELP: &str = "Quirks (repeat --quirk to combine):
  timestamp-precision  datetimes always with 6-digit microseconds (2025-01-01T10:00:00.000000)
  ready-order          GET /api/tasks/ready orders ties within a priority by id descending
  extra-field          every task object carries \"service_version\": \"2\"
  beta-accounts        the same, only in answers to requests with X-Account: beta
  slow:MS              every response is delayed by MS milliseconds";

#[derive(clap::Args)]
#[command(after_help = QUIRKS_HELP)]
struct LegacyArgs {
    /// SQLite database file. It must exist unless --create is given; a new or empty database
    /// gets the `tasks` and `task_events` tables.
    #[arg(long, value_name = "PATH")]
    sqlite: PathBuf,
    /// Create the database file (with the task schema) if it does not exist.
    #[arg(long)]
    create: bool,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8001")]
    listen: String,
    /// Deliberate difference to show (repeatable); see below.
    #[arg(long = "quirk", value_name = "NAME")]
    quirks: Vec<Quirk>,
}

#[derive(clap::Args)]
#[command(after_help = QUIRKS_HELP)]
struct NewArgs {
    /// PostgreSQL URL, e.g. postgres://postgres@127.0.0.1:5432/tasks
    #[arg(long, value_name = "URL")]
    postgres: String,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8002")]
    listen: String,
    /// Deliberate difference to show (repeatable); see below.
    #[arg(long = "quirk", value_name = "NAME")]
    quirks: Vec<Quirk>,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    let rt = super::runtime()?;
    rt.block_on(async move {
        let (name, server, quirks) = match a.side {
            Side::Legacy(l) => {
                if l.create {
                    ficus_taskapp::create_sqlite(&l.sqlite)?;
                }
                let listener = bind(&l.listen).await?;
                let server = ficus_taskapp::serve_legacy(&l.sqlite, listener, l.quirks.clone())
                    .await
                    .map_err(|e| match e {
                        TaskAppError::SqliteMissing { .. } => {
                            anyhow::anyhow!("{e} (pass --create to make a new one)")
                        }
                        e => e.into(),
                    })?;
                ("legacy", server, l.quirks)
            }
            Side::New(n) => {
                let listener = bind(&n.listen).await?;
                let server =
                    ficus_taskapp::serve_new(&n.postgres, listener, n.quirks.clone()).await?;
                ("new", server, n.quirks)
            }
        };
        let quirks = if quirks.is_empty() {
            "none".to_string()
        } else {
            quirks
                .iter()
                .map(Quirk::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "ficus taskapp {name}: {}, serving {}/api/tasks/ (quirks: {quirks}); Ctrl-C stops",
            server.store(),
            server.url()
        );
        wait_for_stop().await;
        stop(name, server).await;
        Ok(0)
    })
}

async fn bind(addr: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

async fn stop(name: &str, server: Server) {
    println!("ficus taskapp {name}: stopping");
    server.shutdown().await;
}

async fn wait_for_stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
