//! One module per subcommand: its clap arguments and how its results are printed.
//! Each `run` returns the process exit code.

pub mod demo;
pub mod migrate;
pub mod proxy;
pub mod rollout;
pub mod shadow;
pub mod taskapp;

/// A multi-threaded tokio runtime for commands that do async work.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
