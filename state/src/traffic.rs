//! Traffic control as the migrator needs it for a cut-over: hold a route's writes, see the
//! writes in flight, move the route, release. The migrator only knows this interface; the
//! proxy crate implements it over its admin API (one client per replica), and the binary
//! hands that implementation to `migrate cutover` / `rollback --live`.

use std::future::Future;
use std::pin::Pin;

/// What the cut-over needs to know of a route.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteState {
    /// Route name.
    pub name: String,
    /// The percentage in force (share to new).
    pub percent: f64,
    /// Its writes are held now.
    pub held: bool,
    /// Who holds them.
    pub held_by: Option<String>,
    /// Writes forwarded and not answered yet.
    pub in_flight_writes: u64,
    /// Writes waiting on the hold.
    pub waiting_writes: u64,
}

/// A boxed future, as the trait's methods return.
pub type Fut<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// Something that holds, moves and releases routes (the proxy's admin API; every replica).
pub trait TrafficControl: Send + Sync + std::fmt::Debug {
    /// Every route (on every replica, writes in flight summed, `held` only if held on all).
    fn routes(&self) -> Fut<'_, Vec<RouteState>>;
    /// Holds `route`'s writes for at most `max_ms` (the proxy releases them by itself then).
    fn hold<'a>(&'a self, route: &'a str, max_ms: u64) -> Fut<'a, ()>;
    /// Releases `route`'s writes.
    fn release<'a>(&'a self, route: &'a str) -> Fut<'a, ()>;
    /// Sets `route` to `percent` (persisted and audited by the proxy).
    fn set_percent<'a>(&'a self, route: &'a str, percent: f64) -> Fut<'a, ()>;
}
