//! Operating on tasks: describe, list, count, retry now, cancel, delete, duplicate,
//! prune, and task metadata.

use super::conn::on_conn;
use super::dialect::Dialect;
use super::model::TaskRow;
use super::schedule::metadata_rows;
use super::schema::warren_task_metadata::dsl as m;
use super::schema::warren_tasks::dsl as t;
use super::signals::{announce_outcome, announce_work};
use super::{
    AnyConn, NewTask, QueueCounts, ScheduleOptions, Store, StoreError, StoreResult, Task,
    TaskFilter,
};
use crate::task::{Millis, TaskId, TaskState};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

diesel::define_sql_function! {
    /// SQL `lower()`, the same on both backends.
    fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}

/// Default retention of finished tasks: three days.
pub const DEFAULT_RETENTION_MS: i64 = 3 * 24 * 60 * 60 * 1000;

/// Turns a `*` mask into a LIKE pattern (other LIKE wildcards are matched literally).
pub(super) fn like_pattern(mask: &str) -> String {
    let mut out = String::with_capacity(mask.len());
    for ch in mask.to_lowercase().chars() {
        match ch {
            '*' => out.push('%'),
            '%' | '_' | '\\' => {
                out.push('\\');
                out.push(ch);
            }
            c => out.push(c),
        }
    }
    out
}

async fn load_row(conn: &mut AnyConn<'_>, id: TaskId) -> StoreResult<TaskRow> {
    let row: Option<TaskRow> = on_conn!(conn, c => {
        t::warren_tasks
            .find(id)
            .select(TaskRow::as_select())
            .first(c)
            .await
            .optional()?
    });
    row.ok_or(StoreError::NotFound(id))
}

async fn load_task(conn: &mut AnyConn<'_>, id: TaskId) -> StoreResult<Task> {
    Task::try_from(load_row(conn, id).await?)
}

pub(super) async fn get_metadata_on(
    conn: &mut AnyConn<'_>,
    id: TaskId,
    key: &str,
) -> StoreResult<Option<String>> {
    let key_norm = key.to_lowercase();
    Ok(on_conn!(conn, c => {
        m::warren_task_metadata
            .select(m::value)
            .filter(m::task_id.eq(id))
            .filter(m::key_norm.eq(&key_norm))
            .first(c)
            .await
            .optional()?
    }))
}

pub(super) async fn set_metadata_on(
    conn: &mut AnyConn<'_>,
    id: TaskId,
    key: &str,
    value: &str,
) -> StoreResult<()> {
    let rows = metadata_rows(id, &[(key.to_string(), value.to_string())])?;
    let key_norm = key.to_lowercase();
    on_conn!(conn, c => {
        diesel::delete(
            m::warren_task_metadata
                .filter(m::task_id.eq(id))
                .filter(m::key_norm.eq(&key_norm)),
        )
        .execute(c)
        .await?
    });
    super::schedule::insert_metadata(conn, rows).await
}

/// The tasks matching `filter` (and below its `before_id`), as a boxed query for
/// backend `$db` with no select, order or limit yet: a listing, a count and a bulk
/// action each add their own. (A boxed query is tied to one backend, so it is built
/// once per backend from this one definition; `$data_equals` is that backend's data
/// search.)
macro_rules! filtered_tasks {
    ($db:ty, $filter:expr, $now:expr, $data_equals:path) => {{
        use diesel::prelude::*;
        use $crate::store::manage::{like_pattern, lower};
        use $crate::store::schema::warren_tasks::dsl as t;
        use $crate::store::search::contains_pattern;
        use $crate::store::{StateFilter, TaskFilter};
        use $crate::task::{Millis, TaskState};
        let filter: &TaskFilter = $filter;
        let now: Millis = $now;
        let mut query = t::warren_tasks.into_boxed::<$db>();
        if let Some(mask) = &filter.type_mask {
            query = query.filter(lower(t::task_type).like(like_pattern(mask)).escape('\\'));
        }
        query = match filter.state {
            StateFilter::All => query,
            // Always true: it lets PostgreSQL read the pending tasks from the two
            // partial indexes that hold them, without and with a concurrency key.
            StateFilter::Pending => query
                .filter(t::state.eq(TaskState::Pending))
                .filter(t::flow_key.is_null().or(t::flow_key.is_not_null()))
                .filter(t::next_attempt.le(now)),
            StateFilter::Future => query
                .filter(t::state.eq(TaskState::Pending))
                .filter(t::flow_key.is_null().or(t::flow_key.is_not_null()))
                .filter(t::next_attempt.gt(now)),
            StateFilter::Running => query.filter(t::state.eq(TaskState::Running)),
            StateFilter::Completed => query.filter(t::state.eq(TaskState::Completed)),
            StateFilter::Failed => query.filter(t::state.eq(TaskState::Failed)),
            StateFilter::Cancelled => query.filter(t::state.eq(TaskState::Cancelled)),
            StateFilter::Unfinished => {
                query.filter(t::state.eq_any([TaskState::Pending, TaskState::Running]))
            }
        };
        if let Some(from) = filter.created_from {
            query = query.filter(t::created_at.ge(from));
        }
        if let Some(until) = filter.created_until {
            query = query.filter(t::created_at.lt(until));
        }
        if let Some(search) = &filter.data_equals {
            query = query.filter($data_equals(search));
        }
        if let Some(needle) = &filter.data_contains {
            query = query.filter(
                lower(t::data)
                    .like(lower(contains_pattern(needle)))
                    .escape('\\'),
            );
        }
        if let Some(needle) = &filter.error_contains {
            query = query.filter(
                lower(t::last_error.assume_not_null())
                    .like(lower(contains_pattern(needle)))
                    .escape('\\'),
            );
        }
        if let Some(before) = filter.before_id {
            query = query.filter(t::id.lt(before));
        }
        query
    }};
}
pub(super) use filtered_tasks;

/// What cancelling a task sets, for `diesel::update(…).set(…)`: cancelled now with
/// `$reason` as its error, its lease cleared and its token bumped, so that a runner
/// still holding the old token can commit nothing. One cancel for the single and the
/// bulk form.
macro_rules! cancelled_columns {
    ($now:expr, $reason:expr) => {
        (
            t::state.eq(TaskState::Cancelled),
            t::finished_at.eq($now),
            t::last_error.eq($reason),
            t::lease_token.eq(t::lease_token + 1),
            t::lease_owner.eq(None::<String>),
            t::lease_until.eq(None::<i64>),
        )
    };
}
pub(super) use cancelled_columns;

/// Why a task is queued again, for the errors of [`Store::requeue`].
#[derive(Debug, Clone, Copy)]
enum Requeue {
    /// [`Store::retry_now`].
    Retry,
    /// [`Store::reschedule`].
    Reschedule,
}

impl Requeue {
    /// The error's action when the task's state does not allow it.
    fn refused(self) -> &'static str {
        match self {
            Requeue::Retry => "retry it (only pending, failed and cancelled tasks can be retried)",
            Requeue::Reschedule => {
                "reschedule it (only pending, failed and cancelled tasks can be rescheduled)"
            }
        }
    }

    /// The error's action when the task's state changed during the operation.
    fn raced(self) -> &'static str {
        match self {
            Requeue::Retry => "retry it (its state changed meanwhile)",
            Requeue::Reschedule => "reschedule it (its state changed meanwhile)",
        }
    }
}

impl Store {
    /// Every field of a task, metadata and progress included (the progress of a run
    /// this node is running as this node knows it: see `progress.rs`).
    pub async fn describe(&self, id: TaskId) -> StoreResult<Task> {
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        let mut task = load_task(&mut conn, id).await?;
        task.metadata = on_conn!(&mut conn, c => {
            m::warren_task_metadata
                .select((m::key, m::value))
                .filter(m::task_id.eq(id))
                .order(m::key_norm)
                .load(c)
                .await?
        });
        task.progress = self.progress_of(&mut conn, &task).await?;
        Ok(task)
    }

    /// Lists tasks matching `filter`, newest first (metadata not filled in).
    pub async fn list(&self, filter: &TaskFilter) -> StoreResult<Vec<Task>> {
        super::search::check_filter(filter)?;
        if !(1..=10_000).contains(&filter.limit) {
            return Err(StoreError::Invalid {
                field: "limit",
                message: format!("{} is outside 1–10000", filter.limit),
            });
        }
        let now = self.now();
        let mut pooled = self.conn().await?;
        let rows: Vec<TaskRow> =
            on_conn!(&mut pooled.any(), c => Dialect::list_tasks(c, filter, now).await?);
        rows.into_iter().map(Task::try_from).collect()
    }

    /// Task counts per type and state; `pending` counts only tasks due now, `future`
    /// the ones waiting for a later attempt.
    pub async fn queue_counts(&self) -> StoreResult<Vec<QueueCounts>> {
        let now = self.now();
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        let by_state: Vec<(String, TaskState, i64)> = on_conn!(&mut conn, c => {
            t::warren_tasks
                .group_by((t::task_type, t::state))
                .select((t::task_type, t::state, diesel::dsl::count_star()))
                .load(c)
                .await?
        });
        let later: Vec<(String, i64)> = on_conn!(&mut conn, c => {
            t::warren_tasks
                .filter(t::state.eq(TaskState::Pending))
                // Always true; see the listing's `Pending` filter.
                .filter(t::flow_key.is_null().or(t::flow_key.is_not_null()))
                .filter(t::next_attempt.gt(now))
                .group_by(t::task_type)
                .select((t::task_type, diesel::dsl::count_star()))
                .load(c)
                .await?
        });
        let rows = by_state.into_iter().map(|(ty, st, n)| {
            let future = later
                .iter()
                .find(|(lt, _)| *lt == ty && st == TaskState::Pending)
                .map_or(0, |(_, f)| *f);
            (ty, st, future, n)
        });
        let mut counts: Vec<QueueCounts> = Vec::new();
        for (task_type, state, future, n) in rows {
            let entry = match counts.iter_mut().find(|c| c.task_type == task_type) {
                Some(entry) => entry,
                None => {
                    counts.push(QueueCounts {
                        task_type: task_type.clone(),
                        ..QueueCounts::default()
                    });
                    counts.last_mut().expect("just pushed")
                }
            };
            match state {
                TaskState::Pending => {
                    entry.future += future;
                    entry.pending += n - future;
                }
                TaskState::Running => entry.running += n,
                TaskState::Completed => entry.completed += n,
                TaskState::Failed => entry.failed += n,
                TaskState::Cancelled => entry.cancelled += n,
            }
        }
        counts.sort_by(|a, b| a.task_type.cmp(&b.task_type));
        Ok(counts)
    }

    /// Runs a task as soon as possible: a pending task's next attempt moves to now
    /// (never before its not-before time); a failed or cancelled task is queued again
    /// with a fresh failure count. Running and completed tasks are refused.
    pub async fn retry_now(&self, id: TaskId) -> StoreResult<Millis> {
        self.requeue(id, self.now(), Requeue::Retry).await
    }

    /// Runs a task at `at` instead of when it was due: like [`Store::retry_now`], for a
    /// pending, failed or cancelled task, but at the given instant (never before its
    /// not-before time). Returns the next attempt.
    pub async fn reschedule(&self, id: TaskId, at: Millis) -> StoreResult<Millis> {
        self.requeue(id, at, Requeue::Reschedule).await
    }

    /// Sets the next attempt of a pending, failed or cancelled task to `at` (or its
    /// not-before time, if later); a finished task is queued again with a fresh failure
    /// count. `why` names the operation in the errors.
    async fn requeue(&self, id: TaskId, at: Millis, why: Requeue) -> StoreResult<Millis> {
        let result = self.requeue_once(id, at, why).await;
        match result {
            Err(StoreError::Database(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            ))) => {
                // Another scheduler gave its type's key to a new task between the check
                // below and the write: name that task.
                let task = self.describe(id).await?;
                if let Some(unique) = &task.unique {
                    let mut pooled = self.conn().await?;
                    let conflict = super::unique::conflict_after(
                        &mut pooled.any(),
                        id,
                        &task.task_type,
                        unique,
                    )
                    .await?;
                    return Err(conflict.unwrap_or_else(|| StoreError::Contended {
                        what: format!(
                            "task {id}'s unique key '{}' was taken and freed again while it was queued",
                            unique.key
                        ),
                    }));
                }
                result
            }
            other => other,
        }
    }

    /// One attempt of [`Store::requeue`].
    async fn requeue_once(&self, id: TaskId, at: Millis, why: Requeue) -> StoreResult<Millis> {
        let now = self.now();
        self.in_transaction(async |conn, pending| {
            let task = load_task(conn, id).await?;
            if let (Some(unique), TaskState::Failed | TaskState::Cancelled) =
                (&task.unique, task.state)
            {
                // Pending again, it would count as a duplicate: refuse while another does.
                if let Some(conflict) =
                    super::unique::conflict_after(conn, id, &task.task_type, unique).await?
                {
                    return Err(conflict);
                }
            }
            let at = task.not_before.map_or(at, |nb| nb.max(at));
            let scope = t::warren_tasks
                .filter(t::id.eq(id))
                .filter(t::state.eq(task.state));
            let n = match task.state {
                TaskState::Pending => on_conn!(conn, c => {
                    diesel::update(scope).set(t::next_attempt.eq(at)).execute(c).await?
                }),
                TaskState::Failed | TaskState::Cancelled => on_conn!(conn, c => {
                    diesel::update(scope)
                        .set((
                            t::state.eq(TaskState::Pending),
                            t::next_attempt.eq(at),
                            t::finished_at.eq(None::<i64>),
                            t::failures.eq(0),
                        ))
                        .execute(c)
                        .await?
                }),
                state => {
                    return Err(StoreError::WrongState {
                        id,
                        state,
                        action: why.refused(),
                    })
                }
            };
            if n != 1 {
                return Err(StoreError::WrongState {
                    id,
                    state: load_task(conn, id).await?.state,
                    action: why.raced(),
                });
            }
            if task.state.is_finished() {
                // Its key is as old as its last run; the rule may have changed since.
                super::flow::rekey_tasks(conn, &[id]).await?;
            }
            if at <= now {
                announce_work(conn, pending, &task.cluster).await?;
            }
            Ok(at)
        })
        .await
    }

    /// Cancels a pending or running task. A running task's lease token is bumped, so its
    /// run can no longer resolve or commit; the caller should also stop the runner.
    /// Returns the state the task was in.
    pub async fn cancel(&self, id: TaskId, reason: &str) -> StoreResult<TaskState> {
        let now = self.now();
        self.in_transaction(async |conn, pending| {
            let task = load_task(conn, id).await?;
            if task.state.is_finished() {
                return Err(StoreError::WrongState {
                    id,
                    state: task.state,
                    action: "cancel it (it has finished)",
                });
            }
            let n = on_conn!(conn, c => {
                diesel::update(
                    t::warren_tasks
                        .filter(t::id.eq(id))
                        .filter(t::lease_token.eq(task.lease_token))
                        .filter(t::state.eq(task.state)),
                )
                .set(cancelled_columns!(now, reason))
                .execute(c)
                .await?
            });
            if n != 1 {
                return Err(StoreError::WrongState {
                    id,
                    state: load_task(conn, id).await?.state,
                    action: "cancel it (its state changed meanwhile)",
                });
            }
            announce_outcome(conn, pending, id).await?;
            Ok(task.state)
        })
        .await
    }

    /// Deletes a task that is not running (cancel a running task first), with its
    /// metadata.
    ///
    /// One statement decides and deletes (`DELETE … WHERE state <> 'running'`; the
    /// metadata goes with the row, `ON DELETE CASCADE`), so a claim cannot slip in
    /// between a check and the delete: a claim that commits first makes the delete
    /// refuse with nothing removed, and one that comes after finds no task.
    pub async fn delete(&self, id: TaskId) -> StoreResult<()> {
        self.in_transaction(async |conn, _| {
            let deleted = on_conn!(conn, c => {
                diesel::delete(
                    t::warren_tasks
                        .filter(t::id.eq(id))
                        .filter(t::state.ne(TaskState::Running)),
                )
                .execute(c)
                .await?
            });
            if deleted == 1 {
                return Ok(());
            }
            // Nothing deleted: say why.
            let state = load_task(conn, id).await?.state;
            Err(StoreError::WrongState {
                id,
                state,
                action: match state {
                    TaskState::Running => "delete it while it runs (cancel it first)",
                    _ => "delete it (it was running a moment ago; try again)",
                },
            })
        })
        .await
    }

    /// Schedules a finished task again as a new task with the same type, data, aux data,
    /// priority, timeout, cluster and metadata. Returns the new id.
    pub async fn duplicate(&self, id: TaskId) -> StoreResult<TaskId> {
        let original = self.describe(id).await?;
        if !original.state.is_finished() {
            return Err(StoreError::WrongState {
                id,
                state: original.state,
                action: "duplicate it (only finished tasks can be rescheduled as new tasks)",
            });
        }
        let task = NewTask {
            task_type: original.task_type,
            data: original.data,
            options: ScheduleOptions {
                not_before: None,
                priority: Some(original.priority),
                timeout_ms: Some(original.timeout_ms),
                aux_data: original.aux_data,
                metadata: original.metadata,
                cluster: Some(original.cluster),
                // A copy made on purpose is not held back by the original's key.
                unique: None,
                waited: false,
            },
        };
        self.schedule(task).await
    }

    /// Deletes up to `limit` of the tasks that finished before `cutoff`, oldest first,
    /// with their metadata (the foreign key cascades), in one short transaction;
    /// returns how many. Callers repeat it with the same cutoff until it deletes fewer
    /// than `limit`: a backlog of a million finished tasks is pruned in many small
    /// transactions, never in one that holds its locks (and, on PostgreSQL, the vacuum
    /// horizon) for minutes.
    pub async fn prune_finished(&self, cutoff: Millis, limit: i64) -> StoreResult<usize> {
        self.in_transaction(async |conn, _| {
            Ok(on_conn!(conn, c => {
                let ids: Vec<i64> = t::warren_tasks
                    .select(t::id)
                    .filter(t::finished_at.lt(cutoff))
                    .order(t::finished_at)
                    .limit(limit)
                    .load(c)
                    .await?;
                // The condition again: a task retried since it was read is no longer
                // finished, and stays.
                diesel::delete(
                    t::warren_tasks
                        .filter(t::id.eq_any(&ids))
                        .filter(t::finished_at.lt(cutoff)),
                )
                .execute(c)
                .await?
            }))
        })
        .await
    }

    /// Reads one metadata value of a task (keys compare case-insensitively).
    pub async fn metadata(&self, id: TaskId, key: &str) -> StoreResult<Option<String>> {
        let mut pooled = self.conn().await?;
        get_metadata_on(&mut pooled.any(), id, key).await
    }

    /// Sets one metadata value of a task.
    pub async fn set_metadata(&self, id: TaskId, key: &str, value: &str) -> StoreResult<()> {
        self.in_transaction(async |conn, _| {
            load_row(conn, id).await?;
            set_metadata_on(conn, id, key, value).await
        })
        .await
    }
}
