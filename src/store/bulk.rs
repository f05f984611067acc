//! Bulk actions: retry, cancel or delete every task a [`TaskFilter`] matches, in
//! bounded batches.
//!
//! The matching tasks are walked newest first, by id, a page at a time. Each page is
//! read without a transaction, then changed in one short transaction of its own whose
//! statements test each task's state again, so a task that moved on meanwhile (a claim,
//! a completion) is left alone and counted as skipped. A million matching tasks are
//! a thousand short transactions, never one that holds locks (and, on PostgreSQL, the
//! vacuum horizon) for minutes. Tasks scheduled after the walk started have higher ids
//! than its first page, so they are not touched.

use super::conn::on_conn;
use super::dialect::Dialect;
use super::schema::warren_tasks;
use super::schema::warren_tasks::dsl as t;
use super::signals::{announce_outcome_waited, announce_work, Pending};
use super::{AnyConn, Store, StoreError, StoreResult, TaskFilter};
use crate::task::{Millis, TaskId, TaskState};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What a bulk action does to each task its filter matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BulkAction {
    /// Run pending, failed and cancelled tasks now (as [`Store::retry_now`]).
    Retry,
    /// Cancel pending and running tasks (as [`Store::cancel`]).
    Cancel,
    /// Delete tasks that are not running (as [`Store::delete`]).
    Delete,
}

impl BulkAction {
    /// Whether the action changes a task in `state` (the others are skipped).
    pub fn applies_to(self, state: TaskState) -> bool {
        match self {
            BulkAction::Retry => matches!(
                state,
                TaskState::Pending | TaskState::Failed | TaskState::Cancelled
            ),
            BulkAction::Cancel => matches!(state, TaskState::Pending | TaskState::Running),
            BulkAction::Delete => state != TaskState::Running,
        }
    }

    /// The verb, for messages ("retry").
    pub fn verb(self) -> &'static str {
        match self {
            BulkAction::Retry => "retry",
            BulkAction::Cancel => "cancel",
            BulkAction::Delete => "delete",
        }
    }
}

impl std::str::FromStr for BulkAction {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<BulkAction, StoreError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "retry" => Ok(BulkAction::Retry),
            "cancel" => Ok(BulkAction::Cancel),
            "delete" => Ok(BulkAction::Delete),
            _ => Err(StoreError::Invalid {
                field: "action",
                message: format!("'{s}' is not one of retry, cancel, delete"),
            }),
        }
    }
}

impl std::fmt::Display for BulkAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.verb())
    }
}

/// How a bulk action runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkOptions {
    /// Tasks read and changed per transaction (1–10,000).
    pub batch: i64,
    /// The error stored on cancelled tasks.
    pub reason: String,
}

impl Default for BulkOptions {
    fn default() -> BulkOptions {
        BulkOptions {
            batch: DEFAULT_BULK_BATCH,
            reason: "cancelled in bulk".to_string(),
        }
    }
}

/// Tasks per batch unless asked otherwise: a batch's transaction then takes tens of
/// milliseconds.
pub const DEFAULT_BULK_BATCH: i64 = 1000;

/// Most refusals a [`BulkReport`] quotes.
const REFUSALS_QUOTED: usize = 10;

/// What a bulk action did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BulkReport {
    /// The action.
    pub action: BulkAction,
    /// Tasks the filter matched when the walk reached them.
    pub matched: u64,
    /// Tasks the action changed.
    pub changed: u64,
    /// Tasks left alone because of their state when read, by that state (a completed
    /// task is not retried, a running one not deleted).
    pub skipped: BTreeMap<TaskState, u64>,
    /// Tasks whose state changed between the read and the write, left alone.
    pub moved_on: u64,
    /// Tasks the action was refused for one by one (a retried task whose unique key
    /// another task holds), with the first few reasons.
    pub refused: u64,
    /// The first reasons for `refused`.
    pub refusals: Vec<String>,
    /// Running tasks cancelled: their runs can no longer commit, and the nodes running
    /// them stop them at their next lease renewal (or at once, when told).
    pub cancelled_running: Vec<TaskId>,
    /// Batches written, each in a transaction of its own.
    pub batches: u64,
    /// The longest of those transactions, in milliseconds.
    pub longest_batch_ms: u64,
}

impl BulkReport {
    fn new(action: BulkAction) -> BulkReport {
        BulkReport {
            action,
            matched: 0,
            changed: 0,
            skipped: BTreeMap::new(),
            moved_on: 0,
            refused: 0,
            refusals: Vec::new(),
            cancelled_running: Vec::new(),
            batches: 0,
            longest_batch_ms: 0,
        }
    }

    fn refuse(&mut self, error: StoreError) {
        self.refused += 1;
        if self.refusals.len() < REFUSALS_QUOTED {
            self.refusals.push(error.to_string());
        }
    }
}

/// A task as a bulk action reads it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = warren_tasks)]
pub(crate) struct BulkCandidate {
    pub id: TaskId,
    pub state: TaskState,
    pub cluster: String,
    pub unique_key: Option<String>,
}

/// One batch's tasks that the action applies to, split by how they are written.
#[derive(Debug, Default)]
struct BatchPlan {
    /// Tasks written together.
    together: Vec<BulkCandidate>,
    /// Finished tasks with a unique key, retried one by one (each may conflict).
    one_by_one: Vec<TaskId>,
}

/// Splits a page into what the action writes and what it skips (counted in `report`).
fn plan_batch(action: BulkAction, page: Vec<BulkCandidate>, report: &mut BulkReport) -> BatchPlan {
    let mut plan = BatchPlan::default();
    for task in page {
        if !action.applies_to(task.state) {
            *report.skipped.entry(task.state).or_default() += 1;
        } else if action == BulkAction::Retry
            && task.state.is_finished()
            && task.unique_key.is_some()
        {
            plan.one_by_one.push(task.id);
        } else {
            plan.together.push(task);
        }
    }
    plan
}

impl Store {
    /// How many tasks match `filter` (its `before_id` counts, its `limit` does not).
    pub async fn count(&self, filter: &TaskFilter) -> StoreResult<i64> {
        super::search::check_filter(filter)?;
        let now = self.now();
        let mut pooled = self.conn().await?;
        Ok(on_conn!(&mut pooled.any(), c => Dialect::count_tasks(c, filter, now).await?))
    }

    /// The newest task `filter` matches: a bulk action asked for after a person saw the
    /// count passes it on (as `before_id`, one past it), so that it acts on no task
    /// scheduled since.
    pub async fn newest_matching(&self, filter: &TaskFilter) -> StoreResult<Option<TaskId>> {
        let newest = self
            .list(&TaskFilter {
                limit: 1,
                ..filter.clone()
            })
            .await?;
        Ok(newest.into_iter().next().map(|task| task.id))
    }

    /// Applies `action` to every task `filter` matches (its `limit` is ignored), in
    /// batches of `options.batch`, each in a short transaction of its own; see the
    /// module's documentation. A default filter matches every task: callers that take
    /// a filter from a user should make sure it says something.
    pub async fn bulk(
        &self,
        action: BulkAction,
        filter: &TaskFilter,
        options: &BulkOptions,
    ) -> StoreResult<BulkReport> {
        if !(1..=10_000).contains(&options.batch) {
            return Err(StoreError::Invalid {
                field: "batch",
                message: format!("{} is outside 1–10000", options.batch),
            });
        }
        super::search::check_filter(filter)?;
        let reason = super::bounded_text(options.reason.clone(), super::MAX_ERROR_BYTES);
        if reason.contains('\0') {
            return Err(StoreError::Invalid {
                field: "reason",
                message: "holds a NUL character, which cannot be stored".to_string(),
            });
        }
        let mut report = BulkReport::new(action);
        let mut page_filter = filter.clone();
        loop {
            let now = self.now();
            let page: Vec<BulkCandidate> = {
                let mut pooled = self.conn().await?;
                on_conn!(&mut pooled.any(), c => {
                    Dialect::bulk_candidates(c, &page_filter, now, options.batch).await?
                })
            };
            let Some(last) = page.last().map(|task| task.id) else {
                break;
            };
            let full = page.len() as i64 == options.batch;
            page_filter.before_id = Some(last);
            report.matched += page.len() as u64;
            let plan = plan_batch(action, page, &mut report);
            if !plan.together.is_empty() {
                let started = Instant::now();
                let written = self
                    .in_transaction(async |conn, pending| {
                        let now = self.now();
                        write_batch(conn, pending, action, &plan.together, now, &reason).await
                    })
                    .await?;
                report.longest_batch_ms = report.longest_batch_ms.max(millis(started.elapsed()));
                report.batches += 1;
                report.changed += written.changed as u64;
                report.moved_on += plan.together.len().saturating_sub(written.changed) as u64;
                report.cancelled_running.extend(written.cancelled_running);
            }
            for id in plan.one_by_one {
                match self.retry_now(id).await {
                    Ok(_) => report.changed += 1,
                    // Moved on, or gone, since the page was read.
                    Err(StoreError::WrongState { .. } | StoreError::NotFound(_)) => {
                        report.moved_on += 1
                    }
                    Err(
                        e @ (StoreError::UniqueConflict { .. }
                        | StoreError::Contended { .. }
                        | StoreError::Corrupt { .. }),
                    ) => report.refuse(e),
                    Err(e) => return Err(e),
                }
            }
            if !full {
                break;
            }
        }
        Ok(report)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What one batch's transaction changed.
struct BatchWritten {
    /// Tasks changed.
    changed: usize,
    /// Running tasks it cancelled (their runners are to be stopped).
    cancelled_running: Vec<TaskId>,
}

/// Writes one batch of `action` in the open transaction; each statement tests the
/// state again, so a task that moved on since the page was read is left alone.
async fn write_batch(
    conn: &mut AnyConn<'_>,
    pending: &mut Pending,
    action: BulkAction,
    tasks: &[BulkCandidate],
    now: Millis,
    reason: &str,
) -> StoreResult<BatchWritten> {
    let ids: Vec<TaskId> = tasks.iter().map(|task| task.id).collect();
    let changed = match action {
        BulkAction::Retry => retry_batch(conn, pending, tasks, now).await?,
        BulkAction::Cancel => return cancel_batch(conn, pending, &ids, now, reason).await,
        BulkAction::Delete => on_conn!(conn, c => {
            diesel::delete(
                t::warren_tasks
                    .filter(t::id.eq_any(&ids))
                    .filter(t::state.ne(TaskState::Running)),
            )
            .execute(c)
            .await?
        }),
    };
    Ok(BatchWritten {
        changed,
        cancelled_running: Vec::new(),
    })
}

/// Cancels the batch's pending and running tasks. They are read first under the
/// transaction's locks (`FOR UPDATE` on PostgreSQL, in ascending id order like every
/// grouped write; SQLite's transaction holds the write lock), so the running ones
/// reported are exactly the running ones cancelled, a task claimed since the page was
/// read included.
async fn cancel_batch(
    conn: &mut AnyConn<'_>,
    pending: &mut Pending,
    ids: &[TaskId],
    now: Millis,
    reason: &str,
) -> StoreResult<BatchWritten> {
    let cancellable = t::warren_tasks
        .select((t::id, t::state))
        .filter(t::id.eq_any(ids))
        .filter(t::state.eq_any([TaskState::Pending, TaskState::Running]))
        .order(t::id.asc());
    let locked: Vec<(TaskId, TaskState)> = match conn {
        AnyConn::Postgres(c) => cancellable.for_update().load(*c).await?,
        AnyConn::Sqlite(c) => cancellable.load(*c).await?,
    };
    let cancelled: Vec<TaskId> = locked.iter().map(|(id, _)| *id).collect();
    let changed = on_conn!(conn, c => {
        diesel::update(t::warren_tasks.filter(t::id.eq_any(&cancelled)))
            .set(super::manage::cancelled_columns!(now, reason))
            .execute(c)
            .await?
    });
    // Waiters: on PostgreSQL a NOTIFY for the tasks someone waits for, read after the
    // UPDATE under its row locks (a waiter that marks a task later finds it
    // cancelled); on SQLite the outcome is announced after the commit, to every waiter.
    let waited: Vec<TaskId> = match conn {
        AnyConn::Postgres(c) => {
            t::warren_tasks
                .select(t::id)
                .filter(t::id.eq_any(&cancelled))
                .filter(t::waited.eq(true))
                .load(*c)
                .await?
        }
        AnyConn::Sqlite(_) => cancelled.clone(),
    };
    for id in waited {
        announce_outcome_waited(conn, pending, id, true).await?;
    }
    Ok(BatchWritten {
        changed,
        cancelled_running: locked
            .into_iter()
            .filter(|(_, state)| *state == TaskState::Running)
            .map(|(id, _)| id)
            .collect(),
    })
}

/// Retries a batch: pending tasks are due now, failed and cancelled ones (without a
/// unique key) pending again with a fresh failure count; never before a task's
/// not-before time.
async fn retry_batch(
    conn: &mut AnyConn<'_>,
    pending: &mut Pending,
    tasks: &[BulkCandidate],
    now: Millis,
) -> StoreResult<usize> {
    let (waiting, finished): (Vec<&BulkCandidate>, Vec<&BulkCandidate>) = tasks
        .iter()
        .partition(|task| task.state == TaskState::Pending);
    let waiting: Vec<TaskId> = waiting.iter().map(|task| task.id).collect();
    let finished: Vec<TaskId> = finished.iter().map(|task| task.id).collect();
    let mut changed = 0;
    if !waiting.is_empty() {
        let scope = || {
            t::warren_tasks
                .filter(t::id.eq_any(&waiting))
                .filter(t::state.eq(TaskState::Pending))
        };
        changed += on_conn!(conn, c => {
            diesel::update(scope().filter(t::not_before.is_null().or(t::not_before.le(now))))
                .set(t::next_attempt.eq(now))
                .execute(c)
                .await?
                + diesel::update(scope().filter(t::not_before.gt(now)))
                    .set(t::next_attempt.eq(t::not_before.assume_not_null()))
                    .execute(c)
                    .await?
        });
    }
    if !finished.is_empty() {
        let scope = || {
            t::warren_tasks
                .filter(t::id.eq_any(&finished))
                .filter(t::state.eq_any([TaskState::Failed, TaskState::Cancelled]))
                .filter(t::unique_key.is_null())
        };
        let requeued = || {
            (
                t::state.eq(TaskState::Pending),
                t::finished_at.eq(None::<i64>),
                t::failures.eq(0),
            )
        };
        changed += on_conn!(conn, c => {
            diesel::update(scope().filter(t::not_before.is_null().or(t::not_before.le(now))))
                .set((requeued(), t::next_attempt.eq(now)))
                .execute(c)
                .await?
                + diesel::update(scope().filter(t::not_before.gt(now)))
                    .set((requeued(), t::next_attempt.eq(t::not_before.assume_not_null())))
                    .execute(c)
                    .await?
        });
        // Their keys are as old as their last runs; the rules may have changed since.
        // Only those now pending: one another node claimed meanwhile keeps its key.
        let requeued: Vec<TaskId> = on_conn!(conn, c => {
            t::warren_tasks
                .select(t::id)
                .filter(t::id.eq_any(&finished))
                .filter(t::state.eq(TaskState::Pending))
                .load(c)
                .await?
        });
        super::flow::rekey_tasks(conn, &requeued).await?;
    }
    let mut clusters: Vec<&str> = tasks.iter().map(|task| task.cluster.as_str()).collect();
    clusters.sort_unstable();
    clusters.dedup();
    for cluster in clusters {
        announce_work(conn, pending, cluster).await?;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(id: i64, state: TaskState, keyed: bool) -> BulkCandidate {
        BulkCandidate {
            id: TaskId(id),
            state,
            cluster: "default".into(),
            unique_key: keyed.then(|| "k".to_string()),
        }
    }

    #[test]
    fn each_action_changes_only_the_states_it_can() {
        use TaskState::*;
        let all = [Pending, Running, Completed, Failed, Cancelled];
        let changed = |action: BulkAction| -> Vec<TaskState> {
            all.into_iter().filter(|s| action.applies_to(*s)).collect()
        };
        assert_eq!(changed(BulkAction::Retry), [Pending, Failed, Cancelled]);
        assert_eq!(changed(BulkAction::Cancel), [Pending, Running]);
        assert_eq!(
            changed(BulkAction::Delete),
            [Pending, Completed, Failed, Cancelled]
        );
    }

    #[test]
    fn a_batch_plan_skips_by_state_and_retries_keyed_finished_tasks_alone() {
        let page = vec![
            candidate(5, TaskState::Completed, false),
            candidate(4, TaskState::Failed, true),
            candidate(3, TaskState::Failed, false),
            candidate(2, TaskState::Pending, true),
            candidate(1, TaskState::Running, false),
        ];
        let mut report = BulkReport::new(BulkAction::Retry);
        let plan = plan_batch(BulkAction::Retry, page.clone(), &mut report);
        let ids = |tasks: &[BulkCandidate]| tasks.iter().map(|t| t.id.0).collect::<Vec<_>>();
        assert_eq!(ids(&plan.together), [3, 2]);
        assert_eq!(plan.one_by_one, [TaskId(4)]);
        assert_eq!(
            report.skipped,
            BTreeMap::from([(TaskState::Running, 1), (TaskState::Completed, 1)])
        );
        let mut report = BulkReport::new(BulkAction::Delete);
        let plan = plan_batch(BulkAction::Delete, page, &mut report);
        assert_eq!(ids(&plan.together), [5, 4, 3, 2]);
        assert!(plan.one_by_one.is_empty());
        assert_eq!(report.skipped, BTreeMap::from([(TaskState::Running, 1)]));
    }

    #[test]
    fn actions_read_from_text() {
        assert_eq!(" Retry ".parse::<BulkAction>().unwrap(), BulkAction::Retry);
        let err = "purge".parse::<BulkAction>().unwrap_err();
        assert!(err
            .to_string()
            .contains("'purge' is not one of retry, cancel, delete"));
    }
}
