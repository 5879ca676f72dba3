//! How the shadow thread's client reaches a backend: plain TCP for `http://`, TLS for
//! `https://` with exactly the settings the proxy uses for that backend (its CA, SNI, client
//! certificate — a [`ClientTls`]), registered by authority when the proxy builds its routes.
//! A mirror never trusts a backend the primary path would not.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use ficus_tls::ClientTls;
use http::uri::Authority;
use http::Uri;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The connector of the shadow thread's client.
#[derive(Clone)]
pub(super) struct Connector {
    http: HttpConnector,
    tls: Arc<RwLock<HashMap<Authority, HttpsConnector<HttpConnector>>>>,
}

impl Connector {
    /// TCP with `TCP_NODELAY` and `connect_timeout`; no TLS backend registered yet.
    pub(super) fn new(connect_timeout: Duration) -> Connector {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        // https:// URIs go through the TLS connectors below, which need this off.
        http.enforce_http(false);
        Connector {
            http,
            tls: Arc::default(),
        }
    }

    /// From now on, `https://{authority}` is reached with `tls` (a reload replaces it).
    pub(super) fn register(&self, authority: Authority, tls: &ClientTls) {
        // hyper-rustls sets ALPN itself (http/1.1 here) and refuses a config that has some.
        let mut config = (*tls.config).clone();
        config.alpn_protocols.clear();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .with_server_name_resolver(FixedServerNameResolver::new(tls.server_name.clone()))
            .enable_http1()
            .wrap_connector(self.http.clone());
        self.tls
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(authority, connector);
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = MaybeHttpsStream<TokioIo<TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        if uri.scheme_str() == Some("https") {
            let found = uri.authority().and_then(|a| {
                self.tls
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(a)
                    .cloned()
            });
            return match found {
                Some(mut c) => Box::pin(async move { c.call(uri).await }),
                None => Box::pin(async move {
                    Err(format!("no TLS settings for mirror backend {uri}").into())
                }),
            };
        }
        let mut http = self.http.clone();
        Box::pin(async move {
            let io = http.call(uri).await?;
            Ok(MaybeHttpsStream::Http(io))
        })
    }
}
