//! PostgreSQL for tests: [`fresh_database`] (from pgtemp: a throwaway cluster per test process,
//! or `FICUS_TEST_DATABASE_URL`), a connected client, rows read in one call.

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

/// Every row `sql` selects, each mapped by `row`.
pub async fn rows<T>(
    client: &tokio_postgres::Client,
    sql: &str,
    row: impl FnMut(&tokio_postgres::Row) -> T,
) -> Vec<T> {
    client
        .query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .iter()
        .map(row)
        .collect()
}
