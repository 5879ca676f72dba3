//! `ficus demo`: the whole migration story on this machine, narrated on stdout.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// Keep the servers running at the end and print their URLs (until Ctrl-C).
    #[arg(long)]
    serve: bool,
    /// Work directory for databases and logs (kept); a temporary one (removed) by default.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Number of tasks in the legacy database.
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
