//! The history of a task's runs: when each ran, on which node, how it ended, its error
//! and what its code logged — the task view's timeline and `warren tasks logs`.
//!
//! A run is recorded when it has something to tell that the task's own row does not:
//! every run except a completion that logged nothing (the task's row holds that run's
//! times, and a completed task runs no more). The queue's fast path, tasks that
//! complete quietly, so writes nothing here. A run is recorded after its outcome
//! committed, together with the deletion of the task's runs past the newest
//! [`KEPT_RUNS_PER_TASK`]; records of runs that end at the same time share one commit
//! (see `group_write.rs`). A node that dies between the outcome and the record loses
//! the records not yet committed, never an outcome.

use super::conn::{begin, finish, on_conn, PooledConn};
use super::group_write::{GroupQueue, GroupStats, Grouping};
use super::schema::warren_task_runs::dsl as r;
use super::schema::warren_tasks::dsl as t;
use super::{AnyConn, Store, StoreError, StoreResult};
use crate::task::{LeaseToken, Millis, TaskId};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment};
use diesel::sql_types::{Array, BigInt, Nullable, Text};
use diesel_async::RunQueryDsl;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

/// Runs kept per task: the newest ones.
pub const KEPT_RUNS_PER_TASK: usize = 10;

/// Bytes of log kept per run, as stored (JSON); what is past it is dropped, with a last
/// line saying how much.
pub const MAX_STORED_LOG_BYTES: usize = 64 << 10;

/// Lines of log kept per run.
pub const MAX_STORED_LOG_LINES: usize = 1000;

/// How a run ended, as its history and the metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunOutcome {
    /// Completed; its work committed.
    Completed,
    /// Failed for good.
    Failed,
    /// Cancelled by its own resolution.
    Cancelled,
    /// Failed and queued for a retry.
    Retry,
    /// Asked to run again (restart).
    Restarted,
    /// Asked to run again later (snooze).
    Snoozed,
    /// Nothing committed: the lease was lost (the task was cancelled or taken over
    /// meanwhile) or the database failed.
    Lost,
}

impl RunOutcome {
    /// Every outcome.
    pub const ALL: [RunOutcome; 7] = [
        RunOutcome::Completed,
        RunOutcome::Failed,
        RunOutcome::Cancelled,
        RunOutcome::Retry,
        RunOutcome::Restarted,
        RunOutcome::Snoozed,
        RunOutcome::Lost,
    ];

    /// The outcome's name (`retry`).
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Completed => "completed",
            RunOutcome::Failed => "failed",
            RunOutcome::Cancelled => "cancelled",
            RunOutcome::Retry => "retry",
            RunOutcome::Restarted => "restarted",
            RunOutcome::Snoozed => "snoozed",
            RunOutcome::Lost => "lost",
        }
    }

    fn parse(text: &str) -> Option<RunOutcome> {
        RunOutcome::ALL.into_iter().find(|o| o.as_str() == text)
    }
}

impl std::fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line a run's code logged or wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunLogLine {
    /// `error`, `warn`, `info`, `debug`, `trace`, or `stdout`/`stderr` for what the code
    /// wrote to its output.
    pub level: String,
    /// The text.
    pub message: String,
}

/// One run of a task, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    /// The task.
    pub task_id: TaskId,
    /// The run's lease token: runs of a task are ordered by it.
    pub lease_token: LeaseToken,
    /// The node that ran it.
    pub node: String,
    /// When it started.
    pub started_at: Millis,
    /// When it ended.
    pub finished_at: Millis,
    /// How it ended.
    pub outcome: RunOutcome,
    /// Its error, if it failed or was cancelled or lost.
    pub error: Option<String>,
    /// What its code logged, bounded by [`MAX_STORED_LOG_BYTES`].
    pub log: Vec<RunLogLine>,
}

impl RunRecord {
    /// Whether the run is worth a record: all but a completion that logged nothing.
    pub fn worth_recording(&self) -> bool {
        self.outcome != RunOutcome::Completed || !self.log.is_empty()
    }
}

/// `log` cut to [`MAX_STORED_LOG_LINES`] lines and [`MAX_STORED_LOG_BYTES`] bytes as
/// stored (each line as JSON, escapes and all), whole lines first, the line that does
/// not fit cut; a last line says what was dropped.
fn bounded_log(log: Vec<RunLogLine>) -> Vec<RunLogLine> {
    let stored = |line: &RunLogLine| serde_json::to_string(line).map_or(usize::MAX, |s| s.len());
    let lines = log.len();
    let mut kept = Vec::new();
    let mut bytes = 0;
    let mut dropped_bytes = 0;
    let mut iter = log.into_iter();
    for line in iter.by_ref() {
        let size = stored(&line);
        if kept.len() < MAX_STORED_LOG_LINES && bytes + size <= MAX_STORED_LOG_BYTES {
            bytes += size;
            kept.push(line);
            continue;
        }
        // Room for part of this line: keep its head (a long line is often one that
        // matters, such as a dump before a failure).
        let room = MAX_STORED_LOG_BYTES.saturating_sub(bytes + 256);
        if kept.len() < MAX_STORED_LOG_LINES && room > 1024 {
            // A sixth of the room: escaped, a character takes at most six bytes.
            let message = super::bounded_text(line.message.clone(), room / 6);
            dropped_bytes += line.message.len() - message.len().min(line.message.len());
            kept.push(RunLogLine {
                level: line.level,
                message,
            });
            bytes = MAX_STORED_LOG_BYTES;
        } else {
            dropped_bytes += line.message.len();
            break;
        }
    }
    let rest: Vec<RunLogLine> = iter.collect();
    let whole = lines - kept.len();
    if whole == 0 && dropped_bytes == 0 {
        return kept;
    }
    dropped_bytes += rest.iter().map(|l| l.message.len()).sum::<usize>();
    kept.push(RunLogLine {
        level: "warn".to_string(),
        message: format!(
            "{whole} more log line(s) and {dropped_bytes} bytes of text not kept: a run's history keeps {MAX_STORED_LOG_LINES} lines and {MAX_STORED_LOG_BYTES} bytes of log"
        ),
    });
    kept
}

/// A run ready to write: its columns, the error bounded and the log as stored JSON.
#[derive(Debug, Clone)]
pub(super) struct PreparedRun {
    task_id: TaskId,
    lease_token: LeaseToken,
    node: String,
    started_at: Millis,
    finished_at: Millis,
    outcome: RunOutcome,
    error: Option<String>,
    log: String,
}

/// The store's queue of run records waiting to share a commit.
pub(super) type RunRecordQueue = GroupQueue<PreparedRun, ()>;

/// Records share commits in groups of up to 64 (a record's log and error are at most
/// [`MAX_STORED_LOG_BYTES`] and [`super::MAX_ERROR_BYTES`], so a group's statement
/// stays within 8 MiB).
static RECORDS: Grouping<PreparedRun, ()> = Grouping {
    queue: |store| &store.inner.run_records,
    write: write_records,
    max_group: 64,
    what: "run records",
};

/// Writes a group of records in one commit. On PostgreSQL that is one statement when
/// no task has two runs in the group (the usual case); a task's later run goes into a
/// later statement of the same transaction, so that each statement's trim sees the
/// runs before it. On SQLite it is one transaction of a few statements per record.
fn write_records<'a>(
    _: &'a Store,
    pooled: &'a mut PooledConn,
    records: &'a [PreparedRun],
) -> BoxFuture<'a, StoreResult<Vec<()>>> {
    Box::pin(async move {
        let rounds = rounds_of_distinct_tasks(records);
        let mut conn = pooled.any();
        match (&mut conn, rounds.as_slice()) {
            (AnyConn::Postgres(c), [one]) => {
                PgRecordRuns::of(one).execute(*c).await?;
            }
            (conn, _) => {
                begin(conn).await?;
                let written = write_in_transaction(conn, records, &rounds).await;
                finish(conn, written).await?;
            }
        }
        Ok(vec![(); records.len()])
    })
}

/// The records of a group, in the open transaction: by rounds on PostgreSQL, one by
/// one on SQLite.
async fn write_in_transaction(
    conn: &mut AnyConn<'_>,
    records: &[PreparedRun],
    rounds: &[Vec<&PreparedRun>],
) -> StoreResult<()> {
    match conn {
        AnyConn::Postgres(c) => {
            for round in rounds {
                PgRecordRuns::of(round).execute(*c).await?;
            }
        }
        AnyConn::Sqlite(c) => {
            for record in records {
                sqlite_record_run(c, record).await?;
            }
        }
    }
    Ok(())
}

/// `records` split into rounds in which no task appears twice, each task's records in
/// their order, each round in ascending task id order (the order in which bulk actions
/// lock tasks, so that the foreign-key checks' locks on the tasks are taken in the same
/// order and cannot deadlock with them).
fn rounds_of_distinct_tasks(records: &[PreparedRun]) -> Vec<Vec<&PreparedRun>> {
    let mut rounds: Vec<Vec<&PreparedRun>> = Vec::new();
    let mut round_of: std::collections::HashMap<TaskId, usize> = Default::default();
    for record in records {
        let round = round_of.get(&record.task_id).map_or(0, |last| last + 1);
        round_of.insert(record.task_id, round);
        if rounds.len() <= round {
            rounds.push(Vec::new());
        }
        rounds[round].push(record);
    }
    for round in &mut rounds {
        round.sort_by_key(|record| record.task_id);
    }
    rounds
}

/// Inserts a run and drops the task's runs past the newest [`KEPT_RUNS_PER_TASK`], in
/// the open SQLite transaction. A task that is gone (deleted while it ran) gets no
/// record.
async fn sqlite_record_run(c: &mut super::SqliteConn, row: &PreparedRun) -> QueryResult<()> {
    let exists: i64 = t::warren_tasks
        .filter(t::id.eq(row.task_id))
        .count()
        .get_result(c)
        .await?;
    if exists == 0 {
        return Ok(());
    }
    diesel::insert_or_ignore_into(r::warren_task_runs)
        .values((
            r::task_id.eq(row.task_id),
            r::lease_token.eq(row.lease_token),
            r::node.eq(&row.node),
            r::started_at.eq(row.started_at),
            r::finished_at.eq(row.finished_at),
            r::outcome.eq(row.outcome.as_str()),
            r::error.eq(&row.error),
            r::log.eq(&row.log),
        ))
        .execute(c)
        .await?;
    let kept: Vec<LeaseToken> = r::warren_task_runs
        .select(r::lease_token)
        .filter(r::task_id.eq(row.task_id))
        .order(r::lease_token.desc())
        .limit(KEPT_RUNS_PER_TASK as i64)
        .load(c)
        .await?;
    if let Some(oldest) = kept.get(KEPT_RUNS_PER_TASK - 1) {
        diesel::delete(
            r::warren_task_runs
                .filter(r::task_id.eq(row.task_id))
                .filter(r::lease_token.lt(oldest)),
        )
        .execute(c)
        .await?;
    }
    Ok(())
}

/// The PostgreSQL statement that records runs of distinct tasks: the insert of those
/// whose task still exists (a run already recorded is left as it is) and, in the same
/// statement, the deletion of each such task's runs past the newest
/// [`KEPT_RUNS_PER_TASK`]. The deletion reads the table as it was before the insert
/// (one snapshot), so it keeps one run fewer there.
struct PgRecordRuns<'a> {
    task_ids: Vec<i64>,
    tokens: Vec<i64>,
    nodes: Vec<&'a str>,
    started: Vec<Millis>,
    finished: Vec<Millis>,
    outcomes: Vec<&'static str>,
    errors: Vec<Option<&'a str>>,
    logs: Vec<&'a str>,
}

impl<'a> PgRecordRuns<'a> {
    /// The statement for `rows`, of distinct tasks.
    fn of(rows: &[&'a PreparedRun]) -> PgRecordRuns<'a> {
        PgRecordRuns {
            task_ids: rows.iter().map(|r| r.task_id.0).collect(),
            tokens: rows.iter().map(|r| r.lease_token.0).collect(),
            nodes: rows.iter().map(|r| r.node.as_str()).collect(),
            started: rows.iter().map(|r| r.started_at).collect(),
            finished: rows.iter().map(|r| r.finished_at).collect(),
            outcomes: rows.iter().map(|r| r.outcome.as_str()).collect(),
            errors: rows.iter().map(|r| r.error.as_deref()).collect(),
            logs: rows.iter().map(|r| r.log.as_str()).collect(),
        }
    }
}

impl QueryFragment<Pg> for PgRecordRuns<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(
            "WITH added AS (INSERT INTO warren_task_runs \
             (task_id, lease_token, node, started_at, finished_at, outcome, error, log) \
             SELECT i.* FROM unnest(",
        );
        out.push_bind_param::<Array<BigInt>, _>(&self.task_ids)?;
        out.push_sql("::bigint[], ");
        out.push_bind_param::<Array<BigInt>, _>(&self.tokens)?;
        out.push_sql("::bigint[], ");
        out.push_bind_param::<Array<Text>, _>(&self.nodes)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<BigInt>, _>(&self.started)?;
        out.push_sql("::bigint[], ");
        out.push_bind_param::<Array<BigInt>, _>(&self.finished)?;
        out.push_sql("::bigint[], ");
        out.push_bind_param::<Array<Text>, _>(&self.outcomes)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.errors)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<Text>, _>(&self.logs)?;
        out.push_sql(&format!(
            "::text[]) AS i(task_id, lease_token, node, started_at, finished_at, outcome, error, log) \
             WHERE EXISTS (SELECT 1 FROM warren_tasks t WHERE t.id = i.task_id) \
             ON CONFLICT DO NOTHING RETURNING task_id) \
             DELETE FROM warren_task_runs old USING added \
             WHERE old.task_id = added.task_id \
             AND old.lease_token < (SELECT k.lease_token FROM warren_task_runs k \
             WHERE k.task_id = added.task_id ORDER BY k.lease_token DESC OFFSET {} LIMIT 1)",
            KEPT_RUNS_PER_TASK - 2
        ));
        Ok(())
    }
}

super::pg_statement!(PgRecordRuns<'_>);

impl Store {
    /// Records a run (see the module's documentation), sharing the commit with the
    /// records of runs that end at the same time; a run that is not
    /// [worth recording](RunRecord::worth_recording) is skipped. A task deleted
    /// meanwhile gets no record.
    pub async fn record_run(&self, record: RunRecord) -> StoreResult<()> {
        self.queue_run_record(record).await
    }

    /// [`Store::record_run`], with the record queued for writing at once and the
    /// answer (written, or why not) collected whenever the caller likes: a runner goes
    /// on with its next task meanwhile. A record whose answer is never collected is
    /// still written, unless its group's write fails. [`Store::flush_run_records`]
    /// waits for every queued record.
    pub fn queue_run_record(
        &self,
        record: RunRecord,
    ) -> impl std::future::Future<Output = StoreResult<()>> + Send + 'static {
        let queued = self
            .prepare_run(record)
            .map(|run| run.map(|prepared| RECORDS.submit(self, prepared)));
        async move {
            let Some(written) = queued? else {
                return Ok(());
            };
            match written.await {
                // The task is gone (deleted between the check and the insert): nothing
                // to record it under.
                Err(StoreError::Database(diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::ForeignKeyViolation,
                    _,
                ))) => Ok(()),
                other => other,
            }
        }
    }

    /// Waits until every queued run record is written (or has failed).
    pub async fn flush_run_records(&self) {
        self.inner.run_records.idle().await;
    }

    /// The record as written, or `None` when it is not worth recording.
    fn prepare_run(&self, record: RunRecord) -> StoreResult<Option<PreparedRun>> {
        if !record.worth_recording() {
            return Ok(None);
        }
        let log =
            serde_json::to_string(&bounded_log(record.log)).map_err(|e| StoreError::Corrupt {
                id: record.task_id,
                field: "run log",
                message: e.to_string(),
            })?;
        let prepared = PreparedRun {
            task_id: record.task_id,
            lease_token: record.lease_token,
            node: record.node,
            started_at: record.started_at,
            finished_at: record.finished_at,
            outcome: record.outcome,
            error: record
                .error
                .map(|e| super::bounded_text(e, super::MAX_ERROR_BYTES)),
            log,
        };
        Ok(Some(prepared))
    }

    /// How this store's run records were grouped: each group is one commit.
    pub fn run_record_stats(&self) -> GroupStats {
        self.inner.run_records.stats()
    }

    /// The recorded runs of task `id`, oldest first (at most [`KEPT_RUNS_PER_TASK`]).
    pub async fn task_runs(&self, id: TaskId) -> StoreResult<Vec<RunRecord>> {
        let mut pooled = self.conn().await?;
        let rows: Vec<RunRow> = on_conn!(&mut pooled.any(), c => {
            r::warren_task_runs
                .filter(r::task_id.eq(id))
                .order(r::lease_token.asc())
                .select(RunRow::as_select())
                .load(c)
                .await?
        });
        rows.into_iter().map(RunRecord::try_from).collect()
    }
}

/// A row of `warren_task_runs`.
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = super::schema::warren_task_runs)]
struct RunRow {
    task_id: TaskId,
    lease_token: LeaseToken,
    node: String,
    started_at: Millis,
    finished_at: Millis,
    outcome: String,
    error: Option<String>,
    log: String,
}

impl TryFrom<RunRow> for RunRecord {
    type Error = StoreError;
    fn try_from(row: RunRow) -> StoreResult<RunRecord> {
        let corrupt = |field, message: String| StoreError::Corrupt {
            id: row.task_id,
            field,
            message,
        };
        let outcome = RunOutcome::parse(&row.outcome).ok_or_else(|| {
            corrupt(
                "run outcome",
                format!("'{}' is not one Warren writes", row.outcome),
            )
        })?;
        let log = serde_json::from_str(&row.log).map_err(|e| corrupt("run log", e.to_string()))?;
        Ok(RunRecord {
            task_id: row.task_id,
            lease_token: row.lease_token,
            node: row.node,
            started_at: row.started_at,
            finished_at: row.finished_at,
            outcome,
            error: row.error,
            log,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(message: String) -> RunLogLine {
        RunLogLine {
            level: "info".into(),
            message,
        }
    }

    #[test]
    fn quiet_completions_are_not_recorded_and_everything_else_is() {
        let mut record = RunRecord {
            task_id: TaskId(1),
            lease_token: LeaseToken(1),
            node: "n".into(),
            started_at: 0,
            finished_at: 1,
            outcome: RunOutcome::Completed,
            error: None,
            log: vec![],
        };
        assert!(!record.worth_recording());
        record.log.push(line("hello".into()));
        assert!(record.worth_recording());
        record.log.clear();
        for outcome in RunOutcome::ALL
            .into_iter()
            .filter(|o| *o != RunOutcome::Completed)
        {
            record.outcome = outcome;
            assert!(record.worth_recording(), "{outcome}");
            assert_eq!(RunOutcome::parse(outcome.as_str()), Some(outcome));
        }
    }

    #[test]
    fn a_group_is_split_so_that_no_statement_holds_a_task_twice() {
        let run = |task: i64, token: i64| PreparedRun {
            task_id: TaskId(task),
            lease_token: LeaseToken(token),
            node: "n".into(),
            started_at: 0,
            finished_at: 1,
            outcome: RunOutcome::Retry,
            error: None,
            log: "[]".into(),
        };
        let group = [
            run(1, 1),
            run(2, 1),
            run(1, 2),
            run(3, 1),
            run(1, 3),
            run(2, 2),
        ];
        let rounds: Vec<Vec<(i64, i64)>> = rounds_of_distinct_tasks(&group)
            .into_iter()
            .map(|round| {
                round
                    .into_iter()
                    .map(|r| (r.task_id.0, r.lease_token.0))
                    .collect()
            })
            .collect();
        assert_eq!(
            rounds,
            vec![
                vec![(1, 1), (2, 1), (3, 1)],
                vec![(1, 2), (2, 2)],
                vec![(1, 3)],
            ]
        );
    }

    #[test]
    fn a_long_log_keeps_whole_lines_and_says_what_it_dropped() {
        let size = |log: &[RunLogLine]| serde_json::to_string(log).unwrap().len();
        // Lines of 1,000 bytes: as many whole ones as fit, the next one's head, a note.
        let log: Vec<RunLogLine> = (0..100).map(|_| line("x".repeat(1000))).collect();
        let kept = bounded_log(log);
        assert!(
            size(&kept) <= MAX_STORED_LOG_BYTES + 1024,
            "{}",
            size(&kept)
        );
        assert!(kept.len() > 50, "{}", kept.len());
        let last = kept.last().unwrap();
        assert_eq!(last.level, "warn");
        assert!(
            last.message.contains("more log line(s)"),
            "{}",
            last.message
        );
        // A million empty lines are bounded by the line count.
        let empty: Vec<RunLogLine> = (0..1_000_000).map(|_| line(String::new())).collect();
        let kept = bounded_log(empty);
        assert_eq!(kept.len(), MAX_STORED_LOG_LINES + 1);
        assert!(
            kept[MAX_STORED_LOG_LINES].message.starts_with(&format!(
                "{} more log line(s)",
                1_000_000 - MAX_STORED_LOG_LINES
            )),
            "{}",
            kept[MAX_STORED_LOG_LINES].message
        );
        // Escapes count as stored: control characters take six bytes each.
        let escaped: Vec<RunLogLine> = (0..100).map(|_| line("\u{1}".repeat(1000))).collect();
        assert!(size(&bounded_log(escaped)) <= MAX_STORED_LOG_BYTES + 1024);
        let short = vec![line("a".into())];
        assert_eq!(bounded_log(short.clone()), short);
    }
}
