//! `ficus`: the command line. Parsing flags and printing only; behaviour lives in the
//! `ficus-proxy`, `ficus-shadow`, `ficus-migrator` and `ficus-demo` crates.

mod cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ficus",
    version,
    about = "Strangler-fig migration: route, shadow, migrate, roll back"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the reference Task API (legacy on SQLite, new on PostgreSQL).
    Taskapp(cmd::taskapp::Args),
    /// Run the routing proxy.
    Proxy(cmd::proxy::Args),
    /// Validate a proxy configuration file without starting anything.
    CheckConfig(cmd::proxy::CheckArgs),
    /// Show or change rollout percentages through the admin API.
    Rollout(cmd::rollout::Args),
    /// Set the rollout of one route (or all) to 0% through the admin API.
    Rollback(cmd::rollout::RollbackArgs),
    /// Migrate legacy SQLite data into PostgreSQL.
    Migrate(cmd::migrate::Args),
    /// Review shadow-mode mismatches.
    Shadow(cmd::shadow::Args),
    /// Run the whole migration story on this machine.
    Demo(cmd::demo::Args),
}

fn main() {
    let cli = Cli::parse();
    // The demo narrates on stdout; its servers' logs would only interleave with it (the guard
    // and rollback warnings it provokes on purpose are narrated). FICUS_LOG=warn shows them.
    let default_filter = match cli.command {
        Command::Demo(_) => "error",
        _ => "info,tokio_postgres=warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FICUS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Taskapp(a) => cmd::taskapp::run(a),
        Command::Proxy(a) => cmd::proxy::run(a),
        Command::CheckConfig(a) => cmd::proxy::check(a),
        Command::Rollout(a) => cmd::rollout::run(a),
        Command::Rollback(a) => cmd::rollout::rollback(a),
        Command::Migrate(a) => cmd::migrate::run(a),
        Command::Shadow(a) => cmd::shadow::run(a),
        Command::Demo(a) => cmd::demo::run(a),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("ficus: error: {e:#}");
            std::process::exit(1);
        }
    }
}
