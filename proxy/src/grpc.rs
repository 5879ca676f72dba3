//! gRPC status accounting: `ficus_grpc_responses_total{route, backend, grpc_status}`, one per
//! gRPC response (`content-type: application/grpc…`), its `grpc-status` read from the response
//! head when the backend answered "trailers-only", else from the trailers at the end of the
//! body ([`GrpcStatus::on_trailers`], called by the response body). A gRPC response that ends
//! without a status counts as `unknown`. Labels are bounded: 0–16, or `unknown`.

use http::header::{HeaderMap, CONTENT_TYPE};
use prometheus::IntCounterVec;

/// The family, registered once per proxy.
pub(crate) fn family() -> Result<IntCounterVec, prometheus::Error> {
    IntCounterVec::new(
        prometheus::Opts::new(
            "ficus_grpc_responses_total",
            "gRPC responses by route, backend and grpc-status (0 OK .. 16 UNAUTHENTICATED).",
        ),
        &["route", "backend", "grpc_status"],
    )
}

/// Whether a response is gRPC.
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

fn label(headers: Option<&HeaderMap>) -> &'static str {
    const CODES: [&str; 17] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    ];
    headers
        .and_then(|h| h.get("grpc-status"))
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        .and_then(|s| s.trim().parse::<usize>().ok())
        .and_then(|n| CODES.get(n).copied())
        .unwrap_or("unknown")
}

/// One gRPC response still to be counted (its status comes in the trailers).
pub(crate) struct GrpcStatus {
    family: IntCounterVec,
    route: Box<str>,
    backend: &'static str,
    counted: bool,
}

impl GrpcStatus {
    /// For a gRPC response head: counts it now when it carries `grpc-status` (trailers-only)
    /// and returns `None`; otherwise returns the counter to give the trailers to.
    pub fn start(
        family: &IntCounterVec,
        route: &str,
        backend: &'static str,
        head: &HeaderMap,
    ) -> Option<GrpcStatus> {
        if head.contains_key("grpc-status") {
            family
                .with_label_values(&[route, backend, label(Some(head))])
                .inc();
            return None;
        }
        Some(GrpcStatus {
            family: family.clone(),
            route: route.into(),
            backend,
            counted: false,
        })
    }

    /// The trailers arrived (or, with `None`, the body ended without any).
    pub fn on_trailers(&mut self, trailers: Option<&HeaderMap>) {
        if !self.counted {
            self.counted = true;
            self.family
                .with_label_values(&[&self.route, self.backend, label(trailers)])
                .inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_labels_are_bounded() {
        let mut h = HeaderMap::new();
        assert_eq!(label(Some(&h)), "unknown");
        h.insert("grpc-status", "14".parse().unwrap());
        assert_eq!(label(Some(&h)), "14");
        h.insert("grpc-status", "99".parse().unwrap());
        assert_eq!(label(Some(&h)), "unknown");
        assert_eq!(label(None), "unknown");
    }
}
