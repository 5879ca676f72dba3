//! SQLite value → PostgreSQL value, by the conversion the plan chose for the column.
//!
//! A converted value is written straight into PostgreSQL's binary COPY field format (the same
//! bytes `BinaryCopyInWriter` would produce), on the blocking reader threads, so the async side
//! only ships bytes. A value that does not convert yields a [`ConvertError`]: that is where
//! quarantine starts, never a NULL.
//!
//! The same field bytes feed the canonical, type-tagged row encoding of verify
//! ([`canon_field`]): a SQLite value passed through its conversion and the value PostgreSQL
//! sends back in binary COPY give identical canonical bytes when the copy is right.

use std::fmt::Write as _;

use rusqlite::types::ValueRef;
use serde::{Deserialize, Serialize};

/// PostgreSQL column types the migrator writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PgType {
    Boolean,
    Integer,
    Bigint,
    Double,
    Numeric,
    Text,
    Varchar(u32),
    Bytea,
    Timestamp,
    Timestamptz,
    Date,
    Time,
    Json,
}

impl PgType {
    /// The type names accepted in configuration.
    pub const SUPPORTED: &'static str = "boolean, integer, bigint, double precision, numeric, text, varchar(N), bytea, timestamp, timestamptz, date, time, json";

    /// Parse a type name (`"bigint"`, `"varchar(20)"`, `"timestamp with time zone"`...).
    pub fn parse(s: &str) -> Option<PgType> {
        let l = s.trim().to_ascii_lowercase();
        let l = l.split_whitespace().collect::<Vec<_>>().join(" ");
        Some(match l.as_str() {
            "boolean" | "bool" => PgType::Boolean,
            "integer" | "int" | "int4" => PgType::Integer,
            "bigint" | "int8" => PgType::Bigint,
            "double precision" | "float8" | "double" => PgType::Double,
            "numeric" | "decimal" => PgType::Numeric,
            "text" => PgType::Text,
            "bytea" => PgType::Bytea,
            "timestamp" | "timestamp without time zone" => PgType::Timestamp,
            "timestamptz" | "timestamp with time zone" => PgType::Timestamptz,
            "date" => PgType::Date,
            "time" | "time without time zone" => PgType::Time,
            "json" => PgType::Json,
            other => {
                let inner = other
                    .strip_prefix("varchar(")
                    .or_else(|| other.strip_prefix("character varying("))?
                    .strip_suffix(')')?;
                PgType::Varchar(inner.trim().parse().ok().filter(|n| *n > 0)?)
            }
        })
    }

    /// SQL spelling for DDL.
    pub fn sql(&self) -> String {
        match self {
            PgType::Boolean => "boolean".into(),
            PgType::Integer => "integer".into(),
            PgType::Bigint => "bigint".into(),
            PgType::Double => "double precision".into(),
            PgType::Numeric => "numeric".into(),
            PgType::Text => "text".into(),
            PgType::Varchar(n) => format!("varchar({n})"),
            PgType::Bytea => "bytea".into(),
            PgType::Timestamp => "timestamp".into(),
            PgType::Timestamptz => "timestamptz".into(),
            PgType::Date => "date".into(),
            PgType::Time => "time".into(),
            PgType::Json => "json".into(),
        }
    }

    /// Tag byte of the canonical encoding: one per value domain, so `integer` and `bigint`
    /// (and `timestamp`/`timestamptz`, `text`/`varchar`) hash alike.
    fn tag(&self) -> u8 {
        match self {
            PgType::Boolean => 1,
            PgType::Integer | PgType::Bigint => 2,
            PgType::Double => 3,
            PgType::Numeric => 4,
            PgType::Text | PgType::Varchar(_) => 5,
            PgType::Bytea => 6,
            PgType::Timestamp | PgType::Timestamptz => 7,
            PgType::Date => 8,
            PgType::Time => 9,
            PgType::Json => 10,
        }
    }

    pub(crate) fn is_text_like(&self) -> bool {
        matches!(self, PgType::Text | PgType::Varchar(_) | PgType::Json)
    }
}

impl Serialize for PgType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.sql())
    }
}

impl<'de> Deserialize<'de> for PgType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PgType::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown type {s:?}")))
    }
}

/// Unit of integer epoch values in date/time columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EpochUnit {
    S,
    Ms,
    Us,
    Ns,
}

impl EpochUnit {
    /// Guess from magnitude: seconds up to 1e11 (year 5138), then ms, µs, ns.
    pub fn guess(v: i64) -> EpochUnit {
        let a = v.unsigned_abs();
        if a < 100_000_000_000 {
            EpochUnit::S
        } else if a < 100_000_000_000_000 {
            EpochUnit::Ms
        } else if a < 100_000_000_000_000_000 {
            EpochUnit::Us
        } else {
            EpochUnit::Ns
        }
    }
    fn to_micros(self, v: i64) -> Option<i64> {
        match self {
            EpochUnit::S => v.checked_mul(1_000_000),
            EpochUnit::Ms => v.checked_mul(1_000),
            EpochUnit::Us => Some(v),
            EpochUnit::Ns => Some(v.div_euclid(1_000)),
        }
    }
}

/// How one column's values are converted. Chosen by the plan, applied by run and verify.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversion {
    /// Target type.
    pub pg_type: PgType,
    /// NULL is a reject (PostgreSQL NOT NULL / PRIMARY KEY column).
    pub not_null: bool,
    /// Fixed unit for integer epochs (None: guess per value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch_unit: Option<EpochUnit>,
    /// Remove NUL bytes from text.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strip_nul: bool,
    /// Replace invalid UTF-8 with U+FFFD.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lossy_utf8: bool,
}

/// Why a value did not convert.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConvertError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ConvertError> {
    Err(ConvertError(msg.into()))
}

/// Microseconds from 1970-01-01 to 2000-01-01 (PostgreSQL's epoch).
const PG_EPOCH_US: i64 = 946_684_800_000_000;
const PG_EPOCH_DAYS: i64 = 10_957;
const DAY_US: i64 = 86_400_000_000;

/// Storage class name of a SQLite value, as `typeof()` says it.
pub fn storage_class(v: &ValueRef<'_>) -> &'static str {
    match v {
        ValueRef::Null => "null",
        ValueRef::Integer(_) => "integer",
        ValueRef::Real(_) => "real",
        ValueRef::Text(_) => "text",
        ValueRef::Blob(_) => "blob",
    }
}

impl Conversion {
    /// Convert `v` and append it as one binary COPY field (length + bytes, or -1 for NULL) to
    /// `out`. On error `out` may hold a partial field: the caller truncates to the row start.
    pub fn encode(&self, v: ValueRef<'_>, out: &mut Vec<u8>) -> Result<(), ConvertError> {
        if let ValueRef::Null = v {
            if self.not_null {
                return err("NULL in a NOT NULL / PRIMARY KEY column");
            }
            out.extend_from_slice(&(-1i32).to_be_bytes());
            return Ok(());
        }
        let len_at = out.len();
        out.extend_from_slice(&[0, 0, 0, 0]);
        self.encode_value(v, out)?;
        let len = (out.len() - len_at - 4) as i32;
        out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    fn encode_value(&self, v: ValueRef<'_>, out: &mut Vec<u8>) -> Result<(), ConvertError> {
        match self.pg_type {
            PgType::Boolean => {
                let b = to_bool(v)?;
                out.push(b as u8);
            }
            PgType::Integer => {
                let i = to_i64(v)?;
                let i: i32 = i
                    .try_into()
                    .map_err(|_| ConvertError(format!("{i} is out of range for integer")))?;
                out.extend_from_slice(&i.to_be_bytes());
            }
            PgType::Bigint => out.extend_from_slice(&to_i64(v)?.to_be_bytes()),
            PgType::Double => out.extend_from_slice(&to_f64(v)?.to_bits().to_be_bytes()),
            PgType::Numeric => encode_numeric(&to_decimal(v)?, out),
            PgType::Text | PgType::Varchar(_) => {
                let start = out.len();
                self.text_into(v, out)?;
                if let PgType::Varchar(n) = self.pg_type {
                    // Valid UTF-8 by construction.
                    let chars = String::from_utf8_lossy(&out[start..]).chars().count();
                    if chars > n as usize {
                        return err(format!("{chars} characters, longer than varchar({n})"));
                    }
                }
            }
            PgType::Json => {
                let start = out.len();
                self.text_into(v, out)?;
                if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(&out[start..]) {
                    return err(format!("not valid JSON: {e}"));
                }
            }
            PgType::Bytea => match v {
                ValueRef::Blob(b) | ValueRef::Text(b) => out.extend_from_slice(b),
                ValueRef::Integer(i) => {
                    let _ = write!(Buf(out), "{i}");
                }
                ValueRef::Real(f) => {
                    let _ = write!(Buf(out), "{f:?}");
                }
                ValueRef::Null => {}
            },
            PgType::Timestamp | PgType::Timestamptz => {
                out.extend_from_slice(&self.to_timestamp(v)?.to_be_bytes())
            }
            PgType::Date => out.extend_from_slice(&self.to_date(v)?.to_be_bytes()),
            PgType::Time => out.extend_from_slice(&to_time(v)?.to_be_bytes()),
        }
        Ok(())
    }

    fn text_into(&self, v: ValueRef<'_>, out: &mut Vec<u8>) -> Result<(), ConvertError> {
        let bytes = match v {
            ValueRef::Text(b) => b,
            ValueRef::Blob(b) => {
                if std::str::from_utf8(b).is_err() && !self.lossy_utf8 {
                    return err("blob is not valid UTF-8 text");
                }
                b
            }
            ValueRef::Integer(i) => {
                let _ = write!(Buf(out), "{i}");
                return Ok(());
            }
            ValueRef::Real(f) => {
                let _ = write!(Buf(out), "{f:?}");
                return Ok(());
            }
            ValueRef::Null => return Ok(()),
        };
        let has_nul = bytes.contains(&0);
        if has_nul && !self.strip_nul {
            return err("text contains a NUL byte (PostgreSQL text cannot hold one)");
        }
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                if has_nul {
                    out.extend(s.bytes().filter(|b| *b != 0));
                } else {
                    out.extend_from_slice(s.as_bytes());
                }
            }
            Err(e) => {
                if !self.lossy_utf8 {
                    return err(format!("invalid UTF-8 at byte {}", e.valid_up_to()));
                }
                let s = String::from_utf8_lossy(bytes);
                out.extend(s.bytes().filter(|b| !(has_nul && *b == 0)));
            }
        }
        Ok(())
    }

    fn to_timestamp(&self, v: ValueRef<'_>) -> Result<i64, ConvertError> {
        let unix_us = match v {
            ValueRef::Integer(i) => {
                let unit = self.epoch_unit.unwrap_or_else(|| EpochUnit::guess(i));
                unit.to_micros(i)
                    .ok_or_else(|| ConvertError(format!("epoch {i} out of range")))?
            }
            ValueRef::Real(f) => real_to_unix_us(f, self.epoch_unit)?,
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

    fn to_date(&self, v: ValueRef<'_>) -> Result<i32, ConvertError> {
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
            other => self.to_timestamp(other)? + PG_EPOCH_US,
        };
        if us.rem_euclid(DAY_US) != 0 {
            return err("date value has a time of day");
        }
        Ok((us.div_euclid(DAY_US) - PG_EPOCH_DAYS) as i32)
    }
}

fn clip(s: &str) -> String {
    if s.chars().count() > 60 {
        s.chars().take(60).collect::<String>() + "…"
    } else {
        s.to_string()
    }
}

struct Buf<'a>(&'a mut Vec<u8>);
impl std::fmt::Write for Buf<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Boolean spellings accepted from text (case-insensitive).
pub fn parse_bool_text(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "y" | "yes" | "on" => Some(true),
        "0" | "f" | "false" | "n" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn to_bool(v: ValueRef<'_>) -> Result<bool, ConvertError> {
    match v {
        ValueRef::Integer(0) => Ok(false),
        ValueRef::Integer(1) => Ok(true),
        ValueRef::Integer(i) => err(format!("integer {i} is not a boolean (0 or 1)")),
        ValueRef::Real(0.0) => Ok(false),
        ValueRef::Real(1.0) => Ok(true),
        ValueRef::Real(f) => err(format!("real {f:?} is not a boolean")),
        ValueRef::Text(b) => std::str::from_utf8(b)
            .ok()
            .and_then(parse_bool_text)
            .ok_or_else(|| {
                ConvertError(format!(
                    "text {:?} is not a boolean spelling",
                    clip(&String::from_utf8_lossy(b))
                ))
            }),
        ValueRef::Blob(_) => err("blob is not a boolean"),
        ValueRef::Null => err("NULL"),
    }
}

fn to_i64(v: ValueRef<'_>) -> Result<i64, ConvertError> {
    match v {
        ValueRef::Integer(i) => Ok(i),
        ValueRef::Real(f) => {
            if f.fract() == 0.0
                && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f)
            {
                Ok(f as i64)
            } else {
                err(format!("real {f:?} is not an integer"))
            }
        }
        ValueRef::Text(b) => {
            let s = std::str::from_utf8(b).unwrap_or("");
            match s.parse::<i64>() {
                Ok(i) if i.to_string() == s => Ok(i),
                _ => err(format!(
                    "text {:?} is not an integer",
                    clip(&String::from_utf8_lossy(b))
                )),
            }
        }
        ValueRef::Blob(_) => err("blob is not an integer"),
        ValueRef::Null => err("NULL"),
    }
}

fn to_f64(v: ValueRef<'_>) -> Result<f64, ConvertError> {
    match v {
        ValueRef::Real(f) => Ok(f),
        ValueRef::Integer(i) => {
            let f = i as f64;
            if f as i128 == i as i128 {
                Ok(f)
            } else {
                err(format!("integer {i} has no exact double precision value"))
            }
        }
        ValueRef::Text(b) => {
            let s = std::str::from_utf8(b).unwrap_or("");
            match s.trim().parse::<f64>() {
                Ok(f) if !f.is_nan() && is_decimal_syntax(s.trim()) => Ok(f),
                _ => err(format!(
                    "text {:?} is not a number",
                    clip(&String::from_utf8_lossy(b))
                )),
            }
        }
        ValueRef::Blob(_) => err("blob is not a number"),
        ValueRef::Null => err("NULL"),
    }
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

fn to_time(v: ValueRef<'_>) -> Result<i64, ConvertError> {
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
    pub unix_us: i64,
    pub offset_s: Option<i64>,
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
pub fn days_from_civil(y: i64, m: i64, d: i64) -> Option<i64> {
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 {
                29
            } else {
                28
            }
        }
    }
}

/// (year, month, day) of days since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
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
// numeric

fn is_decimal_syntax(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let ds = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let mut nd = i - ds;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let fs = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        nd += i - fs;
    }
    if nd == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let es = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == es || i - es > 4 {
            return false;
        }
    }
    i == b.len()
}

/// A decimal number as sign, integer digits, fraction digits (no exponent), or ±Infinity.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decimal {
    Finite {
        neg: bool,
        int: String,
        frac: String,
    },
    Inf(bool),
}

fn to_decimal(v: ValueRef<'_>) -> Result<Decimal, ConvertError> {
    let text = match v {
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) if f.is_infinite() => return Ok(Decimal::Inf(f < 0.0)),
        ValueRef::Real(f) => format!("{f}"),
        ValueRef::Text(b) => {
            let s = std::str::from_utf8(b).unwrap_or("").trim().to_string();
            if !is_decimal_syntax(&s) {
                return err(format!("text {:?} is not a decimal number", clip(&s)));
            }
            s
        }
        ValueRef::Blob(_) => return err("blob is not a number"),
        ValueRef::Null => return err("NULL"),
    };
    Ok(parse_decimal(&text))
}

/// Parse validated decimal syntax into normalized parts (exponent applied).
fn parse_decimal(s: &str) -> Decimal {
    let (neg, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (mant, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], s[i + 1..].parse::<i64>().unwrap_or(0)),
        None => (s, 0),
    };
    let (ip, fp) = match mant.find('.') {
        Some(i) => (&mant[..i], &mant[i + 1..]),
        None => (mant, ""),
    };
    let mut digits: String = format!("{ip}{fp}");
    let mut point = ip.len() as i64 + exp;
    if point < 0 {
        digits = "0".repeat((-point) as usize) + &digits;
        point = 0;
    }
    if point as usize > digits.len() {
        digits.push_str(&"0".repeat(point as usize - digits.len()));
    }
    let (i, f) = digits.split_at(point as usize);
    let int = i.trim_start_matches('0').to_string();
    let frac = f.trim_end_matches('0').to_string();
    let neg = neg && !(int.is_empty() && frac.is_empty());
    Decimal::Finite { neg, int, frac }
}

fn encode_numeric(d: &Decimal, out: &mut Vec<u8>) {
    let (neg, int, frac) = match d {
        Decimal::Inf(neg) => {
            out.extend_from_slice(&0i16.to_be_bytes());
            out.extend_from_slice(&0i16.to_be_bytes());
            out.extend_from_slice(&(if *neg { 0xF000u16 } else { 0xD000u16 }).to_be_bytes());
            out.extend_from_slice(&0u16.to_be_bytes());
            return;
        }
        Decimal::Finite { neg, int, frac } => (*neg, int, frac),
    };
    let ipad = (4 - int.len() % 4) % 4;
    let fpad = (4 - frac.len() % 4) % 4;
    let idigits = format!("{}{}", "0".repeat(ipad), int);
    let fdigits = format!("{}{}", frac, "0".repeat(fpad));
    let mut groups: Vec<i16> = idigits
        .as_bytes()
        .chunks(4)
        .chain(fdigits.as_bytes().chunks(4))
        .map(|c| c.iter().fold(0i16, |a, d| a * 10 + (d - b'0') as i16))
        .collect();
    let mut weight = (idigits.len() / 4) as i16 - 1;
    while groups.first() == Some(&0) {
        groups.remove(0);
        weight -= 1;
    }
    while groups.last() == Some(&0) {
        groups.pop();
    }
    if groups.is_empty() {
        weight = 0;
    }
    out.extend_from_slice(&(groups.len() as i16).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&(if neg { 0x4000u16 } else { 0 }).to_be_bytes());
    out.extend_from_slice(&(frac.len() as u16).to_be_bytes());
    for g in groups {
        out.extend_from_slice(&g.to_be_bytes());
    }
}

/// Decode PostgreSQL numeric binary into normalized decimal text.
fn decode_numeric(b: &[u8]) -> Option<String> {
    let rd = |i: usize| -> Option<u16> { Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?])) };
    let n = rd(0)? as usize;
    let weight = rd(2)? as i16 as i64;
    let sign = rd(4)?;
    match sign {
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        0xC000 => return Some("NaN".into()),
        _ => {}
    }
    let mut int = String::new();
    let mut frac = String::new();
    for k in 0..n {
        let g = rd(8 + 2 * k)?;
        let pos = weight - k as i64;
        if pos >= 0 {
            let _ = write!(int, "{g:04}");
        } else {
            if frac.is_empty() {
                frac.push_str(&"0000".repeat((-pos - 1) as usize));
            }
            let _ = write!(frac, "{g:04}");
        }
    }
    if weight >= n as i64 {
        int.push_str(&"0000".repeat((weight + 1 - n as i64) as usize));
    }
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let mut s = String::new();
    if sign == 0x4000 && !(int.is_empty() && frac.is_empty()) {
        s.push('-');
    }
    s.push_str(if int.is_empty() { "0" } else { int });
    if !frac.is_empty() {
        s.push('.');
        s.push_str(frac);
    }
    Some(s)
}

// ---------------------------------------------------------------------------------------
// Canonical encoding and display

/// Append the canonical, type-tagged encoding of one binary COPY field (`None` = NULL) to
/// `out`. Identical for the converted SQLite value and the value read back from PostgreSQL.
pub fn canon_field(ty: PgType, field: Option<&[u8]>, out: &mut Vec<u8>) {
    let Some(b) = field else {
        out.push(0xFF);
        return;
    };
    out.push(ty.tag());
    match ty {
        PgType::Integer if b.len() == 4 => {
            let v = i32::from_be_bytes([b[0], b[1], b[2], b[3]]) as i64;
            out.extend_from_slice(&8u32.to_be_bytes());
            out.extend_from_slice(&v.to_be_bytes());
        }
        PgType::Numeric => {
            let s = decode_numeric(b).unwrap_or_default();
            out.extend_from_slice(&(s.len() as u32).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        _ => {
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(b);
        }
    }
}

/// Human-readable rendering of one binary COPY field of type `ty`, for reports.
pub fn display_field(ty: PgType, field: Option<&[u8]>) -> String {
    let Some(b) = field else {
        return "NULL".into();
    };
    let i64_of = |b: &[u8]| -> i64 {
        let mut a = [0u8; 8];
        let n = b.len().min(8);
        a[8 - n..].copy_from_slice(&b[..n]);
        i64::from_be_bytes(a)
    };
    match ty {
        PgType::Boolean => (b.first() == Some(&1)).to_string(),
        PgType::Integer => (i64_of(b) as i32).to_string(),
        PgType::Bigint => i64_of(b).to_string(),
        PgType::Double => format!("{:?}", f64::from_bits(i64_of(b) as u64)),
        PgType::Numeric => decode_numeric(b).unwrap_or_else(|| "?".into()),
        PgType::Text | PgType::Varchar(_) | PgType::Json => {
            format!("{:?}", clip(&String::from_utf8_lossy(b)))
        }
        PgType::Bytea => display_bytes(b),
        PgType::Timestamp | PgType::Timestamptz => {
            let us = i64_of(b) + PG_EPOCH_US;
            let (y, m, d) = civil_from_days(us.div_euclid(DAY_US));
            let t = us.rem_euclid(DAY_US);
            let (h, mi, s, f) = (
                t / 3_600_000_000,
                t / 60_000_000 % 60,
                t / 1_000_000 % 60,
                t % 1_000_000,
            );
            let z = if ty == PgType::Timestamptz { "Z" } else { "" };
            format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}.{f:06}{z}")
        }
        PgType::Date => {
            let (y, m, d) = civil_from_days(i64_of(b) as i32 as i64 + PG_EPOCH_DAYS);
            format!("{y:04}-{m:02}-{d:02}")
        }
        PgType::Time => {
            let t = i64_of(b);
            format!(
                "{:02}:{:02}:{:02}.{:06}",
                t / 3_600_000_000,
                t / 60_000_000 % 60,
                t / 1_000_000 % 60,
                t % 1_000_000
            )
        }
    }
}

/// `\x…` hex of bytes, clipped.
pub fn display_bytes(b: &[u8]) -> String {
    let mut s = String::from("\\x");
    for x in b.iter().take(32) {
        let _ = write!(s, "{x:02x}");
    }
    if b.len() > 32 {
        let _ = write!(s, "… ({} bytes)", b.len());
    }
    s
}

/// Human-readable rendering of a raw SQLite value (for quarantine and reports).
pub fn display_sqlite(v: &ValueRef<'_>) -> String {
    match v {
        ValueRef::Null => "NULL".into(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => format!("{f:?}"),
        ValueRef::Text(b) => match std::str::from_utf8(b) {
            Ok(s) => format!("{:?}", clip(s)),
            Err(_) => format!("text(invalid UTF-8) {}", display_bytes(b)),
        },
        ValueRef::Blob(b) => format!("blob {}", display_bytes(b)),
    }
}

/// Raw bytes of a SQLite value as stored (text/blob bytes; numbers as their text).
pub fn raw_bytes(v: &ValueRef<'_>) -> Option<Vec<u8>> {
    match v {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string().into_bytes()),
        ValueRef::Real(f) => Some(format!("{f:?}").into_bytes()),
        ValueRef::Text(b) | ValueRef::Blob(b) => Some(b.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(t: PgType) -> Conversion {
        Conversion {
            pg_type: t,
            not_null: false,
            epoch_unit: None,
            strip_nul: false,
            lossy_utf8: false,
        }
    }

    fn field(t: PgType, v: ValueRef<'_>) -> Result<Vec<u8>, ConvertError> {
        let mut out = Vec::new();
        conv(t).encode(v, &mut out)?;
        Ok(out[4..].to_vec())
    }

    #[test]
    fn dates_in_several_formats() {
        let base = days_from_civil(2025, 7, 1).unwrap() * DAY_US;
        let h10 = base + 10 * 3_600_000_000;
        for (s, us, off) in [
            ("2025-07-01", base, None),
            ("2025-07-01 10:00", h10, None),
            ("2025-07-01T10:00:00", h10, None),
            ("2025-07-01 10:00:00.000000", h10, None),
            ("2025-07-01T10:00:00Z", h10, Some(0)),
            ("2025-07-01T12:00:00+02:00", h10 + 7_200_000_000, Some(7200)),
            ("2025-07-01 12:00:00+0200", h10 + 7_200_000_000, Some(7200)),
            ("2025/07/01 10:00:00", h10, None),
            ("Tue, 01 Jul 2025 10:00:00 +0000", h10, Some(0)),
            ("01 Jul 2025 10:00:00 GMT", h10, Some(0)),
        ] {
            let p = parse_datetime(s).unwrap_or_else(|| panic!("{s}"));
            assert_eq!((p.unix_us, p.offset_s), (us, off), "{s}");
        }
        for bad in [
            "2025-02-30",
            "yesterday",
            "2025-07-01 25:00",
            "2025-07-01 10:00 junk",
        ] {
            assert!(parse_datetime(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn civil_round_trip() {
        for d in [-800_000, -1, 0, 1, 10_957, 20_000, 2_900_000] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), Some(d));
        }
    }

    #[test]
    fn epochs_by_magnitude() {
        let s = field(PgType::Timestamptz, ValueRef::Integer(1_700_000_000)).unwrap();
        let ms = field(PgType::Timestamptz, ValueRef::Integer(1_700_000_000_000)).unwrap();
        let us = field(
            PgType::Timestamptz,
            ValueRef::Integer(1_700_000_000_000_000),
        )
        .unwrap();
        assert_eq!(s, ms);
        assert_eq!(s, us);
        assert_eq!(
            display_field(PgType::Timestamptz, Some(&s)),
            "2023-11-14 22:13:20.000000Z"
        );
    }

    #[test]
    fn booleans() {
        for (v, b) in [
            (ValueRef::Integer(0), 0u8),
            (ValueRef::Integer(1), 1),
            (ValueRef::Text(b"t"), 1),
            (ValueRef::Text(b"false"), 0),
            (ValueRef::Text(b"TRUE"), 1),
        ] {
            assert_eq!(field(PgType::Boolean, v).unwrap(), vec![b]);
        }
        assert!(field(PgType::Boolean, ValueRef::Integer(2)).is_err());
        assert!(field(PgType::Boolean, ValueRef::Text(b"maybe")).is_err());
    }

    #[test]
    fn text_rejects_nul_and_bad_utf8_unless_told() {
        assert!(field(PgType::Text, ValueRef::Text(b"a\0b")).is_err());
        assert!(field(PgType::Text, ValueRef::Text(b"a\xffb")).is_err());
        let mut c = conv(PgType::Text);
        c.strip_nul = true;
        let mut out = Vec::new();
        c.encode(ValueRef::Text(b"a\0b"), &mut out).unwrap();
        assert_eq!(&out[4..], b"ab");
    }

    #[test]
    fn numeric_round_trip() {
        for (s, want) in [
            ("0", "0"),
            ("-0.0", "0"),
            ("123.4500", "123.45"),
            ("1e5", "100000"),
            ("-0.000012", "-0.000012"),
            ("12345678.9", "12345678.9"),
            ("1.5E-3", "0.0015"),
        ] {
            let mut out = Vec::new();
            encode_numeric(&parse_decimal(s), &mut out);
            assert_eq!(decode_numeric(&out).unwrap(), want, "{s}");
        }
    }

    #[test]
    fn canonical_integer_widths_agree() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        canon_field(PgType::Integer, Some(&7i32.to_be_bytes()), &mut a);
        canon_field(PgType::Bigint, Some(&7i64.to_be_bytes()), &mut b);
        assert_eq!(a, b);
    }
}
