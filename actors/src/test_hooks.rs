//! Fault injection for the tests of crash supervision, compiled only with the
//! `test-hooks` feature (the actors' own tests enable it; release builds do not have
//! it).

use actix::prelude::*;

pub use crate::restart::Child;

/// Makes the Supervisor's child `0` panic in a handler, as a bug would.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct InjectFault(pub Child);
