//! The store's conformance suite: every test body runs against SQLite and PostgreSQL
//! (`AREA::sqlite::NAME` and `AREA::postgres::NAME`). One file per area; what they
//! share is the test kit in `tests/support/conformance.rs`.

#[path = "../support/mod.rs"]
mod support;

mod bulk;
mod claims;
mod flow;
mod listing;
mod manage;
mod nodes;
mod pauses;
mod progress;
mod rate_limits;
mod retries;
mod run_groups;
mod run_history;
mod runs;
mod schedule;
mod scheduled;
mod task_sql;
mod thread_connections;
mod unique;
mod waiting;
