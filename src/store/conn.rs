//! One connection type over both backends, and the transaction helpers the store uses.
//!
//! Queries are written once with diesel's DSL against the shared schema; the
//! [`on_conn!`] macro type-checks and runs such a query for whichever backend the
//! connection belongs to.

use super::dialect::{Dialect, LockWhen};
use super::sqlite_guard::SqliteGuard;
use diesel::SqliteConnection;
use diesel_async::pooled_connection::deadpool::Object;
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, TransactionManager};

/// The SQLite connection type: diesel's synchronous connection run on tokio's blocking
/// pool through [`DetachedBlocking`].
pub type SqliteConn = SyncConnectionWrapper<SqliteConnection, DetachedBlocking>;

/// Runs SQLite work on tokio's blocking pool. Unlike diesel-async's default, a caller
/// that stops waiting (a dropped future: a timeout, a stopping actor) does not block
/// until the work is done — which panics on a single-threaded runtime such as actix's.
/// The work still runs to its end on its blocking thread, holding the connection's lock.
///
/// One instance per connection counts the work in flight, so that the connection is
/// not handed to a new caller while abandoned work still holds it: diesel-async's
/// wrapper panics ("Cannot access shared transaction state") when its transaction
/// state is touched while such work runs. The pool's pre-recycle hook
/// ([`wait_for_abandoned_work`]) waits for it.
#[derive(Default)]
pub struct DetachedBlocking {
    in_flight: std::sync::Arc<InFlight>,
    /// The connection's guard (see `sqlite_guard.rs`), made current on the blocking
    /// thread while the connection's work runs there.
    guard: Option<std::sync::Arc<SqliteGuard>>,
}

impl DetachedBlocking {
    /// The runner of a connection that carries `guard`.
    pub(super) fn guarded(guard: std::sync::Arc<SqliteGuard>) -> DetachedBlocking {
        DetachedBlocking {
            in_flight: Default::default(),
            guard: Some(guard),
        }
    }
}

/// Work in flight on one connection.
#[derive(Default)]
struct InFlight {
    count: std::sync::atomic::AtomicUsize,
    idle: tokio::sync::Notify,
}

impl InFlight {
    async fn wait_idle(&self) {
        use std::sync::atomic::Ordering;
        loop {
            let idle = self.idle.notified();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }
}

// Why a thread-local: the pool's pre-recycle hook has only the connection wrapper,
// which does not expose its runner (`DetachedBlocking`), so the only way to tell the
// runner "this call is a probe" is a flag on the calling thread, set and cleared
// around the synchronous `spawn_blocking` call below (nothing else runs in between).
thread_local! {
    /// Set while the pre-recycle hook probes a connection: its no-op work only waits.
    static PROBING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl diesel_async::sync_connection_wrapper::SpawnBlocking for DetachedBlocking {
    fn spawn_blocking<'a, R>(
        &mut self,
        task: impl FnOnce() -> R + Send + 'static,
    ) -> futures_util::future::BoxFuture<
        'a,
        Result<R, Box<dyn std::error::Error + Send + Sync + 'static>>,
    >
    where
        R: Send + 'static,
    {
        use futures_util::FutureExt;
        use std::sync::atomic::Ordering;
        let in_flight = self.in_flight.clone();
        if PROBING.with(|p| p.get()) {
            // The probe's work is a no-op: drop it (and the connection handle it holds)
            // now, and answer once the work before it has finished.
            drop(task);
            return async move {
                in_flight.wait_idle().await;
                Err(Box::<dyn std::error::Error + Send + Sync>::from("probe"))
            }
            .boxed();
        }
        in_flight.count.fetch_add(1, Ordering::AcqRel);
        let guard = self.guard.clone();
        tokio::task::spawn_blocking(move || {
            // Calling the task consumes it: the connection handle it holds is released
            // before the work counts as done.
            let result = super::sqlite_guard::with_current(guard.as_ref(), task);
            if in_flight.count.fetch_sub(1, Ordering::AcqRel) == 1 {
                in_flight.idle.notify_waiters();
            }
            result
        })
        .map(|joined| joined.map_err(|e| Box::new(e) as Box<_>))
        .boxed()
    }

    fn get_runtime() -> DetachedBlocking {
        DetachedBlocking::default()
    }
}

/// Waits until no work abandoned by an earlier caller still runs on `conn` (see
/// [`DetachedBlocking`]); the pool calls it before handing the connection out again.
pub(super) async fn wait_for_abandoned_work(conn: &mut SqliteConn) {
    PROBING.with(|p| p.set(true));
    let probe = conn.spawn_blocking(|_| Ok(()));
    PROBING.with(|p| p.set(false));
    let _ = probe.await;
}

/// A borrowed connection to either backend. Functions that take an `AnyConn` run on
/// whatever transaction is open on it, so an application can schedule tasks as part
/// of its own transaction.
pub enum AnyConn<'a> {
    /// A PostgreSQL connection.
    Postgres(&'a mut AsyncPgConnection),
    /// A SQLite connection.
    Sqlite(&'a mut SqliteConn),
}

impl<'a> From<&'a mut AsyncPgConnection> for AnyConn<'a> {
    fn from(c: &'a mut AsyncPgConnection) -> AnyConn<'a> {
        AnyConn::Postgres(c)
    }
}

impl<'a> From<&'a mut SqliteConn> for AnyConn<'a> {
    fn from(c: &'a mut SqliteConn) -> AnyConn<'a> {
        AnyConn::Sqlite(c)
    }
}

/// Runs `$body` with `$c` bound to the concrete connection inside `$conn` (an `AnyConn`).
macro_rules! on_conn {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::store::AnyConn::Postgres(inner) => {
                let $c: &mut diesel_async::AsyncPgConnection = &mut **inner;
                $body
            }
            $crate::store::AnyConn::Sqlite(inner) => {
                let $c: &mut $crate::store::SqliteConn = &mut **inner;
                $body
            }
        }
    };
}
pub(crate) use on_conn;

/// A connection owned by the store's pool.
// Short-lived and moved rarely, so the size difference between backends is harmless.
#[allow(clippy::large_enum_variant)]
pub(crate) enum PooledConn {
    Postgres(Object<AsyncPgConnection>),
    Sqlite(Object<SqliteConn>),
}

impl PooledConn {
    pub(crate) fn any(&mut self) -> AnyConn<'_> {
        match self {
            PooledConn::Postgres(c) => AnyConn::Postgres(c),
            PooledConn::Sqlite(c) => AnyConn::Sqlite(c),
        }
    }

    /// Removes the connection from the pool and closes it, which rolls back whatever
    /// transaction it holds (and, on SQLite, releases the write lock at once).
    pub(crate) fn discard(self) {
        match self {
            PooledConn::Postgres(c) => drop(Object::take(c)),
            PooledConn::Sqlite(c) => drop(Object::take(c)),
        }
    }
}

/// Opens a transaction for the store's own short read-then-write work. On SQLite it
/// takes the write lock at once (`BEGIN IMMEDIATE`), so it waits for the lock instead
/// of failing midway.
pub(crate) async fn begin(conn: &mut AnyConn<'_>) -> diesel::QueryResult<()> {
    on_conn!(conn, c => Dialect::begin(c, LockWhen::AtBegin).await)
}

/// Opens a transaction for task code or an application. On SQLite it is deferred: it
/// takes the write lock only at its first write, so a long task that has not written
/// yet does not hold up the queue (cancels, claims, lease renewals).
pub(crate) async fn begin_deferred(conn: &mut AnyConn<'_>) -> diesel::QueryResult<()> {
    on_conn!(conn, c => Dialect::begin(c, LockWhen::AtFirstWrite).await)
}

/// Opens a deferred transaction (see [`begin_deferred`]) for work that runs task
/// code's SQL, and returns what stops a statement running on it.
pub(crate) async fn begin_for_task_sql(
    conn: &mut AnyConn<'_>,
) -> diesel::QueryResult<super::task_sql::SqlCanceller> {
    on_conn!(conn, c => Dialect::begin_for_task_sql(c).await)
}

/// Commits the transaction opened by [`begin`].
pub(crate) async fn commit(conn: &mut AnyConn<'_>) -> diesel::QueryResult<()> {
    on_conn!(conn, c => commit_on(c).await)
}

/// Rolls back the transaction opened by [`begin`].
pub(crate) async fn rollback(conn: &mut AnyConn<'_>) -> diesel::QueryResult<()> {
    on_conn!(conn, c => rollback_on(c).await)
}

async fn commit_on<C: AsyncConnection>(c: &mut C) -> diesel::QueryResult<()> {
    C::TransactionManager::commit_transaction(c).await
}

async fn rollback_on<C: AsyncConnection>(c: &mut C) -> diesel::QueryResult<()> {
    C::TransactionManager::rollback_transaction(c).await
}

/// Commits when `result` is `Ok`, rolls back otherwise, and passes `result` on.
pub(crate) async fn finish<T>(
    conn: &mut AnyConn<'_>,
    result: Result<T, super::StoreError>,
) -> Result<T, super::StoreError> {
    match result {
        Ok(value) => {
            commit(conn).await?;
            Ok(value)
        }
        Err(e) => {
            // The original error matters more than a failed rollback; a connection whose
            // rollback failed is discarded by the pool's recycle check.
            let _ = rollback(conn).await;
            Err(e)
        }
    }
}
