//! A bare Prometheus endpoint for a registry that is not a proxy's: `ficus migrate run|watch
//! --metrics-addr` serves the migrator's registry with it (the proxy serves its own on the
//! admin listener). Any path answers the text exposition of every metric in the registry.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use prometheus::{Encoder, Registry, TextEncoder};

/// Serves `registry` on `addr` until the returned task is aborted; returns the bound address.
pub async fn serve_metrics(
    addr: SocketAddr,
    registry: Registry,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let registry = registry.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
                        let mut buf = Vec::new();
                        let _ = TextEncoder::new().encode(&registry.gather(), &mut buf);
                        async move {
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .header("content-type", "text/plain; version=0.0.4")
                                    .body(Full::new(Bytes::from(buf)))
                                    .unwrap_or_default(),
                            )
                        }
                    });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await;
            });
        }
    });
    Ok((local, task))
}
