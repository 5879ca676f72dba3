//! A SQLite value → one PostgreSQL binary COPY field ([`Conversion::encode`]): the dispatch by
//! target type, and the conversions of booleans, integers, doubles, text, JSON and bytea.
//! Date/time values are converted in [`super::datetime`], numerics in [`super::numeric`].

use std::fmt::Write as _;

use rusqlite::types::ValueRef;

use super::canon::display_sqlite;
use super::datetime::{to_date, to_time, to_timestamp};
use super::numeric::{decimal_digits, encode_numeric, is_decimal_syntax, to_decimal};
use super::types::{clip, err, Conversion, ConvertError, PgType};

impl Conversion {
    /// Convert `v` and append it as one binary COPY field (length + bytes, or -1 for NULL) to
    /// `out`. On error `out` may hold a partial field: the caller truncates to the row start.
    pub fn encode(&self, v: ValueRef<'_>, out: &mut Vec<u8>) -> Result<(), ConvertError> {
        let empty = matches!(v, ValueRef::Text(b) if b.is_empty());
        if self.empty_as_null && empty {
            if self.not_null {
                return err("empty string (NULL by empty_string = \"null\") in a NOT NULL / PRIMARY KEY column");
            }
            out.extend_from_slice(&(-1i32).to_be_bytes());
            return Ok(());
        }
        if empty && !self.pg_type.is_text_like() && self.pg_type != PgType::Bytea {
            return err(format!(
                "empty string in a {} column (empty_string = \"null\" in migration.toml loads it as NULL)",
                self.pg_type.sql()
            ));
        }
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
            PgType::Smallint => {
                let i = to_i64(v)?;
                let i: i16 = i
                    .try_into()
                    .map_err(|_| ConvertError(format!("{i} is out of range for smallint")))?;
                out.extend_from_slice(&i.to_be_bytes());
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
            PgType::Decimal(p, s) => {
                let d = to_decimal(v)?;
                let (int, frac) = decimal_digits(&d);
                if int + s as usize > p as usize || frac > s as usize {
                    return err(format!(
                        "{} does not fit numeric({p},{s})",
                        clip(&display_sqlite(&v))
                    ));
                }
                encode_numeric(&d, out)
            }
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
                out.extend_from_slice(&to_timestamp(v, self.epoch_unit)?.to_be_bytes())
            }
            PgType::Date => out.extend_from_slice(&to_date(v, self.epoch_unit)?.to_be_bytes()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::display_field;

    fn conv(t: PgType) -> Conversion {
        Conversion {
            pg_type: t,
            not_null: false,
            epoch_unit: None,
            strip_nul: false,
            lossy_utf8: false,
            empty_as_null: false,
        }
    }

    fn field(t: PgType, v: ValueRef<'_>) -> Result<Vec<u8>, ConvertError> {
        let mut out = Vec::new();
        conv(t).encode(v, &mut out)?;
        Ok(out[4..].to_vec())
    }

    #[test]
    fn declared_widths_and_precision() {
        assert_eq!(
            PgType::parse("numeric(10, 2)"),
            Some(PgType::Decimal(10, 2))
        );
        assert_eq!(PgType::parse("smallint"), Some(PgType::Smallint));
        assert_eq!(PgType::Decimal(5, 2).sql(), "numeric(5,2)");
        let d = PgType::Decimal(5, 2);
        assert!(field(d, ValueRef::Real(999.99)).is_ok());
        assert!(field(d, ValueRef::Integer(1000)).is_err());
        assert!(field(d, ValueRef::Real(0.125)).is_err());
        assert!(field(PgType::Smallint, ValueRef::Integer(40_000)).is_err());
        assert_eq!(
            field(PgType::Smallint, ValueRef::Integer(-2)).unwrap(),
            (-2i16).to_be_bytes()
        );
        let mut empty = conv(PgType::Double);
        assert!(field(PgType::Double, ValueRef::Text(b"")).is_err());
        empty.empty_as_null = true;
        let mut out = Vec::new();
        empty.encode(ValueRef::Text(b""), &mut out).unwrap();
        assert_eq!(out, (-1i32).to_be_bytes());
        assert_eq!(field(PgType::Text, ValueRef::Text(b"")).unwrap(), b"");
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
}
