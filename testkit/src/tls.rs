//! Certificates for TLS tests: a throwaway CA ([`TestCa`]) that issues server and client
//! certificates, written as PEM files where a test needs paths; and a PostgreSQL that speaks
//! only TLS ([`TlsPostgres`]).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// A certificate and its key, as PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The private key (PKCS#8 PEM).
    pub key_pem: String,
}

impl Issued {
    /// Writes `<stem>.crt` and `<stem>.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        std::fs::write(&cert, &self.cert_pem).expect("write certificate");
        std::fs::write(&key, &self.key_pem).expect("write key");
        (cert, key)
    }
}

/// A certificate authority made for one test.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        TestCa { issuer }
    }

    /// The CA certificate (PEM), what a client trusts.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA certificate to `dir/<stem>.crt`.
    pub fn write(&self, dir: &Path, stem: &str) -> PathBuf {
        let path = dir.join(format!("{stem}.crt"));
        std::fs::write(&path, self.cert_pem()).expect("write CA certificate");
        path
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, names: &[&str]) -> Issued {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("server params");
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        self.sign(params)
    }

    /// A client certificate whose common name is `cn` (PostgreSQL `cert` auth maps it to the
    /// role).
    pub fn client(&self, cn: &str) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params.distinguished_name.push(DnType::CommonName, cn);
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A PostgreSQL that accepts only TLS connections over TCP (`hostssl` lines only), its server
/// certificate issued for `localhost` by [`TlsPostgres::ca`], client certificates from the same
/// CA accepted for role `certuser` (`cert` authentication), everyone else trusted.
pub struct TlsPostgres {
    /// The CA that issued the server's certificate (and accepted client certificates).
    pub ca: TestCa,
    /// The running server; stopped when dropped.
    pub cluster: pgtemp::Cluster,
    /// Where the CA file and anything else the test writes live.
    pub dir: tempfile::TempDir,
}

impl TlsPostgres {
    /// Starts one (initdb + start: a second or two).
    pub fn start() -> TlsPostgres {
        let dir = tempfile::Builder::new()
            .prefix("fpg")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let ca = TestCa::new("ficus test CA");
        let server = ca.server(&["localhost"]);
        let options = pgtemp::Options {
            tls: Some(pgtemp::ServerTls {
                cert_pem: server.cert_pem,
                key_pem: server.key_pem,
                client_ca_pem: Some(ca.cert_pem()),
            }),
            hba: Some(
                "hostssl all certuser 127.0.0.1/32 cert\nhostssl all all 127.0.0.1/32 trust".into(),
            ),
        };
        let cluster = pgtemp::Cluster::start_with(&dir.path().join("pg"), &options)
            .expect("start TLS PostgreSQL");
        cluster
            .execute("CREATE ROLE certuser LOGIN SUPERUSER")
            .expect("create role certuser");
        TlsPostgres { ca, cluster, dir }
    }

    /// The CA file's path (written on first call).
    pub fn ca_file(&self) -> PathBuf {
        let path = self.dir.path().join("ca.crt");
        if !path.exists() {
            self.ca.write(self.dir.path(), "ca");
        }
        path
    }

    /// A URL for database `db` as user `postgres` at `host` (`localhost` matches the
    /// certificate, `127.0.0.1` does not), with `params` appended as the query.
    pub fn url(&self, host: &str, db: &str, params: &str) -> String {
        format!(
            "postgres://postgres@{host}:{}/{db}?{params}",
            self.cluster.port()
        )
    }

    /// The `verify-full` URL of a new database named `db`.
    pub fn database(&self, db: &str) -> String {
        self.cluster.create_database(db).expect("create database");
        self.url(
            "localhost",
            db,
            &format!(
                "sslmode=verify-full&sslrootcert={}",
                self.ca_file().display()
            ),
        )
    }
}

/// An echo backend ([`crate::echo`]'s answers) behind TLS, with the certificate `server`; when
/// `client_ca` is given, clients must present a certificate it issued (mTLS). Counts the
/// handshakes that succeeded (to see connections being reused).
pub struct TlsBackend {
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    /// Completed TLS handshakes.
    pub handshakes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Handshakes that failed, with the reason (e.g. the client sent no certificate).
    pub failures: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl TlsBackend {
    /// Starts one named `name`.
    pub async fn start(
        name: &'static str,
        server: &Issued,
        client_ca: Option<&TestCa>,
    ) -> TlsBackend {
        use std::sync::atomic::Ordering;
        use std::sync::Arc;
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(server.cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .expect("server certificate");
        let key = PrivateKeyDer::from_pem_slice(server.key_pem.as_bytes()).expect("server key");
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("protocol versions");
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in CertificateDer::pem_slice_iter(ca.cert_pem().as_bytes()) {
                    roots.add(c.expect("CA")).expect("add CA");
                }
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .expect("client verifier");
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .expect("server certificate and key");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = crate::backend::listener().await;
        let addr = listener.local_addr().expect("local addr");
        let handshakes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (ok, bad) = (handshakes.clone(), failures.clone());
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let (acceptor, ok, bad) = (acceptor.clone(), ok.clone(), bad.clone());
                tokio::spawn(async move {
                    match acceptor.accept(s).await {
                        Ok(tls) => {
                            ok.fetch_add(1, Ordering::SeqCst);
                            let svc = hyper::service::service_fn(move |r| {
                                crate::backend::echo_handle(name, r)
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                                .await;
                        }
                        Err(e) => bad.lock().expect("failures").push(e.to_string()),
                    }
                });
            }
        });
        TlsBackend {
            addr,
            handshakes,
            failures,
        }
    }
}

/// An HTTP/1.1 client connection over TLS to `addr`, trusting only `ca_pem`, asking for
/// `server_name` (SNI); `Err` with the handshake's reason when it fails. Requests on it reuse
/// the one connection (to see that a certificate rotation leaves it alone).
pub struct TlsClient {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
    /// The leaf certificate the server presented (DER).
    pub peer_leaf: Vec<u8>,
}

impl TlsClient {
    /// Connects and completes the handshake.
    pub async fn connect(
        addr: std::net::SocketAddr,
        server_name: &str,
        ca_pem: &str,
    ) -> Result<TlsClient, String> {
        use std::sync::Arc;
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(c.expect("CA PEM")).expect("add CA");
        }
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let name = ServerName::try_from(server_name.to_string()).map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let peer_leaf = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default();
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(TlsClient { sender, peer_leaf })
    }

    /// `GET path` on this connection: the status.
    pub async fn get(&mut self, path: &str) -> u16 {
        use http_body_util::BodyExt;
        let req = hyper::Request::get(path)
            .header("host", "localhost")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("request");
        let resp = self
            .sender
            .send_request(req)
            .await
            .expect("send on TLS connection");
        let status = resp.status().as_u16();
        let _ = resp.into_body().collect().await;
        status
    }
}
