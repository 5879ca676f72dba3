//! `ficus migrate plan|run|verify|status|watch|rollback`: flags and printing; the work is in
//! `ficus-migrator`.

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
    /// convert, and the DDL. Writes nothing (a dry run).
    Plan(Common),
    /// Create the tables and copy the data (resumable; a finished migration re-runs as a no-op).
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
    Repair(RepairArgs),
    /// Change capture on the SQLite source: a change log filled by triggers, so writes that
    /// bypass the proxy (cron jobs, scripts) are followed too. install | status | remove.
    Capture(CaptureArgs),
    /// Write rows created or changed on PostgreSQL since T back into SQLite, verify, then set
    /// every route to legacy (admin API, else the proxy state store). Exit 1 unless complete.
    Rollback(RollbackArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(clap::Args)]
struct Common {
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
struct RunArgs {
    #[command(flatten)]
    common: Common,
    /// Fail the run once more than N rows have been quarantined.
    #[arg(long, value_name = "N")]
    max_rejects: Option<u64>,
    /// Drop what an earlier migration of another source or plan created, and start over.
    #[arg(long)]
    restart: bool,
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
struct RepairArgs {
    #[command(flatten)]
    common: Common,
    /// Only this table.
    #[arg(long, value_name = "T")]
    table: Option<String>,
    /// List the rows that would be re-copied; write nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(clap::Args)]
struct CaptureArgs {
    #[command(subcommand)]
    action: CaptureAction,
}

#[derive(clap::Subcommand)]
enum CaptureAction {
    /// Add the change log and AFTER INSERT/UPDATE/DELETE triggers on every table the plan
    /// migrates (one short write transaction; idempotent).
    Install(CaptureCommon),
    /// Whether capture is installed, since when, and how many changes the log holds.
    Status(CaptureCommon),
    /// Remove every capture object: the app's schema is exactly as before.
    Remove(CaptureCommon),
}

#[derive(clap::Args)]
struct CaptureCommon {
    /// The legacy SQLite database file.
    #[arg(long)]
    source: PathBuf,
    /// migration.toml (the tables it skips get no triggers).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Target schema the plan is for.
    #[arg(long, default_value = "public")]
    schema: String,
    /// Report format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
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
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    match a.command {
        Sub::Plan(c) => plan(c),
        Sub::Run(r) => run_cmd(r),
        Sub::Verify(c) => verify(c),
        Sub::Status(c) => status(c),
        Sub::Watch(w) => watch(w),
        Sub::Rollback(r) => rollback(r),
        Sub::Capture(c) => capture(c),
        Sub::Repair(r) => repair(r),
    }
}

fn repair(r: RepairArgs) -> anyhow::Result<i32> {
    let c = &r.common;
    let (src, tgt) = (source(c)?, target(c)?);
    let cfg = config(c)?;
    let obs = observer(c)?;
    let rt = super::runtime()?;
    let rep = rt.block_on(async {
        let plan = ficus_migrator::plan_for(src, tgt, &c.schema, &cfg).await?;
        let opts = ficus_migrator::repair::RepairOptions {
            table: r.table.clone(),
            dry_run: r.dry_run,
        };
        Ok::<_, anyhow::Error>(ficus_migrator::repair::repair(&plan, src, tgt, &opts, &obs).await?)
    })?;
    match c.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&rep)?),
        Format::Text => print!("{}", rep.text()),
    }
    Ok(if rep.dry_run || rep.ok() { 0 } else { 1 })
}

fn capture(a: CaptureArgs) -> anyhow::Result<i32> {
    let (c, what) = match &a.action {
        CaptureAction::Install(c) => (c, "install"),
        CaptureAction::Status(c) => (c, "status"),
        CaptureAction::Remove(c) => (c, "remove"),
    };
    let print = |v: serde_json::Value, text: String| {
        match c.format {
            Format::Json => println!("{v}"),
            Format::Text => print!("{text}"),
        };
    };
    match what {
        "install" => {
            let cfg = match &c.config {
                Some(p) => MigrationConfig::load(p)?,
                None => MigrationConfig::default(),
            };
            let plan = Plan::build(&c.source, &cfg, &c.schema)?;
            let r = ficus_migrator::capture::install(&c.source, &plan.capture_tables())?;
            let text = match &r {
                ficus_migrator::capture::Installed::Created { tables } => format!(
                    "capture installed on {}: change log _ficus_changes, triggers on {} table(s): {}\n",
                    c.source.display(),
                    tables.len(),
                    tables.join(", ")
                ),
                ficus_migrator::capture::Installed::AlreadyThere { tables } => format!(
                    "capture was already installed on {} ({} table(s)): nothing to do\n",
                    c.source.display(),
                    tables.len()
                ),
            };
            print(serde_json::to_value(&r)?, text);
        }
        "status" => {
            let st = ficus_migrator::capture::status(&c.source)?;
            print(serde_json::to_value(&st)?, st.text());
        }
        _ => {
            let dropped = ficus_migrator::capture::remove(&c.source)?;
            let text = if dropped.is_empty() {
                "capture was not installed: nothing to remove\n".to_string()
            } else {
                format!(
                    "capture removed from {}: {} object(s) dropped\n",
                    c.source.display(),
                    dropped.len()
                )
            };
            print(serde_json::json!({ "dropped": dropped }), text);
        }
    }
    Ok(0)
}

fn config(c: &Common) -> anyhow::Result<MigrationConfig> {
    Ok(match &c.config {
        Some(p) => MigrationConfig::load(p)?,
        None => MigrationConfig::default(),
    })
}

fn source(c: &Common) -> anyhow::Result<&Path> {
    c.source.as_deref().context("--source app.db is required")
}

fn target(c: &Common) -> anyhow::Result<&str> {
    c.target
        .as_deref()
        .context("--target postgres://... is required")
}

fn observer(c: &Common) -> anyhow::Result<Arc<Observer>> {
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
        Format::Json => println!("{}", serde_json::to_string_pretty(&p)?),
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
                install_capture(src, &cfg, &c.schema, &obs).await?;
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
        let mut code = 0;
        if r.follow {
            if !rep.already_complete && !rep.resumed {
                // A fresh snapshot: the follower starts at the beginning of the log.
                let epoch = plan.source.capture_epoch.clone().unwrap_or_default();
                ficus_migrator::follow::reset(tgt, &c.schema, &epoch).await?;
            }
            code = follow(&plan, src, tgt, &r, &obs).await?;
        }
        stop_metrics(server, c, &obs).await;
        Ok::<_, anyhow::Error>(code)
    })?;
    Ok(result)
}

/// Installs capture before the snapshot when it is missing, and says so.
async fn install_capture(
    src: &Path,
    cfg: &MigrationConfig,
    schema: &str,
    obs: &Observer,
) -> anyhow::Result<()> {
    let (s, c, sc) = (src.to_path_buf(), cfg.clone(), schema.to_string());
    let installed = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let plan = Plan::build(&s, &c, &sc)?;
        Ok(ficus_migrator::capture::install(
            &s,
            &plan.capture_tables(),
        )?)
    })
    .await??;
    if let ficus_migrator::capture::Installed::Created { tables } = installed {
        obs.log(&format!(
            "follow: change capture was not installed on {}; installed it (triggers on {} table(s)) before the copy",
            src.display(),
            tables.len()
        ));
    }
    Ok(())
}

/// Applies the change log until Ctrl-C (0), or a schema change on the source (3).
async fn follow(
    plan: &Plan,
    src: &Path,
    tgt: &str,
    r: &RunArgs,
    obs: &Observer,
) -> anyhow::Result<i32> {
    let c = &r.common;
    let metrics = ficus_migrator::follow::FollowMetrics::register(&obs.metrics.registry)?;
    let mut opts = ficus_migrator::follow::FollowOptions::new(src, tgt);
    opts.max_lag = std::time::Duration::from_millis(r.max_lag_ms);
    opts.until_caught_up = r.until_caught_up;
    opts.settle = std::time::Duration::from_millis(r.settle_ms);
    opts.config = match &c.config {
        Some(p) => MigrationConfig::load(p)?,
        None => MigrationConfig::default(),
    };
    let format = c.format;
    let quiet = c.quiet;
    // Registered now (not on first poll), so a Ctrl-C or SIGTERM at any moment of following
    // ends it cleanly, after the round in hand.
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let stop = async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    };
    let summary = ficus_migrator::follow::follow(plan, &opts, &metrics, stop, |e| match format {
        Format::Json => {
            if let Ok(line) = serde_json::to_string(e) {
                println!("{line}");
            }
        }
        Format::Text => {
            let routine = matches!(e, ficus_migrator::follow::FollowEvent::Applied { .. });
            if !(quiet && routine) {
                println!("{}", e.text());
            }
        }
    })
    .await?;
    Ok(match summary.stop {
        ficus_migrator::follow::FollowStop::SchemaChanged { position, changes } => {
            eprintln!("follow stopped: the source's schema changed:");
            for c in &changes {
                eprintln!("  {c}");
            }
            eprintln!(
                "applied up to change {position}; the change log keeps everything captured since. \
                 Only ADD COLUMN is followed; to carry this change, copy again under capture: \
                 `ficus migrate capture remove --source {src}` then `ficus migrate run --follow --restart`",
                src = src.display()
            );
            3
        }
        _ => {
            println!(
                "follow: {} change(s), {} row(s) applied in {} round(s); at change {}",
                summary.changes, summary.rows, summary.rounds, summary.position
            );
            0
        }
    })
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
            for w in &result.warnings {
                println!("warning: {w}");
            }
            println!(
                "{} rows copied, {} quarantined{} in {:.2} s",
                result.rows_copied,
                result.rows_quarantined,
                if result.resumed { " (resumed)" } else { "" },
                result.seconds
            );
            if result.rows_quarantined > 0 {
                println!("quarantined rows are in ficus.quarantine (table, key, column, raw value, reason)");
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
