//! The legacy's own storage format, learned from the SQLite file, and PostgreSQL values turned
//! back into it — the reverse of the plan's conversion, for `migrate rollback` (and, for
//! `updated_at`, the watermark queries of `migrate watch`).
//!
//! What the legacy stores is read from the plan's profile of each column and, for date/time
//! text, from a sample of the stored values: booleans as `0`/`1` or as the text spellings the
//! column holds (`'t'`/`'f'`, `'true'`/`'false'` ...); date/times as text in the shape the column
//! uses (separator, fraction digits, zone suffix — SQLAlchemy's `2025-01-01 10:00:00.000000`),
//! as integer epochs in the unit found, or as Julian day reals; everything else by its type.
//!
//! A value is only written back if it round-trips: passed through the plan's conversion again,
//! it must give the canonical bytes PostgreSQL holds ([`LegacyStyle::value`]). Where several
//! SQLite spellings are possible (numeric: integer, real, text) the first that round-trips wins.

use rusqlite::types::{Value, ValueRef};
use rusqlite::Connection;

use crate::convert::{
    canon_field, date_text, hms, split_us, utc_text, EpochUnit, PgType, PG_EPOCH_DAYS, PG_EPOCH_US,
};
use crate::error::{Result, SqliteContext};
use crate::introspect::quote_sqlite;
use crate::plan::TablePlan;
use crate::profile::ColumnProfile;
use crate::source::{KeyValue, ReadKey};

/// Date/time text values sampled per column to learn their shape.
const SAMPLES: usize = 200;

/// How the legacy stores one column.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnStyle {
    /// By its type: integers, reals, text, blobs.
    Plain,
    /// Booleans as integers 0/1.
    BoolInt,
    /// Booleans as these texts (true, false).
    BoolText(String, String),
    /// Date/time as text of this shape (UTC).
    TimeText(TextShape),
    /// Date/time as an integer epoch in this unit.
    TimeEpoch(EpochUnit),
    /// Date/time as a real Julian day number (SQLite's `julianday()`).
    TimeJulian,
}

/// The shape of date/time text: `YYYY-MM-DD{sep}HH:MM:SS[.fraction]{zone}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextShape {
    /// `' '` or `'T'`.
    pub sep: char,
    /// Fraction digits always written (0: none).
    pub digits: u8,
    /// Fraction digits only when the fraction is not zero (else always `digits`).
    pub trim_zero: bool,
    /// What follows the time: `""`, `"Z"`, `"+00:00"`, `"+0000"`, `" UTC"`.
    pub zone: String,
}

impl Default for TextShape {
    /// SQLAlchemy's form: `2025-01-01 10:00:00.000000`.
    fn default() -> Self {
        TextShape {
            sep: ' ',
            digits: 6,
            trim_zero: false,
            zone: String::new(),
        }
    }
}

impl TextShape {
    /// Learn the shape from stored texts (those that do not look like ISO date/times are
    /// ignored); None if none does.
    pub fn learn<'a>(samples: impl IntoIterator<Item = &'a str>) -> Option<TextShape> {
        let mut seps = [0u32; 2];
        let mut digit_counts = std::collections::BTreeMap::<u8, u32>::new();
        let mut zones = std::collections::BTreeMap::<String, u32>::new();
        for s in samples {
            let b = s.as_bytes();
            if b.len() < 19
                || b[4] != b'-'
                || b[7] != b'-'
                || b[13] != b':'
                || b[16] != b':'
                || !(b[10] == b' ' || b[10] == b'T')
            {
                continue;
            }
            seps[usize::from(b[10] == b'T')] += 1;
            let mut i = 19;
            let mut digits = 0u8;
            if b.get(i) == Some(&b'.') {
                i += 1;
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    digits = digits.saturating_add(1);
                    i += 1;
                }
            }
            *digit_counts.entry(digits.min(9)).or_default() += 1;
            let zone = match &s[i..] {
                "" => "",
                "Z" | "z" => "Z",
                " UTC" | " GMT" => " UTC",
                z if z.len() == 6 && z.as_bytes()[3] == b':' => "+00:00",
                z if z.len() == 5 => "+0000",
                _ => "+00:00",
            };
            *zones.entry(zone.to_string()).or_default() += 1;
        }
        if seps == [0, 0] {
            return None;
        }
        let zone = zones
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(z, _)| z)
            .unwrap_or_default();
        let (digits, trim_zero) = if digit_counts.len() == 1 {
            (digit_counts.keys().next().copied().unwrap_or(6), false)
        } else {
            // Mixed: as many digits as the longest, none when the fraction is zero (the way
            // `str(datetime)` and pydantic print).
            (digit_counts.keys().last().copied().unwrap_or(6), true)
        };
        Some(TextShape {
            sep: if seps[1] > seps[0] { 'T' } else { ' ' },
            digits: digits.min(6),
            trim_zero,
            zone,
        })
    }

    /// `unix_us` (UTC) in this shape. More digits than the shape's are written when the
    /// fraction needs them: nothing is rounded away.
    pub fn format(&self, unix_us: i64) -> String {
        let (date, t) = split_us(unix_us);
        let frac = t % 1_000_000;
        let mut s = format!("{date}{}{}", self.sep, hms(t));
        let mut digits = if self.trim_zero && frac == 0 {
            0
        } else {
            self.digits as u32
        };
        while digits < 6 && frac % 10i64.pow(6 - digits) != 0 {
            digits += 1;
        }
        if digits > 0 {
            let f = format!("{frac:06}");
            s.push('.');
            s.push_str(&f[..digits as usize]);
        }
        s.push_str(&self.zone);
        s
    }
}

/// How the legacy stores each column of one table (plan column order).
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyStyle {
    pub columns: Vec<ColumnStyle>,
}

impl LegacyStyle {
    /// Learn from the plan's profile and, for date/time text, a sample of the newest values.
    pub fn learn(conn: &Connection, table: &TablePlan) -> Result<LegacyStyle> {
        let mut columns = Vec::with_capacity(table.columns.len());
        for c in &table.columns {
            let p = &c.profile;
            let style = match c.conversion.pg_type {
                PgType::Boolean => bool_style(p),
                PgType::Timestamp | PgType::Timestamptz => {
                    let texts = p.texts;
                    let numbers = p.integers + p.reals;
                    if numbers > texts {
                        if p.reals > p.integers {
                            if p.epochs.get("julian-day").copied().unwrap_or(0)
                                >= p.epochs.get("real-epoch").copied().unwrap_or(0)
                            {
                                ColumnStyle::TimeJulian
                            } else {
                                ColumnStyle::TimeEpoch(EpochUnit::S)
                            }
                        } else {
                            let unit = c.conversion.epoch_unit.unwrap_or_else(|| {
                                let n = |k: &str| p.epochs.get(k).copied().unwrap_or(0);
                                [
                                    (EpochUnit::S, n("s")),
                                    (EpochUnit::Ms, n("ms")),
                                    (EpochUnit::Us, n("us")),
                                    (EpochUnit::Ns, n("ns")),
                                ]
                                .into_iter()
                                .max_by_key(|(_, n)| *n)
                                .map_or(EpochUnit::S, |(u, _)| u)
                            });
                            ColumnStyle::TimeEpoch(unit)
                        }
                    } else {
                        let samples = sample_texts(conn, table, &c.name)?;
                        ColumnStyle::TimeText(
                            TextShape::learn(samples.iter().map(String::as_str))
                                .unwrap_or_default(),
                        )
                    }
                }
                _ => ColumnStyle::Plain,
            };
            columns.push(style);
        }
        Ok(LegacyStyle { columns })
    }

    /// The SQLite value for column `col` holding the canonical PostgreSQL value `canon`
    /// ([`crate::rows::CanonRow::column`]), checked to round-trip through the plan's
    /// conversion. Err: why it cannot be written back faithfully.
    pub fn value(
        &self,
        table: &TablePlan,
        col: usize,
        canon: &[u8],
    ) -> std::result::Result<Value, String> {
        let c = &table.columns[col];
        let ty = c.conversion.pg_type;
        let Some(body) = canon_body(canon) else {
            return Ok(Value::Null);
        };
        let style = self.columns.get(col).unwrap_or(&ColumnStyle::Plain);
        let candidates = candidates(ty, style, body)?;
        let mut scratch = Vec::new();
        let mut again = Vec::new();
        for v in candidates {
            scratch.clear();
            if c.conversion
                .encode(ValueRef::from(&v), &mut scratch)
                .is_err()
            {
                continue;
            }
            again.clear();
            let field = if scratch[..4] == [0xff, 0xff, 0xff, 0xff] {
                None
            } else {
                Some(&scratch[4..])
            };
            canon_field(ty, field, &mut again);
            if again == canon {
                return Ok(v);
            }
        }
        Err(format!(
            "no SQLite value of this column converts back to the PostgreSQL {} value",
            ty.sql()
        ))
    }

    /// The condition and parameter selecting rows whose date/time column `col` (named `name`)
    /// is at or after `unix_us`, in the legacy's storage form; None when the column's values
    /// cannot be compared in SQL (mixed storage classes).
    pub fn since_condition(
        &self,
        table: &TablePlan,
        col: usize,
        unix_us: i64,
    ) -> Option<(String, KeyValue)> {
        let c = &table.columns[col];
        let p = &c.profile;
        let name = quote_sqlite(&c.name);
        let classes = [p.integers, p.reals, p.texts, p.blobs]
            .iter()
            .filter(|n| **n > 0)
            .count();
        if classes > 1 {
            return None;
        }
        match self.columns.get(col)? {
            // julianday() reads every ISO shape (space or T, any fraction, Z or ±HH:MM).
            ColumnStyle::TimeText(_) => Some((
                format!("julianday({name}) >= julianday(?1)"),
                KeyValue::Text(utc_text(unix_us).into_bytes()),
            )),
            ColumnStyle::TimeEpoch(u) => {
                let v = match u {
                    EpochUnit::S => unix_us.div_euclid(1_000_000),
                    EpochUnit::Ms => unix_us.div_euclid(1_000),
                    EpochUnit::Us => unix_us,
                    EpochUnit::Ns => unix_us.saturating_mul(1_000),
                };
                Some((format!("{name} >= ?1"), KeyValue::Int(v)))
            }
            ColumnStyle::TimeJulian => Some((
                format!("{name} >= ?1"),
                KeyValue::Real(unix_us as f64 / 86_400e6 + 2_440_587.5),
            )),
            _ => None,
        }
    }
}

/// The body of a canonical column (None for NULL).
pub fn canon_body(c: &[u8]) -> Option<&[u8]> {
    if c.first() == Some(&0xFF) || c.len() < 5 {
        None
    } else {
        Some(&c[5..])
    }
}

/// Microseconds since 1970 of a canonical timestamp column.
pub fn canon_unix_us(c: &[u8]) -> Option<i64> {
    let b = canon_body(c)?;
    let a: [u8; 8] = b.get(..8)?.try_into().ok()?;
    Some(i64::from_be_bytes(a) + PG_EPOCH_US)
}

fn bool_style(p: &ColumnProfile) -> ColumnStyle {
    let mut ints = 0u64;
    let mut texts: Vec<(String, u64)> = Vec::new();
    for (k, n) in &p.spellings {
        if k.starts_with('"') {
            if let Ok(s) = serde_json::from_str::<String>(k) {
                texts.push((s, *n));
            }
        } else {
            ints += n;
        }
    }
    let text_total: u64 = texts.iter().map(|(_, n)| n).sum();
    if text_total <= ints {
        return ColumnStyle::BoolInt;
    }
    texts.sort_by_key(|t| std::cmp::Reverse(t.1));
    let pick = |want: bool| {
        texts
            .iter()
            .find(|(s, _)| crate::convert::parse_bool_text(s) == Some(want))
            .map(|(s, _)| s.clone())
    };
    let partner = |s: &str, want: bool| -> String {
        let pairs = [
            ("t", "f"),
            ("true", "false"),
            ("y", "n"),
            ("yes", "no"),
            ("on", "off"),
            ("1", "0"),
        ];
        let lower = s.to_ascii_lowercase();
        let upper = s.chars().all(|c| !c.is_ascii_lowercase()) && s.len() > 1;
        let cap = s.chars().next().is_some_and(|c| c.is_ascii_uppercase()) && !upper;
        for (t, f) in pairs {
            let (from, to) = if want { (f, t) } else { (t, f) };
            if lower == from {
                return if upper {
                    to.to_ascii_uppercase()
                } else if cap {
                    let mut c = to.chars();
                    c.next()
                        .map(|h| h.to_ascii_uppercase().to_string() + c.as_str())
                        .unwrap_or_default()
                } else {
                    to.to_string()
                };
            }
        }
        if want { "true" } else { "false" }.to_string()
    };
    match (pick(true), pick(false)) {
        (Some(t), Some(f)) => ColumnStyle::BoolText(t, f),
        (Some(t), None) => {
            let f = partner(&t, false);
            ColumnStyle::BoolText(t, f)
        }
        (None, Some(f)) => {
            let t = partner(&f, true);
            ColumnStyle::BoolText(t, f)
        }
        (None, None) => ColumnStyle::BoolInt,
    }
}

fn sample_texts(conn: &Connection, table: &TablePlan, column: &str) -> Result<Vec<String>> {
    let order = match &table.read_key {
        ReadKey::Rowid(r) => format!(" ORDER BY {r} DESC"),
        ReadKey::Pk(_) => String::new(),
    };
    let col = quote_sqlite(column);
    let sql = format!(
        "SELECT {col} FROM {} WHERE typeof({col}) = 'text'{order} LIMIT {SAMPLES}",
        quote_sqlite(&table.source_name)
    );
    let mut st = conn.prepare(&sql).table(&table.source_name)?;
    let rows = st
        .query_map([], |r| r.get::<_, String>(0))
        .table(&table.source_name)?;
    let mut out = Vec::new();
    // Invalid UTF-8 samples tell nothing about the shape.
    out.extend(rows.flatten());
    Ok(out)
}

fn be_i64(b: &[u8]) -> std::result::Result<i64, String> {
    let a: [u8; 8] = b
        .get(..8)
        .and_then(|s| s.try_into().ok())
        .ok_or("truncated value")?;
    Ok(i64::from_be_bytes(a))
}

/// SQLite values that may hold `body` (a PostgreSQL binary value of type `ty`), best first.
fn candidates(
    ty: PgType,
    style: &ColumnStyle,
    body: &[u8],
) -> std::result::Result<Vec<Value>, String> {
    let text = |b: &[u8]| {
        std::str::from_utf8(b)
            .map(|s| Value::Text(s.to_string()))
            .map_err(|_| "text is not valid UTF-8".to_string())
    };
    Ok(match ty {
        PgType::Boolean => {
            let b = body.first().copied().unwrap_or(0) != 0;
            match style {
                ColumnStyle::BoolText(t, f) => vec![
                    Value::Text(if b { t.clone() } else { f.clone() }),
                    Value::Integer(i64::from(b)),
                ],
                _ => vec![Value::Integer(i64::from(b))],
            }
        }
        PgType::Smallint | PgType::Integer | PgType::Bigint => {
            vec![Value::Integer(be_i64(body)?)]
        }
        PgType::Double => vec![Value::Real(f64::from_bits(be_i64(body)? as u64))],
        PgType::Numeric | PgType::Decimal(..) => {
            let s = std::str::from_utf8(body)
                .map_err(|_| "numeric is not text".to_string())?
                .to_string();
            let mut v = Vec::new();
            if let Ok(i) = s.parse::<i64>() {
                v.push(Value::Integer(i));
            }
            if let Ok(f) = s.parse::<f64>() {
                v.push(Value::Real(f));
            }
            v.push(Value::Text(s));
            v
        }
        PgType::Text | PgType::Varchar(_) | PgType::Json => vec![text(body)?],
        PgType::Bytea => vec![Value::Blob(body.to_vec())],
        PgType::Timestamp | PgType::Timestamptz => {
            let us = be_i64(body)? + PG_EPOCH_US;
            let iso = TextShape::default().format(us);
            match style {
                ColumnStyle::TimeText(shape) => {
                    vec![Value::Text(shape.format(us)), Value::Text(iso)]
                }
                ColumnStyle::TimeEpoch(unit) => {
                    let mut v = Vec::new();
                    let exact = match unit {
                        EpochUnit::S => (us % 1_000_000 == 0).then_some(us / 1_000_000),
                        EpochUnit::Ms => (us % 1_000 == 0).then_some(us / 1_000),
                        EpochUnit::Us => Some(us),
                        EpochUnit::Ns => us.checked_mul(1_000),
                    };
                    if let Some(e) = exact {
                        v.push(Value::Integer(e));
                    }
                    v.push(Value::Text(iso));
                    v
                }
                ColumnStyle::TimeJulian => vec![
                    Value::Real(us as f64 / 86_400e6 + 2_440_587.5),
                    Value::Text(iso),
                ],
                _ => vec![Value::Text(iso)],
            }
        }
        PgType::Date => {
            let days = i64::from(i32::from_be_bytes(
                body.get(..4)
                    .and_then(|s| s.try_into().ok())
                    .ok_or("truncated date")?,
            ));
            vec![Value::Text(date_text(days + PG_EPOCH_DAYS))]
        }
        PgType::Time => {
            let t = be_i64(body)?;
            let frac = t % 1_000_000;
            let mut s = hms(t);
            if frac != 0 {
                s.push_str(&format!(".{frac:06}"));
            }
            vec![Value::Text(s)]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_are_learned_and_kept() {
        let us = 1_735_725_600_000_000; // 2025-01-01 10:00:00 UTC
        let sqla =
            TextShape::learn(["2025-01-01 10:00:00.000000", "2025-01-02 11:00:00.250000"]).unwrap();
        assert_eq!(sqla, TextShape::default());
        assert_eq!(sqla.format(us), "2025-01-01 10:00:00.000000");
        let plain = TextShape::learn(["2025-01-01 10:00:00", "2025-01-01 10:00:01"]).unwrap();
        assert_eq!(plain.format(us), "2025-01-01 10:00:00");
        // A fraction the shape has no digits for is written anyway: nothing is lost.
        assert_eq!(plain.format(us + 1_500), "2025-01-01 10:00:00.0015");
        let iso = TextShape::learn(["2025-01-01T10:00:00Z", "2025-01-01T10:00:00.5Z"]).unwrap();
        assert_eq!(iso.format(us), "2025-01-01T10:00:00Z");
        assert_eq!(iso.format(us + 500_000), "2025-01-01T10:00:00.5Z");
        let off = TextShape::learn(["2025-01-01T12:00:00+02:00"]).unwrap();
        assert_eq!(off.format(us), "2025-01-01T10:00:00+00:00");
        assert!(TextShape::learn(["yesterday"]).is_none());
    }

    #[test]
    fn boolean_spellings() {
        let mut p = ColumnProfile::default();
        p.spellings.insert("0".into(), 5);
        p.spellings.insert("1".into(), 5);
        assert_eq!(bool_style(&p), ColumnStyle::BoolInt);
        let mut p = ColumnProfile::default();
        p.spellings.insert("\"t\"".into(), 7);
        p.spellings.insert("1".into(), 1);
        assert_eq!(
            bool_style(&p),
            ColumnStyle::BoolText("t".into(), "f".into())
        );
        let mut p = ColumnProfile::default();
        p.spellings.insert("\"FALSE\"".into(), 7);
        p.spellings.insert("\"TRUE\"".into(), 2);
        assert_eq!(
            bool_style(&p),
            ColumnStyle::BoolText("TRUE".into(), "FALSE".into())
        );
    }
}
