//! SQLite column defaults in PostgreSQL: the time functions (`CURRENT_TIMESTAMP`,
//! `datetime('now')`, `strftime(…, 'now')`, `unixepoch()`, `julianday('now')` …) by the
//! column's target type, and literals passed through the column's own conversion so a default
//! is exactly the value a copied row would hold.

use std::fmt::Write as _;

use rusqlite::types::ValueRef;

use super::ddl::quote_literal;
use crate::convert::{display_field, Conversion, PgType};

/// Translate a SQLite default expression for a column converted by `conv`.
/// Ok(None): no default (NULL).
pub fn translate_default(
    expr: &str,
    conv: &Conversion,
) -> std::result::Result<Option<String>, String> {
    let mut e = expr.trim().to_string();
    while e.starts_with('(') && e.ends_with(')') {
        e = e[1..e.len() - 1].trim().to_string();
    }
    let norm: String = e
        .to_ascii_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join("")
        .replace('"', "'");
    let ty = conv.pg_type;
    let text_like = matches!(ty, PgType::Text | PgType::Varchar(_));
    let to_char = |fmt: &str| format!("to_char(now() AT TIME ZONE 'UTC', {})", quote_literal(fmt));
    // Time functions.
    let now_like = matches!(
        norm.as_str(),
        "current_timestamp" | "datetime('now')" | "datetime('now','utc')" | "now()"
    );
    if now_like {
        return match ty {
            PgType::Timestamptz => Ok(Some("now()".into())),
            PgType::Timestamp => Ok(Some("(now() AT TIME ZONE 'UTC')".into())),
            PgType::Date => Ok(Some("CURRENT_DATE".into())),
            _ if text_like => Ok(Some(to_char("YYYY-MM-DD HH24:MI:SS"))),
            _ => Err(format!(
                "a current timestamp cannot default a {} column",
                ty.sql()
            )),
        };
    }
    if matches!(norm.as_str(), "current_date" | "date('now')") {
        return match ty {
            PgType::Date => Ok(Some("CURRENT_DATE".into())),
            PgType::Timestamptz | PgType::Timestamp => Ok(Some("CURRENT_DATE".into())),
            _ if text_like => Ok(Some(to_char("YYYY-MM-DD"))),
            _ => Err(format!(
                "a current date cannot default a {} column",
                ty.sql()
            )),
        };
    }
    if matches!(norm.as_str(), "current_time" | "time('now')") {
        return match ty {
            PgType::Time => Ok(Some("(now() AT TIME ZONE 'UTC')::time(0)".into())),
            _ if text_like => Ok(Some(to_char("HH24:MI:SS"))),
            _ => Err(format!(
                "a current time cannot default a {} column",
                ty.sql()
            )),
        };
    }
    if matches!(
        norm.as_str(),
        "unixepoch()" | "unixepoch('now')" | "strftime('%s','now')"
    ) {
        return match ty {
            PgType::Bigint | PgType::Integer => {
                Ok(Some("(extract(epoch from now()))::bigint".into()))
            }
            PgType::Double | PgType::Numeric => Ok(Some("extract(epoch from now())".into())),
            PgType::Timestamptz => Ok(Some("date_trunc('second', now())".into())),
            _ if text_like => Ok(Some("((extract(epoch from now()))::bigint)::text".into())),
            _ => Err(format!("an epoch cannot default a {} column", ty.sql())),
        };
    }
    if norm == "julianday('now')" {
        return match ty {
            PgType::Double | PgType::Numeric => Ok(Some(
                "(extract(epoch from now()) / 86400.0 + 2440587.5)".into(),
            )),
            PgType::Timestamptz => Ok(Some("now()".into())),
            _ => Err(format!(
                "julianday('now') cannot default a {} column",
                ty.sql()
            )),
        };
    }
    if let Some(rest) = norm.strip_prefix("strftime('") {
        if let Some(fmt) = rest.strip_suffix("','now')") {
            return match ty {
                PgType::Timestamptz if fmt.contains("%Y") || fmt.contains("%y") => {
                    Ok(Some("now()".into()))
                }
                PgType::Timestamp => Ok(Some("(now() AT TIME ZONE 'UTC')".into())),
                PgType::Date => Ok(Some("CURRENT_DATE".into())),
                _ if text_like => {
                    // re-read the format with original case
                    let orig = e
                        .find('\'')
                        .and_then(|i| {
                            e[i + 1..]
                                .find('\'')
                                .map(|j| e[i + 1..i + 1 + j].to_string())
                        })
                        .unwrap_or_default();
                    Ok(Some(to_char(&to_char_format(&orig)?)))
                }
                _ => Err(format!("strftime cannot default a {} column", ty.sql())),
            };
        }
    }
    // Literals: pass through the column's conversion.
    let lit = parse_literal(&e)
        .ok_or_else(|| format!("SQLite expression {e:?} has no PostgreSQL translation"))?;
    let v = match &lit {
        Lit::Null => return Ok(None),
        Lit::Int(i) => ValueRef::Integer(*i),
        Lit::Real(f) => ValueRef::Real(*f),
        Lit::Text(s) => ValueRef::Text(s.as_bytes()),
        Lit::Blob(b) => ValueRef::Blob(b),
    };
    let mut c = conv.clone();
    c.not_null = false;
    let mut buf = Vec::new();
    c.encode(v, &mut buf).map_err(|e| e.0)?;
    Ok(Some(pg_literal(ty, &buf[4..])))
}

/// A SQLite `strftime` format as a PostgreSQL `to_char` one (letters outside `%` escapes
/// quoted): for column defaults here and for views (`views::functions`).
pub(in crate::plan) fn to_char_format(f: &str) -> std::result::Result<String, String> {
    let mut out = String::new();
    let mut literal = String::new();
    let flush = |out: &mut String, literal: &mut String| {
        if !literal.is_empty() {
            out.push('"');
            out.push_str(literal);
            out.push('"');
            literal.clear();
        }
    };
    let mut chars = f.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            if c.is_alphanumeric() {
                literal.push(c);
            } else {
                flush(&mut out, &mut literal);
                out.push(c);
            }
            continue;
        }
        flush(&mut out, &mut literal);
        out.push_str(match chars.next() {
            Some('Y') => "YYYY",
            Some('m') => "MM",
            Some('d') => "DD",
            Some('H') => "HH24",
            Some('M') => "MI",
            Some('S') => "SS",
            Some('f') => "SS.MS",
            Some('j') => "DDD",
            Some('%') => "%",
            Some(o) => {
                return Err(format!(
                    "strftime() format %{o} has no to_char() translation here"
                ))
            }
            None => return Err("strftime() format ends with %".into()),
        });
    }
    flush(&mut out, &mut literal);
    Ok(out)
}

enum Lit {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

fn parse_literal(e: &str) -> Option<Lit> {
    let u = e.to_ascii_uppercase();
    match u.as_str() {
        "NULL" => return Some(Lit::Null),
        "TRUE" => return Some(Lit::Int(1)),
        "FALSE" => return Some(Lit::Int(0)),
        _ => {}
    }
    if e.len() >= 2 && e.starts_with('\'') && e.ends_with('\'') {
        let inner = &e[1..e.len() - 1];
        if inner.replace("''", "").contains('\'') {
            return None;
        }
        return Some(Lit::Text(inner.replace("''", "'")));
    }
    if (u.starts_with("X'")) && u.ends_with('\'') {
        let h = &e[2..e.len() - 1];
        if !h.len().is_multiple_of(2) {
            return None;
        }
        let bytes: Option<Vec<u8>> = (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).ok())
            .collect();
        return bytes.map(Lit::Blob);
    }
    let n = e.trim_start_matches('+');
    if let Ok(i) = n.parse::<i64>() {
        return Some(Lit::Int(i));
    }
    if let Ok(f) = n.parse::<f64>() {
        return Some(Lit::Real(f));
    }
    None
}

fn pg_literal(ty: PgType, field: &[u8]) -> String {
    match ty {
        PgType::Boolean
        | PgType::Smallint
        | PgType::Integer
        | PgType::Bigint
        | PgType::Numeric
        | PgType::Decimal(..) => display_field(ty, Some(field)),
        PgType::Text | PgType::Varchar(_) | PgType::Json => {
            quote_literal(&String::from_utf8_lossy(field))
        }
        PgType::Bytea => {
            let mut s = String::from("'\\x");
            for b in field {
                let _ = write!(s, "{b:02x}");
            }
            s + "'::bytea"
        }
        _ => format!(
            "{}::{}",
            quote_literal(&display_field(ty, Some(field))),
            ty.sql()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::Conversion;

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

    #[test]
    fn defaults_translate() {
        let ts = conv(PgType::Timestamptz);
        assert_eq!(
            translate_default("CURRENT_TIMESTAMP", &ts)
                .unwrap()
                .unwrap(),
            "now()"
        );
        assert_eq!(
            translate_default("(datetime('now'))", &ts)
                .unwrap()
                .unwrap(),
            "now()"
        );
        assert_eq!(
            translate_default("strftime('%Y-%m-%d %H:%M:%f', 'now')", &ts)
                .unwrap()
                .unwrap(),
            "now()"
        );
        let t = conv(PgType::Text);
        assert_eq!(
            translate_default("strftime('%Y-%m-%d', 'now')", &t)
                .unwrap()
                .unwrap(),
            "to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
        );
        assert_eq!(
            translate_default("'it''s'", &t).unwrap().unwrap(),
            "'it''s'"
        );
        assert_eq!(
            translate_default("0", &conv(PgType::Boolean))
                .unwrap()
                .unwrap(),
            "false"
        );
        assert_eq!(translate_default("NULL", &t).unwrap(), None);
        assert!(translate_default("random()", &t).is_err());
        assert_eq!(
            translate_default("'2025-01-01'", &ts).unwrap().unwrap(),
            "'2025-01-01 00:00:00.000000Z'::timestamptz"
        );
    }
}
