//! The vocabulary of conversions: the PostgreSQL types the migrator writes ([`PgType`]), the
//! unit of integer epochs ([`EpochUnit`]), how one column converts ([`Conversion`], chosen by
//! the plan), and why a value did not ([`ConvertError`]).

use rusqlite::types::ValueRef;
use serde::{Deserialize, Serialize};

/// PostgreSQL column types the migrator writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PgType {
    /// `boolean`.
    Boolean,
    /// `smallint` (16 bits).
    Smallint,
    /// `integer` (32 bits).
    Integer,
    /// `bigint`.
    Bigint,
    /// `double precision`.
    Double,
    /// `numeric`.
    Numeric,
    /// `numeric(precision, scale)`: a value with more integer digits than `precision - scale`
    /// or more fraction digits than `scale` does not convert (PostgreSQL would round it).
    Decimal(u16, u16),
    /// `text`.
    Text,
    /// `varchar(n)`.
    Varchar(u32),
    /// `bytea`.
    Bytea,
    /// `timestamp` (without time zone; values are UTC).
    Timestamp,
    /// `timestamptz`.
    Timestamptz,
    /// `date`.
    Date,
    /// `time` (without time zone).
    Time,
    /// `json`.
    Json,
}

impl PgType {
    /// The type names accepted in configuration.
    pub const SUPPORTED: &'static str = "boolean, smallint, integer, bigint, double precision, numeric, numeric(P,S), text, varchar(N), bytea, timestamp, timestamptz, date, time, json";

    /// Parse a type name (`"bigint"`, `"varchar(20)"`, `"timestamp with time zone"`...).
    pub fn parse(s: &str) -> Option<PgType> {
        let l = s.trim().to_ascii_lowercase();
        let l = l.split_whitespace().collect::<Vec<_>>().join(" ");
        Some(match l.as_str() {
            "boolean" | "bool" => PgType::Boolean,
            "smallint" | "int2" => PgType::Smallint,
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
            other if other.starts_with("numeric(") || other.starts_with("decimal(") => {
                let (p, s) = parse_precision(other)?;
                PgType::Decimal(p, s)
            }
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
            PgType::Smallint => "smallint".into(),
            PgType::Integer => "integer".into(),
            PgType::Bigint => "bigint".into(),
            PgType::Double => "double precision".into(),
            PgType::Numeric => "numeric".into(),
            PgType::Decimal(p, s) => format!("numeric({p},{s})"),
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
    pub(super) fn tag(&self) -> u8 {
        match self {
            PgType::Boolean => 1,
            PgType::Smallint | PgType::Integer | PgType::Bigint => 2,
            PgType::Double => 3,
            PgType::Numeric | PgType::Decimal(..) => 4,
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

/// `(p, s)` of a declared `NUMERIC(p, s)` / `DECIMAL(p)` (any type name before the
/// parenthesis; `s` is 0 when omitted): None unless `1 <= p <= 1000` and `s <= p`.
pub(crate) fn parse_precision(decl: &str) -> Option<(u16, u16)> {
    let open = decl.find('(')?;
    let inner = decl[open + 1..].split(')').next()?;
    let mut it = inner.split(',').map(|n| n.trim().parse::<u16>());
    let p = it.next()?.ok()?;
    let s = match it.next() {
        Some(s) => s.ok()?,
        None => 0,
    };
    (it.next().is_none() && (1..=1000).contains(&p) && s <= p).then_some((p, s))
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
    /// Seconds.
    S,
    /// Milliseconds.
    Ms,
    /// Microseconds.
    Us,
    /// Nanoseconds.
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
    pub(super) fn to_micros(self, v: i64) -> Option<i64> {
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
    /// Load an empty string (`''`) as NULL (`empty_string = "null"`; non-text columns only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_as_null: bool,
}

/// Why a value did not convert.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConvertError(pub String);

pub(super) fn err<T>(msg: impl Into<String>) -> Result<T, ConvertError> {
    Err(ConvertError(msg.into()))
}
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

/// `s`, cut to 60 characters for messages.
pub(super) fn clip(s: &str) -> String {
    if s.chars().count() > 60 {
        s.chars().take(60).collect::<String>() + "…"
    } else {
        s.to_string()
    }
}
