//! Fault injection for the tests of crash supervision, compiled only with the
//! `test-hooks` feature (the actors' own tests enable it; release builds do not have
//! it).

use actix::prelude::*;

pub use crate::restart::Child;

/// Makes the Supervisor's child `0` panic in a handler, as a bug would.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct InjectFault(pub Child);

/// Receives `(task id, instant)` as each managed run starts (its transaction open, the
/// guest about to run): benchmarks time the path from a commit to a start with
/// monotonic microseconds instead of the table's whole milliseconds. Set with
/// [`crate::WarrenBuilder::probe_run_starts`].
pub type RunStarts = tokio::sync::mpsc::UnboundedSender<(warren::task::TaskId, std::time::Instant)>;
