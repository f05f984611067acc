//! Scheduling on PostgreSQL as one statement: the insert and the wake-up of the
//! clusters with work due now travel together. Outside a caller's transaction the
//! statement commits on its own: a task scheduled this way costs one round trip where
//! a transaction of its own costs four (begin, insert, notify, commit), so one client
//! enqueues at close to the rate PostgreSQL commits. Inside a transaction (a caller's,
//! `PooledConnection::schedule`, or a run's) it saves the separate `NOTIFY` statement:
//! three round trips instead of four for a caller's task.
//!
//! It is all or nothing like the transaction it replaces (one statement commits
//! whole), and the `NOTIFY` is delivered only if it commits. Tasks with metadata still
//! go through a transaction (their metadata rows need the new ids), and so do tasks
//! with a unique key (each is inserted alone, and may find a duplicate).
//!
//! One task takes a statement of its own: its row as one `VALUES` row and its wake-up
//! as a lateral call, where the batch form unnests arrays, sorts them and groups the
//! clusters. PostgreSQL spends about 60 µs less on it (200 against 260 µs a statement
//! with commits unsynced, pgbench, one client), which a one-by-one enqueuer waits for.

use super::schedule::{rows_for, PgInsertTasks, TaskInsert, ROW_COLUMNS};
use super::signals::TASKS_CHANNEL;
use super::{AnyConn, NewTask, Store, StoreResult};
use crate::task::{Millis, TaskId};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment};
use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text};
use diesel::{QueryResult, QueryableByName};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// Schedules `tasks` (none with metadata) on PostgreSQL with one statement; the new
/// ids in input order.
pub(super) async fn schedule_alone(store: &Store, tasks: &[NewTask]) -> StoreResult<Vec<TaskId>> {
    debug_assert!(tasks.iter().all(|t| t.options.metadata.is_empty()));
    if tasks.is_empty() {
        return Ok(Vec::new());
    }
    let now = store.now();
    let rows = rows_for(tasks, store, now)?;
    let mut pooled = store.conn().await?;
    let AnyConn::Postgres(c) = pooled.any() else {
        unreachable!("scheduling alone runs on PostgreSQL only");
    };
    Ok(insert_announcing(c, &rows, now).await?)
}

/// Inserts `rows` (none with a unique key) on PostgreSQL and wakes the clusters of
/// those due by `now`, in one statement, inside whatever transaction `c` has open (the
/// wake-up is delivered when it commits) or as a transaction of its own. Returns the
/// new ids in input order.
pub(super) async fn insert_announcing(
    c: &mut AsyncPgConnection,
    rows: &[TaskInsert],
    now: Millis,
) -> QueryResult<Vec<TaskId>> {
    #[derive(QueryableByName)]
    struct Inserted {
        #[diesel(sql_type = BigInt)]
        id: TaskId,
    }
    let inserted: Vec<Inserted> = match rows {
        [] => return Ok(Vec::new()),
        [row] => PgScheduleOne { row, now }.load(c).await?,
        _ => {
            PgScheduleAlone {
                insert: PgInsertTasks::new(rows),
                now,
            }
            .load(c)
            .await?
        }
    };
    let mut ids: Vec<TaskId> = inserted.into_iter().map(|r| r.id).collect();
    // Ids are drawn in input order; RETURNING's order is not promised.
    ids.sort_unstable();
    Ok(ids)
}

/// `WITH ins AS (INSERT … RETURNING id, cluster, next_attempt), told AS (SELECT
/// pg_notify('warren_tasks', cluster) for each cluster with a task due now) SELECT id
/// FROM ins`. The text is the same for any number of tasks, so each connection
/// prepares it once.
struct PgScheduleAlone<'a> {
    insert: PgInsertTasks<'a>,
    now: Millis,
}

super::pg_statement!(PgScheduleAlone<'_>);

impl QueryFragment<Pg> for PgScheduleAlone<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("WITH ins AS (");
        self.insert.push_insert(&mut out)?;
        out.push_sql(" RETURNING id, cluster, next_attempt), told AS (SELECT pg_notify('");
        out.push_sql(TASKS_CHANNEL);
        out.push_sql("', d.cluster) FROM (SELECT DISTINCT cluster FROM ins WHERE next_attempt <= ");
        out.push_bind_param::<BigInt, _>(&self.now)?;
        // Referencing `told` makes PostgreSQL run it: a CTE nobody reads is skipped.
        out.push_sql(") d) SELECT id FROM ins WHERE (SELECT count(*) FROM told) >= 0");
        Ok(())
    }
}

/// `WITH ins AS (INSERT … SELECT … FROM (VALUES (one row)) r LEFT JOIN warren_task_types
/// … RETURNING …) SELECT ins.id FROM ins LEFT JOIN LATERAL (SELECT pg_notify(…) WHERE
/// due now) ON true`: one task, inserted and announced with the same columns, flow key
/// and wake-up rule as [`PgScheduleAlone`].
struct PgScheduleOne<'a> {
    row: &'a TaskInsert,
    now: Millis,
}

super::pg_statement!(PgScheduleOne<'_>);

impl QueryFragment<Pg> for PgScheduleOne<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let row = self.row;
        out.push_sql("WITH ins AS (");
        PgInsertTasks::push_insert_head(&mut out);
        out.push_sql(" FROM (VALUES (");
        out.push_bind_param::<Text, _>(&row.task_type)?;
        out.push_sql("::text, ");
        out.push_bind_param::<Text, _>(&row.cluster)?;
        out.push_sql("::text, ");
        out.push_bind_param::<Text, _>(&row.data)?;
        out.push_sql("::text, ");
        out.push_bind_param::<Nullable<Text>, _>(&row.aux_data)?;
        out.push_sql("::text, ");
        out.push_bind_param::<Integer, _>(&row.priority)?;
        out.push_sql("::integer, ");
        out.push_bind_param::<BigInt, _>(&row.timeout_ms)?;
        out.push_sql("::bigint, ");
        out.push_bind_param::<BigInt, _>(&row.created_at)?;
        out.push_sql("::bigint, ");
        out.push_bind_param::<Nullable<BigInt>, _>(&row.not_before)?;
        out.push_sql("::bigint, ");
        out.push_bind_param::<BigInt, _>(&row.next_attempt)?;
        out.push_sql("::bigint, ");
        out.push_bind_param::<Bool, _>(&row.waited)?;
        out.push_sql("::boolean)) AS r(");
        out.push_sql(ROW_COLUMNS);
        out.push_sql(") ");
        PgInsertTasks::push_flow_join(&mut out);
        out.push_sql(" RETURNING id, cluster, next_attempt) SELECT ins.id FROM ins ");
        // A lateral sub-select that returns no row (a task not yet due) still keeps
        // the task's row: LEFT JOIN … ON true.
        out.push_sql("LEFT JOIN LATERAL (SELECT pg_notify('");
        out.push_sql(TASKS_CHANNEL);
        out.push_sql("', ins.cluster) WHERE ins.next_attempt <= ");
        out.push_bind_param::<BigInt, _>(&self.now)?;
        out.push_sql(") told ON true");
        Ok(())
    }
}
