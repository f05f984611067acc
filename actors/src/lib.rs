//! Warren's actor system: the actix layer that turns the engine (store, cron, module
//! definitions, WebAssembly VMs) into a running node.
//!
//! ```text
//! Supervisor ──starts──> QueueActor      claims due managed tasks, hands them to runners
//!                  ├──> SchedulerActor  cron timers for <task>s, each tick once cluster-wide
//!                  └──> TaskRunner × N  per cluster, on threads the runners share
//! ```
//!
//! `warren serve` also serves a dashboard, a JSON API and Prometheus metrics over HTTP
//! ([`web`]). `docs/architecture.md` says what each file owns.
//!
//! An application embeds a node with [`Warren::builder`] and talks to it through the
//! messages re-exported here ([`ScheduleTask`], [`RunEphemeralTask`], [`Shutdown`], …):
//!
//! ```no_run
//! use serde_json::json;
//! use std::time::Duration;
//! use warren_actors::{RunEphemeralTask, ScheduleTask, Shutdown, Warren};
//!
//! #[actix_rt::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let (node, _skipped_modules) = Warren::builder()
//!         .database("sqlite://warren.db")
//!         .modules_dir("modules/")
//!         .start()
//!         .await?;
//!     // A managed task: durable; the answer is its id.
//!     let id = node
//!         .send(ScheduleTask::managed("demo:ping".parse()?, json!({"ping": 42})))
//!         .await??;
//!     println!("scheduled task {id}");
//!     // An ephemeral task: await its result; dropping the future kills the task.
//!     let stats = node
//!         .send(RunEphemeralTask::new("demo:compile", json!({"numbers": [1, 2]})))
//!         .await?
//!         .await?;
//!     println!("{stats}");
//!     node.send(Shutdown { grace: Duration::from_secs(30) }).await?;
//!     Ok(())
//! }
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]

mod builder;
mod claim_ahead;
mod cluster_queue;
mod code;
mod error;
mod idle_spin;
mod in_flight;
mod messages;
mod metrics;
mod pool;
mod queue;
mod restart;
mod run_span;
mod run_times;
mod runner;
mod runner_threads;
mod scheduler;
mod supervisor;
pub mod task_filter;
pub mod task_spec;
#[cfg(feature = "test-hooks")]
mod test_hooks;
pub mod web;

pub use builder::{Warren, WarrenBuilder};
pub use error::{Error, RunnerCrash};
pub use messages::{
    CancelTask, ConnectionUse, EphemeralTask, GetNodeContext, Kill, NodeContext, NodeStatus,
    QueueState, QueueStatus, RetryTask, RunDueScheduled, RunEphemeralTask, RunScheduledNow,
    RunnerStatus, ScheduleTask, ScheduleTasks, Shutdown, Status,
};
pub use metrics::{Gauges, Metrics};
pub use supervisor::Supervisor;
#[cfg(feature = "test-hooks")]
pub use test_hooks::{Child, InjectFault, RunStarts};
