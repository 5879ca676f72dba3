//! What the SQLite file actually stores, per column: `typeof` counts, min/max, length, NUL
//! bytes, invalid UTF-8, epoch magnitudes, date text shapes, boolean spellings — and a trial
//! conversion to the declared type's candidate, counting (and sampling) values that will not
//! convert.

use std::collections::BTreeMap;

use rusqlite::types::ValueRef;
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::convert::{
    display_sqlite, parse_datetime, value_digits, Conversion, DateFormat, EpochUnit,
};
use crate::error::Result;
use crate::source::SourceTable;

/// Samples of unconvertible values kept per column.
pub const MAX_SAMPLES: usize = 20;

/// Profile of one column.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ColumnProfile {
    /// NULLs.
    pub nulls: u64,
    /// Values stored as integers.
    pub integers: u64,
    /// Values stored as reals.
    pub reals: u64,
    /// Values stored as text.
    pub texts: u64,
    /// Values stored as blobs.
    pub blobs: u64,
    /// Smallest integer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int_min: Option<i64>,
    /// Largest integer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub int_max: Option<i64>,
    /// Smallest real.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub real_min: Option<f64>,
    /// Largest real.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub real_max: Option<f64>,
    /// Non-finite reals (inf, -inf).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub non_finite: u64,
    /// Negative zero reals.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub negative_zero: u64,
    /// Integers with no exact double precision value (|i| > 2^53).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ints_beyond_f64: u64,
    /// Longest text or blob, bytes.
    pub max_len: u64,
    /// Text/blob values that are not valid UTF-8.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub invalid_utf8: u64,
    /// Text/blob values containing a NUL byte.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub nul_bytes: u64,
    /// Texts longer (in characters) than the declared varchar length.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub too_long: u64,
    /// Integer epoch magnitudes (date/time columns).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub epochs: BTreeMap<String, u64>,
    /// Text date/time shapes (date/time columns), plus `unrecognised`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub date_formats: BTreeMap<String, u64>,
    /// Distinct spellings (boolean columns), at most 16.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub spellings: BTreeMap<String, u64>,
    /// Empty strings (`''`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub empty_strings: u64,
    /// Most integer digits of a value (numeric columns).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_int_digits: u64,
    /// Most fraction digits of a value (numeric columns).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_frac_digits: u64,
    /// Values the candidate conversion rejects (NULLs in key columns included).
    pub rejects: u64,
    /// Some of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<RejectSample>,
    /// Some values that would not fit text (for widening/untyped decisions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub text_samples: Vec<RejectSample>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl ColumnProfile {
    /// Values that are not NULL.
    pub fn non_null(&self) -> u64 {
        self.integers + self.reals + self.texts + self.blobs
    }
    /// Values that would not fit `text` (invalid UTF-8 or NUL).
    pub fn text_rejects(&self) -> u64 {
        self.invalid_utf8 + self.nul_bytes
    }
}

/// One value that will not convert.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RejectSample {
    /// The row's key as JSON.
    pub key: String,
    /// The value, as shown to people.
    pub value: String,
    /// Why it does not convert.
    pub reason: String,
}

/// What to look for in one column while profiling.
#[derive(Debug, Clone)]
pub struct ProfileSpec {
    /// Trial conversion (None: untyped, decided from the profile).
    pub candidate: Option<Conversion>,
    pub datetime: bool,
    pub boolean: bool,
    pub varchar: Option<u32>,
}

/// Profile the rows of a rowid range `(after, until]` (None: the whole table).
pub fn profile_range(
    conn: &Connection,
    table: &(impl SourceTable + ?Sized),
    specs: &[ProfileSpec],
    range: Option<(i64, i64)>,
) -> Result<(u64, Vec<ColumnProfile>)> {
    let mut profs = vec![ColumnProfile::default(); table.column_count()];
    let mut scratch = Vec::with_capacity(256);
    let after = range.map(|(a, _)| crate::source::SourceKey::Rowid(a));
    let end = crate::source::read_rows_until(
        conn,
        table,
        after.as_ref(),
        range.map(|(_, u)| u),
        None,
        |row| {
            for (i, (p, spec)) in profs.iter_mut().zip(specs).enumerate() {
                let v = row.value(i);
                let clean_text = observe(p, spec, &v);
                if spec
                    .candidate
                    .as_ref()
                    .is_some_and(|c| c.pg_type == crate::convert::PgType::Numeric)
                {
                    if let Some((i, f)) = value_digits(v) {
                        p.max_int_digits = p.max_int_digits.max(i as u64);
                        p.max_frac_digits = p.max_frac_digits.max(f as u64);
                    }
                }
                // Valid UTF-8 text without NUL is what a plain text conversion accepts: no need
                // to convert it again (profiling is a full extra scan; keep it cheap).
                let known_ok = clean_text
                    && matches!(v, ValueRef::Text(_))
                    && spec
                        .candidate
                        .as_ref()
                        .is_some_and(|c| c.pg_type == crate::convert::PgType::Text);
                if let (Some(c), false) = (&spec.candidate, known_ok) {
                    scratch.clear();
                    if let Err(e) = c.encode(v, &mut scratch) {
                        p.rejects += 1;
                        if p.samples.len() < MAX_SAMPLES {
                            p.samples.push(RejectSample {
                                key: row.key_display(table),
                                value: display_sqlite(&v),
                                reason: e.0,
                            });
                        }
                    }
                }
                if matches!(v, ValueRef::Text(_) | ValueRef::Blob(_))
                    && p.text_samples.len() < MAX_SAMPLES
                    && (p.invalid_utf8 + p.nul_bytes) as usize > p.text_samples.len()
                {
                    let (ValueRef::Text(b) | ValueRef::Blob(b)) = v else {
                        continue;
                    };
                    let reason = if std::str::from_utf8(b).is_err() {
                        "not valid UTF-8"
                    } else {
                        "contains a NUL byte"
                    };
                    p.text_samples.push(RejectSample {
                        key: row.key_display(table),
                        value: display_sqlite(&v),
                        reason: reason.into(),
                    });
                }
            }
            Ok(true)
        },
    )?;
    Ok((end.rows, profs))
}

fn bump(m: &mut BTreeMap<String, u64>, k: &str) {
    bump_by(m, k, 1)
}

fn bump_by(m: &mut BTreeMap<String, u64>, k: &str, n: u64) {
    if let Some(v) = m.get_mut(k) {
        *v += n;
    } else if m.len() < 16 {
        m.insert(k.to_string(), n);
    } else {
        *m.entry("(other)".into()).or_default() += n;
    }
}

impl ColumnProfile {
    /// Fold the profile of a later range of the same column into this one.
    pub fn merge(&mut self, o: ColumnProfile) {
        self.nulls += o.nulls;
        self.integers += o.integers;
        self.reals += o.reals;
        self.texts += o.texts;
        self.blobs += o.blobs;
        let mm = |a: Option<i64>, b: Option<i64>, f: fn(i64, i64) -> i64| match (a, b) {
            (Some(x), Some(y)) => Some(f(x, y)),
            (x, y) => x.or(y),
        };
        self.int_min = mm(self.int_min, o.int_min, i64::min);
        self.int_max = mm(self.int_max, o.int_max, i64::max);
        let fm = |a: Option<f64>, b: Option<f64>, f: fn(f64, f64) -> f64| match (a, b) {
            (Some(x), Some(y)) => Some(f(x, y)),
            (x, y) => x.or(y),
        };
        self.real_min = fm(self.real_min, o.real_min, f64::min);
        self.real_max = fm(self.real_max, o.real_max, f64::max);
        self.non_finite += o.non_finite;
        self.negative_zero += o.negative_zero;
        self.ints_beyond_f64 += o.ints_beyond_f64;
        self.max_len = self.max_len.max(o.max_len);
        self.invalid_utf8 += o.invalid_utf8;
        self.nul_bytes += o.nul_bytes;
        self.too_long += o.too_long;
        self.empty_strings += o.empty_strings;
        self.max_int_digits = self.max_int_digits.max(o.max_int_digits);
        self.max_frac_digits = self.max_frac_digits.max(o.max_frac_digits);
        for (k, v) in o.epochs {
            bump_by(&mut self.epochs, &k, v);
        }
        for (k, v) in o.date_formats {
            bump_by(&mut self.date_formats, &k, v);
        }
        for (k, v) in o.spellings {
            bump_by(&mut self.spellings, &k, v);
        }
        self.rejects += o.rejects;
        self.samples.extend(o.samples);
        self.samples.truncate(MAX_SAMPLES);
        self.text_samples.extend(o.text_samples);
        self.text_samples.truncate(MAX_SAMPLES);
    }
}

/// Count one value; returns true for text/blob that is valid UTF-8 without NUL.
fn observe(p: &mut ColumnProfile, spec: &ProfileSpec, v: &ValueRef<'_>) -> bool {
    match *v {
        ValueRef::Null => p.nulls += 1,
        ValueRef::Integer(i) => {
            p.integers += 1;
            p.int_min = Some(p.int_min.map_or(i, |m| m.min(i)));
            p.int_max = Some(p.int_max.map_or(i, |m| m.max(i)));
            if (i as f64) as i128 != i as i128 {
                p.ints_beyond_f64 += 1;
            }
            if spec.datetime {
                let u = match EpochUnit::guess(i) {
                    EpochUnit::S => "s",
                    EpochUnit::Ms => "ms",
                    EpochUnit::Us => "us",
                    EpochUnit::Ns => "ns",
                };
                bump(&mut p.epochs, u);
            }
            if spec.boolean {
                bump(&mut p.spellings, &format!("{i}"));
            }
        }
        ValueRef::Real(f) => {
            p.reals += 1;
            if f.is_finite() {
                p.real_min = Some(p.real_min.map_or(f, |m| m.min(f)));
                p.real_max = Some(p.real_max.map_or(f, |m| m.max(f)));
            } else {
                p.non_finite += 1;
            }
            if f == 0.0 && f.is_sign_negative() {
                p.negative_zero += 1;
            }
            if spec.datetime {
                bump(
                    &mut p.epochs,
                    if f.abs() < 1e7 {
                        "julian-day"
                    } else {
                        "real-epoch"
                    },
                );
            }
            if spec.boolean {
                bump(&mut p.spellings, &format!("{f:?}"));
            }
        }
        ValueRef::Text(b) | ValueRef::Blob(b) => {
            if matches!(v, ValueRef::Text(_)) {
                p.texts += 1;
                if b.is_empty() {
                    p.empty_strings += 1;
                }
            } else {
                p.blobs += 1;
            }
            p.max_len = p.max_len.max(b.len() as u64);
            let s = std::str::from_utf8(b);
            let mut clean = true;
            if s.is_err() {
                p.invalid_utf8 += 1;
                clean = false;
            } else if memchr0(b) {
                p.nul_bytes += 1;
                clean = false;
            }
            if let (Some(n), Ok(s)) = (spec.varchar, s) {
                if b.len() > n as usize && s.chars().count() > n as usize {
                    p.too_long += 1;
                }
            }
            if matches!(v, ValueRef::Text(_)) {
                if spec.datetime {
                    let f = s.ok().and_then(parse_datetime).map(|d| d.format);
                    let k = match f {
                        Some(DateFormat::IsoDate) => "YYYY-MM-DD",
                        Some(DateFormat::IsoDateTime) => "YYYY-MM-DD HH:MM:SS[.f]",
                        Some(DateFormat::IsoDateTimeOffset) => "YYYY-MM-DDTHH:MM:SS[.f]±HH:MM",
                        Some(DateFormat::SlashDate) => "YYYY/MM/DD[ HH:MM:SS]",
                        Some(DateFormat::Rfc2822) => "RFC 2822",
                        None => "unrecognised",
                    };
                    bump(&mut p.date_formats, k);
                }
                if spec.boolean {
                    let k = s
                        .map(|s| s.to_string())
                        .unwrap_or_else(|_| "(invalid UTF-8)".into());
                    bump(&mut p.spellings, &format!("{k:?}"));
                }
            }
            return clean;
        }
    }
    false
}

fn memchr0(b: &[u8]) -> bool {
    b.contains(&0)
}
