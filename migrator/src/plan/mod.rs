//! The migration plan: for each table, the PostgreSQL type and conversion of every column
//! (from the declared type, the profile of stored values and the config overrides), defaults,
//! keys, constraints, indexes, foreign keys, views; the DDL; and the human report saying each
//! decision and each value that will not convert. `plan` prints it; `run` executes it.
//!
//! - `types` — the plan itself, apart from the planner: what is stored in the target and
//!   read by every later command;
//! - `build` — the planner: introspect, profile, decide, assemble ([`Plan::build`]); whether a
//!   stored plan is still valid;
//! - `decide` — each column's type and conversion; `defaults` — SQLite defaults translated;
//! - `constraints` — keys, UNIQUE, indexes, CHECKs and foreign keys;
//! - `ddl` — CREATE TABLE, the post-load steps, `COPY`, quoting;
//! - `views` — views translated to PostgreSQL (sqlparser), in dependency order (`functions`:
//!   SQLite's functions and date arithmetic);
//! - `report` — the human report; `json` — the stable shape of `plan --format json`.

mod build;
mod constraints;
mod ddl;
mod decide;
mod defaults;
mod json;
mod report;
mod types;
mod views;

pub use self::ddl::{qualified, quote_literal, Step};
pub use self::json::{PlanJson, PLAN_JSON_FORMAT};
pub use self::types::{
    CheckPlan, ColumnPlan, FkPlan, IdentityPlan, IndexPlan, NotCarried, Plan, TablePlan, ViewPlan,
    PLAN_VERSION,
};
