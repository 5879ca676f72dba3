//! PostgreSQL for tests: [`fresh_database`] (from pgtemp: a throwaway cluster per test process,
//! or `FICUS_TEST_DATABASE_URL`) and a connected client.

pub use pgtemp::{
    fresh_database, with_database, Cluster, PgTempError, TestDatabase, DATABASE_URL_ENV,
};

/// A client connected to `url` (no TLS), its connection driven by a spawned task.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}
