//! Date/time values: SQLite's integer epochs, Julian-day reals and date/time text → PostgreSQL
//! `timestamp`/`date`/`time`, and back to text for reports and the legacy's storage format.
//!
//! The calendar — which dates exist, how many days lie between two of them, the date of a day
//! number — is the `time` crate's ([`days_from_civil`], [`civil_from_days`]). Dates beyond its
//! years ±9999 (PostgreSQL stores dates up to 5874897 AD; RFC 2822 text may name any year)
//! are moved into its range by whole 400-year cycles, after which the Gregorian calendar
//! repeats exactly. The text grammar stays hand-written because it is wider than what `time`'s
//! parsers accept and must stay as it is (every accepted form is pinned by `datetime/tests.rs`):
//! one- or two-digit months and days, `/` as date separator, `24:00:00`, a leap second `:60`,
//! any number of fraction digits (rounded to µs), a comma before the fraction, and the offsets
//! `Z`, `UTC`, `GMT`, `±HH`, `±HHMM`, `±HH:MM` with or without a space before them.

use rusqlite::types::ValueRef;
use serde::{Deserialize, Serialize};
use time::{Date, Month};

use super::types::{clip, err, storage_class, ConvertError, EpochUnit};

/// Microseconds from 1970-01-01 to 2000-01-01 (PostgreSQL's epoch).
pub(crate) const PG_EPOCH_US: i64 = 946_684_800_000_000;
/// Days from 1970-01-01 to 2000-01-01.
pub(crate) const PG_EPOCH_DAYS: i64 = 10_957;
/// Microseconds in a day.
pub(crate) const DAY_US: i64 = 86_400_000_000;
/// Days in 400 Gregorian years: the calendar repeats after them.
const DAYS_PER_400_YEARS: i64 = 146_097;
/// Julian day number of 1970-01-01.
const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;

/// A date/time value → µs since 2000-01-01 (PostgreSQL's `timestamp`), UTC: integer epochs
/// in `epoch_unit` (else guessed per value), reals as Julian days or epochs, text in the
/// shapes of [`DateFormat`] (an offset applied). Years 1..9999 only.
pub(super) fn to_timestamp(
    v: ValueRef<'_>,
    epoch_unit: Option<EpochUnit>,
) -> Result<i64, ConvertError> {
    let unix_us = match v {
        ValueRef::Integer(i) => {
            let unit = epoch_unit.unwrap_or_else(|| EpochUnit::guess(i));
            unit.to_micros(i)
                .ok_or_else(|| ConvertError(format!("epoch {i} out of range")))?
        }
        ValueRef::Real(f) => real_to_unix_us(f, epoch_unit)?,
        ValueRef::Text(b) => {
            let s = std::str::from_utf8(b)
                .map_err(|_| ConvertError("date/time text is not valid UTF-8".into()))?;
            let dt = parse_datetime(s)
                .ok_or_else(|| ConvertError(format!("unrecognised date/time {:?}", clip(s))))?;
            dt.unix_us - dt.offset_s.unwrap_or(0) * 1_000_000
        }
        ValueRef::Blob(_) => return err("blob in a date/time column"),
        ValueRef::Null => 0,
    };
    // PostgreSQL's range is wider; keep to years 1..9999 so values stay meaningful.
    if !(-62_135_596_800_000_000..=253_402_300_799_999_999).contains(&unix_us) {
        return err(format!(
            "date/time {unix_us} µs since 1970 is outside years 1..9999"
        ));
    }
    Ok(unix_us - PG_EPOCH_US)
}

/// A date value → days since 2000-01-01 (PostgreSQL's `date`): text without a zone, or any
/// date/time value at midnight.
pub(super) fn to_date(v: ValueRef<'_>, epoch_unit: Option<EpochUnit>) -> Result<i32, ConvertError> {
    let us = match v {
        ValueRef::Text(b) => {
            let s = std::str::from_utf8(b)
                .map_err(|_| ConvertError("date text is not valid UTF-8".into()))?;
            let dt = parse_datetime(s)
                .ok_or_else(|| ConvertError(format!("unrecognised date {:?}", clip(s))))?;
            if dt.offset_s.is_some() {
                return err(format!("date {:?} carries a time zone", clip(s)));
            }
            dt.unix_us
        }
        other => to_timestamp(other, epoch_unit)? + PG_EPOCH_US,
    };
    if us.rem_euclid(DAY_US) != 0 {
        return err("date value has a time of day");
    }
    Ok((us.div_euclid(DAY_US) - PG_EPOCH_DAYS) as i32)
}

fn real_to_unix_us(f: f64, unit: Option<EpochUnit>) -> Result<i64, ConvertError> {
    if !f.is_finite() {
        return err(format!("real {f:?} is not a date/time"));
    }
    // Below 1e7 a real is a Julian day number (SQLite's julianday()); above, an epoch.
    let us = if unit.is_none() && f.abs() < 1e7 {
        (f - 2_440_587.5) * 86_400e6
    } else {
        let unit = unit.unwrap_or_else(|| EpochUnit::guess(f as i64));
        match unit {
            EpochUnit::S => f * 1e6,
            EpochUnit::Ms => f * 1e3,
            EpochUnit::Us => f,
            EpochUnit::Ns => f / 1e3,
        }
    };
    if !(-9.2e18..9.2e18).contains(&us) {
        return err(format!("real {f:?} is out of date/time range"));
    }
    Ok(us.round() as i64)
}

/// A time-of-day text (`HH:MM[:SS[.f]]`) → µs since midnight (PostgreSQL's `time`).
pub(super) fn to_time(v: ValueRef<'_>) -> Result<i64, ConvertError> {
    let ValueRef::Text(b) = v else {
        return err(format!("{} value is not a time of day", storage_class(&v)));
    };
    let s = std::str::from_utf8(b).unwrap_or("");
    let mut p = Parser::new(s.trim());
    let t = p.time().filter(|_| p.at_end());
    t.ok_or_else(|| ConvertError(format!("unrecognised time {:?}", clip(s))))
}

// ---------------------------------------------------------------------------------------
// Date/time text parsing

/// A parsed date/time: microseconds since 1970 of the wall-clock value, plus its offset from
/// UTC in seconds when the text carried one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedDateTime {
    /// The wall-clock value as µs since 1970 (not yet moved by the offset).
    pub unix_us: i64,
    /// Its offset from UTC in seconds, when the text had one.
    pub offset_s: Option<i64>,
    /// The shape it was written in.
    pub format: DateFormat,
}

/// Text date/time shapes recognised (reported by the profile).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DateFormat {
    /// `YYYY-MM-DD`
    IsoDate,
    /// `YYYY-MM-DD HH:MM[:SS[.f]]` or with `T`
    IsoDateTime,
    /// ISO with `Z` or `±HH[:MM]`
    IsoDateTimeOffset,
    /// `YYYY/MM/DD[ HH:MM[:SS[.f]]]`
    SlashDate,
    /// `Tue, 01 Jul 2025 10:00:00 +0000` (RFC 2822)
    Rfc2822,
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn new(s: &'a str) -> Self {
        Parser {
            s: s.as_bytes(),
            i: 0,
        }
    }
    fn at_end(&self) -> bool {
        self.i == self.s.len()
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn digits(&mut self, n: usize) -> Option<i64> {
        let mut v = 0i64;
        for _ in 0..n {
            let c = self.peek().filter(u8::is_ascii_digit)?;
            v = v * 10 + (c - b'0') as i64;
            self.i += 1;
        }
        Some(v)
    }
    fn digits_range(&mut self, min: usize, max: usize) -> Option<i64> {
        let start = self.i;
        let mut v = 0i64;
        while self.i - start < max {
            match self.peek() {
                Some(c) if c.is_ascii_digit() => {
                    v = v * 10 + (c - b'0') as i64;
                    self.i += 1;
                }
                _ => break,
            }
        }
        (self.i - start >= min).then_some(v)
    }
    /// `HH:MM[:SS[.f{1,9}]]` → µs since midnight.
    fn time(&mut self) -> Option<i64> {
        let h = self.digits(2)?;
        if !self.eat(b':') {
            return None;
        }
        let m = self.digits(2)?;
        let mut s = 0;
        let mut us = 0;
        if self.eat(b':') {
            s = self.digits(2)?;
            if self.eat(b'.') || self.eat(b',') {
                let start = self.i;
                let mut frac = 0i64;
                let mut n = 0;
                while let Some(c) = self.peek().filter(u8::is_ascii_digit) {
                    if n < 9 {
                        frac = frac * 10 + (c - b'0') as i64;
                        n += 1;
                    }
                    self.i += 1;
                }
                if self.i == start {
                    return None;
                }
                let ns = frac * 10i64.pow(9 - n);
                us = (ns + 500) / 1000;
            }
        }
        if h > 24 || m > 59 || s > 60 || (h == 24 && (m > 0 || s > 0 || us > 0)) {
            return None;
        }
        Some(((h * 60 + m) * 60 + s) * 1_000_000 + us)
    }
    /// `Z`, ` UTC`, `±HH`, `±HHMM`, `±HH:MM` (optionally after a space) → seconds.
    fn offset(&mut self) -> Option<Option<i64>> {
        let save = self.i;
        self.eat(b' ');
        if self.eat(b'Z') || self.eat(b'z') {
            return Some(Some(0));
        }
        let rest = &self.s[self.i..];
        if rest.eq_ignore_ascii_case(b"UTC") || rest.eq_ignore_ascii_case(b"GMT") {
            self.i = self.s.len();
            return Some(Some(0));
        }
        let sign = match self.peek() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => {
                self.i = save;
                return Some(None);
            }
        };
        self.i += 1;
        let h = self.digits(2)?;
        let m = if self.eat(b':') {
            self.digits(2)?
        } else {
            self.digits_range(0, 2).filter(|_| true).unwrap_or(0)
        };
        if h > 15 || m > 59 {
            return None;
        }
        Some(Some(sign * (h * 3600 + m * 60)))
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date; None if the date does not exist.
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> Option<i64> {
    let month = Month::try_from(u8::try_from(m).ok()?).ok()?;
    let day = u8::try_from(d).ok()?;
    // The same day of the same month in the same year of the 400-year cycle: a leap year
    // exactly when `y` is one.
    let year_in_cycle = i32::try_from(y.rem_euclid(400)).ok()?;
    let date = Date::from_calendar_date(year_in_cycle, month, day).ok()?;
    let days = i64::from(date.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY;
    y.div_euclid(400)
        .checked_mul(DAYS_PER_400_YEARS)?
        .checked_add(days)
}

/// (year, month, day) of days since 1970-01-01.
pub(crate) fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let cycles = days.div_euclid(DAYS_PER_400_YEARS);
    let in_cycle = days.rem_euclid(DAYS_PER_400_YEARS);
    // 1970-01-01 ..= 2369-12-31: always a date of `time`'s.
    let date = i32::try_from(UNIX_EPOCH_JULIAN_DAY + in_cycle)
        .ok()
        .and_then(|jd| Date::from_julian_day(jd).ok())
        .unwrap_or(Date::MIN);
    (
        i64::from(date.year()) + 400 * cycles,
        u8::from(date.month()),
        date.day(),
    )
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// Parse the date/time text shapes of [`DateFormat`].
pub fn parse_datetime(s: &str) -> Option<ParsedDateTime> {
    let s = s.trim();
    if s.as_bytes()
        .first()
        .is_some_and(|c| c.is_ascii_alphabetic())
        || s.as_bytes().get(2) == Some(&b' ')
    {
        return parse_rfc2822(s);
    }
    let mut p = Parser::new(s);
    let y = p.digits(4)?;
    let sep = p.peek()?;
    if sep != b'-' && sep != b'/' {
        return None;
    }
    p.i += 1;
    let m = p.digits_range(1, 2)?;
    if !p.eat(sep) {
        return None;
    }
    let d = p.digits_range(1, 2)?;
    let days = days_from_civil(y, m, d)?;
    let mut us = days * DAY_US;
    let mut format = if sep == b'/' {
        DateFormat::SlashDate
    } else {
        DateFormat::IsoDate
    };
    if p.at_end() {
        return Some(ParsedDateTime {
            unix_us: us,
            offset_s: None,
            format,
        });
    }
    if !(p.eat(b' ') || p.eat(b'T') || p.eat(b't')) {
        return None;
    }
    us += p.time()?;
    if format == DateFormat::IsoDate {
        format = DateFormat::IsoDateTime;
    }
    let offset = p.offset()?;
    if !p.at_end() {
        return None;
    }
    if offset.is_some() && format == DateFormat::IsoDateTime {
        format = DateFormat::IsoDateTimeOffset;
    }
    Some(ParsedDateTime {
        unix_us: us,
        offset_s: offset,
        format,
    })
}

fn parse_rfc2822(s: &str) -> Option<ParsedDateTime> {
    let s = match s.find(',') {
        Some(i) => s[i + 1..].trim_start(),
        None => s,
    };
    let mut parts = s.splitn(4, ' ');
    let d: i64 = parts.next()?.parse().ok()?;
    let mon = parts.next()?.to_ascii_lowercase();
    let m = MONTHS.iter().position(|x| *x == mon)? as i64 + 1;
    let y: i64 = parts.next()?.parse().ok()?;
    let rest = parts.next()?;
    let mut p = Parser::new(rest);
    let t = p.time()?;
    let offset = p.offset()?;
    if !p.at_end() {
        return None;
    }
    Some(ParsedDateTime {
        unix_us: days_from_civil(y, m, d)? * DAY_US + t,
        offset_s: offset,
        format: DateFormat::Rfc2822,
    })
}

// ---------------------------------------------------------------------------------------
// Date/time text for people and for the legacy's storage

/// `YYYY-MM-DD` of days since 1970-01-01.
pub(crate) fn date_text(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `HH:MM:SS` of µs since midnight (the fraction left out).
pub(crate) fn hms(t: i64) -> String {
    format!(
        "{:02}:{:02}:{:02}",
        t / 3_600_000_000,
        t / 60_000_000 % 60,
        t / 1_000_000 % 60
    )
}

/// `HH:MM:SS.ffffff` of µs since midnight.
pub(crate) fn time_text(t: i64) -> String {
    format!("{}.{:06}", hms(t), t % 1_000_000)
}

/// (`YYYY-MM-DD`, µs since midnight) of µs since 1970.
pub(crate) fn split_us(unix_us: i64) -> (String, i64) {
    (
        date_text(unix_us.div_euclid(DAY_US)),
        unix_us.rem_euclid(DAY_US),
    )
}

/// `YYYY-MM-DD HH:MM:SS.ffffff` (UTC) of µs since 1970.
pub(crate) fn utc_text(unix_us: i64) -> String {
    let (date, t) = split_us(unix_us);
    format!("{date} {}", time_text(t))
}

#[cfg(test)]
mod tests;
