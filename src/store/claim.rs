//! Claiming due tasks under a lease, renewing leases, releasing unstarted claims, and
//! the two statements of lease recovery (reading the expired leases, taking one back);
//! what recovery records is decided in `executor/recovery.rs`.

use super::conn::on_conn;
use super::dialect::Dialect;
use super::model::TaskRow;
use super::schema::warren_tasks::dsl as t;
use super::{AnyConn, ClaimedTask, Store, StoreResult, Task};
use crate::clock::SharedClock;
use crate::task::{LeaseToken, Millis, TaskId, TaskState, TaskType};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment};
use diesel::sql_types::{Array, BigInt, Text};
use diesel_async::RunQueryDsl;

/// A running task whose lease had expired when [`Store::expired_leases`] read it: what
/// [`Store::recover_lease`] needs to return it to the queue, fenced by its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredLease {
    /// The task.
    pub id: TaskId,
    /// Its type, whose retry policy applies (`None` when the stored name is unreadable:
    /// the default policy applies).
    pub task_type: Option<TaskType>,
    /// The fencing token of the run whose lease expired.
    pub token: LeaseToken,
    /// The runner that held the lease, for the error message.
    pub owner: Option<String>,
    /// When the run started, as its claim estimated it (for the run's history).
    pub started_at: Option<Millis>,
}

/// The PostgreSQL claim: lock due rows in queue order, skipping rows other claimers
/// hold and rows of paused clusters and types (`pauses.rs`), and take them in one
/// statement.
///
/// Each cluster is read on its own (`LATERAL`), so the scan walks the `warren_tasks_due`
/// index in (priority, next_attempt, id) order and stops after `limit` rows: the cost of
/// a claim does not grow with the queue. (`cluster = ANY(list)` cannot use the index
/// order, and sorted every pending task on each claim.) With several clusters, up to
/// `limit` rows per cluster are locked for the duration of the statement and the first
/// `limit` of them overall are taken.
///
/// It is a query fragment of its own rather than a `sql_query` (which diesel prepares
/// anew on every call), so each connection parses it once: a claim is one round trip
/// instead of two. The limit is written into the text (a number, never user text), so
/// each limit is a statement of its own: with the limit as a parameter, PostgreSQL
/// judged a custom plan cheaper on every call and planned each claim anew, which took
/// longer than running it. With it written in, and one cluster passed as a scalar
/// ([`push_cluster_names`]), PostgreSQL settles on one generic plan after a few calls.
/// `id = ANY(ARRAY(..))`, rather than a join, keeps that plan from walking the primary
/// key.
///
/// The pauses are read once per statement, by one scan in a `WITH` at its head, and the
/// filters are "nothing is paused, or the cluster is not" on the list of clusters (so a
/// paused cluster's queue is not read at all) and "nothing is paused, or the type is
/// not" on its rows. Two simpler shapes
/// were measured and dropped (`cargo bench --bench store`, claim 1 + complete, 16
/// workers): `task_type <> ALL(ARRAY(SELECT …))` alone is judged to keep almost no
/// rows of a column with few distinct values, so PostgreSQL sorted every pending task
/// of the cluster on each claim (0.06× the claims); with the look-ups inside the
/// `LATERAL`, their cost was counted once per cluster the generic plan expects (ten),
/// so PostgreSQL planned every claim anew (0.63×).
pub(super) struct PgClaim<'p, 'a>(pub(super) &'p ClaimParams<'a>);

/// What a claim takes and how (see [`Dialect::claim`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClaimParams<'a> {
    /// The runner the leases are for.
    pub(crate) owner: &'a str,
    /// When the leases expire.
    pub(crate) until: Millis,
    /// The claim's instant: tasks due by then are taken.
    pub(crate) now: Millis,
    /// The clusters whose queues are read.
    pub(crate) clusters: &'a [String],
    /// The most tasks taken.
    pub(crate) limit: i64,
    /// Whether tasks with a concurrency key are claimed too (`flow.rs`): only when
    /// this store knows of a rule for a type of these clusters. Without, one statement
    /// takes tasks without a key.
    pub(crate) constrained: bool,
    /// The store's clock: a claim that waited for its locks reads it again
    /// ([`ClaimParams::at_now`]).
    pub(crate) clock: &'a SharedClock,
    /// The lease's length (ms).
    pub(crate) lease_ms: i64,
}

impl ClaimParams<'_> {
    /// The same claim at the clock's time now. A claim that waited for locks (the
    /// constrained claim's) must count time from when it holds them: a rate-limit
    /// bucket filled by the instant it began to wait would give away tokens that came
    /// back only later.
    pub(crate) fn at_now(&self) -> Self {
        let now = self.clock.now();
        ClaimParams {
            now,
            until: now + self.lease_ms,
            ..*self
        }
    }
}

impl diesel::query_builder::QueryId for PgClaim<'_, '_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}
impl diesel::query_builder::Query for PgClaim<'_, '_> {
    type SqlType = diesel::sql_types::Untyped;
}

impl QueryFragment<Pg> for PgClaim<'_, '_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        // The pauses are read once, up front; see the type's comment for why this shape.
        out.push_sql("WITH ");
        out.push_sql(PAUSED_CTE);
        out.push_sql(" ");
        push_take(&mut out, self.0)?;
        push_plain_candidates(&mut out, self.0)?;
        push_take_end(&mut out, self.0);
        Ok(())
    }
}

/// The pauses, read once per claim statement: whether anything is paused, and the
/// paused clusters and types.
pub(super) const PAUSED_CTE: &str = "paused AS MATERIALIZED (SELECT count(*) > 0 AS any, \
     coalesce(array_agg(name) FILTER (WHERE kind = 'cluster'), '{}') AS clusters, \
     coalesce(array_agg(name) FILTER (WHERE kind = 'type'), '{}') AS types \
     FROM warren_paused)";

/// The head of a claim statement: the update that takes the chosen candidates, up to
/// the opening of the list they are chosen from (`c`: id, priority, next_attempt).
pub(super) fn push_take<'b>(
    out: &mut AstPass<'_, 'b, Pg>,
    p: &'b ClaimParams<'_>,
) -> QueryResult<()> {
    out.push_sql("UPDATE warren_tasks SET state = '");
    out.push_sql(TaskState::Running.as_str());
    out.push_sql("', lease_owner = ");
    out.push_bind_param::<Text, _>(p.owner)?;
    out.push_sql(", lease_until = ");
    out.push_bind_param::<BigInt, _>(&p.until)?;
    out.push_sql(", lease_token = lease_token + 1, started_at = ");
    out.push_bind_param::<BigInt, _>(&p.now)?;
    out.push_sql(" WHERE id = ANY(ARRAY(SELECT c.id FROM (");
    Ok(())
}

/// The end of a claim statement: the first `limit` candidates in queue order.
pub(super) fn push_take_end(out: &mut AstPass<'_, '_, Pg>, p: &ClaimParams<'_>) {
    out.push_sql(") AS c ORDER BY c.priority, c.next_attempt, c.id LIMIT ");
    out.push_sql(&p.limit.to_string());
    out.push_sql(")) RETURNING *");
}

/// The due tasks without a concurrency key, up to `limit` per cluster in queue order,
/// locked (skipping rows other claimers hold), outside paused clusters and types: `id,
/// priority, next_attempt`.
pub(super) fn push_plain_candidates<'b>(
    out: &mut AstPass<'_, 'b, Pg>,
    p: &'b ClaimParams<'_>,
) -> QueryResult<()> {
    out.push_sql(
        "SELECT d.id, d.priority, d.next_attempt \
         FROM (SELECT c.name, p.any, p.types FROM (",
    );
    push_cluster_names(out, p.clusters)?;
    // A paused cluster is dropped here, before its queue is read at all.
    out.push_sql(
        ") AS c(name) CROSS JOIN paused AS p \
         WHERE NOT p.any OR c.name <> ALL(p.clusters)) AS c \
         CROSS JOIN LATERAL (\
         SELECT id, priority, next_attempt FROM warren_tasks \
         WHERE state = '",
    );
    out.push_sql(TaskState::Pending.as_str());
    out.push_sql("' AND cluster = c.name AND next_attempt <= ");
    out.push_bind_param::<BigInt, _>(&p.now)?;
    // `flow_key IS NULL` is part of `warren_tasks_due`'s own condition: tasks with a
    // concurrency key are not in it, so no claim walks past them.
    out.push_sql(" AND (NOT c.any OR task_type <> ALL(c.types)) AND flow_key IS NULL");
    out.push_sql(" ORDER BY priority, next_attempt, id LIMIT ");
    out.push_sql(&p.limit.to_string());
    // `NO KEY UPDATE`: the claim changes no key, so the row lock it takes does not
    // conflict with the `KEY SHARE` lock a foreign key check takes on the task (a run's
    // history written just after its outcome), which `FOR UPDATE` would skip past.
    out.push_sql(" FOR NO KEY UPDATE SKIP LOCKED) AS d");
    Ok(())
}

/// The claimed clusters' names as a one-column list (`name`), without repeats.
///
/// One cluster, which is every claim a node's queue makes, is a single text parameter,
/// not an array: a generic plan cannot see an array parameter's length, so PostgreSQL
/// guesses that it unnests to many rows and counts the per-cluster scan that many
/// times. It then judged the generic plan dearer than planning each call anew (for a
/// claim of more than a few tasks), and planned every claim afresh (about 0.25 ms a claim, as long as running it, by the server's
/// `log_min_duration_statement`: the `bind` step of each claim). With one parameter the
/// generic plan costs what a custom one does, and PostgreSQL keeps it after a few
/// calls (bind then takes about 0.01 ms).
pub(super) fn push_cluster_names<'b>(
    out: &mut AstPass<'_, 'b, Pg>,
    clusters: &'b [String],
) -> QueryResult<()> {
    match clusters {
        [one] => {
            out.push_sql("SELECT ");
            out.push_bind_param::<Text, _>(one)?;
            out.push_sql("::text");
        }
        many => {
            out.push_sql("SELECT DISTINCT unnest(");
            out.push_bind_param::<Array<Text>, _>(many)?;
            out.push_sql("::text[])");
        }
    }
    Ok(())
}

/// How long giving claims back waits for a locked task row (PostgreSQL).
pub const RELEASE_LOCK_TIMEOUT: &str = "2s";

impl Store {
    /// Claims up to `limit` due pending tasks of the given clusters for `owner`, in
    /// (priority, next attempt, id) order, each with a lease of `lease_ms` and a new
    /// fencing token. Concurrent claimers never receive the same task.
    pub async fn claim(
        &self,
        owner: &str,
        clusters: &[String],
        limit: usize,
        lease_ms: i64,
    ) -> StoreResult<Vec<ClaimedTask>> {
        self.claim_on(owner, clusters, limit, lease_ms, None).await
    }

    /// [`Store::claim`] on a connection of `thread` when given and one is to be had
    /// (the queue's thread's own: see [`super::ThreadConnections`]), else on one of the
    /// store's pool.
    pub async fn claim_on(
        &self,
        owner: &str,
        clusters: &[String],
        limit: usize,
        lease_ms: i64,
        thread: Option<&super::ThreadConnections>,
    ) -> StoreResult<Vec<ClaimedTask>> {
        if limit == 0 || clusters.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now();
        let until = now + lease_ms;
        let constrained = self.rules_in(clusters).await?;
        let params = ClaimParams {
            owner,
            until,
            now,
            clusters,
            limit: limit as i64,
            constrained,
            clock: self.clock(),
            lease_ms,
        };
        let mut pooled = self.run_conn(thread).await?;
        let rows: Vec<TaskRow> =
            on_conn!(&mut pooled.any(), c => Dialect::claim(c, &params).await?);
        let mut claimed = rows
            .into_iter()
            .map(|row| {
                let token = row.lease_token;
                Task::try_from(row).map(|task| ClaimedTask { task, token })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        claimed.sort_by_key(|c| (c.task.priority, c.task.next_attempt, c.task.id));
        Ok(claimed)
    }

    /// Extends the lease of a running task. Returns false when the token is stale: the
    /// task was cancelled or claimed by someone else, and the runner should stop it.
    pub async fn renew_lease(
        &self,
        id: TaskId,
        token: LeaseToken,
        owner: &str,
        lease_ms: i64,
    ) -> StoreResult<bool> {
        let until = self.now() + lease_ms;
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        let n = on_conn!(&mut conn, c => {
            diesel::update(
                t::warren_tasks
                    .filter(t::id.eq(id))
                    .filter(t::lease_token.eq(token))
                    .filter(t::state.eq(TaskState::Running)),
            )
            .set((t::lease_until.eq(until), t::lease_owner.eq(owner)))
            .execute(c)
            .await?
        });
        Ok(n == 1)
    }

    /// Gives back claimed tasks that never started (a queue claims a few ahead of its
    /// runners and returns them when it stops): each is pending again, due now, with no
    /// failure counted. Fenced by the token: a task taken over meanwhile is left alone.
    /// Returns how many were released.
    pub async fn release_claims(&self, claims: &[(TaskId, LeaseToken)]) -> StoreResult<usize> {
        let released = self.release_each(claims).await?;
        Ok(released.into_iter().filter(|&r| r).count())
    }

    /// [`Store::release_claims`], answering for each claim whether its task was given
    /// back (it was still running under that token), in order. On PostgreSQL it waits
    /// at most [`RELEASE_LOCK_TIMEOUT`] for a row another transaction holds (a run
    /// group whose connection failed, not yet rolled back by the server): it then
    /// fails, and those leases expire instead.
    pub async fn release_each(&self, claims: &[(TaskId, LeaseToken)]) -> StoreResult<Vec<bool>> {
        self.in_transaction(async |conn, pending| {
            if let AnyConn::Postgres(c) = conn {
                let limit = format!("SET LOCAL lock_timeout = '{RELEASE_LOCK_TIMEOUT}'");
                diesel_async::SimpleAsyncConnection::batch_execute(&mut **c, &limit).await?;
            }
            let mut released = Vec::with_capacity(claims.len());
            let mut clusters = Vec::new();
            for &(id, token) in claims {
                let cluster: Option<String> = on_conn!(conn, c => {
                    diesel::update(
                        t::warren_tasks
                            .filter(t::id.eq(id))
                            .filter(t::lease_token.eq(token))
                            .filter(t::state.eq(TaskState::Running)),
                    )
                    .set((
                        t::state.eq(TaskState::Pending),
                        t::lease_owner.eq(None::<String>),
                        t::lease_until.eq(None::<i64>),
                        t::started_at.eq(None::<i64>),
                    ))
                    .returning(t::cluster)
                    .get_result(c)
                    .await
                    .optional()?
                });
                released.push(cluster.is_some());
                clusters.extend(cluster);
            }
            clusters.sort_unstable();
            clusters.dedup();
            for cluster in clusters {
                super::signals::announce_work(conn, pending, &cluster).await?;
            }
            Ok(released)
        })
        .await
    }

    /// The running tasks whose lease has expired now (`lease_until < now`): the first
    /// step of [`Store::recover_expired_leases`]. What it returns is only a candidate
    /// list; [`Store::recover_lease`] decides.
    pub async fn expired_leases(&self) -> StoreResult<Vec<ExpiredLease>> {
        let now: Millis = self.now();
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        type Row = (TaskId, String, LeaseToken, Option<String>, Option<Millis>);
        let rows: Vec<Row> = on_conn!(&mut conn, c => {
            t::warren_tasks
                .select((t::id, t::task_type, t::lease_token, t::lease_owner, t::started_at))
                .filter(t::state.eq(TaskState::Running))
                .filter(t::lease_until.lt(now))
                .load(c)
                .await?
        });
        Ok(rows
            .into_iter()
            .map(|(id, task_type, token, owner, started_at)| ExpiredLease {
                id,
                task_type: task_type.parse().ok(),
                token,
                owner,
                started_at,
            })
            .collect())
    }
}

/// The first write of a lease recovery (see `executor/recovery.rs`): clears the lease
/// of `lease`'s task if it still runs under the same token with a lease that has
/// expired *now*. Returns whether it did; false means a renewal, a cancellation or
/// another recovery landed after the read, and nothing may be written. On PostgreSQL
/// it also locks the row, so no renewal can land between it and the failure written
/// after it in the same transaction.
pub(crate) async fn take_expired_lease(
    conn: &mut AnyConn<'_>,
    lease: &ExpiredLease,
    now: Millis,
) -> StoreResult<bool> {
    let taken = on_conn!(conn, c => {
        diesel::update(
            t::warren_tasks
                .filter(t::id.eq(lease.id))
                .filter(t::lease_token.eq(lease.token))
                .filter(t::state.eq(TaskState::Running))
                .filter(t::lease_until.lt(now)),
        )
        .set(t::lease_until.eq(None::<i64>))
        .execute(c)
        .await?
    });
    Ok(taken == 1)
}
