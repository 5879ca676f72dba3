//! [`NotCarried`]: an object of the source the migration does not carry — a trigger, a view
//! that could not be created, a virtual or shadow table, a table skipped by configuration —
//! and why. One type for every kind, found by `introspect` (virtual and shadow tables), `plan`
//! (triggers, configuration) and `run` (views PostgreSQL refused), reported by the plan report,
//! the run summary (`carried`) and `status`.

use serde::{Deserialize, Serialize};

/// An object of the source the migration does not carry: what, and why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NotCarried {
    /// `trigger`, `table`, `virtual table`, `shadow table`, `view`...
    pub kind: String,
    /// Its name in SQLite.
    pub name: String,
    /// Why it is not carried.
    pub reason: String,
    /// Its SQL in SQLite (empty if unknown).
    #[serde(default)]
    pub sql: String,
}
