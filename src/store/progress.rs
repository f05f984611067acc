//! How far runs say they have got, from task code's `set-progress` to the database.
//!
//! A report never waits for the database: it goes on the node's board
//! (`progress_board.rs`), and a writer on the I/O thread writes what is due, each run's
//! latest value only, in one transaction of its own (never the run's): on PostgreSQL at
//! most every [`PROGRESS_WRITE_EVERY`] while the run goes on, on SQLite once the run has
//! ended.
//!
//! Whose progress a task shows is [`reported_by_latest_run`]'s rule: the run that holds
//! the task (its lease token is the task's), or the run a cancel stopped. A value is
//! written only under the same rule, so a run that lost its task to a later run cannot
//! write over that run's progress.
//!
//! Progress is advice, not outcome: a write that fails is logged and tried again a few
//! times, then given up; nothing of the task's own state depends on it.

use super::conn::{begin, finish, on_conn};
use super::model::Progress;
use super::model::Task;
use super::postgres::io_runtime;
use super::progress_board::{ProgressWrite, WriteOutcome, WriteWhen, WRITE_TRIES};
use super::schema::warren_task_progress::dsl as p;
use super::{AnyConn, Store, StoreResult};
use crate::task::{LeaseToken, TaskId, TaskState};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Nullable, Text};
use diesel_async::RunQueryDsl;
use std::time::Duration;

/// How often, at most, a PostgreSQL node writes its runs' progress (each write holds
/// every run's latest value).
pub const PROGRESS_WRITE_EVERY: Duration = Duration::from_millis(250);

/// The upsert of one run's progress (PostgreSQL): only while the run holds its task,
/// and never over a later run's value.
const PG_WRITE: &str = "INSERT INTO warren_task_progress \
     (task_id, lease_token, fraction, message, reported_at) \
     SELECT $1, $2, $3, $4, $5 \
     WHERE EXISTS (SELECT 1 FROM warren_tasks WHERE id = $1 \
     AND (lease_token = $2 OR (lease_token = $2 + 1 AND state = 'cancelled'))) \
     ON CONFLICT (task_id) DO UPDATE SET lease_token = excluded.lease_token, \
     fraction = excluded.fraction, message = excluded.message, reported_at = excluded.reported_at \
     WHERE warren_task_progress.lease_token <= excluded.lease_token";

/// [`PG_WRITE`] in SQLite's spelling of its parameters.
const SQLITE_WRITE: &str = "INSERT INTO warren_task_progress \
     (task_id, lease_token, fraction, message, reported_at) \
     SELECT ?1, ?2, ?3, ?4, ?5 \
     WHERE EXISTS (SELECT 1 FROM warren_tasks WHERE id = ?1 \
     AND (lease_token = ?2 OR (lease_token = ?2 + 1 AND state = 'cancelled'))) \
     ON CONFLICT (task_id) DO UPDATE SET lease_token = excluded.lease_token, \
     fraction = excluded.fraction, message = excluded.message, reported_at = excluded.reported_at \
     WHERE warren_task_progress.lease_token <= excluded.lease_token";

/// Whether progress reported by the run that held `reported_by` is the latest run's
/// of a task whose lease token is now `task_token` and whose state is `task_state`:
/// that run still holds the task, or is the one a cancel stopped (a cancel fences the
/// run by taking the next token). A later claim takes the next token too, so a new run
/// shows none of an earlier run's progress.
pub(super) fn reported_by_latest_run(
    reported_by: LeaseToken,
    task_token: LeaseToken,
    task_state: TaskState,
) -> bool {
    reported_by == task_token
        || (task_state == TaskState::Cancelled
            && reported_by.0.checked_add(1) == Some(task_token.0))
}

/// Held by a run from its first progress report: when the run is over (the guard is
/// dropped with it, whichever way it ended), its last value is written and the board
/// forgets it.
#[derive(Debug)]
pub(crate) struct ProgressGuard {
    store: Store,
    task_id: TaskId,
    token: LeaseToken,
}

impl ProgressGuard {
    /// The guard of the run of `task_id` holding `token`.
    pub(crate) fn new(store: &Store, task_id: TaskId, token: LeaseToken) -> ProgressGuard {
        ProgressGuard {
            store: store.clone(),
            task_id,
            token,
        }
    }
}

impl Drop for ProgressGuard {
    fn drop(&mut self) {
        if self.store.inner.progress.ended(self.task_id, self.token) {
            self.store.start_progress_writer();
        }
    }
}

impl Store {
    /// Keeps `progress` as the latest of the run of `task_id` holding `token`; it
    /// reaches the database as the module's documentation says.
    pub(crate) fn report_progress(&self, task_id: TaskId, token: LeaseToken, progress: Progress) {
        if self.inner.progress.report(task_id, token, progress) {
            self.start_progress_writer();
        }
    }

    /// The progress `task` shows: its latest run's (see [`reported_by_latest_run`]) as
    /// this node knows it when this node runs it (fresher than the database's; on
    /// SQLite the only copy until the run ends), else as stored.
    pub(super) async fn progress_of(
        &self,
        conn: &mut AnyConn<'_>,
        task: &Task,
    ) -> StoreResult<Option<Progress>> {
        let shown = |(token, progress): (LeaseToken, Progress)| {
            reported_by_latest_run(token, task.lease_token, task.state).then_some((token, progress))
        };
        let live = self.inner.progress.live(task.id).and_then(shown);
        // The live value unless the database holds a later run's (this node's run
        // lost its task and does not know yet).
        if live
            .as_ref()
            .is_some_and(|(token, _)| *token == task.lease_token)
        {
            return Ok(live.map(|(_, progress)| progress));
        }
        let stored = stored_progress(conn, task.id).await?.and_then(shown);
        Ok(match (live, stored) {
            (Some(live), Some(stored)) if stored.0 > live.0 => Some(stored.1),
            (Some(live), _) => Some(live.1),
            (None, stored) => stored.map(|(_, progress)| progress),
        })
    }

    /// Waits until the progress due for writing is written (or has failed): for a node
    /// that stops, and for tests.
    pub async fn flush_progress(&self) {
        self.inner.progress.idle().await;
    }

    fn start_progress_writer(&self) {
        io_runtime().spawn(write_due_progress(self.clone()));
    }
}

/// The stored progress of task `id`, with the token of the run that reported it.
async fn stored_progress(
    conn: &mut AnyConn<'_>,
    id: TaskId,
) -> StoreResult<Option<(LeaseToken, Progress)>> {
    let row: Option<(LeaseToken, f64, Option<String>, i64)> = on_conn!(conn, c => {
        p::warren_task_progress
            .filter(p::task_id.eq(id))
            .select((p::lease_token, p::fraction, p::message, p::reported_at))
            .first(c)
            .await
            .optional()?
    });
    Ok(row.map(|(token, fraction, message, at)| {
        (
            token,
            Progress {
                fraction,
                message,
                at,
            },
        )
    }))
}

/// Writes what the board says is due until nothing is (on PostgreSQL, a pause of
/// [`PROGRESS_WRITE_EVERY`] before each write gathers the reports made meanwhile). A
/// failed write is tried again after [`RETRY_AFTER`], at most [`WRITE_TRIES`] times in
/// all.
async fn write_due_progress(store: Store) {
    let board = &store.inner.progress;
    let mut writer = WriterGuard {
        store: &store,
        done: false,
    };
    let mut pause = match board.when() {
        WriteWhen::WhileRunning => Some(PROGRESS_WRITE_EVERY),
        WriteWhen::AfterTheRun => None,
    };
    loop {
        if let Some(pause) = pause {
            tokio::time::sleep(pause).await;
        }
        let due = board.take_due();
        if due.is_empty() {
            writer.done = true;
            return;
        }
        let outcome = match write_together(&store, &due).await {
            Ok(()) => WriteOutcome::Written,
            Err(e) => {
                tracing::warn!(error = %e, runs = due.len(), "progress not written; it is tried again, {WRITE_TRIES} times in all");
                WriteOutcome::Failed
            }
        };
        board.written(&due, outcome);
        pause = match (outcome, board.when()) {
            (WriteOutcome::Failed, _) => Some(RETRY_AFTER),
            (WriteOutcome::Written, WriteWhen::WhileRunning) => Some(PROGRESS_WRITE_EVERY),
            (WriteOutcome::Written, WriteWhen::AfterTheRun) => None,
        };
    }
}

/// How long the writer waits before it tries a failed write again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Tells the board when its writer stops midway (a panic), so that the next report
/// starts another and nobody waits for this one.
struct WriterGuard<'a> {
    store: &'a Store,
    done: bool,
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.store.inner.progress.writer_abandoned();
        }
    }
}

/// Writes `due` in one transaction.
async fn write_together(store: &Store, due: &[ProgressWrite]) -> StoreResult<()> {
    let mut pooled = store.conn().await?;
    let mut conn = pooled.any();
    begin(&mut conn).await?;
    let written = write_each(&mut conn, due).await;
    finish(&mut conn, written).await
}

async fn write_each(conn: &mut AnyConn<'_>, due: &[ProgressWrite]) -> StoreResult<()> {
    for w in due {
        let sql = match conn {
            AnyConn::Postgres(_) => PG_WRITE,
            AnyConn::Sqlite(_) => SQLITE_WRITE,
        };
        on_conn!(conn, c => {
            diesel::sql_query(sql)
                .bind::<BigInt, _>(w.task_id.0)
                .bind::<BigInt, _>(w.token.0)
                .bind::<Double, _>(w.progress.fraction)
                .bind::<Nullable<Text>, _>(w.progress.message.as_deref())
                .bind::<BigInt, _>(w.progress.at)
                .execute(c)
                .await?
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_shows_the_progress_of_the_run_that_holds_it_or_that_a_cancel_stopped() {
        let run = LeaseToken(4);
        for state in [
            TaskState::Running,
            TaskState::Completed,
            TaskState::Failed,
            TaskState::Pending,
            TaskState::Cancelled,
        ] {
            assert!(reported_by_latest_run(run, run, state), "{state}");
            assert!(
                !reported_by_latest_run(run, LeaseToken(6), state),
                "{state}"
            );
            // Claimed again: a new run, which has reported nothing yet.
            assert!(
                !reported_by_latest_run(LeaseToken(3), run, state) || state == TaskState::Cancelled
            );
        }
        assert!(reported_by_latest_run(
            LeaseToken(3),
            run,
            TaskState::Cancelled
        ));
        assert!(!reported_by_latest_run(
            LeaseToken(3),
            run,
            TaskState::Running
        ));
        assert!(!reported_by_latest_run(
            LeaseToken(i64::MAX),
            LeaseToken(i64::MIN),
            TaskState::Cancelled
        ));
    }
}
