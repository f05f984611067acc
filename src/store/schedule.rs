//! Scheduling managed tasks, alone or in batches.
//!
//! There is one way to schedule inside a transaction that is not the store's own:
//! [`insert_tasks`], through [`super::PooledConnection::schedule_batch`] (an
//! application's transaction) or [`super::Transaction::schedule`] (a task run's).
//! Both collect the wake-ups and deliver them when that transaction commits, on both
//! backends.

use super::conn::on_conn;
use super::dialect::Dialect;
use super::schema::{warren_task_metadata, warren_tasks};
use super::signals::{announce_work, Pending};
use super::unique::{insert_unique, Scheduled};
use super::{AnyConn, NewTask, Store, StoreError, StoreResult, DEFAULT_CLUSTER};
use crate::task::{is_valid_name_part, Millis, Priority, TaskId, TaskState};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::AstPass;
use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text};
use serde_json::Value;

#[derive(Clone, Insertable)]
#[diesel(table_name = warren_tasks, treat_none_as_default_value = false)]
pub(super) struct TaskInsert {
    pub(super) task_type: String,
    pub(super) cluster: String,
    pub(super) state: TaskState,
    pub(super) data: String,
    pub(super) aux_data: Option<String>,
    pub(super) priority: i32,
    pub(super) timeout_ms: i64,
    pub(super) created_at: i64,
    pub(super) not_before: Option<i64>,
    pub(super) next_attempt: i64,
    /// The stored unique key (with its period's start), if any.
    pub(super) unique_key: Option<String>,
    /// The states in which the task counts as a duplicate, if it has a key.
    pub(super) unique_states: Option<i32>,
    /// Someone will wait for the outcome ([`super::ScheduleOptions::waited`]).
    pub(super) waited: bool,
}

#[derive(Clone, Insertable)]
#[diesel(table_name = warren_task_metadata, treat_none_as_default_value = false)]
pub(super) struct MetadataInsert {
    pub task_id: TaskId,
    pub key_norm: String,
    pub key: String,
    pub value: String,
}

/// Largest number of tasks one insert statement carries (both backends' bind limits
/// stay far away).
pub(super) const BATCH_CHUNK: usize = 1000;

fn json_object(field: &'static str, value: &Value) -> StoreResult<()> {
    match value {
        Value::Object(_) => Ok(()),
        other => Err(StoreError::Invalid {
            field,
            message: format!("must be a JSON object, got {}", json_kind(other)),
        }),
    }
}

/// What kind of JSON value `v` is, as messages name it ("an array", "null").
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl NewTask {
    /// Checks what the store would refuse in this task, without a database: data and
    /// aux data must be JSON objects, the timeout 0 or more, a cluster given a valid
    /// name, metadata keys non-empty. Errors are [`StoreError::Invalid`] naming the
    /// field as this type does (`data`, `aux_data`, `timeout_ms`, `cluster`,
    /// `metadata`, and the unique options' API names, such as `unique_key`). Scheduling calls it too; callers that want to refuse a batch item
    /// by item before opening a transaction call it first.
    pub fn validate(&self) -> StoreResult<()> {
        json_object("data", &self.data)?;
        let o = &self.options;
        if let Some(aux) = &o.aux_data {
            json_object("aux_data", aux)?;
        }
        if o.timeout_ms.is_some_and(|t| t < 0) {
            return Err(StoreError::Invalid {
                field: "timeout_ms",
                message: "must be 0 (the task type's timeout) or a positive number of ms".into(),
            });
        }
        if let Some(cluster) = &o.cluster {
            if !is_valid_name_part(cluster) {
                return Err(StoreError::Invalid {
                    field: "cluster",
                    message: format!("'{cluster}' may only use letters, digits, '_', '-' and '.'"),
                });
            }
        }
        if o.metadata.iter().any(|(key, _)| key.trim().is_empty()) {
            return Err(empty_metadata_key());
        }
        if let Some(unique) = &o.unique {
            unique.validate()?;
        }
        Ok(())
    }
}

fn empty_metadata_key() -> StoreError {
    StoreError::Invalid {
        field: "metadata",
        message: "keys must not be empty".into(),
    }
}

/// Validates a task ([`NewTask::validate`]) and turns it into a row; `registered` is
/// the cluster of its type, for a task scheduled without one (a name a module
/// definition declared, so valid).
fn to_row(task: &NewTask, registered: Option<&String>, now: Millis) -> StoreResult<TaskInsert> {
    task.validate()?;
    let o = &task.options;
    let cluster = o
        .cluster
        .clone()
        .or_else(|| registered.cloned())
        .unwrap_or_else(|| DEFAULT_CLUSTER.into());
    // A debounced task waits its delay before it first starts, too.
    let earliest = match o.unique.as_ref().and_then(|u| u.debounce) {
        Some(debounce) => now.saturating_add(debounce.delay_ms),
        None => now,
    };
    Ok(TaskInsert {
        task_type: task.task_type.to_string(),
        cluster,
        state: TaskState::Pending,
        data: task.data.to_string(),
        aux_data: o.aux_data.as_ref().map(Value::to_string),
        priority: o.priority.unwrap_or(Priority::NORMAL).0,
        timeout_ms: o.timeout_ms.unwrap_or(0),
        created_at: now,
        not_before: o.not_before,
        next_attempt: o.not_before.map_or(earliest, |nb| nb.max(earliest)),
        unique_key: o.unique.as_ref().map(|u| u.stored_key(now)),
        unique_states: o.unique.as_ref().map(|u| u.states.bits()),
        waited: o.waited,
    })
}

/// Metadata rows for a task; a key given twice (in any case) keeps its last value.
pub(super) fn metadata_rows(
    task_id: TaskId,
    metadata: &[(String, String)],
) -> StoreResult<Vec<MetadataInsert>> {
    let mut rows: Vec<MetadataInsert> = Vec::new();
    for (key, value) in metadata {
        if key.trim().is_empty() {
            return Err(empty_metadata_key());
        }
        let key_norm = key.to_lowercase();
        rows.retain(|r| r.key_norm != key_norm);
        rows.push(MetadataInsert {
            task_id,
            key_norm,
            key: key.clone(),
            value: value.clone(),
        });
    }
    Ok(rows)
}

/// `INSERT … SELECT … FROM unnest(arrays)`, the insert of the batch statement in
/// `schedule_alone.rs`: the rows travel as one array per column, so the statement's
/// text is the same for one task or a thousand. Each connection parses
/// it once and PostgreSQL keeps one plan for it, where a multi-row `VALUES` list is a
/// new statement (and ten thousand parameters to plan) for every batch size. The rows
/// are inserted, and their ids drawn, in input order.
pub(super) struct PgInsertTasks<'a> {
    task_types: Vec<&'a str>,
    clusters: Vec<&'a str>,
    data: Vec<&'a str>,
    aux_data: Vec<Option<&'a str>>,
    priorities: Vec<i32>,
    timeouts: Vec<i64>,
    created: Vec<i64>,
    not_before: Vec<Option<i64>>,
    next_attempts: Vec<i64>,
    waited: Vec<bool>,
}

impl<'a> PgInsertTasks<'a> {
    pub(super) fn new(rows: &'a [TaskInsert]) -> PgInsertTasks<'a> {
        PgInsertTasks {
            task_types: rows.iter().map(|r| r.task_type.as_str()).collect(),
            clusters: rows.iter().map(|r| r.cluster.as_str()).collect(),
            data: rows.iter().map(|r| r.data.as_str()).collect(),
            aux_data: rows.iter().map(|r| r.aux_data.as_deref()).collect(),
            priorities: rows.iter().map(|r| r.priority).collect(),
            timeouts: rows.iter().map(|r| r.timeout_ms).collect(),
            created: rows.iter().map(|r| r.created_at).collect(),
            not_before: rows.iter().map(|r| r.not_before).collect(),
            next_attempts: rows.iter().map(|r| r.next_attempt).collect(),
            waited: rows.iter().map(|r| r.waited).collect(),
        }
    }
}

/// The columns of the row source `r` that [`PgInsertTasks::push_insert_head`] reads,
/// in the order their values are given.
pub(super) const ROW_COLUMNS: &str = "task_type, cluster, data, aux_data, priority, \
     timeout_ms, created_at, not_before, next_attempt, waited";

impl PgInsertTasks<'_> {
    /// The insert, without its `RETURNING` clause.
    pub(super) fn push_insert<'b>(&'b self, out: &mut AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        Self::push_insert_head(out);
        out.push_sql(" FROM unnest(");
        out.push_bind_param::<Array<Text>, _>(&self.task_types)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<Text>, _>(&self.clusters)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<Text>, _>(&self.data)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.aux_data)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<Integer>, _>(&self.priorities)?;
        out.push_sql("::integer[], ");
        out.push_bind_param::<Array<BigInt>, _>(&self.timeouts)?;
        out.push_sql("::bigint[], ");
        out.push_bind_param::<Array<BigInt>, _>(&self.created)?;
        out.push_sql("::bigint[], ");
        out.push_bind_param::<Array<Nullable<BigInt>>, _>(&self.not_before)?;
        out.push_sql("::bigint[], ");
        out.push_bind_param::<Array<BigInt>, _>(&self.next_attempts)?;
        out.push_sql("::bigint[], ");
        out.push_bind_param::<Array<Bool>, _>(&self.waited)?;
        out.push_sql("::boolean[]) WITH ORDINALITY AS r(");
        out.push_sql(ROW_COLUMNS);
        out.push_sql(", n) ");
        Self::push_flow_join(out);
        out.push_sql(" ORDER BY r.n");
        Ok(())
    }

    /// `INSERT INTO warren_tasks (…) SELECT r.…, flow key`: the insert of rows `r` (a
    /// source with the task columns, joined to their registry row `tt`), up to its
    /// `FROM`.
    pub(super) fn push_insert_head(out: &mut AstPass<'_, '_, Pg>) {
        out.push_sql(
            "INSERT INTO warren_tasks (task_type, cluster, state, data, aux_data, priority, \
             timeout_ms, created_at, not_before, next_attempt, waited, flow_key) \
             SELECT r.task_type, r.cluster, '",
        );
        out.push_sql(TaskState::Pending.as_str());
        out.push_sql(
            "', r.data, r.aux_data, r.priority, r.timeout_ms, \
             r.created_at, r.not_before, r.next_attempt, r.waited, ",
        );
        // The key of a task of a type with a flow rule (`flow.rs`), from the
        // registry joined below: a join, not a sub-select per row, which made PostgreSQL
        // plan each insert anew (single enqueue at 0.6×).
        out.push_sql(
            "CASE WHEN tt.task_type IS NULL THEN NULL \
             ELSE warren_flow_key(r.data, tt.concurrency_key) END",
        );
    }

    /// `LEFT JOIN warren_task_types tt …`: each row's registry entry, if its type has a
    /// flow rule in the row's cluster.
    pub(super) fn push_flow_join(out: &mut AstPass<'_, '_, Pg>) {
        out.push_sql("LEFT JOIN warren_task_types tt ON tt.task_type = r.task_type AND ");
        out.push_sql(super::flow::HAS_RULE_SQL);
        out.push_sql(" AND tt.cluster = r.cluster");
    }
}

/// Inserts metadata rows (see [`Dialect::insert_metadata`]).
pub(super) async fn insert_metadata(
    conn: &mut AnyConn<'_>,
    rows: Vec<MetadataInsert>,
) -> StoreResult<()> {
    Ok(on_conn!(conn, c => Dialect::insert_metadata(c, rows).await)?)
}

/// The validated rows of `tasks`, scheduled at `now`.
pub(super) fn rows_for(
    tasks: &[NewTask],
    store: &Store,
    now: Millis,
) -> StoreResult<Vec<TaskInsert>> {
    // Read from the store's copy, not the database: on SQLite a read before the first
    // write of a caller's deferred transaction could make that write fail as busy.
    let registered = store.registered_types();
    tasks
        .iter()
        .map(|t| {
            to_row(
                t,
                registered.get(t.task_type.as_str()).map(|r| &r.cluster),
                now,
            )
        })
        .collect()
}

/// Inserts `tasks` on `conn` (inside whatever transaction is open there) and queues the
/// wake-ups. Returns the new ids in input order; a task with a unique key that has a
/// duplicate gets the duplicate's id instead, and nothing of it is inserted.
pub(super) async fn insert_tasks(
    conn: &mut AnyConn<'_>,
    pending: &mut Pending,
    tasks: &[NewTask],
    store: &Store,
) -> StoreResult<Vec<TaskId>> {
    let scheduled = insert_tasks_reporting(conn, pending, tasks, store).await?;
    Ok(scheduled.into_iter().map(|s| s.id).collect())
}

/// As [`insert_tasks`], saying for each task whether it was created.
pub(super) async fn insert_tasks_reporting(
    conn: &mut AnyConn<'_>,
    pending: &mut Pending,
    tasks: &[NewTask],
    store: &Store,
) -> StoreResult<Vec<Scheduled>> {
    let tasks = &*traced(tasks);
    let now = store.now();
    let rows = rows_for(tasks, store, now)?;
    let mut scheduled: Vec<Scheduled> = Vec::with_capacity(rows.len());
    // In input order, so ids follow it: runs of tasks without a unique key go in
    // multi-row inserts; a task with one goes alone, and may find a duplicate (an
    // earlier task of this batch included).
    let mut start = 0;
    while start < rows.len() {
        if let Some(unique) = &tasks[start].options.unique {
            let one = insert_unique(conn, &rows[start], unique, now).await?;
            if one.created {
                super::flow::key_tasks(conn, &[one.id]).await?;
            }
            scheduled.push(one);
            start += 1;
            continue;
        }
        let end = (start..rows.len())
            .find(|&i| tasks[i].options.unique.is_some() || i - start == BATCH_CHUNK)
            .unwrap_or(rows.len());
        let rows = &rows[start..end];
        let ids = on_conn!(conn, c => Dialect::insert_tasks(c, pending, rows, now).await)?;
        scheduled.extend(ids.into_iter().map(|id| Scheduled { id, created: true }));
        start = end;
    }
    let mut meta = Vec::new();
    for (task, s) in tasks.iter().zip(&scheduled) {
        if s.created {
            meta.extend(metadata_rows(s.id, &task.options.metadata)?);
        }
    }
    insert_metadata(conn, meta).await?;
    // The tasks inserted without a unique key were announced with their insert.
    let unique_created = rows
        .iter()
        .zip(tasks)
        .zip(&scheduled)
        .filter(|((_, task), s)| s.created && task.options.unique.is_some())
        .map(|((row, _), _)| row);
    announce_due(conn, pending, unique_created, now).await?;
    Ok(scheduled)
}

/// Announces, once each, the clusters of `rows` that are due by `now`.
async fn announce_due<'r>(
    conn: &mut AnyConn<'_>,
    pending: &mut Pending,
    rows: impl Iterator<Item = &'r TaskInsert>,
    now: Millis,
) -> StoreResult<()> {
    let mut clusters: Vec<&str> = rows
        .filter(|r| r.next_attempt <= now)
        .map(|r| r.cluster.as_str())
        .collect();
    clusters.sort_unstable();
    clusters.dedup();
    for cluster in clusters {
        announce_work(conn, pending, cluster).await?;
    }
    Ok(())
}

/// `tasks`, each with the trace context of the current span in its metadata unless it
/// has one (see `crate::trace`); `tasks` as they are when there is none.
fn traced(tasks: &[NewTask]) -> std::borrow::Cow<'_, [NewTask]> {
    let has_trace = |task: &NewTask| crate::trace::has_trace(&task.options.metadata);
    let parent = match crate::trace::TraceParent::current() {
        Some(parent) if !tasks.iter().all(has_trace) => parent,
        _ => return std::borrow::Cow::Borrowed(tasks),
    };
    let mut traced = tasks.to_vec();
    for task in &mut traced {
        crate::trace::add_trace(&mut task.options.metadata, parent);
    }
    std::borrow::Cow::Owned(traced)
}

impl Store {
    /// Schedules a managed task in a transaction of its own.
    pub async fn schedule(&self, task: NewTask) -> StoreResult<TaskId> {
        let ids = self.schedule_batch(std::slice::from_ref(&task)).await?;
        Ok(ids[0])
    }

    /// Schedules several managed tasks in one transaction: all or none.
    ///
    /// On PostgreSQL, tasks without metadata are scheduled by one statement that inserts
    /// them and sends the wake-up (see `schedule_alone.rs`): one round trip instead of
    /// four (begin, insert, notify, commit).
    pub async fn schedule_batch(&self, tasks: &[NewTask]) -> StoreResult<Vec<TaskId>> {
        let tasks = &*traced(tasks);
        if self.backend() == super::BackendKind::Postgres
            && tasks
                .iter()
                .all(|t| t.options.metadata.is_empty() && t.options.unique.is_none())
        {
            return super::schedule_alone::schedule_alone(self, tasks).await;
        }
        self.in_transaction(async |conn, pending| insert_tasks(conn, pending, tasks, self).await)
            .await
    }

    /// As [`Store::schedule_batch`], saying for each task whether it was created or a
    /// duplicate with the same unique key was found (see [`super::Unique`]).
    pub async fn schedule_batch_reporting(&self, tasks: &[NewTask]) -> StoreResult<Vec<Scheduled>> {
        let tasks = &*traced(tasks);
        if tasks.iter().all(|t| t.options.unique.is_none()) {
            let ids = self.schedule_batch(tasks).await?;
            return Ok(ids
                .into_iter()
                .map(|id| Scheduled { id, created: true })
                .collect());
        }
        self.in_transaction(async |conn, pending| {
            insert_tasks_reporting(conn, pending, tasks, self).await
        })
        .await
    }

    /// Wakes this process's queue for `cluster` (or every cluster with
    /// [`super::signals::ANY_CLUSTER`]), for work that became due without a write of
    /// the store's (a "run now" of a scheduled tag).
    pub fn wake(&self, cluster: &str) {
        let _ = self.inner.signals.new_work.send(cluster.to_string());
    }

    /// Subscribes to "new work in cluster X" wake-ups. The payload is the cluster, or
    /// `*` when every cluster should look again.
    pub async fn subscribe_work(&self) -> StoreResult<tokio::sync::broadcast::Receiver<String>> {
        let rx = self.inner.signals.new_work.subscribe();
        if self.backend() == super::BackendKind::Postgres {
            self.inner.signals.ensure_listener(&self.inner.url).await?;
        }
        Ok(rx)
    }
}
