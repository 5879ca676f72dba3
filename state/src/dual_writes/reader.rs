//! Reading the dual-write log back: by id ranges (the cursor `migrate watch` keeps), by ids
//! (gaps that commit late on a PostgreSQL store shared by replicas), and as a summary.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::Connection;

use crate::{StateError, StateLocation};

/// One row of `dual_writes`, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DualWriteEntry {
    /// Row id (increasing; see [`crate::schema`] for ordering on PostgreSQL).
    pub id: i64,
    /// The request time stamped on both sides.
    pub at: String,
    /// Route name.
    pub route: String,
    /// The row key the route's `key` setting took from the request.
    pub key: String,
    /// HTTP method.
    pub method: String,
    /// `legacy` or `new`.
    pub primary_side: String,
    /// Legacy's status, if it answered.
    pub legacy_status: Option<i64>,
    /// New's status, if it answered.
    pub new_status: Option<i64>,
    /// 1 when exactly one side returned 2xx.
    pub divergent: i64,
}

/// Counts over the rows past an id.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DualWriteSummary {
    /// Rows.
    pub rows: i64,
    /// The newest row id (the cursor for the next look).
    pub last_id: i64,
    /// Rows whose primary was legacy.
    pub primary_legacy: i64,
    /// Rows whose primary was new.
    pub primary_new: i64,
    /// Both sides answered with the same status.
    pub agreed: i64,
    /// Exactly one side answered 2xx.
    pub divergent: i64,
}

const COLUMNS: &str =
    "id, at, route, key, method, primary_side, legacy_status, new_status, divergent";

/// A reader of the dual-write log of a SQLite or PostgreSQL store.
pub enum DualWriteReader {
    /// A SQLite store.
    Sqlite {
        /// In a mutex so the reader's futures are `Send` (only locked in synchronous code).
        conn: Mutex<Connection>,
        /// The file.
        path: PathBuf,
    },
    /// A PostgreSQL store.
    Postgres {
        /// The connection (driven on the caller's runtime).
        client: tokio_postgres::Client,
        /// The URL without its password.
        target: String,
    },
}

impl DualWriteReader {
    /// Opens the store at `location`, creating its tables if absent (a reader may start
    /// before any proxy wrote).
    pub async fn open(location: &StateLocation) -> Result<DualWriteReader, StateError> {
        match location {
            StateLocation::Sqlite(path) => {
                let err = StateError::sqlite(path, "open");
                let conn = Connection::open(path).map_err(&err)?;
                conn.busy_timeout(Duration::from_secs(5)).map_err(&err)?;
                crate::schema::create_sqlite(&conn)
                    .map_err(StateError::sqlite(path, "create tables"))?;
                Ok(DualWriteReader::Sqlite {
                    conn: Mutex::new(conn),
                    path: path.clone(),
                })
            }
            StateLocation::Postgres(url) => {
                let endpoint = crate::pg::endpoint(url, "ficus-migrate")?;
                let target = endpoint.shown().to_string();
                let mut client = crate::pg::connect(&endpoint, "dual-write reader").await?;
                crate::schema::create_pg(&mut client)
                    .await
                    .map_err(StateError::pg(&target, "create tables"))?;
                Ok(DualWriteReader::Postgres { client, target })
            }
        }
    }

    /// The store, for messages (no password).
    pub fn target(&self) -> String {
        match self {
            DualWriteReader::Sqlite { path, .. } => path.display().to_string(),
            DualWriteReader::Postgres { target, .. } => target.clone(),
        }
    }

    fn table(&self) -> &'static str {
        match self {
            DualWriteReader::Sqlite { .. } => "dual_writes",
            DualWriteReader::Postgres { .. } => "ficus_proxy.dual_writes",
        }
    }

    /// Runs `sql` (written with `$n` placeholders: SQLite binds `$1`, `$2`, … by first
    /// appearance, which is their order here) on either engine and maps each row.
    async fn query<T>(
        &self,
        sql: &str,
        sqlite_params: &[&(dyn rusqlite::ToSql + Sync)],
        pg_params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        sqlite_row: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
        pg_row: impl Fn(&tokio_postgres::Row) -> Result<T, tokio_postgres::Error>,
    ) -> Result<Vec<T>, StateError> {
        match self {
            DualWriteReader::Sqlite { conn, path } => {
                let err = StateError::sqlite(path, "read dual_writes");
                let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
                let mut st = conn.prepare_cached(sql).map_err(&err)?;
                let params: Vec<&dyn rusqlite::ToSql> = sqlite_params
                    .iter()
                    .map(|p| *p as &dyn rusqlite::ToSql)
                    .collect();
                let rows = st.query_map(&params[..], sqlite_row).map_err(&err)?;
                rows.collect::<Result<_, _>>().map_err(err)
            }
            DualWriteReader::Postgres { client, target } => {
                let err = StateError::pg(target, "read ficus_proxy.dual_writes");
                let rows = client.query(sql, pg_params).await.map_err(&err)?;
                rows.iter()
                    .map(pg_row)
                    .collect::<Result<_, _>>()
                    .map_err(err)
            }
        }
    }

    /// The highest id (of the rows stamped before `before`, when given); 0 when none.
    pub async fn max_id(&self, before: Option<&str>) -> Result<i64, StateError> {
        let t = self.table();
        let v = match before {
            Some(b) => {
                let sql = format!("SELECT coalesce(max(id), 0) FROM {t} WHERE at < $1");
                self.query(&sql, &[&b], &[&b], |r| r.get(0), |r| r.try_get(0))
                    .await?
            }
            None => {
                let sql = format!("SELECT coalesce(max(id), 0) FROM {t}");
                self.query(&sql, &[], &[], |r| r.get(0), |r| r.try_get(0))
                    .await?
            }
        };
        Ok(v.first().copied().unwrap_or(0))
    }

    /// Rows with `after < id <= until`, by id, `limit` at most.
    pub async fn rows_after(
        &self,
        after: i64,
        until: i64,
        limit: i64,
    ) -> Result<Vec<DualWriteEntry>, StateError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM {} WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3",
            self.table()
        );
        self.query(
            &sql,
            &[&after, &until, &limit],
            &[&after, &until, &limit],
            sqlite_entry,
            pg_entry,
        )
        .await
    }

    /// The rows of these ids that exist now, by id.
    pub async fn rows_with_ids(&self, ids: &[i64]) -> Result<Vec<DualWriteEntry>, StateError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            DualWriteReader::Sqlite { .. } => {
                // Integers only: safe to inline, and no parameter limit to mind.
                let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
                let sql =
                    format!("SELECT {COLUMNS} FROM dual_writes WHERE id IN ({list}) ORDER BY id");
                self.query(&sql, &[], &[], sqlite_entry, pg_entry).await
            }
            DualWriteReader::Postgres { .. } => {
                let sql = format!(
                    "SELECT {COLUMNS} FROM ficus_proxy.dual_writes WHERE id = ANY($1) ORDER BY id"
                );
                let ids = ids.to_vec();
                self.query(&sql, &[], &[&ids], sqlite_entry, pg_entry).await
            }
        }
    }

    /// Counts over the rows with an id above `after`.
    pub async fn summary_after(&self, after: i64) -> Result<DualWriteSummary, StateError> {
        let sql = format!(
            "SELECT count(*), coalesce(max(id), $1),
                    coalesce(sum(CASE WHEN primary_side = 'legacy' THEN 1 ELSE 0 END), 0),
                    coalesce(sum(CASE WHEN primary_side = 'new' THEN 1 ELSE 0 END), 0),
                    coalesce(sum(CASE WHEN legacy_status IS NOT DISTINCT FROM new_status THEN 1 ELSE 0 END), 0),
                    coalesce(sum(divergent), 0)
             FROM {} WHERE id > $1",
            self.table()
        );
        let v = self
            .query(
                &sql,
                &[&after],
                &[&after],
                |r| {
                    Ok(DualWriteSummary {
                        rows: r.get(0)?,
                        last_id: r.get(1)?,
                        primary_legacy: r.get(2)?,
                        primary_new: r.get(3)?,
                        agreed: r.get(4)?,
                        divergent: r.get(5)?,
                    })
                },
                |r| {
                    Ok(DualWriteSummary {
                        rows: r.try_get(0)?,
                        last_id: r.try_get(1)?,
                        primary_legacy: r.try_get(2)?,
                        primary_new: r.try_get(3)?,
                        agreed: r.try_get(4)?,
                        divergent: r.try_get(5)?,
                    })
                },
            )
            .await?;
        Ok(v.into_iter().next().unwrap_or_default())
    }
}

fn sqlite_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<DualWriteEntry> {
    Ok(DualWriteEntry {
        id: r.get(0)?,
        at: r.get(1)?,
        route: r.get(2)?,
        key: r.get(3)?,
        method: r.get(4)?,
        primary_side: r.get(5)?,
        legacy_status: r.get(6)?,
        new_status: r.get(7)?,
        divergent: r.get(8)?,
    })
}

fn pg_entry(r: &tokio_postgres::Row) -> Result<DualWriteEntry, tokio_postgres::Error> {
    Ok(DualWriteEntry {
        id: r.try_get(0)?,
        at: r.try_get(1)?,
        route: r.try_get(2)?,
        key: r.try_get(3)?,
        method: r.try_get(4)?,
        primary_side: r.try_get(5)?,
        legacy_status: r.try_get::<_, Option<i32>>(6)?.map(i64::from),
        new_status: r.try_get::<_, Option<i32>>(7)?.map(i64::from),
        divergent: i64::from(r.try_get::<_, i32>(8)?),
    })
}
