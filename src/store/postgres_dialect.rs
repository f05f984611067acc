//! What PostgreSQL does its own way (see `dialect.rs`): statements prepared once per
//! connection, rows sent as one array per column, `FOR NO KEY UPDATE SKIP LOCKED` claims,
//! `NOTIFY` inside the transaction, and task SQL checked by PostgreSQL's own parser.

use super::bulk::BulkCandidate;
use super::claim::{ClaimParams, PgClaim};
use super::dialect::{Announce, Dialect, LockWhen};
use super::manage::filtered_tasks;
use super::model::TaskRow;
use super::pg_policy::PgStatementPolicy;
use super::schedule::{MetadataInsert, TaskInsert, BATCH_CHUNK};
use super::schema::{warren_task_metadata, warren_tasks};
use super::signals::{Pending, PgNotify, PgNotifyOutcome, TASKS_CHANNEL};
use super::task_sql::{Ran, SqlCanceller, TaskSqlError, TaskStatement};
use super::TaskFilter;
use super::{dynamic, StoreResult};
use crate::task::{Millis, TaskId};
use diesel::{ExpressionMethods, OptionalExtension, QueryDsl, QueryResult, SelectableHelper};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, TransactionManager};

impl Dialect for AsyncPgConnection {
    fn outcome_returns_waited(&self) -> bool {
        // The flag decides whether the outcome needs a NOTIFY: one statement saved per outcome.
        true
    }

    async fn begin(&mut self, _when: LockWhen) -> QueryResult<()> {
        // Row locks are taken by each statement; there is no database-wide write lock.
        <AsyncPgConnection as AsyncConnection>::TransactionManager::begin_transaction(self).await
    }

    async fn begin_for_task_sql(&mut self) -> QueryResult<SqlCanceller> {
        Ok(SqlCanceller::postgres(self.cancel_token()))
    }

    async fn insert_tasks(
        &mut self,
        _pending: &mut Pending,
        rows: &[TaskInsert],
        now: Millis,
    ) -> QueryResult<Vec<TaskId>> {
        // The wake-up travels in the insert statement: no NOTIFY of its own.
        super::schedule_alone::insert_announcing(self, rows, now).await
    }

    async fn insert_unless_duplicate(&mut self, row: &TaskInsert) -> QueryResult<Option<TaskId>> {
        // The only unique index a new row can meet is the unique key's (ids are drawn
        // from a sequence): nothing is inserted while a task that counts holds the key,
        // and an uncommitted one is waited for.
        diesel::insert_into(warren_tasks::table)
            .values(row)
            .on_conflict_do_nothing()
            .returning(warren_tasks::id)
            .get_result(self)
            .await
            .optional()
    }

    async fn insert_metadata(&mut self, rows: Vec<MetadataInsert>) -> QueryResult<()> {
        for chunk in rows.chunks(BATCH_CHUNK) {
            diesel::insert_into(warren_task_metadata::table)
                .values(chunk)
                .execute(self)
                .await?;
        }
        Ok(())
    }

    async fn claim(&mut self, params: &ClaimParams<'_>) -> StoreResult<Vec<TaskRow>> {
        if !params.constrained {
            // One statement, committed on its own.
            Ok(PgClaim(params).load(self).await?)
        } else {
            super::flow::pg_claim(self, params).await
        }
    }

    async fn list_tasks(&mut self, filter: &TaskFilter, now: Millis) -> QueryResult<Vec<TaskRow>> {
        filtered_tasks!(diesel::pg::Pg, filter, now, super::search::pg_data_equals)
            .select(TaskRow::as_select())
            .order(warren_tasks::id.desc())
            .limit(filter.limit)
            .load(self)
            .await
    }

    async fn count_tasks(&mut self, filter: &TaskFilter, now: Millis) -> QueryResult<i64> {
        filtered_tasks!(diesel::pg::Pg, filter, now, super::search::pg_data_equals)
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
        filtered_tasks!(diesel::pg::Pg, filter, now, super::search::pg_data_equals)
            .select(BulkCandidate::as_select())
            .order(warren_tasks::id.desc())
            .limit(limit)
            .load(self)
            .await
    }

    async fn announce(
        &mut self,
        _pending: &mut Pending,
        announce: Announce<'_>,
    ) -> QueryResult<()> {
        match announce {
            Announce::Work { cluster } => {
                PgNotify {
                    channel: TASKS_CHANNEL,
                    payload: cluster,
                }
                .execute(self)
                .await?;
            }
            // Only when someone waits (see `signals::announce_outcome`).
            Announce::Outcome { id } => {
                PgNotifyOutcome {
                    id,
                    known_waited: false,
                }
                .execute(self)
                .await?;
            }
            Announce::OutcomeWaited { id, waited } => {
                if waited {
                    PgNotifyOutcome {
                        id,
                        known_waited: true,
                    }
                    .execute(self)
                    .await?;
                }
            }
        }
        Ok(())
    }

    async fn run_task_statement(
        &mut self,
        policy: &PgStatementPolicy,
        statement: &TaskStatement,
        canceller: Option<&SqlCanceller>,
    ) -> Result<Ran, TaskSqlError> {
        let admitted = policy.admit(&statement.sql)?;
        let (sql, params) = (admitted.sql, statement.params.clone());
        match dynamic::run_postgres(self, sql, params, statement.want).await {
            Ok(output) => Ok(Ran {
                output,
                taints_session: admitted.taints_session,
                binds_transaction: admitted.binds_transaction,
            }),
            Err(_) if canceller.is_some_and(SqlCanceller::was_sent) => {
                Err(TaskSqlError::Interrupted)
            }
            Err(e) => Err(e),
        }
    }
}
