//! The rollout store in PostgreSQL, shared by several proxy replicas.
//!
//! Every recorded change sends `NOTIFY` ([`crate::schema::CHANNEL`]) in its transaction, so it
//! is delivered on commit; the follower ([`super::follow`]) keeps one connection in `LISTEN`
//! and signals [`PgRollout::changes`], on which the proxy's control plane re-reads the
//! overrides and applies what differs.
//!
//! tokio-postgres is async and the control plane is not (it serialises changes under a mutex,
//! like the SQLite store), so the store runs its own thread with a current-thread runtime that
//! owns the connections; calls send a command and wait (bounded) for the answer.

use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio_postgres::Client;

use super::types::{AuditEntry, Change, Override, PlanRow, PlanWrite};
use crate::schema::CHANNEL;
use crate::StateError;

/// How long a caller waits for the store before giving up.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// `timestamptz` as RFC 3339 UTC text, in SQL.
const TS: &str = r#"'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'"#;

type Reply<T> = SyncSender<Result<T, StateError>>;

enum Cmd {
    Get(String, Reply<Option<Override>>),
    All(Reply<Vec<Override>>),
    Record {
        changes: Vec<Change>,
        actor: String,
        action: String,
        reply: Reply<()>,
    },
    Note {
        route: String,
        bp: u32,
        actor: String,
        action: String,
        reply: Reply<()>,
    },
    Audit(i64, Reply<Vec<AuditEntry>>),
    Routes(Reply<Vec<String>>),
    Plans(Reply<Vec<PlanRow>>),
    WritePlan(Box<PlanWrite>, Reply<bool>),
}

/// The PostgreSQL rollout store: a handle to its thread.
pub struct PgRollout {
    tx: mpsc::UnboundedSender<Cmd>,
    changes: Arc<Notify>,
    target: String,
}

impl PgRollout {
    /// Connects, creates the schema and tables if absent, and starts following changes.
    pub(super) fn connect(url: &str, application_name: &str) -> Result<PgRollout, StateError> {
        let endpoint = crate::pg::endpoint(url, application_name)?;
        let target = endpoint.shown().to_string();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| StateError::Start {
                what: "the state store's runtime",
                source,
            })?;
        let (tx, rx) = mpsc::unbounded_channel();
        let changes = Arc::new(Notify::new());
        let (ready_tx, ready_rx) = sync_channel(1);
        let worker = Worker {
            endpoint,
            target: target.clone(),
            client: None,
        };
        let notify = changes.clone();
        std::thread::Builder::new()
            .name("ficus-state-pg".into())
            .spawn(move || rt.block_on(worker.run(rx, notify, ready_tx)))
            .map_err(|source| StateError::Start {
                what: "the state store's thread",
                source,
            })?;
        match ready_rx.recv_timeout(CALL_TIMEOUT) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(StateError::Unavailable {
                    target,
                    message: "no answer while connecting".into(),
                })
            }
        }
        tracing::info!(target = %target, "rollout state in PostgreSQL (schema ficus_proxy, LISTEN/NOTIFY)");
        Ok(PgRollout {
            tx,
            changes,
            target,
        })
    }

    pub(super) fn changes(&self) -> Arc<Notify> {
        self.changes.clone()
    }

    fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, StateError> {
        let (reply, rx) = sync_channel(1);
        self.tx
            .send(make(reply))
            .map_err(|_| self.unavailable("state thread has stopped"))?;
        match rx.recv_timeout(CALL_TIMEOUT) {
            Ok(r) => r,
            Err(_) => Err(self.unavailable("no answer from PostgreSQL in time")),
        }
    }

    fn unavailable(&self, message: &str) -> StateError {
        StateError::Unavailable {
            target: self.target.clone(),
            message: message.into(),
        }
    }

    pub(super) fn get(&self, route: &str) -> Result<Option<Override>, StateError> {
        self.call(|r| Cmd::Get(route.to_string(), r))
    }

    pub(super) fn all(&self) -> Result<Vec<Override>, StateError> {
        self.call(Cmd::All)
    }

    pub(super) fn record(
        &self,
        changes: &[Change],
        actor: &str,
        action: &str,
    ) -> Result<(), StateError> {
        self.call(|reply| Cmd::Record {
            changes: changes.to_vec(),
            actor: actor.to_string(),
            action: action.to_string(),
            reply,
        })
    }

    pub(super) fn note(
        &self,
        route: &str,
        bp: u32,
        actor: &str,
        action: &str,
    ) -> Result<(), StateError> {
        self.call(|reply| Cmd::Note {
            route: route.to_string(),
            bp,
            actor: actor.to_string(),
            action: action.to_string(),
            reply,
        })
    }

    pub(super) fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StateError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.call(|r| Cmd::Audit(limit, r))
    }

    pub(super) fn known_routes(&self) -> Result<Vec<String>, StateError> {
        self.call(Cmd::Routes)
    }

    pub(super) fn plans(&self) -> Result<Vec<PlanRow>, StateError> {
        self.call(Cmd::Plans)
    }

    pub(super) fn write_plan(&self, w: &PlanWrite) -> Result<bool, StateError> {
        self.call(|r| Cmd::WritePlan(Box::new(w.clone()), r))
    }
}

struct Worker {
    endpoint: ficus_pg::Endpoint,
    target: String,
    client: Option<Client>,
}

fn bp_u32(v: i32) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

fn bp_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

fn row_override(r: &tokio_postgres::Row) -> Result<Override, tokio_postgres::Error> {
    Ok(Override {
        route: r.try_get(0)?,
        percent_bp: bp_u32(r.try_get(1)?),
        config_bp: bp_u32(r.try_get(2)?),
        actor: r.try_get(3)?,
        updated_at: r.try_get(4)?,
    })
}

impl Worker {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Cmd>,
        changes: Arc<Notify>,
        ready: SyncSender<Result<(), StateError>>,
    ) {
        let first = self.setup().await;
        let ok = first.is_ok();
        let _ = ready.send(first);
        if !ok {
            return;
        }
        let follower = tokio::spawn(super::follow::listen(self.endpoint.clone(), changes));
        while let Some(cmd) = rx.recv().await {
            self.handle(cmd).await;
        }
        follower.abort();
    }

    async fn connect(&self) -> Result<Client, StateError> {
        crate::pg::connect(&self.endpoint, "rollout").await
    }

    async fn setup(&mut self) -> Result<(), StateError> {
        let mut client = self.connect().await?;
        crate::schema::create_pg(&mut client)
            .await
            .map_err(StateError::pg(&self.target, "create tables"))?;
        self.client = Some(client);
        Ok(())
    }

    /// The command connection, reconnected when it was closed.
    async fn client(&mut self) -> Result<&mut Client, StateError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            let c = self.connect().await?;
            self.client = Some(c);
        }
        self.client.as_mut().ok_or_else(|| StateError::Unavailable {
            target: self.target.clone(),
            message: "no connection".into(),
        })
    }

    async fn handle(&mut self, cmd: Cmd) {
        // Reads run once more on a fresh connection when the first failed on a closed one.
        macro_rules! read_twice {
            ($call:expr, $reply:expr) => {{
                let mut r = $call;
                if r.is_err() && self.reset_if_closed() {
                    r = $call;
                }
                let _ = $reply.send(r);
            }};
        }
        match cmd {
            Cmd::Get(route, reply) => read_twice!(self.get(&route).await, reply),
            Cmd::All(reply) => read_twice!(self.all().await, reply),
            Cmd::Audit(limit, reply) => read_twice!(self.audit(limit).await, reply),
            Cmd::Routes(reply) => read_twice!(self.routes().await, reply),
            Cmd::Plans(reply) => read_twice!(self.plans().await, reply),
            Cmd::WritePlan(w, reply) => {
                // Not retried, like a rollout change.
                let r = self.write_plan(&w).await;
                if r.is_err() {
                    self.reset_if_closed();
                }
                let _ = reply.send(r);
            }
            Cmd::Record {
                changes,
                actor,
                action,
                reply,
            } => {
                // Not retried: a commit whose answer was lost may have happened.
                let r = self.record(&changes, &actor, &action).await;
                if r.is_err() {
                    self.reset_if_closed();
                }
                let _ = reply.send(r);
            }
            Cmd::Note {
                route,
                bp,
                actor,
                action,
                reply,
            } => {
                let r = self.note(&route, bp, &actor, &action).await;
                if r.is_err() {
                    self.reset_if_closed();
                }
                let _ = reply.send(r);
            }
        }
    }

    /// Forgets the command connection when it is closed; true when it was.
    fn reset_if_closed(&mut self) -> bool {
        let closed = self.client.as_ref().is_none_or(Client::is_closed);
        if closed {
            self.client = None;
        }
        closed
    }

    async fn get(&mut self, route: &str) -> Result<Option<Override>, StateError> {
        let sql = format!(
            "SELECT route, percent_bp, config_bp, actor, to_char(updated_at AT TIME ZONE 'UTC', {TS})
             FROM ficus_proxy.rollout WHERE route = $1"
        );
        let target = self.target.clone();
        let err = StateError::pg(&target, "read rollout");
        let c = self.client().await?;
        let row = c.query_opt(&sql, &[&route]).await.map_err(&err)?;
        row.as_ref().map(row_override).transpose().map_err(err)
    }

    async fn all(&mut self) -> Result<Vec<Override>, StateError> {
        let sql = format!(
            "SELECT route, percent_bp, config_bp, actor, to_char(updated_at AT TIME ZONE 'UTC', {TS})
             FROM ficus_proxy.rollout ORDER BY route"
        );
        let target = self.target.clone();
        let err = StateError::pg(&target, "read rollout");
        let c = self.client().await?;
        let rows = c.query(&sql, &[]).await.map_err(&err)?;
        rows.iter()
            .map(row_override)
            .collect::<Result<_, _>>()
            .map_err(err)
    }

    async fn note(
        &mut self,
        route: &str,
        bp: u32,
        actor: &str,
        action: &str,
    ) -> Result<(), StateError> {
        let target = self.target.clone();
        let err = StateError::pg(&target, "record audit row");
        let c = self.client().await?;
        c.execute(
            "INSERT INTO ficus_proxy.audit (at, route, from_bp, to_bp, actor, action)
             VALUES (now(), $1, $2, $2, $3, $4)",
            &[&route, &bp_i32(bp), &actor, &action],
        )
        .await
        .map(drop)
        .map_err(err)
    }

    async fn audit(&mut self, limit: i64) -> Result<Vec<AuditEntry>, StateError> {
        let sql = format!(
            "SELECT id, to_char(at AT TIME ZONE 'UTC', {TS}), route, from_bp, to_bp, actor, action, detail
             FROM ficus_proxy.audit ORDER BY id DESC LIMIT $1"
        );
        let target = self.target.clone();
        let err = StateError::pg(&target, "read audit");
        let c = self.client().await?;
        let rows = c.query(&sql, &[&limit]).await.map_err(&err)?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get(0)?,
                    at: r.try_get(1)?,
                    route: r.try_get(2)?,
                    from_bp: bp_u32(r.try_get(3)?),
                    to_bp: bp_u32(r.try_get(4)?),
                    actor: r.try_get(5)?,
                    action: r.try_get(6)?,
                    detail: r.try_get(7)?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(err)
    }

    async fn routes(&mut self) -> Result<Vec<String>, StateError> {
        let target = self.target.clone();
        let err = StateError::pg(&target, "list routes");
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT route FROM ficus_proxy.rollout UNION SELECT route FROM ficus_proxy.audit
                 UNION SELECT route FROM ficus_proxy.dual_writes ORDER BY 1",
                &[],
            )
            .await
            .map_err(&err)?;
        rows.iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(err)
    }

    async fn record(
        &mut self,
        changes: &[Change],
        actor: &str,
        action: &str,
    ) -> Result<(), StateError> {
        let target = self.target.clone();
        let err = StateError::pg(&target, "record rollout change");
        let c = self.client().await?;
        let tx = c.transaction().await.map_err(&err)?;
        write_changes(&tx, changes, actor, action, None)
            .await
            .map_err(&err)?;
        tx.commit().await.map_err(err)
    }

    async fn plans(&mut self) -> Result<Vec<PlanRow>, StateError> {
        let target = self.target.clone();
        let err = StateError::pg(&target, "read plan");
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT route, state, version FROM ficus_proxy.plan ORDER BY route",
                &[],
            )
            .await
            .map_err(&err)?;
        rows.iter()
            .map(|r| {
                Ok(PlanRow {
                    route: r.try_get(0)?,
                    state: r.try_get(1)?,
                    version: r.try_get(2)?,
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(err)
    }

    /// The plan's compare-and-set, its changes and audit row, and the notification, in one
    /// transaction; `false` (nothing written) when another replica wrote the plan first.
    async fn write_plan(&mut self, w: &PlanWrite) -> Result<bool, StateError> {
        let target = self.target.clone();
        let err = StateError::pg(&target, "record plan step");
        let c = self.client().await?;
        let tx = c.transaction().await.map_err(&err)?;
        // The row lock taken here serialises replicas writing the same plan.
        let stored: i64 = tx
            .query_opt(
                "SELECT version FROM ficus_proxy.plan WHERE route = $1 FOR UPDATE",
                &[&w.route],
            )
            .await
            .map_err(&err)?
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(&err)?
            .unwrap_or(0);
        if stored != w.expected_version {
            return Ok(false);
        }
        let inserted = tx
            .execute(
                "INSERT INTO ficus_proxy.plan (route, state, version, updated_at)
                 VALUES ($1, $2, $3, now())
                 ON CONFLICT (route) DO UPDATE SET state = EXCLUDED.state,
                     version = EXCLUDED.version, updated_at = EXCLUDED.updated_at
                 WHERE ficus_proxy.plan.version = $4",
                &[&w.route, &w.state, &(stored + 1), &stored],
            )
            .await
            .map_err(&err)?;
        if inserted == 0 {
            // Two replicas inserting the first row at once: the other one won.
            return Ok(false);
        }
        if w.changes.is_empty() {
            tx.execute(
                "INSERT INTO ficus_proxy.audit (at, route, from_bp, to_bp, actor, action, detail)
                 VALUES (now(), $1, $2, $2, $3, $4, $5)",
                &[&w.route, &bp_i32(w.note_bp), &w.actor, &w.action, &w.detail],
            )
            .await
            .map_err(&err)?;
            // Every replica re-reads the plan (its pre-flight cohort, its status).
            tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &w.route])
                .await
                .map_err(&err)?;
        } else {
            write_changes(&tx, &w.changes, &w.actor, &w.action, w.detail.as_deref())
                .await
                .map_err(&err)?;
        }
        tx.commit().await.map_err(err)?;
        Ok(true)
    }
}

/// The rollout rows and audit rows of `changes`, and the notification naming their routes
/// (delivered to every listener when, and only if, `tx` commits).
async fn write_changes(
    tx: &tokio_postgres::Transaction<'_>,
    changes: &[Change],
    actor: &str,
    action: &str,
    detail: Option<&str>,
) -> Result<(), tokio_postgres::Error> {
    for ch in changes {
        let (to_bp, from_bp) = (bp_i32(ch.to_bp), bp_i32(ch.from_bp));
        match ch.keep_override.map(bp_i32) {
            Some(config_bp) => {
                tx.execute(
                    "INSERT INTO ficus_proxy.rollout (route, percent_bp, config_bp, actor, updated_at)
                     VALUES ($1, $2, $3, $4, now())
                     ON CONFLICT (route) DO UPDATE SET percent_bp = EXCLUDED.percent_bp,
                         config_bp = EXCLUDED.config_bp, actor = EXCLUDED.actor,
                         updated_at = EXCLUDED.updated_at",
                    &[&ch.route, &to_bp, &config_bp, &actor],
                )
                .await?;
            }
            None => {
                tx.execute(
                    "DELETE FROM ficus_proxy.rollout WHERE route = $1",
                    &[&ch.route],
                )
                .await?;
            }
        }
        tx.execute(
            "INSERT INTO ficus_proxy.audit (at, route, from_bp, to_bp, actor, action, detail)
             VALUES (now(), $1, $2, $3, $4, $5, $6)",
            &[&ch.route, &from_bp, &to_bp, &actor, &action, &detail],
        )
        .await?;
    }
    let payload = changes
        .iter()
        .map(|c| c.route.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let payload: String = payload.chars().take(7000).collect();
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
        .await?;
    Ok(())
}
