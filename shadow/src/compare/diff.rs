//! What a comparison finds: [`DiffEntry`]s of a [`DiffKind`], gathered in a [`Comparison`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// At most this many entries are produced per comparison; [`Comparison::truncated`] says so.
pub const MAX_ENTRIES: usize = 256;

/// What kind of difference an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffKind {
    /// The status codes differ (path `status`).
    Status,
    /// A compared header differs or is on one side only (path `header:NAME`).
    Header,
    /// A JSON value legacy has and new lacks.
    Missing,
    /// A JSON value new has and legacy lacks.
    Extra,
    /// The JSON types differ (string vs number, object vs null, ...).
    Type,
    /// Same type, different value.
    Value,
    /// The arrays have different lengths.
    ArrayLength,
    /// The arrays hold the same elements in a different order.
    Order,
    /// Bodies that are not both JSON differ (path `body`).
    Text,
}

impl DiffKind {
    /// Every kind, in label order.
    pub const ALL: [DiffKind; 9] = [
        DiffKind::Status,
        DiffKind::Header,
        DiffKind::Missing,
        DiffKind::Extra,
        DiffKind::Type,
        DiffKind::Value,
        DiffKind::ArrayLength,
        DiffKind::Order,
        DiffKind::Text,
    ];

    /// The name used in reports, the store and the `kind` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            DiffKind::Status => "status",
            DiffKind::Header => "header",
            DiffKind::Missing => "missing",
            DiffKind::Extra => "extra",
            DiffKind::Type => "type",
            DiffKind::Value => "value",
            DiffKind::ArrayLength => "array_length",
            DiffKind::Order => "order",
            DiffKind::Text => "text",
        }
    }

    /// The inverse of [`DiffKind::as_str`].
    pub fn parse(s: &str) -> Option<DiffKind> {
        DiffKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for DiffKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One difference between the legacy and the new response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffEntry {
    /// Where: a JSON pointer into the body (`""` is the root, `/0/updated_at`), `status`,
    /// `header:NAME` or `body`.
    pub path: String,
    /// `path` with array indices generalised to `*` (`/*/updated_at`): what reports group by
    /// and noise is learned on.
    pub field: String,
    /// What kind of difference.
    pub kind: DiffKind,
    /// The legacy value (absent for `extra`; a summary when large).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy: Option<Value>,
    /// The new value (absent for `missing`; a summary when large).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
}

/// The result of comparing two responses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Comparison {
    /// Every difference found, in document order (status, headers, body).
    pub entries: Vec<DiffEntry>,
    /// For bodies compared as text: the unified diff (`--- legacy` / `+++ new`).
    pub text_diff: Option<String>,
    /// More than [`MAX_ENTRIES`] differences were found; the rest were not listed.
    pub truncated: bool,
}

impl Comparison {
    /// No difference at all.
    pub fn is_match(&self) -> bool {
        self.entries.is_empty()
    }
}
