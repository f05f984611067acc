//! What SQLite does its own way (see `dialect.rs`): one writer at a time (`BEGIN
//! IMMEDIATE` where the store reads then writes), multi-row inserts through diesel's
//! synchronous API on the connection's blocking thread, wake-ups delivered by the
//! store after the commit, and task SQL checked by the connection's guard.

use super::claim::ClaimParams;
use super::conn::{finish, SqliteConn};
use super::dialect::{Announce, Dialect, LockWhen};
use super::flow::sqlite_flow_candidates;
use super::manage::list_query;
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
use diesel::sql_types::{BigInt, Integer, Nullable, Text};
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

    async fn insert_tasks(&mut self, rows: Vec<TaskInsert>) -> QueryResult<Vec<TaskId>> {
        // diesel-async cannot build a multi-row insert for SQLite.
        self.spawn_blocking(move |inner| {
            diesel::RunQueryDsl::get_results(
                diesel::insert_into(warren_tasks::table)
                    .values(&rows)
                    .returning(warren_tasks::id),
                inner,
            )
        })
        .await
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
        list_query!(diesel::sqlite::Sqlite, filter, now)
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

    async fn mark_waited(&mut self, _id: TaskId) -> QueryResult<()> {
        // Every outcome is announced in this process and to the file's other processes.
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

/// The insert of [`Dialect::insert_unless_duplicate`]: the task's columns, then its
/// type and stored key again for the look, whose condition is the one the store uses
/// everywhere ([`COUNTS_AS_DUPLICATE`]).
fn sqlite_insert_unless_duplicate() -> String {
    format!(
        "INSERT INTO warren_tasks (task_type, cluster, state, data, aux_data, priority, \
         timeout_ms, created_at, not_before, next_attempt, unique_key, unique_states) \
         SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? \
         WHERE NOT EXISTS (SELECT 1 FROM warren_tasks \
         WHERE task_type = ? AND unique_key = ? AND {COUNTS_AS_DUPLICATE}) RETURNING id"
    )
}

/// The claim's reads and update, inside the immediate transaction [`Dialect::claim`]
/// opened, in one hop to the connection's thread: the pauses (`pauses.rs`; under the
/// write lock, so none can change before the claim commits), the due tasks outside
/// them (with tasks with a concurrency key within their keys' free slots, see
/// `flow.rs`, all in one queue order), and their update. With nothing paused the select has no pause filter at all:
/// filtering with sub-selects of `warren_paused` doubled the select's cost.
async fn take_due(c: &mut SqliteConn, params: &ClaimParams<'_>) -> StoreResult<Vec<TaskRow>> {
    let (owner, clusters) = (params.owner.to_string(), params.clusters.to_vec());
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
            let due = t::warren_tasks
                .select((t::id, t::priority, t::next_attempt))
                .filter(t::state.eq(TaskState::Pending))
                .filter(t::next_attempt.le(now))
                .filter(t::cluster.eq_any(&clusters))
                .filter(t::flow_key.is_null())
                .order((t::priority, t::next_attempt, t::id))
                .limit(limit);
            let plain: Vec<(TaskId, i32, i64)> = if pauses.is_empty() {
                Sync::load(due, inner)?
            } else {
                // A paused cluster's queue is not read at all.
                let open: Vec<String> = clusters
                    .iter()
                    .filter(|c| !paused_clusters.contains(c))
                    .cloned()
                    .collect();
                let outside = t::warren_tasks
                    .select((t::id, t::priority, t::next_attempt))
                    .filter(t::state.eq(TaskState::Pending))
                    .filter(t::next_attempt.le(now))
                    .filter(t::cluster.eq_any(&open))
                    .filter(diesel::dsl::not(t::task_type.eq_any(&paused_types)))
                    .filter(t::flow_key.is_null())
                    .order((t::priority, t::next_attempt, t::id))
                    .limit(limit);
                if open.is_empty() {
                    Vec::new()
                } else {
                    Sync::load(outside, inner)?
                }
            };
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
