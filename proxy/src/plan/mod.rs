//! Step plans: a route promotes itself through its `[routes.plan]` steps on evidence — its
//! gates (error rate and p99 absolute and relative to legacy over the same window, mismatch
//! rate after learned noise, `min_requests` behind every verdict) held against the route's
//! `evidence` record — and, with `preflight`, shadows exactly the next cohort (the keys whose
//! bucket the next step adds) to the new side before moving it.
//!
//! This module is the plan's vocabulary, below the routing table: settings, gates, the durable
//! state and its engine, the hot-path part. `planner` (above the control plane) runs it: it
//! judges once a second on the admin thread, persists each step with its evidence in the state
//! store (compare-and-set, so with replicas on PostgreSQL one replica takes a step and all
//! follow), then applies it.
//!
//! # Layout
//! - `config`: [`PlanConfig`] (`[routes.plan]`, read and validated by the `config` module);
//! - `gates`: a phase's gates and the [`StepEvidence`] recorded with a step;
//! - `state`: [`PlanState`] (durable, JSON) and the engine ([`next`](state::next));
//! - `runtime`: the pre-flight cohort on the hot path and the cohort's mismatches.

mod config;
mod gates;
mod runtime;
mod state;

pub use self::config::{OnFail, PlanConfig, MAX_PHASE};
pub(crate) use self::gates::{judge_hold, judge_preflight, Verdict};
pub use self::gates::{CohortEvidence, GateValue, StepEvidence};
pub(crate) use self::runtime::{CohortMetrics, PlanRuntime};
pub(crate) use self::state::{next, Next};
pub use self::state::{CohortMismatch, Phase, PlanState, Status};
