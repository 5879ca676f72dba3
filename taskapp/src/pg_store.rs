//! The new side's store: PostgreSQL through a deadpool-postgres pool, with proper types
//! (`bigint` ids, `boolean`, `timestamptz`, `jsonb` payloads). It creates its schema if absent.
//!
//! Ids are not drawn from a sequence: every insert takes `max(id) + 1` under one advisory
//! lock, as SQLite does for an `INTEGER PRIMARY KEY`. That keeps ids identical on both sides
//! for the same inserts, and keeps working on tables a migrator filled with explicit ids
//! (where a sequence would be behind). Timestamps are read and written as `timestamptz`, or
//! as `timestamp` (taken as UTC) if a migrator chose that type.
//!
//! # Event payloads: the legacy's text where the column can hold it
//! Both sides build a `task_events.payload` as the monolith's Python `json.dumps` text
//! ([`crate::payload`]). How it is written here depends on the column's type, looked up once
//! at [`PgStore::connect`] ([`PayloadColumn`]):
//! - `text`/`varchar` — what `ficus migrate run` makes of the legacy `TEXT` column — and
//!   `json` (a migration config's `pg_type = "json"`; PostgreSQL keeps `json` input verbatim):
//!   the text is stored byte for byte as the legacy side stores it, so a write mirrored to both
//!   sides leaves identical rows and `ficus migrate verify`/`watch` see no drift.
//! - `jsonb` — the schema this store creates itself on an empty database: PostgreSQL stores a
//!   parsed value, not text, and prints it its own way (object keys ordered by length, then
//!   bytes; `\uXXXX` escapes decoded). The *value* is the legacy's, the text cannot be, and
//!   nothing here pretends otherwise. ficus's row comparisons run on migrated schemas (the
//!   migrator never creates `jsonb` and refuses to migrate into existing tables), so this case
//!   only arises in a database the app made itself; `ficus migrate verify`/`watch` pointed at
//!   one would compare the payloads as text and report them.
//!
//! Casting the text to `jsonb` unconditionally (what this store used to do) turned a `text`
//! column's multi-key payloads (`set-status`: `from`, `to`, `blocked_reason`) into jsonb's key
//! order: real drift against the legacy row.

use std::error::Error as StdError;
use std::time::Duration;

use bytes::BytesMut;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use time::{OffsetDateTime, PrimitiveDateTime};
use tokio_postgres::config::Host;
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};
use tokio_postgres::Row;

use crate::error::{TaskAppError, TaskError};
use crate::model::{NewTask, Task};
use crate::sqlite_store::{EVENT_COLUMNS, TASK_COLUMNS};
use crate::store::{Edit, Store};
use crate::timestamp::Timestamp;

/// The new side's schema (same table, column and index names as the legacy one).
pub const POSTGRES_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tasks (
  id BIGINT NOT NULL PRIMARY KEY,
  task_id TEXT NOT NULL,
  title TEXT NOT NULL,
  priority TEXT NOT NULL,
  status TEXT NOT NULL,
  dependencies TEXT,
  assigned_agent TEXT,
  worktree TEXT,
  status_notes TEXT,
  estimated_effort TEXT,
  completed BOOLEAN NOT NULL,
  blocked_reason TEXT,
  blocked_by TEXT,
  last_heartbeat TIMESTAMPTZ,
  instructions TEXT,
  created_at TIMESTAMPTZ NOT NULL,
  updated_at TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS ix_tasks_task_id ON tasks (task_id);
CREATE INDEX IF NOT EXISTS ix_tasks_status ON tasks (status);
CREATE TABLE IF NOT EXISTS task_events (
  id BIGINT NOT NULL PRIMARY KEY,
  task_id TEXT NOT NULL REFERENCES tasks (task_id),
  kind TEXT NOT NULL,
  agent TEXT,
  payload JSONB,
  created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_task_events_task_id ON task_events (task_id);
";

/// Advisory lock keys ("ficus" + 1 / + 2): schema creation, and every write.
const SCHEMA_LOCK: i64 = 0x6669_6375_7301;
const WRITE_LOCK: i64 = 0x6669_6375_7302;

const SELECT_TASKS: &str = "SELECT id::int8, task_id, title, priority, status, dependencies, \
     assigned_agent, worktree, status_notes, estimated_effort, completed, blocked_reason, \
     blocked_by, last_heartbeat, instructions, created_at, updated_at FROM tasks";

const INSERT_TASK: &str = "INSERT INTO tasks (id, task_id, title, priority, status, \
     dependencies, assigned_agent, worktree, status_notes, estimated_effort, completed, \
     blocked_reason, blocked_by, last_heartbeat, instructions, created_at, updated_at) \
     VALUES ((SELECT COALESCE(MAX(id), 0) + 1 FROM tasks), $1, $2, $3, $4, $5, $6, $7, $8, $9, \
     $10, $11, $12, $13, $14, $15, $16) RETURNING id::int8";

const POOL_SIZE: usize = 8;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The type of `task_events.payload`, which decides how the payload text is written (see the
/// module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PayloadColumn {
    /// `text`, `varchar` or another type text is assigned to: the legacy's text, verbatim.
    Text,
    /// `json`: the legacy's text, verbatim (`json` keeps its input as written).
    Json,
    /// `jsonb`: the legacy's value; the text is PostgreSQL's.
    Jsonb,
}

impl PayloadColumn {
    /// From `information_schema.columns.data_type`.
    fn from_data_type(data_type: &str) -> PayloadColumn {
        match data_type {
            "jsonb" => PayloadColumn::Jsonb,
            "json" => PayloadColumn::Json,
            _ => PayloadColumn::Text,
        }
    }

    /// The event insert for this column type.
    fn append_sql(self) -> &'static str {
        match self {
            PayloadColumn::Text => APPEND_EVENT_TEXT,
            PayloadColumn::Json => APPEND_EVENT_JSON,
            PayloadColumn::Jsonb => APPEND_EVENT_JSONB,
        }
    }
}

const APPEND_EVENT_TEXT: &str = "INSERT INTO task_events (id, task_id, kind, agent, payload, \
     created_at) VALUES ((SELECT COALESCE(MAX(id), 0) + 1 FROM task_events), $1, $2, $3, \
     $4::text, $5)";
const APPEND_EVENT_JSON: &str = "INSERT INTO task_events (id, task_id, kind, agent, payload, \
     created_at) VALUES ((SELECT COALESCE(MAX(id), 0) + 1 FROM task_events), $1, $2, $3, \
     $4::text::json, $5)";
const APPEND_EVENT_JSONB: &str = "INSERT INTO task_events (id, task_id, kind, agent, payload, \
     created_at) VALUES ((SELECT COALESCE(MAX(id), 0) + 1 FROM task_events), $1, $2, $3, \
     $4::text::jsonb, $5)";

/// Tasks in a PostgreSQL database.
pub(crate) struct PgStore {
    pool: Pool,
    target: String,
    payload: PayloadColumn,
}

impl PgStore {
    /// Connects (failing fast if the server cannot be reached), creates the schema if absent
    /// and checks the columns the API needs are there.
    pub(crate) async fn connect(url: &str) -> Result<PgStore, TaskAppError> {
        // ficus-pg: libpq URL with sslmode / certificates, TLS over rustls.
        let endpoint =
            ficus_pg::Endpoint::parse(url, "ficus-taskapp").map_err(TaskAppError::Postgres)?;
        let target = describe(endpoint.config());
        let explain = endpoint.clone();
        let manager = Manager::from_config(
            endpoint.config().clone(),
            endpoint.tls(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(CONNECT_TIMEOUT * 2))
            .wait_timeout(Some(Duration::from_secs(30)))
            .build()
            .map_err(|e| TaskAppError::Internal(e.to_string()))?;
        let mut client = match pool.get().await {
            Ok(client) => client,
            // The driver's failure in ficus-pg's terms (TLS, certificate, the server's words).
            Err(PoolError::Backend(pg)) => return Err(TaskAppError::Postgres(explain.explain(pg))),
            Err(e) => {
                return Err(TaskAppError::PostgresConnect {
                    target: target.clone(),
                    reason: pool_error_text(&e),
                })
            }
        };
        let schema_err = |e: tokio_postgres::Error| TaskAppError::PostgresSchema {
            target: target.clone(),
            reason: pg_error_text(&e),
        };
        // Serialised so that two services starting on one empty database do not race.
        let tx = client.transaction().await.map_err(schema_err)?;
        tx.batch_execute(&format!("SELECT pg_advisory_xact_lock({SCHEMA_LOCK})"))
            .await
            .map_err(schema_err)?;
        // Check tables that exist before creating what is missing: index creation on a
        // foreign `tasks` table would fail with a less helpful message.
        for (table, wanted) in [
            ("tasks", &TASK_COLUMNS[..]),
            ("task_events", &EVENT_COLUMNS[..]),
        ] {
            let rows = tx
                .query(
                    "SELECT column_name::text FROM information_schema.columns \
                     WHERE table_schema = current_schema() AND table_name = $1",
                    &[&table],
                )
                .await
                .map_err(schema_err)?;
            let present: Vec<String> = rows.iter().filter_map(|r| r.try_get(0).ok()).collect();
            let missing: Vec<&str> = wanted
                .iter()
                .copied()
                .filter(|c| !present.iter().any(|p| p == c))
                .collect();
            if !present.is_empty() && !missing.is_empty() {
                return Err(TaskAppError::PostgresSchema {
                    target,
                    reason: format!("table {table} lacks column(s) {}", missing.join(", ")),
                });
            }
        }
        tx.batch_execute(POSTGRES_SCHEMA)
            .await
            .map_err(schema_err)?;
        // Looked up once: a column's type does not change under a running service (an
        // `ALTER TABLE` needs a restart of the service to be taken into account).
        let data_type: String = tx
            .query_one(
                "SELECT data_type::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = 'task_events' \
                 AND column_name = 'payload'",
                &[],
            )
            .await
            .map_err(schema_err)?
            .try_get(0)
            .map_err(schema_err)?;
        let payload = PayloadColumn::from_data_type(&data_type);
        tracing::debug!(%target, column = %data_type, mode = ?payload, "task_events.payload");
        tx.commit().await.map_err(schema_err)?;
        Ok(PgStore {
            pool,
            target,
            payload,
        })
    }

    /// `user@host:port/db`.
    pub(crate) fn target(&self) -> &str {
        &self.target
    }
}

impl Store for PgStore {
    async fn list(&self) -> Result<Vec<Task>, TaskError> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(&format!("{SELECT_TASKS} ORDER BY id"))
            .await?;
        let rows = client.query(&stmt, &[]).await?;
        Ok(rows
            .iter()
            .map(task_from_row)
            .collect::<Result<Vec<_>, _>>()?)
    }

    async fn get(&self, task_id: &str) -> Result<Option<Task>, TaskError> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(&format!("{SELECT_TASKS} WHERE task_id = $1"))
            .await?;
        let row = client.query_opt(&stmt, &[&task_id]).await?;
        Ok(row.as_ref().map(task_from_row).transpose()?)
    }

    async fn insert(&self, tasks: Vec<NewTask>) -> Result<Vec<i64>, TaskError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.batch_execute(&format!("SELECT pg_advisory_xact_lock({WRITE_LOCK})"))
            .await?;
        let exists = tx
            .prepare_cached("SELECT 1 FROM tasks WHERE task_id = $1")
            .await?;
        let ins = tx.prepare_cached(INSERT_TASK).await?;
        let mut ids = Vec::with_capacity(tasks.len());
        for t in &tasks {
            if tx.query_opt(&exists, &[&t.task_id]).await?.is_some() {
                return Err(TaskError::AlreadyExists(t.task_id.clone()));
            }
            let row = tx
                .query_one(
                    &ins,
                    &[
                        &t.task_id,
                        &t.title,
                        &t.priority,
                        &t.status,
                        &t.dependencies,
                        &t.assigned_agent,
                        &t.worktree,
                        &t.status_notes,
                        &t.estimated_effort,
                        &t.completed,
                        &t.blocked_reason,
                        &t.blocked_by,
                        &t.last_heartbeat,
                        &t.instructions,
                        &t.created_at,
                        &t.updated_at,
                    ],
                )
                .await?;
            ids.push(row.try_get(0)?);
        }
        tx.commit().await?;
        Ok(ids)
    }

    async fn modify(&self, task_id: &str, edit: Edit) -> Result<Task, TaskError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // The advisory lock serialises event-id allocation; FOR UPDATE guards the row against
        // writers that do not take it.
        tx.batch_execute(&format!("SELECT pg_advisory_xact_lock({WRITE_LOCK})"))
            .await?;
        let select = tx
            .prepare_cached(&format!("{SELECT_TASKS} WHERE task_id = $1 FOR UPDATE"))
            .await?;
        let row = tx
            .query_opt(&select, &[&task_id])
            .await?
            .ok_or_else(|| TaskError::NotFound(task_id.to_string()))?;
        let mut task = task_from_row(&row)?;
        // A refusal returns here; dropping `tx` rolls back.
        let event = edit(&mut task)?;
        // `$1::int8`: also fits an `integer` id column a migrator may have chosen.
        let update = tx
            .prepare_cached(
                "UPDATE tasks SET title = $2, priority = $3, status = $4, dependencies = $5, \
                 assigned_agent = $6, worktree = $7, status_notes = $8, estimated_effort = $9, \
                 completed = $10, blocked_reason = $11, blocked_by = $12, last_heartbeat = $13, \
                 instructions = $14, updated_at = $15 WHERE id = $1::int8",
            )
            .await?;
        tx.execute(
            &update,
            &[
                &task.id,
                &task.title,
                &task.priority,
                &task.status,
                &task.dependencies,
                &task.assigned_agent,
                &task.worktree,
                &task.status_notes,
                &task.estimated_effort,
                &task.completed,
                &task.blocked_reason,
                &task.blocked_by,
                &task.last_heartbeat,
                &task.instructions,
                &task.updated_at,
            ],
        )
        .await?;
        let append = tx.prepare_cached(self.payload.append_sql()).await?;
        let payload = crate::payload::to_python_json(&event.payload);
        tx.execute(
            &append,
            &[
                &task.task_id,
                &event.kind,
                &event.agent,
                &payload,
                &task.updated_at,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(task)
    }
}

fn task_from_row(r: &Row) -> Result<Task, tokio_postgres::Error> {
    Ok(Task {
        id: r.try_get(0)?,
        task_id: r.try_get(1)?,
        title: r.try_get(2)?,
        priority: r.try_get(3)?,
        status: r.try_get(4)?,
        dependencies: r.try_get(5)?,
        assigned_agent: r.try_get(6)?,
        worktree: r.try_get(7)?,
        status_notes: r.try_get(8)?,
        estimated_effort: r.try_get(9)?,
        completed: r.try_get(10)?,
        blocked_reason: r.try_get(11)?,
        blocked_by: r.try_get(12)?,
        last_heartbeat: r.try_get(13)?,
        instructions: r.try_get(14)?,
        created_at: r.try_get(15)?,
        updated_at: r.try_get(16)?,
    })
}

type BoxError = Box<dyn StdError + Sync + Send>;

impl<'a> FromSql<'a> for Timestamp {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Timestamp, BoxError> {
        if *ty == Type::TIMESTAMP {
            Ok(Timestamp::from_offset(
                PrimitiveDateTime::from_sql(ty, raw)?.assume_utc(),
            ))
        } else {
            Ok(Timestamp::from_offset(OffsetDateTime::from_sql(ty, raw)?))
        }
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ || *ty == Type::TIMESTAMP
    }
}

impl ToSql for Timestamp {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        let utc = self.to_offset();
        if *ty == Type::TIMESTAMP {
            PrimitiveDateTime::new(utc.date(), utc.time()).to_sql(ty, out)
        } else {
            utc.to_sql(ty, out)
        }
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ || *ty == Type::TIMESTAMP
    }

    to_sql_checked!();
}

/// `user@host:port/db` — the URL without its password, for messages.
fn describe(cfg: &tokio_postgres::Config) -> String {
    let host = match cfg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    let user = cfg.get_user().map(|u| format!("{u}@")).unwrap_or_default();
    let db = cfg.get_dbname().unwrap_or("");
    format!("{user}{host}:{port}/{db}")
}

/// The server's own message when there is one (`Display` of a server error is "db error").
pub(crate) fn pg_error_text(e: &tokio_postgres::Error) -> String {
    let text = match e.as_db_error() {
        Some(db) => db.to_string(),
        None => match e.source() {
            Some(src) => format!("{e}: {src}"),
            None => e.to_string(),
        },
    };
    // DETAIL / HINT come on lines of their own; keep messages on one line.
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn pool_error_text(e: &PoolError) -> String {
    match e {
        PoolError::Backend(pg) => pg_error_text(pg),
        PoolError::Timeout(_) => format!("timed out after {} s", (CONNECT_TIMEOUT * 2).as_secs()),
        other => other.to_string(),
    }
}
