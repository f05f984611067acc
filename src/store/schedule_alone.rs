//! Scheduling on PostgreSQL outside a caller's transaction, as one statement: the
//! insert and the wake-up of the clusters with work due now travel together, and the
//! statement commits on its own. A task scheduled this way costs one round trip where
//! a transaction of its own costs four (begin, insert, notify, commit), so one client
//! enqueues at close to the rate PostgreSQL commits.
//!
//! It is all or nothing like the transaction it replaces (one statement commits
//! whole), and the `NOTIFY` is delivered only if it commits. Tasks with metadata still
//! go through a transaction (their metadata rows need the new ids).

use super::schedule::{rows_for, PgInsertTasks};
use super::signals::TASKS_CHANNEL;
use super::{AnyConn, NewTask, Store, StoreResult};
use crate::task::{Millis, TaskId};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment};
use diesel::sql_types::BigInt;
use diesel::{QueryResult, QueryableByName};
use diesel_async::RunQueryDsl;

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
    #[derive(QueryableByName)]
    struct Inserted {
        #[diesel(sql_type = BigInt)]
        id: TaskId,
    }
    let statement = PgScheduleAlone {
        insert: PgInsertTasks::new(&rows),
        now,
    };
    let inserted: Vec<Inserted> = statement.load(c).await?;
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
