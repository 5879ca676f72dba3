//! The `[proxy.access_log]` table: where the access log goes, in which format, and which
//! requests it keeps.
//!
//! ```toml
//! [proxy.access_log]
//! path = "/var/log/ficus/access.log"   # "-" or "stdout": standard output
//! format = "json"                      # or "logfmt"
//! sample = 0.1                         # share of requests written (0 < sample <= 1)
//! all_errors = true                    # 5xx and proxy-made errors written whatever the sample
//! ```
//! A route leaves the log with `access_log = false` in its `[[routes]]` table.

use std::path::PathBuf;

use toml::Spanned;

use super::error::{ConfigError, Ctx};
use super::raw::RawAccessLog;

/// Where the lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    /// Standard output (`path = "-"` or `"stdout"`).
    Stdout,
    /// A file, appended to; reopened on SIGHUP and SIGUSR1 (after `logrotate` moved it).
    File(PathBuf),
}

/// How each line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// One JSON object per line (the default).
    Json,
    /// `key=value` pairs, values quoted when they need it (Heroku / Grafana Loki style).
    Logfmt,
}

/// `[proxy.access_log]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLogSettings {
    /// Where the lines go.
    pub target: AccessLogTarget,
    /// How each line is written.
    pub format: AccessLogFormat,
    /// Share of requests written, decided per request at random (1.0: every request).
    pub sample: f64,
    /// Responses with status 5xx, and every answer the proxy made itself because something
    /// failed (502, 504, 408, 413, 503, refused requests), are written whatever `sample` says.
    pub all_errors: bool,
}

impl AccessLogSettings {
    /// Every request, as JSON lines, to `target`.
    pub fn new(target: AccessLogTarget) -> AccessLogSettings {
        AccessLogSettings {
            target,
            format: AccessLogFormat::Json,
            sample: 1.0,
            all_errors: true,
        }
    }

    /// The rules a configuration built in code must follow too: `(field, message)`.
    pub(super) fn check(&self) -> Result<(), (&'static str, String)> {
        if !(self.sample > 0.0 && self.sample <= 1.0) {
            return Err((
                "sample",
                format!(
                    "{} is not in (0, 1]: the share of requests written (0.01 = one in a hundred); \
                     to turn the log off, remove [proxy.access_log]",
                    self.sample
                ),
            ));
        }
        if let AccessLogTarget::File(p) = &self.target {
            if p.as_os_str().is_empty() {
                return Err(("path", "empty path".into()));
            }
        }
        Ok(())
    }
}

/// The table as written, defaults filled in and checked; errors name the field and line.
pub(super) fn from_raw(
    cx: &Ctx<'_>,
    raw: Option<Spanned<RawAccessLog>>,
) -> Result<Option<AccessLogSettings>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let span = raw.span();
    let raw = raw.into_inner();
    let field = |k: &str| format!("proxy.access_log.{k}");
    let Some(path) = raw.path else {
        return Err(cx.err(
            field("path"),
            Some(span),
            "missing: where the log goes, a file or \"-\" for standard output",
        ));
    };
    let target = match path.get_ref().trim() {
        "-" | "stdout" => AccessLogTarget::Stdout,
        "" => return Err(cx.err(field("path"), Some(path.span()), "empty path")),
        p => AccessLogTarget::File(cx.path(p)),
    };
    let format = match raw.format {
        None => AccessLogFormat::Json,
        Some(f) => match f.get_ref().as_str() {
            "json" => AccessLogFormat::Json,
            "logfmt" => AccessLogFormat::Logfmt,
            other => {
                return Err(cx.err(
                    field("format"),
                    Some(f.span()),
                    format!("{other:?}: expected \"json\" or \"logfmt\""),
                ))
            }
        },
    };
    let settings = AccessLogSettings {
        target,
        format,
        sample: raw.sample.as_ref().map_or(1.0, |s| *s.get_ref()),
        all_errors: raw.all_errors.unwrap_or(true),
    };
    settings.check().map_err(|(k, m)| {
        let at = match k {
            "sample" => raw.sample.as_ref().map(|s| s.span()),
            _ => None,
        };
        cx.err(field(k), Some(at.unwrap_or(span.clone())), m)
    })?;
    Ok(Some(settings))
}
