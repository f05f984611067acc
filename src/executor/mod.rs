//! The decisions above the store: each read-decide-write sequence of the engine, one
//! file per decision. The store (`crate::store`) runs typed statements, one per
//! operation; the code here reads what a decision needs through them, decides with
//! plain functions (unit-tested below without a database), and writes the outcome
//! through them, inside one of the store's transactions where the sequence must be
//! atomic.
//!
//! - `failure.rs`: the retry rule ([`crate::task::decide_failure`]) applied to a failed
//!   run;
//! - `recovery.rs`: returning the tasks of runners whose lease expired;
//! - `scheduled.rs`: next runs of scheduled tags (definition sync, claims, enabling);
//! - `maintenance.rs`: the maintenance zone's offset, from configuration or from what
//!   the database holds.
//!
//! The entry points are methods of [`crate::store::Store`] (written here, next to the
//! decision they run), so callers see one handle.

mod failure;
mod maintenance;
mod recovery;
mod scheduled;

pub use failure::RunFailure;
pub use maintenance::{MaintenanceOffset, MAINTENANCE_OFFSET_VAR};
pub use scheduled::next_run;
