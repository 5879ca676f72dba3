//! Collations the SQLite source names but SQLite does not know: applications register their
//! own (Anki's `unicase`), and without them SQLite cannot compare the column's values
//! (`no such collation sequence: unicase`). ficus registers a fallback for every such name
//! on each connection it opens to the source, so every row is read:
//!
//! - names that say case-insensitive — containing `nocase`, `unicase`, `icase` or
//!   `caseless`, or a `ci` word (`utf8_general_ci`, `und-ci`) — compare case-insensitively
//!   over Unicode (simple case folding, the `unicase` crate: what Anki registers);
//! - any other unknown name compares bytes (binary), SQLite's own default.
//!
//! The plan warns about each column using one, and gives PostgreSQL a nondeterministic ICU
//! collation (`ficus_ci`) where the fallback is case-insensitive.

use std::cmp::Ordering;

use rusqlite::Connection;

/// SQLite's built-in collations.
const BUILT_IN: [&str; 3] = ["binary", "nocase", "rtrim"];

/// The name of the case-insensitive PostgreSQL collation ficus creates in the target schema.
pub const PG_CI_COLLATION: &str = "ficus_ci";

/// The statement creating [`PG_CI_COLLATION`] in `schema` (quoted).
pub fn pg_ci_collation_sql(schema_quoted: &str) -> String {
    format!(
        "CREATE COLLATION IF NOT EXISTS {schema_quoted}.\"{PG_CI_COLLATION}\" \
         (provider = icu, locale = 'und-u-ks-level2', deterministic = false)"
    )
}

/// How ficus compares values under a collation SQLite does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Unicode case-insensitive.
    CaseInsensitive,
    /// Byte order.
    Binary,
}

impl Fallback {
    /// In words, for reports.
    pub fn describe(self) -> &'static str {
        match self {
            Fallback::CaseInsensitive => "case-insensitive Unicode comparison",
            Fallback::Binary => "binary comparison",
        }
    }
}

/// The fallback for collation `name`, or None for SQLite's own (BINARY, NOCASE, RTRIM).
pub fn fallback_for(name: &str) -> Option<Fallback> {
    let l = name.to_ascii_lowercase();
    if BUILT_IN.contains(&l.as_str()) {
        return None;
    }
    let ci = ["nocase", "unicase", "icase", "caseless"]
        .iter()
        .any(|k| l.contains(k))
        || l.split(|c: char| !c.is_ascii_alphanumeric())
            .any(|w| w == "ci");
    Some(if ci {
        Fallback::CaseInsensitive
    } else {
        Fallback::Binary
    })
}

fn case_insensitive(a: &str, b: &str) -> Ordering {
    unicase::UniCase::new(a).cmp(&unicase::UniCase::new(b))
}

fn needed(conn: &Connection, name: &str) -> rusqlite::Result<()> {
    match fallback_for(name) {
        Some(Fallback::CaseInsensitive) => conn.create_collation(name, case_insensitive),
        _ => conn.create_collation(name, |a: &str, b: &str| a.as_bytes().cmp(b.as_bytes())),
    }
}

/// Register the fallback on `conn` for every collation SQLite does not know, when first needed.
pub fn register_fallbacks(conn: &Connection) -> rusqlite::Result<()> {
    conn.collation_needed(needed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(fallback_for("unicase"), Some(Fallback::CaseInsensitive));
        assert_eq!(
            fallback_for("utf8_general_ci"),
            Some(Fallback::CaseInsensitive)
        );
        assert_eq!(fallback_for("NOCASE_UTF8"), Some(Fallback::CaseInsensitive));
        assert_eq!(fallback_for("decimal"), Some(Fallback::Binary));
        assert_eq!(fallback_for("NoCase"), None);
        assert_eq!(case_insensitive("Äpfel", "äPFEL"), Ordering::Equal);
    }
}
