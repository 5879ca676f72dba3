//! `ficus demo`: the whole migration story on this machine, narrated on stdout in numbered
//! steps; exit code 1 (and the reason on stderr) when a step's outcome is not what the story
//! expects.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// At the end, keep the proxy (and its admin page), the apps and PostgreSQL running and print
    /// their URLs and the commands to try, until Ctrl-C.
    #[arg(long)]
    serve: bool,
    /// Work directory for the databases, ficus.toml, migration.toml, the admin token and env.sh
    /// (kept); a temporary one (removed) by default.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Number of tasks in the legacy database (at least 100).
    #[arg(long, default_value_t = 500)]
    tasks: usize,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    let opts = ficus_demo::DemoOptions {
        dir: a.dir,
        tasks: a.tasks,
        serve: a.serve,
    };
    let rt = super::runtime()?;
    let mut out = std::io::stdout();
    rt.block_on(ficus_demo::run(opts, &mut out))?;
    Ok(0)
}
