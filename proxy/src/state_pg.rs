//! Rollout state and audit log in PostgreSQL, shared by several proxy replicas.
//!
//! Tables `ficus_proxy.rollout` and `ficus_proxy.audit` (created if absent, under an advisory
//! lock so replicas starting together do not race) mirror the SQLite ones; with dual-write
//! routes, [`crate::dualwrite`] adds `ficus_proxy.dual_writes` next to them on its own
//! connection (same settings, [`pg_config`]). Every recorded change
//! sends `NOTIFY ficus_proxy_rollout` in its transaction, so it is delivered on commit; each
//! replica keeps one connection in `LISTEN` and signals [`PgState::changes`], on which the
//! control plane re-reads the overrides and applies what differs. The notification connection
//! reconnects on its own and signals once after each (re)connect, since notifications sent
//! while it was down are lost; the control plane also re-reads on a timer as a fallback.
//!
//! tokio-postgres is async and the control plane is not (it serialises changes under a mutex,
//! like the SQLite store), so the store runs its own thread with a current-thread runtime that
//! owns the connections; calls send a command and wait (bounded) for the answer.

use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio_postgres::{AsyncMessage, Client, NoTls};

use crate::state::{redact_url, AuditEntry, Change, Override, StateError};

/// The notification channel.
pub const CHANNEL: &str = "ficus_proxy_rollout";
/// How long a caller waits for the store before giving up.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Connect timeout for each connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause before reconnecting the notification connection (doubles up to the maximum).
const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE SCHEMA IF NOT EXISTS ficus_proxy;
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
);";

/// `timestamptz` as RFC 3339 UTC text, in SQL.
const TS: &str = r#"'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'"#;

type Reply<T> = SyncSender<Result<T, StateError>>;

/// One owned change (the borrowed [`Change`] cannot cross threads).
struct OwnedChange {
    route: String,
    from_bp: i32,
    to_bp: i32,
    keep_override: Option<i32>,
}

enum Cmd {
    Get(String, Reply<Option<Override>>),
    All(Reply<Vec<Override>>),
    Record {
        changes: Vec<OwnedChange>,
        actor: String,
        action: String,
        reply: Reply<()>,
    },
    Audit(i64, Reply<Vec<AuditEntry>>),
}

/// The advisory lock held while creating tables (the state tables here, `dual_writes` in
/// [`crate::dualwrite`]), so replicas starting together do not race on `CREATE ... IF NOT
/// EXISTS`.
pub(crate) const SCHEMA_LOCK: i64 = 7267231501;

/// The connection settings of the state store at `url` (connect timeout unless the URL sets
/// one, `application_name = ficus-proxy`) and the URL with its password redacted.
pub(crate) fn pg_config(url: &str) -> Result<(tokio_postgres::Config, String), StateError> {
    let target = redact_url(url);
    let mut config: tokio_postgres::Config =
        url.parse().map_err(|source| StateError::Postgres {
            target: target.clone(),
            what: "parse URL",
            source,
        })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    config.application_name("ficus-proxy");
    Ok((config, target))
}

/// The PostgreSQL state store: a handle to its thread.
pub struct PgState {
    tx: mpsc::UnboundedSender<Cmd>,
    changes: Arc<Notify>,
    target: String,
}

impl PgState {
    /// Connects, creates the schema and tables if absent, and starts listening for changes.
    pub fn connect(url: &str) -> Result<PgState, StateError> {
        let (config, target) = pg_config(url)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StateError::Unavailable {
                target: target.clone(),
                message: format!("cannot start runtime: {e}"),
            })?;
        let (tx, rx) = mpsc::unbounded_channel();
        let changes = Arc::new(Notify::new());
        let (ready_tx, ready_rx) = sync_channel(1);
        let worker = Worker {
            config,
            target: target.clone(),
            client: None,
        };
        let notify = changes.clone();
        std::thread::Builder::new()
            .name("ficus-state-pg".into())
            .spawn(move || rt.block_on(worker.run(rx, notify, ready_tx)))
            .map_err(|e| StateError::Unavailable {
                target: target.clone(),
                message: format!("cannot start thread: {e}"),
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
        Ok(PgState {
            tx,
            changes,
            target,
        })
    }

    /// Signalled on every change notification and after each reconnect of the listener.
    pub fn changes(&self) -> Arc<Notify> {
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

    /// The override of one route.
    pub fn get(&self, route: &str) -> Result<Option<Override>, StateError> {
        self.call(|r| Cmd::Get(route.to_string(), r))
    }

    /// Every override.
    pub fn all(&self) -> Result<Vec<Override>, StateError> {
        self.call(Cmd::All)
    }

    /// Records changes, their audit rows and a notification in one transaction.
    pub(crate) fn record(
        &self,
        changes: &[Change<'_>],
        actor: &str,
        action: &str,
    ) -> Result<(), StateError> {
        let bp = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
        let changes = changes
            .iter()
            .map(|c| OwnedChange {
                route: c.route.to_string(),
                from_bp: bp(c.from_bp),
                to_bp: bp(c.to_bp),
                keep_override: c.keep_override.map(bp),
            })
            .collect();
        self.call(|reply| Cmd::Record {
            changes,
            actor: actor.to_string(),
            action: action.to_string(),
            reply,
        })
    }

    /// Newest audit rows first.
    pub fn audit(&self, limit: usize) -> Result<Vec<AuditEntry>, StateError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.call(|r| Cmd::Audit(limit, r))
    }
}

struct Worker {
    config: tokio_postgres::Config,
    target: String,
    client: Option<Client>,
}

fn bp_u32(v: i32) -> u32 {
    u32::try_from(v).unwrap_or(0)
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
        let listener = tokio::spawn(listen(
            self.config.clone(),
            self.target.clone(),
            changes.clone(),
        ));
        while let Some(cmd) = rx.recv().await {
            self.handle(cmd).await;
        }
        listener.abort();
    }

    fn pg_err(&self, what: &'static str) -> impl Fn(tokio_postgres::Error) -> StateError + '_ {
        move |source| StateError::Postgres {
            target: self.target.clone(),
            what,
            source,
        }
    }

    async fn connect(&self) -> Result<Client, StateError> {
        let (client, conn) = self
            .config
            .connect(NoTls)
            .await
            .map_err(self.pg_err("connect"))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::warn!(error = %e, "rollout state connection closed");
            }
        });
        Ok(client)
    }

    async fn setup(&mut self) -> Result<(), StateError> {
        let mut client = self.connect().await?;
        let tx = client
            .transaction()
            .await
            .map_err(self.pg_err("create tables"))?;
        // Replicas starting together would race on CREATE ... IF NOT EXISTS.
        tx.batch_execute(&format!("SELECT pg_advisory_xact_lock({SCHEMA_LOCK})"))
            .await
            .map_err(self.pg_err("create tables"))?;
        tx.batch_execute(SCHEMA)
            .await
            .map_err(self.pg_err("create tables"))?;
        tx.commit().await.map_err(self.pg_err("create tables"))?;
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
        match cmd {
            Cmd::Get(route, reply) => {
                let mut r = self.get(&route).await;
                if r.is_err() && self.reset_if_closed() {
                    r = self.get(&route).await;
                }
                let _ = reply.send(r);
            }
            Cmd::All(reply) => {
                let mut r = self.all().await;
                if r.is_err() && self.reset_if_closed() {
                    r = self.all().await;
                }
                let _ = reply.send(r);
            }
            Cmd::Audit(limit, reply) => {
                let mut r = self.audit(limit).await;
                if r.is_err() && self.reset_if_closed() {
                    r = self.audit(limit).await;
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
        let err = move |source| StateError::Postgres {
            target: target.clone(),
            what: "read rollout",
            source,
        };
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
        let err = move |source| StateError::Postgres {
            target: target.clone(),
            what: "read rollout",
            source,
        };
        let c = self.client().await?;
        let rows = c.query(&sql, &[]).await.map_err(&err)?;
        rows.iter()
            .map(row_override)
            .collect::<Result<_, _>>()
            .map_err(err)
    }

    async fn audit(&mut self, limit: i64) -> Result<Vec<AuditEntry>, StateError> {
        let sql = format!(
            "SELECT id, to_char(at AT TIME ZONE 'UTC', {TS}), route, from_bp, to_bp, actor, action
             FROM ficus_proxy.audit ORDER BY id DESC LIMIT $1"
        );
        let target = self.target.clone();
        let err = move |source| StateError::Postgres {
            target: target.clone(),
            what: "read audit",
            source,
        };
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
                })
            })
            .collect::<Result<_, tokio_postgres::Error>>()
            .map_err(err)
    }

    async fn record(
        &mut self,
        changes: &[OwnedChange],
        actor: &str,
        action: &str,
    ) -> Result<(), StateError> {
        let target = self.target.clone();
        let err = move |source| StateError::Postgres {
            target: target.clone(),
            what: "record rollout change",
            source,
        };
        let c = self.client().await?;
        let tx = c.transaction().await.map_err(&err)?;
        for ch in changes {
            match ch.keep_override {
                Some(config_bp) => {
                    tx.execute(
                        "INSERT INTO ficus_proxy.rollout (route, percent_bp, config_bp, actor, updated_at)
                         VALUES ($1, $2, $3, $4, now())
                         ON CONFLICT (route) DO UPDATE SET percent_bp = EXCLUDED.percent_bp,
                             config_bp = EXCLUDED.config_bp, actor = EXCLUDED.actor,
                             updated_at = EXCLUDED.updated_at",
                        &[&ch.route, &ch.to_bp, &config_bp, &actor],
                    )
                    .await
                    .map_err(&err)?;
                }
                None => {
                    tx.execute(
                        "DELETE FROM ficus_proxy.rollout WHERE route = $1",
                        &[&ch.route],
                    )
                    .await
                    .map_err(&err)?;
                }
            }
            tx.execute(
                "INSERT INTO ficus_proxy.audit (at, route, from_bp, to_bp, actor, action)
                 VALUES (now(), $1, $2, $3, $4, $5)",
                &[&ch.route, &ch.from_bp, &ch.to_bp, &actor, &action],
            )
            .await
            .map_err(&err)?;
        }
        // Delivered to every listener when (and only if) the transaction commits.
        let payload = changes
            .iter()
            .map(|c| c.route.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let payload: String = payload.chars().take(7000).collect();
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
            .await
            .map_err(&err)?;
        tx.commit().await.map_err(err)
    }
}

/// Keeps one connection in `LISTEN`, reconnecting with backoff; signals `changes` on every
/// notification and after every (re)connect.
async fn listen(config: tokio_postgres::Config, target: String, changes: Arc<Notify>) {
    let mut pause = RECONNECT_MIN;
    let mut first = true;
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut conn)) => {
                let notify = changes.clone();
                let driver = tokio::spawn(async move {
                    loop {
                        match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                            Some(Ok(AsyncMessage::Notification(n))) => {
                                tracing::debug!(routes = n.payload(), "rollout change notified");
                                notify.notify_one();
                            }
                            Some(Ok(_)) => {}
                            Some(Err(e)) => return e.to_string(),
                            None => return "connection closed".to_string(),
                        }
                    }
                });
                match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    Ok(()) => {
                        pause = RECONNECT_MIN;
                        if !first {
                            tracing::info!(target = %target, "rollout change notifications resumed");
                        }
                        // Whatever was notified while no one listened: re-read everything.
                        changes.notify_one();
                        first = false;
                        let why = driver
                            .await
                            .unwrap_or_else(|_| "listener task ended".to_string());
                        tracing::warn!(target = %target, reason = %why,
                            "rollout change notifications lost; reconnecting (state is re-read on a timer meanwhile)");
                    }
                    Err(e) => {
                        driver.abort();
                        tracing::warn!(target = %target, error = %e, "LISTEN failed; reconnecting");
                    }
                }
                drop(client);
            }
            Err(e) => {
                tracing::warn!(target = %target, error = %e, "cannot connect for change notifications; retrying");
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RECONNECT_MAX);
    }
}
