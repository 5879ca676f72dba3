//! What a request the access log may write keeps ([`Capture`]), the entry waiting for its
//! response body to end ([`Pending`]), and where a mirrored request's entry meets shadow mode's
//! outcome ([`ShadowJoin`]).

use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::header::HeaderValue;

use super::entry::{Decision, Entry};
use super::local::LocalLog;
use super::log::AccessLog;
use super::state::lock;

/// The request's facts known when it arrives.
pub(crate) struct CaptureStart {
    /// Arrival, on the proxy's clock.
    pub at: std::time::Instant,
    pub request_id: HeaderValue,
    /// The client's address as text (the connection's, formatted once per connection).
    pub client: HeaderValue,
    pub method: http::Method,
    pub uri: http::Uri,
    pub version: http::Version,
    pub route: Option<Arc<str>>,
    pub decision: Option<Decision>,
}

/// What a request that may be written keeps until its response head.
pub(crate) struct Capture {
    log: Arc<AccessLog>,
    local: Rc<LocalLog>,
    sampled: bool,
    pub start: CaptureStart,
    /// From arrival to the response head (`None`: no answer from a backend).
    pub upstream: Option<Duration>,
    /// A mirrored request: where its entry meets shadow mode's outcome.
    shadow: Option<EntryHalf>,
}

impl Capture {
    /// What a request arriving now keeps for its line, to be written through `local` (its
    /// worker's buffer); `None` when it will not be written (not sampled, and errors are not
    /// kept).
    #[inline]
    pub fn begin(local: &Rc<LocalLog>, start: CaptureStart) -> Option<Capture> {
        let log = local.log();
        let (sampled, keep) = log.sample();
        keep.then(|| Capture {
            log: log.clone(),
            local: local.clone(),
            sampled,
            start,
            upstream: None,
            shadow: None,
        })
    }

    /// The request is mirrored: its line waits for the comparison. Returns the half shadow
    /// mode reports to.
    pub fn mirrored(&mut self) -> OutcomeHalf {
        let join = Arc::new(ShadowJoin {
            log: self.log.clone(),
            state: Mutex::new(JoinState::Waiting),
        });
        self.shadow = Some(EntryHalf(Some(join.clone())));
        OutcomeHalf(Some(join))
    }

    /// At the response head: whether the line is written (sampled, or an error kept by
    /// `all_errors`) and, if so, the entry without its end-of-body fields and where it goes.
    pub fn finish(
        self,
        backend: Option<ficus_core::Side>,
        status: u16,
        error: Option<&'static str>,
    ) -> Option<Pending> {
        let keep = self.sampled
            || (self.log.inner.all_errors.load(Ordering::Relaxed)
                && (status >= 500 || error.is_some()));
        if !keep {
            return None;
        }
        let s = self.start;
        Some(Pending {
            entry: Entry {
                at: s.at,
                request_id: s.request_id,
                client: s.client,
                method: s.method,
                uri: s.uri,
                version: s.version,
                route: s.route,
                decision: s.decision,
                backend,
                status,
                error,
                bytes_in: 0,
                bytes_out: 0,
                upstream: self.upstream,
                total: Duration::ZERO,
                shadow: None,
                complete: false,
            },
            to: match self.shadow {
                Some(half) => Destination::Join(half),
                None => Destination::Local(self.local),
            },
        })
    }
}

/// An entry waiting for its response body to end.
pub(crate) struct Pending {
    pub entry: Entry,
    to: Destination,
}

enum Destination {
    Local(Rc<LocalLog>),
    Join(EntryHalf),
}

impl Pending {
    /// The body ended (or the client left): the line goes to the queue, or waits for the
    /// comparison.
    pub fn done(self) {
        match self.to {
            Destination::Local(local) => local.push(self.entry),
            Destination::Join(half) => half.give(self.entry),
        }
    }
}

/// Where a mirrored request's entry and shadow mode's outcome meet (see the module doc).
pub(crate) struct ShadowJoin {
    log: Arc<AccessLog>,
    state: Mutex<JoinState>,
}

enum JoinState {
    Waiting,
    Entry(Box<Entry>),
    Outcome(&'static str),
    Done,
}

/// The entry's side of a [`ShadowJoin`]; dropped without an entry (the line is not written),
/// the outcome is not waited for.
pub(crate) struct EntryHalf(Option<Arc<ShadowJoin>>);

/// Shadow mode's side of a [`ShadowJoin`]; dropped without an outcome (the exchange was not
/// mirrored after all: client gone, body incomplete), the line says `incomplete`.
pub(crate) struct OutcomeHalf(Option<Arc<ShadowJoin>>);

impl EntryHalf {
    fn give(mut self, mut e: Entry) {
        let Some(j) = self.0.take() else { return };
        let mut st = lock(&j.state);
        match std::mem::replace(&mut *st, JoinState::Done) {
            JoinState::Outcome(o) => {
                e.shadow = Some(o);
                drop(st);
                j.log.push(e);
            }
            JoinState::Waiting => *st = JoinState::Entry(Box::new(e)),
            JoinState::Entry(_) | JoinState::Done => {}
        }
    }
}

impl Drop for EntryHalf {
    fn drop(&mut self) {
        if let Some(j) = self.0.take() {
            *lock(&j.state) = JoinState::Done;
        }
    }
}

impl OutcomeHalf {
    /// Shadow mode's outcome (`match`, `mismatch`, …).
    pub fn outcome(mut self, o: &'static str) {
        if let Some(j) = self.0.take() {
            j.outcome(o);
        }
    }
}

impl ShadowJoin {
    fn outcome(&self, o: &'static str) {
        let mut st = lock(&self.state);
        match std::mem::replace(&mut *st, JoinState::Done) {
            JoinState::Entry(mut e) => {
                e.shadow = Some(o);
                drop(st);
                self.log.push(*e);
            }
            JoinState::Waiting => *st = JoinState::Outcome(o),
            JoinState::Outcome(_) | JoinState::Done => {}
        }
    }
}

impl Drop for OutcomeHalf {
    fn drop(&mut self) {
        if let Some(j) = self.0.take() {
            j.outcome("incomplete");
        }
    }
}
