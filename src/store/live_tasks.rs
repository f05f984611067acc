//! The live (pending and running) tasks of one type, found through the partial indexes
//! that hold the live queue.
//!
//! `warren_tasks` has no index on the type alone: no statement read one, and every
//! write of a task paid for it (migration 000015). So a statement that needs a type's
//! live tasks must not say `task_type = ? AND state IN (…)`: that reads the whole table,
//! with every finished task kept for the retention period. Each arm below repeats the
//! condition of one partial index, so the planner reads that index, which is as large as
//! the live queue, and checks the type on its rows:
//! - pending without a key: `warren_tasks_due`;
//! - pending with a key: `warren_tasks_flow_due` (type first: a range of it);
//! - running with a key: `warren_tasks_flow_running` (type first);
//! - running without a key: `warren_tasks_leases`. A running task always holds a lease:
//!   the claim sets it, and every write that clears it moves the task out of `running`
//!   in the same statement (recovery: in the same transaction).
//!
//! The type is parameter 1 in every arm.

/// `SELECT id` of the live tasks of the type bound as `$1`, on PostgreSQL.
pub(super) const PG_LIVE_OF_TYPE: &str = "\
    SELECT id FROM warren_tasks \
    WHERE state = 'pending' AND flow_key IS NULL AND task_type = $1 \
    UNION ALL SELECT id FROM warren_tasks \
    WHERE state = 'pending' AND flow_key IS NOT NULL AND task_type = $1 \
    UNION ALL SELECT id FROM warren_tasks \
    WHERE state = 'running' AND flow_key IS NOT NULL AND task_type = $1 \
    UNION ALL SELECT id FROM warren_tasks \
    WHERE lease_until IS NOT NULL AND state = 'running' AND flow_key IS NULL AND task_type = $1";

/// `SELECT id` of the live tasks of the type bound as `?1`, on SQLite. Each arm names
/// its index: SQLite's planner, which weighs a partial index by its whole table's
/// statistics, may otherwise scan the table.
pub(super) const SQLITE_LIVE_OF_TYPE: &str = "\
    SELECT id FROM warren_tasks INDEXED BY warren_tasks_due \
    WHERE state = 'pending' AND flow_key IS NULL AND task_type = ?1 \
    UNION ALL SELECT id FROM warren_tasks INDEXED BY warren_tasks_flow_due \
    WHERE state = 'pending' AND flow_key IS NOT NULL AND task_type = ?1 \
    UNION ALL SELECT id FROM warren_tasks INDEXED BY warren_tasks_flow_running \
    WHERE state = 'running' AND flow_key IS NOT NULL AND task_type = ?1 \
    UNION ALL SELECT id FROM warren_tasks INDEXED BY warren_tasks_leases \
    WHERE lease_until IS NOT NULL AND state = 'running' AND flow_key IS NULL AND task_type = ?1";

#[cfg(test)]
mod tests {
    use super::super::flow::{pg_rekey_sql, sqlite_rekey_sql};
    use crate::clock::SystemClock;
    use crate::store::{AnyConn, NewTask, Store, StoreConfig};
    use diesel::sql_types::Text;
    use diesel::QueryableByName;
    use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
    use std::sync::Arc;

    /// A queue of 3,000 tasks of which 30 are live (20 pending, 10 running), the rest
    /// finished, with statistics: what a node's table looks like after a while.
    async fn mostly_finished(store: &Store) {
        let tasks: Vec<NewTask> = (0..3000)
            .map(|i| NewTask::new("demo:ping".parse().unwrap(), serde_json::json!({ "i": i })))
            .collect();
        store.schedule_batch(&tasks).await.unwrap();
        store
            .claim("node", &["default".to_string()], 10, 30_000)
            .await
            .unwrap();
        let mut pooled = store.connection().await.unwrap();
        let finish = "UPDATE warren_tasks SET state = 'completed', finished_at = 1 \
                      WHERE state = 'pending' AND id > 30";
        match pooled.as_any() {
            AnyConn::Postgres(c) => c.batch_execute(&format!("{finish}; ANALYZE")).await,
            AnyConn::Sqlite(c) => c.batch_execute(&format!("{finish}; ANALYZE")).await,
        }
        .unwrap();
    }

    /// The plan of the statement that keys a type's live tasks again, one line per node.
    async fn rekey_plan(store: &Store) -> String {
        #[derive(QueryableByName)]
        struct PgLine {
            #[diesel(sql_type = Text)]
            #[diesel(column_name = "QUERY PLAN")]
            line: String,
        }
        #[derive(QueryableByName)]
        struct SqliteLine {
            #[diesel(sql_type = Text)]
            detail: String,
        }
        let mut pooled = store.connection().await.unwrap();
        let lines: Vec<String> = match pooled.as_any() {
            AnyConn::Postgres(c) => diesel::sql_query(format!("EXPLAIN {}", pg_rekey_sql()))
                .bind::<Text, _>("demo:ping")
                .load::<PgLine>(c)
                .await
                .unwrap()
                .into_iter()
                .map(|l| l.line)
                .collect(),
            AnyConn::Sqlite(c) => {
                diesel::sql_query(format!("EXPLAIN QUERY PLAN {}", sqlite_rekey_sql()))
                    .bind::<Text, _>("demo:ping")
                    .load::<SqliteLine>(c)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|l| l.detail)
                    .collect()
            }
        };
        lines.join("\n")
    }

    /// Keying a type's tasks again after its rule changed (which holds the table's lock
    /// on PostgreSQL) reads the live queue's indexes, never the finished tasks.
    async fn keying_a_type_again_reads_only_its_live_tasks(store: &Store) {
        mostly_finished(store).await;
        let plan = rekey_plan(store).await;
        for scan in ["Seq Scan on warren_tasks", "SCAN warren_tasks\n"] {
            assert!(
                !format!("{plan}\n").contains(scan),
                "the statement reads the whole table:\n{plan}"
            );
        }
        for index in [
            "warren_tasks_due",
            "warren_tasks_flow_due",
            "warren_tasks_flow_running",
            "warren_tasks_leases",
        ] {
            assert!(plan.contains(index), "{index} is not read:\n{plan}");
        }
    }

    #[tokio::test]
    async fn sqlite_keying_a_type_again_reads_only_its_live_tasks() {
        let scratch = warren_testkit::Scratch::new("sqlite-live-tasks");
        let url = format!("sqlite://{}", scratch.join("live.db").display());
        let store = Store::open_with(StoreConfig::new(url), Arc::new(SystemClock))
            .await
            .unwrap();
        keying_a_type_again_reads_only_its_live_tasks(&store).await;
    }

    #[tokio::test]
    async fn postgres_keying_a_type_again_reads_only_its_live_tasks() {
        let Some(server) = warren_testkit::postgres::admin_url("the rekey plan test") else {
            return;
        };
        let db = warren_testkit::postgres::FreshDatabase::create(&server, "warren_t_live")
            .await
            .unwrap();
        let store = Store::open_with(StoreConfig::new(db.url()), Arc::new(SystemClock))
            .await
            .unwrap();
        keying_a_type_again_reads_only_its_live_tasks(&store).await;
    }
}
