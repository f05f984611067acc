//! What a database backend does its own way: the one trait a backend implements,
//! next to the statements every backend shares.
//!
//! Most of the store's statements are written once in diesel's DSL and run on any
//! backend through `on_conn!`. What cannot be written once is listed here:
//! transactions and their locks, the multi-row inserts, the claim, wake-ups, task
//! code's SQL, and the listing (a boxed query is tied to one backend).
//! `postgres_dialect.rs` and `sqlite_dialect.rs` implement it; a third backend
//! implements it for its connection type, adds that type to [`super::AnyConn`] (and
//! the pooled connection and the pool in `conn.rs` and `mod.rs`), and passes the
//! conformance suite.
//!
//! A backend may also offer faster paths the store uses when it knows the backend
//! (PostgreSQL's grouped completions in `completions.rs` and one-statement scheduling
//! in `schedule_alone.rs`); they are optimisations, never needed for correctness.
//! Grouped run records (`run_history.rs`) write on any connection by a match on
//! [`super::AnyConn`], to which a third backend adds its arm.

use super::bulk::BulkCandidate;
use super::claim::ClaimParams;
use super::model::TaskRow;
use super::pg_policy::PgStatementPolicy;
use super::schedule::{MetadataInsert, TaskInsert};
use super::signals::Pending;
use super::task_sql::{Ran, SqlCanceller, TaskSqlError, TaskStatement};
use super::StoreResult;
use super::TaskFilter;
use crate::task::{Millis, TaskId};
use diesel::QueryResult;

/// When a transaction takes the database's write lock, where the backend has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockWhen {
    /// At `BEGIN`: the store's own short read-then-write work waits for the lock
    /// up front instead of failing midway.
    AtBegin,
    /// At the first write: task code or an application that has not written yet does
    /// not hold up the queue.
    AtFirstWrite,
}

/// A wake-up a transaction sends, delivered only if it commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Announce<'a> {
    /// New or newly due work in this cluster.
    Work { cluster: &'a str },
    /// Task `id` has a new outcome (finished, failed, restarted): for whoever waits on
    /// it.
    Outcome { id: TaskId },
    /// As `Outcome`, when the statement that wrote the outcome also returned the task's
    /// `waited` flag: PostgreSQL then sends nothing unless someone waits, without a
    /// statement to look.
    OutcomeWaited { id: TaskId, waited: bool },
}

// Every implementation is used on concrete types (through `on_conn!`), so the futures'
// `Send` bounds are those of each implementation and need not be spelled here.
#[allow(async_fn_in_trait)]
/// What a backend's connection does its own way (see the module documentation).
pub(crate) trait Dialect {
    /// Opens a transaction that takes the write lock `when` says.
    async fn begin(&mut self, when: LockWhen) -> QueryResult<()>;

    /// Whether an outcome's UPDATE should return the task's `waited` flag for
    /// [`Announce::OutcomeWaited`]: worth a column where the flag saves a statement.
    fn outcome_returns_waited(&self) -> bool;

    /// Readies a connection for task code's SQL, and returns what stops a statement
    /// running on it. SQLite opens a deferred transaction (the write lock at the first
    /// write); PostgreSQL sends nothing yet: its BEGIN goes out with the first statement
    /// (see `pg_run_tx.rs`).
    async fn begin_for_task_sql(&mut self) -> QueryResult<SqlCanceller>;

    /// Inserts task rows (none with a unique key) and announces the clusters of those
    /// due by `now`, delivered when the transaction commits; their ids in input order.
    /// PostgreSQL does both in one statement (`schedule_alone.rs`).
    async fn insert_tasks(
        &mut self,
        pending: &mut Pending,
        rows: &[TaskInsert],
        now: Millis,
    ) -> QueryResult<Vec<TaskId>>;

    /// Inserts `row`, a task with a unique key, unless a task that counts as its
    /// duplicate exists (see `unique.rs`); its id, or `None`. PostgreSQL relies on the
    /// partial unique index (`ON CONFLICT DO NOTHING`); SQLite, whose writers take
    /// turns, looks for the duplicate in the same statement, under the write lock.
    async fn insert_unless_duplicate(&mut self, row: &TaskInsert) -> QueryResult<Option<TaskId>>;

    /// Inserts metadata rows (with as few statements as the backend allows).
    async fn insert_metadata(&mut self, rows: Vec<MetadataInsert>) -> QueryResult<()>;

    /// Takes up to `params.limit` due pending tasks of `params.clusters` under a lease,
    /// in queue order, outside any caller's transaction. Concurrent claimers, of this
    /// process or another, never receive the same task.
    async fn claim(&mut self, params: &ClaimParams<'_>) -> StoreResult<Vec<TaskRow>>;

    /// The tasks matching `filter` at `now`, newest first.
    async fn list_tasks(&mut self, filter: &TaskFilter, now: Millis) -> QueryResult<Vec<TaskRow>>;

    /// How many tasks match `filter` at `now` (its limit aside).
    async fn count_tasks(&mut self, filter: &TaskFilter, now: Millis) -> QueryResult<i64>;

    /// Up to `limit` of the tasks matching `filter` at `now`, newest first, as a bulk
    /// action reads them.
    async fn bulk_candidates(
        &mut self,
        filter: &TaskFilter,
        now: Millis,
        limit: i64,
    ) -> QueryResult<Vec<BulkCandidate>>;

    /// Sends `announce` with the open transaction's commit (PostgreSQL: a `NOTIFY`
    /// inside it), or queues it in `pending` for the store to deliver after the commit.
    async fn announce(&mut self, pending: &mut Pending, announce: Announce<'_>) -> QueryResult<()>;

    /// Runs one statement of task code inside the open transaction, after the
    /// backend's statement policy allowed it.
    async fn run_task_statement(
        &mut self,
        policy: &PgStatementPolicy,
        statement: &TaskStatement,
        canceller: Option<&SqlCanceller>,
    ) -> Result<Ran, TaskSqlError>;
}
