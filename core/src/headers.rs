//! Header names ficus reads or writes on both sides of the proxy, and the hop-by-hop list.

use http::header::HeaderName;

/// Hop-by-hop fields (RFC 9110 §7.6.1, plus the `Proxy-*` and `Keep-Alive` relics of RFC
/// 2616): they describe one connection and are never forwarded nor compared. `Connection`
/// comes first: the proxy also removes every field `Connection` names.
pub static HOP_BY_HOP: [HeaderName; 9] = [
    // Most often present first: the proxy scans requests against this list in order.
    http::header::CONNECTION,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
    http::header::TE,
    http::header::TRAILER,
    http::header::PROXY_AUTHORIZATION,
    http::header::PROXY_AUTHENTICATE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// Whether `name` (lowercase, as `http` keeps names) is hop-by-hop.
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| h.as_str() == name)
}

/// The time a dual write is stamped with, sent to both sides (the task apps use it as their
/// "now", so a mirrored write stores the same timestamps on both). Its text is
/// [`crate::stamp::request_time`].
pub const REQUEST_TIME: HeaderName = HeaderName::from_static("x-ficus-request-time");

/// Request id header (kept when the client sent a sane one, generated otherwise).
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The marker header every mirrored request carries.
pub const SHADOW: HeaderName = HeaderName::from_static("x-ficus-shadow");

/// Response header naming the matched route.
pub const ROUTE: HeaderName = HeaderName::from_static("x-ficus-route");

/// Response header naming the backend that answered (`legacy`, `new`, or `none`); on a
/// request, with a valid override token, the side asked for.
pub const BACKEND: HeaderName = HeaderName::from_static("x-ficus-backend");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_names() {
        assert!(is_hop_by_hop("connection"));
        assert!(is_hop_by_hop("transfer-encoding"));
        assert!(!is_hop_by_hop("content-type"));
        assert_eq!(HOP_BY_HOP[0], http::header::CONNECTION);
    }
}
