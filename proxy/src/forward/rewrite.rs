//! What the proxy does to the headers on the way through: the override check
//! (`X-Ficus-Backend` with its token), hop-by-hop removal (RFC 9110 §7.6.1), the request
//! target, version (always HTTP/1.1 upstream) and `Host` for the backend, `X-Forwarded-*`.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Uri;

use ficus_core::headers::HOP_BY_HOP;
use ficus_core::Side;

use super::failure::Failure;
use super::worker::ConnInfo;
use crate::error::ErrorKind;
use crate::table::{Backend, Route, Table};

/// `X-Ficus-Backend: legacy|new` asks for a side; honoured only with a valid override token.
pub const OVERRIDE_HEADER: HeaderName = ficus_core::headers::BACKEND;
/// The token that makes `X-Ficus-Backend` count.
pub const OVERRIDE_TOKEN_HEADER: HeaderName = HeaderName::from_static("x-ficus-override-token");
pub use ficus_core::headers::{BACKEND as BACKEND_HEADER, REQUEST_ID, ROUTE as ROUTE_HEADER};
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Applies `X-Ficus-Backend`: honoured only with the override token; both headers are removed
/// so neither the request nor the token reaches a backend.
pub(super) fn check_override(
    table: &Table,
    route: &Route,
    headers: &mut HeaderMap,
) -> Option<Side> {
    let want = headers.remove(&OVERRIDE_HEADER)?;
    let token = headers.remove(&OVERRIDE_TOKEN_HEADER);
    let valid = match (&table.override_token, &token) {
        (Some(t), Some(given)) => constant_time_eq(t, given.as_bytes()),
        _ => false,
    };
    match (valid, Side::parse_bytes(want.as_bytes())) {
        (true, Some(side)) => {
            route.metrics.override_honoured.inc();
            Some(side)
        }
        _ => {
            route.metrics.override_rejected.inc();
            None
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(super) fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

pub(super) fn is_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE) && connection_has(h, "upgrade")
}

pub(super) fn connection_has(h: &HeaderMap, token: &str) -> bool {
    h.get_all(header::CONNECTION).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1): `Connection` and every header it names,
/// `Keep-Alive`, `Proxy-Connection`, `Proxy-Authenticate`, `Proxy-Authorization`, `TE`,
/// `Trailer`, `Transfer-Encoding`, `Upgrade`. For an upgrade, `Connection: upgrade` and
/// `Upgrade` are kept: they are the point of the exchange.
pub(crate) fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    // One pass to see what is there; usually only `Connection: keep-alive`, so usually one
    // removal rather than nine lookups.
    let mut found = 0u16;
    for name in h.keys() {
        found |= hop_bit(name);
    }
    if found == 0 {
        return;
    }
    if found & 1 != 0 {
        let mut named: Vec<HeaderName> = Vec::new();
        for v in h.get_all(header::CONNECTION) {
            for t in v.as_bytes().split(|&b| b == b',') {
                let t = t.trim_ascii();
                if t.is_empty()
                    || t.eq_ignore_ascii_case(b"keep-alive")
                    || t.eq_ignore_ascii_case(b"close")
                    || t.eq_ignore_ascii_case(b"upgrade")
                {
                    continue;
                }
                if let Ok(n) = HeaderName::from_bytes(t) {
                    named.push(n);
                }
            }
        }
        for n in named {
            h.remove(n);
        }
    }
    for (bit, name) in HOP_BY_HOP.iter().enumerate() {
        if found & (1 << bit) == 0 {
            continue;
        }
        let is_upgrade_pair = *name == header::CONNECTION || *name == header::UPGRADE;
        if !(keep_upgrade && is_upgrade_pair) {
            h.remove(name);
        }
    }
    if keep_upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

#[inline]
/// Bit i stands for entry i of [`HOP_BY_HOP`] (`Connection` is bit 0).
fn hop_bit(n: &HeaderName) -> u16 {
    for (i, h) in HOP_BY_HOP.iter().enumerate() {
        if n == h {
            return 1 << i;
        }
    }
    0
}

/// Rewrites the request head for the backend.
pub(super) fn prepare(
    table: &Table,
    backend: &Backend,
    conn: &ConnInfo,
    parts: &mut http::request::Parts,
    upgrade: bool,
) -> Result<(), Failure> {
    // Origin-form request target, with the backend's path prefix if it has one.
    if parts.uri.scheme().is_some() || !backend.cfg.prefix.is_empty() {
        let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let target = if backend.cfg.prefix.is_empty() {
            pq.to_string()
        } else {
            format!("{}{}", backend.cfg.prefix, pq)
        };
        parts.uri = Uri::try_from(target)
            .map_err(|e| Failure::new(ErrorKind::Downstream, format!("bad request target: {e}")))?;
    }
    // Upstream requests are always HTTP/1.1, whatever the client spoke: keep-alive toward the
    // backend is the pool's business. Forwarding an HTTP/1.0 request made backends that close
    // after a 1.0 answer (Python's http.server) hand the pool dead connections: 502s.
    parts.version = http::Version::HTTP_11;
    let h = &mut parts.headers;
    strip_hop_by_hop(h, upgrade);
    // X-Forwarded-* from a trusted proxy are kept (-For appended to); from anyone else they
    // are this hop's own: a client cannot claim to have come over https or from elsewhere.
    let trusted = !table.trusted_proxies.is_empty()
        && table.trusted_proxies.iter().any(|n| n.contains(&conn.peer));
    // Host: `admit` made it the absolute-form target's authority when there was one.
    let host = h.get(header::HOST).cloned();
    match &host {
        Some(host) if !(trusted && h.contains_key(&X_FORWARDED_HOST)) => {
            h.insert(X_FORWARDED_HOST, host.clone());
        }
        None if !trusted => {
            h.remove(&X_FORWARDED_HOST);
        }
        _ => {}
    }
    if !(table.preserve_host && host.is_some()) {
        h.insert(header::HOST, backend.host_hv.clone());
    }
    // X-Forwarded-For: append this hop's client address to any list already there.
    match h.get(&X_FORWARDED_FOR).filter(|_| trusted) {
        None => {
            h.insert(X_FORWARDED_FOR, conn.peer_ip.clone());
        }
        Some(prev) => {
            let mut v = Vec::with_capacity(prev.len() + 2 + conn.peer_ip.len());
            v.extend_from_slice(prev.as_bytes());
            v.extend_from_slice(b", ");
            v.extend_from_slice(conn.peer_ip.as_bytes());
            if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(v)) {
                h.insert(X_FORWARDED_FOR, v);
            }
        }
    }
    if !(trusted && h.contains_key(&X_FORWARDED_PROTO)) {
        let proto = if conn.https { "https" } else { "http" };
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_removed() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, X-Secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert(header::TE, "trailers".parse().unwrap());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        h.insert(header::PROXY_AUTHORIZATION, "Basic x".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn upgrade_kept_when_asked() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "Upgrade".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get(header::UPGRADE).unwrap(), "websocket");
        assert_eq!(h.get(header::CONNECTION).unwrap(), "upgrade");
    }
}
