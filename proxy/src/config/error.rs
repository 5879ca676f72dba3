//! [`ConfigError`], and what makes one from a place in the file: the line of a span, the key
//! on the line of a TOML error, the field of a shadow settings error.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use ficus_shadow::ShadowError;

/// A configuration error: which field, on which line, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the configuration came from, when it came from a file.
    pub file: Option<PathBuf>,
    /// 1-based line of the offending key or value, when known.
    pub line: Option<usize>,
    /// Dotted path of the field, e.g. `routes[1].percent`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(p) => write!(f, "{}", p.display())?,
            None => f.write_str("config")?,
        }
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        write!(f, ": {}: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// An error about a configuration built in code (no file, no line).
    pub(crate) fn in_code(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: None,
            line: None,
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The source being parsed: turns spans into line numbers for the errors.
pub(super) struct Ctx<'a> {
    pub src: &'a str,
    pub file: Option<&'a Path>,
}

impl Ctx<'_> {
    fn line_of(&self, span: Range<usize>) -> usize {
        let end = span.start.min(self.src.len());
        self.src.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// A file path from the configuration: relative to the configuration file's directory
    /// when there is a file (as nginx resolves relative to its prefix), else to the working
    /// directory.
    pub fn path(&self, p: &str) -> std::path::PathBuf {
        let path = Path::new(p);
        match self.file.and_then(Path::parent) {
            Some(dir) if path.is_relative() && !dir.as_os_str().is_empty() => dir.join(path),
            _ => path.to_path_buf(),
        }
    }

    pub fn err(
        &self,
        field: impl Into<String>,
        span: Option<Range<usize>>,
        msg: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.file.map(Path::to_path_buf),
            line: span.map(|s| self.line_of(s)),
            field: field.into(),
            message: msg.into(),
        }
    }

    /// Turns a toml/serde error into one naming the key on the offending line.
    pub fn toml_error(&self, e: toml::de::Error) -> ConfigError {
        let span = e.span();
        let field = span
            .clone()
            .and_then(|s| {
                let start = s.start.min(self.src.len());
                let line_start = self.src[..start].rfind('\n').map_or(0, |i| i + 1);
                let line_end = self.src[start..]
                    .find('\n')
                    .map_or(self.src.len(), |i| start + i);
                let line = &self.src[line_start..line_end];
                match line.split_once('=') {
                    Some((k, _)) => Some(k.trim().to_string()),
                    None => {
                        let t = line.trim();
                        (!t.is_empty()).then(|| t.to_string())
                    }
                }
            })
            .unwrap_or_else(|| "(document)".to_string());
        self.err(field, span, e.message().trim_end().to_string())
    }
}

/// The field (`shadow.queue`, `shadow.ignore[1]`) and message of a shadow settings error.
pub(super) fn shadow_field(e: ShadowError) -> (String, String) {
    match e {
        ShadowError::Config { field, reason } => (field, reason),
        other => ("shadow".to_string(), other.to_string()),
    }
}
