//! TLS against a real PostgreSQL that accepts only `hostssl` connections, with a CA and
//! certificates made by the test: every sslmode, a certificate for another name, an untrusted
//! CA, client certificates, a server without TLS, and the errors an operator reads.

use std::sync::OnceLock;

use ficus_pg::{Endpoint, PgError};
use testkit::tls::{TestCa, TlsPostgres};

fn server() -> &'static TlsPostgres {
    static S: OnceLock<TlsPostgres> = OnceLock::new();
    S.get_or_init(TlsPostgres::start)
}

fn endpoint(url: &str) -> Endpoint {
    Endpoint::parse(url, "ficus-pg-test").unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// Whether the session is encrypted, as the server sees it.
async fn encrypted(url: &str) -> Result<bool, PgError> {
    let c = endpoint(url).connect("test").await?;
    let row = c
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl");
    Ok(row.get(0))
}

fn ca_param() -> String {
    format!("sslrootcert={}", server().ca_file().display())
}

#[tokio::test]
async fn verify_full_with_the_right_name_and_ca_connects_encrypted() {
    let s = server();
    let url = s.url(
        "localhost",
        "postgres",
        &format!("sslmode=verify-full&{}", ca_param()),
    );
    assert!(encrypted(&url).await.unwrap());
    // key=value form too.
    let kv = format!(
        "host=localhost port={} user=postgres dbname=postgres sslmode=verify-full sslrootcert='{}'",
        s.cluster.port(),
        s.ca_file().display()
    );
    assert!(encrypted(&kv).await.unwrap());
}

#[tokio::test]
async fn disable_is_refused_by_a_hostssl_only_server_in_its_words() {
    let url = server().url("localhost", "postgres", "sslmode=disable");
    let e = encrypted(&url).await.unwrap_err();
    assert!(matches!(e, PgError::Refused { .. }), "{e:?}");
    let text = e.to_string();
    eprintln!("{text}");
    assert!(text.contains("no pg_hba.conf entry"), "{text}");
    assert!(text.contains("no encryption"), "{text}");
    assert!(text.contains("28000"), "SQLSTATE shown: {text}");
}

#[tokio::test]
async fn another_host_name_fails_verify_full_and_says_so_but_passes_verify_ca() {
    let s = server();
    // The certificate names `localhost`; 127.0.0.1 is the same server by another name.
    let url = s.url(
        "127.0.0.1",
        "postgres",
        &format!("sslmode=verify-full&{}", ca_param()),
    );
    let e = encrypted(&url).await.unwrap_err();
    assert!(matches!(e, PgError::NameMismatch { .. }), "{e:?}");
    let text = e.to_string();
    eprintln!("{text}");
    assert!(text.contains("not for host 127.0.0.1"), "{text}");
    assert!(
        text.contains("verify-ca"),
        "suggests the alternative: {text}"
    );

    let url = s.url(
        "127.0.0.1",
        "postgres",
        &format!("sslmode=verify-ca&{}", ca_param()),
    );
    assert!(encrypted(&url).await.unwrap());
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_not_trusted() {
    let s = server();
    let dir = testkit::temp_dir("pg-other-ca");
    let other = TestCa::new("someone else").write(dir.path(), "other");
    let url = s.url(
        "localhost",
        "postgres",
        &format!("sslmode=verify-full&sslrootcert={}", other.display()),
    );
    let e = encrypted(&url).await.unwrap_err();
    assert!(matches!(e, PgError::Untrusted { .. }), "{e:?}");
    let text = e.to_string();
    eprintln!("{text}");
    assert!(text.contains("not trusted"), "{text}");
    assert!(
        text.contains(&other.display().to_string()),
        "names the CA file: {text}"
    );
}

#[tokio::test]
async fn prefer_and_require_encrypt_without_checking_like_libpq() {
    let s = server();
    assert!(
        encrypted(&s.url("127.0.0.1", "postgres", ""))
            .await
            .unwrap(),
        "default prefer"
    );
    assert!(
        encrypted(&s.url("127.0.0.1", "postgres", "sslmode=require"))
            .await
            .unwrap()
    );
    // require with a root certificate checks the chain (libpq): another CA fails.
    let dir = testkit::temp_dir("pg-require-ca");
    let other = TestCa::new("someone else").write(dir.path(), "other");
    let url = s.url(
        "127.0.0.1",
        "postgres",
        &format!("sslmode=require&sslrootcert={}", other.display()),
    );
    assert!(matches!(
        encrypted(&url).await.unwrap_err(),
        PgError::Untrusted { .. }
    ));
}

#[tokio::test]
async fn client_certificates_authenticate_a_role() {
    let s = server();
    let dir = testkit::temp_dir("pg-client-cert");
    let (cert, key) = s.ca.client("certuser").write(dir.path(), "certuser");
    let base = format!(
        "postgres://certuser@localhost:{}/postgres?sslmode=verify-full&{}",
        s.cluster.port(),
        ca_param()
    );
    let with = format!("{base}&sslcert={}&sslkey={}", cert.display(), key.display());
    assert!(encrypted(&with).await.unwrap());
    let e = encrypted(&base).await.unwrap_err();
    assert!(matches!(e, PgError::Refused { .. }), "{e:?}");
    assert!(e.to_string().contains("certificate"), "{e}");

    // A key that does not belong to the certificate is a setting error, before connecting.
    let (_, other_key) = s.ca.client("someone").write(dir.path(), "someone");
    let bad = format!(
        "{base}&sslcert={}&sslkey={}",
        cert.display(),
        other_key.display()
    );
    let e = Endpoint::parse(&bad, "t").unwrap_err();
    let text = e.to_string();
    eprintln!("{text}");
    assert!(text.contains("sslkey"), "{text}");
    assert!(text.contains("does not go with"), "{text}");
}

#[tokio::test]
async fn a_wrong_database_reads_as_the_servers_words_not_db_error() {
    let url = server().url(
        "localhost",
        "nope",
        &format!("sslmode=verify-full&{}", ca_param()),
    );
    let e = encrypted(&url).await.unwrap_err();
    let text = e.to_string();
    eprintln!("{text}");
    assert!(text.contains("database \"nope\" does not exist"), "{text}");
    assert!(!text.ends_with("db error"), "{text}");
}

#[tokio::test]
async fn a_server_without_tls_fails_require_and_serves_prefer_in_plain() {
    let db = testkit::pg::fresh_database("pg_tls_plain").expect("plain PostgreSQL");
    let e = encrypted(&format!("{}?sslmode=require", db.url))
        .await
        .unwrap_err();
    assert!(matches!(e, PgError::TlsNotOffered { .. }), "{e:?}");
    assert!(e.to_string().contains("does not support TLS"), "{e}");
    assert!(!encrypted(&format!("{}?sslmode=prefer", db.url))
        .await
        .unwrap());
}

#[test]
fn settings_that_cannot_work_are_named_before_connecting() {
    let missing = Endpoint::parse(
        "postgres://u@db.example.com/x?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
        "t",
    )
    .unwrap_err()
    .to_string();
    assert!(
        missing.contains("sslrootcert") && missing.contains("/nonexistent/ca.pem"),
        "{missing}"
    );

    let dir = testkit::temp_dir("pg-bad-pem");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let e = Endpoint::parse(
        &format!(
            "postgres://u@db.example.com/x?sslmode=verify-ca&sslrootcert={}",
            junk.display()
        ),
        "t",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("holds no PEM certificate"), "{e}");

    let e = Endpoint::parse(
        "host=/tmp user=u sslmode=verify-full sslrootcert=system",
        "t",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("names no TCP host"), "{e}");

    let e = Endpoint::parse("postgres://u:secret@h/x?sslmode=verify-full", "t")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no root certificate is named") || e.contains("sslrootcert"),
        "{e}"
    );
    assert!(!e.contains("secret"), "password shown: {e}");
}
