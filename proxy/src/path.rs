//! Request path normalisation, before routing: what the routes match, what the sticky
//! `path:` key hashes and what the backend receives are the same normalised path, so whoever
//! writes the path cannot pick a route (or a side) by spelling it differently.
//!
//! As Envoy's `normalize_path` + `merge_slashes` (RFC 3986 §6.2.2):
//! 1. percent-encoded *unreserved* characters (`A–Z a–z 0–9 - . _ ~`) are decoded (`%69` → `i`,
//!    `%2E` → `.`); every other escape stays encoded with upper-case hex (`%2f` → `%2F`, so an
//!    encoded `/` never splits a segment);
//! 2. runs of `/` are merged into one;
//! 3. dot segments are removed (§5.2.4): `/a/./b` → `/a/b`, `/a/b/../c` → `/a/c`; a `..` that
//!    would climb above the root is refused ([`AboveRoot`], answered 400) rather than clamped.
//!
//! A path that needs none of this (no `%`, no `//`, no `.`/`..` segment: nearly every request)
//! is detected in one pass and left alone, without allocating.

/// A `..` segment climbed above the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AboveRoot;

/// The normalised form of `path` (which starts with `/`), or `None` when it is already
/// normal. Paths not starting with `/` (`*`, authority-form) are left alone.
pub(crate) fn normalize(path: &str) -> Result<Option<String>, AboveRoot> {
    if !path.starts_with('/') || is_normal(path.as_bytes()) {
        return Ok(None);
    }
    let decoded = decode_unreserved(path.as_bytes());
    // Merged slashes: empty segments vanish, except a trailing one (`/a/` keeps its `/`).
    let segs: Vec<&str> = decoded[1..].split('/').collect();
    let n = segs.len();
    let mut out: Vec<&str> = Vec::with_capacity(n);
    for (i, seg) in segs.into_iter().enumerate() {
        let last = i + 1 == n;
        match seg {
            "" if !last => {}
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                // `out` never holds an empty segment here (only the last one may be empty).
                if out.pop().is_none() {
                    return Err(AboveRoot);
                }
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let mut norm = String::with_capacity(decoded.len());
    for s in &out {
        norm.push('/');
        norm.push_str(s);
    }
    if norm.is_empty() {
        norm.push('/');
    }
    Ok((norm != path).then_some(norm))
}

/// No `%`, no empty segment before the last, no `.` or `..` segment.
#[inline]
fn is_normal(p: &[u8]) -> bool {
    if p.contains(&b'%') {
        return false;
    }
    let mut segs = p[1..].split(|&b| b == b'/').peekable();
    while let Some(s) = segs.next() {
        let last = segs.peek().is_none();
        if (s.is_empty() && !last) || s == b"." || s == b".." {
            return false;
        }
    }
    true
}

fn decode_unreserved(p: &[u8]) -> String {
    let mut out = String::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        let b = p[i];
        if b == b'%' && i + 2 < p.len() {
            if let (Some(h), Some(l)) = (hex(p[i + 1]), hex(p[i + 2])) {
                let c = h << 4 | l;
                if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
                    out.push(c as char);
                } else {
                    out.push('%');
                    out.push(p[i + 1].to_ascii_uppercase() as char);
                    out.push(p[i + 2].to_ascii_uppercase() as char);
                }
                i += 3;
                continue;
            }
        }
        // The URI parser admits only ASCII in a path.
        out.push(b as char);
        i += 1;
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> Result<String, AboveRoot> {
        normalize(p).map(|o| o.unwrap_or_else(|| p.to_string()))
    }

    #[test]
    fn normal_paths_are_left_alone() {
        for p in ["/", "/api/tasks/T1", "/api/tasks/", "/a.b/c..d/.e", "*"] {
            assert_eq!(normalize(p), Ok(None), "{p}");
        }
    }

    #[test]
    fn dot_segments_slashes_and_escapes() {
        assert_eq!(n("/internal/../api/tasks/T1").unwrap(), "/api/tasks/T1");
        assert_eq!(n("/%69nternal/x").unwrap(), "/internal/x");
        assert_eq!(n("//internal/x").unwrap(), "/internal/x");
        assert_eq!(n("/a//b///c/").unwrap(), "/a/b/c/");
        assert_eq!(n("/a/./b/.").unwrap(), "/a/b/");
        assert_eq!(n("/a/b/..").unwrap(), "/a/");
        assert_eq!(n("/a/..").unwrap(), "/");
        assert_eq!(n("/a/%2E%2e/b").unwrap(), "/b");
        assert_eq!(n("/api/tasks/%32/claim").unwrap(), "/api/tasks/2/claim");
        // Reserved characters stay encoded (upper-case hex): an encoded '/' is not a separator.
        assert_eq!(n("/a%2fb/%3a").unwrap(), "/a%2Fb/%3A");
        // A broken escape is kept as sent.
        assert_eq!(n("/a%zz/%4").unwrap(), "/a%zz/%4");
        assert_eq!(n("/%7E%5F").unwrap(), "/~_");
    }

    #[test]
    fn above_the_root_is_refused() {
        for p in ["/..", "/../a", "/a/../..", "/a/%2e%2e/%2E%2E/b", "//.."] {
            assert_eq!(normalize(p), Err(AboveRoot), "{p}");
        }
    }
}
