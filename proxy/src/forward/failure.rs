//! A request the proxy could not forward ([`Failure`]: which side failed and why) and the
//! JSON answer the client gets for it, naming what failed, the route and the backend.

use http::header::{self, HeaderValue};
use http::Response;

use ficus_core::headers::{BACKEND as BACKEND_HEADER, REQUEST_ID, ROUTE as ROUTE_HEADER};
use ficus_core::Side;

use super::admit::Rejection;
use crate::error::ErrorKind;
use crate::table::Route;
use crate::upstream::RespBody;

/// Why a request failed (the kind decides the status code) and the detail for the body.
pub(super) struct Failure {
    pub kind: ErrorKind,
    pub detail: String,
}

impl Failure {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Failure {
        Failure {
            kind,
            detail: detail.into(),
        }
    }
}

/// A JSON error body naming what failed, the route and the backend.
pub(super) fn error_response(
    f: Failure,
    route: &Route,
    side: Side,
    request_id: &HeaderValue,
) -> Response<RespBody> {
    let backend = match f.kind {
        ErrorKind::RequestTooLarge
        | ErrorKind::Downstream
        | ErrorKind::WriteTurn
        | ErrorKind::RequestTimeout => "none",
        _ => side.as_str(),
    };
    let body = serde_json::json!({
        "error": f.kind.as_str(),
        "status": f.kind.status().as_u16(),
        "message": f.detail,
        "route": &*route.name,
        "backend": backend,
        "request_id": request_id.to_str().unwrap_or(""),
    });
    let mut r = Response::new(RespBody::full(body.to_string()));
    *r.status_mut() = f.kind.status();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(ROUTE_HEADER, route.name_hv.clone());
    h.insert(BACKEND_HEADER, HeaderValue::from_static(backend));
    h.insert(REQUEST_ID, request_id.clone());
    if matches!(
        f.kind,
        ErrorKind::RequestTooLarge | ErrorKind::RequestTimeout
    ) {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// The answer to a request refused before routing ([`Rejection`]): a JSON body naming what was
/// wrong; the connection closes after it (as nginx and haproxy do after a malformed request).
pub(super) fn rejection_response(r: Rejection, request_id: &HeaderValue) -> Response<RespBody> {
    let body = serde_json::json!({
        "error": r.error,
        "status": r.status.as_u16(),
        "message": r.detail,
        "request_id": request_id.to_str().unwrap_or(""),
    });
    let mut resp = Response::new(RespBody::full(body.to_string()));
    *resp.status_mut() = r.status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(REQUEST_ID, request_id.clone());
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    if r.status == http::StatusCode::METHOD_NOT_ALLOWED {
        h.insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
        );
    }
    resp
}
