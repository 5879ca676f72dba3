//! [`LocalExec`]: hyper's executor for the tasks HTTP/2 spawns — streams of a client connection
//! (server side) and connection drivers toward `h2`/`h2c` backends (client side) — on the
//! worker's `LocalSet`. They are not `Send`: the routing table, pools and counters they touch
//! are the worker's own.

use std::future::Future;

/// Spawns on the current `LocalSet`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LocalExec;

impl<F: Future + 'static> hyper::rt::Executor<F> for LocalExec {
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}
