//! ficus-core: the vocabulary every ficus crate speaks, written once.
//!
//! # Layout
//! - [`Side`]: the two backends, `legacy` and `new`.
//! - [`headers`]: the hop-by-hop header list (RFC 9110 §7.6.1) and the headers ficus adds to
//!   requests and responses.
//! - [`stamp`]: request-time stamps — the `X-Ficus-Request-Time` text the proxy sends to both
//!   sides of a dual write, and the µs-since-1970 numbers the stores compare.
//! - [`since`]: the one `--since` syntax (RFC 3339, a date, or an age like `2h`).
//! - [`clock`]: the injectable [`Clock`] — wall and monotonic time from one trait, the system
//!   clock in production, a [`ManualClock`] in tests.
//!
//! This crate depends on no other ficus crate and on nothing heavier than `http` and `time`,
//! so every crate (the reference task apps included) can use it.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod clock;
pub mod headers;
mod side;
pub mod since;
pub mod stamp;

pub use self::clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use self::side::Side;
