//! Running a `tests/browser/*.mjs` script (playwright-core driving headless Chromium) from a
//! Rust test: find `node` and Chromium (`FICUS_CHROMIUM`, default `/usr/bin/chromium`) or skip
//! loudly, `npm ci` the tools if `node_modules/playwright-core` is missing, run the script with
//! its environment and a time limit, check it passed. Screenshots go to [`out_dir`].
//!
//! The scripts and their `node_modules` stay in the workspace's `tests/browser/`; this module
//! finds that directory from any crate's tests ([`tools_dir`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// How long a browser script may take (a loaded CI machine included).
const TIMEOUT: Duration = Duration::from_secs(180);

/// Environment variable naming the browser tools directory, overriding the search.
pub const TOOLS_ENV: &str = "FICUS_BROWSER_TOOLS";

/// `<target>/browser-test`, beside the build output, where scripts write screenshots.
pub fn out_dir() -> PathBuf {
    pgtemp::target_dir()
        .unwrap_or_else(|| workspace_dir().join("target"))
        .join("browser-test")
}

/// The workspace root: the nearest directory above this crate with a `Cargo.lock`.
fn workspace_dir() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .find(|d| d.join("Cargo.lock").is_file())
        .unwrap_or_else(|| here.parent().unwrap_or(here))
        .to_path_buf()
}

/// The browser tools (`package.json`, the `.mjs` scripts, `node_modules`): `$FICUS_BROWSER_TOOLS`
/// if set, else the first `tests/browser` with a `package.json` above this crate's source or
/// above the current directory (cargo runs tests in their package's directory).
pub fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(TOOLS_ENV) {
        return PathBuf::from(dir);
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .chain(cwd.ancestors())
        .map(|d| d.join("tests/browser"))
        .find(|d| d.join("package.json").is_file())
        .unwrap_or_else(|| {
            panic!(
                "tests/browser/package.json not found above {} or {} (set {TOOLS_ENV})",
                env!("CARGO_MANIFEST_DIR"),
                cwd.display()
            )
        })
}

fn found(cmd: &str, arg: &str) -> bool {
    std::process::Command::new(cmd)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `node`, Chromium and the installed playwright-core, ready to run scripts.
pub struct Browser {
    chromium: String,
    tools: PathBuf,
}

impl Browser {
    /// `None`, after a loud SKIPPED banner naming `what`, when `node` or Chromium is not
    /// installed; otherwise `npm ci` in the tools directory if playwright-core is missing.
    pub fn find(what: &str) -> Option<Browser> {
        let chromium =
            std::env::var("FICUS_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let missing: Vec<&str> = [
            (!found("node", "--version")).then_some("node (apt-get install nodejs npm)"),
            (!Path::new(&chromium).exists()).then_some("chromium (apt-get install chromium)"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !missing.is_empty() {
            eprintln!(
                "\n\n*** SKIPPED {what}: {} not installed; .ci/run installs them ***\n\n",
                missing.join(" and ")
            );
            return None;
        }
        let tools = tools_dir();
        if !tools.join("node_modules/playwright-core").exists() {
            let ok = std::process::Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&tools)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "`npm ci` in {} failed", tools.display());
        }
        Some(Browser { chromium, tools })
    }

    /// Runs `node <script>` in the tools directory with `env` plus `FICUS_OUT_DIR`
    /// ([`out_dir`]) and `FICUS_CHROMIUM`, within 3 minutes; prints its output and fails with
    /// `failed` unless it exits 0.
    pub async fn run(&self, script: &str, env: &[(&str, OsString)], failed: &str) {
        let mut cmd = tokio::process::Command::new("node");
        cmd.arg(script)
            .current_dir(&self.tools)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("FICUS_OUT_DIR", out_dir())
            .env("FICUS_CHROMIUM", &self.chromium)
            .kill_on_drop(true);
        let output = tokio::time::timeout(TIMEOUT, cmd.output())
            .await
            .expect("browser test finished within 3 minutes")
            .expect("node runs");
        print!("{}", String::from_utf8_lossy(&output.stdout));
        eprint!("{}", String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "{failed}");
    }
}
