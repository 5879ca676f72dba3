//! The change follower: one connection in `LISTEN` on [`crate::schema::CHANNEL`], reconnected
//! with backoff. It signals on every notification and after every (re)connect — notifications
//! sent while no one listened are lost, so the reader re-reads everything then; the proxy also
//! re-reads on a timer as a fallback.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_postgres::AsyncMessage;

use crate::schema::CHANNEL;

/// Pause before reconnecting (doubles up to the maximum).
const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// Keeps one connection in `LISTEN`; never returns (abort its task to stop it).
pub(super) async fn listen(endpoint: ficus_pg::Endpoint, changes: Arc<Notify>) {
    let target = endpoint.shown().to_string();
    let mut pause = RECONNECT_MIN;
    let mut first = true;
    loop {
        match endpoint.connect_raw().await {
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
