//! `ficus proxy --config FILE` and `ficus check-config FILE`.

use std::path::PathBuf;

use ficus_proxy::{Config, Proxy};

#[derive(clap::Args)]
pub struct Args {
    /// Configuration file (TOML); reloaded on SIGHUP and when it changes.
    #[arg(long, short, default_value = "ficus.toml")]
    pub config: PathBuf,
    /// Worker threads, overriding `workers` in the file (default: all cores, or
    /// TOKIO_WORKER_THREADS).
    #[arg(long)]
    pub workers: Option<usize>,
}

#[derive(clap::Args)]
pub struct CheckArgs {
    /// Configuration file to validate.
    pub file: PathBuf,
}

pub fn run(a: Args) -> anyhow::Result<i32> {
    let mut config = match Config::from_file(&a.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ficus: invalid configuration: {e}");
            return Ok(2);
        }
    };
    if let Some(w) = a.workers {
        config.proxy.workers = w;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let proxy = Proxy::start(config, Some(a.config.clone()))?;
        eprintln!(
            "ficus proxy: listening on {} (admin {}), {} worker(s); SIGHUP reloads {}",
            proxy.listen_addr(),
            proxy.admin_addr(),
            proxy.workers(),
            a.config.display()
        );
        ficus_proxy::shutdown_signal().await;
        eprintln!("ficus proxy: draining in-flight requests");
        proxy.shutdown().await;
        Ok(0)
    })
}

pub fn check(a: CheckArgs) -> anyhow::Result<i32> {
    match Config::from_file(&a.file) {
        Ok(c) => {
            println!(
                "{}: ok — listen {}, admin {}, {} route(s)",
                a.file.display(),
                c.proxy.listen,
                c.proxy.admin_listen,
                c.routes.len()
            );
            for r in &c.routes {
                let methods = if r.methods.is_empty() {
                    "*".to_string()
                } else {
                    r.methods
                        .iter()
                        .map(|m| m.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                println!(
                    "  {:<20} {:<8} {:<32} {:<6} {:>6.2}%  sticky={}",
                    r.name,
                    methods,
                    r.path.as_str(),
                    r.target.as_str(),
                    ficus_proxy::config::bp_to_percent(r.percent_bp),
                    r.sticky
                );
            }
            Ok(0)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(1)
        }
    }
}
