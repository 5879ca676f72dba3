//! Each column's PostgreSQL type and conversion: first from its declared type and the
//! configuration ([`prepare_table`], which also says what to profile), then — once the values
//! are profiled — confirmed, widened to text, or chosen from the storage classes found
//! ([`decide_columns`]), with the reason in words and the column's default translated.

use super::defaults::translate_default;
use super::types::{ColumnPlan, IdentityPlan, TablePlan};
use crate::collation::{fallback_for, Fallback, PG_CI_COLLATION};
use crate::config::{EmptyString, MigrationConfig};
use crate::convert::{parse_precision, Conversion, PgType};
use crate::error::Result;
use crate::introspect::{quote_sqlite, TableInfo};
use crate::profile::{ColumnProfile, ProfileSpec, RejectSample};
use crate::source::ReadKey;

enum Kind {
    Typed(PgType),
    Untyped,
}

fn declared_kind(decl: &str, config: &MigrationConfig) -> (Kind, Option<u32>) {
    let u = decl.to_ascii_uppercase();
    let varchar = u
        .find('(')
        .filter(|_| u.contains("CHAR"))
        .and_then(|i| u[i + 1..].split([')', ',']).next())
        .and_then(|n| n.trim().parse::<u32>().ok())
        .filter(|n| *n > 0);
    let k = if u.is_empty() {
        Kind::Untyped
    } else if u.contains("BOOL") {
        Kind::Typed(PgType::Boolean)
    } else if u.contains("DATETIME") || u.contains("TIMESTAMP") {
        Kind::Typed(config.datetime_type())
    } else if u.starts_with("DATE") {
        Kind::Typed(PgType::Date)
    } else if u.starts_with("TIME") {
        Kind::Typed(PgType::Time)
    } else if u.contains("JSON") {
        Kind::Typed(PgType::Json)
    } else if u.contains("INT") {
        Kind::Typed(PgType::Bigint)
    } else if u.contains("CHAR") || u.contains("CLOB") || u.contains("TEXT") {
        Kind::Typed(PgType::Text)
    } else if u.contains("BLOB") {
        Kind::Typed(PgType::Bytea)
    } else if u.contains("REAL") || u.contains("FLOA") || u.contains("DOUB") {
        Kind::Typed(PgType::Double)
    } else if u.contains("DEC") || u.contains("NUMERIC") {
        Kind::Typed(PgType::Numeric)
    } else {
        Kind::Untyped
    };
    (k, varchar)
}

/// The width an integer type declares: `smallint` for SMALLINT/INT2/TINYINT, `integer` for
/// INT/INTEGER/INT4/MEDIUMINT; None for BIGINT/INT8 and other spellings (bigint).
fn declared_width(decl: &str) -> Option<PgType> {
    let u = decl.trim().to_ascii_uppercase();
    let base = u.split('(').next().unwrap_or("").trim();
    match base {
        "SMALLINT" | "INT2" | "TINYINT" => Some(PgType::Smallint),
        "INT" | "INTEGER" | "INT4" | "MEDIUMINT" => Some(PgType::Integer),
        _ => None,
    }
}

/// Keep what the declared type says about width and precision where every value fits:
/// SMALLINT/INTEGER → `smallint`/`integer` (bigint for the rowid alias and when values exceed
/// the width), NUMERIC(p,s)/DECIMAL(p,s) → `numeric(p,s)` (plain `numeric` — widened, said so
/// — when a value has more digits; nothing is rounded or quarantined for it).
fn keep_declared_width(
    ty: PgType,
    declared: &str,
    p: &ColumnProfile,
    rowid_alias: bool,
) -> Option<(PgType, String)> {
    match ty {
        PgType::Bigint if rowid_alias => Some((
            PgType::Bigint,
            "INTEGER PRIMARY KEY (the rowid): bigint".into(),
        )),
        PgType::Bigint => {
            let w = declared_width(declared)?;
            let (lo, hi) = match w {
                PgType::Smallint => (i16::MIN as i64, i16::MAX as i64),
                _ => (i32::MIN as i64, i32::MAX as i64),
            };
            let only_ints = p.reals == 0 && p.texts == 0 && p.blobs == 0;
            let fits = p.int_min.is_none_or(|m| m >= lo) && p.int_max.is_none_or(|m| m <= hi);
            Some(if only_ints && fits {
                (w, format!("declared type; every value fits {}", w.sql()))
            } else if only_ints {
                (
                    PgType::Bigint,
                    format!("declared {declared}, but values exceed {}: bigint", w.sql()),
                )
            } else {
                (
                    PgType::Bigint,
                    format!(
                        "declared {declared}, but not every value is stored as an integer: bigint"
                    ),
                )
            })
        }
        PgType::Numeric => {
            let (prec, scale) = parse_precision(declared)?;
            let d = PgType::Decimal(prec, scale);
            Some(
                if p.max_int_digits + scale as u64 <= prec as u64
                    && p.max_frac_digits <= scale as u64
                {
                    (d, format!("declared type; every value fits {}", d.sql()))
                } else {
                    (
                        PgType::Numeric,
                        format!(
                            "widened to numeric: values have up to {} integer and {} fraction digits, more than {} holds (PostgreSQL would round or reject them)",
                            p.max_int_digits, p.max_frac_digits, d.sql()
                        ),
                    )
                },
            )
        }
        _ => None,
    }
}

pub(super) fn prepare_table(
    t: &TableInfo,
    config: &MigrationConfig,
    conn: &rusqlite::Connection,
) -> Result<(TablePlan, Vec<ProfileSpec>)> {
    let name = config
        .tables
        .get(&t.name)
        .and_then(|c| c.rename.clone())
        .unwrap_or_else(|| t.name.clone());
    let key_columns: Vec<usize> = t
        .primary_key
        .iter()
        .filter_map(|k| t.columns.iter().position(|c| &c.name == k))
        .collect();
    let read_key = match &t.rowid_name {
        Some(r) if !t.without_rowid => ReadKey::Rowid(r.clone()),
        _ => match t.rowid_alias {
            Some(i) if !t.without_rowid => ReadKey::Rowid(quote_sqlite(&t.columns[i].name)),
            _ => ReadKey::Pk(key_columns.clone()),
        },
    };
    let mut columns = Vec::new();
    let mut specs = Vec::new();
    for c in &t.columns {
        let cc = config.column(&t.name, &c.name);
        let not_null = c.not_null || c.pk > 0;
        let (kind, varchar) = declared_kind(&c.declared, config);
        let forced = cc
            .and_then(|cc| cc.pg_type.as_deref())
            .and_then(PgType::parse);
        let ty = forced.or(match kind {
            Kind::Typed(t) => Some(t),
            Kind::Untyped => None,
        });
        let conversion = Conversion {
            pg_type: ty.unwrap_or(PgType::Text),
            not_null,
            epoch_unit: cc.and_then(|c| c.epoch_unit),
            strip_nul: cc.is_some_and(|c| c.strip_nul),
            lossy_utf8: cc.is_some_and(|c| c.lossy_utf8),
            empty_as_null: config.empty_string(&t.name, &c.name) == EmptyString::Null,
        };
        let is_dt = |t: Option<PgType>| {
            matches!(
                t,
                Some(PgType::Timestamp | PgType::Timestamptz | PgType::Date | PgType::Time)
            )
        };
        specs.push(ProfileSpec {
            candidate: ty.map(|_| conversion.clone()),
            datetime: is_dt(ty)
                || is_dt(match kind {
                    Kind::Typed(t) => Some(t),
                    _ => None,
                }),
            boolean: matches!(ty, Some(PgType::Boolean))
                || matches!(kind, Kind::Typed(PgType::Boolean)),
            varchar: if forced.is_none() { varchar } else { None },
        });
        columns.push(ColumnPlan {
            name: c.name.clone(),
            declared: c.declared.clone(),
            conversion,
            default: None,
            decision: String::new(),
            profile: ColumnProfile::default(),
            rejects: 0,
            samples: Vec::new(),
            collation: None,
        });
    }
    let autoincrement_seq = if t.autoincrement {
        conn.query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = ?1",
            [&t.name],
            |r| r.get::<_, i64>(0),
        )
        .ok()
    } else {
        None
    };
    let identity = t.rowid_alias.map(|column| IdentityPlan {
        column,
        autoincrement_seq,
    });
    Ok((
        TablePlan {
            source_name: t.name.clone(),
            name,
            rows: 0,
            read_key,
            key_columns,
            columns,
            identity,
            indexes: Vec::new(),
            checks: Vec::new(),
            foreign_keys: Vec::new(),
            expected_rejects: 0,
            notes: Vec::new(),
        },
        specs,
    ))
}

fn classes(p: &ColumnProfile) -> String {
    let mut v = Vec::new();
    for (n, k) in [
        (p.integers, "integer"),
        (p.reals, "real"),
        (p.texts, "text"),
        (p.blobs, "blob"),
        (p.nulls, "null"),
    ] {
        if n > 0 {
            v.push(format!("{k} ×{n}"));
        }
    }
    if v.is_empty() {
        "no rows".into()
    } else {
        v.join(", ")
    }
}

pub(super) fn decide_columns(
    info: &TableInfo,
    tp: &mut TablePlan,
    profs: Vec<ColumnProfile>,
    config: &MigrationConfig,
    widen_over: f64,
    warnings: &mut Vec<String>,
) {
    let mut expected = 0;
    for ((c, p), ci) in tp.columns.iter_mut().zip(profs).zip(&info.columns) {
        let cc = config.column(&info.name, &c.name);
        let forced = cc
            .and_then(|cc| cc.pg_type.as_deref())
            .and_then(PgType::parse);
        let (kind, varchar) = declared_kind(&c.declared, config);
        let null_rejects = if c.conversion.not_null { p.nulls } else { 0 };
        let mut detail = vec![classes(&p)];
        if !p.epochs.is_empty() {
            detail.push(format!("epochs {:?}", p.epochs));
        }
        if !p.date_formats.is_empty() {
            detail.push(format!("text dates {:?}", p.date_formats));
        }
        if !p.spellings.is_empty() {
            detail.push(format!("spellings {:?}", p.spellings));
        }
        if let (Some(a), Some(b)) = (p.int_min, p.int_max) {
            detail.push(format!("integers {a}..{b}"));
        }
        if let (Some(a), Some(b)) = (p.real_min, p.real_max) {
            detail.push(format!("reals {a:?}..{b:?}"));
        }
        if p.non_finite > 0 {
            detail.push(format!("{} infinite", p.non_finite));
        }
        if p.negative_zero > 0 {
            detail.push(format!("{} negative zero", p.negative_zero));
        }
        if p.max_len > 0 {
            detail.push(format!("max {} bytes", p.max_len));
        }
        if p.invalid_utf8 > 0 {
            detail.push(format!("{} invalid UTF-8", p.invalid_utf8));
        }
        if p.nul_bytes > 0 {
            detail.push(format!("{} with NUL bytes", p.nul_bytes));
        }
        let (ty, rejects, samples, why): (PgType, u64, Vec<RejectSample>, String) = if let Some(f) =
            forced
        {
            (
                f,
                p.rejects,
                p.samples.clone(),
                "type set in configuration".into(),
            )
        } else {
            match kind {
                Kind::Typed(t) => {
                    let nn = p.non_null().max(1) as f64;
                    let value_rejects = p.rejects.saturating_sub(null_rejects);
                    if p.rejects == 0 {
                        match (t, varchar) {
                            (PgType::Text, Some(n)) if p.too_long == 0 => {
                                (PgType::Varchar(n), 0, vec![], format!("declared type; every value fits varchar({n})"))
                            }
                            (PgType::Text, Some(n)) => (
                                PgType::Text,
                                0,
                                vec![],
                                format!("{} value(s) longer than the declared {n} characters (SQLite does not enforce it): text", p.too_long),
                            ),
                            _ => (t, 0, vec![], "declared type; every value converts".into()),
                        }
                    } else if !t.is_text_like()
                        && t != PgType::Bytea
                        && p.text_rejects() == 0
                        && value_rejects as f64 / nn > widen_over
                    {
                        (
                            PgType::Text,
                            null_rejects,
                            vec![],
                            format!(
                                "widened to text: {value_rejects} of {} values would not convert to {} (over {}%)",
                                p.non_null(),
                                t.sql(),
                                widen_over * 100.0
                            ),
                        )
                    } else {
                        (
                            t,
                            p.rejects,
                            p.samples.clone(),
                            "declared type; the values that do not convert are quarantined".into(),
                        )
                    }
                }
                Kind::Untyped => {
                    let (i, r, t, b) = (p.integers > 0, p.reals > 0, p.texts > 0, p.blobs > 0);
                    let text_r = p.text_rejects() + null_rejects;
                    match (i, r, t, b) {
                        (false, false, false, false) => (PgType::Text, null_rejects, vec![], "no type, no values: text".into()),
                        (true, false, false, false) => (PgType::Bigint, null_rejects, vec![], "no type; only integers: bigint".into()),
                        (_, _, false, false) if p.ints_beyond_f64 == 0 => {
                            (PgType::Double, null_rejects, vec![], "no type; numbers: double precision".into())
                        }
                        (_, _, false, false) => {
                            (PgType::Numeric, null_rejects, vec![], "no type; numbers incl. integers beyond 2^53: numeric".into())
                        }
                        (false, false, false, true) => (PgType::Bytea, null_rejects, vec![], "no type; only blobs: bytea".into()),
                        (_, _, _, true) if p.text_rejects() > 0 => (
                            PgType::Bytea,
                            null_rejects,
                            vec![],
                            "mixed storage classes incl. binary blobs: bytea (numbers as their text)".into(),
                        ),
                        _ => (
                            PgType::Text,
                            text_r,
                            p.text_samples.clone(),
                            "no type or mixed storage classes: text (numbers as their text)".into(),
                        ),
                    }
                }
            }
        };
        let kept = match (forced, &kind) {
            (None, Kind::Typed(_)) if rejects == 0 => keep_declared_width(
                ty,
                &c.declared,
                &p,
                info.rowid_alias
                    .is_some_and(|a| info.columns[a].name == c.name),
            ),
            _ => None,
        };
        let (ty, why) = kept.unwrap_or((ty, why));
        c.conversion.pg_type = ty;
        if let Some((coll, fb)) = ci
            .collation
            .as_deref()
            .and_then(|n| fallback_for(n).map(|f| (n, f)))
        {
            let pg = if fb == Fallback::CaseInsensitive && ty.is_text_like() {
                c.collation = Some(PG_CI_COLLATION.to_string());
                format!(
                    "; PostgreSQL gets the nondeterministic ICU collation {PG_CI_COLLATION} (case-insensitive)"
                )
            } else {
                String::new()
            };
            warnings.push(format!(
                "{}.{}: collation {coll} is not SQLite's own; its values were read with ficus's fallback, {}{pg}",
                info.name,
                c.name,
                fb.describe()
            ));
        }
        // '' stays '' in text; the rule is for the other types.
        if ty.is_text_like() || ty == PgType::Bytea {
            c.conversion.empty_as_null = false;
        }
        c.decision = format!("{why} [{}]", detail.join("; "));
        c.rejects = rejects;
        c.samples = samples;
        c.profile = p;
        expected += rejects;
        // Default.
        let d = cc.and_then(|cc| cc.default.clone());
        c.default = match (d, &ci.default) {
            (Some(d), _) => Some(d),
            (None, None) => None,
            (None, Some(sq)) => match translate_default(sq, &c.conversion) {
                Ok(v) => v,
                Err(e) => {
                    warnings.push(format!(
                        "{}.{}: default {sq} not translated ({e}); the column gets no default",
                        info.name, c.name
                    ));
                    None
                }
            },
        };
        if ci.generated {
            tp.notes.push(format!(
                "{} is a generated column in SQLite; copied as plain values",
                c.name
            ));
        }
    }
    if let Some(id) = &tp.identity {
        if !matches!(
            tp.columns[id.column].conversion.pg_type,
            PgType::Bigint | PgType::Integer
        ) {
            tp.identity = None;
        }
    }
    tp.expected_rejects = expected;
}
