//! What the watch says: its events ([`WatchEvent`], one JSON line each in the report file),
//! their text for people, and the [`WatchSummary`] it returns.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::convert::utc_text;
use crate::drift::{drift_line, Drift};

/// How a difference was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FoundBy {
    /// Re-verifying a key the proxy recorded.
    WrittenKey,
    /// A sweep.
    Sweep,
}

/// What the watch reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WatchEvent {
    /// A row that still differs after its re-check.
    Drift {
        /// When it was reported.
        at: String,
        /// How it was found.
        found_by: FoundBy,
        /// The route of the write, for a written key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        route: Option<String>,
        /// The row and how it differs.
        #[serde(flatten)]
        drift: Drift,
    },
    /// A row reported drifting agrees again.
    Resolved {
        /// When it was seen agreeing.
        at: String,
        /// The table.
        table: String,
        /// The row's key as JSON.
        key: String,
    },
    /// The proxy recorded a write that succeeded on one side only.
    DivergentWrite {
        /// When it was read from the log.
        at: String,
        /// When the proxy stamped the write.
        written_at: String,
        /// The route.
        route: String,
        /// The value of the route's key.
        key: String,
        /// The HTTP method.
        method: String,
        /// `legacy` or `new`: whose answer the client got.
        primary_side: String,
        /// The legacy side's HTTP status (none: not sent or transport failure).
        legacy_status: Option<i64>,
        /// The new side's HTTP status.
        new_status: Option<i64>,
        /// The table the route's keys were found in.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        table: Option<String>,
    },
    /// A sweep finished.
    Sweep {
        /// When it finished.
        at: String,
        /// `full` or `watermark (updated_at >= …)`.
        kind: String,
        /// The tables swept.
        tables: Vec<String>,
        /// Rows compared.
        rows_checked: u64,
        /// Rows that differed (to be re-checked before they are reported).
        differing: u64,
        /// How long it took (by the watch's clock).
        seconds: f64,
    },
    /// Which table and column a route's keys were found in.
    RouteMapped {
        /// When it was mapped.
        at: String,
        /// The route.
        route: String,
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// Configured, or guessed from which column holds a key.
        how: String,
    },
    /// Something the operator should know (a key that is not valid for its column …).
    Warning {
        /// When.
        at: String,
        /// What.
        message: String,
    },
}

/// What a watch found, when it returns.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WatchSummary {
    /// No row drifting and no divergent write seen.
    pub clean: bool,
    /// Rows drifting now.
    pub drift: Vec<Drift>,
    /// Divergent writes seen.
    pub divergent_writes: u64,
    /// Written keys read from the proxy state.
    pub written_keys: u64,
    /// Rows compared (key checks and sweeps).
    pub keys_checked: u64,
    /// Sweeps done.
    pub sweeps: u64,
    /// Tables watched.
    pub tables: Vec<String>,
    /// Route → `table.column` and how it was chosen.
    pub routes: BTreeMap<String, String>,
    /// Every warning event's message.
    pub warnings: Vec<String>,
}

impl WatchSummary {
    /// Text for people.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        for (r, m) in &self.routes {
            let _ = writeln!(s, "route {r}: {m}");
        }
        for w in &self.warnings {
            let _ = writeln!(s, "warning: {w}");
        }
        for d in &self.drift {
            let _ = writeln!(s, "{}", drift_line(d));
        }
        let _ = writeln!(
            s,
            "watch: {} table(s), {} written key(s), {} row(s) checked, {} sweep(s): {}{}",
            self.tables.len(),
            self.written_keys,
            self.keys_checked,
            self.sweeps,
            if self.drift.is_empty() {
                "no drift".to_string()
            } else {
                format!("{} DRIFTING row(s)", self.drift.len())
            },
            if self.divergent_writes > 0 {
                format!(", {} DIVERGENT write(s)", self.divergent_writes)
            } else {
                String::new()
            }
        );
        s
    }
}

impl WatchEvent {
    /// One line for people.
    pub fn text(&self) -> String {
        match self {
            WatchEvent::Drift {
                at, found_by, drift, ..
            } => format!(
                "{at} DRIFT ({}) {}",
                match found_by {
                    FoundBy::WrittenKey => "written key",
                    FoundBy::Sweep => "sweep",
                },
                drift_line(drift)
            ),
            WatchEvent::Resolved { at, table, key } => format!("{at} resolved {table} {key}"),
            WatchEvent::DivergentWrite {
                at,
                written_at,
                route,
                key,
                method,
                primary_side,
                legacy_status,
                new_status,
                ..
            } => format!(
                "{at} DIVERGENT WRITE route {route} key {key}: {method} at {written_at}, primary {primary_side}, legacy {} new {}",
                legacy_status.map_or("-".into(), |s| s.to_string()),
                new_status.map_or("-".into(), |s| s.to_string())
            ),
            WatchEvent::Sweep {
                at,
                kind,
                tables,
                rows_checked,
                differing,
                seconds,
            } => format!(
                "{at} {kind} sweep of {}: {rows_checked} row(s) checked, {differing} differing, {seconds:.2} s",
                tables.join(", ")
            ),
            WatchEvent::RouteMapped {
                at,
                route,
                table,
                column,
                how,
            } => format!("{at} route {route} → {table}.{column} ({how})"),
            WatchEvent::Warning { at, message } => format!("{at} warning: {message}"),
        }
    }
}

/// `2025-01-01T10:00:00.000000Z` of µs since 1970: the stamp of every event.
pub(super) fn iso(unix_us: i64) -> String {
    let mut s = utc_text(unix_us);
    s.replace_range(10..11, "T");
    s.push('Z');
    s
}
