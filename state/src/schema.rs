//! Every table of the proxy's state store, for both engines, and how they are created.
//!
//! | table | rows |
//! | --- | --- |
//! | `rollout` | an operator's run-time percentage per route (basis points), with the configuration's percentage when it was set; no row: the configuration decides |
//! | `audit` | one row per change: time, route, from, to, actor, action, detail (the evidence behind a plan's step; NULL otherwise) |
//! | `plan` | a route's step plan: its state (JSON, see the proxy's `plan` module) and a version bumped by every write (compare-and-set: one replica takes a step once) |
//! | `dual_writes` | one row per write on a dual-write route (see below) |
//!
//! `dual_writes` columns: `id` increasing (AUTOINCREMENT; `bigserial` in PostgreSQL — with
//! several replicas ids are unique but may commit out of order); `at` the request time stamped
//! on both sides (UTC, `%Y-%m-%dT%H:%M:%S.%6fZ`); `route`; `key` (the value of the route's
//! `key` setting); `method`; `primary_side` (`legacy`/`new`: whose answer the client got);
//! `legacy_status`, `new_status` (NULL when that side was not sent the request or the exchange
//! failed); `divergent` (1 when exactly one side returned 2xx).
//!
//! In PostgreSQL the tables live in schema `ficus_proxy` and are created under
//! [`SCHEMA_LOCK`], so replicas (and `migrate watch`) starting together do not race on
//! `CREATE … IF NOT EXISTS`.

use rusqlite::Connection;

/// The advisory lock held while creating the PostgreSQL tables.
pub const SCHEMA_LOCK: i64 = 7267231501;

/// The `NOTIFY` channel a rollout change is announced on.
pub const CHANNEL: &str = "ficus_proxy_rollout";

const SQLITE_DDL: &str = "CREATE TABLE IF NOT EXISTS rollout (
  route      TEXT PRIMARY KEY,
  percent_bp INTEGER NOT NULL,
  config_bp  INTEGER NOT NULL,
  actor      TEXT NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
  id      INTEGER PRIMARY KEY AUTOINCREMENT,
  at      TEXT NOT NULL,
  route   TEXT NOT NULL,
  from_bp INTEGER NOT NULL,
  to_bp   INTEGER NOT NULL,
  actor   TEXT NOT NULL,
  action  TEXT NOT NULL,
  detail  TEXT
);
CREATE TABLE IF NOT EXISTS plan (
  route      TEXT PRIMARY KEY,
  state      TEXT NOT NULL,
  version    INTEGER NOT NULL,
  updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dual_writes (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at TEXT NOT NULL,
  route TEXT NOT NULL,
  key TEXT NOT NULL,
  method TEXT NOT NULL,
  primary_side TEXT NOT NULL,
  legacy_status INTEGER,
  new_status INTEGER,
  divergent INTEGER NOT NULL
);";

const PG_DDL: &str = "CREATE SCHEMA IF NOT EXISTS ficus_proxy;
CREATE TABLE IF NOT EXISTS ficus_proxy.rollout (
    route      text PRIMARY KEY,
    percent_bp integer NOT NULL,
    config_bp  integer NOT NULL,
    actor      text NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS ficus_proxy.audit (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL,
    route   text NOT NULL,
    from_bp integer NOT NULL,
    to_bp   integer NOT NULL,
    actor   text NOT NULL,
    action  text NOT NULL
);
ALTER TABLE ficus_proxy.audit ADD COLUMN IF NOT EXISTS detail text;
CREATE TABLE IF NOT EXISTS ficus_proxy.plan (
    route      text PRIMARY KEY,
    state      text NOT NULL,
    version    bigint NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS ficus_proxy.dual_writes (
  id bigserial PRIMARY KEY,
  at text NOT NULL,
  route text NOT NULL,
  key text NOT NULL,
  method text NOT NULL,
  primary_side text NOT NULL,
  legacy_status integer,
  new_status integer,
  divergent integer NOT NULL
);";

/// Creates every table of a SQLite store that is missing, and the columns a store made by an
/// older release lacks (`audit.detail`).
pub fn create_sqlite(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SQLITE_DDL)?;
    let has_detail: i64 = conn.query_row(
        "SELECT count(*) FROM pragma_table_info('audit') WHERE name = 'detail'",
        [],
        |r| r.get(0),
    )?;
    if has_detail == 0 {
        conn.execute_batch("ALTER TABLE audit ADD COLUMN detail TEXT")?;
    }
    Ok(())
}

/// Creates schema `ficus_proxy` and every table that is missing, in one transaction under
/// [`SCHEMA_LOCK`]. Skips the lock when everything exists already (the common case: a
/// reader starting beside running proxies).
pub async fn create_pg(client: &mut tokio_postgres::Client) -> Result<(), tokio_postgres::Error> {
    let present: i64 = client
        .query_one(
            "SELECT (SELECT count(*) FROM pg_tables WHERE schemaname = 'ficus_proxy'
               AND tablename IN ('rollout', 'audit', 'dual_writes', 'plan'))
             + (SELECT count(*) FROM information_schema.columns WHERE table_schema = 'ficus_proxy'
               AND table_name = 'audit' AND column_name = 'detail')",
            &[],
        )
        .await?
        .try_get(0)?;
    if present == 5 {
        return Ok(());
    }
    let tx = client.transaction().await?;
    tx.batch_execute(&format!("SELECT pg_advisory_xact_lock({SCHEMA_LOCK})"))
        .await?;
    tx.batch_execute(PG_DDL).await?;
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_tables_are_created_once_and_again() {
        let c = Connection::open_in_memory().unwrap();
        create_sqlite(&c).unwrap();
        create_sqlite(&c).unwrap();
        let n: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'
                   AND name IN ('rollout', 'audit', 'dual_writes', 'plan')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 4);
    }
}
