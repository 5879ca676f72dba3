//! A `ficus proxy` configuration for tests, written as TOML text: both backends on loopback,
//! listeners on free ports, the state store, optional shadow settings and the test's routes.
//! (Text, so testkit does not depend on the proxy; the test parses it with the proxy's own
//! `Config::from_toml_str` or hands the file to the binary.)
//!
//! ```
//! let toml = testkit::config::ProxyToml::new("127.0.0.1:8001", "127.0.0.1:8002")
//!     .state(":memory:")
//!     .routes("[[routes]]\nname = \"r\"\npath = \"/*\"\n")
//!     .to_string();
//! assert!(toml.contains("url = \"http://127.0.0.1:8002\""));
//! ```

use std::fmt;
use std::path::Path;

use crate::http::Origin;

/// A proxy configuration under construction; [`fmt::Display`] writes the TOML.
#[derive(Debug, Clone)]
pub struct ProxyToml {
    legacy: String,
    new: String,
    state: String,
    workers: u32,
    watch_config: bool,
    proxy: String,
    legacy_backend: String,
    new_backend: String,
    shadow: Option<String>,
    routes: String,
}

impl ProxyToml {
    /// Backends `legacy` and `new` (addresses or URLs); listeners on `127.0.0.1:0`, state
    /// `:memory:`, 2 workers, no config file watching, no routes.
    pub fn new(legacy: &(impl Origin + ?Sized), new: &(impl Origin + ?Sized)) -> ProxyToml {
        ProxyToml {
            legacy: legacy.origin(),
            new: new.origin(),
            state: ":memory:".into(),
            workers: 2,
            watch_config: false,
            proxy: String::new(),
            legacy_backend: String::new(),
            new_backend: String::new(),
            shadow: None,
            routes: String::new(),
        }
    }

    /// The state store: `:memory:`, a SQLite file or a `postgres://` URL.
    pub fn state(mut self, location: impl AsRef<str>) -> Self {
        self.state = location.as_ref().to_string();
        self
    }

    /// The state store in the SQLite file at `path`.
    pub fn state_file(self, path: &Path) -> Self {
        let s = path.display().to_string();
        self.state(s)
    }

    /// Worker threads.
    pub fn workers(mut self, n: u32) -> Self {
        self.workers = n;
        self
    }

    /// Whether the proxy watches its configuration file (only meaningful for a file).
    pub fn watch_config(mut self, on: bool) -> Self {
        self.watch_config = on;
        self
    }

    /// More `[proxy]` settings (TOML lines).
    pub fn proxy(mut self, lines: &str) -> Self {
        push_lines(&mut self.proxy, lines);
        self
    }

    /// More `[backends.legacy]` settings, e.g. `timeout_ms = 500`.
    pub fn legacy_backend(mut self, lines: &str) -> Self {
        push_lines(&mut self.legacy_backend, lines);
        self
    }

    /// More `[backends.new]` settings, e.g. `timeout_ms = 500`.
    pub fn new_backend(mut self, lines: &str) -> Self {
        push_lines(&mut self.new_backend, lines);
        self
    }

    /// A `[shadow]` section with its mismatch store at `store`, then `lines`.
    pub fn shadow(mut self, store: &Path, lines: &str) -> Self {
        let mut s = format!("store = {:?}\n", store.display().to_string());
        push_lines(&mut s, lines);
        self.shadow = Some(s);
        self
    }

    /// The `[[routes]]` (TOML), after everything else.
    pub fn routes(mut self, toml: &str) -> Self {
        push_lines(&mut self.routes, toml);
        self
    }
}

fn push_lines(to: &mut String, lines: &str) {
    let lines = lines.trim_matches('\n');
    if !lines.is_empty() {
        to.push_str(lines);
        to.push('\n');
    }
}

impl fmt::Display for ProxyToml {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[proxy]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nstate = {:?}\n\
             workers = {}\nwatch_config = {}\n{}\n\
             [backends.legacy]\nurl = \"{}\"\n{}\
             [backends.new]\nurl = \"{}\"\n{}",
            self.state,
            self.workers,
            self.watch_config,
            self.proxy,
            self.legacy,
            self.legacy_backend,
            self.new,
            self.new_backend,
        )?;
        if let Some(shadow) = &self.shadow {
            write!(f, "\n[shadow]\n{shadow}")?;
        }
        write!(f, "\n{}", self.routes)
    }
}
