//! Rate limits in the database: one bucket per (type, key) in `warren_rate_buckets`,
//! kept as its theoretical arrival time in nanoseconds (`crate::rate_limit` holds the
//! arithmetic). The constrained claim (`flow.rs`) takes at most a key's tokens and
//! spends them in its own statement, under the lock of the key's cluster, so nodes
//! claiming at once share one bucket. A queue whose due tasks wait for tokens sleeps
//! until the first bucket it waits on has one ([`Store::next_rate_start`]); maintenance
//! deletes the buckets that are full again ([`Store::prune_rate_buckets`]).

use super::conn::on_conn;
use super::schema::warren_rate_buckets::dsl as b;
use super::schema::warren_tasks::dsl as t;
use super::{AnyConn, Store, StoreResult};
use crate::rate_limit::ms_to_ns;
use crate::task::{Millis, TaskState};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use std::collections::HashMap;

/// How long (ms) a bucket stays once it is full again, before maintenance deletes it:
/// longer than any difference between the nodes' clocks should be.
pub const PRUNE_BUCKETS_AFTER_MS: i64 = 10 * 60_000;

impl Store {
    /// For each cluster and instant `(cluster, after)` of `marks`, the first instant
    /// after `after` at which a bucket with due tasks of that cluster waiting lets one
    /// of them start; the earliest of them, `None` when there is none. It may be past:
    /// a token that came back since `after`. A queue passes, per cluster, the instant
    /// it last claimed or was woken, and sleeps until the instant returned (or claims
    /// at once when it has passed) rather than until its safety poll, so rate-limited
    /// tasks start at their rate; a token that was back already then is not a reason
    /// to wake (the rate did not hold those tasks back).
    pub async fn next_rate_start(&self, marks: &[(String, Millis)]) -> StoreResult<Option<Millis>> {
        let clusters: Vec<String> = marks.iter().map(|(c, _)| c.clone()).collect();
        let limits = self.rate_limits_in(&clusters).await?;
        if limits.is_empty() {
            return Ok(None);
        }
        // The mark of each rate-limited type: its cluster's.
        let after_of = |task_type: &str| -> Option<Millis> {
            let cluster = self.registered_types().get(task_type)?.cluster.clone();
            marks.iter().find(|(c, _)| *c == cluster).map(|(_, at)| *at)
        };
        let marks_by_type: HashMap<&String, Millis> = limits
            .keys()
            .filter_map(|t| Some((t, after_of(t)?)))
            .collect();
        let Some(earliest) = marks_by_type.values().min().copied() else {
            return Ok(None);
        };
        let now = self.now();
        let types: Vec<&String> = marks_by_type.keys().copied().collect();
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        // The buckets that were not full at the earliest mark and have a due task
        // waiting.
        let buckets: Vec<(String, i64)> = on_conn!(&mut conn, c => {
            b::warren_rate_buckets
                .filter(b::task_type.eq_any(&types))
                .filter(b::tat.gt(ms_to_ns(earliest)))
                .filter(diesel::dsl::exists(
                    t::warren_tasks
                        .filter(t::state.eq(TaskState::Pending))
                        .filter(t::task_type.eq(b::task_type))
                        .filter(t::flow_key.eq(b::flow_key.nullable()))
                        .filter(t::next_attempt.le(now)),
                ))
                .select((b::task_type, b::tat))
                .load(c)
                .await?
        });
        Ok(buckets
            .into_iter()
            .filter_map(|(task_type, tat)| {
                let start = limits.get(&task_type)?.next_start_ms(tat);
                (start > *marks_by_type.get(&task_type)?).then_some(start)
            })
            .min())
    }

    /// Deletes the buckets that have been full for [`PRUNE_BUCKETS_AFTER_MS`] (a full
    /// bucket reads the same as no row), so keys that stopped starting tasks leave
    /// nothing behind; the margin keeps a node whose clock runs ahead from deleting a
    /// bucket still in debt. Rows a claim holds are skipped, not waited for. Returns
    /// how many.
    pub async fn prune_rate_buckets(&self) -> StoreResult<usize> {
        let before = ms_to_ns(self.now() - PRUNE_BUCKETS_AFTER_MS);
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        Ok(match &mut conn {
            AnyConn::Postgres(c) => {
                diesel::sql_query(
                    "DELETE FROM warren_rate_buckets WHERE (task_type, flow_key) IN (\
                     SELECT task_type, flow_key FROM warren_rate_buckets WHERE tat <= $1 \
                     FOR UPDATE SKIP LOCKED)",
                )
                .bind::<BigInt, _>(before)
                .execute(*c)
                .await?
            }
            // One writer at a time: no claim holds a row meanwhile.
            AnyConn::Sqlite(c) => {
                diesel::delete(b::warren_rate_buckets.filter(b::tat.le(before)))
                    .execute(*c)
                    .await?
            }
        })
    }

    /// For each rate-limited type, the keys whose bucket holds back starts now and the
    /// instant each next lets one start: what the dashboard shows as a rate-limit wait.
    pub(super) async fn rate_waits(&self) -> StoreResult<HashMap<(String, String), Millis>> {
        let limits: HashMap<String, crate::rate_limit::RateLimit> = {
            self.refresh_registry().await?;
            self.registered_types()
                .iter()
                .filter_map(|(name, t)| Some((name.clone(), t.rate_limit.clone()?)))
                .collect()
        };
        if limits.is_empty() {
            return Ok(HashMap::new());
        }
        let now_ns = ms_to_ns(self.now());
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        let buckets: Vec<(String, String, i64)> = on_conn!(&mut conn, c => {
            b::warren_rate_buckets
                .filter(b::tat.gt(now_ns))
                .select((b::task_type, b::flow_key, b::tat))
                .load(c)
                .await?
        });
        Ok(buckets
            .into_iter()
            .filter_map(|(task_type, key, tat)| {
                let rate = limits.get(&task_type)?;
                (rate.available(Some(tat), now_ns) == 0)
                    .then(|| ((task_type, key), rate.next_start_ms(tat)))
            })
            .collect())
    }
}
