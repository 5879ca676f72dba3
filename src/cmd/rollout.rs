//! `ficus rollout status|set NAME PCT|reset NAME|plan ACTION NAME` and `ficus rollback
//! [NAME...]`, all through the admin API of a running proxy.

use ficus_proxy::client::AdminClient;
use ficus_proxy::{PlanCommand, PlanStatus};

#[derive(clap::Args)]
pub struct AdminOpts {
    /// Admin API of the running proxy.
    #[arg(
        long,
        env = "FICUS_ADMIN_URL",
        default_value = "http://127.0.0.1:9900",
        global = true
    )]
    pub admin: String,
    /// Environment variable holding the admin bearer token.
    #[arg(long, default_value = "FICUS_ADMIN_TOKEN", global = true)]
    pub token_env: String,
    /// Who is acting, for the audit log (default: $USER).
    #[arg(long, global = true)]
    pub actor: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: RolloutCommand,
    #[command(flatten)]
    pub opts: AdminOpts,
}

#[derive(clap::Subcommand)]
pub enum RolloutCommand {
    /// Show every route's percentage and where it comes from.
    Status,
    /// Send PCT percent (0-100, 0.01 steps) of route NAME to the new backend.
    Set {
        /// Route name.
        name: String,
        /// Share to new, in percent.
        percent: f64,
    },
    /// Drop the run-time value of route NAME: the configuration file's percentage applies again.
    Reset {
        /// Route name.
        name: String,
    },
    /// The step plan of route NAME ([routes.plan]): show it, or start, pause, resume or abort it.
    Plan {
        /// What to do.
        action: PlanAction,
        /// Route name.
        name: String,
    },
}

/// `ficus rollout plan ACTION NAME`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum PlanAction {
    /// Where the plan stands, the running phase's evidence and gates, the cohort's mismatches.
    Status,
    /// Start the plan from where the route is.
    Start,
    /// Stop a running plan at its step.
    Pause,
    /// Run a paused plan again from where the route is, with fresh evidence.
    Resume,
    /// End the plan; the route stays where it is.
    Abort,
}

#[derive(clap::Args)]
pub struct RollbackArgs {
    /// Routes to send back to legacy (0%); none means every route.
    pub names: Vec<String>,
    #[command(flatten)]
    pub opts: AdminOpts,
}

fn client(o: &AdminOpts) -> anyhow::Result<AdminClient> {
    let token = std::env::var(&o.token_env).ok().filter(|t| !t.is_empty());
    let actor = o
        .actor
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .map(|u| format!("cli:{u}"))
        .or_else(|| Some("cli".into()));
    Ok(AdminClient::new(&o.admin, token, actor)?)
}

fn rt() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    let c = client(&a.opts)?;
    let rt = rt()?;
    match a.command {
        RolloutCommand::Status => {
            let routes = rt.block_on(c.routes())?;
            if a.opts.json {
                println!("{}", serde_json::to_string_pretty(&routes)?);
                return Ok(0);
            }
            println!(
                "{:<20} {:<6} {:>8} {:>8} {:<8} {:<20} set by",
                "ROUTE", "TARGET", "PERCENT", "CONFIG", "SOURCE", "STICKY"
            );
            for r in routes {
                println!(
                    "{:<20} {:<6} {:>7.2}% {:>7.2}% {:<8} {:<20} {}",
                    r.name,
                    r.target,
                    r.percent,
                    r.config_percent,
                    r.source,
                    r.sticky,
                    match (&r.updated_by, &r.updated_at) {
                        (Some(b), Some(t)) => format!("{b} at {t}"),
                        _ => "-".into(),
                    }
                );
            }
            Ok(0)
        }
        RolloutCommand::Set { name, percent } => {
            let ch = rt.block_on(c.set_rollout(&name, percent))?;
            if a.opts.json {
                println!("{}", serde_json::to_string(&ch)?);
            } else {
                println!("{}: {}% -> {}%", ch.route, ch.from, ch.to);
            }
            Ok(0)
        }
        RolloutCommand::Reset { name } => {
            let ch = rt.block_on(c.reset_rollout(&name))?;
            if a.opts.json {
                println!("{}", serde_json::to_string(&ch)?);
            } else {
                println!(
                    "{}: {}% -> {}% (configuration value)",
                    ch.route, ch.from, ch.to
                );
            }
            Ok(0)
        }
        RolloutCommand::Plan { action, name } => {
            let cmd = match action {
                PlanAction::Status => None,
                PlanAction::Start => Some(PlanCommand::Start),
                PlanAction::Pause => Some(PlanCommand::Pause),
                PlanAction::Resume => Some(PlanCommand::Resume),
                PlanAction::Abort => Some(PlanCommand::Abort),
            };
            let s = match cmd {
                None => rt.block_on(c.plan_status(&name))?,
                Some(cmd) => rt.block_on(c.plan(&name, cmd))?,
            };
            if a.opts.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print_plan(&s);
            }
            Ok(0)
        }
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.2}%", v * 100.0))
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1} ms"))
}

/// `ficus rollout plan status` as text.
fn print_plan(s: &PlanStatus) {
    let steps: Vec<String> = s.steps.iter().map(|p| format!("{p}%")).collect();
    let Some(p) = &s.plan else {
        println!(
            "{}: no plan started (at {}%, steps {}); `ficus rollout plan start {}`",
            s.route,
            s.percent,
            steps.join(" "),
            s.route
        );
        return;
    };
    println!(
        "{}: plan {} at {}% (steps {}), next {}, phase {}",
        s.route,
        p.status.as_str(),
        f64::from(p.at_bp) / 100.0,
        steps.join(" "),
        s.next_percent.map_or("-".into(), |n| format!("{n}%")),
        p.phase.as_str(),
    );
    println!("  started by {} at {}", p.started_by, p.started_at);
    if let Some(r) = &p.reason {
        println!("  reason: {r}");
    }
    if let Some(w) = &s.waiting {
        println!("  waiting: {w}");
    }
    let ev = s.live.as_ref().or(p.last.as_ref());
    if let Some(e) = ev {
        let label = if s.live.is_some() {
            "now"
        } else {
            "last verdict"
        };
        println!(
            "  evidence ({label}, {} over {} s): new {} req, 5xx {}, p99 {} | legacy {} req, 5xx {}, p99 {} | mismatch {} of {} (noise excluded {})",
            e.phase,
            e.window_s,
            e.new.requests,
            pct(e.new.error_rate),
            ms(e.new.p99_ms),
            e.legacy.requests,
            pct(e.legacy.error_rate),
            ms(e.legacy.p99_ms),
            pct(e.mismatch_rate),
            e.compared,
            e.noise_excluded
        );
        if let Some(c) = &e.cohort {
            println!(
                "  cohort [{}%, {}%): {} mirrored, {} compared, {} mismatched, {} noise excluded, {} errors",
                c.from_percent, c.to_percent, c.mirrored, c.compared, c.mismatched, c.noise_excluded, c.errors
            );
        }
        for g in &e.gates {
            let verdict = match g.pass {
                Some(true) => "pass",
                Some(false) => "FAIL",
                None => "no data",
            };
            let v = g.value.map_or("-".into(), |v| format!("{v:.4}"));
            println!(
                "  gate {:<28} {v:>10} <= {:<8} {verdict}",
                g.gate, g.threshold
            );
        }
    }
    let listed = if s.cohort_mismatches.is_empty() {
        &p.cohort_mismatches
    } else {
        &s.cohort_mismatches
    };
    if !listed.is_empty() {
        println!("  cohort mismatches (`ficus shadow show` has their diffs):");
        for m in listed {
            println!(
                "    {}  key {}  new {}  request id {}",
                m.request,
                m.key,
                m.new_status.map_or("-".into(), |s| s.to_string()),
                m.request_id
            );
        }
    }
}

pub fn rollback(a: RollbackArgs) -> anyhow::Result<i32> {
    let c = client(&a.opts)?;
    let changes = rt()?.block_on(c.rollback(&a.names))?;
    if a.opts.json {
        println!("{}", serde_json::to_string(&changes)?);
    } else {
        for ch in &changes {
            println!("{}: {}% -> 0% (rolled back)", ch.route, ch.from);
        }
        if changes.is_empty() {
            println!("no routes to roll back");
        }
    }
    Ok(0)
}
