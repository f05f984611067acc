//! Group commit of completions on PostgreSQL.
//!
//! A run that did no database work is completed by one fenced statement (see
//! `run.rs`). When many runs finish at once, completions that arrive while an earlier
//! write is in flight wait for it and are then written together (see
//! `group_write.rs`): one statement, one commit, each row still fenced by its own lease
//! token. Nothing is weaker than completing each alone: every caller waits until its
//! own completion has committed before it learns the outcome, and a completion whose
//! token is stale is refused alone while the others commit. A group's rows are given
//! in ascending id order, the order in which bulk actions lock tasks.

use super::conn::PooledConn;
use super::group_write::{GroupQueue, GroupStats, Grouping};
use super::signals::OUTCOMES_CHANNEL;
use super::{AnyConn, Store, StoreResult};
use crate::task::{LeaseToken, Millis, TaskId, TaskState};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment};
use diesel::sql_types::{Array, BigInt, Text};
use diesel::QueryResult;
use diesel_async::RunQueryDsl;
use futures_util::future::BoxFuture;
use std::collections::HashSet;

/// One completion to write: the task, its lease token, its result and finish time.
#[derive(Debug, Clone)]
pub(super) struct Completion {
    pub id: TaskId,
    pub token: LeaseToken,
    pub result: String,
    pub started_at: Millis,
    pub finished_at: Millis,
}

/// The store's queue of completions; a reply is whether the completion committed
/// (false: its token was stale).
pub(super) type CompletionQueue = GroupQueue<Completion, bool>;

/// Completions share statements of up to 500 rows.
static COMPLETIONS: Grouping<Completion, bool> = Grouping {
    queue: |store| &store.inner.completions,
    write,
    max_group: 500,
    what: "completions",
};

/// How completions were written on PostgreSQL: `items / groups` is the mean number of
/// completions that shared a statement and a commit.
pub type CompletionStats = GroupStats;

impl Store {
    /// Completes a claimed task that did no database work, fenced by `token`, sharing
    /// the statement and commit with completions that arrive at the same time. Returns
    /// false when the token is stale.
    pub(super) async fn complete_grouped(&self, completion: Completion) -> StoreResult<bool> {
        self.queue_completion(completion).await
    }

    /// [`Store::complete_grouped`], with the completion queued at once and the answer
    /// collected whenever the caller likes (see `TaskRun::complete_queued`).
    pub(super) fn queue_completion(
        &self,
        completion: Completion,
    ) -> impl std::future::Future<Output = StoreResult<bool>> + Send + 'static {
        COMPLETIONS.submit(self, completion)
    }

    /// Waits until every queued completion is written (or has failed): a node that
    /// shuts down waits for the completions its runners did not wait for.
    pub async fn flush_completions(&self) {
        self.inner.completions.idle().await;
    }

    /// How this store's completions of runs without database work were grouped
    /// (PostgreSQL; zero on SQLite, where each completes in its own transaction).
    pub fn completion_stats(&self) -> CompletionStats {
        self.inner.completions.stats()
    }
}

/// Writes `completions` in one statement; answers, for each, whether it was current
/// and so completed.
fn write<'a>(
    _: &'a Store,
    pooled: &'a mut PooledConn,
    completions: &'a [Completion],
) -> BoxFuture<'a, StoreResult<Vec<bool>>> {
    Box::pin(async move {
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
                // In ascending id order, the order in which bulk actions lock tasks.
                let mut many: Vec<&Completion> = many.iter().collect();
                many.sort_by_key(|c| c.id);
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
        let done: HashSet<(TaskId, LeaseToken)> =
            rows.into_iter().map(|r| (r.id, r.lease_token)).collect();
        Ok(completions
            .iter()
            .map(|c| done.contains(&(c.id, c.token)))
            .collect())
    })
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
