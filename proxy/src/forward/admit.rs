//! What a request must satisfy before it is routed, as nginx and haproxy check it — refused
//! here, it reaches no route and no backend, and its connection is closed after the answer:
//!
//! - `CONNECT` → 405 (the proxy tunnels nothing but upgrades);
//! - `Host` per RFC 9112 §3.2: two `Host` fields → 400; HTTP/1.1 without one → 400; an
//!   absolute-form target (`GET http://h/p`) wins over `Host`, which is rewritten to match;
//! - a transfer coding other than `chunked` (`Transfer-Encoding: gzip, chunked`) → 501: the proxy
//!   does not decode it and must not drop it silently;
//! - the path normalised before routing ([`crate::path`]): the route, the sticky `path:` key and
//!   the backend all see the normalised form; a `..` above the root → 400.
//!
//! Nothing here allocates for an ordinary request (one `Host`, origin-form, a normal path).

use std::borrow::Cow;

use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Method, Request, StatusCode, Version};

/// A request refused before routing.
#[derive(Debug)]
pub(super) struct Rejection {
    pub status: StatusCode,
    /// The `error` field of the JSON body.
    pub error: &'static str,
    pub detail: Cow<'static, str>,
}

impl Rejection {
    fn new(status: StatusCode, error: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Rejection {
            status,
            error,
            detail: detail.into(),
        }
    }
}

/// Checks `req` and brings its target into the form that is routed and forwarded.
pub(super) fn admit<B>(req: &mut Request<B>) -> Result<(), Rejection> {
    if req.method() == Method::CONNECT {
        return Err(Rejection::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "CONNECT is not supported by this proxy",
        ));
    }
    host(req)?;
    if let Some(te) = req.headers().get(header::TRANSFER_ENCODING) {
        transfer_coding(te, req.headers())?;
    }
    target(req)
}

fn host<B>(req: &mut Request<B>) -> Result<(), Rejection> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "more than one Host header",
        ));
    }
    if let Some(auth) = req.uri().authority() {
        // Absolute form: the target's authority is the host (RFC 9112 §3.2.2).
        if first.is_none_or(|h| h.as_bytes() != auth.as_str().as_bytes()) {
            let v = HeaderValue::from_str(auth.as_str()).map_err(|_| {
                Rejection::new(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "request target authority is not a valid Host",
                )
            })?;
            req.headers_mut().insert(header::HOST, v);
        }
        return Ok(());
    }
    if first.is_none() && req.version() == Version::HTTP_11 {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "HTTP/1.1 request without a Host header",
        ));
    }
    Ok(())
}

/// Only `chunked` is understood (hyper has decoded it); any other coding is refused.
fn transfer_coding(first: &HeaderValue, all: &http::HeaderMap) -> Result<(), Rejection> {
    let only_chunked = |v: &HeaderValue| {
        v.as_bytes()
            .split(|&b| b == b',')
            .map(<[u8]>::trim_ascii)
            .all(|t| t.is_empty() || t.eq_ignore_ascii_case(b"chunked"))
    };
    if only_chunked(first)
        && all
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .all(only_chunked)
    {
        return Ok(());
    }
    Err(Rejection::new(
        StatusCode::NOT_IMPLEMENTED,
        "not_implemented",
        "only the chunked transfer coding is supported",
    ))
}

fn target<B>(req: &mut Request<B>) -> Result<(), Rejection> {
    let norm = match crate::path::normalize(req.uri().path()) {
        Ok(None) => return Ok(()),
        Ok(Some(n)) => n,
        Err(crate::path::AboveRoot) => {
            return Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the path climbs above the root ('..')",
            ))
        }
    };
    let pq = match req.uri().query() {
        Some(q) => format!("{norm}?{q}"),
        None => norm,
    };
    let mut parts = std::mem::take(req.uri_mut()).into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(pq).map_err(|e| {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("normalised path: {e}"),
        )
    })?);
    *req.uri_mut() = Uri::from_parts(parts).map_err(|e| {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("normalised target: {e}"),
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().uri(target);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn host_rules() {
        assert!(admit(&mut req("/", &[("host", "a")])).is_ok());
        let e = admit(&mut req("/", &[("host", "a"), ("host", "b")])).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(admit(&mut req("/", &[])).unwrap_err().status, 400);
        let mut r = req("/", &[]);
        *r.version_mut() = Version::HTTP_10;
        assert!(admit(&mut r).is_ok());
        let mut r = req("http://target.example:81/x", &[("host", "other")]);
        admit(&mut r).unwrap();
        assert_eq!(r.headers()["host"], "target.example:81");
    }

    #[test]
    fn codings_and_paths() {
        let te = |v| req("/", &[("host", "a"), ("transfer-encoding", v)]);
        assert!(admit(&mut te("chunked")).is_ok());
        assert_eq!(admit(&mut te("gzip, chunked")).unwrap_err().status, 501);
        let mut r = req("/a/../b%2f?q=%2e", &[("host", "a")]);
        admit(&mut r).unwrap();
        assert_eq!(r.uri(), "/b%2F?q=%2e");
        assert_eq!(
            admit(&mut req("/../etc", &[("host", "a")]))
                .unwrap_err()
                .status,
            400
        );
        let mut c = req("/", &[("host", "a")]);
        *c.method_mut() = Method::CONNECT;
        assert_eq!(admit(&mut c).unwrap_err().status, 405);
    }
}
