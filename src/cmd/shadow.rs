//! `ficus shadow report | show ID | noise`: reading the shadow mismatch store.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use ficus_shadow::{
    render_noise, render_show, report, Report, ReportOptions, ShadowGlobalConfig, Store,
};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Mismatches grouped by route, field and kind, with counts and shares of compared requests.
    Report(ReportArgs),
    /// One mismatch: the request, the differences and both bodies' unified diff.
    Show(ShowArgs),
    /// Fields learned as noise (they differ between two answers of the same side).
    Noise(NoiseArgs),
}

#[derive(clap::Args)]
struct StoreArgs {
    /// The mismatch store (SQLite file) [default: ficus-shadow.db].
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    store: Option<PathBuf>,
    /// Take the store from the [shadow] section of this ficus.toml.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl StoreArgs {
    fn open(&self) -> anyhow::Result<Store> {
        let path = match (&self.store, &self.config) {
            (Some(p), _) => p.clone(),
            (None, Some(cfg)) => ShadowGlobalConfig::from_ficus_toml(cfg)?.store,
            (None, None) => ShadowGlobalConfig::default().store,
        };
        Ok(Store::open_existing(&path)?)
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Text,
    Json,
    Html,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum PlainFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

#[derive(clap::Args)]
struct ReportArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Only this route.
    #[arg(long, value_name = "R")]
    route: Option<String>,
    /// Only since T: RFC 3339, a UTC date or date-time (2026-01-31, 2026-01-31 10:00:00), or
    /// an age (90s, 15m, 2h, 7d).
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// Output format; html is one self-contained file.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Write to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ShowArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The mismatch id (from `ficus shadow report`).
    id: i64,
    /// Colour the diff: auto (on a terminal, unless NO_COLOR is set), always, never.
    #[arg(long, value_enum, default_value = "auto")]
    color: Color,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: PlainFormat,
}

#[derive(clap::Args)]
struct NoiseArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Only this route.
    #[arg(long, value_name = "R")]
    route: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: PlainFormat,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    match a.cmd {
        Cmd::Report(a) => run_report(a),
        Cmd::Show(a) => run_show(a),
        Cmd::Noise(a) => run_noise(a),
    }
}

fn run_report(a: ReportArgs) -> anyhow::Result<i32> {
    let store = a.store.open()?;
    let since_ms = match &a.since {
        Some(s) => Some(report::parse_since(s, now_ms())?),
        None => None,
    };
    let rep = Report::build(
        &store,
        &ReportOptions {
            route: a.route,
            since_ms,
        },
    )?;
    let text = match a.format {
        Format::Text => rep.to_text(),
        Format::Json => rep.to_json() + "\n",
        Format::Html => rep.to_html(),
    };
    match a.out {
        Some(path) => {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(0)
}

fn run_show(a: ShowArgs) -> anyhow::Result<i32> {
    let store = a.store.open()?;
    let Some(rec) = store.mismatch(a.id)? else {
        anyhow::bail!("no mismatch with id {} in {}", a.id, store.path().display());
    };
    match a.format {
        PlainFormat::Json => println!("{}", serde_json::to_string_pretty(&rec)?),
        PlainFormat::Text => {
            let color = match a.color {
                Color::Always => true,
                Color::Never => false,
                Color::Auto => {
                    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
                }
            };
            print!("{}", render_show(&rec, color));
        }
    }
    Ok(0)
}

fn run_noise(a: NoiseArgs) -> anyhow::Result<i32> {
    let store = a.store.open()?;
    let rows = store.noise(a.route.as_deref())?;
    match a.format {
        PlainFormat::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        PlainFormat::Text => print!("{}", render_noise(&rows)),
    }
    Ok(0)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
