//! What SQLite does its own way (see `dialect.rs`): one writer at a time (`BEGIN
//! IMMEDIATE` where the store reads then writes), multi-row inserts through diesel's
//! synchronous API on the connection's blocking thread, wake-ups delivered by the
//! store after the commit, and task SQL checked by the connection's guard.

use super::bulk::BulkCandidate;
use super::claim::ClaimParams;
use super::conn::{finish, SqliteConn};
use super::dialect::{Announce, Dialect, LockWhen};
use super::flow::sqlite_flow_candidates;
use super::manage::filtered_tasks;
use super::model::TaskRow;
use super::pg_policy::PgStatementPolicy;
use super::schedule::{MetadataInsert, TaskInsert, BATCH_CHUNK};
use super::schema::warren_paused::dsl as p;
use super::schema::warren_tasks::dsl as t;
use super::schema::{warren_task_metadata, warren_tasks};
use super::signals::Pending;
use super::sqlite_guard::{self, Failure, Want};
use super::task_sql::{Ran, SqlCanceller, TaskSqlError, TaskSqlOutput, TaskSqlWant, TaskStatement};
use super::unique::COUNTS_AS_DUPLICATE;
use super::TaskFilter;
use super::{dynamic, AnyConn, StoreResult};
use crate::task::{Millis, TaskId, TaskState};
use diesel::connection::AnsiTransactionManager;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text};
use diesel_async::RunQueryDsl;

impl Dialect for SqliteConn {
    fn outcome_returns_waited(&self) -> bool {
        // Every outcome is announced after the commit anyway, and SQLite builds RETURNING
        // rows through a temporary table: a cost with nothing to gain.
        false
    }

    async fn begin(&mut self, when: LockWhen) -> QueryResult<()> {
        let sql = match when {
            LockWhen::AtBegin => "BEGIN IMMEDIATE",
            LockWhen::AtFirstWrite => "BEGIN",
        };
        self.spawn_blocking(move |inner| AnsiTransactionManager::begin_transaction_sql(inner, sql))
            .await
    }

    async fn begin_for_task_sql(&mut self) -> QueryResult<SqlCanceller> {
        let guard = self
            .spawn_blocking(|inner| {
                AnsiTransactionManager::begin_transaction_sql(inner, "BEGIN")?;
                Ok(sqlite_guard::current())
            })
            .await?;
        Ok(SqlCanceller::sqlite(guard))
    }

    async fn insert_tasks(
        &mut self,
        pending: &mut Pending,
        rows: &[TaskInsert],
        now: Millis,
    ) -> QueryResult<Vec<TaskId>> {
        let mut clusters: Vec<String> = rows
            .iter()
            .filter(|r| r.next_attempt <= now)
            .map(|r| r.cluster.clone())
            .collect();
        clusters.sort_unstable();
        clusters.dedup();
        let rows = rows.to_vec();
        // diesel-async cannot build a multi-row insert for SQLite.
        let mut ids: Vec<TaskId> = self
            .spawn_blocking(move |inner| {
                if let [row] = rows.as_slice() {
                    // One task (each single enqueue): a statement of one shape, which the
                    // connection prepares once, rather than a batch statement prepared
                    // anew each time (and with it the keying triggers compiled again:
                    // half the cost of an enqueue).
                    return diesel::RunQueryDsl::get_results(
                        diesel::insert_into(warren_tasks::table)
                            .values(row)
                            .returning(warren_tasks::id),
                        inner,
                    );
                }
                diesel::RunQueryDsl::get_results(
                    diesel::insert_into(warren_tasks::table)
                        .values(&rows)
                        .returning(warren_tasks::id),
                    inner,
                )
            })
            .await?;
        // One multi-row insert draws its ids in input order; RETURNING's order is not
        // promised, so sort them back.
        ids.sort_unstable();
        // Delivered by the store after the commit.
        pending.clusters.extend(clusters);
        Ok(ids)
    }

    async fn insert_unless_duplicate(&mut self, row: &TaskInsert) -> QueryResult<Option<TaskId>> {
        // One statement: it takes the write lock before it reads, so no other writer
        // can add the duplicate between the look and the insert. SQLite keeps no
        // unique index over the states that count: such an index would be upkeep
        // compiled into every claim and resolution, which change `state`.
        #[derive(QueryableByName)]
        struct Inserted {
            #[diesel(sql_type = BigInt)]
            id: TaskId,
        }
        let inserted: Vec<Inserted> = diesel::sql_query(sqlite_insert_unless_duplicate())
            .bind::<Text, _>(&row.task_type)
            .bind::<Text, _>(&row.cluster)
            .bind::<Text, _>(row.state.as_str())
            .bind::<Text, _>(&row.data)
            .bind::<Nullable<Text>, _>(&row.aux_data)
            .bind::<Integer, _>(row.priority)
            .bind::<BigInt, _>(row.timeout_ms)
            .bind::<BigInt, _>(row.created_at)
            .bind::<Nullable<BigInt>, _>(row.not_before)
            .bind::<BigInt, _>(row.next_attempt)
            .bind::<Nullable<Text>, _>(&row.unique_key)
            .bind::<Nullable<Integer>, _>(row.unique_states)
            .bind::<Bool, _>(row.waited)
            .bind::<Text, _>(&row.task_type)
            .bind::<Nullable<Text>, _>(&row.unique_key)
            .load(self)
            .await?;
        Ok(inserted.into_iter().next().map(|r| r.id))
    }

    async fn insert_metadata(&mut self, rows: Vec<MetadataInsert>) -> QueryResult<()> {
        for chunk in rows.chunks(BATCH_CHUNK) {
            let chunk = chunk.to_vec();
            self.spawn_blocking(move |inner| {
                diesel::RunQueryDsl::execute(
                    diesel::insert_into(warren_task_metadata::table).values(&chunk),
                    inner,
                )
            })
            .await?;
        }
        Ok(())
    }

    async fn claim(&mut self, params: &ClaimParams<'_>) -> StoreResult<Vec<TaskRow>> {
        // One writer at a time: select and take inside one immediate transaction.
        Dialect::begin(self, LockWhen::AtBegin).await?;
        let taken = take_due(self, params).await;
        finish(&mut AnyConn::Sqlite(self), taken).await
    }

    async fn list_tasks(&mut self, filter: &TaskFilter, now: Millis) -> QueryResult<Vec<TaskRow>> {
        filtered_tasks!(
            diesel::sqlite::Sqlite,
            filter,
            now,
            super::search::sqlite_data_equals
        )
        .select(TaskRow::as_select())
        .order(warren_tasks::id.desc())
        .limit(filter.limit)
        .load(self)
        .await
    }

    async fn count_tasks(&mut self, filter: &TaskFilter, now: Millis) -> QueryResult<i64> {
        filtered_tasks!(
            diesel::sqlite::Sqlite,
            filter,
            now,
            super::search::sqlite_data_equals
        )
        .count()
        .get_result(self)
        .await
    }

    async fn bulk_candidates(
        &mut self,
        filter: &TaskFilter,
        now: Millis,
        limit: i64,
    ) -> QueryResult<Vec<BulkCandidate>> {
        filtered_tasks!(
            diesel::sqlite::Sqlite,
            filter,
            now,
            super::search::sqlite_data_equals
        )
        .select(BulkCandidate::as_select())
        .order(warren_tasks::id.desc())
        .limit(limit)
        .load(self)
        .await
    }

    async fn announce(&mut self, pending: &mut Pending, announce: Announce<'_>) -> QueryResult<()> {
        // SQLite has no notifications: the store delivers them after the commit.
        match announce {
            Announce::Work { cluster } => pending.clusters.push(cluster.to_string()),
            Announce::Outcome { id } | Announce::OutcomeWaited { id, .. } => {
                pending.outcomes.push(id)
            }
        }
        Ok(())
    }

    async fn run_task_statement(
        &mut self,
        _policy: &PgStatementPolicy,
        statement: &TaskStatement,
        _canceller: Option<&SqlCanceller>,
    ) -> Result<Ran, TaskSqlError> {
        // The guard's authorizer is the policy; its progress handler the canceller.
        let sql = dynamic::sqlite_placeholders(&statement.sql);
        let params = statement.params.clone();
        let want = match statement.want {
            TaskSqlWant::Changes => Want::Changes,
            TaskSqlWant::Rows { max_bytes } => Want::Rows { max_bytes },
        };
        let result = self
            .spawn_blocking(move |inner| {
                Ok(match sqlite_guard::current() {
                    Some(guard) => {
                        sqlite_guard::run_task_statement(inner, &guard, &sql, &params, want)
                            .map(|output| (output, guard.is_tainted()))
                    }
                    None => Err(Failure::Refused(
                        "this connection has no statement guard: task SQL cannot run on it".into(),
                    )),
                })
            })
            .await?;
        match result {
            Ok((output, taints_session)) => Ok(Ran {
                output: match output {
                    sqlite_guard::Output::Changes(n) => TaskSqlOutput::Changes(n),
                    sqlite_guard::Output::Rows(rows) => TaskSqlOutput::Rows(rows),
                },
                taints_session,
                // SQLite never groups runs.
                binds_transaction: false,
            }),
            Err(failure) => Err(match failure {
                Failure::Refused(reason) => TaskSqlError::Refused(reason),
                Failure::Empty => TaskSqlError::Empty,
                Failure::MoreThanOne => TaskSqlError::MoreThanOne,
                Failure::TooLarge(limit) => TaskSqlError::TooLarge { limit },
                Failure::Interrupted => TaskSqlError::Interrupted,
                Failure::TransactionEnded => TaskSqlError::TransactionEnded,
                Failure::Sqlite { code, message } => TaskSqlError::Sqlite { code, message },
            }),
        }
    }
}

/// One cluster's due tasks without a key, in queue order, at most `limit`, outside
/// `paused_types`: `(id, priority, next_attempt)`. The statement names the index it
/// walks (`warren_tasks_due`, whose order is the queue's), so it stops after `limit`
/// entries: once `ANALYZE` had run (as `PRAGMA optimize` or an operator does), SQLite
/// 3.53's planner chose to scan the whole table and sort it on every claim instead
/// (`cargo bench --bench store`, claim 1 + complete: 0.6x, the scan growing with the
/// queue).
fn plain_due(
    inner: &mut diesel::SqliteConnection,
    cluster: &str,
    now: Millis,
    limit: i64,
    paused_types: &[String],
) -> QueryResult<Vec<(TaskId, i32, i64)>> {
    use diesel::RunQueryDsl as Sync;
    #[derive(QueryableByName)]
    struct Due {
        #[diesel(sql_type = BigInt)]
        id: i64,
        #[diesel(sql_type = Integer)]
        priority: i32,
        #[diesel(sql_type = BigInt)]
        next_attempt: i64,
    }
    let query = diesel::sql_query(plain_due_sql(!paused_types.is_empty()))
        .into_boxed::<diesel::sqlite::Sqlite>()
        .bind::<Text, _>(cluster)
        .bind::<BigInt, _>(now);
    let query = if paused_types.is_empty() {
        query
    } else {
        query.bind::<Text, _>(serde_json::to_string(paused_types).expect("names serialize"))
    };
    let due: Vec<Due> = Sync::load(query.bind::<BigInt, _>(limit), inner)?;
    Ok(due
        .into_iter()
        .map(|d| (TaskId(d.id), d.priority, d.next_attempt))
        .collect())
}

/// The statement of [`plain_due`]: cluster, now, (paused types as a JSON list,) limit.
fn plain_due_sql(types_paused: bool) -> String {
    let pending = TaskState::Pending.as_str();
    let mut sql = format!(
        "SELECT id, priority, next_attempt FROM warren_tasks INDEXED BY warren_tasks_due \
         WHERE cluster = ? AND state = '{pending}' AND flow_key IS NULL AND next_attempt <= ?"
    );
    if types_paused {
        sql.push_str(" AND task_type NOT IN (SELECT value FROM json_each(?))");
    }
    sql.push_str(" ORDER BY priority, next_attempt, id LIMIT ?");
    sql
}

/// The insert of [`Dialect::insert_unless_duplicate`]: the task's columns, then its
/// type and stored key again for the look, whose condition is the one the store uses
/// everywhere ([`COUNTS_AS_DUPLICATE`]).
fn sqlite_insert_unless_duplicate() -> String {
    format!(
        "INSERT INTO warren_tasks (task_type, cluster, state, data, aux_data, priority, \
         timeout_ms, created_at, not_before, next_attempt, unique_key, unique_states, waited) \
         SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? \
         WHERE NOT EXISTS (SELECT 1 FROM warren_tasks \
         WHERE task_type = ? AND unique_key = ? AND {COUNTS_AS_DUPLICATE}) RETURNING id"
    )
}

/// The claim's reads and update, inside the immediate transaction [`Dialect::claim`]
/// opened, in one hop to the connection's thread: the pauses (`pauses.rs`; under the
/// write lock, so none can change before the claim commits), the due tasks outside
/// them (each cluster's without a key by [`plain_due`], with tasks with a key within
/// their keys' free slots, see `flow.rs`, all in one queue order), and their update.
/// The pauses are read once and passed as lists: filtering with sub-selects of
/// `warren_paused` doubled the select's cost.
async fn take_due(c: &mut SqliteConn, params: &ClaimParams<'_>) -> StoreResult<Vec<TaskRow>> {
    let owner = params.owner.to_string();
    let mut clusters = params.clusters.to_vec();
    clusters.sort_unstable();
    clusters.dedup();
    let (clock, lease_ms, limit) = (params.clock.clone(), params.lease_ms, params.limit);
    let constrained = params.constrained;
    let rows = c
        .spawn_blocking(move |inner| {
            // The write lock is held: time counts from now, not from before the wait
            // for it (a rate-limit bucket must not fill by an instant already past).
            let now = clock.now();
            let until = now + lease_ms;
            // The connection's own (blocking) methods: this runs on its thread.
            use diesel::RunQueryDsl as Sync;
            let pauses: Vec<(String, String)> =
                Sync::load(p::warren_paused.select((p::kind, p::name)), inner)?;
            let (paused_clusters, paused_types): (Vec<_>, Vec<_>) = pauses
                .iter()
                .cloned()
                .partition(|(kind, _)| kind == "cluster");
            let names = |list: Vec<(String, String)>| -> Vec<String> {
                list.into_iter().map(|(_, name)| name).collect()
            };
            let (paused_clusters, paused_types) = (names(paused_clusters), names(paused_types));
            // Tasks with a key, at most each key's free slots (`flow.rs`).
            let keyed = if constrained {
                Some(sqlite_flow_candidates(
                    inner,
                    &clusters,
                    now,
                    limit,
                    &paused_clusters,
                    &paused_types,
                )?)
            } else {
                None
            };
            // A paused cluster's queue is not read at all.
            let mut plain: Vec<(TaskId, i32, i64)> = Vec::new();
            for cluster in clusters.iter().filter(|c| !paused_clusters.contains(c)) {
                plain.extend(plain_due(inner, cluster, now, limit, &paused_types)?);
            }
            // The first `limit` of both, in queue order.
            let mut candidates = keyed
                .as_ref()
                .map(|pick| pick.candidates.clone())
                .unwrap_or_default();
            candidates.extend(plain);
            candidates.sort_by_key(|&(id, priority, next_attempt)| (priority, next_attempt, id));
            let ids: Vec<TaskId> = candidates
                .into_iter()
                .take(limit as usize)
                .map(|(id, _, _)| id)
                .collect();
            if let Some(pick) = &keyed {
                // The rate limits' tokens of what is taken (`rate_limit.rs`).
                pick.spend_tokens(inner, &ids, now)?;
            }
            let take = diesel::update(t::warren_tasks.filter(t::id.eq_any(&ids)))
                .set((
                    t::state.eq(TaskState::Running),
                    t::lease_owner.eq(&owner),
                    t::lease_until.eq(until),
                    t::lease_token.eq(t::lease_token + 1),
                    t::started_at.eq(now),
                ))
                .returning(TaskRow::as_returning());
            Sync::get_results(take, inner)
        })
        .await?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::store::{NewTask, Store, StoreConfig};
    use std::sync::Arc;

    #[derive(QueryableByName)]
    struct PlanLine {
        #[diesel(sql_type = Text)]
        detail: String,
    }

    /// The plan SQLite picks for `sql` (a claim of `default` of up to one task).
    async fn plan(store: &Store, sql: &str, types_paused: bool) -> String {
        let mut pooled = store.connection().await.unwrap();
        let AnyConn::Sqlite(c) = pooled.as_any() else {
            unreachable!("a SQLite store")
        };
        let query = diesel::sql_query(format!("EXPLAIN QUERY PLAN {sql}"))
            .into_boxed::<diesel::sqlite::Sqlite>()
            .bind::<Text, _>("default")
            .bind::<BigInt, _>(i64::MAX);
        let query = if types_paused {
            query.bind::<Text, _>("[\"demo:other\"]")
        } else {
            query
        };
        let lines: Vec<PlanLine> = query.bind::<BigInt, _>(1).load(c).await.unwrap();
        lines
            .into_iter()
            .map(|l| l.detail)
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// After `ANALYZE`, the claim still walks `warren_tasks_due` in queue order and stops
    /// at its limit; without the index named, SQLite would scan the table and sort it.
    #[tokio::test]
    async fn the_claim_walks_the_due_index_after_analyze() {
        let scratch = warren_testkit::Scratch::new("sqlite-claim-plan");
        let url = format!("sqlite://{}", scratch.join("plan.db").display());
        let store = Store::open_with(StoreConfig::new(url), Arc::new(SystemClock))
            .await
            .unwrap();
        let tasks: Vec<NewTask> = (0..1000)
            .map(|i| NewTask::new("demo:ping".parse().unwrap(), serde_json::json!({ "i": i })))
            .collect();
        store.schedule_batch(&tasks).await.unwrap();
        {
            let mut pooled = store.connection().await.unwrap();
            let AnyConn::Sqlite(c) = pooled.as_any() else {
                unreachable!("a SQLite store")
            };
            diesel_async::SimpleAsyncConnection::batch_execute(c, "ANALYZE")
                .await
                .unwrap();
        }
        for paused in [false, true] {
            let named = plan(&store, &plain_due_sql(paused), paused).await;
            assert!(
                named.starts_with("SEARCH warren_tasks USING INDEX warren_tasks_due (cluster=?)")
                    && !named.contains("SCAN warren_tasks")
                    && !named.contains("TEMP B-TREE"),
                "paused types: {paused}: {named}"
            );
        }
        // The claim as it was before the index was named (diesel's statement, with the
        // values written in as SQLite's planner sees them once bound): a scan of the
        // whole table and a sort, on every claim.
        let unnamed = "SELECT id, priority, next_attempt FROM warren_tasks \
             WHERE state = 'pending' AND next_attempt <= 9999999999999 \
             AND cluster IN ('default') AND flow_key IS NULL \
             ORDER BY priority, next_attempt, id LIMIT 1";
        let mut pooled = store.connection().await.unwrap();
        let AnyConn::Sqlite(c) = pooled.as_any() else {
            unreachable!("a SQLite store")
        };
        let lines: Vec<PlanLine> = diesel::sql_query(format!("EXPLAIN QUERY PLAN {unnamed}"))
            .load(c)
            .await
            .unwrap();
        assert!(
            lines.iter().any(|l| l.detail == "SCAN warren_tasks"),
            "SQLite now walks the index by itself: the hint may go"
        );
        drop(pooled);
        // The claim takes the first task in queue order.
        let claimed = store
            .claim("node", &["default".to_string()], 1, 30_000)
            .await
            .unwrap();
        assert_eq!(claimed[0].task.data["i"], 0);
    }
}
