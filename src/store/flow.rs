//! Per-key concurrency: at most `limit` running tasks of a type per value of its key
//! field, across every node ([`crate::flow::ConcurrencyLimit`]).
//!
//! Every task of a type with a rule carries its key in `flow_key` (NULL for every
//! other task). The database computes it when the task is written, from the rule the
//! nodes registered in `warren_task_types` (the insert's own expression on PostgreSQL's
//! multi-row insert; a statement right after it in the same transaction elsewhere), so
//! a scheduler that does not know the rule (an older process, another application)
//! still keys its tasks. When a node registers a changed rule, the pending and running
//! tasks of the type are keyed again.
//!
//! The plain claim takes only tasks without a key. Tasks with one are taken by the
//! constrained claim, which runs only on a store that knows of some rule (its node
//! registered one): under a lock that every constrained claim takes (a transaction-level
//! advisory lock on PostgreSQL, the write lock on SQLite), it counts the running tasks of
//! each (type, key) and takes at most the difference from each key's due tasks, in queue
//! order. The count and the take are one statement whose snapshot starts after the
//! lock, so two claimers never both fill the last slot; a full key costs one index probe,
//! not its backlog, and never holds up another key. A task whose key is full stays
//! pending: it occupies no runner while it waits.

use super::claim::ClaimParams;
use super::conn::on_conn;
use super::model::TaskRow;
use super::schema::warren_tasks::dsl as t;
use super::{AnyConn, Store, StoreResult};
use crate::task::{TaskId, TaskState};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment};
use diesel::sql_types::{Array, BigInt, Integer, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use std::collections::HashMap;

/// The advisory lock every constrained claim on PostgreSQL holds for its transaction
/// ("warren" in ASCII, then 1).
const PG_FLOW_LOCK: i64 = 0x7761_7272_656e_0001;

/// The key of a task with data `data` (an SQL expression) under the rule of the
/// registered type row `tt` (`warren_task_types`): see `warren_flow_key` in the
/// PostgreSQL migration; SQLite spells the same rule out.
fn key_sql(postgres: bool, data: &str) -> String {
    if postgres {
        return format!("warren_flow_key({data}, tt.concurrency_key)");
    }
    let path = "'$.\"' || tt.concurrency_key || '\"'";
    format!(
        "CASE WHEN tt.concurrency_key IS NULL THEN '' ELSE coalesce(\
         CASE json_type({data}, {path}) \
         WHEN 'text' THEN json_extract({data}, {path}) \
         WHEN 'integer' THEN CAST(json_extract({data}, {path}) AS TEXT) \
         WHEN 'real' THEN CAST(json_extract({data}, {path}) AS TEXT) \
         WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' END, '') END"
    )
}

/// `(SELECT key FROM warren_task_types tt WHERE …)`: the key of a task of type
/// `task_type` with data `data` (SQL expressions), NULL when its type has no rule.
pub(super) fn key_of_type_sql(postgres: bool, task_type: &str, data: &str) -> String {
    format!(
        "(SELECT {} FROM warren_task_types tt WHERE tt.task_type = {task_type} \
         AND tt.concurrency IS NOT NULL)",
        key_sql(postgres, data)
    )
}

/// Keys the tasks `ids` just written (in the caller's transaction) whose type has a
/// rule. Tasks of other types are not touched.
pub(super) async fn key_tasks(conn: &mut AnyConn<'_>, ids: &[TaskId]) -> StoreResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let postgres = matches!(conn, AnyConn::Postgres(_));
    let key = key_of_type_sql(postgres, "warren_tasks.task_type", "warren_tasks.data");
    let of_rule =
        "task_type IN (SELECT task_type FROM warren_task_types WHERE concurrency IS NOT NULL)";
    match conn {
        AnyConn::Postgres(c) => {
            let sql = format!(
                "UPDATE warren_tasks SET flow_key = {key} WHERE id = ANY($1) AND {of_rule}"
            );
            diesel::sql_query(sql)
                .bind::<Array<BigInt>, _>(ids)
                .execute(*c)
                .await?;
        }
        AnyConn::Sqlite(c) => {
            let sql = format!(
                "UPDATE warren_tasks SET flow_key = {key} \
                 WHERE id IN (SELECT value FROM json_each(?)) AND {of_rule}"
            );
            let list = serde_json::to_string(&ids.iter().map(|id| id.0).collect::<Vec<_>>())
                .expect("ids serialize");
            diesel::sql_query(sql)
                .bind::<Text, _>(list)
                .execute(*c)
                .await?;
        }
    }
    Ok(())
}

/// Keys again the pending and running tasks of `task_type` after its rule changed (a
/// NULL key when it has none now). Returns how many tasks were written.
pub(super) async fn rekey_type(conn: &mut AnyConn<'_>, task_type: &str) -> StoreResult<usize> {
    let postgres = matches!(conn, AnyConn::Postgres(_));
    let key = key_of_type_sql(postgres, "warren_tasks.task_type", "warren_tasks.data");
    let (pending, running) = (TaskState::Pending.as_str(), TaskState::Running.as_str());
    let param = if postgres { "$1" } else { "?" };
    let statement = format!(
        "UPDATE warren_tasks SET flow_key = {key} \
         WHERE task_type = {param} AND state IN ('{pending}', '{running}')"
    );
    let written = on_conn!(conn, c => {
        diesel::sql_query(statement.as_str())
            .bind::<Text, _>(task_type)
            .execute(c)
            .await?
    });
    Ok(written)
}

/// The constrained claim on PostgreSQL: in its own transaction, under
/// [`PG_FLOW_LOCK`], the tasks with a key (at most each key's free slots), then tasks
/// without one for what is left of the limit. Constrained tasks are taken first.
pub(super) async fn pg_claim(
    c: &mut AsyncPgConnection,
    params: &ClaimParams<'_>,
) -> StoreResult<Vec<TaskRow>> {
    use diesel_async::AsyncConnection;
    let claimed = c
        .transaction::<_, super::StoreError, _>(async |c| {
            // The lock first, alone: the claim's snapshot then starts after it, and sees
            // every earlier constrained claim's commit.
            c.batch_execute(&format!("SELECT pg_advisory_xact_lock({PG_FLOW_LOCK})"))
                .await?;
            let mut rows: Vec<TaskRow> = PgFlowClaim(params).load(c).await?;
            let left = params.limit - rows.len() as i64;
            if left > 0 {
                let rest = ClaimParams {
                    limit: left,
                    ..*params
                };
                rows.extend(super::claim::PgClaim(&rest).load(c).await?);
            }
            Ok(rows)
        })
        .await?;
    Ok(claimed)
}

/// The statement of [`pg_claim`] that takes tasks with a key.
///
/// The keys with pending tasks are read by a loose scan of `warren_tasks_flow_due` (one
/// probe per key, however long its backlog); for each key of a type this node has a
/// rule for, the running tasks are counted on `warren_tasks_flow_running`, and at most
/// the free slots are taken from the key's due tasks in queue order. The per-key limit
/// and the claim's limit are written into the text, as in the plain claim.
struct PgFlowClaim<'a>(&'a ClaimParams<'a>);

super::pg_statement!(PgFlowClaim<'_>);

impl QueryFragment<Pg> for PgFlowClaim<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let p = self.0;
        let (pending, running) = (TaskState::Pending.as_str(), TaskState::Running.as_str());
        let most_per_key = p
            .flow_limits
            .iter()
            .map(|&limit| i64::from(limit))
            .max()
            .unwrap_or(0)
            .min(p.limit)
            .to_string();
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
             ORDER BY task_type, flow_key LIMIT 1) AS n), \
             paused AS MATERIALIZED (SELECT \
             coalesce(array_agg(name) FILTER (WHERE kind = 'cluster'), '{{}}') AS clusters, \
             coalesce(array_agg(name) FILTER (WHERE kind = 'type'), '{{}}') AS types \
             FROM warren_paused) \
             UPDATE warren_tasks SET state = '{running}', lease_owner = "
        ));
        out.push_bind_param::<Text, _>(p.owner)?;
        out.push_sql(", lease_until = ");
        out.push_bind_param::<BigInt, _>(&p.until)?;
        out.push_sql(", lease_token = lease_token + 1, started_at = ");
        out.push_bind_param::<BigInt, _>(&p.now)?;
        out.push_sql(
            " WHERE id = ANY(ARRAY(SELECT x.id FROM (\
             SELECT d.id, d.priority, d.next_attempt, f.free, row_number() OVER (\
             PARTITION BY keys.task_type, keys.k ORDER BY d.priority, d.next_attempt, d.id) AS rn \
             FROM keys CROSS JOIN paused JOIN unnest(",
        );
        out.push_bind_param::<Array<Text>, _>(p.flow_types)?;
        out.push_sql("::text[], ");
        out.push_bind_param::<Array<Integer>, _>(p.flow_limits)?;
        out.push_sql(&format!(
            "::integer[]) AS r(task_type, cap) ON r.task_type = keys.task_type \
             AND keys.task_type <> ALL(paused.types) \
             CROSS JOIN LATERAL (SELECT r.cap - count(*) AS free FROM warren_tasks w \
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
             AND f.free > 0 AND cl.name <> ALL(paused.clusters) AND w.next_attempt <= "
        ));
        out.push_bind_param::<BigInt, _>(&p.now)?;
        out.push_sql(" ORDER BY priority, next_attempt, id LIMIT ");
        out.push_sql(&most_per_key);
        out.push_sql(
            " FOR UPDATE SKIP LOCKED) AS d) AS x WHERE x.rn <= x.free \
             ORDER BY x.priority, x.next_attempt, x.id LIMIT ",
        );
        out.push_sql(&p.limit.to_string());
        out.push_sql(")) RETURNING *");
        Ok(())
    }
}

/// The constrained part of the SQLite claim, under the write lock the claim holds: up
/// to `limit` due tasks with a key, at most each (type, key)'s free slots, in queue
/// order, outside paused clusters and types. Reads the due tasks with a key of the
/// node's constrained types (a key that is full is skipped, not waited behind).
pub(super) fn sqlite_flow_ids(
    inner: &mut diesel::SqliteConnection,
    params: &FlowParams,
    paused_clusters: &[String],
    paused_types: &[String],
) -> QueryResult<Vec<TaskId>> {
    use diesel::RunQueryDsl as Sync;
    use std::collections::HashMap;
    let busy: Vec<(String, Option<String>, i64)> = Sync::load(
        t::warren_tasks
            .filter(t::state.eq(TaskState::Running))
            .filter(t::flow_key.is_not_null())
            .filter(t::task_type.eq_any(&params.types))
            .group_by((t::task_type, t::flow_key))
            .select((t::task_type, t::flow_key, diesel::dsl::count_star())),
        inner,
    )?;
    let mut free: HashMap<(String, String), i64> = HashMap::new();
    let cap = |task_type: &str| -> i64 {
        params
            .types
            .iter()
            .zip(&params.limits)
            .find(|(t, _)| t.as_str() == task_type)
            .map_or(0, |(_, l)| i64::from(*l))
    };
    for (task_type, key, n) in busy {
        let key = key.unwrap_or_default();
        free.insert((task_type.clone(), key), cap(&task_type) - n);
    }
    let due: Vec<(TaskId, String, Option<String>)> = Sync::load(
        t::warren_tasks
            .filter(t::state.eq(TaskState::Pending))
            .filter(t::flow_key.is_not_null())
            .filter(t::task_type.eq_any(&params.types))
            .filter(diesel::dsl::not(t::task_type.eq_any(paused_types)))
            .filter(t::cluster.eq_any(&params.clusters))
            .filter(diesel::dsl::not(t::cluster.eq_any(paused_clusters)))
            .filter(t::next_attempt.le(params.now))
            .order((t::priority, t::next_attempt, t::id))
            .select((t::id, t::task_type, t::flow_key)),
        inner,
    )?;
    let mut ids = Vec::new();
    for (id, task_type, key) in due {
        if ids.len() as i64 >= params.limit {
            break;
        }
        let key = (task_type.clone(), key.unwrap_or_default());
        let slots = free.entry(key).or_insert_with(|| cap(&task_type));
        if *slots > 0 {
            *slots -= 1;
            ids.push(id);
        }
    }
    Ok(ids)
}

/// What [`sqlite_flow_ids`] needs, owned (it runs on the connection's thread).
#[derive(Debug, Clone)]
pub(super) struct FlowParams {
    /// The constrained types this node knows, and their limits (same order).
    pub types: Vec<String>,
    /// The limit of each of `types`.
    pub limits: Vec<i32>,
    /// The clusters claimed from.
    pub clusters: Vec<String>,
    /// The claim's instant.
    pub now: i64,
    /// The most tasks taken.
    pub limit: i64,
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
