//! Quirks: deliberate, realistic differences a side can be started with, so shadow diffing and
//! the demo have something true to find. The same names work on both sides.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// One deliberate difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quirk {
    /// `timestamp-precision`: datetimes always carry six fraction digits, even `.000000`.
    TimestampPrecision,
    /// `ready-order`: `GET /api/tasks/ready` orders ties within a priority by `id` descending
    /// instead of by `task_id`.
    ReadyOrder,
    /// `extra-field`: every task object carries `"service_version": "2"` as its last field.
    ExtraField,
    /// `slow:MS`: every response is delayed by MS milliseconds.
    Slow(Duration),
    /// `beta-accounts`: requests of beta accounts (`X-Account: beta`) get what `extra-field`
    /// adds — a feature flag left on for a few users only.
    BetaAccounts,
}

impl Quirk {
    /// Every quirk name, for help texts (`slow` takes `:MS`).
    pub const NAMES: &'static str =
        "timestamp-precision, ready-order, extra-field, beta-accounts, slow:MS";
}

/// Error of parsing a [`Quirk`] name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown quirk {0:?}: expected one of {names}", names = Quirk::NAMES)]
pub struct ParseQuirkError(String);

impl FromStr for Quirk {
    type Err = ParseQuirkError;

    fn from_str(s: &str) -> Result<Quirk, ParseQuirkError> {
        match s.trim() {
            "timestamp-precision" => Ok(Quirk::TimestampPrecision),
            "ready-order" => Ok(Quirk::ReadyOrder),
            "extra-field" => Ok(Quirk::ExtraField),
            "beta-accounts" => Ok(Quirk::BetaAccounts),
            other => other
                .strip_prefix("slow:")
                .and_then(|ms| ms.trim().parse::<u64>().ok())
                .map(|ms| Quirk::Slow(Duration::from_millis(ms)))
                .ok_or_else(|| ParseQuirkError(s.to_string())),
        }
    }
}

impl fmt::Display for Quirk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quirk::TimestampPrecision => f.write_str("timestamp-precision"),
            Quirk::ReadyOrder => f.write_str("ready-order"),
            Quirk::ExtraField => f.write_str("extra-field"),
            Quirk::BetaAccounts => f.write_str("beta-accounts"),
            Quirk::Slow(d) => write!(f, "slow:{}", d.as_millis()),
        }
    }
}

/// The quirks a running side has, folded into what the code paths ask.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Quirks {
    pub full_micros: bool,
    pub ready_by_id_desc: bool,
    pub extra_field: bool,
    pub beta_accounts: bool,
    /// Sum of every `slow:MS`.
    pub delay: Duration,
}

impl Quirks {
    pub(crate) fn new(list: &[Quirk]) -> Quirks {
        let mut q = Quirks::default();
        for quirk in list {
            match quirk {
                Quirk::TimestampPrecision => q.full_micros = true,
                Quirk::ReadyOrder => q.ready_by_id_desc = true,
                Quirk::ExtraField => q.extra_field = true,
                Quirk::BetaAccounts => q.beta_accounts = true,
                Quirk::Slow(d) => q.delay += *d,
            }
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        for name in [
            "timestamp-precision",
            "ready-order",
            "extra-field",
            "beta-accounts",
            "slow:250",
        ] {
            let q: Quirk = name.parse().unwrap();
            assert_eq!(q.to_string(), name);
        }
        assert_eq!(
            "slow:5".parse::<Quirk>(),
            Ok(Quirk::Slow(Duration::from_millis(5)))
        );
        for bad in ["", "slow", "slow:", "slow:-1", "fast", "extra"] {
            let err = bad.parse::<Quirk>().unwrap_err().to_string();
            assert!(err.contains("expected one of"), "{err}");
        }
    }

    #[test]
    fn slow_quirks_add_up() {
        let q = Quirks::new(&[
            Quirk::Slow(Duration::from_millis(10)),
            Quirk::ExtraField,
            Quirk::Slow(Duration::from_millis(5)),
        ]);
        assert_eq!(q.delay, Duration::from_millis(15));
        assert!(q.extra_field && !q.full_micros && !q.ready_by_id_desc);
    }
}
