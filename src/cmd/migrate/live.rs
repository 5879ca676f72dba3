//! `ficus migrate capture|repair|cutover`, `run --follow` and `rollback --live`: the live
//! migration's commands — flags and printing; the work is in `ficus-migrator`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use ficus_migrator::{MigrationConfig, Observer, Plan};

use super::{config, observer, source, target, Common, Format, RunArgs};

#[derive(clap::Args)]
pub(super) struct RepairArgs {
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
pub(super) struct CaptureArgs {
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

pub(super) fn repair(r: RepairArgs) -> anyhow::Result<i32> {
    let c = &r.common;
    let (src, tgt) = (source(c)?, target(c)?);
    let cfg = config(c)?;
    let obs = observer(c)?;
    let rt = crate::cmd::runtime()?;
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

pub(super) fn capture(a: CaptureArgs) -> anyhow::Result<i32> {
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

/// Installs capture before the snapshot when it is missing, and says so.
pub(super) async fn install_capture(
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
pub(super) async fn follow(
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

#[derive(clap::Args)]
pub(super) struct CutoverArgs {
    #[command(flatten)]
    common: Common,
    /// The proxy's admin API; give it once per replica (holds are per proxy process).
    #[arg(
        long = "admin",
        value_name = "URL",
        required = true,
        env = "FICUS_ADMIN_URL",
        value_delimiter = ','
    )]
    admin: Vec<String>,
    /// Bearer token for the admin API.
    #[arg(long, env = "FICUS_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// The write routes to move to new, comma separated.
    #[arg(long, value_name = "R1,R2", value_delimiter = ',', required = true)]
    routes: Vec<String>,
    /// The longest write pause allowed; the proxy releases the held writes by itself then.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    max_hold_ms: u64,
    /// The follower's lag allowed before starting.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    max_lag_ms: u64,
    /// Check the preconditions and say what would be done; change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Arguments `rollback --live` shares with the cut-over.
pub(super) struct LiveRollback<'a> {
    pub common: &'a Common,
    pub admin: Option<String>,
    pub token: Option<String>,
    pub routes: Vec<String>,
    pub max_hold_ms: u64,
    pub dry_run: bool,
}

pub(super) fn cutover(a: CutoverArgs) -> anyhow::Result<i32> {
    let toward = ficus_migrator::cutover::Toward::New;
    move_writes(
        &a.common,
        toward,
        a.admin.clone(),
        a.admin_token.clone(),
        a.routes.clone(),
        a.max_hold_ms,
        a.max_lag_ms,
        a.dry_run,
    )
}

pub(super) fn rollback_live(r: LiveRollback<'_>) -> anyhow::Result<i32> {
    let c = r.common;
    let src = source(c)?;
    let routes = if r.routes.is_empty() {
        ficus_migrator::cutover::cutover_routes(src)?
    } else {
        r.routes
    };
    anyhow::ensure!(
        !routes.is_empty(),
        "--live: no cut-over is recorded in {} and no --routes given",
        src.display()
    );
    let admin = r
        .admin
        .context("--live needs --admin URL (the proxy's admin API)")?;
    move_writes(
        c,
        ficus_migrator::cutover::Toward::Legacy,
        admin.split(',').map(str::to_string).collect(),
        r.token,
        routes,
        r.max_hold_ms,
        u64::MAX / 2,
        r.dry_run,
    )
}

#[allow(clippy::too_many_arguments)]
fn move_writes(
    c: &Common,
    toward: ficus_migrator::cutover::Toward,
    admin: Vec<String>,
    token: Option<String>,
    routes: Vec<String>,
    max_hold_ms: u64,
    max_lag_ms: u64,
    dry_run: bool,
) -> anyhow::Result<i32> {
    let (src, tgt) = (source(c)?, target(c)?);
    let cfg = config(c)?;
    let actor = match toward {
        ficus_migrator::cutover::Toward::New => "cutover",
        ficus_migrator::cutover::Toward::Legacy => "rollback-live",
    };
    let traffic = ficus_proxy::AdminTraffic::new(&admin, token, actor)?;
    let opts = ficus_migrator::cutover::CutoverOptions {
        source: src.to_path_buf(),
        target: tgt.to_string(),
        routes,
        max_hold: std::time::Duration::from_millis(max_hold_ms),
        max_lag: std::time::Duration::from_millis(max_lag_ms),
        dry_run,
        toward,
    };
    let format = c.format;
    let rt = crate::cmd::runtime()?;
    let rep = rt.block_on(async {
        let plan = ficus_migrator::plan_for(src, tgt, &c.schema, &cfg).await?;
        let rep = ficus_migrator::cutover::cutover(&plan, &opts, &traffic, |st| {
            if format == Format::Text {
                println!("{:<16} {:>8.1} ms  {}", st.step, st.ms, st.detail);
            }
        })
        .await?;
        Ok::<_, anyhow::Error>(rep)
    })?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&rep)?),
        Format::Text => {
            for d in rep.differences.iter().take(20) {
                println!("  {}", ficus_migrator::drift_line(d));
            }
            if let Some(p) = rep.pause_ms {
                println!("write pause: {p:.1} ms");
            }
            if let Some(f) = &rep.failed {
                println!("FAILED at {f}");
            }
            println!("{}", rep.state);
        }
    }
    Ok(if rep.ok() { 0 } else { 1 })
}
