//! What the tests and benchmarks of both Warren crates share, so each helper is
//! written once: scratch folders and SQLite files ([`scratch`]), a fresh PostgreSQL
//! database per test ([`postgres`]), the compile cache and JavaScript toolkit the tests
//! share ([`toolkit`]), a bounded wait for conditions nothing announces ([`wait`]), and
//! the chaos harness ([`chaos`]).
//!
//! A dev-dependency only: nothing here is part of Warren's public API.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod chaos;
pub mod postgres;
pub mod scratch;
pub mod toolkit;
pub mod wait;

pub use postgres::{admin_url, database_url, FreshDatabase};
pub use scratch::{remove_sqlite, repo, unique_name, Scratch};
pub use toolkit::{engine_config, js_toolkit, test_cache_dir, use_test_cache};
pub use wait::eventually;

/// The error of a test helper: whatever failed, with its cause.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
