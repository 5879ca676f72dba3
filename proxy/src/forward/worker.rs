//! Per-worker and per-connection state: the worker's cached routing table, its upstream pools
//! and request-id generator; the client connection's address.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::header::HeaderValue;

use crate::shared::Shared;
use crate::table::Table;
use crate::upstream::Pool;

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
