//! `ficus rollout status|set NAME PCT|reset NAME` and `ficus rollback [NAME...]`, all through
//! the admin API of a running proxy.

use ficus_proxy::client::AdminClient;

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
