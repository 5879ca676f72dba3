//! [`Side`]: which of the two backends — the monolith or the extracted service.

use serde::{Deserialize, Serialize};

/// Which backend: the monolith or the extracted service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The monolith.
    Legacy,
    /// The extracted service.
    New,
}

impl Side {
    /// Both sides, legacy first (the order of [`Side::index`]).
    pub const BOTH: [Side; 2] = [Side::Legacy, Side::New];

    /// `legacy` or `new`: the spelling in configuration, headers, logs, metrics and stores.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Legacy => "legacy",
            Side::New => "new",
        }
    }

    /// The inverse of [`Side::as_str`], ASCII case-insensitive (a header value may be `New`).
    pub fn parse(s: &str) -> Option<Side> {
        Side::parse_bytes(s.as_bytes())
    }

    /// [`Side::parse`] for raw header bytes.
    pub fn parse_bytes(s: &[u8]) -> Option<Side> {
        if s.eq_ignore_ascii_case(b"legacy") {
            Some(Side::Legacy)
        } else if s.eq_ignore_ascii_case(b"new") {
            Some(Side::New)
        } else {
            None
        }
    }

    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::Legacy => Side::New,
            Side::New => Side::Legacy,
        }
    }

    /// Index into per-side arrays: legacy 0, new 1.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Side {
    type Err = String;
    fn from_str(s: &str) -> Result<Side, String> {
        Side::parse(s).ok_or_else(|| format!("{s:?} is not a side (legacy or new)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelling_round_trips() {
        for s in Side::BOTH {
            assert_eq!(Side::parse(s.as_str()), Some(s));
            assert_eq!(s.other().other(), s);
            assert_eq!(Side::BOTH[s.index()], s);
        }
        assert_eq!(Side::parse_bytes(b"NEW"), Some(Side::New));
        assert_eq!(Side::parse("old"), None);
        assert_eq!(serde_json_like(Side::Legacy), "legacy");
    }

    fn serde_json_like(s: Side) -> String {
        s.to_string()
    }
}
