//! The durable task store: one interface over two backends, SQLite (the embedded
//! default) and PostgreSQL.
//!
//! Every SQL statement Warren runs lives under this module. The store runs typed
//! statements, one per operation, with parameter structs where they are wide; the
//! decisions that read, decide and write (the retry rule, lease recovery, next runs of
//! scheduled tags, the maintenance offset) live above it in `crate::executor`. It
//! implements the managed-task lifecycle and lease protocol of `docs/state-machine.md`:
//! scheduling inside a caller's transaction, claiming with leases and fencing tokens,
//! resolving inside the task's own transaction, waiting for outcomes, scheduled-task
//! state and the node registry.
//!
//! # What a backend provides
//!
//! A backend implements `Dialect` (`dialect.rs`) for its connection type (what it does
//! its own way: transactions and their locks, multi-row inserts, the claim, wake-ups,
//! task SQL, the listing; see `postgres_dialect.rs` and `sqlite_dialect.rs`), adds
//! that type to [`AnyConn`] and the pooled connection (`conn.rs`) and a pool with its
//! settings and embedded migrations (`migrations/<backend>/`, next to `postgres.rs`
//! and `sqlite.rs`), and passes the conformance suite (`tests/conformance/`), whose
//! every test body runs on each backend. Every other statement is written once with
//! diesel's DSL and runs on any backend through `on_conn!`.

/// Declares a PostgreSQL statement written as a query fragment of its own: its rows are
/// read by column name, and it has no static query id, so each connection's statement
/// cache keys it by its SQL text and prepares it once. (diesel prepares a `sql_query`
/// anew on every call: two round trips instead of one.)
macro_rules! pg_statement {
    ($name:ident<'_>) => {
        impl diesel::query_builder::QueryId for $name<'_> {
            type QueryId = ();
            const HAS_STATIC_QUERY_ID: bool = false;
        }
        impl diesel::query_builder::Query for $name<'_> {
            type SqlType = diesel::sql_types::Untyped;
        }
    };
    ($name:ident) => {
        impl diesel::query_builder::QueryId for $name {
            type QueryId = ();
            const HAS_STATIC_QUERY_ID: bool = false;
        }
        impl diesel::query_builder::Query for $name {
            type SqlType = diesel::sql_types::Untyped;
        }
    };
}
pub(crate) use pg_statement;

mod bulk;
pub(crate) mod claim;
mod completions;
mod conn;
mod dialect;
pub mod dynamic;
mod error;
mod flow;
#[cfg(target_os = "linux")]
mod folder_watch;
mod group_write;
mod live_tasks;
mod manage;
mod model;
mod next_due;
mod nodes;
mod pauses;
mod pg_policy;
mod pg_run_tx;
mod pg_statement_cache;
pub use pg_statement_cache::MAX_PREPARED_STATEMENTS;
mod postgres;
mod postgres_dialect;
mod progress;
mod progress_board;
mod rate_limit;
pub(crate) mod run;
mod run_group;
mod run_history;
mod schedule;
mod schedule_alone;
pub(crate) mod scheduled;
pub(crate) mod schema;
mod search;
pub mod signals;
mod sql_types;
mod sqlite;
mod sqlite_dialect;
mod sqlite_guard;
#[cfg(unix)]
mod sqlite_wake;
mod task_sql;
mod task_types;
mod thread_connections;
mod throughput;
mod transaction;
mod types_registry;
mod unique;
mod wait;

pub use bulk::{BulkAction, BulkOptions, BulkReport, DEFAULT_BULK_BATCH};
pub use claim::ExpiredLease;
pub use completions::CompletionStats;
pub use conn::{AnyConn, SqliteConn};
pub use diesel_async::AsyncPgConnection as PgConn;
pub use error::{ConnectError, MigrationError, StoreError};
pub use flow::{KeyLoad, KEYS_SHOWN};
pub use group_write::GroupStats;
pub use manage::DEFAULT_RETENTION_MS;
pub use model::*;
pub use nodes::NodeInfo;
pub use pauses::{ClusterInfo, Pause, PauseTarget, Pauses, TypeInfo, TypeKind};
pub use pg_policy::{PgStatementPolicy, Refusal, Verdict};
pub use progress::PROGRESS_WRITE_EVERY;
pub use rate_limit::PRUNE_BUCKETS_AFTER_MS;
pub use run::{
    bounded_text, Applied, Grouped, ResolveOutcome, TaskRun, MAX_ERROR_BYTES, MAX_RESULT_BYTES,
};
pub use run_group::{GroupBounds, GroupSlot, MemberOutcome, RunGroup};
pub use run_history::{
    RunLogLine, RunOutcome, RunRecord, KEPT_RUNS_PER_TASK, MAX_STORED_LOG_BYTES,
    MAX_STORED_LOG_LINES,
};
pub use schedule::json_kind;
pub use scheduled::{ScheduledEnd, ScheduledOutcome, ScheduledRun, ScheduledSpec, ScheduledState};
pub use search::{DataEquals, DataValue};
pub use task_sql::{
    SqlCanceller, TaskSqlError, TaskSqlOutput, TaskSqlWant, TaskStatement, DEFAULT_MAX_ROWS_BYTES,
};
pub use task_types::TypeRegistration;
pub use thread_connections::{PoolUse, ThreadConnections};
pub use throughput::ThroughputPoint;
pub use transaction::Transaction;
pub use types_registry::{TaskTypeCheck, NODE_LIVENESS_MS};
pub use unique::{
    debounced_next_attempt, period_start, Debounce, Scheduled, TaskUnique, Unique, UniqueError,
    UniquePart, UniqueParts, UniqueStates, MAX_UNIQUE_KEY_BYTES,
};
pub use wait::WaitFor;

use crate::clock::{SharedClock, SystemClock};
use conn::PooledConn;
use diesel_async::pooled_connection::deadpool::Pool;
use signals::Signals;
use std::sync::Arc;

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// A SQLite file (WAL mode, one writer at a time).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// Settings for opening a store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `sqlite://PATH`, `sqlite:PATH`, a plain file path, or `postgres://…`.
    pub url: String,
    /// Largest number of pooled connections.
    pub max_connections: usize,
    /// How long SQLite waits for the write lock before giving up (ms).
    pub sqlite_busy_timeout_ms: u64,
}

impl StoreConfig {
    /// Defaults for `url`: 16 connections on PostgreSQL, 8 on SQLite, 30 s busy timeout.
    pub fn new(url: impl Into<String>) -> StoreConfig {
        let url = url.into();
        let max_connections = if is_postgres_url(&url) { 16 } else { 8 };
        StoreConfig {
            url,
            max_connections,
            sqlite_busy_timeout_ms: 30_000,
        }
    }
}

/// The default database: the SQLite file `warren.db` in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://warren.db";

fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// A handle on the task store; cheap to clone and shared by every part of a node.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    clock: SharedClock,
    signals: Arc<Signals>,
    url: String,
    /// The cluster and concurrency rule of each registered task type (see
    /// `task_types.rs`), read at open.
    task_types: std::sync::RwLock<std::collections::HashMap<String, task_types::RegisteredType>>,
    /// When (the store's clock, ms) `task_types` was last read from the database.
    task_types_read_at: std::sync::atomic::AtomicI64,
    /// Completions waiting to share a statement (PostgreSQL; see `completions.rs`).
    completions: completions::CompletionQueue,
    /// Run records waiting to share a commit (see `run_history.rs`).
    run_records: run_history::RunRecordQueue,
    /// Verdicts on task SQL statements (PostgreSQL; see `pg_policy.rs`).
    policy: PgStatementPolicy,
    /// The progress of this node's runs (see `progress_board.rs`).
    progress: progress_board::ProgressBoard,
    /// The threads' pools made from this store, so that their idle connections can be
    /// closed when this store's own pool cannot open one (see `thread_connections.rs`).
    thread_pools: thread_connections::ThreadPools,
    /// Until when (the store's clock, ms) runs do not group, after a group of several
    /// runs failed to commit (see `run_group.rs`).
    groups_paused_until: std::sync::atomic::AtomicI64,
    /// Whether runs may group at all: PostgreSQL, with READ COMMITTED as the
    /// transactions' default isolation (see `run_group.rs`).
    groups_possible: std::sync::atomic::AtomicBool,
}

enum Backend {
    Postgres(Pool<PgConn>),
    Sqlite(Pool<SqliteConn>),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("url", &redact_url(&self.inner.url))
            .finish()
    }
}

/// The URL with any password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme_end + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl Store {
    /// Opens the database at `url` with default settings and the system clock, and brings
    /// its schema up to date.
    pub async fn open(url: &str) -> StoreResult<Store> {
        Store::open_with(StoreConfig::new(url), Arc::new(SystemClock)).await
    }

    /// Opens a database with explicit settings and clock, and runs pending migrations.
    pub async fn open_with(config: StoreConfig, clock: SharedClock) -> StoreResult<Store> {
        let backend = if is_postgres_url(&config.url) {
            postgres::migrate(&config.url).await?;
            Backend::Postgres(postgres::pool(&config)?)
        } else {
            let path = sqlite::path_from_url(&config.url)?;
            sqlite::migrate(&path).await?;
            Backend::Sqlite(sqlite::pool(&path, &config)?)
        };
        let signals = match &backend {
            Backend::Postgres(_) => Arc::new(Signals::default()),
            // Stores of one process on one file share their wake-ups.
            Backend::Sqlite(_) => signals::for_sqlite_file(&sqlite::path_from_url(&config.url)?),
        };
        let progress = progress_board::ProgressBoard::new(match &backend {
            Backend::Postgres(_) => progress_board::WriteWhen::WhileRunning,
            Backend::Sqlite(_) => progress_board::WriteWhen::AfterTheRun,
        });
        let store = Store {
            inner: Arc::new(Inner {
                progress,
                backend,
                clock,
                signals,
                url: config.url,
                task_types: Default::default(),
                task_types_read_at: Default::default(),
                completions: Default::default(),
                run_records: Default::default(),
                policy: Default::default(),
                thread_pools: Default::default(),
                groups_paused_until: Default::default(),
                groups_possible: Default::default(),
            }),
        };
        // Fail early, with the URL in the message, when the database cannot be reached.
        store.conn().await?;
        store.check_group_isolation().await?;
        store.load_task_types().await?;
        Ok(store)
    }

    /// Brings the schema at `url` up to date without opening a pool (`warren migrate`).
    /// Returns the versions that were applied.
    pub async fn migrate(url: &str) -> StoreResult<Vec<String>> {
        if is_postgres_url(url) {
            postgres::migrate(url).await
        } else {
            sqlite::migrate(&sqlite::path_from_url(url)?).await
        }
    }

    /// Stops this process from receiving SQLite wake-ups from other processes and
    /// removes its wake-up socket file, for a node that is shutting down: the socket
    /// otherwise goes only with the last store of the file in this process, which a
    /// process that exits does not wait for. Other processes' commits then no longer
    /// wake this one's queue or waiters at once (they still find work at their next
    /// recheck); this process's commits still wake the others. Nothing on PostgreSQL.
    pub fn close_wakeups(&self) {
        self.inner.signals.close_wakeups();
    }

    /// Which backend this store uses.
    pub fn backend(&self) -> BackendKind {
        match self.inner.backend {
            Backend::Postgres(_) => BackendKind::Postgres,
            Backend::Sqlite(_) => BackendKind::Sqlite,
        }
    }

    /// The clock this store reads the time from.
    pub fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }

    /// The current time according to the store's clock.
    pub fn now(&self) -> crate::task::Millis {
        self.inner.clock.now()
    }

    /// A pooled connection, for running an application's own transaction that schedules
    /// tasks with [`PooledConnection::schedule`].
    pub async fn connection(&self) -> StoreResult<PooledConnection> {
        Ok(PooledConnection {
            conn: self.conn().await?,
            store: self.clone(),
            pending: signals::Pending::default(),
            on_commit: Vec::new(),
        })
    }

    /// A connection from the pool, its errors naming the database.
    pub(crate) async fn conn(&self) -> StoreResult<PooledConn> {
        let map = |e: diesel_async::pooled_connection::deadpool::PoolError| StoreError::Pool {
            url: redact_url(&self.inner.url),
            source: e.into(),
        };
        Ok(match &self.inner.backend {
            Backend::Postgres(pool) => match pool.get().await {
                Ok(conn) => PooledConn::Postgres(conn),
                Err(e) => {
                    // The server may refuse new sessions because the threads' pools
                    // hold idle ones: give those back, so the next try gets one.
                    self.inner.thread_pools.close_idle();
                    return Err(map(e));
                }
            },
            Backend::Sqlite(pool) => PooledConn::Sqlite(pool.get().await.map_err(map)?),
        })
    }
}

/// A connection borrowed from the store's pool, for an application's own transaction:
/// [`PooledConnection::schedule`] schedules tasks in it, and [`PooledConnection::as_any`]
/// reaches the backend's diesel connection for the application's own queries.
pub struct PooledConnection {
    conn: PooledConn,
    store: Store,
    pending: signals::Pending,
    on_commit: Vec<tokio::sync::oneshot::Sender<bool>>,
}

/// Resolves to whether the transaction it was taken from committed (false on a
/// rollback, a failed commit, or a connection dropped mid-transaction). Work that
/// must only start once the caller's transaction is durable waits for it.
#[derive(Debug)]
pub struct CommitSignal(tokio::sync::oneshot::Receiver<bool>);

impl std::future::Future for CommitSignal {
    type Output = bool;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<bool> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|answer| answer.unwrap_or(false))
    }
}

impl PooledConnection {
    /// The connection in the form the store's functions take.
    pub fn as_any(&mut self) -> AnyConn<'_> {
        self.conn.any()
    }

    /// Opens a transaction (on SQLite a deferred one: it takes the write lock at its
    /// first write).
    pub async fn begin(&mut self) -> StoreResult<()> {
        Ok(conn::begin_deferred(&mut self.conn.any()).await?)
    }

    /// Schedules a managed task in the open transaction: it exists only if the
    /// transaction commits, and the queue is woken by the commit (on both backends).
    pub async fn schedule(&mut self, task: NewTask) -> StoreResult<crate::task::TaskId> {
        let ids = self.schedule_batch(std::slice::from_ref(&task)).await?;
        Ok(ids[0])
    }

    /// Schedules several managed tasks in the open transaction (see
    /// [`PooledConnection::schedule`]); returns their ids in input order.
    pub async fn schedule_batch(
        &mut self,
        tasks: &[NewTask],
    ) -> StoreResult<Vec<crate::task::TaskId>> {
        schedule::insert_tasks(&mut self.conn.any(), &mut self.pending, tasks, &self.store).await
    }

    /// A signal that resolves when the open transaction ends: true if it committed.
    pub fn after_commit(&mut self) -> CommitSignal {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.on_commit.push(tx);
        CommitSignal(rx)
    }

    fn ended(&mut self, committed: bool) {
        let pending = std::mem::take(&mut self.pending);
        if committed {
            pending.deliver(&self.store.inner.signals);
        }
        for signal in self.on_commit.drain(..) {
            let _ = signal.send(committed);
        }
    }

    /// Commits the transaction opened by [`PooledConnection::begin`].
    pub async fn commit(&mut self) -> StoreResult<()> {
        let result = conn::commit(&mut self.conn.any()).await;
        self.ended(result.is_ok());
        Ok(result?)
    }

    /// Rolls back the transaction opened by [`PooledConnection::begin`].
    pub async fn rollback(&mut self) -> StoreResult<()> {
        self.ended(false);
        Ok(conn::rollback(&mut self.conn.any()).await?)
    }
}
