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
//! row before anything is forwarded — with `write_order = "key"` (the default) the row is the
//! value of the route's `key` in the request, and writes that lack the key share one turn per
//! route; with `write_order = "route"` every write on the route shares one turn (for routes
//! whose writes make each side allocate ids, like creates keyed by a header). The turn is
//! released when the write's mirror exchange has finished, failed or was dropped: it rides in
//! the mirror job's `on_done`, which shadow mode fires exactly once however the job ends
//! (answered, timed out, breaker open, queue full, shut down). A write that is not mirrored
//! (its primary exchange failed, its bodies were too large, the client left) releases it when
//! the proxy is done with the write. So the next write to the row is forwarded only after the
//! previous one was applied (or definitely not applied) on both sides, and both sides apply
//! writes to one row in the same order. A dropped or failed mirror is recorded in
//! `dual_writes` with the mirror's status NULL, hence `divergent = 1` when the primary
//! succeeded (see `dualwrite`).
//!
//! Waiting is asynchronous (other requests on the worker go on) and first come, first served
//! (tokio's fair mutex), bounded by the primary backend's `timeout_ms`: a write that does not
//! get its turn in time is sent to neither side and answered 503 (`write_turn_timeout`, naming
//! route and row), counted in `ficus_dual_write_turn_timeouts_total{route}`.
//!
//! Reads never take a turn, and routes without `dual_write` have no [`WriteOrder`]: one branch
//! per request. A turn costs a short critical section on the route's map of rows in use (an
//! entry lives only while a write to that row is in flight or waiting).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// One row's turn; the map holds one reference, each holder and waiter another.
type Slot = Arc<AsyncMutex<()>>;
/// Rows with a write in flight or waiting; `None`: writes without a key (or every write, with
/// `write_order = "route"`).
type Rows = Mutex<HashMap<Option<Box<[u8]>>, Slot>>;

/// The turns of one dual-write route. Cloning shares them: a reload hands the running
/// route's turns to its successor, so writes in flight across a reload keep their order.
#[derive(Clone, Default)]
pub(crate) struct WriteOrder {
    rows: Arc<Rows>,
    /// `write_order = "route"`: one turn for the whole route.
    whole_route: bool,
}

/// A write's turn; dropping it lets the next write to the row go.
pub(crate) struct Turn {
    guard: Option<OwnedMutexGuard<()>>,
    row: Option<Box<[u8]>>,
    rows: Arc<Rows>,
}

/// A write did not get its turn in time.
#[derive(Debug, thiserror::Error)]
#[error(
    "dual_write: the previous write to {row} has not reached both sides within {limit:?} \
     (the primary backend's timeout_ms); this write was sent to neither side"
)]
pub(crate) struct TurnTimeout {
    /// `key "TASK-101"`, `writes without a key`, `every write of the route`.
    row: String,
    limit: Duration,
}

fn lock(rows: &Rows) -> MutexGuard<'_, HashMap<Option<Box<[u8]>>, Slot>> {
    rows.lock().unwrap_or_else(|p| p.into_inner())
}

/// Forgets `row` if nobody holds or waits for its turn.
fn forget(rows: &Rows, row: &Option<Box<[u8]>>) {
    let mut map = lock(rows);
    if map.get(row).is_some_and(|s| Arc::strong_count(s) == 1) {
        map.remove(row);
    }
}

impl WriteOrder {
    /// The turns of a route; `whole_route`: `write_order = "route"`.
    pub fn new(whole_route: bool) -> WriteOrder {
        WriteOrder {
            rows: Arc::default(),
            whole_route,
        }
    }

    /// The same turns, with the scope a (re)loaded configuration asks for.
    pub fn with_scope(&self, whole_route: bool) -> WriteOrder {
        WriteOrder {
            rows: self.rows.clone(),
            whole_route,
        }
    }

    /// Waits (up to `limit`) for the turn of the row `key` names (`None` or empty: the
    /// route's keyless turn).
    pub async fn acquire(&self, key: Option<&[u8]>, limit: Duration) -> Result<Turn, TurnTimeout> {
        let row: Option<Box<[u8]>> = if self.whole_route {
            None
        } else {
            key.filter(|k| !k.is_empty()).map(Box::from)
        };
        let slot = lock(&self.rows).entry(row.clone()).or_default().clone();
        let guard = match slot.clone().try_lock_owned() {
            Ok(g) => g,
            Err(_) => match tokio::time::timeout(limit, slot.clone().lock_owned()).await {
                Ok(g) => g,
                Err(_) => {
                    drop(slot);
                    forget(&self.rows, &row);
                    let row = match (&row, self.whole_route) {
                        (Some(k), _) => format!("key {:?}", String::from_utf8_lossy(k)),
                        (None, true) => "this route (write_order = \"route\")".to_string(),
                        (None, false) => "this route without a key".to_string(),
                    };
                    return Err(TurnTimeout { row, limit });
                }
            },
        };
        Ok(Turn {
            guard: Some(guard),
            row,
            rows: self.rows.clone(),
        })
    }

    /// Rows with a write in flight or waiting (tests).
    #[cfg(test)]
    fn rows_in_use(&self) -> usize {
        lock(&self.rows).len()
    }
}

impl std::fmt::Debug for Turn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turn")
            .field("row", &self.row.as_deref().map(String::from_utf8_lossy))
            .finish_non_exhaustive()
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        drop(self.guard.take());
        forget(&self.rows, &self.row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;

    const LONG: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn one_write_per_row_in_arrival_order_other_rows_and_keyless_apart() {
        let order = WriteOrder::new(false);
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
        let refs = || Arc::strong_count(&lock(&order.rows)[&Some(Box::from(&b"TASK-1"[..]))]);
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
        assert_eq!(order.rows_in_use(), 0, "rows are forgotten once free");
    }

    #[tokio::test]
    async fn a_write_that_cannot_get_its_turn_gives_up_and_the_row_is_released_later() {
        let order = WriteOrder::new(false);
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
        assert_eq!(order.rows_in_use(), 0);
        let again = order.acquire(Some(b"TASK-9"), Duration::from_millis(50));
        assert!(again.await.is_ok());
    }

    #[tokio::test]
    async fn whole_route_order_ignores_keys_and_a_reload_keeps_the_turns() {
        let order = WriteOrder::new(true);
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

    #[test]
    fn turns_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Turn>();
        send_sync::<WriteOrder>();
    }
}
