//! SQLite's functions in a view, for PostgreSQL: each call whose PostgreSQL spelling differs
//! (`ifnull`, `iif`, `instr`, `substr`, `group_concat`, `max`/`min` of several values, `total`,
//! `round`, `char`), the date and time functions (casts, `date_trunc`, `interval`, `to_char`;
//! with constant arguments evaluated by SQLite itself), and GLOB patterns as regexes. Part of
//! the view rewrite in [`super`].

use sqlparser::ast::{Expr, Value, ValueWithSpan};

use super::{pg_expr, Kind, Rewrite, Rewritten};

/// Prefix of a date function's name (set before the rewrite) when its result is compared with
/// a text column: the result is then text in SQLite's format.
pub(super) const AS_TEXT: &str = "ficus_as_text:";

impl Rewrite<'_> {
    pub(super) fn function(&mut self, name: &str, args: &[&Expr], distinct: bool) -> Rewritten {
        let (name, as_text) = match name.strip_prefix(AS_TEXT) {
            Some(n) => (n, true),
            None => (name, false),
        };
        let a: Vec<String> = args.iter().map(|e| e.to_string()).collect();
        let sql = match (name, a.len()) {
            ("ifnull", 2) => format!("coalesce({}, {})", a[0], a[1]),
            ("iif", 3) => format!("CASE WHEN {} THEN {} ELSE {} END", a[0], a[1], a[2]),
            ("instr", 2) => format!("strpos({}, {})", a[0], a[1]),
            ("substr" | "substring", 2) if a[1].starts_with('-') => {
                format!("right({}, {})", a[0], int_arg(a[1][1..].trim()))
            }
            ("substr" | "substring", 3) if a[1].starts_with('-') => format!(
                "substr({0}, length({0}) + 1 - {1}, {2})",
                a[0],
                int_arg(a[1][1..].trim()),
                int_arg(&a[2])
            ),
            ("substr" | "substring", 2 | 3) => {
                let n: Vec<String> = a[1..].iter().map(|x| int_arg(x)).collect();
                format!("substr({}, {})", a[0], n.join(", "))
            }
            ("group_concat" | "string_agg", 1 | 2) => format!(
                "string_agg({}CAST({} AS text), {})",
                if distinct { "DISTINCT " } else { "" },
                a[0],
                a.get(1).map_or("','", |s| s.as_str())
            ),
            ("max", n) if n >= 2 => {
                self.note("max() of several values: SQLite returns NULL when one is NULL, PostgreSQL's greatest() ignores NULLs");
                format!("greatest({})", a.join(", "))
            }
            ("min", n) if n >= 2 => {
                self.note("min() of several values: SQLite returns NULL when one is NULL, PostgreSQL's least() ignores NULLs");
                format!("least({})", a.join(", "))
            }
            ("total", 1) => format!("CAST(coalesce(sum({}), 0) AS double precision)", a[0]),
            ("round", 2) => format!("round(CAST({} AS numeric), {})", a[0], int_arg(&a[1])),
            ("char", 1) => format!("chr({})", int_arg(&a[0])),
            ("date" | "time" | "datetime" | "julianday" | "unixepoch" | "strftime", _) => {
                if let Some(lit) = self.fold(name, args) {
                    return Ok(Some(lit));
                }
                datetime_sql(name, args, as_text, self)?
            }
            _ => return Ok(None),
        };
        pg_expr(&sql).map(Some)
    }

    /// A date/time function of constant arguments (not `'now'`), evaluated by SQLite itself.
    fn fold(&self, name: &str, args: &[&Expr]) -> Option<Expr> {
        let folder = self.folder?;
        let mut lits = Vec::new();
        for a in args {
            match a {
                Expr::Value(ValueWithSpan {
                    value: v @ (Value::SingleQuotedString(_) | Value::Number(..)),
                    ..
                }) => {
                    let lower = v.to_string().to_lowercase();
                    if lower.contains("now") || lower.contains("local") || lower.contains("utc") {
                        return None;
                    }
                    lits.push(v.to_string());
                }
                _ => return None,
            }
        }
        let v: rusqlite::types::Value = folder
            .query_row(&format!("SELECT {name}({})", lits.join(", ")), [], |r| {
                r.get(0)
            })
            .ok()?;
        let value = match v {
            rusqlite::types::Value::Null => Value::Null,
            rusqlite::types::Value::Integer(i) => Value::Number(i.to_string(), false),
            rusqlite::types::Value::Real(f) => Value::Number(f.to_string(), false),
            rusqlite::types::Value::Text(s) => Value::SingleQuotedString(s),
            rusqlite::types::Value::Blob(_) => return None,
        };
        Some(Expr::value(value))
    }
}

/// A GLOB pattern as an anchored POSIX regular expression (`*`, `?`, `[…]`, `[^…]`).
pub(super) fn glob_regex(p: &str) -> String {
    let mut out = String::from("^");
    let mut in_class = false;
    for c in p.chars() {
        match c {
            _ if in_class => {
                if c == ']' {
                    in_class = false;
                }
                out.push(c);
            }
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            '[' => {
                in_class = true;
                out.push('[');
            }
            c if "\\.+()|{}^$".contains(c) => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push('$');
    out
}

/// An integer argument of a PostgreSQL function taking `integer` (SQLite's are 64-bit).
fn int_arg(a: &str) -> String {
    if a.parse::<i32>().is_ok() {
        a.to_string()
    } else {
        format!("CAST({a} AS integer)")
    }
}

/// `date`, `time`, `datetime`, `julianday`, `unixepoch`, `strftime` of a value that is not
/// constant: the time value (`'now'` is UTC; a timestamptz column is read in UTC), each
/// modifier, then the result's form.
fn datetime_sql(
    name: &str,
    args: &[&Expr],
    as_text: bool,
    rw: &mut Rewrite,
) -> std::result::Result<String, String> {
    let (fmt, rest) = if name == "strftime" {
        match args.split_first() {
            Some((
                Expr::Value(ValueWithSpan {
                    value: Value::SingleQuotedString(f),
                    ..
                }),
                rest,
            )) => (Some(f.clone()), rest),
            _ => return Err("strftime() with a format that is not a constant".into()),
        }
    } else {
        (None, args)
    };
    let Some((time, mods)) = rest.split_first() else {
        return Err(format!("{name}() without a time value"));
    };
    let mut mod_strs = Vec::new();
    for m in mods {
        match m {
            Expr::Value(ValueWithSpan {
                value: Value::SingleQuotedString(s),
                ..
            }) => mod_strs.push(s.trim().to_lowercase()),
            _ => {
                return Err(format!(
                    "{name}() with a modifier that is not a constant: {m}"
                ))
            }
        }
    }
    let is_now = matches!(time, Expr::Value(ValueWithSpan { value: Value::SingleQuotedString(s), .. }) if s.eq_ignore_ascii_case("now"));
    let mut x = if is_now {
        "(now() AT TIME ZONE 'UTC')".to_string()
    } else if mod_strs.first().is_some_and(|m| m == "unixepoch") {
        mod_strs.remove(0);
        format!("(to_timestamp({time}) AT TIME ZONE 'UTC')")
    } else if rw.column_type(time) == Some(Kind::Timestamptz) {
        format!("({time} AT TIME ZONE 'UTC')")
    } else {
        format!("CAST({time} AS timestamp)")
    };
    for m in &mod_strs {
        x = match m.as_str() {
            "start of day" => format!("date_trunc('day', {x})"),
            "start of month" => format!("date_trunc('month', {x})"),
            "start of year" => format!("date_trunc('year', {x})"),
            "localtime" => {
                format!("(({x}) AT TIME ZONE 'UTC' AT TIME ZONE current_setting('TimeZone'))")
            }
            "utc" => format!("(({x}) AT TIME ZONE current_setting('TimeZone') AT TIME ZONE 'UTC')"),
            m if m.starts_with(['+', '-']) && m[1..].split_whitespace().count() == 2 => {
                let (sign, amount) = m.split_at(1);
                let amount = amount.replace('\'', "");
                format!("({x} {sign} interval '{amount}')")
            }
            other => {
                return Err(format!(
                    "{name}() modifier '{other}' has no PostgreSQL translation here"
                ))
            }
        };
    }
    if is_now {
        rw.note("'now' is the time of the query in UTC, as in SQLite");
    }
    Ok(match (name, fmt.as_deref()) {
        ("date", _) if as_text => format!("to_char({x}, 'YYYY-MM-DD')"),
        ("time", _) if as_text => format!("to_char({x}, 'HH24:MI:SS')"),
        ("datetime", _) if as_text => format!("to_char({x}, 'YYYY-MM-DD HH24:MI:SS')"),
        ("date", _) => format!("CAST({x} AS date)"),
        ("time", _) => format!("CAST({x} AS time(0))"),
        ("datetime", _) => format!("date_trunc('second', {x})"),
        ("julianday", _) => format!("(extract(epoch from {x}) / 86400.0 + 2440587.5)"),
        ("unixepoch", _) | ("strftime", Some("%s")) => {
            format!("CAST(floor(extract(epoch from {x})) AS bigint)")
        }
        ("strftime", Some(f)) => format!(
            "to_char({x}, {})",
            quote(&crate::plan::defaults::to_char_format(f)?)
        ),
        _ => return Err(format!("{name}() has no PostgreSQL translation here")),
    })
}

pub(super) fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
