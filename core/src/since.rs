//! The one `--since` syntax every command accepts (`shadow report`, `migrate rollback`, …):
//! an RFC 3339 time (`2026-01-31T10:00:00Z`), a naive date-time or a date taken as UTC
//! (`2026-01-31 10:00:00`, `2026-01-31`), or an age counted back from now (`90s`, `15m`,
//! `2h`, `7d`, or combined: `1h30m`).

use time::{Duration, OffsetDateTime};

/// A `--since` value that is none of the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--since {0:?}: expected an RFC 3339 time (2026-01-31T10:00:00Z), a UTC date or date-time (2026-01-31, 2026-01-31 10:00:00), or an age (90s, 15m, 2h, 7d, 1h30m)")]
pub struct SinceError(pub String);

/// Parses `s` against `now` (ages count back from it).
pub fn parse_since(s: &str, now: OffsetDateTime) -> Result<OffsetDateTime, SinceError> {
    let s = s.trim();
    let bad = || SinceError(s.to_string());
    if let Some(age) = parse_age(s) {
        return now.checked_sub(age).ok_or_else(bad);
    }
    crate::stamp::parse(s).ok_or_else(bad)
}

/// `90s`, `15m`, `2h`, `7d`, `1h30m`: a sum of whole numbers each followed by a unit.
pub fn parse_age(s: &str) -> Option<Duration> {
    if s.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: i64 = digits.parse().ok()?;
        digits.clear();
        let unit = match c {
            's' => Duration::seconds(n),
            'm' => Duration::minutes(n),
            'h' => Duration::hours(n),
            'd' => Duration::days(n),
            _ => return None,
        };
        total = total.checked_add(unit)?;
    }
    digits.is_empty().then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stamp::from_unix_us;

    #[test]
    fn every_form() {
        let now = from_unix_us(1_767_261_600_000_000).unwrap(); // 2026-01-01T10:00:00Z
        let at = |s| parse_since(s, now).map(crate::stamp::request_time);
        assert_eq!(at("2h").unwrap(), "2026-01-01T08:00:00.000000Z");
        assert_eq!(at("1h30m").unwrap(), "2026-01-01T08:30:00.000000Z");
        assert_eq!(at("90s").unwrap(), "2026-01-01T09:58:30.000000Z");
        assert_eq!(at("7d").unwrap(), "2025-12-25T10:00:00.000000Z");
        assert_eq!(at("2025-12-31").unwrap(), "2025-12-31T00:00:00.000000Z");
        assert_eq!(
            at("2025-12-31T23:00:00+01:00").unwrap(),
            "2025-12-31T22:00:00.000000Z"
        );
        assert_eq!(
            at("2025-12-31 22:00:00.25").unwrap(),
            "2025-12-31T22:00:00.250000Z"
        );
        for bad in ["", "2x", "h", "yesterday", "2h30"] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
    }
}
