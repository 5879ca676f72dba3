//! `ficus shadow` (being built).

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_a: Args) -> anyhow::Result<i32> {
    anyhow::bail!("`ficus shadow` is not available in this build yet")
}
