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
//!
//! - `types` — [`PgType`], [`EpochUnit`], [`Conversion`], [`ConvertError`];
//! - `encode` — [`Conversion::encode`]: the dispatch, booleans, integers, doubles, text, JSON;
//! - `datetime` — epochs, Julian days and date/time text; the calendar is the `time` crate's;
//! - `numeric` — decimal syntax and PostgreSQL's `numeric` binary form both ways;
//! - `canon` — the canonical encoding, and values rendered for people.

mod canon;
mod datetime;
mod encode;
mod numeric;
mod types;

pub use self::canon::{canon_field, display_bytes, display_field, display_sqlite, raw_bytes};
pub(crate) use self::datetime::{
    date_text, hms, parse_datetime, split_us, utc_text, DateFormat, PG_EPOCH_DAYS, PG_EPOCH_US,
};
pub(crate) use self::encode::parse_bool_text;
pub(crate) use self::numeric::value_digits;
pub(crate) use self::types::parse_precision;
pub use self::types::{storage_class, Conversion, ConvertError, EpochUnit, PgType};
