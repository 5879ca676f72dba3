//! `ficus migrate plan|run|verify|status|watch|rollback` (and, in `live`, the live
//! migration's commands): flags and printing; the work is in `ficus-migrator`.

mod live;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use ficus_migrator::{MigrationConfig, Observer, Plan, RunOptions, VerifyOptions};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Introspect and profile the SQLite file; print each decision, the values that will not
    /// convert, the views (translated or why not), the triggers and objects not carried, and
    /// the DDL. Writes nothing (a dry run). --format json: a stable shape for tools
    /// (`"format": "ficus-plan/1"`, docs/plan-json.md).
    Plan(Common),
    /// Create the tables and copy the data (resumable; a finished migration re-runs as a no-op),
    /// then the keys, constraints and views. Ends with one summary line per kind (tables, rows,
    /// quarantined, views created / not, triggers not carried, skipped objects, constraints not
    /// applied). Exit 0 when everything the source holds was carried, 2 when something was not
    /// (a quarantined row, a view, a trigger, a skipped object, a constraint) unless
    /// --allow-partial, 1 on error.
    Run(RunArgs),
    /// Compare source and target row by row (chunked checksums); exit 1 on differences.
    Verify(Common),
    /// Per table: copied, quarantined, last checkpoint, last verification.
    Status(Common),
    /// While both sides take dual writes: re-verify the keys the proxy recorded (after a
    /// settle window), sweep for other drift, report and export metrics. With --once, one
    /// pass; exit 1 if drift (or a divergent write) was found.
    Watch(WatchArgs),
    /// Verify, then re-copy every row that differs from SQLite to PostgreSQL (insert, update,
    /// delete), then verify again. Exit 0 when clean afterwards (or nothing to do), 1 if not.
    Repair(live::RepairArgs),
    /// Move the write routes to new with a pause of a fraction of a second: hold them in the
    /// proxy, drain the follower to lag 0, verify, switch, release (exit 1 naming the step).
    Cutover(live::CutoverArgs),
    /// Change capture on the SQLite source: a change log filled by triggers, so writes that
    /// bypass the proxy (cron jobs, scripts) are followed too. install | status | remove.
    Capture(live::CaptureArgs),
    /// Write rows created or changed on PostgreSQL since T back into SQLite, verify, then set
    /// every route to legacy (admin API, else the proxy state store). Exit 1 unless complete.
    Rollback(RollbackArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Format {
    Text,
    Json,
}

#[derive(clap::Args)]
pub(super) struct Common {
    /// The legacy SQLite database file.
    #[arg(long)]
    source: Option<PathBuf>,
    /// PostgreSQL URL of the target database.
    #[arg(long, env = "FICUS_MIGRATE_TARGET")]
    target: Option<String>,
    /// Target schema.
    #[arg(long, default_value = "public")]
    schema: String,
    /// migration.toml with per-column overrides.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Report format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Serve Prometheus metrics on this address while the command runs.
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
    /// Keep serving the metrics this many seconds after the command ends (or until Ctrl-C),
    /// so Prometheus scrapes the final phase (`done` or `failed`) of a short run.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 0,
        requires = "metrics_addr"
    )]
    metrics_linger: u64,
    /// No progress bars or log lines.
    #[arg(long)]
    quiet: bool,
    /// Tables processed at once.
    #[arg(long, default_value_t = 2)]
    jobs: usize,
}

#[derive(clap::Args)]
pub(super) struct RunArgs {
    #[command(flatten)]
    common: Common,
    /// Fail the run once more than N rows have been quarantined.
    #[arg(long, value_name = "N")]
    max_rejects: Option<u64>,
    /// Drop what an earlier migration of another source or plan created, and start over.
    #[arg(long)]
    restart: bool,
    /// Exit 0 even when something the source holds was not carried (quarantined rows, views
    /// PostgreSQL refused, triggers, skipped objects, constraints not applied); the summary
    /// still lists each.
    #[arg(long)]
    allow_partial: bool,
    /// Rows per batch (one transaction and checkpoint each).
    #[arg(long, default_value_t = 50_000, hide = true)]
    batch_rows: u64,
    /// Keep PostgreSQL current while the legacy app keeps writing: install change capture
    /// on the source first (when missing), copy the snapshot, then apply the change log
    /// continuously until Ctrl-C (exit 0) or a schema change on the source (exit 3).
    #[arg(long)]
    follow: bool,
    /// With --follow: lag above which the follower reports it is behind.
    #[arg(long, value_name = "MS", default_value_t = 1000, requires = "follow")]
    max_lag_ms: u64,
    /// With --follow: stop once every change logged so far is applied (lag 0).
    #[arg(long, requires = "follow")]
    until_caught_up: bool,
    /// With --follow: read and apply every key again this long after it was applied. Set it
    /// (above the mirror timeout) when dual-write routes write followed tables: a mirrored
    /// write reaching PostgreSQL after the follower applied legacy's row is then undone.
    #[arg(long, value_name = "MS", default_value_t = 0, requires = "follow")]
    settle_ms: u64,
}

#[derive(clap::Args)]
struct WatchArgs {
    #[command(flatten)]
    common: Common,
    /// The proxy's state store, where it records the keys of dual writes: its SQLite file
    /// (e.g. ficus-state.db) or its PostgreSQL URL (postgres://..., table
    /// ficus_proxy.dual_writes; may be the --target database).
    #[arg(long, value_name = "FILE|URL")]
    proxy_state: Option<PathBuf>,
    /// How long after a write its key is re-verified (and a difference re-checked).
    #[arg(long, default_value_t = 2000)]
    settle_ms: u64,
    /// Seconds between sweeps.
    #[arg(long, default_value_t = 60)]
    sweep_interval_s: u64,
    /// Every Nth sweep is a full checksum sweep (the others follow updated_at).
    #[arg(long, default_value_t = 10)]
    full_sweep_every: u32,
    /// One pass (settle, re-verify written keys, one full sweep), then exit.
    #[arg(long)]
    once: bool,
    /// Append every event to FILE as a JSON line.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Also re-verify keys written this many seconds before the start.
    #[arg(long, default_value_t = 3600)]
    lookback_s: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Conflict {
    NewestWins,
    Abort,
}

#[derive(clap::Args)]
struct RollbackArgs {
    #[command(flatten)]
    common: Common,
    /// Rows created or changed on the new side since T: RFC 3339, a UTC date or date-time
    /// (2026-01-31, 2026-01-31 10:00:00), or an age (90s, 15m, 2h, 7d); default: when the
    /// migration started.
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// List what would change; write nothing, switch nothing.
    #[arg(long)]
    dry_run: bool,
    /// When both sides changed a row since T.
    #[arg(long, value_enum, default_value = "newest-wins")]
    conflict: Conflict,
    /// Proxy admin API, e.g. http://127.0.0.1:9900 (POST /admin/rollback).
    #[arg(long, value_name = "URL")]
    admin: Option<String>,
    /// Bearer token for the admin API.
    #[arg(long, env = "FICUS_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// The proxy's state store, written directly when --admin is absent or unreachable.
    #[arg(long, value_name = "FILE")]
    proxy_state: Option<PathBuf>,
    /// The proxy's configuration, to know every route (state store path only).
    #[arg(long, value_name = "FILE")]
    proxy_config: Option<PathBuf>,
    /// After a `migrate cutover`: the cut-over in reverse — hold the write routes, drain the
    /// reverse follower (PostgreSQL's changes, deletions included) into SQLite, verify, routes
    /// to legacy, the follower forward again, release. --admin is required; --since,
    /// --conflict and --proxy-state do not apply.
    #[arg(long, conflicts_with_all = ["since", "proxy_state", "proxy_config"])]
    live: bool,
    /// With --live: the write routes (default: those the cut-over moved).
    #[arg(long, value_name = "R1,R2", value_delimiter = ',', requires = "live")]
    routes: Vec<String>,
    /// With --live: the longest write pause allowed.
    #[arg(long, value_name = "MS", default_value_t = 2000, requires = "live")]
    max_hold_ms: u64,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    match a.command {
        Sub::Plan(c) => plan(c),
        Sub::Run(r) => run_cmd(r),
        Sub::Verify(c) => verify(c),
        Sub::Status(c) => status(c),
        Sub::Watch(w) => watch(w),
        Sub::Rollback(r) => rollback(r),
        Sub::Capture(c) => live::capture(c),
        Sub::Repair(r) => live::repair(r),
        Sub::Cutover(c) => live::cutover(c),
    }
}

pub(super) fn config(c: &Common) -> anyhow::Result<MigrationConfig> {
    Ok(match &c.config {
        Some(p) => MigrationConfig::load(p)?,
        None => MigrationConfig::default(),
    })
}

pub(super) fn source(c: &Common) -> anyhow::Result<&Path> {
    c.source.as_deref().context("--source app.db is required")
}

pub(super) fn target(c: &Common) -> anyhow::Result<&str> {
    c.target
        .as_deref()
        .context("--target postgres://... is required")
}

pub(super) fn observer(c: &Common) -> anyhow::Result<Arc<Observer>> {
    let metrics = Arc::new(ficus_migrator::Metrics::new()?);
    Ok(Arc::new(Observer::new(metrics, c.quiet)))
}

async fn serve_metrics(
    c: &Common,
    obs: &Observer,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(addr) = c.metrics_addr else {
        return Ok(None);
    };
    let (local, h) = ficus_proxy::serve_metrics(addr, obs.metrics.registry.clone())
        .await
        .with_context(|| format!("serving metrics on {addr}"))?;
    obs.log(&format!("metrics on http://{local}/metrics"));
    Ok(Some(h))
}

/// Stop the metrics server started by [`serve_metrics`], after `--metrics-linger` seconds.
async fn stop_metrics(server: Option<tokio::task::JoinHandle<()>>, c: &Common, obs: &Observer) {
    let Some(h) = server else { return };
    if c.metrics_linger > 0 {
        obs.log(&format!(
            "finished; metrics stay up {} s more for the last scrape (Ctrl-C to exit now)",
            c.metrics_linger
        ));
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(c.metrics_linger)) => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    h.abort();
}

fn plan(c: Common) -> anyhow::Result<i32> {
    let cfg = config(&c)?;
    let p = Plan::build(source(&c)?, &cfg, &c.schema)?;
    match c.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&p.json())?),
        Format::Text => {
            print!("{}", p.report());
            println!();
            print!("{}", p.ddl());
        }
    }
    Ok(0)
}

fn run_cmd(r: RunArgs) -> anyhow::Result<i32> {
    let c = &r.common;
    let (src, tgt) = (source(c)?, target(c)?);
    let cfg = config(c)?;
    let obs = observer(c)?;
    let rt = super::runtime()?;
    let result = rt.block_on(async {
        let server = serve_metrics(c, &obs).await?;
        obs.phase("plan");
        let rep = async {
            if r.follow {
                live::install_capture(src, &cfg, &c.schema, &obs).await?;
            }
            let plan = ficus_migrator::plan_for_run(src, tgt, &c.schema, &cfg).await?;
            let expected = plan.expected_rejects();
            if expected > 0 {
                obs.log(&format!("plan: {expected} value(s) will not convert; their rows go to ficus.quarantine (see `ficus migrate plan`)"));
            }
            let opts = RunOptions {
                jobs: c.jobs,
                batch_rows: r.batch_rows,
                max_rejects: r.max_rejects,
                restart: r.restart,
                ..RunOptions::default()
            };
            let rep = ficus_migrator::run(&plan, src, tgt, &opts, &obs).await?;
            Ok::<_, anyhow::Error>((plan, rep))
        }
        .await;
        if rep.is_err() {
            obs.phase("failed");
        }
        let (plan, rep) = match rep {
            Ok(x) => x,
            Err(e) => {
                stop_metrics(server, c, &obs).await;
                return Err(e);
            }
        };
        print_run(c, &rep)?;
        let mut code = if rep.carried.complete || r.allow_partial {
            0
        } else {
            2
        };
        if r.follow {
            if !rep.already_complete && !rep.resumed {
                // A fresh snapshot: the follower starts at the beginning of the log.
                let epoch = plan.source.capture_epoch.clone().unwrap_or_default();
                ficus_migrator::follow::reset(tgt, &c.schema, &epoch).await?;
            }
            code = live::follow(&plan, src, tgt, &r, &obs).await?.max(code);
        }
        stop_metrics(server, c, &obs).await;
        Ok::<_, anyhow::Error>(code)
    })?;
    Ok(result)
}

fn print_run(c: &Common, result: &ficus_migrator::RunReport) -> anyhow::Result<()> {
    match c.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&result)?),
        Format::Text => {
            if result.already_complete {
                println!(
                    "migration into schema {} is already complete: nothing to do",
                    result.schema
                );
            }
            for t in &result.tables {
                println!(
                    "{:<24} source {:>10}  copied {:>10}  quarantined {:>8}{}",
                    t.table,
                    t.source_rows,
                    t.rows_copied,
                    t.rows_quarantined,
                    if t.copied_now != t.rows_copied && !result.already_complete {
                        format!("  ({} this run)", t.copied_now)
                    } else {
                        String::new()
                    }
                );
            }
            println!(
                "{} rows copied, {} quarantined{} in {:.2} s",
                result.rows_copied,
                result.rows_quarantined,
                if result.resumed { " (resumed)" } else { "" },
                result.seconds
            );
            print!("{}", result.carried.text());
            if !result.carried.complete {
                println!("not everything the source holds was carried (listed above): exit 2 unless --allow-partial");
            }
        }
    }
    Ok(())
}

fn verify(c: Common) -> anyhow::Result<i32> {
    let (src, tgt) = (source(&c)?, target(&c)?);
    let cfg = config(&c)?;
    let obs = observer(&c)?;
    let rt = super::runtime()?;
    let rep = rt.block_on(async {
        let server = serve_metrics(&c, &obs).await?;
        let plan = ficus_migrator::plan_for(src, tgt, &c.schema, &cfg).await?;
        let opts = VerifyOptions {
            jobs: c.jobs,
            ..VerifyOptions::default()
        };
        let rep = ficus_migrator::verify(&plan, src, tgt, &opts, &obs).await;
        stop_metrics(server, &c, &obs).await;
        Ok::<_, anyhow::Error>(rep?)
    })?;
    match c.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&rep)?),
        Format::Text => print!("{}", rep.text()),
    }
    Ok(if rep.clean { 0 } else { 1 })
}

fn status(c: Common) -> anyhow::Result<i32> {
    let tgt = target(&c)?;
    let rt = super::runtime()?;
    let mut rep = rt.block_on(ficus_migrator::status(tgt, &c.schema))?;
    if let Some(src) = &c.source {
        rep.capture = Some(ficus_migrator::capture::status(src)?);
    }
    match c.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&rep)?),
        Format::Text => print!("{}", rep.text()),
    }
    Ok(0)
}

fn watch(w: WatchArgs) -> anyhow::Result<i32> {
    let c = &w.common;
    let (src, tgt) = (source(c)?, target(c)?);
    let cfg = config(c)?;
    let mut opts = ficus_migrator::WatchOptions::new(src, tgt);
    opts.schema = c.schema.clone();
    opts.proxy_state = w.proxy_state.clone();
    opts.settle = std::time::Duration::from_millis(w.settle_ms);
    opts.sweep_interval = std::time::Duration::from_secs(w.sweep_interval_s.max(1));
    opts.full_sweep_every = w.full_sweep_every.max(1);
    opts.once = w.once;
    opts.report = w.report.clone();
    opts.lookback = std::time::Duration::from_secs(w.lookback_s);
    let metrics = Arc::new(ficus_migrator::Metrics::new()?);
    let format = c.format;
    let quiet = c.quiet;
    let rt = super::runtime()?;
    let summary = rt.block_on(async {
        let server = match c.metrics_addr {
            Some(addr) => {
                let (local, h) = ficus_proxy::serve_metrics(addr, metrics.registry.clone())
                    .await
                    .with_context(|| format!("serving metrics on {addr}"))?;
                eprintln!("metrics on http://{local}/metrics");
                Some(h)
            }
            None => None,
        };
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let print = |e: &ficus_migrator::WatchEvent| match format {
            Format::Json => {
                if let Ok(line) = serde_json::to_string(e) {
                    println!("{line}");
                }
            }
            Format::Text => {
                if !quiet || !matches!(e, ficus_migrator::WatchEvent::Sweep { .. }) {
                    println!("{}", e.text());
                }
            }
        };
        let s = ficus_migrator::watch(&opts, &cfg, &metrics, stop, print).await;
        if let Some(h) = server {
            h.abort();
        }
        Ok::<_, anyhow::Error>(s?)
    })?;
    match c.format {
        Format::Json => println!("{}", serde_json::to_string(&summary)?),
        Format::Text => print!("{}", summary.text()),
    }
    Ok(if summary.clean { 0 } else { 1 })
}

fn rollback(r: RollbackArgs) -> anyhow::Result<i32> {
    let c = &r.common;
    if r.live {
        return live::rollback_live(live::LiveRollback {
            common: c,
            admin: r.admin.clone(),
            token: r.admin_token.clone(),
            routes: r.routes.clone(),
            max_hold_ms: r.max_hold_ms,
            dry_run: r.dry_run,
        });
    }
    let (src, tgt) = (source(c)?, target(c)?);
    let cfg = config(c)?;
    let mut opts = ficus_migrator::RollbackOptions::new(src, tgt);
    opts.schema = c.schema.clone();
    opts.since = r.since.clone();
    opts.dry_run = r.dry_run;
    opts.conflict = match r.conflict {
        Conflict::NewestWins => ficus_migrator::ConflictPolicy::NewestWins,
        Conflict::Abort => ficus_migrator::ConflictPolicy::Abort,
    };
    if r.admin.is_some() || r.proxy_state.is_some() {
        opts.to_legacy = Some(std::sync::Arc::new(ficus_proxy::LegacySwitch {
            admin: r.admin.clone(),
            token: r.admin_token.clone(),
            state: r
                .proxy_state
                .as_deref()
                .map(ficus_proxy::StateLocation::from_path),
            config: r.proxy_config.clone(),
        }));
    }
    let rt = super::runtime()?;
    let rep = rt.block_on(ficus_migrator::rollback(&opts, &cfg))?;
    match c.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&rep)?),
        Format::Text => print!("{}", rep.text()),
    }
    Ok(if rep.ok || rep.dry_run { 0 } else { 1 })
}
