//! gRPC through the proxy, for real: tonic's health service (unary `Check`, server-streaming
//! `Watch`) on two h2c backends, a tonic client speaking cleartext HTTP/2 to the proxy, the
//! route split 50/50 by a sticky metadata header — each key always on one side, both sides
//! used — a stream that keeps flowing, trailers (`grpc-status`) passed through, and
//! `ficus_grpc_responses_total` counting statuses from trailers and trailers-only answers.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tonic::transport::{Channel, Server};
use tonic_health::pb::health_check_response::ServingStatus as Wire;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

/// The service name whose status tells the sides apart: SERVING on legacy, NOT_SERVING on new.
const SIDE: &str = "ficus.side";

/// A gRPC backend serving the health service; its reporter to change statuses.
async fn backend(side_status: ServingStatus) -> (SocketAddr, HealthReporter) {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter.set_service_status(SIDE, side_status).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = Incoming(listener);
    tokio::spawn(async move {
        Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    (addr, reporter)
}

/// A listener's connections as the `Stream` tonic's server takes (no extra dependency).
struct Incoming(tokio::net::TcpListener);

impl tonic::codegen::tokio_stream::Stream for Incoming {
    type Item = std::io::Result<tokio::net::TcpStream>;
    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_accept(cx).map(|r| Some(r.map(|(s, _)| s)))
    }
}

fn request(service: &str, user: &str) -> tonic::Request<HealthCheckRequest> {
    let mut r = tonic::Request::new(HealthCheckRequest {
        service: service.into(),
    });
    r.metadata_mut().insert("x-user-id", user.parse().unwrap());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_unary_and_streaming_split_by_a_sticky_header() {
    let (legacy, _legacy_reporter) = backend(ServingStatus::Serving).await;
    let (new, new_reporter) = backend(ServingStatus::NotServing).await;
    let toml = testkit::ProxyToml::new(&legacy, &new)
        .legacy_backend("protocol = \"h2c\"")
        .new_backend("protocol = \"h2c\"")
        .routes(
            "[[routes]]\nname = \"health\"\npath = \"/grpc.health.v1.Health/*\"\npercent = 50.0\nsticky = \"header:x-user-id\"\n",
        )
        .to_string();
    let p = start_toml(&toml);
    let channel = Channel::from_shared(format!("http://{}", p.listen_addr()))
        .unwrap()
        .connect()
        .await
        .expect("h2c to the proxy");
    let mut client = HealthClient::new(channel);

    // Unary: each key lands on one side, every time; both sides get keys.
    let (mut on_legacy, mut on_new) = (0, 0);
    for i in 0..60 {
        let user = format!("user-{i}");
        let first = client
            .check(request(SIDE, &user))
            .await
            .expect("check")
            .into_inner();
        let again = client
            .check(request(SIDE, &user))
            .await
            .expect("check")
            .into_inner();
        assert_eq!(first.status, again.status, "{user} moved between sides");
        match Wire::try_from(first.status).unwrap() {
            Wire::Serving => on_legacy += 1,
            Wire::NotServing => on_new += 1,
            other => panic!("unexpected status {other:?}"),
        }
    }
    assert!(
        on_legacy >= 15 && on_new >= 15,
        "legacy {on_legacy}, new {on_new} of 60"
    );

    // A gRPC error: NOT_FOUND (5) for an unknown service, trailers-only.
    let e = client
        .check(request("no.such.service", "user-1"))
        .await
        .expect_err("unknown service");
    assert_eq!(e.code(), tonic::Code::NotFound);

    // Server streaming: a key that lands on new; a status change there arrives on the stream.
    let mut user = None;
    for i in 0..60 {
        let u = format!("user-{i}");
        let r = client
            .check(request(SIDE, &u))
            .await
            .expect("check")
            .into_inner();
        if r.status == Wire::NotServing as i32 {
            user = Some(u);
            break;
        }
    }
    let user = user.expect("a key on new");
    let mut stream = client
        .watch(request(SIDE, &user))
        .await
        .expect("watch")
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("first message in time")
        .expect("stream ok")
        .expect("a message");
    assert_eq!(Wire::try_from(first.status).unwrap(), Wire::NotServing);
    new_reporter
        .set_service_status(SIDE, ServingStatus::Serving)
        .await;
    let second = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("second message in time")
        .expect("stream ok")
        .expect("a message");
    assert_eq!(Wire::try_from(second.status).unwrap(), Wire::Serving);
    drop(stream);

    let text = p.metrics_text();
    let ok = metric(
        &text,
        "ficus_grpc_responses_total{backend=\"legacy\",grpc_status=\"0\",route=\"health\"}",
    ) + metric(
        &text,
        "ficus_grpc_responses_total{backend=\"new\",grpc_status=\"0\",route=\"health\"}",
    );
    assert!(ok >= 120.0, "statuses from trailers counted: {text}");
    let not_found = metric(
        &text,
        "ficus_grpc_responses_total{backend=\"legacy\",grpc_status=\"5\",route=\"health\"}",
    ) + metric(
        &text,
        "ficus_grpc_responses_total{backend=\"new\",grpc_status=\"5\",route=\"health\"}",
    );
    assert_eq!(not_found, 1.0, "trailers-only NOT_FOUND counted: {text}");
    p.shutdown().await;
}

/// `protocol = "h2"`: HTTP/2 over TLS to a gRPC backend whose certificate a test CA issued
/// (ALPN h2, verified against `ca_file`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_to_an_h2_backend_over_tls() {
    let dir = testkit::temp_dir("grpc-tls");
    let ca = testkit::tls::TestCa::new("grpc CA");
    let ca_file = ca.write(dir.path(), "ca").display().to_string();
    let cert = ca.server(&["localhost"]);
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(SIDE, ServingStatus::NotServing)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let tls = tonic::transport::ServerTlsConfig::new().identity(
        tonic::transport::Identity::from_pem(&cert.cert_pem, &cert.key_pem),
    );
    tokio::spawn(async move {
        Server::builder()
            .tls_config(tls)
            .unwrap()
            .add_service(service)
            .serve_with_incoming(Incoming(listener))
            .await
            .unwrap();
    });
    let legacy = echo("legacy").await;
    let toml = testkit::ProxyToml::new(&legacy, format!("https://localhost:{port}").as_str())
        .new_backend(&format!("protocol = \"h2\"\nca_file = {ca_file:?}"))
        .routes("[[routes]]\nname = \"health\"\npath = \"/grpc.health.v1.Health/*\"\ntarget = \"new\"\n")
        .to_string();
    let p = start_toml(&toml);
    let channel = Channel::from_shared(format!("http://{}", p.listen_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let r = HealthClient::new(channel)
        .check(request(SIDE, "u"))
        .await
        .expect("check over the proxy's TLS h2 connection")
        .into_inner();
    assert_eq!(Wire::try_from(r.status).unwrap(), Wire::NotServing);
    p.shutdown().await;
}

/// A route with shadow mode cannot use an HTTP/2 backend: shadow mirrors over HTTP/1.1 and
/// says so, naming the route and the backend.
#[test]
fn shadow_on_an_h2_backend_is_refused_with_the_reason() {
    let dir = testkit::temp_dir("grpc-shadow");
    let toml = testkit::ProxyToml::new("127.0.0.1:1", "127.0.0.1:2")
        .new_backend("protocol = \"h2c\"")
        .shadow(&dir.path().join("s.db"), "")
        .routes("[[routes]]\nname = \"g\"\npath = \"/g/*\"\n[routes.shadow]\n")
        .to_string();
    let e = ficus_proxy::Config::from_toml_str(&toml)
        .unwrap()
        .validate()
        .unwrap_err();
    assert_eq!(e.field, "routes[0].shadow", "{e}");
    assert!(e.to_string().contains("backends.new speaks h2c"), "{e}");
    let e = ficus_proxy::Config::from_toml_str(
        &testkit::ProxyToml::new("127.0.0.1:1", "127.0.0.1:2")
            .new_backend("protocol = \"h2\"")
            .to_string(),
    )
    .unwrap_err();
    assert_eq!(e.field, "backends.new.protocol", "{e}");
    assert!(e.to_string().contains("needs an https:// url"), "{e}");
}
