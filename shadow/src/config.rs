//! Settings: the global `[shadow]` section ([`ShadowGlobalConfig`]) and the per-route
//! `[routes.shadow]` table ([`RouteShadowConfig`]). The proxy embeds both in its own
//! configuration; `dual_write` lives on the route itself and is handed over in
//! [`RouteSpec`](crate::RouteSpec).
//!
//! ```toml
//! [shadow]
//! store = "ficus-shadow.db"
//! max_body_bytes = 262144
//! queue = 1024
//! concurrency = 16
//! timeout_ms = 5000
//! keep = 100000
//! keep_days = 14
//! redact_headers = ["x-api-key"]
//! redact_fields = ["password", "/user/ssn"]
//!
//! [[routes]]
//! name = "tasks-read"
//! [routes.shadow]
//! sample = 1.0
//! ignore = ["/updated_at", "/items/*/last_heartbeat"]
//! ignore_headers = ["date", "x-request-id"]
//! compare_headers = ["content-type"]
//! unordered_arrays = ["/items"]
//! float_tolerance = 1e-9
//! learn_noise = 0.05
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::ShadowError;
use crate::pointer::GlobSet;

/// The global `[shadow]` section. Every field has a default, so an empty table is valid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShadowGlobalConfig {
    /// SQLite file of the mismatch store (relative paths are relative to the working
    /// directory). Default `ficus-shadow.db`.
    pub store: PathBuf,
    /// Request and response bodies are captured up to this many bytes; an exchange with a
    /// larger body is served normally but not mirrored (`result="skipped"`). Default 256 KiB.
    pub max_body_bytes: usize,
    /// Mirror jobs waiting for a worker; past it new jobs are dropped (`result="dropped"`).
    /// Default 1024.
    pub queue: usize,
    /// Mirror requests in flight at once. Default 16.
    pub concurrency: usize,
    /// Time limit of one mirror exchange (connect, head and body). Default 5000.
    pub timeout_ms: u64,
    /// Retention: at most this many mismatches are kept (oldest removed first). Default 100000.
    pub keep: u64,
    /// Retention: mismatches and request counts older than this many days are removed.
    /// Default 14.
    pub keep_days: u32,
    /// Header names never stored in clear, in addition to `authorization`,
    /// `proxy-authorization`, `cookie` and `set-cookie`.
    pub redact_headers: Vec<String>,
    /// JSON fields (and query and form parameters) never stored in clear: a bare name
    /// (`password`) matches that key at any depth, a pointer glob (`/user/ssn`, `/**/token`)
    /// matches those paths.
    pub redact_fields: Vec<String>,
}

impl Default for ShadowGlobalConfig {
    fn default() -> Self {
        ShadowGlobalConfig {
            store: PathBuf::from("ficus-shadow.db"),
            max_body_bytes: 256 * 1024,
            queue: 1024,
            concurrency: 16,
            timeout_ms: 5000,
            keep: 100_000,
            keep_days: 14,
            redact_headers: Vec::new(),
            redact_fields: Vec::new(),
        }
    }
}

impl ShadowGlobalConfig {
    /// Checks every field; the error names the first bad one (`shadow.queue`, ...).
    pub fn validate(&self) -> Result<(), ShadowError> {
        let f = |name: &str| format!("shadow.{name}");
        if self.store.as_os_str().is_empty() {
            return Err(ShadowError::config(f("store"), "must not be empty"));
        }
        for (name, value) in [
            ("max_body_bytes", self.max_body_bytes as u64),
            ("queue", self.queue as u64),
            ("concurrency", self.concurrency as u64),
            ("timeout_ms", self.timeout_ms),
            ("keep", self.keep),
            ("keep_days", u64::from(self.keep_days)),
        ] {
            if value == 0 {
                return Err(ShadowError::config(f(name), "must be at least 1"));
            }
        }
        if self.concurrency > 4096 {
            return Err(ShadowError::config(
                f("concurrency"),
                "must be at most 4096",
            ));
        }
        if self.queue > 1_000_000 {
            return Err(ShadowError::config(f("queue"), "must be at most 1000000"));
        }
        for (i, h) in self.redact_headers.iter().enumerate() {
            if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                return Err(ShadowError::config(
                    format!("shadow.redact_headers[{i}]"),
                    format!("{h:?} is not a valid header name"),
                ));
            }
        }
        for (i, field) in self.redact_fields.iter().enumerate() {
            if field.is_empty() {
                return Err(ShadowError::config(
                    format!("shadow.redact_fields[{i}]"),
                    "must not be empty",
                ));
            }
            if field.starts_with('/') {
                if let Err(e) = GlobSet::parse(std::slice::from_ref(field)) {
                    return Err(ShadowError::config(
                        format!("shadow.redact_fields[{i}]"),
                        e.1,
                    ));
                }
            }
        }
        Ok(())
    }

    /// Reads the `[shadow]` section of a `ficus.toml` (the rest of the file is not looked at);
    /// a file without one gives the defaults. Validated.
    pub fn from_ficus_toml(path: &Path) -> Result<ShadowGlobalConfig, ShadowError> {
        let err = |detail: String| ShadowError::ConfigFile {
            path: path.to_path_buf(),
            detail,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let mut table: toml::Table = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        let cfg = match table.remove("shadow") {
            Some(v) => v
                .try_into::<ShadowGlobalConfig>()
                .map_err(|e| err(format!("[shadow]: {e}")))?,
            None => ShadowGlobalConfig::default(),
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// The per-route `[routes.shadow]` table. Its presence turns shadowing on for the route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteShadowConfig {
    /// Share (0..=1) of the route's eligible requests mirrored to the side that did not serve
    /// them. Default 1.0.
    pub sample: f64,
    /// JSON pointer globs removed from both bodies before comparing (`*` one segment, `**` any
    /// number).
    pub ignore: Vec<String>,
    /// Header names never compared, even when `compare_headers` is `["*"]`.
    pub ignore_headers: Vec<String>,
    /// Header names compared (case-insensitive); `"*"` compares every header except
    /// hop-by-hop ones, `date` and `content-length`. Default `["content-type"]`.
    pub compare_headers: Vec<String>,
    /// Pointer globs of arrays compared as multisets (order not judged).
    pub unordered_arrays: Vec<String>,
    /// Two numbers are equal when they differ by at most this much, absolutely or relatively.
    /// Default 0 (exact).
    pub float_tolerance: f64,
    /// Share (0..=1) of mirrored GETs also re-sent to the primary side to learn noise.
    /// Default 0.
    pub learn_noise: f64,
}

impl Default for RouteShadowConfig {
    fn default() -> Self {
        RouteShadowConfig {
            sample: 1.0,
            ignore: Vec::new(),
            ignore_headers: Vec::new(),
            compare_headers: vec!["content-type".to_string()],
            unordered_arrays: Vec::new(),
            float_tolerance: 0.0,
            learn_noise: 0.0,
        }
    }
}

impl RouteShadowConfig {
    /// Checks every field; the error names the first bad one (`shadow.sample`,
    /// `shadow.ignore[1]`, ...). The proxy prefixes the route.
    pub fn validate(&self) -> Result<(), ShadowError> {
        for (name, v) in [("sample", self.sample), ("learn_noise", self.learn_noise)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(ShadowError::config(
                    format!("shadow.{name}"),
                    format!("{v} is not between 0 and 1"),
                ));
            }
        }
        if !self.float_tolerance.is_finite() || self.float_tolerance < 0.0 {
            return Err(ShadowError::config(
                "shadow.float_tolerance",
                format!("{} is not a finite number >= 0", self.float_tolerance),
            ));
        }
        for (name, list) in [
            ("ignore", &self.ignore),
            ("unordered_arrays", &self.unordered_arrays),
        ] {
            if let Err((i, e)) = GlobSet::parse(list) {
                return Err(ShadowError::config(format!("shadow.{name}[{i}]"), e));
            }
        }
        for (name, list) in [
            ("ignore_headers", &self.ignore_headers),
            ("compare_headers", &self.compare_headers),
        ] {
            for (i, h) in list.iter().enumerate() {
                if name == "compare_headers" && h == "*" {
                    continue;
                }
                if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                    return Err(ShadowError::config(
                        format!("shadow.{name}[{i}]"),
                        format!("{h:?} is not a valid header name"),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_issue_example_parse() {
        let r: RouteShadowConfig = toml::from_str(
            r#"
            sample = 1.0
            ignore = ["/updated_at", "/items/*/last_heartbeat"]
            ignore_headers = ["date", "x-request-id"]
            compare_headers = ["content-type"]
            unordered_arrays = ["/items"]
            float_tolerance = 1e-9
            learn_noise = 0.05
            "#,
        )
        .unwrap();
        r.validate().unwrap();
        assert_eq!(r.learn_noise, 0.05);
        let g: ShadowGlobalConfig = toml::from_str(
            r#"
            store = "ficus-shadow.db"
            keep = 100000
            keep_days = 14
            redact_fields = ["password"]
            "#,
        )
        .unwrap();
        g.validate().unwrap();
        assert_eq!(g.queue, 1024);
        let empty: RouteShadowConfig = toml::from_str("").unwrap();
        assert_eq!(empty, RouteShadowConfig::default());
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let e = toml::from_str::<RouteShadowConfig>("sampel = 1.0").unwrap_err();
        assert!(e.to_string().contains("sampel"), "{e}");
        let e = toml::from_str::<ShadowGlobalConfig>("queu = 1").unwrap_err();
        assert!(e.to_string().contains("queu"), "{e}");
    }

    #[test]
    fn validate_names_the_field() {
        let field_of = |e: ShadowError| match e {
            ShadowError::Config { field, .. } => field,
            other => panic!("{other}"),
        };
        let r = RouteShadowConfig {
            sample: 1.5,
            ..Default::default()
        };
        assert_eq!(field_of(r.validate().unwrap_err()), "shadow.sample");
        let r = RouteShadowConfig {
            ignore: vec!["/ok".into(), "bad".into()],
            ..Default::default()
        };
        assert_eq!(field_of(r.validate().unwrap_err()), "shadow.ignore[1]");
        let r = RouteShadowConfig {
            float_tolerance: -1.0,
            ..Default::default()
        };
        assert_eq!(
            field_of(r.validate().unwrap_err()),
            "shadow.float_tolerance"
        );
        let r = RouteShadowConfig {
            compare_headers: vec!["*".into(), "bad header".into()],
            ..Default::default()
        };
        assert_eq!(
            field_of(r.validate().unwrap_err()),
            "shadow.compare_headers[1]"
        );
        let g = ShadowGlobalConfig {
            timeout_ms: 0,
            ..Default::default()
        };
        assert_eq!(field_of(g.validate().unwrap_err()), "shadow.timeout_ms");
        let g = ShadowGlobalConfig {
            redact_headers: vec!["x:y".into()],
            ..Default::default()
        };
        assert_eq!(
            field_of(g.validate().unwrap_err()),
            "shadow.redact_headers[0]"
        );
    }

    #[test]
    fn reads_the_shadow_section_of_a_ficus_toml() {
        let dir = std::env::temp_dir().join(format!("ficus-shadow-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ficus.toml");
        std::fs::write(
            &path,
            "[proxy]\nlisten = \"127.0.0.1:0\"\n[shadow]\nstore = \"x.db\"\nkeep = 5\n",
        )
        .unwrap();
        let g = ShadowGlobalConfig::from_ficus_toml(&path).unwrap();
        assert_eq!(g.store, PathBuf::from("x.db"));
        assert_eq!(g.keep, 5);
        std::fs::write(&path, "[shadow]\nkeep = 0\n").unwrap();
        assert!(ShadowGlobalConfig::from_ficus_toml(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
