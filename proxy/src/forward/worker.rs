//! Per-worker and per-connection state: the worker's cached routing table, its upstream pools,
//! request-id generator and access-log buffer; the client connection's address.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::header::HeaderValue;

use crate::access_log::{AccessLog, LocalLog};
use crate::shared::Shared;
use crate::table::Table;
use crate::upstream::Pool;
use ficus_core::SharedClock;

/// Per-connection facts.
pub(crate) struct ConnInfo {
    pub peer_ip: HeaderValue,
    pub peer: std::net::IpAddr,
    /// The client connected over TLS (`X-Forwarded-Proto: https`).
    pub https: bool,
}

impl ConnInfo {
    pub fn new(peer: SocketAddr, https: bool) -> ConnInfo {
        // An IP address always makes a valid header value.
        let peer_ip = HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or(HeaderValue::from_static("unknown"));
        ConnInfo {
            peer_ip,
            peer: peer.ip(),
            https,
        }
    }
}

/// Per-worker state: the cached table, the upstream pools, the request-id generator.
pub(crate) struct Worker {
    pub(super) shared: Arc<Shared>,
    // `Rc<Arc<_>>` on purpose: requests clone the `Rc` (non-atomic), never the shared `Arc`.
    #[allow(clippy::redundant_allocation)]
    current: RefCell<Rc<Arc<Table>>>,
    seen: Cell<u64>,
    pub pool: Rc<Pool>,
    id_prefix: u64,
    id_counter: Cell<u64>,
    /// This worker's buffer of access-log lines, for the access log running now.
    access_log: RefCell<Option<Rc<LocalLog>>>,
}

impl Worker {
    pub fn new(shared: Arc<Shared>) -> Worker {
        let seen = shared.generation.load(Ordering::Acquire);
        let table = shared.table.load_full();
        Worker {
            shared,
            current: RefCell::new(Rc::new(table)),
            seen: Cell::new(seen),
            pool: Rc::new(Pool::default()),
            id_prefix: rand::random(),
            id_counter: Cell::new(0),
            access_log: RefCell::new(None),
        }
    }

    /// The current table; refreshed from the shared `ArcSwap` only when its generation moved,
    /// so the common case is one atomic load and a non-atomic `Rc` clone.
    #[inline]
    #[allow(clippy::redundant_allocation)]
    pub(super) fn table(&self) -> Rc<Arc<Table>> {
        let g = self.shared.generation.load(Ordering::Acquire);
        if g != self.seen.get() {
            *self.current.borrow_mut() = Rc::new(self.shared.table.load_full());
            self.seen.set(g);
        }
        self.current.borrow().clone()
    }

    /// This worker's buffer for `log` (a new one when the log was restarted).
    pub(super) fn access_log(&self, log: &Arc<AccessLog>, clock: &SharedClock) -> Rc<LocalLog> {
        let mut slot = self.access_log.borrow_mut();
        match &*slot {
            Some(l) if Arc::ptr_eq(l.log(), log) => l.clone(),
            _ => {
                let l = LocalLog::new(log.clone(), clock.clone());
                *slot = Some(l.clone());
                l
            }
        }
    }

    /// The worker's tick: its buffered access-log lines go to the writer.
    pub fn tick_access_log(&self) {
        let l = self.access_log.borrow().clone();
        if let Some(l) = l {
            l.tick();
        }
    }

    pub(super) fn request_id(&self) -> HeaderValue {
        let n = self.id_counter.get().wrapping_add(1);
        self.id_counter.set(n);
        let mut buf = [0u8; 32];
        hex(self.id_prefix, &mut buf[..16]);
        hex(n, &mut buf[16..]);
        HeaderValue::from_maybe_shared(Bytes::copy_from_slice(&buf))
            .unwrap_or(HeaderValue::from_static("0"))
    }
}

fn hex(mut v: u64, out: &mut [u8]) {
    const D: &[u8; 16] = b"0123456789abcdef";
    for b in out.iter_mut().rev() {
        *b = D[(v & 0xf) as usize];
        v >>= 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_hex_and_distinct() {
        let mut a = [0u8; 16];
        hex(0xabc, &mut a);
        assert_eq!(&a, b"0000000000000abc");
    }
}
