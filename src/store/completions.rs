//! Group commit of completions on PostgreSQL.
//!
//! A run that did no database work is completed by one fenced statement (see
//! `run.rs`). When many runs finish at once, each of those statements would be a
//! commit of its own, and the commits, not the work, then bound the throughput. Here
//! completions that arrive while an earlier write is in flight wait for it and are then
//! written together: one statement, one commit, each row still fenced by its own lease
//! token. Nothing is weaker than completing each alone: every caller waits until its
//! own completion has committed before it learns the outcome, and a completion whose
//! token is stale is refused alone while the others commit. A lone completion is
//! written at once, so a quiet queue pays no extra latency.
//!
//! The writes run on the PostgreSQL I/O runtime, so a caller that gives up (its future
//! is dropped) cannot strand the completions of others queued behind it.

use super::conn::PooledConn;
use super::postgres::io_runtime;
use super::signals::OUTCOMES_CHANNEL;
use super::{AnyConn, Store, StoreResult};
use crate::task::{LeaseToken, Millis, TaskId, TaskState};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment};
use diesel::sql_types::{Array, BigInt, Text};
use diesel::QueryResult;
use diesel_async::RunQueryDsl;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::sync::oneshot;

/// Most completions written by one statement.
const MAX_BATCH: usize = 500;

/// One completion to write: the task, its lease token, its result and finish time.
#[derive(Debug, Clone)]
pub(super) struct Completion {
    pub id: TaskId,
    pub token: LeaseToken,
    pub result: String,
    pub started_at: Millis,
    pub finished_at: Millis,
}

/// What the writer tells a waiting caller.
enum Written {
    /// The completion committed (true) or its token was stale (false).
    Done(bool),
    /// The shared statement failed; the caller writes its completion alone, so that it
    /// gets its own error (or succeeds, when another row caused the failure).
    WriteAlone,
}

/// The queue of completions waiting for the next write, whether a writer runs, and
/// counts of what was written.
#[derive(Default)]
pub(super) struct CompletionQueue {
    state: Mutex<QueueState>,
    statements: AtomicU64,
    completions: AtomicU64,
}

#[derive(Default)]
struct QueueState {
    waiting: Vec<(Completion, oneshot::Sender<Written>)>,
    writing: bool,
}

/// How completions were written on PostgreSQL: `completions / statements` is the mean
/// number of completions that shared a statement and a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CompletionStats {
    /// Statements written, each one commit.
    pub statements: u64,
    /// Completions those statements wrote (including refused stale ones).
    pub completions: u64,
}

impl Store {
    /// Completes a claimed task that did no database work, fenced by `token`, sharing
    /// the statement and commit with completions that arrive at the same time. Returns
    /// false when the token is stale.
    pub(super) async fn complete_grouped(&self, completion: Completion) -> StoreResult<bool> {
        let (reply, written) = oneshot::channel();
        let start_writer = {
            let mut state = self.queue().state.lock().expect("completion queue lock");
            state.waiting.push((completion.clone(), reply));
            !std::mem::replace(&mut state.writing, true)
        };
        if start_writer {
            io_runtime().spawn(write_queued(self.clone()));
        }
        match written.await {
            Ok(Written::Done(done)) => Ok(done),
            // The writer failed or was torn down: write this one alone.
            Ok(Written::WriteAlone) | Err(_) => {
                let mut pooled = self.conn().await?;
                let done = write(self, &mut pooled, std::slice::from_ref(&completion)).await?;
                Ok(done.contains(&(completion.id, completion.token)))
            }
        }
    }

    /// How this store's completions of runs without database work were grouped
    /// (PostgreSQL; zero on SQLite, where each completes in its own transaction).
    pub fn completion_stats(&self) -> CompletionStats {
        let queue = self.queue();
        CompletionStats {
            statements: AtomicU64::load(&queue.statements, Ordering::Relaxed),
            completions: AtomicU64::load(&queue.completions, Ordering::Relaxed),
        }
    }

    fn queue(&self) -> &CompletionQueue {
        &self.inner.completions
    }
}

/// Clears the queue if the writer ends without emptying it (it panicked, or its runtime
/// shut down), so no completion is left without a writer: the callers of those queued
/// see their reply dropped and write alone, and the next completion starts a writer.
struct WriterGuard {
    store: Store,
    finished: bool,
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Ok(mut state) = self.store.queue().state.lock() {
            state.waiting.clear();
            state.writing = false;
        }
    }
}

/// The writer: takes a connection, then writes everything queued by then in one
/// statement, until the queue is empty. Completions that arrive while it waits for the
/// connection or the commit go into its next statement.
async fn write_queued(store: Store) {
    let mut guard = WriterGuard {
        store,
        finished: false,
    };
    loop {
        let store = &guard.store;
        let connection = store.conn().await;
        let batch: Vec<_> = {
            let mut state = store.queue().state.lock().expect("completion queue lock");
            if state.waiting.is_empty() {
                state.writing = false;
                drop(state);
                guard.finished = true;
                return;
            }
            let n = state.waiting.len().min(MAX_BATCH);
            state.waiting.drain(..n).collect()
        };
        let (completions, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let written = match connection {
            Ok(mut pooled) => write(store, &mut pooled, &completions).await,
            Err(e) => Err(e),
        };
        match written {
            Ok(done) => {
                for (completion, reply) in completions.iter().zip(replies) {
                    let current = done.contains(&(completion.id, completion.token));
                    let _ = reply.send(Written::Done(current));
                }
            }
            Err(e) => {
                tracing::debug!(
                    "a grouped write of {} completions failed ({e}); each is written alone",
                    completions.len()
                );
                for reply in replies {
                    let _ = reply.send(Written::WriteAlone);
                }
            }
        }
    }
}

/// Writes `completions` in one statement; returns the (id, token) pairs that were
/// current, and so completed.
async fn write(
    store: &Store,
    pooled: &mut PooledConn,
    completions: &[Completion],
) -> StoreResult<HashSet<(TaskId, LeaseToken)>> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        id: TaskId,
        #[diesel(sql_type = BigInt)]
        lease_token: LeaseToken,
    }
    let AnyConn::Postgres(c) = pooled.any() else {
        unreachable!("grouped completions run on PostgreSQL only");
    };
    let rows: Vec<Row> = match completions {
        [one] => PgCompleteOne { completion: one }.load(c).await?,
        many => {
            PgCompleteMany {
                ids: many.iter().map(|c| c.id.0).collect(),
                tokens: many.iter().map(|c| c.token.0).collect(),
                results: many.iter().map(|c| c.result.as_str()).collect(),
                started: many.iter().map(|c| c.started_at).collect(),
                finished: many.iter().map(|c| c.finished_at).collect(),
            }
            .load(c)
            .await?
        }
    };
    let queue = store.queue();
    queue.statements.fetch_add(1, Ordering::Relaxed);
    queue
        .completions
        .fetch_add(completions.len() as u64, Ordering::Relaxed);
    Ok(rows.into_iter().map(|r| (r.id, r.lease_token)).collect())
}

/// What a completion sets, after `SET` (the start and finish times and the result come first, as
/// parameters or columns of the input).
fn push_completed(out: &mut AstPass<'_, '_, Pg>) {
    out.push_sql("state = '");
    out.push_sql(TaskState::Completed.as_str());
    out.push_sql(
        "', last_error = NULL, last_stack = NULL, \
         lease_owner = NULL, lease_until = NULL, iterations = t.iterations + 1",
    );
}

/// The fence of a completion: the row still runs (the token is compared by the caller).
fn push_still_running(out: &mut AstPass<'_, '_, Pg>) {
    out.push_sql(" AND t.state = '");
    out.push_sql(TaskState::Running.as_str());
    out.push_sql("'");
}

/// The outcome NOTIFY for completed rows someone waits on, and the ids written.
fn push_notify_and_ids(out: &mut AstPass<'_, '_, Pg>) {
    out.push_sql(" RETURNING t.id, t.lease_token, t.waited), told AS (SELECT pg_notify('");
    out.push_sql(OUTCOMES_CHANNEL);
    out.push_sql(
        "', id::text) FROM done WHERE waited) \
         SELECT id, lease_token FROM done WHERE (SELECT count(*) FROM told) >= 0",
    );
}

/// The fenced completion of one task, and `pg_notify` of its outcome if someone waits
/// on it. Its parameters are plain values, so PostgreSQL soon settles on one generic
/// plan for it and stops planning each call.
///
/// Like every statement here, a query fragment of its own rather than a `sql_query`
/// (which diesel prepares anew on every call): each connection parses it once.
struct PgCompleteOne<'a> {
    completion: &'a Completion,
}

super::pg_statement!(PgCompleteOne<'_>);

impl QueryFragment<Pg> for PgCompleteOne<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let c = self.completion;
        out.push_sql("WITH done AS (UPDATE warren_tasks t SET started_at = ");
        out.push_bind_param::<BigInt, _>(&c.started_at)?;
        out.push_sql(", finished_at = ");
        out.push_bind_param::<BigInt, _>(&c.finished_at)?;
        out.push_sql(", result = ");
        out.push_bind_param::<Text, _>(&c.result)?;
        out.push_sql(", ");
        push_completed(&mut out);
        out.push_sql(" WHERE t.id = ");
        out.push_bind_param::<BigInt, _>(&c.id)?;
        out.push_sql(" AND t.lease_token = ");
        out.push_bind_param::<BigInt, _>(&c.token)?;
        push_still_running(&mut out);
        push_notify_and_ids(&mut out);
        Ok(())
    }
}

/// The fenced completion of several tasks, and `pg_notify` of each outcome someone
/// waits on, as one statement. Should two of these ever deadlock (it takes stale
/// completions of the same tasks from two nodes at once), PostgreSQL aborts one, and
/// its completions are then written alone.
struct PgCompleteMany<'a> {
    ids: Vec<i64>,
    tokens: Vec<i64>,
    results: Vec<&'a str>,
    started: Vec<Millis>,
    finished: Vec<Millis>,
}

super::pg_statement!(PgCompleteMany<'_>);

impl QueryFragment<Pg> for PgCompleteMany<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(
            "WITH done AS (UPDATE warren_tasks t SET started_at = i.started_at, \
             finished_at = i.finished_at, result = i.result, ",
        );
        push_completed(&mut out);
        out.push_sql(" FROM unnest(");
        out.push_bind_param::<Array<BigInt>, _>(&self.ids)?;
        out.push_sql("::bigint[], ");
        out.push_bind_param::<Array<BigInt>, _>(&self.tokens)?;
        out.push_sql("::bigint[], ");
        out.push_bind_param::<Array<Text>, _>(&self.results)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<BigInt>, _>(&self.started)?;
        out.push_sql("::bigint[], ");
        out.push_bind_param::<Array<BigInt>, _>(&self.finished)?;
        out.push_sql(
            "::bigint[]) AS i(id, token, result, started_at, finished_at) \
             WHERE t.id = i.id AND t.lease_token = i.token",
        );
        push_still_running(&mut out);
        push_notify_and_ids(&mut out);
        Ok(())
    }
}
