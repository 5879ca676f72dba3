//! What the store holds, as Rust values: a [`MismatchRecord`] with its [`StoredResponse`]s and
//! [`StoredBody`]s, learned noise ([`NoiseRow`]), the grouping rows reports read.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize, Serializer};

use crate::capture::Side;
use crate::compare::{DiffEntry, DiffKind};

/// Stored bodies are cut to this many bytes (after redaction).
pub const STORED_BODY_BYTES: usize = 64 * 1024;

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn lossy<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(bytes))
}

/// A stored body (redacted, cut to [`STORED_BODY_BYTES`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StoredBody {
    /// The bytes (serialised as lossy UTF-8).
    #[serde(serialize_with = "lossy")]
    pub data: Vec<u8>,
    /// Whether the body was cut.
    pub truncated: bool,
}

impl StoredBody {
    /// Cuts `data` to [`STORED_BODY_BYTES`].
    pub(crate) fn cut(mut data: Vec<u8>) -> StoredBody {
        let truncated = data.len() > STORED_BODY_BYTES;
        data.truncate(STORED_BODY_BYTES);
        StoredBody { data, truncated }
    }
}

/// One side's stored response.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StoredResponse {
    /// The status code.
    pub status: u16,
    /// Headers, secrets fingerprinted.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: StoredBody,
}

/// One mismatched exchange as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MismatchRecord {
    /// Store id (0 before insertion).
    pub id: i64,
    /// When it was compared, ms since the Unix epoch.
    pub time_ms: i64,
    /// The configured route name.
    pub route: String,
    /// The request method.
    pub method: String,
    /// Path and query (secret query parameters redacted).
    pub path: String,
    /// The proxy's request id.
    pub request_id: String,
    /// Which side served the client.
    pub primary: Side,
    /// Request headers, secrets fingerprinted.
    pub request_headers: Vec<(String, String)>,
    /// The request body.
    pub request_body: StoredBody,
    /// The legacy side's response.
    pub legacy: StoredResponse,
    /// The new side's response.
    pub new: StoredResponse,
    /// The differences (learned noise excluded).
    pub diff: Vec<DiffEntry>,
    /// More differences existed than were listed.
    pub diff_truncated: bool,
}

/// One learned noise field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoiseRow {
    /// The route.
    pub route: String,
    /// The generalised field (`/*/generated_at`, `header:etag`, ...).
    pub field: String,
    /// The kind of difference seen between two primary answers.
    pub kind: DiffKind,
    /// How many probes showed it.
    pub count: u64,
    /// Probes made on the route so far.
    pub probes: u64,
    /// First and last seen, ms since the Unix epoch.
    pub first_ms: i64,
    /// Last seen.
    pub last_ms: i64,
}

/// One row of `mismatch_fields`, for reports.
#[derive(Debug, Clone)]
pub(crate) struct FieldRow {
    pub route: String,
    pub field: String,
    pub kind: String,
    pub mismatch_id: i64,
    pub time_ms: i64,
    pub legacy: Option<String>,
    pub new: Option<String>,
}
