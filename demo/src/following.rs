//! A follower (`ficus migrate run --follow`, in process) the live chapters start and stop: its
//! metrics, the stop signal, the task.

use ficus_migrator::follow::{FollowMetrics, FollowOptions, FollowSummary};
use ficus_migrator::Plan;
use std::path::Path;

use crate::DemoError;

/// A running follower.
pub struct Following {
    pub metrics: FollowMetrics,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<FollowSummary, ficus_migrator::MigrateError>>,
}

impl Following {
    /// Follows `db` into `target` for `plan`, in a task of its own.
    pub fn start(plan: &Plan, db: &Path, target: &str) -> Result<Following, DemoError> {
        let metrics = FollowMetrics::register(&prometheus::Registry::new())
            .map_err(|e| DemoError::Step(e.to_string()))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (plan, m, opts) = (
            plan.clone(),
            metrics.clone(),
            FollowOptions::new(db, target),
        );
        let task = tokio::spawn(async move {
            ficus_migrator::follow::follow(
                &plan,
                &opts,
                &m,
                async move {
                    let _ = stopped.await;
                },
                |_| {},
            )
            .await
        });
        Ok(Following {
            metrics,
            stop,
            task,
        })
    }

    /// Stops following; what the session did.
    pub async fn stop(self) -> Result<FollowSummary, DemoError> {
        let _ = self.stop.send(());
        self.task.await?.map_err(DemoError::Migrate)
    }
}
