//! Waiting for a task's outcome, woken by notifications rather than polling.

use super::conn::on_conn;
use super::dialect::Dialect;
use super::schema::warren_tasks::dsl as t;
use super::signals::ANY_TASK;
use super::{BackendKind, Store, StoreError, StoreResult, TaskOutcome};
use crate::task::{TaskId, TaskState};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
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
        if self.backend() == BackendKind::Postgres {
            self.inner.signals.ensure_listener(&self.inner.url).await?;
            self.mark_waited(id).await?;
        }
        loop {
            if let Some(outcome) = self.outcome_if(id, accept).await? {
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

    /// Asks for a NOTIFY when the task's outcome changes (see `announce_outcome`).
    /// Setting the flag locks the task's row for a moment, so a claim running just
    /// then skips the task; when it is pending, the same statement wakes the queues of
    /// its cluster (delivered as the lock is released), so it is claimed right away.
    async fn mark_waited(&self, id: TaskId) -> StoreResult<()> {
        let mut pooled = self.conn().await?;
        on_conn!(&mut pooled.any(), c => Dialect::mark_waited(c, id).await?);
        Ok(())
    }

    async fn outcome_if(&self, id: TaskId, accept: WaitFor) -> StoreResult<Option<TaskOutcome>> {
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        let row: Option<(TaskState, Option<String>, Option<String>, i32)> = super::conn::on_conn!(&mut conn, c => {
            t::warren_tasks
                .find(id)
                .select((t::state, t::result, t::last_error, t::failures))
                .first(c)
                .await
                .optional()?
        });
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
}
