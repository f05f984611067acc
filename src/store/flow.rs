//! Flow rules in the claim: per-key concurrency (at most `limit` running tasks of a type
//! per value of its key field, across every node: [`crate::flow::ConcurrencyLimit`])
//! and rate limits (at most a bucket's tokens started per key: [`RateLimit`], whose
//! buckets live in `rate_limit.rs`).
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
//! registered cluster). It counts the running tasks of each (type, key) and the tokens
//! in its bucket, takes at most the fewer of the free slots and the tokens from each
//! key's due tasks (then spends the tokens taken), adds the due tasks without a key,
//! and takes the first
//! `limit` of them all in queue order. A full key costs a count of its running tasks, not
//! a read of its backlog, and holds up no other key; its tasks stay pending and occupy
//! no runner. The caps come from the registry in the same statement, so every node
//! applies the rule in force.

use super::claim::{
    push_cluster_names, push_plain_candidates, push_take, push_take_end, ClaimParams, PAUSED_CTE,
};
use super::conn::on_conn;
use super::live_tasks::{PG_LIVE_OF_TYPE, SQLITE_LIVE_OF_TYPE};
use super::model::TaskRow;
use super::schema::warren_rate_buckets::dsl as b;
use super::schema::warren_task_types::dsl as tt;
use super::schema::warren_tasks::dsl as t;
use super::task_types::RegistryRow;
use super::{AnyConn, Store, StoreResult};
use crate::rate_limit::{ms_to_ns, RateLimit, NS_PER_MS};
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

/// The condition that the registry row `tt` holds a flow rule (a concurrency or a rate
/// limit): its type's tasks are keyed.
pub(super) const HAS_RULE_SQL: &str = "(tt.concurrency IS NOT NULL OR tt.rate_count IS NOT NULL)";

/// `(SELECT key FROM warren_task_types tt WHERE …)` on PostgreSQL: the key of a task
/// of type `task_type` with data `data` in cluster `cluster` (SQL expressions), by
/// `warren_flow_key` (the PostgreSQL migration); NULL when its type has no rule, or the
/// task is not in the type's registered cluster. (SQLite's triggers hold the same rule.)
pub(super) fn pg_key_of_type_sql(task_type: &str, data: &str, cluster: &str) -> String {
    format!(
        "(SELECT warren_flow_key({data}, tt.concurrency_key) FROM warren_task_types tt \
         WHERE tt.task_type = {task_type} AND {HAS_RULE_SQL} \
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
             AND task_type IN (SELECT task_type FROM warren_task_types tt WHERE {HAS_RULE_SQL})",
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
/// It reads only the live queue (`live_tasks.rs`): it runs holding the table's lock.
pub(super) async fn rekey_type(conn: &mut AnyConn<'_>, task_type: &str) -> StoreResult<usize> {
    let written = match conn {
        AnyConn::Postgres(c) => {
            diesel::sql_query(pg_rekey_sql())
                .bind::<Text, _>(task_type)
                .execute(*c)
                .await?
        }
        AnyConn::Sqlite(c) => {
            diesel::sql_query(sqlite_rekey_sql())
                .bind::<Text, _>(task_type)
                .execute(*c)
                .await?
        }
    };
    Ok(written)
}

/// [`rekey_type`]'s statement on PostgreSQL: the type is `$1`.
pub(super) fn pg_rekey_sql() -> String {
    format!(
        "UPDATE warren_tasks SET flow_key = {} WHERE id = ANY(ARRAY({PG_LIVE_OF_TYPE}))",
        pg_own_key_sql()
    )
}

/// [`rekey_type`]'s statement on SQLite, the type `?1`: writing the data fires the
/// trigger that keys the task.
pub(super) fn sqlite_rekey_sql() -> String {
    format!("UPDATE warren_tasks SET data = data WHERE id IN ({SQLITE_LIVE_OF_TYPE})")
}

/// A rate limit's interval in nanoseconds from the registry row `tt` (PostgreSQL), as
/// [`RateLimit::interval_ns`] works it out.
fn step_ns_sql() -> String {
    format!("greatest(1, tt.rate_period_ms * {NS_PER_MS} / tt.rate_count)")
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
            Ok(PgFlowClaim(&params.at_now()).load(c).await?)
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
        let step = step_ns_sql();
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
             ORDER BY task_type, flow_key LIMIT 1) AS n), {PAUSED_CTE}, taken AS ("
        ));
        push_take(&mut out, p)?;
        out.push_sql(&format!(
            "SELECT x.id, x.priority, x.next_attempt FROM (\
             SELECT d.id, d.priority, d.next_attempt, f.free, row_number() OVER (\
             PARTITION BY keys.task_type, keys.k ORDER BY d.priority, d.next_attempt, d.id) AS rn \
             FROM keys CROSS JOIN paused \
             JOIN warren_task_types tt ON tt.task_type = keys.task_type \
             AND {HAS_RULE_SQL} \
             AND (NOT paused.any OR keys.task_type <> ALL(paused.types)) AND tt.cluster IN (",
        ));
        // One cluster is a scalar, as in the plain claim: a generic plan cannot see an
        // array's length, and planned each claim anew for it.
        push_cluster_names(&mut out, p.clusters)?;
        // Free slots: the fewer of the concurrency rule's and the rate limit's, each
        // `limit` when the type has no such rule. The concurrency rule's are none (not
        // fewer) when more run than it allows, as after a lower limit was registered;
        // the rate limit's are the tokens in the key's bucket (`rate_limit.rs`: a
        // bucket with no row, or whose TAT has passed, is full).
        out.push_sql(&format!(
            ") \
             CROSS JOIN LATERAL (SELECT least(\
             CASE WHEN tt.concurrency IS NULL THEN {limit} \
             ELSE greatest(tt.concurrency - count(*), 0) END, \
             CASE WHEN tt.rate_count IS NULL THEN {limit} ELSE (\
             SELECT greatest(0, least(tt.rate_burst, \
             (r.now_ns + tt.rate_burst * r.step_ns - greatest(r.tat, r.now_ns)) / r.step_ns)) \
             FROM (SELECT CAST("
        ));
        out.push_bind_param::<BigInt, _>(&p.now)?;
        out.push_sql(&format!(
            " AS bigint) * {NS_PER_MS} AS now_ns, {step} AS step_ns, \
             coalesce((SELECT b.tat FROM warren_rate_buckets b \
             WHERE b.task_type = keys.task_type AND b.flow_key = keys.k), 0) AS tat) AS r) END) AS free \
             FROM warren_tasks w \
             WHERE tt.concurrency IS NOT NULL AND w.state = '{running}' AND w.flow_key IS NOT NULL \
             AND w.task_type = keys.task_type AND w.flow_key = keys.k) AS f \
             CROSS JOIN ("
        ));
        push_cluster_names(&mut out, p.clusters)?;
        // Each cluster's share of a key is read on its own, in the index's order, so
        // the scan stops after the rows it takes.
        out.push_sql(&format!(
            ") AS cl(name) \
             CROSS JOIN LATERAL (SELECT id, priority, next_attempt FROM warren_tasks w \
             WHERE w.state = '{pending}' AND w.flow_key IS NOT NULL \
             AND w.task_type = keys.task_type AND w.flow_key = keys.k AND w.cluster = cl.name \
             AND f.free > 0 AND (NOT paused.any OR cl.name <> ALL(paused.clusters)) \
             AND w.next_attempt <= "
        ));
        out.push_bind_param::<BigInt, _>(&p.now)?;
        out.push_sql(&format!(
            " ORDER BY priority, next_attempt, id LIMIT least(f.free, {limit}) \
             FOR NO KEY UPDATE SKIP LOCKED) AS d) AS x WHERE x.rn <= x.free UNION ALL "
        ));
        push_plain_candidates(&mut out, p)?;
        push_take_end(&mut out, p);
        // The tokens of what was taken, by the rates the statement read (one snapshot),
        // in key order (as every claim writes them, so two never wait on each other in
        // turn): a new bucket gets `now + n·T`, one that exists `max(TAT, now) + n·T`.
        out.push_sql(&format!(
            "), spent AS (INSERT INTO warren_rate_buckets (task_type, flow_key, tat) \
             SELECT g.task_type, g.flow_key, g.now_ns + g.n * {step} \
             FROM (SELECT task_type, flow_key, count(*) AS n, CAST("
        ));
        out.push_bind_param::<BigInt, _>(&p.now)?;
        out.push_sql(&format!(
            " AS bigint) * {NS_PER_MS} AS now_ns FROM taken WHERE flow_key IS NOT NULL \
             GROUP BY task_type, flow_key) AS g \
             JOIN warren_task_types tt ON tt.task_type = g.task_type AND tt.rate_count IS NOT NULL \
             ORDER BY g.task_type, g.flow_key \
             ON CONFLICT (task_type, flow_key) DO UPDATE \
             SET tat = greatest(warren_rate_buckets.tat, CAST("
        ));
        out.push_bind_param::<BigInt, _>(&p.now)?;
        out.push_sql(&format!(
            " AS bigint) * {NS_PER_MS}) + (excluded.tat - CAST("
        ));
        out.push_bind_param::<BigInt, _>(&p.now)?;
        out.push_sql(&format!(" AS bigint) * {NS_PER_MS})) SELECT * FROM taken"));
        Ok(())
    }
}

/// What the SQLite claim picked of the due tasks with a key: the candidates, and what
/// it needs to spend the rate-limit tokens of those it ends up taking.
pub(super) struct SqliteFlowPick {
    /// At most each (type, key)'s free slots, in queue order: `(id, priority,
    /// next_attempt)`.
    pub candidates: Vec<(TaskId, i32, i64)>,
    /// The (type, key) of each candidate of a rate-limited type.
    rated: HashMap<TaskId, (String, String)>,
    /// The rate limits read, by type.
    limits: HashMap<String, RateLimit>,
    /// The buckets read that are not full: TAT by (type, key).
    tats: HashMap<(String, String), i64>,
}

/// The due tasks with a key for the SQLite claim, under the write lock the claim holds:
/// at most each (type, key)'s free slots (the fewer of its concurrency rule's and its
/// rate limit's, read from the registry and the buckets), in queue order, outside
/// paused clusters and types, at most `limit`. Reads every due keyed task of the
/// claimed clusters: a key that is full is skipped, not waited behind.
pub(super) fn sqlite_flow_candidates(
    inner: &mut diesel::SqliteConnection,
    clusters: &[String],
    now: i64,
    limit: i64,
    paused_clusters: &[String],
    paused_types: &[String],
) -> QueryResult<SqliteFlowPick> {
    use diesel::RunQueryDsl as Sync;
    let rules: Vec<RegistryRow> = Sync::load(
        tt::warren_task_types
            .filter(
                tt::concurrency
                    .is_not_null()
                    .or(tt::rate_count.is_not_null()),
            )
            .select(RegistryRow::as_select()),
        inner,
    )?;
    let caps: HashMap<String, Option<i64>> = rules
        .iter()
        .map(|r| {
            (
                r.task_type.clone(),
                r.concurrency().map(|c| i64::from(c.limit)),
            )
        })
        .collect();
    let limits: HashMap<String, RateLimit> = rules
        .iter()
        .filter_map(|r| Some((r.task_type.clone(), r.rate_limit()?)))
        .collect();
    let mut pick = SqliteFlowPick {
        candidates: Vec::new(),
        rated: HashMap::new(),
        tats: HashMap::new(),
        limits,
    };
    if caps.is_empty() {
        return Ok(pick);
    }
    let now_ns = ms_to_ns(now);
    let rated_types: Vec<&String> = pick.limits.keys().collect();
    if !rated_types.is_empty() {
        pick.tats = Sync::load::<(String, String, i64)>(
            b::warren_rate_buckets
                .filter(b::task_type.eq_any(&rated_types))
                .filter(b::tat.gt(now_ns))
                .select((b::task_type, b::flow_key, b::tat)),
            inner,
        )?
        .into_iter()
        .map(|(task_type, key, tat)| ((task_type, key), tat))
        .collect();
    }
    let busy: Vec<(String, Option<String>, i64)> = Sync::load(
        t::warren_tasks
            .filter(t::state.eq(TaskState::Running))
            .filter(t::flow_key.is_not_null())
            .group_by((t::task_type, t::flow_key))
            .select((t::task_type, t::flow_key, diesel::dsl::count_star())),
        inner,
    )?;
    let running: HashMap<(String, String), i64> = busy
        .into_iter()
        .map(|(task_type, key, n)| ((task_type, key.unwrap_or_default()), n))
        .collect();
    let types: Vec<&String> = caps.keys().collect();
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
    // Free slots per (type, key), worked out when the key is first met.
    let mut free: HashMap<(String, String), i64> = HashMap::new();
    for (id, task_type, key, priority, next_attempt) in due {
        if pick.candidates.len() as i64 >= limit {
            break;
        }
        let key = (task_type, key.unwrap_or_default());
        let slots = free.entry(key.clone()).or_insert_with(|| {
            let by_concurrency = caps
                .get(&key.0)
                .copied()
                .flatten()
                .map_or(limit, |cap| cap - running.get(&key).copied().unwrap_or(0));
            let by_rate = pick.limits.get(&key.0).map_or(limit, |rate| {
                i64::from(rate.available(pick.tats.get(&key).copied(), now_ns))
            });
            by_concurrency.min(by_rate)
        });
        if *slots > 0 {
            *slots -= 1;
            pick.candidates.push((id, priority, next_attempt));
            if pick.limits.contains_key(&key.0) {
                pick.rated.insert(id, key);
            }
        }
    }
    Ok(pick)
}

impl SqliteFlowPick {
    /// Spends a token of its bucket for each task of `taken` of a rate-limited type,
    /// in the claim's transaction (under its write lock).
    pub(super) fn spend_tokens(
        &self,
        inner: &mut diesel::SqliteConnection,
        taken: &[TaskId],
        now: i64,
    ) -> QueryResult<()> {
        use diesel::RunQueryDsl as Sync;
        let mut started: HashMap<&(String, String), u32> = HashMap::new();
        for id in taken {
            if let Some(key) = self.rated.get(id) {
                *started.entry(key).or_default() += 1;
            }
        }
        let now_ns = ms_to_ns(now);
        for (key, n) in started {
            let Some(rate) = self.limits.get(&key.0) else {
                continue;
            };
            let tat = rate.tat_after(self.tats.get(key).copied(), now_ns, n);
            Sync::execute(
                diesel::insert_into(b::warren_rate_buckets)
                    .values((
                        b::task_type.eq(&key.0),
                        b::flow_key.eq(&key.1),
                        b::tat.eq(tat),
                    ))
                    .on_conflict((b::task_type, b::flow_key))
                    .do_update()
                    .set(b::tat.eq(tat)),
                inner,
            )?;
        }
        Ok(())
    }
}

/// Most keys of one type that [`Store::key_loads`] reports.
pub const KEYS_SHOWN: usize = 20;

/// What runs and waits under one key of a type's flow rules.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyLoad {
    /// The key (`""` for rules without a key field, or a task without the field).
    pub key: String,
    /// Its running tasks (claimed ahead included).
    pub running: i64,
    /// Its pending tasks.
    pub waiting: i64,
    /// When its rate limit's bucket is empty: the instant it next lets a task start
    /// (its waiting tasks wait for the rate, not for a runner).
    pub rate_wait_until: Option<crate::task::Millis>,
}

impl Store {
    /// For each type with keyed tasks, its busiest keys (at most [`KEYS_SHOWN`]; those
    /// with the most running first, then the most waiting), for the dashboard and the
    /// API, each with its rate-limit wait. Reads every pending and running keyed task
    /// once, and the rate-limit buckets that are not full.
    pub async fn key_loads(&self) -> StoreResult<HashMap<String, Vec<KeyLoad>>> {
        let mut waits = self.rate_waits().await?;
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
                    rate_wait_until: None,
                });
            match state {
                TaskState::Running => load.running += n,
                _ => load.waiting += n,
            }
        }
        for (task_type, keys) in by_type.iter_mut() {
            for load in keys.values_mut() {
                if load.waiting > 0 {
                    load.rate_wait_until = waits.remove(&(task_type.clone(), load.key.clone()));
                }
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
