//! Path templates: literal segments, `{param}` segments, and a trailing `/*` for a prefix.
//! Matching walks the request path segment by segment without allocating.
//!
//! - `/api/tasks/{task_id}` matches `/api/tasks/TASK-1`, not `/api/tasks/` nor `/api/tasks/1/claim`;
//! - `/api/tasks/*` matches `/api/tasks`, `/api/tasks/` and everything below;
//! - `/*` matches every path.
//!
//! Templates match the request path as `crate::path` normalised it before routing (unreserved
//! escapes decoded, slashes merged, dot segments removed); reserved escapes stay encoded, so
//! `/api/tasks/a%2Fb` is one segment.

use std::fmt;

use http::Method;

/// Methods that are not writes (GET, HEAD, OPTIONS): never held, recorded or given a turn.
#[inline]
pub(crate) fn is_safe(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(Box<str>),
    Param(Box<str>),
}

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    raw: String,
    segs: Vec<Seg>,
    prefix: bool,
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl PathTemplate {
    /// Parses a template; the error says what is wrong.
    pub fn parse(raw: &str) -> Result<PathTemplate, String> {
        let rest = raw
            .strip_prefix('/')
            .ok_or_else(|| format!("{raw:?} must start with '/'"))?;
        let mut parts: Vec<&str> = rest.split('/').collect();
        let prefix = parts.last() == Some(&"*");
        if prefix {
            parts.pop();
        }
        let mut segs = Vec::with_capacity(parts.len());
        for p in parts {
            if p.contains('*') {
                return Err(format!(
                    "{raw:?}: '*' is only allowed as the whole last segment (\"/prefix/*\")"
                ));
            }
            if let Some(name) = p.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    return Err(format!(
                        "{raw:?}: parameter {{{name}}} needs a name of letters, digits and '_'"
                    ));
                }
                if segs
                    .iter()
                    .any(|s| matches!(s, Seg::Param(n) if &**n == name))
                {
                    return Err(format!("{raw:?}: parameter {{{name}}} appears twice"));
                }
                segs.push(Seg::Param(name.into()));
            } else if p.contains('{') || p.contains('}') {
                return Err(format!(
                    "{raw:?}: a parameter must be a whole segment, like /{{id}}/"
                ));
            } else {
                segs.push(Seg::Lit(p.into()));
            }
        }
        Ok(PathTemplate {
            raw: raw.to_string(),
            segs,
            prefix,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Whether this template ends in `/*`.
    pub fn is_prefix(&self) -> bool {
        self.prefix
    }

    /// Segment index of `{name}`, for `sticky = "path:name"`.
    pub fn param_index(&self, name: &str) -> Option<usize> {
        self.segs
            .iter()
            .position(|s| matches!(s, Seg::Param(n) if &**n == name))
    }

    /// Whether `path` (the URI path, starting with `/`) matches.
    pub fn matches(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let mut it = rest.split('/');
        for seg in &self.segs {
            match it.next() {
                None => return false,
                Some(got) => match seg {
                    Seg::Lit(l) => {
                        if **l != *got {
                            return false;
                        }
                    }
                    Seg::Param(_) => {
                        if got.is_empty() {
                            return false;
                        }
                    }
                },
            }
        }
        self.prefix || it.next().is_none()
    }

    /// The value of the segment at `index` in a path this template matched.
    pub fn segment(path: &str, index: usize) -> Option<&str> {
        path.strip_prefix('/')?
            .split('/')
            .nth(index)
            .filter(|s| !s.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> PathTemplate {
        PathTemplate::parse(s).unwrap()
    }

    #[test]
    fn literal_and_params() {
        let p = t("/api/tasks/{task_id}");
        assert!(p.matches("/api/tasks/TASK-1"));
        assert!(!p.matches("/api/tasks/"));
        assert!(!p.matches("/api/tasks"));
        assert!(!p.matches("/api/tasks/1/claim"));
        assert!(!p.matches("/api/other/1"));
        assert_eq!(p.param_index("task_id"), Some(2));
        assert_eq!(
            PathTemplate::segment("/api/tasks/TASK-1", 2),
            Some("TASK-1")
        );
        let c = t("/api/tasks/{task_id}/claim");
        assert!(c.matches("/api/tasks/7/claim"));
        assert!(!c.matches("/api/tasks/7/heartbeat"));
    }

    #[test]
    fn trailing_slash_is_significant() {
        let p = t("/api/tasks/");
        assert!(p.matches("/api/tasks/"));
        assert!(!p.matches("/api/tasks"));
        assert!(t("/").matches("/"));
        assert!(!t("/").matches("/x"));
    }

    #[test]
    fn prefix() {
        let p = t("/api/tasks/*");
        assert!(p.matches("/api/tasks"));
        assert!(p.matches("/api/tasks/"));
        assert!(p.matches("/api/tasks/1/claim"));
        assert!(!p.matches("/api/task"));
        assert!(!p.matches("/api/tasksx"));
        assert!(t("/*").matches("/anything/at/all"));
        assert!(t("/*").matches("/"));
    }

    #[test]
    fn bad_templates() {
        for bad in [
            "api",
            "/a/*/b",
            "/a/{}",
            "/a/{x}{y}",
            "/a/x{y}",
            "/{a}/{a}",
            "/a*",
        ] {
            assert!(PathTemplate::parse(bad).is_err(), "{bad}");
        }
    }
}
