//! The monotone sticky split.
//!
//! The sticky key is hashed with xxh3 under a fixed seed into [`BUCKETS`] (10,000) buckets; the
//! new backend owns buckets `[0, percent_bp)`, where `percent_bp` is the rollout in basis points
//! (25.5 % = 2550). Raising the percentage therefore only *adds* keys to new and lowering it only
//! removes them — a key never flips back and forth as the dial moves. The seed is a constant and
//! is never changed by a rollout change: changing it would reshuffle every user.
//!
//! Architecture invariant: nothing here allocates or depends on process state (no `RandomState`),
//! so a key lands in the same bucket in every process and every release.

use std::fmt;

use http::{HeaderMap, HeaderName};
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Number of buckets; one bucket is 0.01 %.
pub const BUCKETS: u32 = 10_000;

/// Hash seed ("ficus_v1"). Changing it reassigns every key: never do that in a release.
pub const SEED: u64 = 0x6669_6375_735f_7631;

pub use ficus_core::Side;

/// Where a route's sticky key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sticky {
    /// A request header (`header:X-User-Id`).
    Header(HeaderName),
    /// A cookie (`cookie:session`).
    Cookie(String),
    /// A `{param}` of the route's path template (`path:task_id`).
    Path(String),
    /// A query-string parameter, compared undecoded (`query:user`).
    Query(String),
    /// No key: each request draws a bucket at random (not sticky).
    Random,
}

impl Sticky {
    /// Parses `header:NAME`, `cookie:NAME`, `path:PARAM`, `query:NAME` or `random`.
    pub fn parse(s: &str) -> Result<Sticky, String> {
        if s == "random" {
            return Ok(Sticky::Random);
        }
        let (kind, name) = s.split_once(':').ok_or_else(|| {
            format!("{s:?}: expected header:NAME, cookie:NAME, path:PARAM, query:NAME or random")
        })?;
        if name.is_empty() {
            return Err(format!("{s:?}: the name after ':' is empty"));
        }
        match kind {
            "header" => Ok(Sticky::Header(header_name(name)?)),
            "cookie" => Ok(Sticky::Cookie(name.to_string())),
            "path" => Ok(Sticky::Path(name.to_string())),
            "query" => Ok(Sticky::Query(name.to_string())),
            _ => Err(format!(
                "{s:?}: expected header:, cookie:, path:, query: or random"
            )),
        }
    }
}

/// The `HeaderName` of a sticky header, lower-cased.
fn header_name(s: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(s.as_bytes()).map_err(|_| format!("{s:?} is not a valid header name"))
}

impl fmt::Display for Sticky {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sticky::Header(h) => write!(f, "header:{h}"),
            Sticky::Cookie(c) => write!(f, "cookie:{c}"),
            Sticky::Path(p) => write!(f, "path:{p}"),
            Sticky::Query(q) => write!(f, "query:{q}"),
            Sticky::Random => f.write_str("random"),
        }
    }
}

/// What a request without the sticky key gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingKey {
    /// The monolith (the default: unknown callers stay on the proven path).
    #[default]
    Legacy,
    /// The new service.
    New,
    /// A random bucket, i.e. the rollout percentage without stickiness.
    Random,
}

impl MissingKey {
    /// `legacy`, `new` or `random`.
    pub fn as_str(self) -> &'static str {
        match self {
            MissingKey::Legacy => "legacy",
            MissingKey::New => "new",
            MissingKey::Random => "random",
        }
    }
}

/// The bucket of a key: stable across processes and releases.
#[inline]
pub fn bucket(key: &[u8]) -> u32 {
    (xxh3_64_with_seed(key, SEED) % u64::from(BUCKETS)) as u32
}

/// A uniformly random bucket, for `sticky = "random"` and `missing_key = "random"`.
#[inline]
pub fn random_bucket() -> u32 {
    rand::random_range(0..BUCKETS)
}

/// Whether a bucket belongs to new at `percent_bp` basis points.
#[inline]
pub fn is_new(bucket: u32, percent_bp: u32) -> bool {
    bucket < percent_bp
}

/// The split decision for a request: `key` is the sticky key when the request had one.
#[inline]
pub fn decide(percent_bp: u32, sticky: bool, key: Option<&[u8]>, missing: MissingKey) -> Side {
    // 0 % and 100 % are absolute: they hold with or without a key (a rollback means *all*).
    if percent_bp == 0 {
        return Side::Legacy;
    }
    if percent_bp >= BUCKETS {
        return Side::New;
    }
    let b = if !sticky {
        random_bucket()
    } else {
        match key {
            Some(k) => bucket(k),
            None => match missing {
                MissingKey::Legacy => return Side::Legacy,
                MissingKey::New => return Side::New,
                MissingKey::Random => random_bucket(),
            },
        }
    };
    if is_new(b, percent_bp) {
        Side::New
    } else {
        Side::Legacy
    }
}

/// The value of cookie `name` in the request's `Cookie` headers, without allocating.
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    for h in headers.get_all(http::header::COOKIE) {
        for pair in h.as_bytes().split(|&b| b == b';') {
            let pair = trim(pair);
            if let Some(eq) = pair.iter().position(|&b| b == b'=') {
                if &pair[..eq] == name.as_bytes() {
                    let v = trim(&pair[eq + 1..]);
                    let v = v
                        .strip_prefix(b"\"")
                        .and_then(|v| v.strip_suffix(b"\""))
                        .unwrap_or(v);
                    return (!v.is_empty()).then_some(v);
                }
            }
        }
    }
    None
}

/// The raw (undecoded) value of query parameter `name`, without allocating.
pub fn query_value<'a>(query: Option<&'a str>, name: &str) -> Option<&'a [u8]> {
    let q = query?;
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == name && !v.is_empty() {
            return Some(v.as_bytes());
        }
    }
    None
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_stable() {
        // Pinned values: if these change, every user is reshuffled. Never update them casually.
        let b1 = bucket(b"user-1");
        let b2 = bucket(b"user-2");
        assert_eq!(b1, bucket(b"user-1"));
        assert!(b1 < BUCKETS && b2 < BUCKETS);
        assert_eq!(
            (b1, b2),
            (
                (xxh3_64_with_seed(b"user-1", SEED) % 10_000) as u32,
                (xxh3_64_with_seed(b"user-2", SEED) % 10_000) as u32
            )
        );
    }

    #[test]
    fn monotone_in_percent() {
        // Property: for every key and every pair p <= q, new at p implies new at q.
        let mut state = 0x1234_5678_u64;
        for k in 0..20_000u32 {
            let key = format!("user-{k}");
            let b = bucket(key.as_bytes());
            for _ in 0..8 {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let p = ((state >> 33) % 10_001) as u32;
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let q = ((state >> 33) % 10_001) as u32;
                let (lo, hi) = if p <= q { (p, q) } else { (q, p) };
                let at_lo = decide(lo, true, Some(key.as_bytes()), MissingKey::Legacy);
                let at_hi = decide(hi, true, Some(key.as_bytes()), MissingKey::Legacy);
                assert!(
                    !(at_lo == Side::New && at_hi == Side::Legacy),
                    "key {key} bucket {b}: new at {lo} bp but legacy at {hi} bp"
                );
            }
        }
    }

    #[test]
    fn ratio_within_two_points() {
        for pct in [1u32, 10, 25, 50, 75, 99] {
            let bp = pct * 100;
            let n = (0..10_000)
                .filter(|k| {
                    decide(
                        bp,
                        true,
                        Some(format!("user-{k}").as_bytes()),
                        MissingKey::Legacy,
                    ) == Side::New
                })
                .count();
            let got = n as f64 / 100.0;
            assert!((got - pct as f64).abs() <= 2.0, "{pct}%: got {got}%");
        }
    }

    #[test]
    fn missing_key_policy_and_extremes() {
        assert_eq!(decide(5000, true, None, MissingKey::Legacy), Side::Legacy);
        assert_eq!(decide(5000, true, None, MissingKey::New), Side::New);
        assert_eq!(decide(0, true, None, MissingKey::New), Side::Legacy);
        assert_eq!(decide(10_000, true, None, MissingKey::Legacy), Side::New);
    }

    #[test]
    fn cookies_and_query() {
        let mut h = HeaderMap::new();
        h.append(
            http::header::COOKIE,
            "a=1; uid=\"u-7\" ; z=".parse().unwrap(),
        );
        h.append(http::header::COOKIE, "other=2".parse().unwrap());
        assert_eq!(cookie_value(&h, "uid"), Some(&b"u-7"[..]));
        assert_eq!(cookie_value(&h, "other"), Some(&b"2"[..]));
        assert_eq!(cookie_value(&h, "z"), None);
        assert_eq!(cookie_value(&h, "u"), None);
        assert_eq!(
            query_value(Some("a=1&user=bob&x"), "user"),
            Some(&b"bob"[..])
        );
        assert_eq!(query_value(Some("a=1&x"), "x"), None);
        assert_eq!(query_value(None, "x"), None);
    }

    #[test]
    fn sticky_parse() {
        assert_eq!(Sticky::parse("random"), Ok(Sticky::Random));
        assert_eq!(
            Sticky::parse("header:X-User-Id").unwrap().to_string(),
            "header:x-user-id"
        );
        assert!(Sticky::parse("body:x").is_err());
        assert!(Sticky::parse("header:").is_err());
        assert!(Sticky::parse("header:bad name").is_err());
    }
}
