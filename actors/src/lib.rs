//! Warren's actor system: the actix layer that turns the engine (store, cron, module
//! definitions, WebAssembly VMs) into a running node.
//!
//! ```text
//! Supervisor ──starts──> QueueActor      claims due managed tasks, hands them to runners
//!                  ├──> SchedulerActor  cron timers for <task>s, each tick once cluster-wide
//!                  └──> TaskRunner × N  per cluster, each on a thread of its own
//! ```
//!
//! `warren serve` also serves a dashboard, a JSON API and Prometheus metrics over HTTP
//! ([`web`], [`metrics`]).
//!
//! An application embeds a node with [`Warren::builder`] and talks to it through the
//! messages in [`messages`]:
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

mod code;
pub mod messages;
pub mod metrics;
mod pool;
mod queue;
mod restart;
mod runner;
mod scheduler;
mod supervisor;
pub mod web;

pub use messages::*;
pub use restart::{Child, RestartPolicy};
pub use supervisor::{
    default_node_name, GiveUp, StartError, Supervisor, Warren, WarrenBuilder, SCHEDULED_RUNNERS,
};
