//! `ficus proxy` and `ficus check-config` (being built).

#[derive(clap::Args)]
pub struct Args {}

#[derive(clap::Args)]
pub struct CheckArgs {}

pub fn run(_a: Args) -> anyhow::Result<i32> {
    anyhow::bail!("`ficus proxy` is not available in this build yet")
}

pub fn check(_a: CheckArgs) -> anyhow::Result<i32> {
    anyhow::bail!("`ficus check-config` is not available in this build yet")
}
