//! "Send every route to legacy": what `migrate rollback` asks for once legacy holds
//! everything, and how it went. The migrator only knows this interface; the proxy crate
//! implements it (its admin client first, the state store as fallback, routes and their
//! configured percentages from its own configuration parser), and the binary hands that
//! implementation to the migrator.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

/// How routes were set to legacy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "via", rename_all = "kebab-case")]
pub enum RouteSwitch {
    /// No proxy to switch was named (neither an admin URL nor a state store).
    NotRequested,
    /// Not attempted (dry run, conflicts, failed verify).
    Skipped {
        /// Why.
        reason: String,
    },
    /// A running proxy's admin API rolled every route back.
    AdminApi {
        /// The admin URL.
        url: String,
        /// Its answer.
        response: serde_json::Value,
    },
    /// Written to the state store directly (a stopped proxy, or an unreachable admin API).
    StateStore {
        /// The store (no password).
        path: String,
        /// The routes set to 0 %.
        routes: Vec<String>,
        /// What a running proxy does about it.
        note: String,
    },
    /// It failed.
    Failed {
        /// What failed.
        detail: String,
    },
}

impl RouteSwitch {
    /// Routes were switched (by the admin API or in the store).
    pub fn switched(&self) -> bool {
        matches!(
            self,
            RouteSwitch::AdminApi { .. } | RouteSwitch::StateStore { .. }
        )
    }
}

/// Something that can send every route of a proxy to legacy.
pub trait ToLegacy: Send + Sync + std::fmt::Debug {
    /// Switches every route to legacy, recording `actor` in the audit log.
    fn to_legacy<'a>(
        &'a self,
        actor: &'a str,
    ) -> Pin<Box<dyn Future<Output = RouteSwitch> + Send + 'a>>;
}
