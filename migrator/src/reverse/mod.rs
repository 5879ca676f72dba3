//! After a cut-over: the reverse capture on PostgreSQL ([`capture`]) and the reverse follower
//! that keeps legacy's SQLite current from it ([`follow`]), so a rollback is the cut-over in
//! reverse — deletions included.

pub mod capture;
pub mod follow;

pub use self::follow::{ReverseFollower, ReverseRound};
