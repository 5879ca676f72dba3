//! The admin thread: everything the proxy runs beside the data plane, on one thread with a
//! current-thread runtime of its own, so SQLite writes, metric encoding and state-store reads
//! never stall a worker. It runs until the stop signal:
//!
//! - the admin API ([`crate::admin`]);
//! - configuration reload on SIGHUP and file change ([`crate::reload`]);
//! - the listeners' TLS certificates, re-read when their files change
//!   ([`crate::listener_tls::watch`]);
//! - the rollback guards' verdicts, once a second ([`Control::judge_guards`]), then the step
//!   plans' ([`crate::planner::judge`]);
//! - the write holds' deadlines ([`Control::judge_holds`]): judged when a hold is placed or a
//!   waiting write saw one expire, and every [`CLOCK_TICK`] while a hold is in force (at its
//!   deadline at the latest);
//! - the access log's reopen on SIGHUP and SIGUSR1 ([`reopen_access_log`]);
//! - with a shared (PostgreSQL) state store, the follower that applies other replicas'
//!   rollout changes on each notification and, as a fallback, every [`STATE_POLL`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use crate::control::Control;
use crate::error::ProxyError;

/// How often the guards are judged.
const JUDGE_EVERY: Duration = Duration::from_secs(1);
/// With a shared (PostgreSQL) state store, how often the overrides are re-read even without a
/// notification: the fallback for notifications lost while the listener reconnects. Measured
/// on the proxy's clock.
const STATE_POLL: Duration = Duration::from_secs(2);
/// How often the follower looks at the clock for that fallback (a manual clock moves without
/// waking anyone).
const CLOCK_TICK: Duration = Duration::from_millis(100);

/// Starts the admin thread; `done` is sent when it has stopped.
pub(crate) fn spawn(
    control: Arc<Control>,
    admin_listener: std::net::TcpListener,
    stop: watch::Receiver<bool>,
    watch_config: bool,
    done: oneshot::Sender<()>,
) -> Result<(), ProxyError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| ProxyError::Start {
            what: "tokio runtime",
            source,
        })?;
    std::thread::Builder::new()
        .name("ficus-admin".into())
        .spawn(move || {
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async move {
                let reload = crate::reload::run(control.clone(), stop.clone(), watch_config);
                let follow = follow_state(control.clone(), stop.clone());
                let guards = judge_guards(control.clone(), stop.clone());
                let holds = judge_holds(control.clone(), stop.clone());
                let certs = crate::listener_tls::watch(control.certs.clone(), stop.clone());
                let reopen = reopen_access_log(control.clone(), stop.clone());
                let admin = crate::admin::serve(admin_listener, control, stop);
                tokio::join!(reload, follow, guards, holds, certs, reopen, admin);
            });
            drop(local);
            let _ = done.send(());
        })
        .map_err(|source| ProxyError::Start {
            what: "admin thread",
            source,
        })?;
    Ok(())
}

/// Reopens the access log's file on SIGHUP and SIGUSR1 (after `logrotate` moved it away), as
/// nginx does on USR1. Without an access log the signals change nothing here.
async fn reopen_access_log(control: Arc<Control>, mut stop: watch::Receiver<bool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut hup, mut usr1) = match (
        signal(SignalKind::hangup()),
        signal(SignalKind::user_defined1()),
    ) {
        (Ok(h), Ok(u)) => (h, u),
        _ => {
            tracing::warn!(
                "cannot listen for SIGHUP/SIGUSR1; the access log is not reopened on signal"
            );
            return;
        }
    };
    loop {
        let which = tokio::select! {
            biased;
            _ = stop.changed() => return,
            _ = hup.recv() => "SIGHUP",
            _ = usr1.recv() => "SIGUSR1",
        };
        if let Some(log) = control.access_log() {
            tracing::info!(signal = which, "reopening the access log");
            log.reopen();
        }
    }
}

/// Judges every guarded route once a second until `stop`; a broken threshold rolls the route
/// back (see [`Control::judge_guards`]).
async fn judge_guards(control: Arc<Control>, mut stop: watch::Receiver<bool>) {
    let mut every = tokio::time::interval(JUDGE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            _ = every.tick() => {}
        }
        control.judge_guards();
        crate::planner::judge(&control);
    }
}

/// Ends write holds at their deadline on the proxy's clock and records their expiry (see
/// [`Control::judge_holds`]). While a hold is in force it looks every [`CLOCK_TICK`] (a manual
/// clock moves without waking anyone) and at the deadline; otherwise it sleeps until a hold
/// is placed.
async fn judge_holds(control: Arc<Control>, mut stop: watch::Receiver<bool>) {
    let events = control.hold_events();
    loop {
        let (_, left) = control.judge_holds();
        let nap = left.map(|l| l.min(CLOCK_TICK));
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            _ = events.notified() => {}
            _ = tokio::time::sleep(nap.unwrap_or(CLOCK_TICK)), if nap.is_some() => {}
        }
    }
}

/// Follows a shared state store: applies other replicas' changes on each notification and, as a
/// fallback, [`STATE_POLL`] after the last re-read on the proxy's clock. Returns at once for
/// SQLite.
async fn follow_state(control: Arc<Control>, mut stop: watch::Receiver<bool>) {
    // The stored plans' pre-flight cohorts, from the start.
    if let Err(e) = crate::planner::sync(&control) {
        tracing::error!(error = %e, "cannot read the stored step plans");
    }
    let Some(changes) = control.state_changes() else {
        return;
    };
    let clock = control.clock().clone();
    let mut last_read = clock.now();
    let mut failing = false;
    loop {
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            _ = changes.notified() => {}
            _ = tokio::time::sleep(CLOCK_TICK) => {
                if clock.now().saturating_duration_since(last_read) < STATE_POLL {
                    continue;
                }
            }
        }
        last_read = clock.now();
        match control
            .sync_from_state()
            .and_then(|_| crate::planner::sync(&control))
        {
            Ok(_) => {
                if failing {
                    tracing::info!("shared rollout state readable again");
                }
                failing = false;
            }
            Err(e) => {
                if !failing {
                    tracing::error!(error = %e, "cannot read the shared rollout state; traffic keeps the last applied values");
                }
                failing = true;
            }
        }
    }
}
