//! The cut-over's vocabulary: which way ([`Toward`]), how ([`CutoverOptions`]), what was done
//! ([`CutoverStep`], [`CutoverReport`]), and the recorder that times each step as it is done.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::drift::{drift_line, Drift};

/// A follower that has not written `ficus.follow` for longer is taken as not running.
pub const ALIVE: Duration = Duration::from_secs(5);
/// Poll interval of the waits inside the hold.
pub(super) const POLL: Duration = Duration::from_millis(2);

/// Which way the writes move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Toward {
    /// `migrate cutover`: from legacy to new.
    New,
    /// `migrate rollback --live`: from new back to legacy.
    Legacy,
}

/// How a cut-over runs.
#[derive(Debug, Clone)]
pub struct CutoverOptions {
    /// The legacy SQLite database.
    pub source: PathBuf,
    /// PostgreSQL URL.
    pub target: String,
    /// The write routes to move.
    pub routes: Vec<String>,
    /// The longest write pause allowed (the proxy's hold ends by itself then).
    pub max_hold: Duration,
    /// The follower's lag allowed before starting.
    pub max_lag: Duration,
    /// Check the preconditions and say what would be done; change nothing.
    pub dry_run: bool,
    /// Which way.
    pub toward: Toward,
}

/// One step, as done.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CutoverStep {
    /// Its name.
    pub step: String,
    /// How long it took, ms.
    pub ms: f64,
    /// What it did.
    pub detail: String,
}

/// What a cut-over did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CutoverReport {
    /// Which way.
    pub toward: Toward,
    /// Only checked.
    pub dry_run: bool,
    /// The steps done, in order.
    pub steps: Vec<CutoverStep>,
    /// The write pause: from the hold to the release, ms.
    pub pause_ms: Option<f64>,
    /// The routes were moved.
    pub switched: bool,
    /// The step that failed, and why.
    pub failed: Option<String>,
    /// Where things stand at the end, in words.
    pub state: String,
    /// Rows that differed in the last verify.
    pub differences: Vec<Drift>,
}

impl CutoverReport {
    /// Everything asked for was done.
    pub fn ok(&self) -> bool {
        self.failed.is_none()
    }

    /// Text for people.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        for st in &self.steps {
            let _ = writeln!(s, "{:<16} {:>8.1} ms  {}", st.step, st.ms, st.detail);
        }
        for d in self.differences.iter().take(20) {
            let _ = writeln!(s, "  {}", drift_line(d));
        }
        if let Some(p) = self.pause_ms {
            let _ = writeln!(s, "write pause: {p:.1} ms");
        }
        match &self.failed {
            Some(f) => {
                let _ = writeln!(s, "FAILED at {f}");
            }
            None if self.dry_run => s.push_str("dry run: nothing changed\n"),
            None => {}
        }
        let _ = writeln!(s, "{}", self.state);
        s
    }
}

pub(super) struct Run<'a, F: FnMut(&CutoverStep)> {
    pub(super) report: CutoverReport,
    pub(super) on_step: F,
    pub(super) last: Instant,
    pub(super) _p: std::marker::PhantomData<&'a ()>,
}

impl<F: FnMut(&CutoverStep)> Run<'_, F> {
    pub(super) fn done(&mut self, step: &str, detail: impl Into<String>) {
        let st = CutoverStep {
            step: step.into(),
            ms: self.last.elapsed().as_secs_f64() * 1000.0,
            detail: detail.into(),
        };
        (self.on_step)(&st);
        self.report.steps.push(st);
        self.last = Instant::now();
    }
}

/// A failure of one step, naming it.
pub(super) fn failed(step: &str, why: impl std::fmt::Display) -> (String, String) {
    (step.to_string(), why.to_string())
}
