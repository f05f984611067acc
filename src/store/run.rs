//! A task run: the task's own transaction, resolution inside it fenced by the lease
//! token, and the retry rule for failures outside it.

use super::conn::on_conn;
use super::dialect::Dialect;
use super::pg_run_tx::RunCompletion;
use super::run_group::{GroupBounds, GroupSlot, MemberOutcome, Members, RunGroup};
use super::run_history::RunOutcome;
use super::schema::warren_tasks::dsl as t;
use super::signals::{announce_outcome_waited, announce_work, Pending};
use super::transaction::{CompletedEnd, Transaction};
use super::{AnyConn, ClaimedTask, Store, StoreError, StoreResult, ThreadConnections};
use crate::executor::RunFailure;
use crate::task::{LeaseToken, Millis, Resolution, RetryPolicy, TaskId, TaskState};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

/// What became of a task after its run was resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveOutcome {
    /// Completed; its database work committed with the completion.
    Completed,
    /// Failed for good (a permanent failure, or out of retries).
    Failed,
    /// Cancelled by its own resolution.
    Cancelled,
    /// Back in the queue; runs again at this instant.
    Pending {
        /// Next attempt.
        next_attempt: Millis,
    },
}

/// One run of a claimed task: a transaction on a connection of its own, opened by the
/// task's first database work. The task's database work runs on [`TaskRun::conn`];
/// [`TaskRun::resolve`] writes the resolution in the same transaction and commits, so
/// the work and the dequeue commit together. A run that did no database work is
/// resolved by one fenced statement instead (no transaction to open and commit).
/// Dropping a run without resolving it closes its connection, which rolls back.
///
/// On SQLite the transaction takes the write lock at its first write and keeps it to
/// the end (SQLite has one writer at a time): other writers wait for it, up to the busy
/// timeout. A task that reads, then writes after another connection committed, gets
/// SQLite's "database is locked" error; the run then fails and is retried.
///
/// The task's `started_at` is written with the run's end, as the instant
/// [`Store::begin_run`] was called: a task claimed ahead of its runner starts later than
/// it was claimed, and its claim wrote only that estimate.
pub struct TaskRun {
    store: Store,
    tx: Option<Transaction>,
    /// The connections of the runner's thread, where the transaction opens when given.
    thread: Option<ThreadConnections>,
    claimed: ClaimedTask,
    /// When the run began (written with its end).
    started_at: Millis,
    /// Set by the run's first progress report; writes the last one when the run is
    /// over (see `progress.rs`).
    progress: Option<super::progress::ProgressGuard>,
    /// Where the runner keeps its open run group: the run joins the group there with
    /// its first database work, if any is open then (see `run_group.rs`).
    offered: Option<GroupSlot>,
    /// The earlier runs of the group this run joined, and when the group opened; the
    /// run's transaction is the group's.
    joined: Option<(Members, Millis)>,
    /// How far a group may grow.
    bounds: GroupBounds,
}

impl std::fmt::Debug for TaskRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskRun")
            .field("id", &self.claimed.task.id)
            .field("token", &self.claimed.token)
            .finish()
    }
}

impl Store {
    /// Starts the run of a claimed task (its transaction opens at its first database
    /// work, on a connection of the store's pool).
    pub async fn begin_run(&self, claimed: ClaimedTask) -> StoreResult<TaskRun> {
        self.begin_run_on(claimed, None).await
    }

    /// [`Store::begin_run`] for a runner of a runners' thread: the run's transaction
    /// takes its connection from `thread`, the connections that thread drives, when one
    /// is to be had (see [`ThreadConnections`]). The run must then be used on that
    /// thread only.
    pub async fn begin_run_on(
        &self,
        claimed: ClaimedTask,
        thread: Option<ThreadConnections>,
    ) -> StoreResult<TaskRun> {
        self.begin_run_in_group(claimed, thread, None, GroupBounds::OFF)
            .await
    }

    /// [`Store::begin_run_on`] for a runner that groups its runs (see `run_group.rs`):
    /// with its first database work the run joins the group open in `slot`, if
    /// `bounds` still allow (otherwise that group commits first). A run that never
    /// works in the database leaves the slot as it is.
    pub async fn begin_run_in_group(
        &self,
        claimed: ClaimedTask,
        thread: Option<ThreadConnections>,
        slot: Option<GroupSlot>,
        bounds: GroupBounds,
    ) -> StoreResult<TaskRun> {
        Ok(TaskRun {
            store: self.clone(),
            tx: None,
            thread,
            claimed,
            started_at: self.now(),
            progress: None,
            offered: slot,
            joined: None,
            bounds,
        })
    }
}

/// What the retry rule needs to know of a running task, read under its fence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FailureState {
    /// Failures before this one.
    pub failures: i32,
    /// The task's not-before time.
    pub not_before: Option<Millis>,
    /// Its cluster, whose queue is woken when it is due again at once.
    pub cluster: String,
    /// When its run started, as its claim estimated it.
    pub started_at: Option<Millis>,
}

/// Reads the retry rule's inputs of task `id` if it still runs under `token` (one
/// statement); `None`: the lease was lost.
pub(crate) async fn failure_state(
    conn: &mut AnyConn<'_>,
    id: TaskId,
    token: LeaseToken,
) -> StoreResult<Option<FailureState>> {
    let row: Option<(i32, Option<i64>, String, Option<i64>)> = on_conn!(conn, c => {
        t::warren_tasks
            .filter(t::id.eq(id))
            .filter(t::lease_token.eq(token))
            .filter(t::state.eq(TaskState::Running))
            .select((t::failures, t::not_before, t::cluster, t::started_at))
            .first(c)
            .await
            .optional()?
    });
    Ok(
        row.map(|(failures, not_before, cluster, started_at)| FailureState {
            failures,
            not_before,
            cluster,
            started_at,
        }),
    )
}

/// Where a failed run leaves its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureEnd {
    /// Finished as failed at this instant (out of retries).
    Failed {
        /// The finish time.
        finished_at: Millis,
    },
    /// Pending again, due at this instant.
    Pending {
        /// The next attempt.
        next_attempt: Millis,
    },
}

/// The parameters of [`write_failure`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FailureWrite<'a> {
    /// The task.
    pub id: TaskId,
    /// The fencing token of the failed run.
    pub token: LeaseToken,
    /// The error to store (already bounded).
    pub error: &'a str,
    /// The stack to store (already bounded).
    pub stack: Option<&'a str>,
    /// When the failed run started.
    pub started_at: Option<Millis>,
    /// What becomes of the task.
    pub end: FailureEnd,
}

/// Writes a failure decided by the retry rule (one fenced statement): failures and
/// iterations + 1, error and stack stored, lease cleared, and the task failed or
/// pending again.
pub(crate) async fn write_failure(
    conn: &mut AnyConn<'_>,
    write: &FailureWrite<'_>,
) -> StoreResult<()> {
    let fenced = t::warren_tasks
        .filter(t::id.eq(write.id))
        .filter(t::lease_token.eq(write.token))
        .filter(t::state.eq(TaskState::Running));
    let (error, stack, started_at) = (write.error, write.stack, write.started_at);
    match write.end {
        FailureEnd::Failed { finished_at } => on_conn!(conn, c => {
            diesel::update(fenced)
                .set((
                    t::state.eq(TaskState::Failed),
                    t::finished_at.eq(finished_at),
                    t::failures.eq(t::failures + 1),
                    t::iterations.eq(t::iterations + 1),
                    t::last_error.eq(error),
                    t::last_stack.eq(stack),
                    t::lease_owner.eq(None::<String>),
                    t::lease_until.eq(None::<i64>),
                    t::started_at.eq(started_at),
                ))
                .execute(c)
                .await?
        }),
        FailureEnd::Pending { next_attempt } => on_conn!(conn, c => {
            diesel::update(fenced)
                .set((
                    t::state.eq(TaskState::Pending),
                    t::next_attempt.eq(next_attempt),
                    t::failures.eq(t::failures + 1),
                    t::iterations.eq(t::iterations + 1),
                    t::last_error.eq(error),
                    t::last_stack.eq(stack),
                    t::lease_owner.eq(None::<String>),
                    t::lease_until.eq(None::<i64>),
                    t::started_at.eq(started_at),
                ))
                .execute(c)
                .await?
        }),
    };
    Ok(())
}

impl TaskRun {
    /// The claimed task (with its lease token).
    pub fn claimed(&self) -> &ClaimedTask {
        &self.claimed
    }

    /// When the run began.
    pub fn started_at(&self) -> Millis {
        self.started_at
    }

    /// The run's transaction, opened now if this is its first database work. Task
    /// code's SQL goes through its [`Transaction::task_sql`].
    pub async fn transaction(&mut self) -> StoreResult<&mut Transaction> {
        self.tx().await
    }

    /// The run's transaction, opened now if this is its first database work.
    async fn tx(&mut self) -> StoreResult<&mut Transaction> {
        if self.tx.is_none() {
            if let Some(group) = self.offered.as_ref().and_then(GroupSlot::take) {
                let now = self.store.now();
                if group.may_take_another(self.bounds, now) && self.store.groups_allowed() {
                    let (mut tx, members, opened_at) = group.into_parts();
                    tx.join_group();
                    self.tx = Some(tx);
                    self.joined = Some((members, opened_at));
                    return Ok(self.tx.as_mut().expect("joined above"));
                }
                group.commit().await;
            }
            let tx = self
                .store
                .begin_transaction_on(self.thread.as_ref())
                .await?;
            self.tx = Some(tx);
        }
        Ok(self.tx.as_mut().expect("opened above"))
    }

    /// The connection carrying the task's transaction, for the task's own SQL.
    pub async fn conn(&mut self) -> StoreResult<AnyConn<'_>> {
        self.tx().await?.conn().await
    }

    /// Schedules a managed task in the run's transaction: it exists only if the run
    /// commits.
    pub async fn schedule(&mut self, task: super::NewTask) -> StoreResult<TaskId> {
        self.tx().await?.schedule(task).await
    }

    /// Reads a metadata value of this task in the run's transaction.
    pub async fn metadata(&mut self, key: &str) -> StoreResult<Option<String>> {
        let id = self.claimed.task.id;
        super::manage::get_metadata_on(&mut self.tx().await?.work_conn().await?, id, key).await
    }

    /// Reports how far the run has got. Outside the run's transaction: it is seen while
    /// the run goes on, and stays whatever the run's outcome (see `progress.rs`). It
    /// never waits for the database.
    pub fn report_progress(
        &mut self,
        fraction: f64,
        message: Option<String>,
    ) -> Result<(), super::InvalidProgress> {
        let progress = super::Progress::new(fraction, message, self.store.now())?;
        let (id, token) = (self.claimed.task.id, self.claimed.token);
        self.progress
            .get_or_insert_with(|| super::progress::ProgressGuard::new(&self.store, id, token));
        self.store.report_progress(id, token, progress);
        Ok(())
    }

    /// Sets a metadata value of this task in the run's transaction.
    pub async fn set_metadata(&mut self, key: &str, value: &str) -> StoreResult<()> {
        let id = self.claimed.task.id;
        super::manage::set_metadata_on(&mut self.tx().await?.work_conn().await?, id, key, value)
            .await
    }

    /// Applies the run's resolution. Completion, permanent failure, cancellation,
    /// restart and snooze are written in the task's transaction, fenced by the lease token, and
    /// committed with the task's work; a temporary failure rolls that work back and
    /// records the failure with the retry rule of `policy`.
    ///
    /// Fails with [`StoreError::LeaseLost`] (and rolls everything back) when the task
    /// was cancelled or claimed again meanwhile.
    pub async fn resolve(
        self,
        resolution: Resolution,
        policy: RetryPolicy,
    ) -> StoreResult<ResolveOutcome> {
        self.resolve_applied(resolution, policy).await.0
    }

    /// [`TaskRun::resolve`], also telling what the resolution amounted to once the
    /// store had checked it (see [`Applied`]).
    pub async fn resolve_applied(
        self,
        resolution: Resolution,
        policy: RetryPolicy,
    ) -> (StoreResult<ResolveOutcome>, Applied) {
        match self.resolve_grouping(resolution, policy, false).await {
            Grouped::Resolved { stored, applied } => (stored, applied),
            Grouped::Open { .. } => unreachable!("a group stays open only when asked to"),
        }
    }

    /// Completes a run that did no database work without waiting for the commit: on
    /// PostgreSQL its fenced completion joins the next shared commit (see
    /// `completions.rs`) before this returns, and the future answers once it has
    /// committed (or was refused: the lease was lost). The completion is written
    /// whether or not the future is polled, so a runner can start its next task while
    /// this one's commit is under way and collect the answer later.
    ///
    /// Gives the run and its resolution back when they do not qualify: the run did
    /// database work, the resolution is not a completion or its result was refused, or
    /// the store is SQLite (where a completion is a write of its own). Resolve those
    /// with [`TaskRun::resolve_applied`].
    #[allow(clippy::result_large_err)]
    pub fn complete_queued(
        self,
        resolution: Resolution,
    ) -> Result<
        impl std::future::Future<Output = StoreResult<ResolveOutcome>> + Send + 'static,
        (TaskRun, Resolution),
    > {
        let (id, token) = (self.claimed.task.id, self.claimed.token);
        let resolution = check_json(id, resolution);
        let quiet = self
            .tx
            .as_ref()
            .is_none_or(|tx| !tx.opened() && !tx.task_ended_it());
        let Resolution::Completion { result } = &resolution else {
            return Err((self, resolution));
        };
        // A run in a group resolves through it (see `run_group.rs`).
        let grouped = self.joined.is_some();
        if grouped || !quiet || self.store.backend() != super::BackendKind::Postgres {
            return Err((self, resolution));
        }
        let completion = super::completions::Completion {
            id,
            token,
            result: result.clone(),
            started_at: self.started_at,
            finished_at: self.store.now(),
        };
        let committed = self.store.queue_completion(completion);
        Ok(async move {
            if committed.await? {
                Ok(ResolveOutcome::Completed)
            } else {
                Err(StoreError::LeaseLost { id, token })
            }
        })
    }

    /// Resolves the run as [`TaskRun::resolve_applied`] does, in the runner's run
    /// group when there is one (see `run_group.rs`). With `keep_open`, a completion of a
    /// run that did database work on PostgreSQL is written without a commit and the
    /// group stays open for the runner's next run ([`Grouped::Open`]); otherwise any
    /// group the run joined commits before this answers.
    pub async fn resolve_grouping(
        self,
        resolution: Resolution,
        policy: RetryPolicy,
        keep_open: bool,
    ) -> Grouped {
        let id = self.claimed.task.id;
        let resolution = check_json(id, resolution);
        let mut applied = Applied::of(&resolution);
        let may_open = keep_open
            && self.bounds.enabled()
            && self.store.groups_allowed()
            && matches!(resolution, Resolution::Completion { .. })
            && self.tx.as_ref().is_some_and(|tx| {
                tx.completes_in_one_message() && tx.holds_run_work() && tx.fit_for_next_run()
            });
        if self.joined.is_none() && !may_open {
            let stored = self.resolve_checked(resolution, policy, &mut applied).await;
            return Grouped::Resolved { stored, applied };
        }
        let stored = self
            .resolve_in_group(resolution, policy, keep_open, &mut applied)
            .await;
        match stored {
            InGroup::Open(group, outcome) => Grouped::Open {
                group,
                outcome,
                applied,
            },
            InGroup::Resolved(stored) => Grouped::Resolved { stored, applied },
        }
    }

    /// [`TaskRun::resolve_grouping`] for a run in a group (it joined one, or its
    /// completion opens one).
    async fn resolve_in_group(
        mut self,
        resolution: Resolution,
        policy: RetryPolicy,
        keep_open: bool,
        applied: &mut Applied,
    ) -> InGroup {
        let (id, token) = (self.claimed.task.id, self.claimed.token);
        let (store, started_at) = (self.store.clone(), self.started_at);
        let (members, opened_at) = self
            .joined
            .take()
            .unwrap_or_else(|| (Members::default(), store.now()));
        let Some(mut tx) = self.tx.take() else {
            unreachable!("a run in a group has its transaction");
        };
        if tx.task_ended_it() {
            return InGroup::Resolved(
                ended_in_group(&store, tx, members, applied, (id, token, started_at)).await,
            );
        }
        let now = store.now();
        let run = RunTimes { started_at, now };
        // What the run wrote in the group (`None`: nothing, its failure is recorded
        // after the group's commit).
        let written: Option<StoreResult<ResolveOutcome>> = match &resolution {
            Resolution::Completion { result } => {
                let completion = run.completion(id, token, result);
                if tx.fit_for_next_run() {
                    // Written with the group's commit, in one statement with the
                    // other runs' held completions; a lost lease fails the commit.
                    tx.hold_completion(completion);
                    Some(Ok(ResolveOutcome::Completed))
                } else {
                    match tx.complete_in_group(completion).await {
                        Ok(CompletedEnd::Committed) => Some(Ok(ResolveOutcome::Completed)),
                        Ok(CompletedEnd::LeaseLost) if !tx.in_group() => {
                            // The run's transaction holds nothing else: roll it back.
                            let _ = tx.rollback().await;
                            return InGroup::Resolved(Err(StoreError::LeaseLost { id, token }));
                        }
                        Ok(CompletedEnd::LeaseLost) => match tx.undo_member().await {
                            Ok(()) => Some(Err(StoreError::LeaseLost { id, token })),
                            Err(e) => Some(Err(e)),
                        },
                        Ok(CompletedEnd::TransactionEnded) => Some(Err(ended_error_of())),
                        Err(e) => {
                            let failed = self.group_failed(tx, members, e, applied).await;
                            return InGroup::Resolved(failed);
                        }
                    }
                }
            }
            Resolution::TemporaryFailure { .. } => match tx.undo_member().await {
                Ok(()) => None,
                Err(e) => Some(Err(e)),
            },
            _ => {
                let resolution = resolution.clone();
                let written = tx
                    .write_in_member(async |conn, pending| {
                        write_resolution(conn, pending, id, token, resolution, run).await
                    })
                    .await;
                Some(written)
            }
        };
        let ended = matches!(
            written,
            Some(Err(StoreError::TaskSql(
                super::TaskSqlError::TransactionEnded
            )))
        );
        if ended {
            let run = (id, token, started_at);
            return InGroup::Resolved(ended_in_group(&store, tx, members, applied, run).await);
        }
        if let Some(Err(e)) = written {
            if !matches!(e, StoreError::LeaseLost { .. }) && !tx.can_go_on() {
                // The transaction may be in error: the group cannot commit.
                return InGroup::Resolved(self.group_failed(tx, members, e, applied).await);
            }
            let group = RunGroup::from_parts(tx, members, opened_at);
            group.commit().await;
            return InGroup::Resolved(Err(e));
        }
        let mut group = RunGroup::from_parts(tx, members, opened_at);
        let own = written.map(|w| group.add(id, token, w.expect("errors answered above")));
        if let Some(own) = own {
            let completed = matches!(resolution, Resolution::Completion { .. });
            let room = group.len() < self.bounds.max_runs;
            if keep_open && completed && room && group.fit_for_next_run() {
                return InGroup::Open(Box::new(group), own);
            }
            group.commit().await;
            return InGroup::Resolved(own.committed().await);
        }
        group.commit().await;
        let Resolution::TemporaryFailure {
            error,
            stack,
            next_retry,
        } = resolution
        else {
            unreachable!("only a temporary failure writes nothing in the group");
        };
        let failure = RunFailure {
            id,
            token,
            error,
            stack,
            next_retry,
            started_at: Some(started_at),
        };
        InGroup::Resolved(store.record_failure(&failure, policy).await)
    }

    /// The group's transaction failed under this run (`cause`): nothing of the group
    /// committed; its runs are given back to the queue, and so is this one.
    async fn group_failed(
        &self,
        tx: Transaction,
        members: Members,
        cause: StoreError,
        applied: &mut Applied,
    ) -> StoreResult<ResolveOutcome> {
        drop(tx);
        let (id, token) = (self.claimed.task.id, self.claimed.token);
        let mut members = members;
        let own = members.add(&self.store, id, token, ResolveOutcome::Completed);
        *applied = Applied {
            error: Some(cause.to_string()),
            requeued: None,
        };
        members.not_committed(&self.store, cause).await;
        own.committed().await
    }

    /// Applies a checked resolution; `applied` is rewritten when the transaction turns
    /// out to have been ended by task code.
    async fn resolve_checked(
        self,
        resolution: Resolution,
        policy: RetryPolicy,
        applied: &mut Applied,
    ) -> StoreResult<ResolveOutcome> {
        let (id, token) = (self.claimed.task.id, self.claimed.token);
        let started_at = self.started_at;
        let store = self.store;
        // A transaction that task SQL never opened (PostgreSQL opens it with the first
        // statement) holds nothing: the run resolves as one that did no database work.
        let tx = self.tx.filter(|tx| tx.opened() || tx.task_ended_it());
        if tx.as_ref().is_some_and(Transaction::task_ended_it) {
            drop(tx);
            return {
                *applied = Applied::ended(id);
                fail_ended_transaction(&store, id, token, started_at).await
            };
        }
        if let Resolution::TemporaryFailure {
            error,
            stack,
            next_retry,
        } = &resolution
        {
            if let Some(tx) = tx {
                match tx.rollback().await {
                    Err(StoreError::TaskSql(super::TaskSqlError::TransactionEnded)) => {
                        return {
                            *applied = Applied::ended(id);
                            fail_ended_transaction(&store, id, token, started_at).await
                        };
                    }
                    other => other?,
                }
            }
            let failure = RunFailure {
                id,
                token,
                error: error.clone(),
                stack: stack.clone(),
                next_retry: *next_retry,
                started_at: Some(started_at),
            };
            return store.record_failure(&failure, policy).await;
        }
        let now = store.now();
        let run = RunTimes { started_at, now };
        let tx = match tx {
            Some(tx) => tx,
            None => {
                if let Resolution::Completion { result } = &resolution {
                    if store.backend() == super::BackendKind::Postgres {
                        return complete_alone(&store, id, token, result, run).await;
                    }
                }
                store.begin_transaction().await?
            }
        };
        if let Resolution::Completion { result } = &resolution {
            if tx.completes_in_one_message() {
                let completion = run.completion(id, token, result);
                return match tx.complete_and_commit(completion).await? {
                    CompletedEnd::Committed => Ok(ResolveOutcome::Completed),
                    CompletedEnd::LeaseLost => Err(StoreError::LeaseLost { id, token }),
                    CompletedEnd::TransactionEnded => {
                        *applied = Applied::ended(id);
                        fail_ended_transaction(&store, id, token, started_at).await
                    }
                };
            }
        }
        let written = tx
            .commit_with(async |conn, pending| {
                write_resolution(conn, pending, id, token, resolution, run).await
            })
            .await;
        match written {
            Err(StoreError::TaskSql(super::TaskSqlError::TransactionEnded)) => {
                *applied = Applied::ended(id);
                fail_ended_transaction(&store, id, token, started_at).await
            }
            other => other,
        }
    }

    /// Rolls back the task's transaction without resolving (the caller records the
    /// failure itself, e.g. after a timeout).
    pub async fn rollback(mut self) -> StoreResult<()> {
        match (self.tx.take(), self.joined.take()) {
            (Some(mut tx), Some((members, opened_at))) => {
                // Undo this run alone; the group's earlier runs commit.
                let undone = tx.undo_member().await;
                if undone.is_ok() {
                    RunGroup::from_parts(tx, members, opened_at).commit().await;
                } else {
                    drop(tx);
                    members.in_doubt(&self.store).await;
                }
                undone
            }
            (Some(tx), None) => tx.rollback().await,
            (None, _) => Ok(()),
        }
    }
}

/// How a run resolved by [`TaskRun::resolve_grouping`] ended.
pub enum Grouped {
    /// The run's completion is written in the runner's open group, which the runner
    /// keeps for its next run or commits; `outcome` answers once the group commits.
    Open {
        /// The open group, holding this run (boxed: it holds a connection).
        group: Box<RunGroup>,
        /// The run's outcome, once the group commits.
        outcome: MemberOutcome,
        /// What the resolution amounted to.
        applied: Applied,
    },
    /// Resolved; any group the run was in has committed (or failed) and its runs were
    /// told.
    Resolved {
        /// The run's outcome.
        stored: StoreResult<ResolveOutcome>,
        /// What the resolution amounted to.
        applied: Applied,
    },
}

/// [`TaskRun::resolve_in_group`]'s answer.
enum InGroup {
    Open(Box<RunGroup>, MemberOutcome),
    Resolved(StoreResult<ResolveOutcome>),
}

/// Task code ended the group's transaction during run `id`: the earlier runs
/// committed with it or not at all (those that did not are given back to the queue),
/// and the run fails for good, as a lone run whose transaction task code ended.
async fn ended_in_group(
    store: &Store,
    tx: Transaction,
    members: Members,
    applied: &mut Applied,
    (id, token, started_at): (TaskId, LeaseToken, Millis),
) -> StoreResult<ResolveOutcome> {
    drop(tx);
    members.in_doubt(store).await;
    *applied = Applied::ended(id);
    fail_ended_transaction(store, id, token, started_at).await
}

/// Fails for good a run whose transaction task code ended: whatever it did may have
/// committed with the statement that ended it, so it is never retried. Written
/// outside that transaction.
async fn fail_ended_transaction(
    store: &Store,
    id: TaskId,
    token: LeaseToken,
    started_at: Millis,
) -> StoreResult<ResolveOutcome> {
    let now = store.now();
    let error = ended_error(id);
    store
        .begin_transaction()
        .await?
        .commit_with(async |conn, pending| {
            let failure = Resolution::PermanentFailure {
                error,
                result: None,
            };
            let run = RunTimes { started_at, now };
            write_resolution(conn, pending, id, token, failure, run).await
        })
        .await
}

/// The error of a run whose transaction task code ended.
fn ended_error_of() -> StoreError {
    StoreError::TaskSql(super::TaskSqlError::TransactionEnded)
}

/// The error stored for a run whose transaction task code ended.
fn ended_error(id: TaskId) -> String {
    format!("task {id}: {}", super::TaskSqlError::TransactionEnded)
}

/// What a run's resolution amounted to once the store had checked it: task code's
/// resolution may be replaced (an oversized result or bad JSON becomes a temporary
/// failure saying so; an ended transaction a permanent failure), and a run's history
/// records what was stored, not what was sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Applied {
    /// The error stored with the outcome, if any.
    pub error: Option<String>,
    /// The resolution asked to run again: [`RunOutcome::Restarted`] or
    /// [`RunOutcome::Snoozed`].
    pub requeued: Option<RunOutcome>,
}

impl Applied {
    fn of(resolution: &Resolution) -> Applied {
        match resolution {
            Resolution::TemporaryFailure { error, .. }
            | Resolution::PermanentFailure { error, .. }
            | Resolution::Cancellation { error } => Applied {
                error: Some(error.clone()),
                requeued: None,
            },
            Resolution::Restart { .. } => Applied {
                error: None,
                requeued: Some(RunOutcome::Restarted),
            },
            Resolution::Snooze { .. } => Applied {
                error: None,
                requeued: Some(RunOutcome::Snoozed),
            },
            Resolution::Completion { .. } => Applied::default(),
        }
    }

    fn ended(id: TaskId) -> Applied {
        Applied {
            error: Some(ended_error(id)),
            requeued: None,
        }
    }
}

/// The completion of a run that did no database work, on PostgreSQL: one fenced
/// statement, shared with the completions of other runs that finish at the same time
/// (see `completions.rs`), so it needs no transaction of its own.
async fn complete_alone(
    store: &Store,
    id: TaskId,
    token: LeaseToken,
    result: &str,
    run: RunTimes,
) -> StoreResult<ResolveOutcome> {
    let completion = super::completions::Completion {
        id,
        token,
        result: result.to_string(),
        started_at: run.started_at,
        finished_at: run.now,
    };
    if store.complete_grouped(completion).await? {
        Ok(ResolveOutcome::Completed)
    } else {
        Err(StoreError::LeaseLost { id, token })
    }
}

/// The largest result stored for a task (1 MiB of JSON text). A larger one is a
/// temporary failure: the run's work is rolled back and it is retried.
pub const MAX_RESULT_BYTES: usize = 1 << 20;

/// The largest error text or stack stored for a task (64 KiB each); longer ones are
/// cut, with a note saying how long they were.
pub const MAX_ERROR_BYTES: usize = 64 << 10;

/// Cuts `text` to at most `max` bytes (at a character boundary), noting the cut.
pub fn bounded_text(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max.saturating_sub(64);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [cut: {} bytes in all]", &text[..end], text.len())
}

/// Bounds what a resolution stores: errors and stacks are cut, an oversized result
/// turns the resolution into a temporary failure that says so.
fn bound_sizes(id: TaskId, resolution: Resolution) -> Resolution {
    let too_large = |result: &str| Resolution::TemporaryFailure {
        error: format!(
            "task {id}: the result is {} bytes of JSON; at most {MAX_RESULT_BYTES} are stored",
            result.len()
        ),
        stack: None,
        next_retry: None,
    };
    match resolution {
        Resolution::Completion { result } if result.len() > MAX_RESULT_BYTES => too_large(&result),
        Resolution::PermanentFailure {
            result: Some(result),
            ..
        } if result.len() > MAX_RESULT_BYTES => too_large(&result),
        Resolution::PermanentFailure { error, result } => Resolution::PermanentFailure {
            error: bounded_text(error, MAX_ERROR_BYTES),
            result,
        },
        Resolution::Cancellation { error } => Resolution::Cancellation {
            error: bounded_text(error, MAX_ERROR_BYTES),
        },
        Resolution::TemporaryFailure {
            error,
            stack,
            next_retry,
        } => Resolution::TemporaryFailure {
            error: bounded_text(error, MAX_ERROR_BYTES),
            stack: stack.map(|s| bounded_text(s, MAX_ERROR_BYTES)),
            next_retry,
        },
        Resolution::Restart {
            new_data: Some(data),
            ..
        } if data.len() > MAX_RESULT_BYTES => Resolution::TemporaryFailure {
            error: format!(
                "task {id}: the restart's new data is {} bytes of JSON; at most {MAX_RESULT_BYTES} are stored",
                data.len()
            ),
            stack: None,
            next_retry: None,
        },
        other => other,
    }
}

/// Turns a resolution carrying malformed JSON into a temporary failure that says so,
/// so bad output from task code never reaches the queue; bounds what it stores.
fn check_json(id: TaskId, resolution: Resolution) -> Resolution {
    let resolution = bound_sizes(id, resolution);
    let check = |what: &str, text: Option<&String>, object: bool| -> Result<(), String> {
        let Some(text) = text else { return Ok(()) };
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v) if object && !v.is_object() => Err(format!(
                "task {id}: the restart's {what} must be a JSON object"
            )),
            Ok(_) => Ok(()),
            Err(e) => Err(format!(
                "task {id}: the resolution's {what} is not valid JSON: {e}"
            )),
        }
    };
    let verdict = match &resolution {
        Resolution::Completion { result } => check("result", Some(result), false),
        Resolution::PermanentFailure { result, .. } => check("result", result.as_ref(), false),
        Resolution::Restart {
            new_data,
            new_aux_data,
            ..
        } => check("new data", new_data.as_ref(), true)
            .and_then(|_| check("new aux data", new_aux_data.as_ref(), true)),
        _ => Ok(()),
    };
    match verdict {
        Ok(()) => resolution,
        Err(error) => Resolution::TemporaryFailure {
            error,
            stack: None,
            next_retry: None,
        },
    }
}

/// When a run began, and the instant its resolution is written.
#[derive(Debug, Clone, Copy)]
struct RunTimes {
    started_at: Millis,
    now: Millis,
}

impl RunTimes {
    /// The completion of the run of task `id` under `token` with `result`, finishing
    /// now.
    fn completion<'a>(&self, id: TaskId, token: LeaseToken, result: &'a str) -> RunCompletion<'a> {
        RunCompletion {
            id,
            token,
            result,
            started_at: self.started_at,
            finished_at: self.now,
        }
    }
}

/// What a fenced outcome UPDATE did: the rows it changed (one, or none when the lease
/// was lost) and whether someone waits for the task.
struct OutcomeWritten {
    rows: usize,
    waited: bool,
}

/// Runs a fenced outcome UPDATE. Where the backend wants it
/// ([`Dialect::outcome_returns_waited`]), the statement also returns the task's `waited`
/// flag, so the outcome's NOTIFY needs no statement of its own to look.
macro_rules! fenced_outcome {
    ($conn:expr, $update:expr) => {
        on_conn!($conn, c => {
            let update = $update;
            if Dialect::outcome_returns_waited(c) {
                let waited: Vec<bool> = update.returning(t::waited).get_results(c).await?;
                OutcomeWritten { rows: waited.len(), waited: waited.contains(&true) }
            } else {
                OutcomeWritten { rows: update.execute(c).await?, waited: false }
            }
        })
    };
}

/// Wakes the queue of task `id`'s cluster when it is due again at once.
async fn wake_if_due(
    conn: &mut AnyConn<'_>,
    pending: &mut Pending,
    id: TaskId,
    next_attempt: Millis,
    now: Millis,
) -> StoreResult<()> {
    if next_attempt <= now {
        let cluster: String = on_conn!(conn, c => {
            t::warren_tasks.select(t::cluster).find(id).first(c).await?
        });
        announce_work(conn, pending, &cluster).await?;
    }
    Ok(())
}

async fn write_resolution(
    conn: &mut AnyConn<'_>,
    pending: &mut Pending,
    id: TaskId,
    token: LeaseToken,
    resolution: Resolution,
    run: RunTimes,
) -> StoreResult<ResolveOutcome> {
    let now = run.now;
    let fenced = t::warren_tasks
        .filter(t::id.eq(id))
        .filter(t::lease_token.eq(token))
        .filter(t::state.eq(TaskState::Running));
    let no_lease = (
        t::lease_owner.eq(None::<String>),
        t::lease_until.eq(None::<i64>),
        t::iterations.eq(t::iterations + 1),
        t::started_at.eq(run.started_at),
    );
    let (rows, outcome) = match resolution {
        Resolution::Completion { result } => {
            let n = fenced_outcome!(
                conn,
                diesel::update(fenced).set((
                    t::state.eq(TaskState::Completed),
                    t::finished_at.eq(now),
                    t::result.eq(result),
                    t::last_error.eq(None::<String>),
                    t::last_stack.eq(None::<String>),
                    no_lease,
                ))
            );
            (n, ResolveOutcome::Completed)
        }
        Resolution::PermanentFailure { error, result } => {
            let n = fenced_outcome!(
                conn,
                diesel::update(fenced).set((
                    t::state.eq(TaskState::Failed),
                    t::finished_at.eq(now),
                    t::result.eq(result),
                    t::last_error.eq(error),
                    no_lease,
                ))
            );
            (n, ResolveOutcome::Failed)
        }
        Resolution::Cancellation { error } => {
            let n = fenced_outcome!(
                conn,
                diesel::update(fenced).set((
                    t::state.eq(TaskState::Cancelled),
                    t::finished_at.eq(now),
                    t::last_error.eq(error),
                    no_lease,
                ))
            );
            (n, ResolveOutcome::Cancelled)
        }
        Resolution::Restart {
            at,
            new_data,
            new_aux_data,
        } => {
            let next_attempt = at.max(now);
            let n = fenced_outcome!(
                conn,
                diesel::update(fenced).set((
                    t::state.eq(TaskState::Pending),
                    t::next_attempt.eq(next_attempt),
                    t::failures.eq(0),
                    t::last_error.eq(None::<String>),
                    t::last_stack.eq(None::<String>),
                    no_lease,
                ))
            );
            if n.rows == 1 {
                if let Some(data) = new_data {
                    on_conn!(conn, c => {
                        diesel::update(t::warren_tasks.filter(t::id.eq(id)))
                            .set(t::data.eq(data))
                            .execute(c)
                            .await?
                    });
                    // New data may mean a new concurrency key.
                    super::flow::key_tasks(conn, &[id]).await?;
                }
                if let Some(aux) = new_aux_data {
                    on_conn!(conn, c => {
                        diesel::update(t::warren_tasks.filter(t::id.eq(id)))
                            .set(t::aux_data.eq(aux))
                            .execute(c)
                            .await?
                    });
                }
                wake_if_due(conn, pending, id, next_attempt, now).await?;
            }
            (n, ResolveOutcome::Pending { next_attempt })
        }
        Resolution::Snooze { at } => {
            let next_attempt = at.max(now);
            let n = fenced_outcome!(
                conn,
                diesel::update(fenced).set((
                    t::state.eq(TaskState::Pending),
                    t::next_attempt.eq(next_attempt),
                    no_lease,
                ))
            );
            if n.rows == 1 {
                wake_if_due(conn, pending, id, next_attempt, now).await?;
            }
            (n, ResolveOutcome::Pending { next_attempt })
        }
        Resolution::TemporaryFailure { .. } => unreachable!("handled outside the transaction"),
    };
    if rows.rows != 1 {
        return Err(StoreError::LeaseLost { id, token });
    }
    announce_outcome_waited(conn, pending, id, rows.waited).await?;
    Ok(outcome)
}
