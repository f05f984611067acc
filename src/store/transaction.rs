//! A transaction on a connection of its own, for work that must commit or roll back
//! as one: an ephemeral task's SQL, or a managed task's run (see [`super::TaskRun`]).

use super::conn::{begin_deferred, commit, finish, rollback, PooledConn};
use super::signals::Pending;
use super::{AnyConn, NewTask, Store, StoreError, StoreResult};
use crate::task::TaskId;

/// An open transaction. Dropping it without [`Transaction::commit`] closes its
/// connection, which rolls everything back.
pub struct Transaction {
    store: Store,
    conn: Option<PooledConn>,
    pending: Pending,
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
    /// Opens a transaction on a connection of its own (deferred on SQLite: it takes the
    /// write lock at its first write).
    pub async fn begin_transaction(&self) -> StoreResult<Transaction> {
        let mut pooled = self.conn().await?;
        begin_deferred(&mut pooled.any()).await?;
        Ok(Transaction {
            store: self.clone(),
            conn: Some(pooled),
            pending: Pending::default(),
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
        let mut pooled = self.conn.take().expect("open transaction");
        match commit(&mut pooled.any()).await {
            Ok(()) => {
                std::mem::take(&mut self.pending).deliver(&self.store.inner.signals);
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
            if let Err(e) = rollback(&mut pooled.any()).await {
                pooled.discard();
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Runs `body` as the transaction's last work, then commits; when `body` fails,
    /// rolls back instead and passes its error on. Wake-ups go out after the commit.
    pub(super) async fn commit_with<R>(
        mut self,
        body: impl AsyncFnOnce(&mut AnyConn<'_>, &mut Pending) -> Result<R, StoreError>,
    ) -> StoreResult<R> {
        let mut pending = std::mem::take(&mut self.pending);
        let mut pooled = self.conn.take().expect("open transaction");
        let mut conn = pooled.any();
        let result = body(&mut conn, &mut pending).await;
        match finish(&mut conn, result).await {
            Ok(value) => {
                pending.deliver(&self.store.inner.signals);
                Ok(value)
            }
            Err(e) => {
                pooled.discard();
                Err(e)
            }
        }
    }
}
