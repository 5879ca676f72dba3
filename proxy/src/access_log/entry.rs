//! One request's access-log record ([`Entry`]) and how it is written as a line: JSON (one object
//! per line) or logfmt. Formatting runs on the writer thread, never on a worker.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::HeaderValue;
use http::{Method, Uri, Version};
use time::OffsetDateTime;

use crate::config::AccessLogFormat;
use ficus_core::Side;

/// Why the request went where it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// The route's percentage without a sticky key (a random draw, 0 % or 100 %, or a
    /// request missing its key).
    Percent,
    /// The route's percentage applied to the request's sticky key.
    Sticky,
    /// `X-Ficus-Backend` with the override token forced the side.
    Override,
    /// A write that waited for the route's hold, then routed by the split in force after it.
    Hold,
    /// A read sent to the side that took its key's recent write (`read_your_writes_ms`).
    Recent,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Percent => "percent",
            Decision::Sticky => "sticky",
            Decision::Override => "override",
            Decision::Hold => "hold",
            Decision::Recent => "recent",
        }
    }
}

/// One request as the access log records it.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// When the request arrived (after any hold), on the proxy's clock; the writer turns it
    /// into UTC (one clock reading per batch, none per request).
    pub at: Instant,
    pub request_id: HeaderValue,
    /// The client's address as text.
    pub client: HeaderValue,
    pub method: Method,
    /// The target as forwarded (normalised path and the query).
    pub uri: Uri,
    pub version: Version,
    /// `None`: refused before routing (bad Host, CONNECT, a path above the root, …).
    pub route: Option<Arc<str>>,
    pub decision: Option<Decision>,
    pub backend: Option<Side>,
    pub status: u16,
    /// The proxy answered itself because this failed (`ErrorKind`'s name).
    pub error: Option<&'static str>,
    /// Request body bytes read from the client.
    pub bytes_in: u64,
    /// Response body bytes handed to the client.
    pub bytes_out: u64,
    /// From arrival to the response head (`None`: no answer from a backend).
    pub upstream: Option<Duration>,
    /// From arrival to the end of the response body (or the client leaving).
    pub total: Duration,
    /// Shadow mode's outcome for a mirrored request (match, mismatch, noise, error, dropped,
    /// skipped; `incomplete` when the exchange could not be mirrored after all).
    pub shadow: Option<&'static str>,
    /// `false` when the client left (or the body failed) before the response ended.
    pub complete: bool,
}

/// Milliseconds with microsecond precision.
fn ms(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

/// `2026-12-06T05:09:43.` — the part of an RFC 3339 time that a second's lines share.
fn second_prefix(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
    )
}

fn protocol(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/?",
    }
}

/// Writes entries as lines; keeps the formatted second of the last one (lines come in
/// bursts within one second). The JSON is written by hand — measured: serde's derive with
/// `format!` for the time took about three times as long per line, on the proxy's own core.
#[derive(Default)]
pub(crate) struct Lines {
    second: Option<i64>,
    prefix: String,
    itoa: itoa::Buffer,
}

impl Lines {
    /// `2026-12-06T05:09:43.123Z`, into `out`.
    fn time(&mut self, t: OffsetDateTime, out: &mut Vec<u8>) {
        let sec = t.unix_timestamp();
        if self.second != Some(sec) {
            self.prefix = second_prefix(t);
            self.second = Some(sec);
        }
        out.extend_from_slice(self.prefix.as_bytes());
        let ms = t.millisecond();
        out.extend_from_slice(&[
            b'0' + (ms / 100) as u8,
            b'0' + (ms / 10 % 10) as u8,
            b'0' + (ms % 10) as u8,
            b'Z',
        ]);
    }

    fn int(&mut self, n: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(self.itoa.format(n).as_bytes());
    }

    /// Milliseconds with three decimals (microseconds), as a JSON number.
    fn millis(&mut self, d: Duration, out: &mut Vec<u8>) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        self.int(us / 1000, out);
        let frac = us % 1000;
        out.extend_from_slice(&[
            b'.',
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ]);
    }

    /// Appends `e`, which arrived at `time`, as one line (with its `\n`) to `out`.
    pub fn write(
        &mut self,
        e: &Entry,
        time: OffsetDateTime,
        format: AccessLogFormat,
        out: &mut Vec<u8>,
    ) {
        match format {
            AccessLogFormat::Json => self.json(e, time, out),
            AccessLogFormat::Logfmt => {
                let mut t = Vec::with_capacity(24);
                self.time(time, &mut t);
                logfmt(e, std::str::from_utf8(&t).unwrap_or("-"), out);
            }
        }
        out.push(b'\n');
    }

    fn json(&mut self, e: &Entry, time: OffsetDateTime, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"time\":\"");
        self.time(time, out);
        out.extend_from_slice(b"\",\"request_id\":");
        json_str(
            out,
            std::str::from_utf8(e.request_id.as_bytes()).unwrap_or("-"),
        );
        out.extend_from_slice(b",\"client\":");
        json_str(out, std::str::from_utf8(e.client.as_bytes()).unwrap_or("-"));
        out.extend_from_slice(b",\"method\":");
        json_str(out, e.method.as_str());
        out.extend_from_slice(b",\"path\":");
        json_str(out, path(e));
        out.extend_from_slice(b",\"protocol\":\"");
        out.extend_from_slice(protocol(e.version).as_bytes());
        out.extend_from_slice(b"\",\"route\":");
        json_opt(out, e.route.as_deref());
        out.extend_from_slice(b",\"decision\":");
        json_opt(out, e.decision.map(Decision::as_str));
        out.extend_from_slice(b",\"backend\":");
        json_opt(out, e.backend.map(Side::as_str));
        out.extend_from_slice(b",\"status\":");
        self.int(u64::from(e.status), out);
        if let Some(err) = e.error {
            out.extend_from_slice(b",\"error\":");
            json_str(out, err);
        }
        out.extend_from_slice(b",\"bytes_in\":");
        self.int(e.bytes_in, out);
        out.extend_from_slice(b",\"bytes_out\":");
        self.int(e.bytes_out, out);
        out.extend_from_slice(b",\"upstream_ms\":");
        match e.upstream {
            Some(d) => self.millis(d, out),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"total_ms\":");
        self.millis(e.total, out);
        out.extend_from_slice(b",\"shadow\":");
        json_opt(out, e.shadow);
        out.extend_from_slice(if e.complete {
            b",\"complete\":true}"
        } else {
            b",\"complete\":false}"
        });
    }
}

/// The target as forwarded: path and query.
fn path(e: &Entry) -> &str {
    e.uri
        .path_and_query()
        .map_or_else(|| e.uri.path(), |p| p.as_str())
}

/// A JSON string: printable ASCII without `"` or `\\` as it is (paths, ids, names nearly
/// always), anything else escaped by serde_json.
fn json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Serialising a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

fn json_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => json_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// `key=value …`; a value with a space, `=`, `"` or a control character is quoted and escaped;
/// absent values are left out.
fn logfmt(e: &Entry, time: &str, out: &mut Vec<u8>) {
    let text = |v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    let mut s = String::with_capacity(256);
    let mut pair = |k: &str, v: &str| {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(k);
        s.push('=');
        if v.is_empty()
            || v.chars()
                .any(|c| c == ' ' || c == '=' || c == '"' || c.is_control())
        {
            let _ = write!(s, "{v:?}");
        } else {
            s.push_str(v);
        }
    };
    pair("time", time);
    pair("request_id", &text(&e.request_id));
    pair("client", &text(&e.client));
    pair("method", e.method.as_str());
    pair("path", path(e));
    pair("protocol", protocol(e.version));
    for (k, v) in [
        ("route", e.route.as_deref()),
        ("decision", e.decision.map(Decision::as_str)),
        ("backend", e.backend.map(Side::as_str)),
    ] {
        if let Some(v) = v {
            pair(k, v);
        }
    }
    pair("status", &e.status.to_string());
    if let Some(err) = e.error {
        pair("error", err);
    }
    pair("bytes_in", &e.bytes_in.to_string());
    pair("bytes_out", &e.bytes_out.to_string());
    if let Some(u) = e.upstream {
        pair("upstream_ms", &format!("{:.3}", ms(u)));
    }
    pair("total_ms", &format!("{:.3}", ms(e.total)));
    if let Some(v) = e.shadow {
        pair("shadow", v);
    }
    pair("complete", if e.complete { "true" } else { "false" });
    let _ = out.write_all(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(1_765_000_000_123_456_789).expect("time")
    }

    fn entry() -> Entry {
        Entry {
            at: Instant::now(),
            request_id: HeaderValue::from_static("abc"),
            client: HeaderValue::from_static("127.0.0.1"),
            method: Method::GET,
            uri: "/api/tasks/T1?x=\"y z\"".parse().unwrap_or_default(),
            version: Version::HTTP_11,
            route: Some("tasks".into()),
            decision: Some(Decision::Sticky),
            backend: Some(Side::New),
            status: 200,
            error: None,
            bytes_in: 0,
            bytes_out: 42,
            upstream: Some(Duration::from_micros(1234)),
            total: Duration::from_micros(1500),
            shadow: Some("match"),
            complete: true,
        }
    }

    #[test]
    fn json_line_has_every_field() {
        let mut out = Vec::new();
        Lines::default().write(&entry(), t0(), AccessLogFormat::Json, &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["time"], "2025-12-06T05:46:40.123Z");
        assert_eq!(v["route"], "tasks");
        assert_eq!(v["decision"], "sticky");
        assert_eq!(v["backend"], "new");
        assert_eq!(v["upstream_ms"], 1.234);
        assert_eq!(v["total_ms"], 1.5);
        assert_eq!(v["shadow"], "match");
        assert!(v.get("error").is_none());
    }

    #[test]
    fn json_escapes_what_needs_it_and_reuses_the_second() {
        let mut e = entry();
        e.request_id = HeaderValue::from_static("a\"b\\c");
        e.uri = "/caf%C3%A9".parse().unwrap_or_default();
        e.route = Some("r\u{e9}sum\u{e9}\n".into());
        e.upstream = None;
        e.total = Duration::from_micros(2_000_007);
        e.complete = false;
        let mut lines = Lines::default();
        let mut out = Vec::new();
        let mut t = t0();
        lines.write(&e, t, AccessLogFormat::Json, &mut out);
        t += Duration::from_millis(5);
        lines.write(&e, t, AccessLogFormat::Json, &mut out);
        t += Duration::from_secs(1);
        lines.write(&e, t, AccessLogFormat::Json, &mut out);
        let v: Vec<serde_json::Value> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("json"))
            .collect();
        assert_eq!(v[0]["request_id"], "a\"b\\c");
        assert_eq!(v[0]["route"], "r\u{e9}sum\u{e9}\n");
        assert_eq!(v[0]["path"], "/caf%C3%A9");
        assert_eq!(v[0]["upstream_ms"], serde_json::Value::Null);
        assert_eq!(v[0]["total_ms"], 2000.007);
        assert_eq!(v[0]["complete"], false);
        assert_eq!(v[1]["time"], "2025-12-06T05:46:40.128Z");
        assert_eq!(v[2]["time"], "2025-12-06T05:46:41.128Z");
    }

    #[test]
    fn logfmt_quotes_what_needs_it() {
        let mut e = entry();
        e.uri = "/a?q=x%20y".parse().unwrap_or_default();
        e.route = None;
        e.error = Some("upstream_connect");
        let mut out = Vec::new();
        Lines::default().write(&e, t0(), AccessLogFormat::Logfmt, &mut out);
        let s = String::from_utf8(out).expect("utf8");
        assert!(s.contains(" path=\"/a?q=x%20y\" "), "{s}");
        assert!(!s.contains("route="), "{s}");
        assert!(s.contains(" error=upstream_connect "), "{s}");
        assert!(s.ends_with(" complete=true\n"), "{s}");
    }
}
