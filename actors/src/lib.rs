//! Warren's actor system: the actix layer that turns the engine (store, cron, module
//! definitions, WebAssembly VMs) into a running node.
//!
//! ```text
//! Supervisor ──starts──> QueueActor      claims due managed tasks, hands them to runners
//!                  ├──> SchedulerActor  cron timers for <task>s, each tick once cluster-wide
//!                  └──> TaskRunner × N  per cluster, each on a thread of its own
//! ```
//!
//! An application embeds a node with [`Warren::builder`] and talks to it through the
//! messages in [`messages`].

mod code;
pub mod messages;
mod queue;
mod runner;
mod scheduler;
mod supervisor;

pub use messages::*;
pub use supervisor::{
    default_node_name, StartError, Supervisor, Warren, WarrenBuilder, SCHEDULED_RUNNERS,
};
