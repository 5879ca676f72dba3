//! Decimal numbers: the syntax accepted from text, normalized digits (exponent applied), and
//! PostgreSQL's `numeric` binary form both ways (base-10000 digit groups, weight, sign, scale)
//! — so a numeric compares canonically whichever side it came from.

use std::fmt::Write as _;

use rusqlite::types::ValueRef;

use super::types::{clip, err, ConvertError};

/// Whether `s` is a decimal number: sign, digits with an optional fraction, an optional
/// exponent of at most 4 digits.
pub(super) fn is_decimal_syntax(s: &str) -> bool {
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
pub(super) enum Decimal {
    Finite {
        neg: bool,
        int: String,
        frac: String,
    },
    Inf(bool),
}

pub(super) fn to_decimal(v: ValueRef<'_>) -> Result<Decimal, ConvertError> {
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

/// Integer and fraction digits of a decimal (leading/trailing zeros not counted; infinity
/// counts as not fitting any precision).
pub(super) fn decimal_digits(d: &Decimal) -> (usize, usize) {
    match d {
        Decimal::Finite { int, frac, .. } => (int.len(), frac.len()),
        Decimal::Inf(_) => (usize::MAX / 2, 0),
    }
}

/// Integer and fraction digits of a SQLite value read as a decimal, if it is one.
pub fn value_digits(v: ValueRef<'_>) -> Option<(usize, usize)> {
    to_decimal(v).ok().map(|d| decimal_digits(&d))
}

pub(super) fn encode_numeric(d: &Decimal, out: &mut Vec<u8>) {
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
pub(super) fn decode_numeric(b: &[u8]) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
