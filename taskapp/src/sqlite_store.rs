//! The legacy side's store: SQLite through rusqlite, laid out and encoded the way the
//! monolith's SQLAlchemy models leave it (`DATETIME` as `YYYY-MM-DD HH:MM:SS.ffffff` text,
//! `BOOLEAN` as 0/1, the schema of `shared/bench/gen_taskdb.py`).
//!
//! SQLite calls are blocking, so they run on tokio's blocking pool, each borrowing one of a
//! few connections (WAL mode, so readers do not wait for the writer; a busy timeout, so
//! writers queue instead of failing). Writes use `BEGIN IMMEDIATE` to hold the write lock from
//! the read of the row to the commit.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row, ToSql, TransactionBehavior};

use crate::error::{TaskAppError, TaskError};
use crate::model::{NewTask, Task};
use crate::store::{Edit, Store};
use crate::timestamp::Timestamp;

/// The legacy schema, exactly as `gen_taskdb.py` (SQLAlchemy's `create_all`) makes it, with
/// `IF NOT EXISTS` so it can be applied to any database.
pub const SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tasks (
  id INTEGER NOT NULL PRIMARY KEY,
  task_id VARCHAR NOT NULL,
  title VARCHAR NOT NULL,
  priority VARCHAR NOT NULL,
  status VARCHAR NOT NULL,
  dependencies VARCHAR,
  assigned_agent VARCHAR,
  worktree VARCHAR,
  status_notes TEXT,
  estimated_effort VARCHAR,
  completed BOOLEAN NOT NULL,
  blocked_reason TEXT,
  blocked_by VARCHAR,
  last_heartbeat DATETIME,
  instructions TEXT,
  created_at DATETIME NOT NULL,
  updated_at DATETIME NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS ix_tasks_task_id ON tasks (task_id);
CREATE INDEX IF NOT EXISTS ix_tasks_status ON tasks (status);
CREATE TABLE IF NOT EXISTS task_events (
  id INTEGER NOT NULL PRIMARY KEY,
  task_id VARCHAR NOT NULL REFERENCES tasks (task_id),
  kind VARCHAR NOT NULL,
  agent VARCHAR,
  payload TEXT,
  created_at DATETIME NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_task_events_task_id ON task_events (task_id);
";

/// Columns of `tasks`, in [`Task`] field order.
pub(crate) const TASK_COLUMNS: [&str; 17] = [
    "id",
    "task_id",
    "title",
    "priority",
    "status",
    "dependencies",
    "assigned_agent",
    "worktree",
    "status_notes",
    "estimated_effort",
    "completed",
    "blocked_reason",
    "blocked_by",
    "last_heartbeat",
    "instructions",
    "created_at",
    "updated_at",
];

/// Columns of `task_events`.
pub(crate) const EVENT_COLUMNS: [&str; 6] =
    ["id", "task_id", "kind", "agent", "payload", "created_at"];

const SELECT_TASKS: &str = "SELECT id, task_id, title, priority, status, dependencies, \
     assigned_agent, worktree, status_notes, estimated_effort, completed, blocked_reason, \
     blocked_by, last_heartbeat, instructions, created_at, updated_at FROM tasks";

const CONNECTIONS: usize = 4;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Tasks in a SQLite file.
pub(crate) struct SqliteStore {
    pool: Arc<ConnPool>,
}

impl SqliteStore {
    /// Opens the database at `path` (blocking). Without `create`, a missing file is an error;
    /// a new or empty database gets the schema; an existing one must have its columns.
    pub(crate) fn open(path: &Path, create: bool) -> Result<SqliteStore, TaskAppError> {
        let open_err = |reason: String| TaskAppError::SqliteOpen {
            path: path.to_path_buf(),
            reason,
        };
        match path.try_exists() {
            Ok(true) => {}
            Ok(false) if create => {}
            Ok(false) => {
                return Err(TaskAppError::SqliteMissing {
                    path: path.to_path_buf(),
                })
            }
            Err(e) => return Err(open_err(e.to_string())),
        }
        if path.is_dir() {
            return Err(open_err("it is a directory".into()));
        }
        let first = open_connection(path, create)?;
        prepare(&first, path)?;
        let mut conns = vec![first];
        for _ in 1..CONNECTIONS {
            conns.push(open_connection(path, false)?);
        }
        Ok(SqliteStore {
            pool: Arc::new(ConnPool {
                idle: Mutex::new(conns),
                returned: Condvar::new(),
            }),
        })
    }

    /// Inserts without a runtime (for seeding from synchronous code).
    pub(crate) fn insert_blocking(&self, tasks: Vec<NewTask>) -> Result<Vec<i64>, TaskError> {
        self.pool.with(|c| insert(c, tasks))
    }

    async fn run<T, F>(&self, f: F) -> Result<T, TaskError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, TaskError> + Send + 'static,
    {
        let pool = Arc::clone(&self.pool);
        tokio::task::spawn_blocking(move || pool.with(f))
            .await
            .map_err(|e| TaskError::Store(format!("sqlite worker: {e}")))?
    }
}

impl Store for SqliteStore {
    async fn list(&self) -> Result<Vec<Task>, TaskError> {
        self.run(|c| {
            let mut stmt = c.prepare_cached(&format!("{SELECT_TASKS} ORDER BY id"))?;
            let rows = stmt.query_map([], task_from_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn get(&self, task_id: &str) -> Result<Option<Task>, TaskError> {
        let task_id = task_id.to_string();
        self.run(move |c| Ok(select_one(c, &task_id)?)).await
    }

    async fn insert(&self, tasks: Vec<NewTask>) -> Result<Vec<i64>, TaskError> {
        self.run(move |c| insert(c, tasks)).await
    }

    async fn modify(&self, task_id: &str, edit: Edit) -> Result<Task, TaskError> {
        let task_id = task_id.to_string();
        self.run(move |c| modify(c, &task_id, edit)).await
    }
}

fn open_connection(path: &Path, create: bool) -> Result<Connection, TaskAppError> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags).map_err(|e| TaskAppError::SqliteOpen {
        path: path.to_path_buf(),
        reason: one_line(&e.to_string()),
    })?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| TaskAppError::SqliteOpen {
            path: path.to_path_buf(),
            reason: one_line(&e.to_string()),
        })?;
    Ok(conn)
}

/// Checks the file really is a writable SQLite database, switches it to WAL, creates missing
/// tables and checks the columns the API needs are there.
fn prepare(conn: &Connection, path: &Path) -> Result<(), TaskAppError> {
    let open_err = |reason: String| TaskAppError::SqliteOpen {
        path: path.to_path_buf(),
        reason: one_line(&reason),
    };
    let schema_err = |reason: String| TaskAppError::SqliteSchema {
        path: path.to_path_buf(),
        reason: one_line(&reason),
    };
    // The first read is where a non-SQLite file shows ("file is not a database").
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(|e| open_err(e.to_string()))?;
    if conn
        .is_readonly(rusqlite::MAIN_DB)
        .map_err(|e| open_err(e.to_string()))?
    {
        return Err(open_err("it is read-only".into()));
    }
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))
        .map_err(|e| open_err(format!("cannot switch to WAL: {e}")))?;
    // Check tables that exist before creating what is missing: index creation on a foreign
    // `tasks` table would fail with a less helpful message.
    for (table, wanted) in [
        ("tasks", &TASK_COLUMNS[..]),
        ("task_events", &EVENT_COLUMNS[..]),
    ] {
        let present = table_columns(conn, table).map_err(|e| schema_err(e.to_string()))?;
        let missing: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|c| !present.iter().any(|p| p.eq_ignore_ascii_case(c)))
            .collect();
        if !present.is_empty() && !missing.is_empty() {
            return Err(schema_err(format!(
                "table {table} lacks column(s) {}",
                missing.join(", ")
            )));
        }
    }
    conn.execute_batch(SQLITE_SCHEMA)
        .map_err(|e| schema_err(format!("cannot create the task tables: {e}")))?;
    Ok(())
}

/// The first line of a message (rusqlite appends the failing SQL on the next lines).
fn one_line(msg: &str) -> String {
    let first = msg.lines().next().unwrap_or("").trim_end();
    first.strip_suffix(" in").unwrap_or(first).to_string()
}

fn table_columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info(?1)")?;
    let names = stmt.query_map([table], |r| r.get::<_, String>(0))?;
    names.collect()
}

fn select_one(c: &Connection, task_id: &str) -> rusqlite::Result<Option<Task>> {
    let mut stmt = c.prepare_cached(&format!("{SELECT_TASKS} WHERE task_id = ?1"))?;
    stmt.query_row([task_id], task_from_row).optional()
}

fn insert(c: &mut Connection, tasks: Vec<NewTask>) -> Result<Vec<i64>, TaskError> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut ids = Vec::with_capacity(tasks.len());
    {
        let mut exists = tx.prepare_cached("SELECT 1 FROM tasks WHERE task_id = ?1")?;
        // No id: SQLite gives an INTEGER PRIMARY KEY max(id) + 1.
        let mut ins = tx.prepare_cached(
            "INSERT INTO tasks (task_id, title, priority, status, dependencies, assigned_agent, \
             worktree, status_notes, estimated_effort, completed, blocked_reason, blocked_by, \
             last_heartbeat, instructions, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
        )?;
        for t in tasks {
            if exists.exists([&t.task_id])? {
                return Err(TaskError::AlreadyExists(t.task_id));
            }
            ins.execute(params![
                t.task_id,
                t.title,
                t.priority,
                t.status,
                t.dependencies,
                t.assigned_agent,
                t.worktree,
                t.status_notes,
                t.estimated_effort,
                t.completed,
                t.blocked_reason,
                t.blocked_by,
                t.last_heartbeat,
                t.instructions,
                t.created_at,
                t.updated_at,
            ])?;
            ids.push(tx.last_insert_rowid());
        }
    }
    tx.commit()?;
    Ok(ids)
}

fn modify(c: &mut Connection, task_id: &str, edit: Edit) -> Result<Task, TaskError> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut task =
        select_one(&tx, task_id)?.ok_or_else(|| TaskError::NotFound(task_id.to_string()))?;
    // A refusal returns here; dropping `tx` rolls back (nothing was written anyway).
    let event = edit(&mut task)?;
    tx.prepare_cached(
        "UPDATE tasks SET title = ?2, priority = ?3, status = ?4, dependencies = ?5, \
         assigned_agent = ?6, worktree = ?7, status_notes = ?8, estimated_effort = ?9, \
         completed = ?10, blocked_reason = ?11, blocked_by = ?12, last_heartbeat = ?13, \
         instructions = ?14, updated_at = ?15 WHERE id = ?1",
    )?
    .execute(params![
        task.id,
        task.title,
        task.priority,
        task.status,
        task.dependencies,
        task.assigned_agent,
        task.worktree,
        task.status_notes,
        task.estimated_effort,
        task.completed,
        task.blocked_reason,
        task.blocked_by,
        task.last_heartbeat,
        task.instructions,
        task.updated_at,
    ])?;
    tx.prepare_cached(
        "INSERT INTO task_events (task_id, kind, agent, payload, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        task.task_id,
        event.kind,
        event.agent,
        crate::payload::to_python_json(&event.payload),
        task.updated_at,
    ])?;
    tx.commit()?;
    Ok(task)
}

fn task_from_row(r: &Row<'_>) -> rusqlite::Result<Task> {
    Ok(Task {
        id: r.get(0)?,
        task_id: r.get(1)?,
        title: r.get(2)?,
        priority: r.get(3)?,
        status: r.get(4)?,
        dependencies: r.get(5)?,
        assigned_agent: r.get(6)?,
        worktree: r.get(7)?,
        status_notes: r.get(8)?,
        estimated_effort: r.get(9)?,
        completed: r.get(10)?,
        blocked_reason: r.get(11)?,
        blocked_by: r.get(12)?,
        last_heartbeat: r.get(13)?,
        instructions: r.get(14)?,
        created_at: r.get(15)?,
        updated_at: r.get(16)?,
    })
}

impl FromSql for Timestamp {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Timestamp> {
        let text = value.as_str()?;
        Timestamp::parse(text).ok_or_else(|| {
            FromSqlError::Other(format!("not a SQLAlchemy datetime: {text:?}").into())
        })
    }
}

impl ToSql for Timestamp {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.to_sqlite()))
    }
}

/// A few connections handed out to blocking-pool threads, one caller at a time each.
struct ConnPool {
    idle: Mutex<Vec<Connection>>,
    returned: Condvar,
}

impl ConnPool {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, TaskError>,
    ) -> Result<T, TaskError> {
        let poisoned = || TaskError::Store("sqlite connection pool poisoned".into());
        let conn = {
            let mut idle = self.idle.lock().map_err(|_| poisoned())?;
            loop {
                if let Some(conn) = idle.pop() {
                    break conn;
                }
                idle = self.returned.wait(idle).map_err(|_| poisoned())?;
            }
        };
        let mut lease = Lease {
            pool: self,
            conn: Some(conn),
        };
        match lease.conn.as_mut() {
            Some(conn) => f(conn),
            None => Err(poisoned()),
        }
    }
}

/// A borrowed connection, given back when dropped (even if the caller panicked).
struct Lease<'a> {
    pool: &'a ConnPool,
    conn: Option<Connection>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if let Ok(mut idle) = self.pool.idle.lock() {
                idle.push(conn);
            }
            self.pool.returned.notify_one();
        }
    }
}
