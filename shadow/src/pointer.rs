//! JSON pointers (RFC 6901) and the pointer globs of `ignore`, `unordered_arrays` and
//! `redact_fields`: `/items/*/last_heartbeat`, where `*` matches exactly one segment (an object
//! key or an array index) and `**` matches any number of segments, including none.

use std::fmt::Write as _;

/// One step of a path inside a JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// Appends `/segment` to `out`, escaped as RFC 6901 says (`~` → `~0`, `/` → `~1`).
pub(crate) fn push_escaped(out: &mut String, seg: &str) {
    out.push('/');
    for c in seg.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
}

/// The concrete pointer of `path` (`""` is the document root).
pub(crate) fn pointer(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => push_escaped(&mut out, k),
            Seg::Index(i) => {
                let _ = write!(out, "/{i}");
            }
        }
    }
    out
}

/// The generalised pointer of `path`: array indices become `*`, so `/3/updated_at` and
/// `/7/updated_at` are the same field. Reports group by it and noise is learned on it.
pub(crate) fn field(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => push_escaped(&mut out, k),
            Seg::Index(_) => out.push_str("/*"),
        }
    }
    out
}

/// Splits a pointer into unescaped segments; `None` when it is neither `""` nor starts with `/`.
pub(crate) fn split(pointer: &str) -> Option<Vec<String>> {
    if pointer.is_empty() {
        return Some(Vec::new());
    }
    let rest = pointer.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect(),
    )
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum GlobSeg {
    Lit(String),
    One,
    Any,
}

/// A compiled pointer glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Glob {
    segs: Vec<GlobSeg>,
}

impl Glob {
    /// Parses `pattern`; the error says why it is not a pointer glob.
    pub(crate) fn parse(pattern: &str) -> Result<Glob, String> {
        let parts = split(pattern).ok_or_else(|| {
            format!("{pattern:?} is not a JSON pointer: it must be empty or start with '/'")
        })?;
        let segs = parts
            .into_iter()
            .map(|p| match p.as_str() {
                "*" => GlobSeg::One,
                "**" => GlobSeg::Any,
                _ => GlobSeg::Lit(p),
            })
            .collect();
        Ok(Glob { segs })
    }

    /// Whether the glob matches the whole of `path`.
    pub(crate) fn matches(&self, path: &[Seg]) -> bool {
        matches_from(&self.segs, path)
    }

    /// Whether the glob matches `path` or one of its ancestors (a redacted object hides all
    /// that is inside it).
    pub(crate) fn matches_prefix_of(&self, path: &[Seg]) -> bool {
        (0..=path.len()).any(|n| matches_from(&self.segs, &path[..n]))
    }
}

fn seg_matches(glob: &GlobSeg, seg: &Seg) -> bool {
    match (glob, seg) {
        (GlobSeg::One, _) => true,
        (GlobSeg::Lit(l), Seg::Key(k)) => l == k,
        (GlobSeg::Lit(l), Seg::Index(i)) => l.parse::<usize>().ok() == Some(*i),
        (GlobSeg::Any, _) => unreachable!("handled by matches_from"),
    }
}

fn matches_from(globs: &[GlobSeg], path: &[Seg]) -> bool {
    match globs.split_first() {
        None => path.is_empty(),
        Some((GlobSeg::Any, rest)) => (0..=path.len()).any(|n| matches_from(rest, &path[n..])),
        Some((g, rest)) => match path.split_first() {
            Some((s, tail)) => seg_matches(g, s) && matches_from(rest, tail),
            None => false,
        },
    }
}

/// A set of globs; matching any one is a match.
#[derive(Debug, Clone, Default)]
pub(crate) struct GlobSet {
    globs: Vec<Glob>,
}

impl GlobSet {
    /// Compiles every pattern; the error carries the index of the bad one.
    pub(crate) fn parse(patterns: &[String]) -> Result<GlobSet, (usize, String)> {
        let globs = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| Glob::parse(p).map_err(|e| (i, e)))
            .collect::<Result<_, _>>()?;
        Ok(GlobSet { globs })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.globs.is_empty()
    }

    pub(crate) fn matches(&self, path: &[Seg]) -> bool {
        self.globs.iter().any(|g| g.matches(path))
    }

    pub(crate) fn matches_prefix_of(&self, path: &[Seg]) -> bool {
        self.globs.iter().any(|g| g.matches_prefix_of(path))
    }
}

/// Whether the generalised field `prefix` is `field` or one of its ancestors.
pub(crate) fn field_is_within(field: &str, prefix: &str) -> bool {
    field == prefix
        || (field.starts_with(prefix) && field.as_bytes().get(prefix.len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Vec<Seg> {
        split(s)
            .unwrap()
            .into_iter()
            .map(|x| match x.parse::<usize>() {
                Ok(i) => Seg::Index(i),
                Err(_) => Seg::Key(x),
            })
            .collect()
    }

    #[test]
    fn escaping_round_trips() {
        let path = vec![
            Seg::Key("a/b".into()),
            Seg::Key("m~n".into()),
            Seg::Index(3),
        ];
        assert_eq!(pointer(&path), "/a~1b/m~0n/3");
        assert_eq!(field(&path), "/a~1b/m~0n/*");
        assert_eq!(split("/a~1b/m~0n/3").unwrap(), vec!["a/b", "m~n", "3"]);
        assert_eq!(split(""), Some(vec![]));
        assert_eq!(split("x"), None);
    }

    #[test]
    fn globs() {
        let g = Glob::parse("/items/*/last_heartbeat").unwrap();
        assert!(g.matches(&p("/items/0/last_heartbeat")));
        assert!(g.matches(&p("/items/x/last_heartbeat")));
        assert!(!g.matches(&p("/items/0/1/last_heartbeat")));
        assert!(!g.matches(&p("/items/0")));
        let g = Glob::parse("/**/updated_at").unwrap();
        assert!(g.matches(&p("/updated_at")));
        assert!(g.matches(&p("/a/3/b/updated_at")));
        assert!(!g.matches(&p("/a/updated_at/x")));
        let g = Glob::parse("").unwrap();
        assert!(g.matches(&[]));
        assert!(!g.matches(&p("/a")));
        let g = Glob::parse("/user").unwrap();
        assert!(g.matches_prefix_of(&p("/user/password")));
        assert!(!g.matches_prefix_of(&p("/users/password")));
        assert!(Glob::parse("items").is_err());
    }

    #[test]
    fn field_prefixes() {
        assert!(field_is_within("/a/b", "/a"));
        assert!(field_is_within("/a", "/a"));
        assert!(!field_is_within("/ab", "/a"));
        assert!(field_is_within("/a", ""));
    }
}
