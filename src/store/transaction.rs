//! A transaction on a connection of its own, for work that must commit or roll back
//! as one: an ephemeral task's SQL, or a managed task's run (see [`super::TaskRun`]).

use super::conn::{begin, begin_for_task_sql, commit, finish, rollback, PooledConn};
use super::signals::Pending;
use super::task_sql::{SqlCanceller, TaskSqlError, TaskSqlOutput, TaskStatement};
use super::{AnyConn, NewTask, Store, StoreError, StoreResult};
use crate::task::TaskId;

/// An open transaction. Dropping it without [`Transaction::commit`] closes its
/// connection, which rolls everything back.
///
/// Task code's SQL goes through [`Transaction::task_sql`], which applies the
/// statement policy. A connection whose session task SQL changed, whose statement was
/// cancelled, or whose transaction task code ended is closed when the transaction
/// ends, never handed to the next user.
pub struct Transaction {
    store: Store,
    conn: Option<PooledConn>,
    pending: Pending,
    canceller: SqlCanceller,
    /// Task SQL left state on the session that outlives the transaction.
    tainted: bool,
    /// Task SQL ended the transaction; nothing more may run or commit on it.
    ended: bool,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("open", &self.conn.is_some())
            .finish()
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.discard();
        }
    }
}

impl Store {
    /// Runs `body` in a short transaction of the store's own (on SQLite an immediate
    /// one, holding the write lock from the start) and delivers its wake-ups after the
    /// commit; rolls back when `body` fails. Every read-then-write sequence of the store
    /// and the executor goes through here.
    pub(crate) async fn in_transaction<R>(
        &self,
        body: impl AsyncFnOnce(&mut AnyConn<'_>, &mut Pending) -> StoreResult<R>,
    ) -> StoreResult<R> {
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        let mut pending = Pending::default();
        begin(&mut conn).await?;
        let result = body(&mut conn, &mut pending).await;
        let value = finish(&mut conn, result).await?;
        pending.deliver(&self.inner.signals);
        Ok(value)
    }

    /// Opens a transaction on a connection of its own (deferred on SQLite: it takes the
    /// write lock at its first write).
    pub async fn begin_transaction(&self) -> StoreResult<Transaction> {
        let mut pooled = self.conn().await?;
        let canceller = begin_for_task_sql(&mut pooled.any()).await?;
        Ok(Transaction {
            store: self.clone(),
            conn: Some(pooled),
            pending: Pending::default(),
            canceller,
            tainted: false,
            ended: false,
        })
    }
}

impl Transaction {
    /// The store this transaction belongs to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The connection carrying the transaction.
    pub fn conn(&mut self) -> AnyConn<'_> {
        self.conn
            .as_mut()
            .expect("a transaction keeps its connection until it ends")
            .any()
    }

    /// Runs one statement of task code on this transaction, after the statement
    /// policy allowed it. A kill or timeout stops it through [`Transaction::canceller`].
    pub async fn task_sql(
        &mut self,
        statement: &TaskStatement,
    ) -> Result<TaskSqlOutput, TaskSqlError> {
        if self.ended {
            return Err(TaskSqlError::TransactionEnded);
        }
        let conn = self.conn.as_mut().expect("open transaction");
        let result = super::task_sql::run(
            &mut conn.any(),
            &self.store.inner.policy,
            statement,
            Some(&self.canceller),
        )
        .await;
        match result {
            Ok(ran) => {
                self.tainted |= ran.taints_session;
                Ok(ran.output)
            }
            Err(TaskSqlError::TransactionEnded) => {
                self.ended = true;
                Err(TaskSqlError::TransactionEnded)
            }
            Err(e) => Err(e),
        }
    }

    /// What stops the task statement running on this transaction, from any thread.
    pub fn canceller(&self) -> SqlCanceller {
        self.canceller.clone()
    }

    /// Whether task code ended this transaction (see [`TaskSqlError::TransactionEnded`]).
    pub fn task_ended_it(&self) -> bool {
        self.ended
    }

    /// Whether the connection must be closed rather than reused when this ends.
    fn must_close(&self) -> bool {
        self.tainted || self.ended || self.canceller.was_sent()
    }

    /// Hands the connection back to the pool, or closes it when task SQL left it
    /// unfit for the next user.
    fn release(&self, pooled: PooledConn) {
        if self.must_close() {
            pooled.discard();
        } else {
            drop(pooled);
        }
    }

    /// Schedules a managed task in this transaction: it exists only if it commits.
    pub async fn schedule(&mut self, task: NewTask) -> StoreResult<TaskId> {
        let conn = self.conn.as_mut().expect("open transaction");
        let ids = super::schedule::insert_tasks(
            &mut conn.any(),
            &mut self.pending,
            std::slice::from_ref(&task),
            &self.store,
        )
        .await?;
        Ok(ids[0])
    }

    /// Commits, then wakes whoever waits for what it scheduled or resolved.
    pub async fn commit(mut self) -> StoreResult<()> {
        if self.ended {
            return Err(StoreError::TaskSql(TaskSqlError::TransactionEnded));
        }
        let mut pooled = self.conn.take().expect("open transaction");
        match commit(&mut pooled.any()).await {
            Ok(()) => {
                std::mem::take(&mut self.pending).deliver(&self.store.inner.signals);
                self.release(pooled);
                Ok(())
            }
            Err(e) => {
                pooled.discard();
                Err(e.into())
            }
        }
    }

    /// Rolls back everything done in the transaction.
    pub async fn rollback(mut self) -> StoreResult<()> {
        if let Some(mut pooled) = self.conn.take() {
            if self.ended {
                pooled.discard();
                return Ok(());
            }
            if let Err(e) = rollback(&mut pooled.any()).await {
                pooled.discard();
                return Err(e.into());
            }
            self.release(pooled);
        }
        Ok(())
    }

    /// Runs `body` as the transaction's last work, then commits; when `body` fails,
    /// rolls back instead and passes its error on. Wake-ups go out after the commit.
    pub(super) async fn commit_with<R>(
        mut self,
        body: impl AsyncFnOnce(&mut AnyConn<'_>, &mut Pending) -> Result<R, StoreError>,
    ) -> StoreResult<R> {
        if self.ended {
            return Err(StoreError::TaskSql(TaskSqlError::TransactionEnded));
        }
        let mut pending = std::mem::take(&mut self.pending);
        let mut pooled = self.conn.take().expect("open transaction");
        let mut conn = pooled.any();
        let result = body(&mut conn, &mut pending).await;
        match finish(&mut conn, result).await {
            Ok(value) => {
                pending.deliver(&self.store.inner.signals);
                self.release(pooled);
                Ok(value)
            }
            Err(e) => {
                pooled.discard();
                Err(e)
            }
        }
    }
}
