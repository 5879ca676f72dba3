//! Running a binary under test (e.g. `env!("CARGO_BIN_EXE_ficus")`, which only the binary's
//! own tests can name) with a quiet, predictable environment.

use std::process::{Command, Output};

/// `exe` with `FICUS_LOG=warn` and no `FICUS_ADMIN_TOKEN` inherited from the caller.
pub fn command(exe: &str) -> Command {
    let mut c = Command::new(exe);
    c.env("FICUS_LOG", "warn").env_remove("FICUS_ADMIN_TOKEN");
    c
}

/// Runs `exe args` (see [`command`]) to completion.
pub fn run(exe: &str, args: &[&str]) -> Output {
    command(exe)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {exe}: {e}"))
}

/// Standard output then standard error, as text.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
