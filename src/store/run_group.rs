//! A run group: consecutive runs of one runner that share one PostgreSQL transaction,
//! and so one commit.
//!
//! A task that writes commits its work with its completion, and on PostgreSQL each
//! commit costs a commit record, its round trip and a wait for a WAL flush (long on
//! disks that flush slowly). A runner whose next task may come keeps its last run's
//! transaction open instead, and the next run's work goes in the same transaction, in a
//! savepoint of its own (`pg_run_tx.rs`). A completed run's completion is held, not
//! sent: the group's commit writes all of them with one statement before its COMMIT,
//! in one message, so each run saves a round trip and the database a statement. The group
//! commits when its runner has no next task at hand, when it is as large or as old as
//! its [`GroupBounds`] allow, or when a run ends other than by completing. Every run's
//! outcome is told only once the commit that holds it has landed
//! ([`MemberOutcome::committed`]), so no caller learns of a completion that could still
//! be lost.
//!
//! What happens to each run, whatever goes wrong:
//! - a run whose statement fails is undone to that statement's savepoint, as alone;
//! - a run that fails (temporary failure, timeout, kill) is undone to its own
//!   savepoint: the earlier runs keep their work, the group commits, and the failure is
//!   then recorded as for a lone run;
//! - a completed run whose task was cancelled or recovered before the group commits:
//!   its held completion raises at the commit, so nothing of the group commits; that
//!   run is told its lease was lost, and the others are given back to the queue
//!   ([`Members::lease_lost`]), uncounted;
//! - a run that resolves otherwise (permanent failure, cancellation, restart, snooze)
//!   writes its resolution in its savepoint and the group commits with it;
//! - a group whose commit fails committed nothing. A group of one run is a lone run:
//!   its lease expires and the retry rule counts the failure. The runs of a larger
//!   group are given back to the queue, fenced by their tokens, with no failure
//!   counted, since one run's work (a deferred constraint) may have failed them all;
//!   and no run of the node groups for [`GROUP_PAUSE_MS`], so that each runs alone
//!   and only the one at fault fails. Exactly once holds because each run's
//!   completion and work were in the same transaction;
//! - a run whose SQL ended the shared transaction (it committed or rolled back what
//!   came before): the earlier runs' completions committed with it or not at all; those
//!   still running under their lease are given back to the queue, and the run itself
//!   fails for good, as a lone run would;
//! - a runner that panics mid-group drops it: the connection closes, PostgreSQL rolls
//!   it back, and each run's task is given back to the queue (uncounted);
//! - a node killed mid-group: PostgreSQL rolls the open transaction back, and the
//!   runs' leases expire, as for lone runs (the retry rule counts each, the completed
//!   runs of the group too).
//!
//! Only PostgreSQL groups runs (on SQLite one writer at a time already serializes
//! commits, and a commit there costs little), and only where transactions default to
//! READ COMMITTED, as each statement of a later run then sees what committed before
//! it, as it would alone.

use super::run::ResolveOutcome;
use super::transaction::Transaction;
use super::{Store, StoreError, StoreResult};
use crate::task::{LeaseToken, Millis, TaskId};
use std::sync::Arc;
use tokio::sync::oneshot;

/// How long a node's runs do not group after a group of several failed to commit.
pub const GROUP_PAUSE_MS: i64 = 1_000;

/// How large and how old a run group may grow before it commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupBounds {
    /// Most runs in one group; 1 turns grouping off.
    pub max_runs: usize,
    /// How long after its first completion a group may still take a run. Each run's
    /// outcome waits for the group's commit, and a completed run's lease is no longer
    /// renewed, so this stays far below any lease.
    pub max_age_ms: i64,
}

impl GroupBounds {
    /// No grouping: every run commits on its own.
    pub const OFF: GroupBounds = GroupBounds {
        max_runs: 1,
        max_age_ms: 0,
    };

    /// Whether runs may group at all.
    pub fn enabled(&self) -> bool {
        self.max_runs > 1
    }
}

impl Default for GroupBounds {
    /// Eight runs, 20 ms: measured, the gain of sharing a commit levels off near eight
    /// (scripts/group-commit-ceiling.sh), and 20 ms is many short runs but little
    /// latency.
    fn default() -> GroupBounds {
        GroupBounds {
            max_runs: 8,
            max_age_ms: 20,
        }
    }
}

/// An open transaction holding the completed work of one or more runs of a runner,
/// not yet committed. Commit it with [`RunGroup::commit`]; dropping it rolls it back,
/// and its runs learn that nothing of theirs committed (their leases expire).
pub struct RunGroup {
    tx: Transaction,
    members: Members,
    /// When its first run completed.
    opened_at: Millis,
}

impl std::fmt::Debug for RunGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunGroup")
            .field("runs", &self.members.0.len())
            .field("opened_at", &self.opened_at)
            .finish()
    }
}

/// The runs of a group, each waiting to be told its outcome.
#[derive(Default)]
pub(super) struct Members(Vec<Member>);

struct Member {
    id: TaskId,
    token: LeaseToken,
    /// What the run amounts to once the group commits.
    outcome: ResolveOutcome,
    tell: oneshot::Sender<StoreResult<ResolveOutcome>>,
}

/// A run's outcome in a group: known once the group's commit is.
#[must_use = "the outcome says whether the run's work committed"]
pub struct MemberOutcome {
    id: TaskId,
    token: LeaseToken,
    store: Store,
    told: oneshot::Receiver<StoreResult<ResolveOutcome>>,
}

impl MemberOutcome {
    /// Waits for the group's commit: the run's outcome when it committed, or why
    /// nothing of it did. A group dropped before its commit (its runner panicked) was
    /// rolled back with its connection: the run's task is then given back to the queue
    /// (fenced by its token, no failure counted, as for a failed commit), so that a
    /// run that did nothing wrong is not charged the lease expiry of a lost run.
    pub async fn committed(self) -> StoreResult<ResolveOutcome> {
        match self.told.await {
            Ok(told) => told,
            Err(_) => {
                if let Err(e) = self.store.release_each(&[(self.id, self.token)]).await {
                    tracing::warn!(task = %self.id, error = %e, "could not give back the task of a dropped run group; its lease will expire");
                }
                Err(StoreError::GroupAbandoned { id: self.id })
            }
        }
    }
}

impl RunGroup {
    /// A group of the runs in `members`, whose work `tx` holds.
    pub(super) fn from_parts(tx: Transaction, members: Members, opened_at: Millis) -> RunGroup {
        RunGroup {
            tx,
            members,
            opened_at,
        }
    }

    /// The transaction, the runs and when the group opened, for the next run to join.
    pub(super) fn into_parts(self) -> (Transaction, Members, Millis) {
        (self.tx, self.members, self.opened_at)
    }

    /// Adds a run whose resolution was written in the group's transaction; it amounts
    /// to `outcome` once the group commits.
    pub(super) fn add(
        &mut self,
        id: TaskId,
        token: LeaseToken,
        outcome: ResolveOutcome,
    ) -> MemberOutcome {
        let store = self.tx.store().clone();
        self.members.add(&store, id, token, outcome)
    }

    /// Whether a later run may join the group (see [`Transaction::fit_for_next_run`]).
    pub(super) fn fit_for_next_run(&self) -> bool {
        self.tx.fit_for_next_run()
    }

    /// The task whose run opened the group (its first run).
    pub fn first_task(&self) -> Option<TaskId> {
        self.members.0.first().map(|m| m.id)
    }

    /// How many runs the group holds.
    pub fn len(&self) -> usize {
        self.members.0.len()
    }

    /// Whether the group holds no run (never true of a group a run handed over).
    pub fn is_empty(&self) -> bool {
        self.members.0.is_empty()
    }

    /// Whether the next run may join the group at `now` within `bounds`.
    pub fn may_take_another(&self, bounds: GroupBounds, now: Millis) -> bool {
        self.len() < bounds.max_runs && now - self.opened_at <= bounds.max_age_ms
    }

    /// Commits the group and tells each of its runs its outcome; a failed commit
    /// gives the runs back to the queue (see the module's rules). Answers how many
    /// runs committed.
    pub async fn commit(self) -> usize {
        let store = self.tx.store().clone();
        match self.tx.commit().await {
            Ok(()) => self.members.committed(),
            Err(StoreError::LeaseLost { id, token }) => {
                tracing::info!(runs = self.members.0.len(), task = %id, "a run of a run group lost its lease before the group committed; the group's other tasks run again");
                self.members.lease_lost(&store, id, token).await;
                0
            }
            Err(StoreError::TaskSql(super::TaskSqlError::TransactionEnded)) => {
                // Task SQL ended the transaction (past the statement policy): what it
                // held committed with it or not at all.
                tracing::warn!(
                    runs = self.members.0.len(),
                    "a run group's transaction was ended by task SQL"
                );
                self.members.in_doubt(&store).await;
                0
            }
            Err(e) => {
                tracing::warn!(runs = self.members.0.len(), error = %e, "a run group's commit failed; its tasks run again");
                self.members.not_committed(&store, e).await;
                0
            }
        }
    }
}

/// Where a runner keeps its open run group between runs, shared between its runs
/// and whatever commits the group meanwhile: a run takes it with its first database
/// work (see [`Store::begin_run_in_group`]); the runner commits it when no next task
/// comes, before a run of another kind, or once it is older than its bounds allow
/// while a run that has not joined it goes on.
#[derive(Clone, Default)]
pub struct GroupSlot(Arc<std::sync::Mutex<Option<RunGroup>>>);

impl std::fmt::Debug for GroupSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("GroupSlot").field(&*self.slot()).finish()
    }
}

impl GroupSlot {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<RunGroup>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the open group out, if any.
    pub fn take(&self) -> Option<RunGroup> {
        self.slot().take()
    }

    /// Keeps `group` open for the runner's next run (the slot holds one group at most).
    pub fn keep(&self, group: RunGroup) {
        let earlier = self.slot().replace(group);
        debug_assert!(earlier.is_none(), "a runner keeps one group open");
    }

    /// Whether a group is open.
    pub fn is_open(&self) -> bool {
        self.slot().is_some()
    }

    /// Commits the open group, if any; its runs are told their outcomes.
    pub async fn commit(&self) {
        let group = self.take();
        if let Some(group) = group {
            group.commit().await;
        }
    }

    /// Commits the group that opened with the run of task `first`, if it is still
    /// open here and opened `max_age_ms` or more before `now`: a run that has not
    /// joined it (it computes before its first database work, or does none) must not
    /// hold it open for long. Answers whether that group is still open here, too young
    /// to commit yet (worth looking again).
    pub async fn commit_if_older(&self, first: TaskId, max_age_ms: i64, now: Millis) -> bool {
        let group = {
            let mut slot = self.slot();
            match slot.as_ref() {
                Some(g) if g.first_task() != Some(first) => return false,
                Some(g) if now - g.opened_at < max_age_ms => return true,
                Some(_) => slot.take(),
                None => return false,
            }
        };
        if let Some(group) = group {
            group.commit().await;
        }
        false
    }
}

impl Members {
    /// Adds a run that amounts to `outcome` if the group commits.
    pub(super) fn add(
        &mut self,
        store: &Store,
        id: TaskId,
        token: LeaseToken,
        outcome: ResolveOutcome,
    ) -> MemberOutcome {
        let (tell, told) = oneshot::channel();
        self.0.push(Member {
            id,
            token,
            outcome,
            tell,
        });
        MemberOutcome {
            id,
            token,
            store: store.clone(),
            told,
        }
    }

    /// Tells every run that it committed. Answers how many there were.
    pub(super) fn committed(self) -> usize {
        let n = self.0.len();
        for m in self.0 {
            let _ = m.tell.send(Ok(m.outcome));
        }
        n
    }

    /// The group did not commit (`cause`): gives the runs back to the queue, fenced by
    /// their tokens, and tells each. A run whose task is no longer running under its
    /// token (its completion committed after all, when the connection failed after
    /// the commit; or it was cancelled) is told so.
    pub(super) async fn not_committed(self, store: &Store, cause: StoreError) {
        if self.0.len() <= 1 {
            // A lone run: as when its own commit fails, its lease expires and the
            // retry rule counts the failure.
            let cause = Arc::new(cause);
            for m in self.0 {
                let _ = m.tell.send(Err(StoreError::GroupNotCommitted {
                    id: m.id,
                    cause: cause.clone(),
                }));
            }
            return;
        }
        store.pause_groups();
        self.give_back(store, Arc::new(cause)).await;
    }

    /// The group did not commit because the run of task `id` no longer held it (its
    /// held completion found it cancelled or taken over): that run is told so, and the
    /// others are given back to the queue, uncounted. Grouping goes on: the lost task
    /// is no longer this node's to run.
    pub(super) async fn lease_lost(mut self, store: &Store, id: TaskId, token: LeaseToken) {
        let lost = StoreError::LeaseLost { id, token };
        if let Some(at) = self.0.iter().position(|m| m.id == id) {
            let m = self.0.remove(at);
            let _ = m
                .tell
                .send(Err(StoreError::LeaseLost { id, token: m.token }));
        }
        self.give_back(store, Arc::new(lost)).await;
    }

    /// A later run's SQL ended the shared transaction, committing or rolling back the
    /// earlier runs' work: gives back to the queue the runs whose completion did not
    /// commit, and tells each run what is known.
    pub(super) async fn in_doubt(self, store: &Store) {
        let cause = StoreError::TaskSql(super::TaskSqlError::TransactionEnded);
        self.give_back(store, Arc::new(cause)).await;
    }

    /// Gives back to the queue the runs still running under their tokens (their
    /// completion did not commit) and tells each what became of it.
    async fn give_back(self, store: &Store, cause: Arc<StoreError>) {
        if self.0.is_empty() {
            return;
        }
        let released = release(store, &self.0).await;
        for (m, released) in self.0.into_iter().zip(released) {
            let told = match released {
                // Given back: it still ran under its token, so its completion did not
                // commit.
                Some(true) => StoreError::GroupNotCommitted {
                    id: m.id,
                    cause: cause.clone(),
                },
                // Not running under its token any more, or not known (then its lease
                // expires if it still runs).
                Some(false) | None => StoreError::GroupInDoubt {
                    id: m.id,
                    cause: cause.clone(),
                },
            };
            let _ = m.tell.send(Err(told));
        }
    }
}

impl Store {
    /// Keeps this node's runs from grouping for [`GROUP_PAUSE_MS`].
    fn pause_groups(&self) {
        let until = self.now() + GROUP_PAUSE_MS;
        self.inner
            .groups_paused_until
            .fetch_max(until, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether runs may group now: the database's isolation allows it, and no group
    /// failed to commit lately.
    pub(super) fn groups_allowed(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let until = self.inner.groups_paused_until.load(Relaxed);
        self.inner.groups_possible.load(Relaxed) && self.now() >= until
    }

    /// Reads whether runs may group on this database: only under READ COMMITTED, the
    /// transactions' default isolation unless the database or role sets another. Under
    /// REPEATABLE READ or SERIALIZABLE a later run of a group would see the snapshot of
    /// the group's first statement, missing what committed since (the commit that
    /// scheduled it, say), where alone it would see a snapshot of its own.
    pub(super) async fn check_group_isolation(&self) -> StoreResult<()> {
        use diesel_async::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Isolation {
            #[diesel(sql_type = diesel::sql_types::Text)]
            level: String,
        }
        let mut pooled = self.conn().await?;
        let possible = match pooled.any() {
            super::AnyConn::Postgres(c) => {
                let rows: Vec<Isolation> = diesel::sql_query(
                    "SELECT current_setting('default_transaction_isolation') AS level",
                )
                .load(c)
                .await?;
                let level = rows.into_iter().next().map(|r| r.level).unwrap_or_default();
                if level != "read committed" {
                    tracing::info!(%level, "runs do not share commits (run groups): transactions default to another isolation than read committed");
                }
                level == "read committed"
            }
            super::AnyConn::Sqlite(_) => false,
        };
        self.inner
            .groups_possible
            .store(possible, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

/// Gives each run's task back to the queue if it still runs under the run's token:
/// `Some(true)` when it did (its completion did not commit), `Some(false)` when not,
/// `None` for all when the store could not be reached (their leases expire).
async fn release(store: &Store, members: &[Member]) -> Vec<Option<bool>> {
    let claims: Vec<(TaskId, LeaseToken)> = members.iter().map(|m| (m.id, m.token)).collect();
    match store.release_each(&claims).await {
        Ok(released) => released.into_iter().map(Some).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "could not give back the tasks of a failed run group; their leases will expire");
            vec![None; members.len()]
        }
    }
}
