//! Errors of the store, each naming the task, tag or setting it is about.

use crate::task::{LeaseToken, TaskId, TaskState};

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A query failed.
    #[error("database error: {0}")]
    Database(#[from] diesel::result::Error),
    /// No connection could be had.
    #[error("cannot get a database connection to {url}: {source}")]
    Pool {
        /// The database URL, password removed.
        url: String,
        /// What the pool (or the notification listener's connection) said.
        #[source]
        source: ConnectError,
    },
    /// The URL is of no supported kind.
    #[error("unsupported database URL '{0}': use sqlite://PATH (or a file path) or postgres://USER@HOST/DB")]
    BadUrl(String),
    /// Bringing the schema up to date failed.
    #[error("migrating {url} failed: {source}")]
    Migration {
        /// The database URL, password removed.
        url: String,
        /// What failed.
        #[source]
        source: MigrationError,
    },
    /// No task has this id.
    #[error("task {0} does not exist")]
    NotFound(TaskId),
    /// The task's lease was lost: it was cancelled, or its lease expired and another
    /// runner claimed it. Nothing the run did was committed.
    #[error("task {id}: lease token {token} is no longer valid (the task was cancelled, or its lease expired and it was claimed again); the run's changes were rolled back")]
    LeaseLost {
        /// The task.
        id: TaskId,
        /// The stale fencing token.
        token: LeaseToken,
    },
    /// The operation does not apply to a task in this state.
    #[error("task {id} is {state}: cannot {action}")]
    WrongState {
        /// The task.
        id: TaskId,
        /// Its current state.
        state: TaskState,
        /// What was asked.
        action: &'static str,
    },
    /// Queuing the task again would give its type two tasks with one unique key that
    /// both count as duplicates.
    #[error("task {id} cannot be queued again: task {existing} of the same type has its unique key '{key}' and is {state}")]
    UniqueConflict {
        /// The task that was to be queued again.
        id: TaskId,
        /// The task that holds the key.
        existing: TaskId,
        /// The unique key.
        key: String,
        /// The state of the task that holds it.
        state: TaskState,
    },
    /// Concurrent writers kept changing what this operation depends on; trying again
    /// later should succeed.
    #[error("{what}; try again")]
    Contended {
        /// What kept changing.
        what: String,
    },
    /// An argument is invalid.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// Which argument.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// No scheduled task has this tag.
    #[error("scheduled task '{0}' does not exist")]
    UnknownScheduled(String),
    /// A stored value could not be read back (a corrupt or foreign row).
    #[error("task {id}: stored {field} is unreadable: {message}")]
    Corrupt {
        /// The task.
        id: TaskId,
        /// The column.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// The run completed in a run group (runs of one runner sharing a transaction,
    /// see `run_group.rs`) whose commit failed: nothing of the run committed, and the
    /// task was given back to the queue (or its lease expires) to run again.
    #[error("task {id}: the commit its run shared with others of its runner failed, so nothing of the run committed; the task runs again: {cause}")]
    GroupNotCommitted {
        /// The task.
        id: TaskId,
        /// Why the group did not commit (shared by every run of the group).
        #[source]
        cause: std::sync::Arc<StoreError>,
    },
    /// The transaction the run shared with others of its runner (a run group) ended
    /// without a known outcome (`cause`: a later run's SQL ended it, or its commit
    /// failed), and the task no longer runs under the run's lease: its completion
    /// committed after all, or the task was cancelled or taken over meanwhile. The
    /// task's row says which.
    #[error("task {id}: the transaction its run shared with others of its runner ended without a known outcome, and the task no longer runs under the run's lease (its completion committed, or it was cancelled or taken over): {cause}")]
    GroupInDoubt {
        /// The task.
        id: TaskId,
        /// How the shared transaction ended.
        #[source]
        cause: std::sync::Arc<StoreError>,
    },
    /// The runner holding the task's run group stopped before the group committed:
    /// nothing of the run committed, and the task was given back to the queue (or its
    /// lease expires).
    #[error("task {id}: the runner stopped before the commit its run shared with others; nothing of the run committed, and the task runs again")]
    GroupAbandoned {
        /// The task.
        id: TaskId,
    },
    /// Task code's SQL was refused or failed.
    #[error("task SQL: {0}")]
    TaskSql(#[source] super::task_sql::TaskSqlError),
    /// Waiting for a task's outcome took longer than allowed.
    #[error("task {id} has no outcome after waiting {waited_ms} ms")]
    WaitTimeout {
        /// The task.
        id: TaskId,
        /// How long was waited.
        waited_ms: u64,
    },
}

/// Why no database connection could be had (the cause of [`StoreError::Pool`]).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The pool could not hand out a connection (the server is unreachable, refused
    /// the login, or the pool timed out).
    #[error(transparent)]
    Get(#[from] diesel_async::pooled_connection::deadpool::PoolError),
    /// The pool could not be built from the settings.
    #[error(transparent)]
    Build(#[from] diesel_async::pooled_connection::deadpool::BuildError),
    /// The notification listener's own connection could not be opened.
    #[error(transparent)]
    Connect(#[from] diesel::ConnectionError),
    /// The notification listener's `LISTEN` failed.
    #[error(transparent)]
    Listen(#[from] diesel::result::Error),
    /// The notification listener stopped before it was listening.
    #[error("the notification listener stopped")]
    ListenerStopped,
}

/// Why bringing the schema up to date failed (the cause of [`StoreError::Migration`]).
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// The database could not be opened or configured.
    #[error(transparent)]
    Connect(#[from] diesel::ConnectionError),
    /// A migration failed.
    #[error("{0}")]
    Migrate(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The migration thread stopped (it panicked or was cancelled).
    #[error(transparent)]
    Thread(#[from] tokio::task::JoinError),
}
