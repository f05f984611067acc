//! A transaction on a connection of its own, for work that must commit or roll back
//! as one: an ephemeral task's SQL, or a managed task's run (see [`super::TaskRun`]).

use super::conn::{begin, begin_for_task_sql, commit, finish, rollback, PooledConn};
use super::pg_run_tx::{self, CommitEnd, DeferredCompletion, HeldEnd, RunCompletion, RunTx};
use super::signals::Pending;
use super::task_sql::{SqlCanceller, TaskSqlError, TaskSqlOutput, TaskStatement};
use super::{AnyConn, NewTask, Store, StoreError, StoreResult};
use crate::task::TaskId;

/// An open transaction. Dropping it without [`Transaction::commit`] closes its
/// connection, which rolls everything back (one on which nothing was sent yet goes
/// back to the pool).
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
    /// Undoing or keeping a grouped run's savepoint failed: the transaction may be in
    /// error, and must not commit.
    broken: bool,
    /// The current run left state in the transaction that a later run sharing it
    /// would see, or had a statement fail (a lock wait that ended in a deadlock, say):
    /// no later run joins it (see `run_group.rs`).
    closes_group: bool,
    /// Where the transaction stands on PostgreSQL (SQLite's opens at once, so this
    /// stays at its default there).
    pg: RunTx,
    /// Completions of a group's runs held until the group commits (see
    /// `pg_run_tx.rs`): the commit writes them first.
    held: Vec<DeferredCompletion>,
    /// Held completions written inside the current run's savepoint (by
    /// [`Transaction::conn`] or [`Transaction::schedule`]): held again if that run is
    /// undone, which undoes their write with it.
    written_in_run: Vec<DeferredCompletion>,
    /// A held completion found its run's lease lost: nothing of the group may commit,
    /// and the group's commit says which run it was.
    lost_lease: Option<(TaskId, crate::task::LeaseToken)>,
}

/// How [`Transaction::complete_and_commit`] ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CompletedEnd {
    /// The completion committed with the run's work.
    Committed,
    /// The run lost its lease; nothing committed.
    LeaseLost,
    /// Task code had ended the transaction; the completion was not written.
    TransactionEnded,
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
            // A PostgreSQL connection on which no BEGIN went out, fit for the next
            // user, goes back to the pool; any other is closed, which rolls back.
            let untouched = matches!(conn, PooledConn::Postgres(_))
                && !self.pg.maybe_open
                && !self.must_close();
            if !untouched {
                conn.discard();
            }
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
        self.begin_transaction_on(None).await
    }

    /// [`Store::begin_transaction`] on a connection of `thread` when given (see
    /// [`super::ThreadConnections`]); the transaction must then be used on that thread.
    pub async fn begin_transaction_on(
        &self,
        thread: Option<&super::ThreadConnections>,
    ) -> StoreResult<Transaction> {
        let mut pooled = self.run_conn(thread).await?;
        let canceller = begin_for_task_sql(&mut pooled.any()).await?;
        Ok(Transaction {
            store: self.clone(),
            conn: Some(pooled),
            pending: Pending::default(),
            canceller,
            tainted: false,
            ended: false,
            broken: false,
            closes_group: false,
            pg: RunTx::default(),
            held: Vec::new(),
            written_in_run: Vec::new(),
            lost_lease: None,
        })
    }
}

impl Transaction {
    /// The store this transaction belongs to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The connection carrying the transaction, opened by now, for SQL the statement
    /// policy does not see (an embedding application's own task code). Such SQL could
    /// leave state in the transaction or end it, so no later run of a group joins it,
    /// and the completions of the group's earlier runs are written first: whatever it
    /// commits holds each run's completion with its work.
    pub async fn conn(&mut self) -> StoreResult<AnyConn<'_>> {
        self.closes_group = true;
        self.write_held().await?;
        self.work_conn().await
    }

    /// Writes the held completions of the group's earlier runs into the transaction,
    /// before work that must see them written or could end the transaction.
    async fn write_held(&mut self) -> StoreResult<()> {
        if self.held.is_empty() {
            return Ok(());
        }
        self.check_usable()?;
        let Some(PooledConn::Postgres(c)) = self.conn.as_mut() else {
            unreachable!("only PostgreSQL transactions hold completions");
        };
        match pg_run_tx::complete_runs(c, &self.held, false).await {
            Ok(HeldEnd::Written) => {
                let written = std::mem::take(&mut self.held);
                if self.pg.holds_run_work() {
                    // In the current run's savepoint: undone with the run.
                    self.written_in_run.extend(written);
                }
                Ok(())
            }
            Ok(HeldEnd::TransactionEnded) => {
                self.ended = true;
                Err(ended())
            }
            Ok(HeldEnd::LeaseLost(id)) => {
                // The transaction is in error: the group cannot commit.
                self.broken = true;
                let lost = self.lease_lost(id);
                if let StoreError::LeaseLost { id, token } = lost {
                    self.lost_lease = Some((id, token));
                }
                Err(lost)
            }
            Err(e) => {
                self.broken = true;
                Err(e.into())
            }
        }
    }

    /// The lost lease of the held completion of task `id`.
    fn lease_lost(&self, id: TaskId) -> StoreError {
        let token = self.held.iter().find(|h| h.id == id).map(|h| h.token);
        StoreError::LeaseLost {
            id,
            token: token.unwrap_or(crate::task::LeaseToken(0)),
        }
    }

    /// Fails unless the transaction can still take work and commit.
    fn check_usable(&self) -> StoreResult<()> {
        if let Some((id, token)) = self.lost_lease {
            return Err(StoreError::LeaseLost { id, token });
        }
        if self.ended {
            return Err(ended());
        }
        if self.broken {
            return Err(StoreError::TaskSql(TaskSqlError::Database(
                diesel::result::Error::BrokenTransactionManager,
            )));
        }
        Ok(())
    }

    /// The connection carrying the transaction, opened by now, for the store's own
    /// statements.
    pub(super) async fn work_conn(&mut self) -> StoreResult<AnyConn<'_>> {
        let pooled = self
            .conn
            .as_mut()
            .expect("a transaction keeps its connection until it ends");
        if let PooledConn::Postgres(c) = pooled {
            self.pg.begin(c).await?;
        }
        Ok(pooled.any())
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
        let policy = &self.store.inner.policy;
        let result = match self.conn.as_mut().expect("open transaction") {
            PooledConn::Postgres(c) => {
                pg_run_tx::run_statement(c, &mut self.pg, policy, statement, &self.canceller).await
            }
            conn => {
                super::task_sql::run(&mut conn.any(), policy, statement, Some(&self.canceller))
                    .await
            }
        };
        match result {
            Ok(ran) => {
                self.tainted |= ran.taints_session;
                self.closes_group |= ran.binds_transaction;
                Ok(ran.output)
            }
            Err(TaskSqlError::TransactionEnded) => {
                self.ended = true;
                Err(TaskSqlError::TransactionEnded)
            }
            Err(e) => {
                self.closes_group = true;
                Err(e)
            }
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
        self.tainted
            || self.ended
            || self.canceller.was_sent()
            || self.pg.prepared_failed
            || self.pg.maybe_open
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
    ///
    /// The held completions of a group's earlier runs are written first, so that
    /// scheduling sees those tasks completed, as it would after their own commits (a
    /// unique key counts a task by its state).
    pub async fn schedule(&mut self, task: NewTask) -> StoreResult<TaskId> {
        self.write_held().await?;
        let mut pending = std::mem::take(&mut self.pending);
        let store = self.store.clone();
        let ids = super::schedule::insert_tasks(
            &mut self.work_conn().await?,
            &mut pending,
            std::slice::from_ref(&task),
            &store,
        )
        .await;
        self.pending = pending;
        Ok(ids?[0])
    }

    /// Commits, then wakes whoever waits for what it scheduled or resolved.
    /// A group's transaction writes its runs' held completions with the commit, in
    /// one message; [`StoreError::LeaseLost`] names a run that no longer held its task
    /// (nothing committed then).
    pub async fn commit(mut self) -> StoreResult<()> {
        self.check_usable()?;
        let mut pooled = self.conn.take().expect("open transaction");
        let committed = match &mut pooled {
            PooledConn::Postgres(c) if !self.held.is_empty() => {
                match pg_run_tx::complete_runs(c, &self.held, true).await {
                    Ok(HeldEnd::Written) => {
                        self.pg.closed(c);
                        Ok(())
                    }
                    Ok(HeldEnd::LeaseLost(id)) => Err(self.lease_lost(id)),
                    Ok(HeldEnd::TransactionEnded) => {
                        self.ended = true;
                        Err(ended())
                    }
                    Err(e) => Err(e.into()),
                }
            }
            PooledConn::Postgres(_) if !self.pg.begun => Ok(()),
            PooledConn::Postgres(c) => match pg_run_tx::commit(c).await {
                Ok(CommitEnd::Committed) => {
                    self.pg.closed(c);
                    Ok(())
                }
                Ok(_) => {
                    self.ended = true;
                    Err(ended())
                }
                Err(e) => Err(e.into()),
            },
            conn => commit(&mut conn.any()).await.map_err(Into::into),
        };
        match committed {
            Ok(()) => {
                std::mem::take(&mut self.pending).deliver(&self.store.inner.signals);
                self.release(pooled);
                Ok(())
            }
            Err(e) => {
                pooled.discard();
                Err(e)
            }
        }
    }

    /// Rolls back everything done in the transaction. Fails with
    /// [`TaskSqlError::TransactionEnded`] when task SQL had ended it (what it did may
    /// then have committed).
    pub async fn rollback(mut self) -> StoreResult<()> {
        let Some(mut pooled) = self.conn.take() else {
            return Ok(());
        };
        if self.ended {
            pooled.discard();
            return Err(ended());
        }
        let rolled_back = match &mut pooled {
            PooledConn::Postgres(_) if !self.pg.begun => Ok(()),
            // Whether the last statement ended the transaction is still to be found.
            PooledConn::Postgres(c) => match self.pg.check_open(c).await {
                Err(TaskSqlError::TransactionEnded) => {
                    self.ended = true;
                    Err(ended())
                }
                // Open, though perhaps in error: roll it back.
                _ => match pg_run_tx::rollback(c).await {
                    Ok(()) => {
                        self.pg.closed(c);
                        Ok(())
                    }
                    Err(e) => Err(e.into()),
                },
            },
            conn => rollback(&mut conn.any()).await.map_err(Into::into),
        };
        match rolled_back {
            Ok(()) => {
                self.release(pooled);
                Ok(())
            }
            Err(e) => {
                pooled.discard();
                Err(e)
            }
        }
    }

    /// Completes a managed task's run (fenced by its token) and commits it with the
    /// run's work, in one round trip on PostgreSQL (see `pg_run_tx.rs`). Only for a
    /// PostgreSQL transaction that task SQL opened.
    pub(super) async fn complete_and_commit(
        mut self,
        completion: RunCompletion<'_>,
    ) -> StoreResult<CompletedEnd> {
        debug_assert!(
            self.held.is_empty(),
            "a lone run's transaction holds no other run"
        );
        let mut pooled = self.conn.take().expect("open transaction");
        let PooledConn::Postgres(c) = &mut pooled else {
            unreachable!("only PostgreSQL transactions complete in one message");
        };
        match pg_run_tx::complete_and_commit(c, completion).await {
            Ok(CommitEnd::Committed) => {
                self.pg.closed(c);
                std::mem::take(&mut self.pending).deliver(&self.store.inner.signals);
                self.release(pooled);
                Ok(CompletedEnd::Committed)
            }
            Ok(end) => {
                pooled.discard();
                Ok(match end {
                    CommitEnd::LeaseLost => CompletedEnd::LeaseLost,
                    _ => CompletedEnd::TransactionEnded,
                })
            }
            Err(e) => {
                pooled.discard();
                Err(e.into())
            }
        }
    }

    /// Makes this open transaction carry the next run of its run group: that run's
    /// work goes in a savepoint of its own (see `run_group.rs`).
    pub(super) fn join_group(&mut self) {
        self.pg.join_group();
        self.closes_group = false;
    }

    /// Whether a later run may join this transaction once the current run completed
    /// in it: nothing of the current run would reach the next (no session or
    /// transaction state it left, no cancel that could still land, no statement that
    /// failed), and the connection is fit to go on.
    pub(super) fn fit_for_next_run(&self) -> bool {
        !self.tainted
            && !self.closes_group
            && !self.canceller.was_sent()
            && !self.pg.prepared_failed
            && self.can_go_on()
    }

    /// Whether the transaction carries earlier runs of a group.
    pub(super) fn in_group(&self) -> bool {
        self.pg.in_group
    }

    /// Whether the current run did work in the transaction (on PostgreSQL: opened
    /// it, or, in a group, set its savepoint).
    pub(super) fn holds_run_work(&self) -> bool {
        matches!(self.conn, Some(PooledConn::Sqlite(_))) || self.pg.holds_run_work()
    }

    /// Completes the current run (fenced by its token) without committing, leaving the
    /// transaction open for the next run of its group (see
    /// [`pg_run_tx::complete_in_group`]). On [`CompletedEnd::LeaseLost`] the
    /// transaction is in error: undo the run with [`Transaction::undo_member`] when it
    /// is in a group; roll it back otherwise. On an error, drop it.
    pub(super) async fn complete_in_group(
        &mut self,
        completion: RunCompletion<'_>,
    ) -> StoreResult<CompletedEnd> {
        let Some(PooledConn::Postgres(c)) = self.conn.as_mut() else {
            unreachable!("only PostgreSQL transactions group runs");
        };
        match pg_run_tx::complete_in_group(c, &mut self.pg, completion).await? {
            CommitEnd::Committed => {
                self.written_in_run.clear();
                Ok(CompletedEnd::Committed)
            }
            CommitEnd::LeaseLost => Ok(CompletedEnd::LeaseLost),
            CommitEnd::TransactionEnded => {
                self.ended = true;
                Ok(CompletedEnd::TransactionEnded)
            }
        }
    }

    /// Holds the current run's completion until the group commits (see
    /// `pg_run_tx.rs`): nothing is sent now, and the transaction is ready for the
    /// next run. Only for a transaction fit for a next run
    /// ([`Transaction::fit_for_next_run`]), whose task SQL could not have ended it.
    pub(super) fn hold_completion(&mut self, completion: RunCompletion<'_>) {
        debug_assert!(self.fit_for_next_run());
        self.held.push(completion.into());
        self.written_in_run.clear();
        self.pg.hold_completion();
        self.closes_group = false;
    }

    /// Undoes everything the current run of a group did, keeping the earlier runs'
    /// work. Fails with [`TaskSqlError::TransactionEnded`] when task SQL had ended the
    /// transaction.
    pub(super) async fn undo_member(&mut self) -> StoreResult<()> {
        if self.ended {
            return Err(ended());
        }
        let Some(PooledConn::Postgres(c)) = self.conn.as_mut() else {
            unreachable!("only PostgreSQL transactions group runs");
        };
        match pg_run_tx::undo_member(c, &mut self.pg).await {
            Ok(()) => {
                // Held completions written in the run's savepoint went with it.
                self.held.append(&mut self.written_in_run);
                Ok(())
            }
            Err(TaskSqlError::TransactionEnded) => {
                self.ended = true;
                Err(ended())
            }
            Err(e) => {
                self.broken = true;
                Err(StoreError::TaskSql(e))
            }
        }
    }

    /// Whether the transaction can still take work and commit: task SQL did not end
    /// it, and no grouped run's savepoint failed to be undone or kept.
    pub(super) fn can_go_on(&self) -> bool {
        !self.ended && !self.broken
    }

    /// Runs `body` as the current run's last work in its group's transaction, in the
    /// run's savepoint: kept when `body` succeeds, undone when it fails (the earlier
    /// runs' work stays). The transaction stays open for the group's commit.
    pub(super) async fn write_in_member<R>(
        &mut self,
        body: impl AsyncFnOnce(&mut AnyConn<'_>, &mut Pending) -> Result<R, StoreError>,
    ) -> StoreResult<R> {
        if self.ended {
            return Err(ended());
        }
        // Task SQL may have ended the transaction with its last statement: what follows
        // would then run on its own and commit.
        if let Some(PooledConn::Postgres(c)) = self.conn.as_mut() {
            if self.pg.begun {
                match self.pg.check_open(c).await {
                    Ok(()) => {}
                    Err(TaskSqlError::TransactionEnded) => {
                        self.ended = true;
                        return Err(ended());
                    }
                    Err(e) => return Err(StoreError::TaskSql(e)),
                }
            }
        }
        let mut pending = std::mem::take(&mut self.pending);
        let result = match self.work_conn().await {
            Ok(mut conn) => body(&mut conn, &mut pending).await,
            Err(e) => Err(e),
        };
        self.pending = pending;
        let Some(PooledConn::Postgres(c)) = self.conn.as_mut() else {
            unreachable!("only PostgreSQL transactions group runs");
        };
        match result {
            Ok(value) => match pg_run_tx::keep_member(c, &mut self.pg).await {
                Ok(()) => {
                    self.written_in_run.clear();
                    Ok(value)
                }
                Err(e) => {
                    self.broken = true;
                    Err(e.into())
                }
            },
            Err(e) => {
                self.undo_member().await?;
                Err(e)
            }
        }
    }

    /// Whether anything was sent on the transaction: on PostgreSQL it opens with its
    /// first work; one never opened holds nothing to commit or roll back.
    pub fn opened(&self) -> bool {
        matches!(self.conn, Some(PooledConn::Sqlite(_))) || self.pg.begun
    }

    /// Whether this is a PostgreSQL transaction that task SQL opened, which
    /// [`Transaction::complete_and_commit`] completes.
    pub(super) fn completes_in_one_message(&self) -> bool {
        matches!(self.conn, Some(PooledConn::Postgres(_))) && self.pg.begun && !self.ended
    }

    /// Runs `body` as the transaction's last work, then commits; when `body` fails,
    /// rolls back instead and passes its error on. Wake-ups go out after the commit.
    /// Fails with [`TaskSqlError::TransactionEnded`] (writing nothing) when task SQL
    /// had ended the transaction.
    pub(super) async fn commit_with<R>(
        mut self,
        body: impl AsyncFnOnce(&mut AnyConn<'_>, &mut Pending) -> Result<R, StoreError>,
    ) -> StoreResult<R> {
        if self.ended {
            return Err(ended());
        }
        debug_assert!(
            self.held.is_empty(),
            "a lone run's transaction holds no other run"
        );
        let mut pending = std::mem::take(&mut self.pending);
        let mut pooled = self.conn.take().expect("open transaction");
        let result = match &mut pooled {
            PooledConn::Postgres(c) => {
                let pg = &mut self.pg;
                let opened = async {
                    if pg.begun {
                        pg.check_open(c).await.map_err(StoreError::TaskSql)
                    } else {
                        pg.begin(c).await.map_err(StoreError::from)
                    }
                };
                match opened.await {
                    Ok(()) => {
                        let result = body(&mut AnyConn::Postgres(c), &mut pending).await;
                        match result {
                            Ok(value) => match pg_run_tx::commit(c).await {
                                Ok(CommitEnd::Committed) => {
                                    self.pg.closed(c);
                                    Ok(value)
                                }
                                Ok(_) => Err(ended()),
                                Err(e) => Err(e.into()),
                            },
                            Err(e) => {
                                let _ = pg_run_tx::rollback(c).await;
                                Err(e)
                            }
                        }
                    }
                    Err(e) => Err(e),
                }
            }
            conn => {
                let mut conn = conn.any();
                let result = body(&mut conn, &mut pending).await;
                finish(&mut conn, result).await
            }
        };
        match result {
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

/// The error of work on a transaction that task SQL ended.
fn ended() -> StoreError {
    StoreError::TaskSql(TaskSqlError::TransactionEnded)
}
