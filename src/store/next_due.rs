//! When a queue should next look for work: the earliest next attempt among the pending
//! tasks of its clusters.
//!
//! The pending-task index is ordered by cluster, then priority, then next attempt (the
//! claim's order), so the earliest next attempt of a cluster is not at one end of it: a
//! plain `min(next_attempt)` reads every pending entry of the cluster, and the queue
//! asks each time it runs out of due work. With a large backlog scheduled for later
//! that was a whole scan each time (300,000 pending tasks: 53 ms on PostgreSQL). The
//! statement here walks the index priority by priority instead: one lookup for each
//! priority in use, and one for the earliest attempt at each (0.25 ms there).
//!
//! On PostgreSQL the statement is prepared once per connection, so that it is planned
//! once: sent as a one-off query it was planned on every call, and planning this
//! recursive query costs far more than running it (0.68 ms of planning against 0.04 ms
//! of execution per call, read from `pg_stat_statements` while an idle node took
//! single tasks one by one, at about one call per task).

use super::{AnyConn, Store, StoreResult};
use crate::task::Millis;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{QueryResult, QueryableByName};
use diesel_async::RunQueryDsl;

/// The earliest next attempt among one cluster's pending tasks without a concurrency
/// key, `$1` the cluster: the priorities in use, each found by a lookup past the one
/// before, then the earliest attempt at each. SQLite runs it as written; PostgreSQL
/// as [`PgNextDue`].
const NEXT_DUE: &str = "\
WITH RECURSIVE levels(priority) AS ( \
    SELECT (SELECT min(priority) FROM warren_tasks \
            WHERE state = 'pending' AND flow_key IS NULL AND cluster = $1) \
    UNION ALL \
    SELECT (SELECT min(t.priority) FROM warren_tasks t \
            WHERE t.state = 'pending' AND t.flow_key IS NULL AND t.cluster = $1 \
              AND t.priority > levels.priority) \
    FROM levels WHERE levels.priority IS NOT NULL \
) \
SELECT min((SELECT min(t.next_attempt) FROM warren_tasks t \
            WHERE t.state = 'pending' AND t.flow_key IS NULL AND t.cluster = $1 \
              AND t.priority = levels.priority)) AS next_attempt \
FROM levels WHERE levels.priority IS NOT NULL";

#[derive(QueryableByName)]
struct NextDue {
    #[diesel(sql_type = Nullable<BigInt>)]
    next_attempt: Option<i64>,
}

impl Store {
    /// The earliest next attempt among pending tasks of `clusters` (possibly in the
    /// past), so a queue can sleep until then; `None` when nothing is pending. Tasks
    /// with a concurrency key are left out (their index is not ordered by cluster and
    /// time): a keyed task due later is found by the queue's safety poll.
    pub async fn next_due(&self, clusters: &[String]) -> StoreResult<Option<Millis>> {
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        let mut earliest: Option<Millis> = None;
        for cluster in clusters {
            let due: NextDue = match &mut conn {
                AnyConn::Postgres(c) => PgNextDue { cluster }.get_result(*c).await?,
                AnyConn::Sqlite(c) => {
                    diesel::sql_query(NEXT_DUE)
                        .bind::<Text, _>(cluster)
                        .get_result(*c)
                        .await?
                }
            };
            earliest = earliest.into_iter().chain(due.next_attempt).min();
        }
        Ok(earliest)
    }
}

/// [`NEXT_DUE`] for `cluster` as a statement PostgreSQL prepares once per connection
/// (a `sql_query` is sent unnamed, and so planned, every time).
struct PgNextDue<'a> {
    cluster: &'a str,
}

super::pg_statement!(PgNextDue<'_>);

impl QueryFragment<Pg> for PgNextDue<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        // diesel numbers the parameters itself, one per bind: each `$1` of the text
        // becomes a bind of the cluster.
        for (i, part) in NEXT_DUE.split("$1").enumerate() {
            if i > 0 {
                out.push_bind_param::<Text, _>(&self.cluster)?;
            }
            out.push_sql(part);
        }
        Ok(())
    }
}
