//! Warren's engine: the task model, module definitions, cron, and the durable task
//! store on SQLite or PostgreSQL. It knows nothing of actors or HTTP; the
//! `warren-actors` crate drives it.

pub mod catalog;
pub mod clock;
pub mod cron;
pub mod moduledef;
pub mod store;
pub mod task;
pub mod wasm;
