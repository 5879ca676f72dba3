//! Sending every route to legacy from outside the proxy — what `migrate rollback` needs once
//! legacy holds everything: a running proxy's admin API first (`POST /admin/rollback`), else
//! the state store directly (a stopped proxy, an unreachable admin API). Routes and their
//! configured percentages come from this crate's own configuration parser, so a
//! `target = "new"` route without `percent` is 100 % here exactly as in the proxy.
//!
//! Implements [`ficus_state::ToLegacy`], the interface the migrator knows.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use ficus_state::{Change, RolloutStore, RouteSwitch, StateLocation, ToLegacy};

use crate::client::{AdminClient, ClientError};
use crate::config::Config;

/// Where to find the proxy whose routes go back to legacy.
#[derive(Debug, Clone, Default)]
pub struct LegacySwitch {
    /// The admin API (`http://127.0.0.1:9900`), tried first.
    pub admin: Option<String>,
    /// Bearer token for the admin API.
    pub token: Option<String>,
    /// The state store, written when the admin API is not given or unreachable.
    pub state: Option<StateLocation>,
    /// The proxy's configuration: every route and its configured percentage.
    pub config: Option<PathBuf>,
}

impl ToLegacy for LegacySwitch {
    fn to_legacy<'a>(
        &'a self,
        actor: &'a str,
    ) -> Pin<Box<dyn Future<Output = RouteSwitch> + Send + 'a>> {
        Box::pin(self.switch(actor))
    }
}

impl LegacySwitch {
    async fn switch(&self, actor: &str) -> RouteSwitch {
        let mut note = String::from("the proxy was not asked");
        if let Some(admin) = &self.admin {
            let client = match AdminClient::new(admin, self.token.clone(), Some(actor.into())) {
                Ok(c) => c,
                Err(e) => {
                    return RouteSwitch::Failed {
                        detail: e.to_string(),
                    }
                }
            };
            match client.rollback(&[]).await {
                Ok(changes) => {
                    return RouteSwitch::AdminApi {
                        url: admin.clone(),
                        response: serde_json::json!({ "rolled_back": changes }),
                    }
                }
                Err(e @ ClientError::Transport { .. }) => {
                    note = format!("{e} (unreachable)");
                }
                Err(e) => {
                    let hint = if self.token.is_none() {
                        " (FICUS_ADMIN_TOKEN is not set)"
                    } else {
                        ""
                    };
                    return RouteSwitch::Failed {
                        detail: format!("admin API {admin}: {e}{hint}"),
                    };
                }
            }
        }
        let Some(state) = self.state.clone() else {
            return if self.admin.is_some() {
                RouteSwitch::Failed {
                    detail: format!("{note}; no proxy state store to fall back to"),
                }
            } else {
                RouteSwitch::NotRequested
            };
        };
        let config = self.config.clone();
        let actor = actor.to_string();
        let done = tokio::task::spawn_blocking(move || {
            write_store(&state, config.as_deref(), &actor).map(|routes| (state, routes))
        })
        .await;
        match done {
            Ok(Ok((state, routes))) => {
                let applies = match state {
                    StateLocation::Sqlite(_) => {
                        "a running proxy applies it on its next restart or reload"
                    }
                    StateLocation::Postgres(_) => "running replicas apply it at once (NOTIFY)",
                };
                RouteSwitch::StateStore {
                    path: state.to_string(),
                    routes,
                    note: format!("{note}; {applies}"),
                }
            }
            Ok(Err(detail)) => RouteSwitch::Failed { detail },
            Err(e) => RouteSwitch::Failed {
                detail: format!("internal: {e}"),
            },
        }
    }
}

/// Sets every route the store or the configuration knows to 0 %, with audit rows, in one
/// transaction. Returns the routes.
fn write_store(
    state: &StateLocation,
    config: Option<&std::path::Path>,
    actor: &str,
) -> Result<Vec<String>, String> {
    let configured: Vec<(String, u32)> = match config {
        Some(p) => Config::from_file(p)
            .map_err(|e| e.to_string())?
            .routes
            .iter()
            .map(|r| (r.name.clone(), r.percent_bp))
            .collect(),
        None => Vec::new(),
    };
    let mut store = RolloutStore::open(state, "ficus-migrate").map_err(|e| e.to_string())?;
    let mut routes = store.known_routes().map_err(|e| e.to_string())?;
    routes.extend(configured.iter().map(|(n, _)| n.clone()));
    routes.sort();
    routes.dedup();
    // `_unmatched` and other internal names are not routes an operator set.
    routes.retain(|r| !r.starts_with('_'));
    if routes.is_empty() {
        return Err(format!(
            "{state} knows no route (no rollout, audit or dual_writes rows); give --proxy-config with the proxy's configuration"
        ));
    }
    let mut changes = Vec::with_capacity(routes.len());
    for r in &routes {
        let current = store.get(r).map_err(|e| e.to_string())?;
        let conf = configured.iter().find(|(n, _)| n == r).map(|(_, bp)| *bp);
        let from_bp = current.as_ref().map(|o| o.percent_bp).or(conf).unwrap_or(0);
        let config_bp = current
            .as_ref()
            .map(|o| o.config_bp)
            .or(conf)
            .unwrap_or(from_bp);
        changes.push(Change {
            route: r.clone(),
            from_bp,
            to_bp: 0,
            keep_override: Some(config_bp),
        });
    }
    store
        .record(&changes, actor, "rollback")
        .map_err(|e| e.to_string())?;
    Ok(routes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bug this module removes: the migrator's hand parse of the proxy's TOML read a
    /// `target = "new"` route without `percent` as 0 %, so the audit said 0 % → 0 %.
    #[tokio::test]
    async fn a_target_new_route_is_audited_from_100_percent() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("ficus.toml");
        std::fs::write(
            &cfg,
            r#"
[proxy]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[backends.legacy]
url = "http://127.0.0.1:1"
[backends.new]
url = "http://127.0.0.1:2"
[[routes]]
name = "tasks-write"
path = "/api/tasks/*"
target = "new"
[[routes]]
name = "tasks-read"
methods = ["GET"]
path = "/api/tasks/{task_id}"
percent = 25.0
"#,
        )
        .unwrap();
        let state = StateLocation::Sqlite(dir.path().join("state.db"));
        let switch = LegacySwitch {
            state: Some(state.clone()),
            config: Some(cfg),
            ..LegacySwitch::default()
        };
        let r = switch.to_legacy("migrate-rollback").await;
        let RouteSwitch::StateStore { routes, .. } = &r else {
            panic!("{r:?}")
        };
        assert_eq!(routes, &["tasks-read", "tasks-write"]);
        let store = RolloutStore::open(&state, "test").unwrap();
        let audit = store.audit(10).unwrap();
        let row = |route: &str| audit.iter().find(|a| a.route == route).unwrap().clone();
        assert_eq!(
            (row("tasks-write").from_bp, row("tasks-write").to_bp),
            (10_000, 0)
        );
        assert_eq!(
            (row("tasks-read").from_bp, row("tasks-read").to_bp),
            (2_500, 0)
        );
        assert_eq!(row("tasks-write").actor, "migrate-rollback");
        assert_eq!(store.get("tasks-write").unwrap().unwrap().percent_bp, 0);
        assert_eq!(store.get("tasks-write").unwrap().unwrap().config_bp, 10_000);
    }

    #[tokio::test]
    async fn nothing_named_is_not_requested_and_an_unknown_store_says_what_to_give() {
        assert_eq!(
            LegacySwitch::default().to_legacy("x").await,
            RouteSwitch::NotRequested
        );
        let dir = tempfile::tempdir().unwrap();
        let switch = LegacySwitch {
            state: Some(StateLocation::Sqlite(dir.path().join("empty.db"))),
            ..LegacySwitch::default()
        };
        let RouteSwitch::Failed { detail } = switch.to_legacy("x").await else {
            panic!()
        };
        assert!(detail.contains("--proxy-config"), "{detail}");
    }
}
