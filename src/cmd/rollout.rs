//! `ficus rollout` and `ficus rollback` (being built).

#[derive(clap::Args)]
pub struct Args {}

#[derive(clap::Args)]
pub struct RollbackArgs {}

pub fn run(_a: Args) -> anyhow::Result<i32> {
    anyhow::bail!("`ficus rollout` is not available in this build yet")
}

pub fn rollback(_a: RollbackArgs) -> anyhow::Result<i32> {
    anyhow::bail!("`ficus rollback` is not available in this build yet")
}
