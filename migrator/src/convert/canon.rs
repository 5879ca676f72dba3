//! The canonical, type-tagged encoding of a binary COPY field ([`canon_field`]: identical for
//! a converted SQLite value and the value PostgreSQL sends back), and how values are shown to
//! people in reports ([`display_field`], [`display_sqlite`], [`display_bytes`]).

use std::fmt::Write as _;

use rusqlite::types::ValueRef;

use super::datetime::{date_text, time_text, utc_text, PG_EPOCH_DAYS, PG_EPOCH_US};
use super::numeric::decode_numeric;
use super::types::{clip, PgType};

/// Append the canonical, type-tagged encoding of one binary COPY field (`None` = NULL) to
/// `out`. Identical for the converted SQLite value and the value read back from PostgreSQL.
pub fn canon_field(ty: PgType, field: Option<&[u8]>, out: &mut Vec<u8>) {
    let Some(b) = field else {
        out.push(0xFF);
        return;
    };
    out.push(ty.tag());
    match ty {
        PgType::Smallint if b.len() == 2 => {
            let v = i16::from_be_bytes([b[0], b[1]]) as i64;
            out.extend_from_slice(&8u32.to_be_bytes());
            out.extend_from_slice(&v.to_be_bytes());
        }
        PgType::Integer if b.len() == 4 => {
            let v = i32::from_be_bytes([b[0], b[1], b[2], b[3]]) as i64;
            out.extend_from_slice(&8u32.to_be_bytes());
            out.extend_from_slice(&v.to_be_bytes());
        }
        PgType::Numeric | PgType::Decimal(..) => {
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
        PgType::Smallint => (i64_of(b) as i16).to_string(),
        PgType::Integer => (i64_of(b) as i32).to_string(),
        PgType::Bigint => i64_of(b).to_string(),
        PgType::Double => format!("{:?}", f64::from_bits(i64_of(b) as u64)),
        PgType::Numeric | PgType::Decimal(..) => decode_numeric(b).unwrap_or_else(|| "?".into()),
        PgType::Text | PgType::Varchar(_) | PgType::Json => {
            format!("{:?}", clip(&String::from_utf8_lossy(b)))
        }
        PgType::Bytea => display_bytes(b),
        PgType::Timestamp | PgType::Timestamptz => {
            let z = if ty == PgType::Timestamptz { "Z" } else { "" };
            format!("{}{z}", utc_text(i64_of(b) + PG_EPOCH_US))
        }
        PgType::Date => date_text(i64_of(b) as i32 as i64 + PG_EPOCH_DAYS),
        PgType::Time => time_text(i64_of(b)),
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

    #[test]
    fn canonical_integer_widths_agree() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        canon_field(PgType::Integer, Some(&7i32.to_be_bytes()), &mut a);
        canon_field(PgType::Bigint, Some(&7i64.to_be_bytes()), &mut b);
        assert_eq!(a, b);
    }
}
