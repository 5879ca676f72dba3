//! `ficus migrate` (the real binary) against a PostgreSQL that accepts only TLS (`hostssl`
//! lines only; server certificate from a CA the test makes): run and verify with
//! `sslmode=verify-full`; `sslmode=disable` refused by the server, in its words; a
//! certificate for another host name refused with a message that says so; exit codes honest.

use std::process::Output;

use testkit::cli::text;
use testkit::tls::TlsPostgres;

const FICUS: &str = env!("CARGO_BIN_EXE_ficus");

fn ficus(args: &[&str]) -> Output {
    testkit::cli::run(FICUS, args)
}

#[test]
fn migrate_run_and_verify_over_verify_full_and_refusals_that_say_why() {
    let pg = TlsPostgres::start();
    let tmp = testkit::temp_dir("migrate-tls");
    let src = testkit::sqlite::create(
        tmp.path(),
        "app.db",
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title TEXT NOT NULL, done BOOLEAN NOT NULL);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)
         INSERT INTO tasks SELECT i, 'task ' || i, i % 2 FROM n;",
    );
    let s = src.to_str().unwrap();
    let url = pg.database("mig_tls");
    assert!(url.contains("sslmode=verify-full"), "{url}");

    let o = ficus(&["migrate", "run", "--source", s, "--target", &url, "--quiet"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = ficus(&["migrate", "verify", "--source", s, "--target", &url]);
    assert!(o.status.success(), "{}", text(&o));
    let report = text(&o);
    assert!(report.contains("500"), "verify counted the rows: {report}");

    // sslmode=disable: the server refuses (hostssl only), and the message is the server's.
    let plain = pg.url("localhost", "mig_tls", "sslmode=disable");
    let o = ficus(&["migrate", "verify", "--source", s, "--target", &plain]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let msg = text(&o);
    assert!(msg.contains("no pg_hba.conf entry"), "{msg}");
    assert!(msg.contains("no encryption"), "{msg}");
    assert!(msg.contains("sslmode=verify-full"), "suggests TLS: {msg}");

    // The certificate names `localhost`; 127.0.0.1 is not a name it has.
    let other_name = pg.url(
        "127.0.0.1",
        "mig_tls",
        &format!("sslmode=verify-full&sslrootcert={}", pg.ca_file().display()),
    );
    let o = ficus(&["migrate", "verify", "--source", s, "--target", &other_name]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let msg = text(&o);
    assert!(
        msg.contains("certificate is not for host 127.0.0.1"),
        "{msg}"
    );
    assert!(
        msg.contains("localhost"),
        "names what the certificate has: {msg}"
    );
}
