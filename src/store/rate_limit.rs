//! Rate limits in the database: one bucket per (type, key) in `warren_rate_buckets`,
//! kept as its theoretical arrival time in microseconds (`crate::rate_limit` holds the
//! arithmetic). The constrained claim (`flow.rs`) takes at most a key's tokens and
//! spends them in its own transaction, under the lock of the key's cluster, so nodes
//! claiming at once share one bucket. A queue whose due tasks wait for tokens sleeps
//! until the first bucket it waits on has one ([`Store::next_rate_start`]).

use super::conn::on_conn;
use super::model::TaskRow;
use super::schema::warren_rate_buckets::dsl as b;
use super::schema::warren_tasks::dsl as t;
use super::{Store, StoreResult};
use crate::task::{Millis, TaskState};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::collections::HashMap;

/// Spends a token of its bucket for each claimed task of a rate-limited type, in the
/// constrained claim's transaction on PostgreSQL (after its statement, under the same
/// cluster locks). The rates come from the registry in the statement, as the claim's
/// did. A bucket's new TAT is `max(TAT, now) + n × interval` (`RateLimit::tat_after`):
/// the insert writes `now + n × interval`, and a bucket that exists adds the same
/// `n × interval` to the later of its TAT and now.
pub(super) async fn pg_spend_tokens(
    c: &mut AsyncPgConnection,
    rows: &[TaskRow],
    now: Millis,
) -> StoreResult<()> {
    let mut started: HashMap<(&str, &str), i64> = HashMap::new();
    for row in rows {
        if let Some(key) = &row.flow_key {
            *started
                .entry((row.task_type.as_str(), key.as_str()))
                .or_default() += 1;
        }
    }
    if started.is_empty() {
        return Ok(());
    }
    let (mut types, mut keys, mut counts) = (Vec::new(), Vec::new(), Vec::new());
    for ((task_type, key), n) in started {
        types.push(task_type);
        keys.push(key);
        counts.push(n);
    }
    diesel::sql_query(
        "INSERT INTO warren_rate_buckets (task_type, flow_key, tat) \
         SELECT u.task_type, u.flow_key, \
         $4 + u.n * greatest(1, tt.rate_period_ms * 1000 / tt.rate_count) \
         FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(task_type, flow_key, n) \
         JOIN warren_task_types tt ON tt.task_type = u.task_type AND tt.rate_count IS NOT NULL \
         ON CONFLICT (task_type, flow_key) DO UPDATE \
         SET tat = greatest(warren_rate_buckets.tat, $4) + (excluded.tat - $4)",
    )
    .bind::<Array<Text>, _>(types)
    .bind::<Array<Text>, _>(keys)
    .bind::<Array<BigInt>, _>(counts)
    .bind::<BigInt, _>(now.saturating_mul(1_000))
    .execute(c)
    .await?;
    Ok(())
}

impl Store {
    /// The first instant after `after` at which a bucket with due tasks of `clusters`
    /// waiting lets one of them start; `None` when there is none. It may be past: a
    /// token that came back since `after`. A queue passes the instant it last sent a
    /// claim, and sleeps until the instant returned (or claims at once when it has
    /// passed) rather than until its safety poll, so rate-limited tasks start at their
    /// rate; a token that was there already when it claimed is not a reason to wake
    /// (what held those tasks back was not the rate).
    pub async fn next_rate_start(
        &self,
        clusters: &[String],
        after: Millis,
    ) -> StoreResult<Option<Millis>> {
        let limits = self.rate_limits_in(clusters).await?;
        if limits.is_empty() {
            return Ok(None);
        }
        let now = self.now();
        let after_us = after.saturating_mul(1_000);
        let types: Vec<&String> = limits.keys().collect();
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        // The buckets that were not full at `after` and have a due task waiting.
        let buckets: Vec<(String, i64)> = on_conn!(&mut conn, c => {
            b::warren_rate_buckets
                .filter(b::task_type.eq_any(&types))
                .filter(b::tat.gt(after_us))
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
                (start > after).then_some(start)
            })
            .min())
    }

    /// Deletes the buckets that are full again (their TAT has passed, which reads the
    /// same as no row), so keys that stopped starting tasks leave nothing behind.
    /// Returns how many.
    pub async fn prune_rate_buckets(&self) -> StoreResult<usize> {
        let now_us = self.now().saturating_mul(1_000);
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        Ok(on_conn!(&mut conn, c => {
            diesel::delete(b::warren_rate_buckets.filter(b::tat.le(now_us)))
                .execute(c)
                .await?
        }))
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
        let now = self.now();
        let now_us = now.saturating_mul(1_000);
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        let buckets: Vec<(String, String, i64)> = on_conn!(&mut conn, c => {
            b::warren_rate_buckets
                .filter(b::tat.gt(now_us))
                .select((b::task_type, b::flow_key, b::tat))
                .load(c)
                .await?
        });
        Ok(buckets
            .into_iter()
            .filter_map(|(task_type, key, tat)| {
                let rate = limits.get(&task_type)?;
                (rate.available(Some(tat), now_us) == 0)
                    .then(|| ((task_type, key), rate.next_start_ms(tat)))
            })
            .collect())
    }
}
