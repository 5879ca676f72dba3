//! Write order on dual-write routes: a write's *turn* on its row, taken before the write is
//! forwarded and held until its copy has reached the other side.
//!
//! On a `dual_write = true` route the primary side serves a write and shadow mode sends the
//! copy to the other side later, from its own thread. Without turns, two writes to one row
//! could reach the two sides in different orders (the second primary write overtaking the
//! first one's mirror), and two creates could be numbered differently on each side (each
//! task app gives a new row `max(id) + 1`): drift that no retry repairs.
//!
//! # Architecture invariant: a write to a row waits until the previous one reached both sides
//! A write (any method but GET, HEAD and OPTIONS) on a dual-write route takes the turn of its
//! row before anything is forwarded. *One row, one turn:* the row is the value of the route's
//! `key` in the request, and the turns of keyed rows are shared by every dual-write route of
//! the proxy ([`RowTurns`]) — two routes whose `key` yields the same value (a create keyed by
//! `header:X-Task-Id` and a claim keyed by `path:task_id`) take the same turn, so a claim on a
//! task whose create is still being mirrored waits for it. Each route also has a turn of its
//! own: writes that lack the key take it, and with `write_order = "route"` every write takes
//! it (for routes whose writes make each side allocate ids, like creates) — *before* its row's
//! turn when it also has a key, so creates stay numbered alike and a later write to the row
//! still waits for the create. (Route turns are always taken before row turns and a write
//! takes at most one of each, so turns cannot deadlock.) The turn is released when the
//! write's mirror exchange has finished, failed or was dropped: it rides in the mirror job's
//! `on_done`, which shadow mode fires exactly once however the job ends (answered, timed out,
//! breaker open, queue full, shut down). A write that is not mirrored (its primary exchange
//! failed, its bodies were too large, the client left) releases it when the proxy is done with
//! the write. So the next write to the row is forwarded only after the previous one was
//! applied (or definitely not applied) on both sides, and both sides apply writes to one row
//! in the same order. A dropped or failed mirror is recorded in `dual_writes` with the
//! mirror's status NULL, hence `divergent = 1` when the primary succeeded (see `dualwrite`).
//!
//! Waiting is asynchronous (other requests on the worker go on) and first come, first served
//! (tokio's fair mutex), bounded by the primary backend's `timeout_ms` for both turns
//! together: a write that does not get its turn in time is sent to neither side and answered
//! 503 (`write_turn_timeout`, naming route and row), counted in
//! `ficus_dual_write_turn_timeouts_total{route}`.
//!
//! Reads never take a turn, and routes without `dual_write` have no [`WriteOrder`]: one branch
//! per request. A keyed turn costs a short critical section on the proxy's map of rows in use
//! (an entry lives only while a write to that row is in flight or waiting).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// One turn; a map holds one reference to a row's, each holder and waiter another.
type Slot = Arc<AsyncMutex<()>>;
/// Rows with a write in flight or waiting, by the value of the key.
type Rows = Mutex<HashMap<Box<[u8]>, Slot>>;

/// The turns of keyed rows, shared by every dual-write route of one proxy (one row, one turn).
/// Cloning shares them.
#[derive(Clone, Default)]
pub(crate) struct RowTurns(Arc<Rows>);

/// The turns of one dual-write route: its own turn and the proxy's row turns. Cloning shares
/// them: a reload hands the running route's turns to its successor, so writes in flight across
/// a reload keep their order.
#[derive(Clone)]
pub(crate) struct WriteOrder {
    rows: RowTurns,
    /// Writes without a key, or every write with `write_order = "route"`.
    route: Slot,
    /// `write_order = "route"`.
    whole_route: bool,
}

/// A write's turns; dropping it lets the next write to the row (and the route) go.
pub(crate) struct Turn {
    row: Option<(OwnedMutexGuard<()>, Box<[u8]>, RowTurns)>,
    route: Option<OwnedMutexGuard<()>>,
}

/// A write did not get its turn in time.
#[derive(Debug, thiserror::Error)]
#[error(
    "dual_write: the previous write to {row} has not reached both sides within {limit:?} \
     (the primary backend's timeout_ms); this write was sent to neither side"
)]
pub(crate) struct TurnTimeout {
    /// `key "TASK-101"`, `this route without a key`, `this route (write_order = "route")`.
    row: String,
    limit: Duration,
}

fn lock(rows: &Rows) -> MutexGuard<'_, HashMap<Box<[u8]>, Slot>> {
    rows.lock().unwrap_or_else(|p| p.into_inner())
}

/// Forgets `row` if nobody holds or waits for its turn.
fn forget(rows: &Rows, row: &[u8]) {
    let mut map = lock(rows);
    if map.get(row).is_some_and(|s| Arc::strong_count(s) == 1) {
        map.remove(row);
    }
}

impl RowTurns {
    /// Rows with a write in flight or waiting (tests).
    #[cfg(test)]
    fn in_use(&self) -> usize {
        lock(&self.0).len()
    }
}

impl WriteOrder {
    /// The turns of a route sharing the proxy's `rows`; `whole_route`: `write_order = "route"`.
    pub fn new(rows: &RowTurns, whole_route: bool) -> WriteOrder {
        WriteOrder {
            rows: rows.clone(),
            route: Slot::default(),
            whole_route,
        }
    }

    /// The same turns, with the scope a (re)loaded configuration asks for.
    pub fn with_scope(&self, whole_route: bool) -> WriteOrder {
        WriteOrder {
            whole_route,
            ..self.clone()
        }
    }

    /// Waits (up to `limit` in all) for the route's turn when the write has no key (`None` or
    /// empty) or the route orders every write, then for the turn of the row `key` names.
    pub async fn acquire(&self, key: Option<&[u8]>, limit: Duration) -> Result<Turn, TurnTimeout> {
        let deadline = tokio::time::Instant::now() + limit;
        let key = key.filter(|k| !k.is_empty());
        let mut turn = Turn {
            row: None,
            route: None,
        };
        if self.whole_route || key.is_none() {
            let g = match self.route.clone().try_lock_owned() {
                Ok(g) => g,
                Err(_) => tokio::time::timeout_at(deadline, self.route.clone().lock_owned())
                    .await
                    .map_err(|_| TurnTimeout {
                        row: if self.whole_route {
                            "this route (write_order = \"route\")".to_string()
                        } else {
                            "this route without a key".to_string()
                        },
                        limit,
                    })?,
            };
            turn.route = Some(g);
        }
        if let Some(k) = key {
            let rows = &self.rows.0;
            let slot = lock(rows).entry(Box::from(k)).or_default().clone();
            let g = match slot.clone().try_lock_owned() {
                Ok(g) => g,
                Err(_) => {
                    match tokio::time::timeout_at(deadline, slot.clone().lock_owned()).await {
                        Ok(g) => g,
                        Err(_) => {
                            drop(slot);
                            forget(rows, k);
                            return Err(TurnTimeout {
                                row: format!("key {:?}", String::from_utf8_lossy(k)),
                                limit,
                            });
                        }
                    }
                }
            };
            turn.row = Some((g, Box::from(k), self.rows.clone()));
        }
        Ok(turn)
    }
}

impl std::fmt::Debug for Turn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turn")
            .field(
                "row",
                &self
                    .row
                    .as_ref()
                    .map(|(_, k, _)| String::from_utf8_lossy(k)),
            )
            .field("route", &self.route.is_some())
            .finish()
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some((guard, row, rows)) = self.row.take() {
            drop(guard);
            forget(&rows.0, &row);
        }
        drop(self.route.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;

    const LONG: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn one_write_per_row_in_arrival_order_other_rows_and_keyless_apart() {
        let rows = RowTurns::default();
        let order = WriteOrder::new(&rows, false);
        let first = order.acquire(Some(b"TASK-1"), LONG).await.unwrap();
        // Another row and the keyless turn are free.
        let other = order.acquire(Some(b"TASK-2"), LONG).await.unwrap();
        let keyless = order.acquire(None, LONG).await.unwrap();
        let empty =
            tokio::time::timeout(Duration::from_millis(100), order.acquire(Some(b""), LONG));
        // An empty key is no key: it waits for the keyless turn.
        assert!(empty.await.is_err());
        drop((other, keyless));
        // Three more writes to TASK-1 queue up and get their turns in arrival order.
        let seen = Arc::new(StdMutex::new(Vec::new()));
        let mut tasks = Vec::new();
        let refs = || Arc::strong_count(&lock(&rows.0)[&b"TASK-1"[..]]);
        for i in 0..3 {
            let (o, s) = (order.clone(), seen.clone());
            let before = refs();
            tasks.push(tokio::spawn(async move {
                let t = o.acquire(Some(b"TASK-1"), LONG).await.unwrap();
                s.lock().unwrap().push(i);
                tokio::task::yield_now().await;
                drop(t);
            }));
            // Each is waiting (holds the row) before the next one arrives.
            while refs() == before {
                tokio::task::yield_now().await;
            }
        }
        assert!(seen.lock().unwrap().is_empty(), "all wait for the first");
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*seen.lock().unwrap(), vec![0, 1, 2]);
        assert_eq!(rows.in_use(), 0, "rows are forgotten once free");
    }

    #[tokio::test]
    async fn a_write_that_cannot_get_its_turn_gives_up_and_the_row_is_released_later() {
        let rows = RowTurns::default();
        let order = WriteOrder::new(&rows, false);
        let held = order.acquire(Some(b"TASK-9"), LONG).await.unwrap();
        let e = order
            .acquire(Some(b"TASK-9"), Duration::from_millis(50))
            .await
            .expect_err("times out");
        let text = e.to_string();
        assert!(
            text.contains("key \"TASK-9\"") && text.contains("50ms"),
            "{text}"
        );
        drop(held);
        assert_eq!(rows.in_use(), 0);
        let again = order.acquire(Some(b"TASK-9"), Duration::from_millis(50));
        assert!(again.await.is_ok());
    }

    #[tokio::test]
    async fn whole_route_order_ignores_keys_and_a_reload_keeps_the_turns() {
        let order = WriteOrder::new(&RowTurns::default(), true);
        let a = order.acquire(Some(b"TASK-1"), LONG).await.unwrap();
        let b = order
            .acquire(Some(b"TASK-2"), Duration::from_millis(50))
            .await;
        assert!(b
            .unwrap_err()
            .to_string()
            .contains("write_order = \"route\""));
        // The reloaded route (per key now) shares the turns held under the old one.
        let reloaded = order.with_scope(false);
        assert!(reloaded
            .acquire(None, Duration::from_millis(50))
            .await
            .is_err());
        drop(a);
        assert!(reloaded.acquire(None, LONG).await.is_ok());
    }

    /// One row, one turn: routes whose keys yield the same value share its turn; a route that
    /// orders every write takes its own turn, then the row's.
    #[tokio::test]
    async fn routes_share_the_turn_of_a_row_and_keep_their_own_keyless_turn() {
        const SHORT: Duration = Duration::from_millis(50);
        let rows = RowTurns::default();
        let create = WriteOrder::new(&rows, true);
        let claim = WriteOrder::new(&rows, false);
        let creating = create.acquire(Some(b"TASK-7"), LONG).await.unwrap();
        let e = claim.acquire(Some(b"TASK-7"), SHORT).await.unwrap_err();
        assert!(e.to_string().contains("key \"TASK-7\""), "{e}");
        // Other rows and the claim route's keyless turn are free.
        let other = claim.acquire(Some(b"TASK-8"), SHORT).await.unwrap();
        let keyless = claim.acquire(None, SHORT).await.unwrap();
        drop((other, keyless));
        // The next create waits for the route's turn even for another row.
        assert!(create.acquire(Some(b"TASK-9"), SHORT).await.is_err());
        // Released: the claim goes, and a create on the claimed row waits for it in turn
        // (its route turn taken first, then the row's).
        drop(creating);
        let claiming = claim.acquire(Some(b"TASK-7"), LONG).await.unwrap();
        let e = create.acquire(Some(b"TASK-7"), SHORT).await.unwrap_err();
        assert!(e.to_string().contains("key \"TASK-7\""), "{e}");
        drop(claiming);
        assert!(create.acquire(Some(b"TASK-7"), LONG).await.is_ok());
        assert_eq!(rows.in_use(), 0);
    }

    #[test]
    fn turns_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Turn>();
        send_sync::<WriteOrder>();
    }
}
