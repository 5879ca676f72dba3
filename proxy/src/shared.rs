//! What the data plane and the control plane share: the published routing table and its
//! generation, the metrics, the draining flag, the count of open client connections. The control plane writes (a table swap, then a
//! generation bump); workers read (one atomic load per request, see `forward::Worker`).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::metrics::Metrics;
use crate::table::Table;

/// What the data plane shares with the control plane.
pub(crate) struct Shared {
    pub table: ArcSwap<Table>,
    /// Bumped after every table swap; workers compare it to refresh their cached table.
    pub generation: AtomicU64,
    pub metrics: Arc<Metrics>,
    /// Set when shutdown starts: `/readyz` answers 503.
    pub draining: AtomicBool,
    /// Client connections open, all workers together (`max_connections`).
    pub connections: AtomicUsize,
}
