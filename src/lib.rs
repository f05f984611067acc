//! Warren's engine: the task model, module definitions, cron, and the durable task
//! store on SQLite or PostgreSQL. It knows nothing of actors or HTTP; the
//! `warren-actors` crate drives it.
//!
//! Layers, from the bottom (see `docs/architecture.md`): the task model ([`task`],
//! [`clock`]), module definitions and cron ([`moduledef`], [`cron`], [`catalog`]), the
//! store's typed statements ([`store`]), the decisions above them ([`executor`]), and
//! the WebAssembly host ([`wasm`]).

// Every public item says what it is for.
#![warn(missing_docs)]
// Unsafe code only where a foreign interface needs it, each module allowing it saying
// why: SQLite's C interface (`store/sqlite_guard.rs`) and loading compiled components
// from the compile cache (`wasm/cache.rs`).
#![deny(unsafe_code)]

pub mod catalog;
pub mod clock;
pub mod cron;
pub mod executor;
pub mod flow;
pub mod moduledef;
pub mod rate_limit;
pub mod retry;
pub mod store;
pub mod task;
pub mod trace;
pub mod wasm;
