//! Time: the [`Timestamp`] both stores agree on (naive UTC, microsecond precision), its three
//! text forms (SQLAlchemy's SQLite storage, the API's pydantic-style ISO, the notes prefix), and
//! the injectable [`Clock`] every request-time timestamp comes from.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// A naive UTC date-time with microsecond precision — what SQLAlchemy keeps in a SQLite
/// `DATETIME` column and what PostgreSQL keeps in `timestamptz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(PrimitiveDateTime);

impl Timestamp {
    /// The timestamp `micros` microseconds after the Unix epoch (UTC), if representable.
    pub fn from_unix_micros(micros: i64) -> Option<Timestamp> {
        let nanos = i128::from(micros) * 1000;
        let odt = OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()?;
        Some(Timestamp(PrimitiveDateTime::new(odt.date(), odt.time())))
    }

    /// Microseconds since the Unix epoch (UTC).
    pub fn unix_micros(self) -> i64 {
        // Fits: `time` dates stop at year 9999.
        (self.0.assume_utc().unix_timestamp_nanos() / 1000) as i64
    }

    /// The current time, truncated to microseconds.
    pub fn now() -> Timestamp {
        Timestamp::from_offset(OffsetDateTime::now_utc())
    }

    /// Converts an offset date-time to UTC and truncates it to microseconds.
    pub fn from_offset(odt: OffsetDateTime) -> Timestamp {
        let utc = odt.to_offset(time::UtcOffset::UTC);
        Timestamp(PrimitiveDateTime::new(
            utc.date(),
            truncate_to_micros(utc.time()),
        ))
    }

    /// This timestamp as a UTC `OffsetDateTime` (for `timestamptz`).
    pub fn to_offset(self) -> OffsetDateTime {
        self.0.assume_utc()
    }

    /// Parses the forms SQLite databases hold: `YYYY-MM-DD HH:MM:SS[.f{1,9}]`, with a space or a
    /// `T` between date and time (SQLAlchemy writes six fraction digits; `datetime('now')` none).
    /// Digits past the sixth are truncated.
    pub fn parse(s: &str) -> Option<Timestamp> {
        let b = s.as_bytes();
        if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
            return None;
        }
        if b[10] != b' ' && b[10] != b'T' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<u32> {
            let part = s.get(r)?;
            if part.bytes().all(|c| c.is_ascii_digit()) {
                part.parse().ok()
            } else {
                None
            }
        };
        let year = i32::try_from(num(0..4)?).ok()?;
        let month = Month::try_from(u8::try_from(num(5..7)?).ok()?).ok()?;
        let day = u8::try_from(num(8..10)?).ok()?;
        let hour = u8::try_from(num(11..13)?).ok()?;
        let minute = u8::try_from(num(14..16)?).ok()?;
        let second = u8::try_from(num(17..19)?).ok()?;
        let micro = match &s[19..] {
            "" => 0,
            frac => {
                let digits = frac.strip_prefix('.')?;
                if digits.is_empty()
                    || digits.len() > 9
                    || !digits.bytes().all(|c| c.is_ascii_digit())
                {
                    return None;
                }
                let mut padded = digits.chars().take(6).collect::<String>();
                while padded.len() < 6 {
                    padded.push('0');
                }
                padded.parse().ok()?
            }
        };
        let date = Date::from_calendar_date(year, month, day).ok()?;
        let time = Time::from_hms_micro(hour, minute, second, micro).ok()?;
        Some(Timestamp(PrimitiveDateTime::new(date, time)))
    }

    /// A request time as a proxy stamps it: RFC 3339 with an offset (`2025-01-01T10:00:00.5Z`,
    /// `...+02:00`), converted to UTC, or a naive [`Timestamp::parse`] form read as UTC.
    /// Truncated to microseconds.
    pub fn parse_request_time(s: &str) -> Option<Timestamp> {
        let s = s.trim();
        match OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
            Ok(odt) => Some(Timestamp::from_offset(odt)),
            Err(_) => Timestamp::parse(s),
        }
    }

    /// SQLAlchemy's SQLite storage form, always six fraction digits: `2025-01-01 10:00:00.000000`.
    /// Also the prefix of appended status notes.
    pub fn to_sqlite(self) -> String {
        let mut s = String::with_capacity(26);
        self.write_parts(&mut s, ' ', true);
        s
    }

    /// The API form, as pydantic prints a naive datetime: ISO with `T`, and the fraction only
    /// when it is non-zero (`2025-01-01T10:00:00`, `2025-01-01T10:00:00.123456`).
    /// `full_micros` forces the six digits (the `timestamp-precision` quirk).
    pub fn to_api(self, full_micros: bool) -> String {
        let mut s = String::with_capacity(26);
        self.write_parts(&mut s, 'T', full_micros);
        s
    }

    fn write_parts(self, s: &mut String, sep: char, always_fraction: bool) {
        let (d, t) = (self.0.date(), self.0.time());
        // Writing to a String cannot fail.
        let _ = write!(
            s,
            "{:04}-{:02}-{:02}{sep}{:02}:{:02}:{:02}",
            d.year(),
            u8::from(d.month()),
            d.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        let micro = t.microsecond();
        if always_fraction || micro != 0 {
            let _ = write!(s, ".{micro:06}");
        }
    }
}

fn truncate_to_micros(t: Time) -> Time {
    let nanos = t.nanosecond() / 1000 * 1000;
    t.replace_nanosecond(nanos).unwrap_or(t)
}

/// Where request-time timestamps (`created_at`, `updated_at`, `last_heartbeat`, note prefixes)
/// come from. [`Clock::system`] in production; tests give both sides the same
/// [`Clock::stepping`] clock so their responses can be compared byte for byte.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> Timestamp + Send + Sync>);

impl Clock {
    /// The wall clock (UTC).
    pub fn system() -> Clock {
        Clock(Arc::new(Timestamp::now))
    }

    /// A deterministic clock: the first reading is `start`, each later one `step` after the
    /// previous. Each clone shares the sequence.
    pub fn stepping(start: Timestamp, step: Duration) -> Clock {
        let step = i64::try_from(step.as_micros()).unwrap_or(i64::MAX);
        let next = Arc::new(AtomicI64::new(start.unix_micros()));
        Clock(Arc::new(move || {
            let micros = next.fetch_add(step, Ordering::Relaxed);
            Timestamp::from_unix_micros(micros).unwrap_or(start)
        }))
    }

    /// Reads the clock.
    pub fn now(&self) -> Timestamp {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sqlalchemy_and_sqlite_forms() {
        let t = Timestamp::parse("2025-03-04 05:06:07.123456").unwrap();
        assert_eq!(t.to_sqlite(), "2025-03-04 05:06:07.123456");
        assert_eq!(t.to_api(false), "2025-03-04T05:06:07.123456");
        let t = Timestamp::parse("2025-03-04 05:06:07").unwrap();
        assert_eq!(t.to_sqlite(), "2025-03-04 05:06:07.000000");
        assert_eq!(t.to_api(false), "2025-03-04T05:06:07");
        assert_eq!(t.to_api(true), "2025-03-04T05:06:07.000000");
        let t = Timestamp::parse("2025-03-04T05:06:07.5").unwrap();
        assert_eq!(t.to_api(false), "2025-03-04T05:06:07.500000");
        let t = Timestamp::parse("2025-03-04 05:06:07.123456789").unwrap();
        assert_eq!(t.to_sqlite(), "2025-03-04 05:06:07.123456");
    }

    #[test]
    fn request_times() {
        let want = Timestamp::parse("2025-03-04 05:06:07.123456").unwrap();
        for s in [
            "2025-03-04T05:06:07.123456Z",
            "2025-03-04T07:06:07.123456789+02:00",
            "2025-03-04 05:06:07.123456",
            " 2025-03-04T05:06:07.123456z ",
        ] {
            assert_eq!(Timestamp::parse_request_time(s), Some(want), "{s:?}");
        }
        for s in ["", "yesterday", "2025-03-04", "2025-03-04T05:06:07+25:00"] {
            assert_eq!(Timestamp::parse_request_time(s), None, "{s:?}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for s in [
            "",
            "2025-03-04",
            "2025-13-04 05:06:07",
            "2025-03-04 05:06:07.",
            "2025-03-04 05:06:07Z",
            "2025-03-04x05:06:07",
            "2025-03-04 05:06:07.12a",
            "+025-03-04 05:06:07",
        ] {
            assert_eq!(Timestamp::parse(s), None, "{s:?}");
        }
    }

    #[test]
    fn unix_micros_round_trip_and_stepping_clock() {
        let t = Timestamp::parse("2025-01-01 00:00:00.000001").unwrap();
        assert_eq!(Timestamp::from_unix_micros(t.unix_micros()), Some(t));
        let c = Clock::stepping(t, Duration::from_millis(1500));
        assert_eq!(c.now(), t);
        assert_eq!(c.clone().now().to_sqlite(), "2025-01-01 00:00:01.500001");
        assert_eq!(c.now().to_sqlite(), "2025-01-01 00:00:03.000001");
    }

    #[test]
    fn system_clock_is_microsecond_precise() {
        let t = Clock::system().now();
        assert_eq!(t.to_offset().nanosecond() % 1000, 0);
    }
}
