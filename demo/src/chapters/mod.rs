//! The chapters of the story, one module each; [`crate::story`] runs them in order. A chapter
//! prints its step heading, does its part, says what happened (and the shell command that does
//! the same), and checks the outcome the story expects.
//!
//! - `migrate` — PostgreSQL, the legacy seed, plan/run/verify (chapters 1–3).
//! - `live` — a live database migrated while it is written to: capture, snapshot, follow (4).
//! - `cutover` — that database cut over live: reads first, writes with a pause of milliseconds,
//!   `rollback --live` carrying a deletion, cut over again (5).
//! - `start` — the apps, the side-by-side check, the proxy and its URLs (6).
//! - `shadow` — shadow reads against the next build and the mismatch report (7).
//! - `dualwrite` — concurrent writers on the dual-write routes (8).
//! - `drift` — the watch finding no drift, then injected drift classified (9, 10).
//! - `rollout` — reads 10 → 50 → 100 %, writes to new as primary (11, 12).
//! - `guard` — the proxy rolling a slow build back by itself (13).
//! - `plan` — a step plan promoting v1 on its own; one stopped at its pre-flight by a quirk
//!   only the next cohort touches (14, 15).
//! - `rollback` — cut-over and the migration rollback keeping new-side writes (14).

pub mod cutover;
pub mod drift;
pub mod dualwrite;
pub mod guard;
pub mod live;
pub mod migrate;
pub mod plan;
pub mod rollback;
pub mod rollout;
pub mod shadow;
pub mod start;
