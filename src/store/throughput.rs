//! Finished tasks per time bucket, by outcome: the dashboard's throughput chart.

use super::conn::on_conn;
use super::{Store, StoreError, StoreResult};
use crate::task::{Millis, TaskState};
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use serde::Serialize;

/// Tasks that finished in one time bucket, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ThroughputPoint {
    /// Start of the bucket.
    pub at: Millis,
    /// Tasks completed in it.
    pub completed: i64,
    /// Tasks that failed for good in it.
    pub failed: i64,
    /// Tasks cancelled in it.
    pub cancelled: i64,
}

#[derive(diesel::QueryableByName)]
struct BucketCount {
    #[diesel(sql_type = BigInt)]
    bucket: i64,
    #[diesel(sql_type = Text)]
    state: TaskState,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Most buckets one call may ask for.
const MAX_BUCKETS: i64 = 10_000;

impl Store {
    /// Finished tasks (by their `finished_at`) per bucket of `bucket_ms` from `since` up
    /// to `until` (exclusive), oldest first, one point for every bucket, empty ones
    /// included. Tasks already pruned are not counted.
    pub async fn throughput(
        &self,
        since: Millis,
        until: Millis,
        bucket_ms: i64,
    ) -> StoreResult<Vec<ThroughputPoint>> {
        if bucket_ms <= 0 {
            return Err(StoreError::Invalid {
                field: "bucket_ms",
                message: format!("{bucket_ms} is not positive"),
            });
        }
        let buckets = (until - since + bucket_ms - 1).max(0) / bucket_ms;
        if buckets > MAX_BUCKETS {
            return Err(StoreError::Invalid {
                field: "until",
                message: format!("{buckets} buckets asked for; at most {MAX_BUCKETS}"),
            });
        }
        // The grouped expression must read the same in SELECT and GROUP BY for
        // PostgreSQL, which two bound parameters do not; `since` and `bucket_ms` are
        // integers, so they are written into the statement (no text from outside).
        let bucket = format!("(finished_at - {since}) / {bucket_ms}");
        let (completed, failed, cancelled) = (
            TaskState::Completed,
            TaskState::Failed,
            TaskState::Cancelled,
        );
        let sql = format!(
            "SELECT {bucket} AS bucket, state, COUNT(*) AS n FROM warren_tasks \
             WHERE finished_at >= {since} AND finished_at < {until} \
             AND state IN ('{completed}', '{failed}', '{cancelled}') \
             GROUP BY {bucket}, state"
        );
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        let rows: Vec<BucketCount> = on_conn!(&mut conn, c => {
            diesel::sql_query(&sql).load(c).await?
        });
        let mut points: Vec<ThroughputPoint> = (0..buckets)
            .map(|i| ThroughputPoint {
                at: since + i * bucket_ms,
                ..ThroughputPoint::default()
            })
            .collect();
        for row in rows {
            let Some(point) = usize::try_from(row.bucket)
                .ok()
                .and_then(|i| points.get_mut(i))
            else {
                continue;
            };
            match row.state {
                TaskState::Completed => point.completed += row.n,
                TaskState::Failed => point.failed += row.n,
                _ => point.cancelled += row.n,
            }
        }
        Ok(points)
    }
}
