//! Per-key concurrency: at most `limit` running tasks of a type per value of its key
//! field, across every node ([`crate::flow::ConcurrencyLimit`]).
//!
//! Every task of a type with a rule, in the type's registered cluster, carries its key
//! in `flow_key` (NULL for every other task). The database computes it when the task is
//! written, from the rule the nodes registered in `warren_task_types` (on PostgreSQL
//! inside the multi-row insert, and by a statement right after the insert of a unique
//! task, in the same transaction; on SQLite by triggers), so a store that does not know
//! the rule (one opened before it was registered) still keys its tasks.
//! When what keys a type's tasks changes, its pending and running tasks are keyed again
//! (`task_types.rs`); a finished task put back in the queue is keyed afresh.
//!
//! `warren_tasks_due`, which the plain claim walks, holds only tasks without a key, so
//! keyed tasks never slow it. A store that knows a rule for a type of the clusters it
//! claims runs the constrained claim instead: one statement, in a transaction holding
//! the claimed clusters' locks (an advisory lock per cluster on PostgreSQL, the write
//! lock on SQLite), whose snapshot starts after the locks, so it sees the commit of
//! every earlier claim of those clusters (a type's keyed tasks all live in its
//! registered cluster). It counts the running tasks of each (type, key), takes at most the difference
//! from each key's due tasks, adds the due tasks without a key, and takes the first
//! `limit` of them all in queue order. A full key costs a count of its running tasks, not
//! a read of its backlog, and holds up no other key; its tasks stay pending and occupy
//! no runner. The caps come from the registry in the same statement, so every node
//! applies the rule in force.

use super::claim::{push_plain_candidates, push_take, push_take_end, ClaimParams, PAUSED_CTE};
use super::conn::on_conn;
use super::model::TaskRow;
use super::schema::warren_task_types::dsl as tt;
use super::schema::warren_tasks::dsl as t;
use super::{AnyConn, Store, StoreResult};
use crate::task::{TaskId, TaskState};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment};
use diesel::sql_types::{Array, BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use std::collections::HashMap;

/// The class of the advisory locks constrained claims on PostgreSQL hold for their
/// transaction, one per cluster claimed ("wa" in ASCII; the second half is the hash of
/// the cluster's name). A type's keyed tasks all live in its registered cluster, so
/// claims of different clusters need not wait for each other.
const PG_FLOW_LOCK_CLASS: i32 = 0x7761;

/// How long a constrained claim on PostgreSQL waits for its locks before it
/// gives up with an error (the queue claims again later), so a claimer that hangs
/// holding it cannot stall every other one for longer.
const PG_FLOW_LOCK_TIMEOUT: &str = "5s";

/// `(SELECT key FROM warren_task_types tt WHERE …)` on PostgreSQL: the key of a task
/// of type `task_type` with data `data` in cluster `cluster` (SQL expressions), by
/// `warren_flow_key` (the PostgreSQL migration); NULL when its type has no rule, or the
/// task is not in the type's registered cluster. (SQLite's triggers hold the same rule.)
pub(super) fn pg_key_of_type_sql(task_type: &str, data: &str, cluster: &str) -> String {
    format!(
        "(SELECT warren_flow_key({data}, tt.concurrency_key) FROM warren_task_types tt \
         WHERE tt.task_type = {task_type} AND tt.concurrency IS NOT NULL \
         AND tt.cluster = {cluster})"
    )
}

/// The key of the row being updated in `warren_tasks` (PostgreSQL).
fn pg_own_key_sql() -> String {
    pg_key_of_type_sql(
        "warren_tasks.task_type",
        "warren_tasks.data",
        "warren_tasks.cluster",
    )
}

/// Keys the tasks `ids` just written or given new data (in the caller's transaction)
/// whose type has a rule. On SQLite the migration's triggers did it already.
pub(super) async fn key_tasks(conn: &mut AnyConn<'_>, ids: &[TaskId]) -> StoreResult<()> {
    if let AnyConn::Postgres(c) = conn {
        if ids.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "UPDATE warren_tasks SET flow_key = {} WHERE id = ANY($1) \
             AND task_type IN (SELECT task_type FROM warren_task_types WHERE concurrency IS NOT NULL)",
            pg_own_key_sql()
        );
        diesel::sql_query(sql)
            .bind::<Array<BigInt>, _>(ids)
            .execute(*c)
            .await?;
    }
    Ok(())
}

/// Keys the tasks `ids` afresh, whatever their type (NULL when it has no rule now):
/// for a finished task put back in the queue, whose key is as old as its last run.
pub(super) async fn rekey_tasks(conn: &mut AnyConn<'_>, ids: &[TaskId]) -> StoreResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    match conn {
        AnyConn::Postgres(c) => {
            let sql = format!(
                "UPDATE warren_tasks SET flow_key = {} WHERE id = ANY($1)",
                pg_own_key_sql()
            );
            diesel::sql_query(sql)
                .bind::<Array<BigInt>, _>(ids)
                .execute(*c)
                .await?;
        }
        // Writing the data fires the trigger that keys the task.
        AnyConn::Sqlite(c) => {
            let list = serde_json::to_string(&ids.iter().map(|id| id.0).collect::<Vec<_>>())
                .expect("ids serialize");
            diesel::sql_query(
                "UPDATE warren_tasks SET data = data WHERE id IN (SELECT value FROM json_each(?))",
            )
            .bind::<Text, _>(list)
            .execute(*c)
            .await?;
        }
    }
    Ok(())
}

/// Keys again the pending and running tasks of `task_type` after what keys them
/// changed (a NULL key when it has no rule now). Returns how many tasks were written.
pub(super) async fn rekey_type(conn: &mut AnyConn<'_>, task_type: &str) -> StoreResult<usize> {
    let (pending, running) = (TaskState::Pending.as_str(), TaskState::Running.as_str());
    let live = format!("state IN ('{pending}', '{running}')");
    let written = match conn {
        AnyConn::Postgres(c) => {
            let sql = format!(
                "UPDATE warren_tasks SET flow_key = {} WHERE task_type = $1 AND {live}",
                pg_own_key_sql()
            );
            diesel::sql_query(sql)
                .bind::<Text, _>(task_type)
                .execute(*c)
                .await?
        }
        // Writing the data fires the trigger that keys the task.
        AnyConn::Sqlite(c) => {
            let sql = format!("UPDATE warren_tasks SET data = data WHERE task_type = ? AND {live}");
            diesel::sql_query(sql)
                .bind::<Text, _>(task_type)
                .execute(*c)
                .await?
        }
    };
    Ok(written)
}

/// Bounds how long the rest of the transaction waits for any lock (PostgreSQL).
pub(super) async fn lock_timeout(conn: &mut AnyConn<'_>, timeout: &str) -> StoreResult<()> {
    if let AnyConn::Postgres(c) = conn {
        c.batch_execute(&format!("SET LOCAL lock_timeout = '{timeout}'"))
            .await?;
    }
    Ok(())
}

/// Locks `table` (PostgreSQL) against every other write until the transaction ends,
/// after the writes in progress on it: how registration keeps a re-keying from missing
/// a task written at the same time. Two holders exclude each other.
pub(super) async fn lock_table(conn: &mut AnyConn<'_>, table: &str) -> StoreResult<()> {
    if let AnyConn::Postgres(c) = conn {
        c.batch_execute(&format!("LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE"))
            .await?;
    }
    Ok(())
}

/// The constrained claim on PostgreSQL: one statement ([`PgFlowClaim`]) in a
/// transaction of its own that first takes the lock of each claimed cluster, in name
/// order (read committed, so the statement's snapshot is taken after the locks are
/// granted whatever the server's default isolation).
pub(super) async fn pg_claim(
    c: &mut AsyncPgConnection,
    params: &ClaimParams<'_>,
) -> StoreResult<Vec<TaskRow>> {
    use diesel_async::AsyncConnection;
    let claimed = c
        .transaction::<_, super::StoreError, _>(async |c| {
            let mut clusters: Vec<&String> = params.clusters.iter().collect();
            clusters.sort();
            clusters.dedup();
            let mut sql = format!(
                "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; \
                 SET LOCAL lock_timeout = '{PG_FLOW_LOCK_TIMEOUT}';"
            );
            for cluster in clusters {
                sql.push_str(&format!(
                    " SELECT pg_advisory_xact_lock({PG_FLOW_LOCK_CLASS}, hashtext('{}'));",
                    cluster.replace('\'', "''")
                ));
            }
            c.batch_execute(&sql).await?;
            Ok(PgFlowClaim(params).load(c).await?)
        })
        .await?;
    Ok(claimed)
}

/// The statement of [`pg_claim`].
///
/// The keys with pending tasks are read by a loose scan of `warren_tasks_flow_due` (one
/// probe per key, however long its backlog). For each key of a type with a rule
/// (`warren_task_types`, read in the statement), its running tasks are counted on
/// `warren_tasks_flow_running`, and at most the free slots are locked and taken from
/// its due tasks, per cluster, in the index's order; a window keeps the whole key
/// within its free slots when several clusters are claimed. The due tasks without a key
/// are the plain claim's ([`push_plain_candidates`]); the first `limit` of both, in
/// queue order, are taken.
struct PgFlowClaim<'a>(&'a ClaimParams<'a>);

super::pg_statement!(PgFlowClaim<'_>);

impl QueryFragment<Pg> for PgFlowClaim<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let p = self.0;
        let (pending, running) = (TaskState::Pending.as_str(), TaskState::Running.as_str());
        let limit = p.limit.to_string();
        out.push_sql(&format!(
            "WITH RECURSIVE keys(task_type, k) AS (\
             (SELECT task_type, flow_key FROM warren_tasks \
             WHERE state = '{pending}' AND flow_key IS NOT NULL \
             ORDER BY task_type, flow_key LIMIT 1) \
             UNION ALL \
             SELECT n.task_type, n.flow_key FROM keys CROSS JOIN LATERAL (\
             SELECT task_type, flow_key FROM warren_tasks \
             WHERE state = '{pending}' AND flow_key IS NOT NULL \
             AND (task_type, flow_key) > (keys.task_type, keys.k) \
             ORDER BY task_type, flow_key LIMIT 1) AS n), {PAUSED_CTE} "
        ));
        push_take(&mut out, p)?;
        out.push_sql(
            "SELECT x.id, x.priority, x.next_attempt FROM (\
             SELECT d.id, d.priority, d.next_attempt, f.free, row_number() OVER (\
             PARTITION BY keys.task_type, keys.k ORDER BY d.priority, d.next_attempt, d.id) AS rn \
             FROM keys CROSS JOIN paused \
             JOIN warren_task_types tt ON tt.task_type = keys.task_type \
             AND tt.concurrency IS NOT NULL \
             AND (NOT paused.any OR keys.task_type <> ALL(paused.types)) AND tt.cluster = ANY(",
        );
        out.push_bind_param::<Array<Text>, _>(p.clusters)?;
        // Free slots: none (not fewer) when more run than the limit allows, as after a
        // lower limit was registered.
        out.push_sql(&format!(
            "::text[]) \
             CROSS JOIN LATERAL (SELECT greatest(tt.concurrency - count(*), 0) AS free \
             FROM warren_tasks w \
             WHERE w.state = '{running}' AND w.flow_key IS NOT NULL \
             AND w.task_type = keys.task_type AND w.flow_key = keys.k) AS f \
             CROSS JOIN (SELECT DISTINCT unnest("
        ));
        out.push_bind_param::<Array<Text>, _>(p.clusters)?;
        // Each cluster's share of a key is read on its own, in the index's order, so
        // the scan stops after the rows it takes.
        out.push_sql(&format!(
            "::text[])) AS cl(name) \
             CROSS JOIN LATERAL (SELECT id, priority, next_attempt FROM warren_tasks w \
             WHERE w.state = '{pending}' AND w.flow_key IS NOT NULL \
             AND w.task_type = keys.task_type AND w.flow_key = keys.k AND w.cluster = cl.name \
             AND f.free > 0 AND (NOT paused.any OR cl.name <> ALL(paused.clusters)) \
             AND w.next_attempt <= "
        ));
        out.push_bind_param::<BigInt, _>(&p.now)?;
        out.push_sql(&format!(
            " ORDER BY priority, next_attempt, id LIMIT least(f.free, {limit}) \
             FOR UPDATE SKIP LOCKED) AS d) AS x WHERE x.rn <= x.free UNION ALL "
        ));
        push_plain_candidates(&mut out, p)?;
        push_take_end(&mut out, p);
        Ok(())
    }
}

/// The due tasks with a concurrency key for the SQLite claim, under the write lock the
/// claim holds: at most each (type, key)'s free slots (caps read from the registry), in
/// queue order, outside paused clusters and types, at most `limit`: `(id, priority,
/// next_attempt)`. Reads every due keyed task of the claimed clusters: a key that is
/// full is skipped, not waited behind.
pub(super) fn sqlite_flow_candidates(
    inner: &mut diesel::SqliteConnection,
    clusters: &[String],
    now: i64,
    limit: i64,
    paused_clusters: &[String],
    paused_types: &[String],
) -> QueryResult<Vec<(TaskId, i32, i64)>> {
    use diesel::RunQueryDsl as Sync;
    let caps: HashMap<String, i64> = Sync::load::<(String, Option<i32>)>(
        tt::warren_task_types
            .filter(tt::concurrency.is_not_null())
            .select((tt::task_type, tt::concurrency)),
        inner,
    )?
    .into_iter()
    .map(|(task_type, cap)| (task_type, i64::from(cap.unwrap_or(0))))
    .collect();
    if caps.is_empty() {
        return Ok(Vec::new());
    }
    let types: Vec<&String> = caps.keys().collect();
    let busy: Vec<(String, Option<String>, i64)> = Sync::load(
        t::warren_tasks
            .filter(t::state.eq(TaskState::Running))
            .filter(t::flow_key.is_not_null())
            .group_by((t::task_type, t::flow_key))
            .select((t::task_type, t::flow_key, diesel::dsl::count_star())),
        inner,
    )?;
    let mut free: HashMap<(String, String), i64> = HashMap::new();
    for (task_type, key, n) in busy {
        let cap = caps.get(&task_type).copied().unwrap_or(0);
        free.insert((task_type, key.unwrap_or_default()), cap - n);
    }
    let due: Vec<(TaskId, String, Option<String>, i32, i64)> = Sync::load(
        t::warren_tasks
            .filter(t::state.eq(TaskState::Pending))
            .filter(t::flow_key.is_not_null())
            .filter(t::task_type.eq_any(&types))
            .filter(diesel::dsl::not(t::task_type.eq_any(paused_types)))
            .filter(t::cluster.eq_any(clusters))
            .filter(diesel::dsl::not(t::cluster.eq_any(paused_clusters)))
            .filter(t::next_attempt.le(now))
            .order((t::priority, t::next_attempt, t::id))
            .select((
                t::id,
                t::task_type,
                t::flow_key,
                t::priority,
                t::next_attempt,
            )),
        inner,
    )?;
    let mut taken = Vec::new();
    for (id, task_type, key, priority, next_attempt) in due {
        if taken.len() as i64 >= limit {
            break;
        }
        let cap = caps.get(&task_type).copied().unwrap_or(0);
        let slots = free
            .entry((task_type, key.unwrap_or_default()))
            .or_insert(cap);
        if *slots > 0 {
            *slots -= 1;
            taken.push((id, priority, next_attempt));
        }
    }
    Ok(taken)
}

/// Most keys of one type that [`Store::key_loads`] reports.
pub const KEYS_SHOWN: usize = 20;

/// What runs and waits under one concurrency key of a type.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyLoad {
    /// The key (`""` for a rule without a key field, or a task without the field).
    pub key: String,
    /// Its running tasks (claimed ahead included).
    pub running: i64,
    /// Its pending tasks.
    pub waiting: i64,
}

impl Store {
    /// For each type with keyed tasks, its busiest keys (at most [`KEYS_SHOWN`]; those
    /// with the most running first, then the most waiting), for the dashboard and the
    /// API. Reads every pending and running keyed task once.
    pub async fn key_loads(&self) -> StoreResult<HashMap<String, Vec<KeyLoad>>> {
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        let counts: Vec<(String, Option<String>, TaskState, i64)> = on_conn!(&mut conn, c => {
            t::warren_tasks
                .filter(t::flow_key.is_not_null())
                .filter(t::state.eq_any([TaskState::Pending, TaskState::Running]))
                .group_by((t::task_type, t::flow_key, t::state))
                .select((t::task_type, t::flow_key, t::state, diesel::dsl::count_star()))
                .load(c)
                .await?
        });
        let mut by_type: HashMap<String, HashMap<String, KeyLoad>> = HashMap::new();
        for (task_type, key, state, n) in counts {
            let key = key.unwrap_or_default();
            let load = by_type
                .entry(task_type)
                .or_default()
                .entry(key.clone())
                .or_insert(KeyLoad {
                    key,
                    running: 0,
                    waiting: 0,
                });
            match state {
                TaskState::Running => load.running += n,
                _ => load.waiting += n,
            }
        }
        Ok(by_type
            .into_iter()
            .map(|(task_type, keys)| {
                let mut keys: Vec<KeyLoad> = keys.into_values().collect();
                keys.sort_by(|a, b| {
                    (b.running, b.waiting, &a.key).cmp(&(a.running, a.waiting, &b.key))
                });
                keys.truncate(KEYS_SHOWN);
                (task_type, keys)
            })
            .collect())
    }
}
