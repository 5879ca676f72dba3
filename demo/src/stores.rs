//! Direct looks into the stores, the way an operator would check them by hand: the proxy's
//! dual-write log, statements run behind the apps' backs in SQLite and PostgreSQL, and the
//! proxy's metrics text.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::DemoError;

pub use ficus_state::DualWriteSummary as DualWriteLog;

/// What the proxy's dual-write log holds past a row id (read as `migrate watch` reads it).
pub async fn dual_write_log(state: &Path, after: i64) -> Result<DualWriteLog, DemoError> {
    let reader = ficus_state::DualWriteReader::open(&ficus_state::StateLocation::from_path(state))
        .await
        .map_err(Box::new)?;
    Ok(reader.summary_after(after).await.map_err(Box::new)?)
}

/// Runs `sql` on the legacy SQLite file, as a script or an operator would.
pub async fn sqlite_execute(db: &Path, sql: &str) -> Result<usize, DemoError> {
    let (db, sql) = (db.to_path_buf(), sql.to_string());
    tokio::task::spawn_blocking(move || {
        let c = Connection::open(&db).map_err(sqlite_error("opening the legacy database"))?;
        c.busy_timeout(Duration::from_secs(5))
            .map_err(sqlite_error("setting a busy timeout"))?;
        c.execute(&sql, []).map_err(sqlite_error(&sql))
    })
    .await?
}

/// One value from the legacy SQLite file.
pub async fn sqlite_value<T>(db: &Path, sql: &str) -> Result<T, DemoError>
where
    T: rusqlite::types::FromSql + Send + 'static,
{
    let (db, sql) = (db.to_path_buf(), sql.to_string());
    tokio::task::spawn_blocking(move || {
        read_only(&db)?
            .query_row(&sql, [], |r| r.get(0))
            .map_err(sqlite_error(&sql))
    })
    .await?
}

fn read_only(path: &Path) -> Result<Connection, DemoError> {
    let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(sqlite_error(&format!("opening {}", path.display())))?;
    c.busy_timeout(Duration::from_secs(5))
        .map_err(sqlite_error("setting a busy timeout"))?;
    Ok(c)
}

fn sqlite_error(what: &str) -> impl FnOnce(rusqlite::Error) -> DemoError {
    let what = what.to_string();
    move |source| DemoError::Sqlite { what, source }
}

/// A connection to the new service's PostgreSQL database.
pub async fn postgres(url: &str) -> Result<tokio_postgres::Client, DemoError> {
    let endpoint = ficus_pg::Endpoint::parse(url, "ficus-demo").map_err(DemoError::Connect)?;
    endpoint.connect("demo").await.map_err(DemoError::Connect)
}

/// Runs `sql` on PostgreSQL; the rows it changed.
pub async fn pg_execute(pg: &tokio_postgres::Client, sql: &str) -> Result<u64, DemoError> {
    pg.execute(sql, &[]).await.map_err(|source| DemoError::Sql {
        what: sql.to_string(),
        source,
    })
}

/// The value of the metric sample whose line starts with `series` (`name{labels}`), if any.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// Counts of rows in `tasks` on both sides: (SQLite, PostgreSQL).
pub async fn task_counts(db: &Path, pg: &tokio_postgres::Client) -> Result<(i64, i64), DemoError> {
    let legacy: i64 = sqlite_value(db, "SELECT count(*) FROM tasks").await?;
    let new: i64 = pg
        .query_one("SELECT count(*) FROM tasks", &[])
        .await
        .map_err(|source| DemoError::Sql {
            what: "counting tasks".into(),
            source,
        })?
        .get(0);
    Ok((legacy, new))
}

#[cfg(test)]
mod tests {
    use super::metric;

    #[test]
    fn metric_finds_the_exact_series() {
        let text = "# HELP x\nficus_a_total{route=\"r\"} 3\nficus_a_total{route=\"rr\"} 5\n";
        assert_eq!(metric(text, "ficus_a_total{route=\"r\"}"), Some(3.0));
        assert_eq!(metric(text, "ficus_a_total{route=\"rr\"}"), Some(5.0));
        assert_eq!(metric(text, "ficus_b_total"), None);
    }
}
