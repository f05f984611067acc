//! Waiting for a task's outcome, woken by notifications rather than polling.

use super::schema::warren_tasks::dsl as t;
use super::signals::{ANY_TASK, TASKS_CHANNEL};
use super::{AnyConn, BackendKind, Store, StoreError, StoreResult, TaskOutcome};
use crate::task::{TaskId, TaskState};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment};
use diesel::sql_types::BigInt;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;

/// Which outcomes end a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WaitFor {
    /// Only a finished task: completed, failed or cancelled.
    #[default]
    Finished,
    /// Also a pending task that has failed at least once (a temporary failure).
    AnyOutcome,
}

/// How often a SQLite waiter looks again on its own: the safety net for an outcome
/// whose wake-up was lost. Outcomes committed in other processes arrive through the
/// file's wake-up socket (`sqlite_wake.rs`), on Unix; elsewhere, or when the socket
/// could not be bound, this recheck is how a waiter learns of them.
const SQLITE_RECHECK: Duration = Duration::from_secs(1);

impl Store {
    /// Waits up to `timeout` for task `id` to reach an outcome that `accept` counts,
    /// and returns it. Woken by the commit that writes the outcome (PostgreSQL
    /// `LISTEN`/`NOTIFY`; on SQLite a signal from this process or, through the file's
    /// wake-up socket, from another).
    pub async fn wait(
        &self,
        id: TaskId,
        timeout: Duration,
        accept: WaitFor,
    ) -> StoreResult<TaskOutcome> {
        let started = Instant::now();
        let deadline = started + timeout;
        // Subscribe before the first look, so an outcome committed in between still
        // wakes us.
        let mut rx = self.inner.signals.outcomes.subscribe();
        let mut first_look = None;
        if self.backend() == BackendKind::Postgres {
            self.inner.signals.ensure_listener(&self.inner.url).await?;
            first_look = Some(self.mark_waited_and_look(id, accept).await?);
        }
        loop {
            let outcome = match first_look.take() {
                Some(looked) => looked,
                None => self.outcome_if(id, accept).await?,
            };
            if let Some(outcome) = outcome {
                return Ok(outcome);
            }
            let recheck = match self.backend() {
                BackendKind::Sqlite => (Instant::now() + SQLITE_RECHECK).min(deadline),
                BackendKind::Postgres => deadline,
            };
            loop {
                match tokio::time::timeout_at(recheck, rx.recv()).await {
                    Ok(Ok(changed)) if changed == id || changed == ANY_TASK => break,
                    Ok(Ok(_)) => continue,
                    Ok(Err(RecvError::Lagged(_))) => break,
                    Ok(Err(RecvError::Closed)) | Err(_) => break,
                }
            }
            if Instant::now() >= deadline {
                if let Some(outcome) = self.outcome_if(id, accept).await? {
                    return Ok(outcome);
                }
                return Err(StoreError::WaitTimeout {
                    id,
                    waited_ms: started.elapsed().as_millis() as u64,
                });
            }
        }
    }

    /// Asks for a NOTIFY when the task's outcome changes (see `announce_outcome`), and
    /// takes the first look at its outcome (PostgreSQL). The two statements go out
    /// pipelined on one connection, so they cost one round trip; PostgreSQL runs them in
    /// order, each committing on its own, so the look comes after the flag is set: an
    /// outcome written later announces itself, one written earlier is seen.
    ///
    /// Setting the flag locks the task's row for a moment, so a claim running just
    /// then skips the task; when it is pending, the same statement wakes the queues of
    /// its cluster (delivered as the lock is released), so it is claimed right away.
    /// A task scheduled with the flag already set (`ScheduleOptions::waited`) is not
    /// written or locked at all: the update's condition finds the flag set.
    async fn mark_waited_and_look(
        &self,
        id: TaskId,
        accept: WaitFor,
    ) -> StoreResult<Option<TaskOutcome>> {
        let mut pooled = self.conn().await?;
        let AnyConn::Postgres(c) = pooled.any() else {
            unreachable!("marking a task waited runs on PostgreSQL only");
        };
        let conn: &AsyncPgConnection = c;
        let mark = PgMarkWaited { id }.execute(&mut &*conn);
        let look = outcome_row(id).first::<OutcomeRow>(&mut &*conn);
        // Both are awaited to the end, so that no answer is left unread.
        let (marked, row) = futures_util::join!(mark, look);
        marked?;
        outcome_from(id, row.optional()?, accept)
    }

    async fn outcome_if(&self, id: TaskId, accept: WaitFor) -> StoreResult<Option<TaskOutcome>> {
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        let row: Option<OutcomeRow> = super::conn::on_conn!(&mut conn, c => {
            outcome_row(id).first(c).await.optional()?
        });
        outcome_from(id, row, accept)
    }
}

/// What a waiter reads of its task: state, result, last error, failures.
type OutcomeRow = (TaskState, Option<String>, Option<String>, i32);

/// The query of a task's [`OutcomeRow`].
fn outcome_row(
    id: TaskId,
) -> diesel::dsl::Select<
    diesel::dsl::Find<t::warren_tasks, TaskId>,
    (t::state, t::result, t::last_error, t::failures),
> {
    t::warren_tasks
        .find(id)
        .select((t::state, t::result, t::last_error, t::failures))
}

/// The outcome in task `id`'s `row`, if `accept` counts it (`None`: keep waiting).
fn outcome_from(
    id: TaskId,
    row: Option<OutcomeRow>,
    accept: WaitFor,
) -> StoreResult<Option<TaskOutcome>> {
    let Some((state, result, error, failures)) = row else {
        return Err(StoreError::NotFound(id));
    };
    let corrupt = |field, message: String| StoreError::Corrupt { id, field, message };
    let counts = state.is_finished()
        || (accept == WaitFor::AnyOutcome && state == TaskState::Pending && failures > 0);
    if !counts {
        return Ok(None);
    }
    let result = result
        .map(|r| serde_json::from_str(&r).map_err(|e| corrupt("result", e.to_string())))
        .transpose()?;
    Ok(Some(TaskOutcome {
        id,
        state,
        result,
        error,
        failures,
    }))
}

/// Sets a task's `waited` flag and, when the task is still pending, wakes its
/// cluster's queues: `WITH marked AS (UPDATE … SET waited = true WHERE id = $1 AND NOT
/// waited RETURNING cluster, state) SELECT pg_notify(…) FROM marked WHERE state =
/// 'pending'`. A statement of its own, so that each connection prepares it once: sent
/// as a one-off query it was planned on every wait (167 µs of planning against 289 µs
/// of execution a call, `pg_stat_statements` over the runtime bench's 300 waits).
/// SQLite needs no flag: every outcome is announced in the process and to the file's
/// other processes.
struct PgMarkWaited {
    id: TaskId,
}

super::pg_statement!(PgMarkWaited);

impl QueryFragment<Pg> for PgMarkWaited {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("WITH marked AS (UPDATE warren_tasks SET waited = true WHERE id = ");
        out.push_bind_param::<BigInt, _>(&self.id)?;
        out.push_sql(" AND NOT waited RETURNING cluster, state) SELECT pg_notify('");
        out.push_sql(TASKS_CHANNEL);
        out.push_sql("', cluster) FROM marked WHERE state = '");
        out.push_sql(TaskState::Pending.as_str());
        out.push_sql("'");
        Ok(())
    }
}
