//! The access log (`[proxy.access_log]`): one structured line per request — time, request id,
//! client, method, path, route, routing decision (percent / sticky / override / hold /
//! recent), backend, status, bytes in and out, upstream and total latency, shadow outcome —
//! as JSON lines or logfmt, to standard output or a file that is reopened on SIGHUP and
//! SIGUSR1 (what `logrotate` expects), sampled, with errors always kept and routes opting out.
//!
//! # Architecture invariant: no lock, no syscall, no wake-up per request
//! A request that will be written keeps a few cheap clones (method, URI, request id) in a
//! [`Capture`]; when its response body ends the worker formats its line into a buffer of its
//! own ([`LocalLog`]), which goes to the writer thread (`writer`) as one batch of about a hundred
//! lines, by `try_send` on a bounded channel (full: the batch is dropped and its lines counted
//! in `ficus_access_log_dropped_total`; the worker never waits), or at the worker's tick every
//! [`DRAIN_EVERY`]. The writer only writes: it is never woken by a worker, drains every
//! [`DRAIN_EVERY`], and owns the file (reopen, flush). With the log off, or on a route with
//! `access_log = false`, a request pays one branch.
//!
//! Measured (`bench/proxy.sh`, one worker, PIN=1): formatting on the writer thread instead —
//! every entry sent to it through the channel — cost 1.6–1.8 µs of CPU per request against
//! ~0.9 µs here, and doubled p99: every 20 ms the writer took the proxy's core for a batch of
//! ~1,400 lines (channel slots, cross-thread frees); it was replaced.
//!
//! Sampling is decided when the request arrives (`sample`); with `all_errors` every request is
//! captured and the 5xx and proxy-made errors among the unsampled ones are written too —
//! decided at the response head, once the status is known.
//!
//! A mirrored request's line waits for shadow mode's comparison (so it can say `match` or
//! `mismatch`): the entry and the outcome meet in a `ShadowJoin`, and whichever comes
//! second queues the line. Such lines come later than their neighbours, by up to the
//! mirror's `timeout_ms`.
//!
//! # Layout
//! - `log`: [`AccessLog`] (settings, the batches' queue, writer thread, flush, sampling);
//! - `capture`: [`Capture`], [`Pending`], and the `ShadowJoin` of a mirrored request;
//! - `local`: [`LocalLog`], a worker's buffer of formatted lines;
//! - `entry`: `Entry`, [`Decision`], the JSON and logfmt lines;
//! - `state`: what the workers, the control plane and the writer share (settings, signals,
//!   counters);
//! - `writer`: the writer thread (drain, write, reopen, flush acknowledgements).

mod capture;
mod entry;
mod local;
mod log;
mod state;
mod writer;

pub(crate) use self::capture::{Capture, CaptureStart, OutcomeHalf, Pending};
pub(crate) use self::entry::Decision;
pub(crate) use self::local::LocalLog;
pub(crate) use self::log::AccessLog;
pub use self::log::AccessLogError;
pub(crate) use self::writer::DRAIN_EVERY;
