//! What the task app's tests share, all from testkit: the HTTP client, temp dirs, listeners,
//! the comparison clock and both sides started on their own seeded stores.

#![allow(dead_code, unused_imports)]

pub use testkit::apps::{pair, test_clock, Pair};
pub use testkit::backend::listener;
pub use testkit::{temp_dir, Http, Resp, TempDir};
