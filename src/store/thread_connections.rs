//! PostgreSQL connections driven by the thread that uses them: a runners' thread's, for
//! its runs' transactions, and the queue's thread's, for its claims.
//!
//! The store's pool opens every connection on the process's I/O runtime
//! (`postgres.rs`), so any thread may use any connection. That costs each statement of
//! a run two hand-offs between threads: the runner's thread wakes the I/O thread to
//! send it, and the I/O thread wakes the runner's thread with the answer. A run's
//! transaction is only ever used by its runner, on its runner's thread, so the runs of
//! one thread can take their connections from a pool of that thread's own, whose
//! sockets its runtime drives: the statement goes out and its answer comes in on the
//! runner's thread. (Issue 13 measured node CPU per writing task −12 to −18% and the
//! writing drain +11 to +18% from this.)
//!
//! Such a connection stalls while its thread runs guest code. Only the runs of that
//! thread use it, and they wait for the thread anyway: a guest yields to the others at
//! every host call that waits and every epoch tick.
//!
//! The pool holds at most one connection per runner placed on the thread (a run holds
//! one transaction at a time), on top of the store's own pool. The queue's thread has
//! such a pool too, for its claims (one connection per cluster): a claim is one round
//! trip on the path from a task's commit to its start, and between two short runs.
//!
//! A connection that cannot be opened here (the server's connection limit reached,
//! say) is taken from the store's pool instead, so a run is never refused for it. The
//! other way round, idle connections of these pools must not starve the store's own
//! pool (completions, lease renewals, heartbeats) when the server has no session left
//! to give: when the store's pool cannot open a connection, every thread's pool closes
//! its idle ones ([`ThreadPools::close_idle`]). The chaos harness's pool-exhaustion
//! scenario lost tasks without this: idle sessions of the runners' threads held the
//! slots the store's pool needed to renew leases.

use super::conn::PooledConn;
use super::postgres::{pool_driven_by, Driver};
use super::{Backend, Store, StoreResult};
use deadpool::managed::Timeouts;
use deadpool::managed::WeakPool;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::AsyncPgConnection;
use std::sync::{Arc, Mutex};

/// The threads' pools of one store, held weakly (a pool goes when its thread's users
/// drop it).
#[derive(Default)]
pub(super) struct ThreadPools {
    pools: Mutex<Vec<WeakPool<AsyncDieselConnectionManager<AsyncPgConnection>>>>,
}

impl ThreadPools {
    fn add(&self, pool: &Pool<AsyncPgConnection>) {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools.retain(|weak| weak.upgrade().is_some());
        pools.push(pool.weak());
    }

    /// Closes every idle connection of every thread's pool (those in use stay with
    /// their runs), giving their sessions back to the server.
    pub(super) fn close_idle(&self) {
        let pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        for pool in pools.iter().filter_map(WeakPool::upgrade) {
            let closed = pool.retain(|_, _| false).removed.len();
            if closed > 0 {
                tracing::debug!(closed, "idle connections of a thread's pool closed");
            }
        }
    }
}

/// The connections of one thread (PostgreSQL only): a runners' thread, or the queue's.
/// Cheap to clone; every runner of the thread holds a clone. Its connections must be
/// opened and used on the thread whose runtime drives them: runs take them through
/// [`Store::begin_run_on`], claims through [`Store::claim_on`].
#[derive(Clone)]
pub struct ThreadConnections {
    pool: Pool<AsyncPgConnection>,
    /// Users on the thread: the pool's bound.
    users: Arc<Mutex<usize>>,
}

impl std::fmt::Debug for ThreadConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.pool.status();
        f.debug_struct("ThreadConnections")
            .field("open", &status.size)
            .field("max", &status.max_size)
            .finish()
    }
}

/// How many connections a pool holds now, and the most it may hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PoolUse {
    /// Connections open now, idle or in use.
    pub open: usize,
    /// The most it may hold.
    pub max: usize,
}

impl std::ops::Add for PoolUse {
    type Output = PoolUse;
    fn add(self, other: PoolUse) -> PoolUse {
        PoolUse {
            open: self.open + other.open,
            max: self.max + other.max,
        }
    }
}

impl ThreadConnections {
    /// Makes room for one more user on the thread (a runner, or the claims of one of
    /// the queue's clusters): one more connection may be open.
    pub fn add_user(&self) {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        *users += 1;
        self.pool.resize(*users);
    }

    /// Connections open now (idle or in use).
    pub fn open(&self) -> usize {
        self.pool.status().size
    }

    /// The most connections the pool may hold: one per user on the thread.
    pub fn max(&self) -> usize {
        self.pool.status().max_size
    }

    /// Both counts at once.
    pub fn usage(&self) -> PoolUse {
        let status = self.pool.status();
        PoolUse {
            open: status.size,
            max: status.max_size,
        }
    }
}

impl Store {
    /// The store's own pool: connections open now, and its bound.
    pub fn pool_use(&self) -> PoolUse {
        let status = match &self.inner.backend {
            Backend::Postgres(pool) => pool.status(),
            Backend::Sqlite(pool) => pool.status(),
        };
        PoolUse {
            open: status.size,
            max: status.max_size,
        }
    }

    /// A pool for the runs of one runners' thread (or the claims of the queue's
    /// thread), empty and bounded by the users added to it; `None` on SQLite, whose
    /// connections run on tokio's blocking pool whatever thread uses them.
    pub fn thread_connections(&self) -> StoreResult<Option<ThreadConnections>> {
        match &self.inner.backend {
            Backend::Sqlite(_) => Ok(None),
            Backend::Postgres(_) => {
                let pool = pool_driven_by(self.inner.url.clone(), 0, Driver::Opener)?;
                self.inner.thread_pools.add(&pool);
                Ok(Some(ThreadConnections {
                    pool,
                    users: Arc::default(),
                }))
            }
        }
    }

    /// A connection for a run's transaction (or a claim): from `thread` when given and
    /// one is free there or can be opened, else from the store's pool. Never waits for
    /// one of `thread`'s to be given back: a run that finds them all taken (more runs
    /// at once than runners, which only a run abandoned mid-way can cause; more claims
    /// at once than clusters) uses the store's.
    pub(super) async fn run_conn(
        &self,
        thread: Option<&ThreadConnections>,
    ) -> StoreResult<PooledConn> {
        if let Some(thread) = thread {
            let no_wait = Timeouts {
                wait: Some(std::time::Duration::ZERO),
                ..Timeouts::default()
            };
            match thread.pool.timeout_get(&no_wait).await {
                Ok(conn) => return Ok(PooledConn::Postgres(conn)),
                Err(e) => tracing::debug!(
                    error = %e,
                    "no connection of the runners' thread could be opened; using the store's pool"
                ),
            }
        }
        self.conn().await
    }
}
