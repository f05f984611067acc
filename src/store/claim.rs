//! Claiming due tasks under a lease, renewing leases, and recovering the tasks of
//! runners whose lease expired.

use super::conn::{begin, finish, on_conn};
use super::model::TaskRow;
use super::run::record_failure_on;
use super::schema::warren_tasks::dsl as t;
use super::signals::Pending;
use super::{AnyConn, ClaimedTask, Store, StoreError, StoreResult, Task};
use crate::task::{Millis, RetryPolicy, TaskId, TaskType};
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
    pub token: i64,
    /// The runner that held the lease, for the error message.
    pub owner: Option<String>,
}

/// The PostgreSQL claim: lock due rows in queue order, skipping rows other claimers
/// hold, and take them in one statement.
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
/// longer than running it. With it written in, PostgreSQL settles on one generic plan
/// after a few calls. `id = ANY(ARRAY(..))`, rather than a join, keeps that plan from
/// walking the primary key.
struct PgClaim<'a> {
    owner: &'a str,
    until: Millis,
    now: Millis,
    clusters: &'a [String],
    limit: i64,
}

super::pg_statement!(PgClaim<'_>);

impl QueryFragment<Pg> for PgClaim<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("UPDATE warren_tasks SET state = 'running', lease_owner = ");
        out.push_bind_param::<Text, _>(self.owner)?;
        out.push_sql(", lease_until = ");
        out.push_bind_param::<BigInt, _>(&self.until)?;
        out.push_sql(", lease_token = lease_token + 1, started_at = ");
        out.push_bind_param::<BigInt, _>(&self.now)?;
        out.push_sql(
            " WHERE id = ANY(ARRAY(\
             SELECT d.id FROM (SELECT DISTINCT unnest(",
        );
        out.push_bind_param::<Array<Text>, _>(self.clusters)?;
        out.push_sql(
            "::text[])) AS c(name) \
             CROSS JOIN LATERAL (\
             SELECT id, priority, next_attempt FROM warren_tasks \
             WHERE state = 'pending' AND cluster = c.name AND next_attempt <= ",
        );
        out.push_bind_param::<BigInt, _>(&self.now)?;
        let limit = self.limit.to_string();
        out.push_sql(" ORDER BY priority, next_attempt, id LIMIT ");
        out.push_sql(&limit);
        out.push_sql(
            " FOR UPDATE SKIP LOCKED) AS d \
             ORDER BY d.priority, d.next_attempt, d.id LIMIT ",
        );
        out.push_sql(&limit);
        out.push_sql(")) RETURNING *");
        Ok(())
    }
}

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
        if limit == 0 || clusters.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.now();
        let until = now + lease_ms;
        let mut pooled = self.conn().await?;
        let rows: Vec<TaskRow> = match pooled.any() {
            AnyConn::Postgres(c) => {
                let claim = PgClaim {
                    owner,
                    until,
                    now,
                    clusters,
                    limit: limit as i64,
                };
                claim.load(c).await?
            }
            mut conn @ AnyConn::Sqlite(_) => {
                // SQLite has one writer at a time: select and take inside one
                // immediate transaction.
                begin(&mut conn).await?;
                let result = async {
                    let AnyConn::Sqlite(c) = &mut conn else {
                        unreachable!()
                    };
                    let ids: Vec<i64> = t::warren_tasks
                        .select(t::id)
                        .filter(t::state.eq("pending"))
                        .filter(t::next_attempt.le(now))
                        .filter(t::cluster.eq_any(clusters))
                        .order((t::priority, t::next_attempt, t::id))
                        .limit(limit as i64)
                        .load(&mut **c)
                        .await?;
                    let rows = diesel::update(t::warren_tasks.filter(t::id.eq_any(&ids)))
                        .set((
                            t::state.eq("running"),
                            t::lease_owner.eq(owner),
                            t::lease_until.eq(until),
                            t::lease_token.eq(t::lease_token + 1),
                            t::started_at.eq(now),
                        ))
                        .returning(TaskRow::as_returning())
                        .get_results(&mut **c)
                        .await?;
                    Ok::<_, StoreError>(rows)
                }
                .await;
                finish(&mut conn, result).await?
            }
        };
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
        token: i64,
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
                    .filter(t::state.eq("running")),
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
    pub async fn release_claims(&self, claims: &[(TaskId, i64)]) -> StoreResult<usize> {
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        let mut pending = Pending::default();
        begin(&mut conn).await?;
        let result = async {
            let mut released = 0;
            let mut clusters = Vec::new();
            for &(id, token) in claims {
                let cluster: Option<String> = on_conn!(&mut conn, c => {
                    diesel::update(
                        t::warren_tasks
                            .filter(t::id.eq(id))
                            .filter(t::lease_token.eq(token))
                            .filter(t::state.eq("running")),
                    )
                    .set((
                        t::state.eq("pending"),
                        t::lease_owner.eq(None::<String>),
                        t::lease_until.eq(None::<i64>),
                        t::started_at.eq(None::<i64>),
                    ))
                    .returning(t::cluster)
                    .get_result(c)
                    .await
                    .optional()?
                });
                if let Some(cluster) = cluster {
                    released += 1;
                    clusters.push(cluster);
                }
            }
            clusters.sort_unstable();
            clusters.dedup();
            for cluster in clusters {
                super::signals::announce_work(&mut conn, &mut pending, &cluster).await?;
            }
            Ok(released)
        }
        .await;
        let released = finish(&mut conn, result).await?;
        pending.deliver(&self.inner.signals);
        Ok(released)
    }

    /// Returns tasks whose lease expired (their runner or node died) to the queue. Each
    /// counts as a failure under its type's retry policy (`policy`), but is due again at
    /// once: the crash was not the task's choice of delay. Returns the recovered ids.
    ///
    /// It reads the expired leases ([`Store::expired_leases`]), then recovers each with
    /// [`Store::recover_lease`], whose write checks the lease again: a runner that renewed
    /// its lease in between keeps its task.
    pub async fn recover_expired_leases(
        &self,
        policy: &(dyn Fn(&TaskType) -> RetryPolicy + Sync),
    ) -> StoreResult<Vec<TaskId>> {
        let mut recovered = Vec::new();
        for lease in self.expired_leases().await? {
            let retry = lease.task_type.as_ref().map(policy).unwrap_or_default();
            if self.recover_lease(&lease, retry).await? {
                recovered.push(lease.id);
            }
        }
        Ok(recovered)
    }

    /// The running tasks whose lease has expired now (`lease_until < now`): the first
    /// step of [`Store::recover_expired_leases`]. What it returns is only a candidate
    /// list; [`Store::recover_lease`] decides.
    pub async fn expired_leases(&self) -> StoreResult<Vec<ExpiredLease>> {
        let now: Millis = self.now();
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        let rows: Vec<(i64, String, i64, Option<String>)> = on_conn!(&mut conn, c => {
            t::warren_tasks
                .select((t::id, t::task_type, t::lease_token, t::lease_owner))
                .filter(t::state.eq("running"))
                .filter(t::lease_until.lt(now))
                .load(c)
                .await?
        });
        Ok(rows
            .into_iter()
            .map(|(id, task_type, token, owner)| ExpiredLease {
                id,
                task_type: task_type.parse().ok(),
                token,
                owner,
            })
            .collect())
    }

    /// Recovers one task read by [`Store::expired_leases`]: records the failure "the
    /// lease of runner X expired" under `policy`, due again at once. Returns false, and
    /// changes nothing, unless the task still runs under the same token with a lease
    /// that has expired *now*: a renewal, a cancellation or another recovery that landed
    /// after the read wins.
    ///
    /// The decision is the recovery's first write, a conditional update carrying the
    /// token and `lease_until < now`; on PostgreSQL it also locks the row, so no renewal
    /// can land between it and the failure written after it in the same transaction.
    pub async fn recover_lease(
        &self,
        lease: &ExpiredLease,
        policy: RetryPolicy,
    ) -> StoreResult<bool> {
        let now: Millis = self.now();
        let error = format!(
            "the lease of runner '{}' expired before the task was resolved (the runner or its node stopped)",
            lease.owner.as_deref().unwrap_or_default()
        );
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        let mut pending = Pending::default();
        begin(&mut conn).await?;
        let result: StoreResult<bool> = async {
            let taken = on_conn!(&mut conn, c => {
                diesel::update(
                    t::warren_tasks
                        .filter(t::id.eq(lease.id))
                        .filter(t::lease_token.eq(lease.token))
                        .filter(t::state.eq("running"))
                        .filter(t::lease_until.lt(now)),
                )
                .set(t::lease_until.eq(None::<i64>))
                .execute(c)
                .await?
            });
            if taken == 0 {
                return Ok(false);
            }
            record_failure_on(
                &mut conn,
                &mut pending,
                lease.id,
                lease.token,
                &error,
                None,
                Some(now),
                policy,
                now,
            )
            .await?;
            Ok(true)
        }
        .await;
        match finish(&mut conn, result).await {
            Ok(recovered) => {
                pending.deliver(&self.inner.signals);
                Ok(recovered)
            }
            // Taken over in the meantime (cannot happen under the row lock; kept safe).
            Err(StoreError::LeaseLost { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
