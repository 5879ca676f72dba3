//! Request-time stamps: the text the proxy puts in `X-Ficus-Request-Time` (UTC, microseconds,
//! `2026-01-01T10:00:00.123456Z`) and the µs-since-1970 numbers stores and logs compare.

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// `t` in UTC as `2026-01-01T10:00:00.123456Z` (always six fraction digits): the
/// `X-Ficus-Request-Time` value and the `at` column of the dual-write log.
pub fn request_time(t: OffsetDateTime) -> String {
    let f = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    t.to_offset(UtcOffset::UTC)
        .format(&f)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000000Z".into())
}

/// `t` in UTC as RFC 3339 (`2026-01-01T10:00:00.123456789Z`): the audit log's `at`.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// Parses a time: RFC 3339 with an offset, PostgreSQL's `timestamptz` text
/// (`2026-01-01 10:00:00.5+00`, `+05:30`), or a naive `YYYY-MM-DD[ T]HH:MM:SS[.f]` or date
/// read as UTC.
pub fn parse(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    if let Some(t) = parse_pg(s) {
        return Some(t);
    }
    parse_naive(s).map(PrimitiveDateTime::assume_utc)
}

/// `2026-01-01 10:00:00[.f]+HH[:MM]`: a space for the `T`, and an offset that may lack its
/// minutes — turned into RFC 3339 and parsed as such.
fn parse_pg(s: &str) -> Option<OffsetDateTime> {
    if s.len() < 22 || !s.is_char_boundary(10) || s.as_bytes()[10] != b' ' {
        return None;
    }
    let sign = s.rfind(['+', '-']).filter(|&i| i > 18)?;
    let offset = &s[sign + 1..];
    let offset = match offset.len() {
        2 => format!("{offset}:00"),
        4 if !offset.contains(':') => format!("{}:{}", &offset[..2], &offset[2..]),
        _ => offset.to_string(),
    };
    let rfc = format!(
        "{}T{}{}{offset}",
        &s[..10],
        &s[11..sign],
        &s[sign..sign + 1]
    );
    OffsetDateTime::parse(&rfc, &Rfc3339).ok()
}

/// `YYYY-MM-DD HH:MM:SS[.f{1,9}]` (a space or `T` between date and time), or a bare date.
pub(crate) fn parse_naive(s: &str) -> Option<PrimitiveDateTime> {
    let date_fmt = time::macros::format_description!("[year]-[month]-[day]");
    if s.len() == 10 {
        return time::Date::parse(s, &date_fmt).ok().map(|d| d.midnight());
    }
    let space = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    let t = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    PrimitiveDateTime::parse(s, &space)
        .or_else(|_| PrimitiveDateTime::parse(s, &t))
        .ok()
}

/// Microseconds since 1970 (UTC).
pub fn unix_us(t: OffsetDateTime) -> i64 {
    // Fits: `time` stops at year 9999.
    (t.unix_timestamp_nanos() / 1000) as i64
}

/// The instant `us` microseconds after 1970 (UTC), if representable.
pub fn from_unix_us(us: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_time_round_trips() {
        let t = from_unix_us(1_767_261_600_123_456).unwrap();
        let s = request_time(t);
        assert_eq!(s, "2026-01-01T10:00:00.123456Z");
        assert_eq!(parse(&s), Some(t));
        assert_eq!(unix_us(parse(&s).unwrap()), 1_767_261_600_123_456);
    }

    #[test]
    fn parses_offsets_and_naive_forms_as_utc() {
        let want = from_unix_us(1_767_261_600_500_000).unwrap();
        assert_eq!(parse("2026-01-01T12:00:00.5+02:00"), Some(want));
        assert_eq!(parse("2026-01-01 10:00:00.5"), Some(want));
        assert_eq!(parse("2026-01-01T10:00:00.500000"), Some(want));
        assert_eq!(
            parse("2026-01-01"),
            Some(from_unix_us(1_767_225_600_000_000).unwrap())
        );
        assert_eq!(parse("2026-01-01 10:00:00.5+00"), Some(want));
        assert_eq!(parse("2026-01-01 15:30:00.5+05:30"), Some(want));
        assert_eq!(parse("2026-01-01 15:30:00.5+0530"), Some(want));
        assert_eq!(parse("yesterday"), None);
    }
}
