//! One request's access-log record ([`Entry`]) and how it is written as a line: JSON (one object
//! per line) or logfmt. Formatting runs on the writer thread, never on a worker.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderValue;
use http::{Method, Uri, Version};
use serde::Serialize;
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
    /// When the request arrived (after any hold), UTC on the proxy's clock.
    pub time: OffsetDateTime,
    pub request_id: HeaderValue,
    pub client: IpAddr,
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
    /// From sending upstream to the response head (`None`: no answer from a backend).
    pub upstream: Option<Duration>,
    /// From arrival to the end of the response body (or the client leaving).
    pub total: Duration,
    /// Shadow mode's outcome for a mirrored request (match, mismatch, noise, error, dropped,
    /// skipped; `incomplete` when the exchange could not be mirrored after all).
    pub shadow: Option<&'static str>,
    /// `false` when the client left (or the body failed) before the response ended.
    pub complete: bool,
}

/// The JSON shape of a line (field order as written).
#[derive(Serialize)]
struct Line<'a> {
    time: &'a str,
    request_id: &'a str,
    client: String,
    method: &'a str,
    path: &'a str,
    protocol: &'a str,
    route: Option<&'a str>,
    decision: Option<&'a str>,
    backend: Option<&'a str>,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    bytes_in: u64,
    bytes_out: u64,
    upstream_ms: Option<f64>,
    total_ms: f64,
    shadow: Option<&'a str>,
    complete: bool,
}

/// Milliseconds with microsecond precision.
fn ms(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

/// `2026-12-06T05:09:43.123Z`.
fn rfc3339_ms(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
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

impl Entry {
    /// Appends the entry as one line (with its `\n`) to `out`.
    pub fn write_line(&self, format: AccessLogFormat, out: &mut Vec<u8>) {
        let time = rfc3339_ms(self.time);
        let path = self
            .uri
            .path_and_query()
            .map_or_else(|| self.uri.path(), |p| p.as_str());
        let line = Line {
            time: &time,
            request_id: std::str::from_utf8(self.request_id.as_bytes()).unwrap_or("-"),
            client: self.client.to_string(),
            method: self.method.as_str(),
            path,
            protocol: protocol(self.version),
            route: self.route.as_deref(),
            decision: self.decision.map(Decision::as_str),
            backend: self.backend.map(Side::as_str),
            status: self.status,
            error: self.error,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            upstream_ms: self.upstream.map(ms),
            total_ms: ms(self.total),
            shadow: self.shadow,
            complete: self.complete,
        };
        match format {
            AccessLogFormat::Json => {
                // Serialising plain fields into a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, &line);
            }
            AccessLogFormat::Logfmt => logfmt(&line, out),
        }
        out.push(b'\n');
    }
}

/// `key=value …`; a value with a space, `=`, `"` or a control character is quoted and escaped;
/// absent values are left out.
fn logfmt(l: &Line<'_>, out: &mut Vec<u8>) {
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
    pair("time", l.time);
    pair("request_id", l.request_id);
    pair("client", &l.client);
    pair("method", l.method);
    pair("path", l.path);
    pair("protocol", l.protocol);
    for (k, v) in [
        ("route", l.route),
        ("decision", l.decision),
        ("backend", l.backend),
    ] {
        if let Some(v) = v {
            pair(k, v);
        }
    }
    pair("status", &l.status.to_string());
    if let Some(e) = l.error {
        pair("error", e);
    }
    pair("bytes_in", &l.bytes_in.to_string());
    pair("bytes_out", &l.bytes_out.to_string());
    if let Some(u) = l.upstream_ms {
        pair("upstream_ms", &format!("{u:.3}"));
    }
    pair("total_ms", &format!("{:.3}", l.total_ms));
    if let Some(v) = l.shadow {
        pair("shadow", v);
    }
    pair("complete", if l.complete { "true" } else { "false" });
    let _ = out.write_all(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            time: OffsetDateTime::from_unix_timestamp_nanos(1_765_000_000_123_456_789)
                .expect("time"),
            request_id: HeaderValue::from_static("abc"),
            client: "127.0.0.1".parse().expect("ip"),
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
        entry().write_line(AccessLogFormat::Json, &mut out);
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
    fn logfmt_quotes_what_needs_it() {
        let mut e = entry();
        e.uri = "/a?q=x%20y".parse().unwrap_or_default();
        e.route = None;
        e.error = Some("upstream_connect");
        let mut out = Vec::new();
        e.write_line(AccessLogFormat::Logfmt, &mut out);
        let s = String::from_utf8(out).expect("utf8");
        assert!(s.contains(" path=\"/a?q=x%20y\" "), "{s}");
        assert!(!s.contains("route="), "{s}");
        assert!(s.contains(" error=upstream_connect "), "{s}");
        assert!(s.ends_with(" complete=true\n"), "{s}");
    }
}
