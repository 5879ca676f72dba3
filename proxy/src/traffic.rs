//! [`AdminTraffic`]: [`ficus_state::TrafficControl`] over the admin API of every replica of a
//! proxy — what `migrate cutover` and `migrate rollback --live` drive. A hold and a move are
//! made on every replica (holds are per process); the writes in flight are summed; a route
//! counts as held only when every replica holds it.

use ficus_state::TrafficFuture as Fut;
use ficus_state::{RouteState, TrafficControl};

use crate::client::AdminClient;

/// The admin APIs of a proxy's replicas (at least one).
#[derive(Debug, Clone)]
pub struct AdminTraffic {
    clients: Vec<AdminClient>,
}

impl AdminTraffic {
    /// One client per admin URL, all with `token`, recording `actor` in the audit log.
    pub fn new(
        urls: &[String],
        token: Option<String>,
        actor: &str,
    ) -> Result<AdminTraffic, crate::client::ClientError> {
        let clients = urls
            .iter()
            .map(|u| AdminClient::new(u, token.clone(), Some(actor.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AdminTraffic { clients })
    }
}

impl TrafficControl for AdminTraffic {
    fn routes(&self) -> Fut<'_, Vec<RouteState>> {
        Box::pin(async move {
            let mut out: Vec<RouteState> = Vec::new();
            for (i, c) in self.clients.iter().enumerate() {
                let routes = c.routes().await.map_err(|e| e.to_string())?;
                for r in routes {
                    match out.iter_mut().find(|o| o.name == r.name) {
                        Some(o) => {
                            o.held &= r.held;
                            o.in_flight_writes += r.in_flight_writes;
                            o.waiting_writes += r.waiting_writes;
                        }
                        None if i == 0 => out.push(RouteState {
                            name: r.name,
                            percent: r.percent,
                            held: r.held,
                            held_by: r.held_by,
                            in_flight_writes: r.in_flight_writes,
                            waiting_writes: r.waiting_writes,
                        }),
                        None => {}
                    }
                }
            }
            Ok(out)
        })
    }

    fn hold<'a>(&'a self, route: &'a str, max_ms: u64) -> Fut<'a, ()> {
        Box::pin(async move {
            for c in &self.clients {
                c.hold(route, max_ms).await.map_err(|e| e.to_string())?;
            }
            Ok(())
        })
    }

    fn release<'a>(&'a self, route: &'a str) -> Fut<'a, ()> {
        Box::pin(async move {
            // Every replica is asked even if one fails: no hold is left behind on purpose.
            let mut first = None;
            for c in &self.clients {
                if let Err(e) = c.release(route).await {
                    first.get_or_insert(e.to_string());
                }
            }
            first.map_or(Ok(()), Err)
        })
    }

    fn set_percent<'a>(&'a self, route: &'a str, percent: f64) -> Fut<'a, ()> {
        Box::pin(async move {
            // A shared (PostgreSQL) state store reaches every replica from one of them; a
            // per-replica store needs each told.
            for c in &self.clients {
                c.set_rollout(route, percent)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        })
    }
}
