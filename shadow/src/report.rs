//! Reports over the mismatch store, for engineers deciding whether a route may move.
//!
//! [`Report`] groups mismatches by route, then by field and kind, with counts, the share of
//! compared requests, first and last seen, sample ids and an example; it renders as text,
//! JSON or one self-contained HTML file (inline CSS, no external assets, everything escaped).
//! [`render_show`] prints one mismatch with both bodies' unified diff; [`render_noise`] the
//! learned noise.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::compare::unified_diff;
use crate::error::ShadowError;
use crate::metrics::Outcome;
use crate::store::{now_ms, MismatchRecord, NoiseRow, Store, StoredBody};

/// Sample ids listed per group.
const SAMPLES: usize = 5;

/// What to report on.
#[derive(Debug, Clone, Default)]
pub struct ReportOptions {
    /// Only this route.
    pub route: Option<String>,
    /// Only since this time, ms since the Unix epoch.
    pub since_ms: Option<i64>,
}

/// A whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// When it was made (RFC 3339).
    pub generated_at: String,
    /// The `--since` bound, if any (RFC 3339).
    pub since: Option<String>,
    /// The store it was made from.
    pub store: String,
    /// One entry per route, by name.
    pub routes: Vec<RouteReport>,
}

/// One route's part.
#[derive(Debug, Clone, Serialize)]
pub struct RouteReport {
    /// The route name.
    pub route: String,
    /// Requests whose two responses were compared (match + mismatch + noise).
    pub compared: u64,
    /// Requests by result (`match`, `mismatch`, `noise`, `error`, `dropped`, `skipped`).
    pub results: BTreeMap<String, u64>,
    /// Differences by field and kind, most frequent first.
    pub groups: Vec<Group>,
}

/// One field and kind of difference on one route.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    /// The generalised field (`/*/updated_at`, `status`, `header:content-type`, `body`).
    pub field: String,
    /// The kind (`value`, `missing`, ...).
    pub kind: String,
    /// Stored mismatches showing it (retention may have removed older ones, while request
    /// counts are kept for `keep_days`).
    pub count: u64,
    /// `count` as a percentage of compared requests (absent when none were counted).
    pub percent_of_compared: Option<f64>,
    /// First seen (RFC 3339).
    pub first_seen: String,
    /// Last seen (RFC 3339).
    pub last_seen: String,
    /// The newest mismatch ids showing it (for `ficus shadow show ID`).
    pub sample_ids: Vec<i64>,
    /// The legacy value in the newest sample (JSON text, clipped).
    pub example_legacy: Option<String>,
    /// The new value in the newest sample (JSON text, clipped).
    pub example_new: Option<String>,
}

/// Formats ms since the Unix epoch as RFC 3339 (UTC, milliseconds).
pub fn format_time(ms: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&fmt).unwrap_or_else(|_| ms.to_string())
}

/// Parses `--since` ([`ficus_core::since`]: RFC 3339, a UTC date or date-time, or an age
/// before `now_ms` like `2h`). Returns ms since the Unix epoch.
pub fn parse_since(s: &str, now_ms: i64) -> Result<i64, ShadowError> {
    let now = ficus_core::stamp::from_unix_us(now_ms.saturating_mul(1000))
        .ok_or_else(|| ShadowError::Since(ficus_core::since::SinceError(s.to_string())))?;
    let t = ficus_core::since::parse_since(s, now)?;
    Ok(ficus_core::stamp::unix_us(t).div_euclid(1000))
}

impl Report {
    /// Builds a report from the store.
    pub fn build(store: &Store, opts: &ReportOptions) -> Result<Report, ShadowError> {
        let route = opts.route.as_deref();
        let counts = store.counts(opts.since_ms, route)?;
        let rows = store.field_rows(opts.since_ms, route)?;
        let mut groups: BTreeMap<String, HashMap<(String, String), Group>> = BTreeMap::new();
        let mut order: HashMap<String, Vec<(String, String)>> = HashMap::new();
        // Rows come newest first: the first row of a group gives its example.
        for row in rows {
            let per_route = groups.entry(row.route.clone()).or_default();
            let key = (row.field.clone(), row.kind.clone());
            let g = per_route.entry(key.clone()).or_insert_with(|| {
                order.entry(row.route.clone()).or_default().push(key);
                Group {
                    field: row.field.clone(),
                    kind: row.kind.clone(),
                    count: 0,
                    percent_of_compared: None,
                    first_seen: String::new(),
                    last_seen: format_time(row.time_ms),
                    sample_ids: Vec::new(),
                    example_legacy: row.legacy.clone(),
                    example_new: row.new.clone(),
                }
            });
            g.count += 1;
            g.first_seen = format_time(row.time_ms);
            if g.sample_ids.len() < SAMPLES {
                g.sample_ids.push(row.mismatch_id);
            }
        }
        let mut names: Vec<String> = counts.keys().chain(groups.keys()).cloned().collect();
        names.sort();
        names.dedup();
        let routes = names
            .into_iter()
            .map(|name| {
                let c = counts.get(&name).cloned().unwrap_or_default();
                let get = |o: Outcome| c.get(&o).copied().unwrap_or(0);
                let compared = get(Outcome::Match) + get(Outcome::Mismatch) + get(Outcome::Noise);
                let results = Outcome::ALL
                    .iter()
                    .map(|o| (o.as_str().to_string(), get(*o)))
                    .collect();
                let mut list: Vec<Group> = groups
                    .remove(&name)
                    .map(|m| m.into_values().collect())
                    .unwrap_or_default();
                for g in &mut list {
                    g.percent_of_compared =
                        (compared > 0).then(|| g.count as f64 * 100.0 / compared as f64);
                }
                list.sort_by(|a, b| {
                    b.count
                        .cmp(&a.count)
                        .then_with(|| a.field.cmp(&b.field))
                        .then_with(|| a.kind.cmp(&b.kind))
                });
                RouteReport {
                    route: name,
                    compared,
                    results,
                    groups: list,
                }
            })
            .collect();
        Ok(Report {
            generated_at: format_time(now_ms()),
            since: opts.since_ms.map(format_time),
            store: store.path().display().to_string(),
            routes,
        })
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".to_string())
    }

    /// Plain text for a terminal.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = write!(
            out,
            "shadow report from {} at {}",
            self.store, self.generated_at
        );
        if let Some(s) = &self.since {
            let _ = write!(out, " (since {s})");
        }
        out.push('\n');
        if self.routes.is_empty() {
            out.push_str("\nno shadow traffic recorded");
            out.push_str(if self.since.is_some() {
                " in this period\n"
            } else {
                "\n"
            });
        }
        for r in &self.routes {
            let _ = writeln!(out, "\nroute {}: {}", r.route, summary(r));
            if r.groups.is_empty() {
                continue;
            }
            let fw = r
                .groups
                .iter()
                .map(|g| display_field(&g.field).chars().count())
                .max()
                .unwrap_or(5)
                .max(5);
            let _ = writeln!(
                out,
                "  {:>6} {:>8}  {:<12}  {:<fw$}  {:<19}  {:<19}  {:<20}  EXAMPLE (legacy -> new)",
                "COUNT", "%CMP", "KIND", "FIELD", "FIRST SEEN", "LAST SEEN", "SAMPLE IDS"
            );
            for g in &r.groups {
                let ids: Vec<String> = g.sample_ids.iter().map(i64::to_string).collect();
                let line = format!(
                    "  {:>6} {:>8}  {:<12}  {:<fw$}  {:<19}  {:<19}  {:<20}  {}",
                    g.count,
                    percent(g.percent_of_compared),
                    g.kind,
                    display_field(&g.field),
                    short_time(&g.first_seen),
                    short_time(&g.last_seen),
                    ids.join(","),
                    example(g),
                );
                out.push_str(line.trim_end());
                out.push('\n');
            }
        }
        out
    }

    /// One self-contained HTML page.
    pub fn to_html(&self) -> String {
        let mut out = String::new();
        out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
        out.push_str("<title>ficus shadow report</title>\n<style>\n");
        out.push_str(HTML_CSS);
        out.push_str("</style>\n</head>\n<body>\n<h1>ficus shadow report</h1>\n<p class=\"meta\">");
        let _ = write!(
            out,
            "Store <code>{}</code>, generated {}",
            esc(&self.store),
            esc(&self.generated_at)
        );
        if let Some(s) = &self.since {
            let _ = write!(out, ", since {}", esc(s));
        }
        out.push_str(".</p>\n");
        if self.routes.is_empty() {
            out.push_str("<p>No shadow traffic recorded.</p>\n");
        }
        for r in &self.routes {
            let _ = write!(
                out,
                "<section>\n<h2>Route <code>{}</code></h2>\n<p class=\"summary\">{}</p>\n",
                esc(&r.route),
                esc(&summary(r))
            );
            if r.groups.is_empty() {
                out.push_str("<p>No mismatches.</p>\n</section>\n");
                continue;
            }
            out.push_str("<table>\n<thead><tr><th>Count</th><th>% of compared</th><th>Kind</th><th>Field</th><th>First seen</th><th>Last seen</th><th>Sample ids</th><th>Legacy (example)</th><th>New (example)</th></tr></thead>\n<tbody>\n");
            for g in &r.groups {
                let ids: Vec<String> = g.sample_ids.iter().map(i64::to_string).collect();
                let _ = writeln!(
                    out,
                    "<tr><td class=\"n\">{}</td><td class=\"n\">{}</td><td><span class=\"kind k-{}\">{}</span></td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td><code class=\"old\">{}</code></td><td><code class=\"new\">{}</code></td></tr>",
                    g.count,
                    esc(&percent(g.percent_of_compared)),
                    esc(&g.kind),
                    esc(&g.kind),
                    esc(&display_field(&g.field)),
                    esc(&g.first_seen),
                    esc(&g.last_seen),
                    esc(&ids.join(", ")),
                    esc(g.example_legacy.as_deref().unwrap_or("")),
                    esc(g.example_new.as_deref().unwrap_or("")),
                );
            }
            out.push_str("</tbody>\n</table>\n</section>\n");
        }
        out.push_str("<p class=\"meta\">Show one mismatch with <code>ficus shadow show ID</code>.</p>\n</body>\n</html>\n");
        out
    }
}

const HTML_CSS: &str = "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1d2329;background:#fff}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
.meta,.summary{color:#55606b}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #dde2e6;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f5f7}td.n{text-align:right;font-variant-numeric:tabular-nums}
code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;word-break:break-all}
code.old{color:#a1260d}code.new{color:#17692e}
.kind{display:inline-block;padding:0 .4rem;border-radius:.6rem;background:#e8ecef;font-size:.8rem}
.k-value,.k-type{background:#fde7c8}.k-missing,.k-extra{background:#f9d3d3}.k-order,.k-array_length{background:#dbe7fb}.k-status{background:#f4c2c2}
";

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn display_field(f: &str) -> String {
    if f.is_empty() {
        "(root)".to_string()
    } else {
        f.to_string()
    }
}

fn summary(r: &RouteReport) -> String {
    let get = |k: &str| r.results.get(k).copied().unwrap_or(0);
    let share = |n: u64| {
        if r.compared == 0 {
            String::new()
        } else {
            format!(" ({:.1}%)", n as f64 * 100.0 / r.compared as f64)
        }
    };
    format!(
        "{} compared: {} match{}, {} mismatch{}, {} noise{}; {} error, {} dropped, {} skipped",
        r.compared,
        get("match"),
        share(get("match")),
        get("mismatch"),
        share(get("mismatch")),
        get("noise"),
        share(get("noise")),
        get("error"),
        get("dropped"),
        get("skipped"),
    )
}

fn percent(p: Option<f64>) -> String {
    p.map_or_else(|| "-".to_string(), |p| format!("{p:.2}%"))
}

/// `2026-01-31T12:00:00.123Z` → `2026-01-31 12:00:00`.
fn short_time(t: &str) -> String {
    t.get(..19)
        .map_or_else(|| t.to_string(), |s| s.replace('T', " "))
}

fn example(g: &Group) -> String {
    let clip = |s: &str| -> String {
        if s.chars().count() > 40 {
            let mut c: String = s.chars().take(40).collect();
            c.push('…');
            c
        } else {
            s.to_string()
        }
    };
    match (&g.example_legacy, &g.example_new) {
        (None, None) => String::new(),
        (l, n) => format!(
            "{} -> {}",
            l.as_deref().map_or("(absent)".to_string(), clip),
            n.as_deref().map_or("(absent)".to_string(), clip)
        ),
    }
}

/// Object keys in sorted order, so pretty-printed bodies diff line by line whatever order
/// each side wrote them in.
fn sorted(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// A body as text for diffing: JSON pretty-printed with sorted keys, anything else as
/// (lossy) UTF-8.
fn body_text(b: &StoredBody) -> String {
    let mut text = match serde_json::from_slice::<Value>(&b.data) {
        Ok(v) => serde_json::to_string_pretty(&sorted(v)).unwrap_or_default(),
        Err(_) => String::from_utf8_lossy(&b.data).into_owned(),
    };
    if !text.ends_with('\n') && !text.is_empty() {
        text.push('\n');
    }
    if b.truncated {
        text.push_str("[… body truncated]\n");
    }
    text
}

const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const CYAN: &str = "\x1b[36m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// One mismatch for a terminal: what was requested, the differences, and both bodies'
/// unified diff (`--- legacy` / `+++ new`), in ANSI colour when `color`.
pub fn render_show(rec: &MismatchRecord, color: bool) -> String {
    let paint = |code: &str, s: &str| {
        if color {
            format!("{code}{s}{RESET}")
        } else {
            s.to_string()
        }
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        paint(BOLD, &format!("mismatch {} on route {}", rec.id, rec.route))
    );
    let _ = writeln!(out, "time:       {}", format_time(rec.time_ms));
    let _ = writeln!(out, "request:    {} {}", rec.method, rec.path);
    let _ = writeln!(out, "request id: {}", rec.request_id);
    let _ = writeln!(
        out,
        "primary:    {} (served the client)",
        rec.primary.as_str()
    );
    let _ = writeln!(
        out,
        "status:     legacy {}, new {}",
        rec.legacy.status, rec.new.status
    );
    let _ = writeln!(
        out,
        "\ndifferences{}:",
        if rec.diff_truncated {
            " (first ones only)"
        } else {
            ""
        }
    );
    for e in &rec.diff {
        let v = |x: &Option<Value>| x.as_ref().map_or("(absent)".to_string(), Value::to_string);
        let _ = writeln!(
            out,
            "  {:<12} {}  {} -> {}",
            e.kind.as_str(),
            display_field(&e.path),
            paint(RED, &v(&e.legacy)),
            paint(GREEN, &v(&e.new))
        );
    }
    if !rec.request_headers.is_empty() {
        out.push_str("\nrequest headers:\n");
        for (k, v) in &rec.request_headers {
            let _ = writeln!(out, "  {k}: {v}");
        }
    }
    if !rec.request_body.data.is_empty() {
        let _ = write!(out, "\nrequest body:\n{}", body_text(&rec.request_body));
    }
    let (l, n) = (body_text(&rec.legacy.body), body_text(&rec.new.body));
    out.push_str("\nbody diff:\n");
    if l == n {
        out.push_str("  (bodies identical)\n");
        return out;
    }
    let (diff, _, _) = unified_diff(&l, &n, "legacy", "new");
    for line in diff.lines() {
        let styled = if line.starts_with("---") || line.starts_with("+++") {
            paint(BOLD, line)
        } else if line.starts_with("@@") {
            paint(CYAN, line)
        } else if line.starts_with('-') {
            paint(RED, line)
        } else if line.starts_with('+') {
            paint(GREEN, line)
        } else {
            line.to_string()
        };
        out.push_str(&styled);
        out.push('\n');
    }
    out
}

/// Learned noise as a table.
pub fn render_noise(rows: &[NoiseRow]) -> String {
    if rows.is_empty() {
        return "no noise learned (set learn_noise on a route to learn it)\n".to_string();
    }
    let rw = rows.iter().map(|r| r.route.len()).max().unwrap_or(5).max(5);
    let fw = rows
        .iter()
        .map(|r| display_field(&r.field).chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!(
        "{:<rw$}  {:<fw$}  {:<12}  {:>6}  {:>6}  {:<19}  {}\n",
        "ROUTE", "FIELD", "KIND", "SEEN", "PROBES", "FIRST SEEN", "LAST SEEN"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<rw$}  {:<fw$}  {:<12}  {:>6}  {:>6}  {:<19}  {}",
            r.route,
            display_field(&r.field),
            r.kind.as_str(),
            r.count,
            r.probes,
            short_time(&format_time(r.first_ms)),
            short_time(&format_time(r.last_ms)),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_forms() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_since("90s", now).unwrap(), now - 90_000);
        assert_eq!(parse_since("2h", now).unwrap(), now - 7_200_000);
        assert_eq!(parse_since("7d", now).unwrap(), now - 7 * 86_400_000);
        assert_eq!(parse_since("2026-01-31", now).unwrap(), 1_769_817_600_000);
        assert_eq!(
            parse_since("2026-01-31T00:00:01Z", now).unwrap(),
            1_769_817_601_000
        );
        assert!(parse_since("yesterday", now).is_err());
        assert!(parse_since("5x", now).is_err());
    }

    #[test]
    fn escaping() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn time_format() {
        assert_eq!(format_time(1_769_817_601_234), "2026-01-31T00:00:01.234Z");
        assert_eq!(
            short_time("2026-01-31T00:00:01.234Z"),
            "2026-01-31 00:00:01"
        );
    }
}
