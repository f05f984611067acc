//! PostgreSQL's plans for the claim: after a few claims on a connection it runs one
//! generic plan (no planning per claim) that walks `warren_tasks_due` in queue order
//! (no sort of the cluster's pending tasks). Both broke once while the claim learnt to
//! skip paused work, each at a cost the store bench showed (0.63× and 0.06× the
//! claims); this is what would notice it again. The generic plan broke a second time
//! for claims of more than a few tasks, which a node's queue makes while runs are
//! short (the cluster passed as an array: see `push_cluster_names` in
//! `src/store/claim.rs`), so the claims here take 1, 16 and 64 tasks (a node claims up
//! to four per runner ahead).
//!
//! Also the other statements a busy node runs often, where a plan that reads a whole
//! backlog would cost as much: the held completions of a run group, and `next_due`
//! (which must also be prepared, not planned per call).
//!
//! PostgreSQL only (it is about its planner; 14 or later, for `pg_prepared_statements`'
//! plan counts, and 15 for `next_due`'s test, which reads the statistics' tuple counts
//! after `pg_stat_force_next_flush`); skipped loudly without `WARREN_TEST_DATABASE_URL` (failing under
//! `CI=true`).

mod support;

use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use serde_json::json;
use support::{exec, Backend, TestDb};
use warren::store::{AnyConn, NewTask, PauseTarget, StoreError, TypeRegistration, WaitFor};

#[derive(QueryableByName)]
struct Prepared {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = BigInt)]
    generic_plans: i64,
    #[diesel(sql_type = BigInt)]
    custom_plans: i64,
}

#[derive(QueryableByName)]
struct PlanLine {
    #[diesel(sql_type = Text)]
    #[diesel(column_name = "QUERY PLAN")]
    line: String,
}

#[tokio::test]
async fn claims_settle_on_one_generic_plan_that_walks_the_due_index() {
    // One connection: the claims and the look at its prepared statements share it.
    let Some(db) = TestDb::with_config(Backend::Postgres, |c| c.max_connections = 1).await else {
        return;
    };
    let s = &db.store;
    s.register_task_types(&[TypeRegistration::new("demo:held", "default")])
        .await
        .unwrap();
    let tasks: Vec<NewTask> = (0..2000)
        .map(|i| NewTask::new("demo:ping".parse().unwrap(), json!({ "i": i })))
        .collect();
    s.schedule_batch(&tasks).await.unwrap();
    {
        let mut conn = s.connection().await.unwrap();
        exec(&mut conn.as_any(), "ANALYZE warren_tasks").await;
    }
    let clusters = vec!["default".to_string()];
    const LIMITS: [usize; 3] = [1, 16, 64];
    for round in 0..12 {
        // A pause halfway changes nothing about the plan: the pauses are data.
        if round == 6 {
            s.pause(&PauseTarget::TaskType("demo:held".into()))
                .await
                .unwrap();
        }
        for limit in LIMITS {
            let claimed = s.claim("node-a", &clusters, limit, 30_000).await.unwrap();
            assert_eq!(claimed.len(), limit);
        }
    }

    let mut pooled = s.connection().await.unwrap();
    let AnyConn::Postgres(c) = pooled.as_any() else {
        unreachable!("a PostgreSQL store")
    };
    let mut prepared: Vec<Prepared> = diesel::sql_query(
        "SELECT name, generic_plans, custom_plans FROM pg_prepared_statements \
         WHERE statement LIKE 'WITH paused AS MATERIALIZED%UPDATE warren_tasks%' \
         ORDER BY length(statement), statement",
    )
    .load(c)
    .await
    .unwrap();
    assert_eq!(
        prepared.len(),
        LIMITS.len(),
        "one claim statement is prepared per limit"
    );
    for (limit, claim) in LIMITS.iter().zip(&prepared) {
        assert!(
            claim.generic_plans >= 5,
            "the claim of {limit} was planned anew on every call: {} generic, {} custom plans",
            claim.generic_plans,
            claim.custom_plans
        );
    }
    let claim = prepared.remove(0);
    // The generic plan: ($1 owner, $2 lease until, $3 now, $4 the cluster, $5 now).
    diesel::sql_query("SET plan_cache_mode = force_generic_plan")
        .execute(c)
        .await
        .unwrap();
    let plan: Vec<PlanLine> = diesel::sql_query(format!(
        "EXPLAIN EXECUTE {}('node-b', {}, {}, 'default', {})",
        claim.name,
        i64::MAX,
        i64::MAX - 1,
        i64::MAX - 1
    ))
    .load(c)
    .await
    .unwrap();
    let plan: Vec<String> = plan.into_iter().map(|l| l.line).collect();
    let text = plan.join("\n");
    assert!(
        text.contains("Index Scan using warren_tasks_due"),
        "the claim does not walk the due index:\n{text}"
    );
    assert!(
        !text.contains("Seq Scan on warren_tasks"),
        "the claim reads the whole table:\n{text}"
    );
    // Only the few rows taken are sorted (`d`), never the cluster's queue.
    assert!(
        !text.contains("Sort Key: warren_tasks"),
        "the claim sorts the queue:\n{text}"
    );
    diesel::sql_query("RESET plan_cache_mode")
        .execute(c)
        .await
        .unwrap();
}

/// The constrained claim (`src/store/flow.rs`) finds the waiting keys by one probe per
/// key, counts each key's running tasks on their own index and reads its rate-limit
/// bucket by its primary key: however long a full key's backlog, no claim reads it.
#[tokio::test]
async fn the_constrained_claim_probes_each_key_and_never_reads_the_queue() {
    let Some(db) = TestDb::with_config(Backend::Postgres, |c| c.max_connections = 1).await else {
        return;
    };
    let s = &db.store;
    s.register_task_types(&[TypeRegistration {
        concurrency: Some(warren::flow::ConcurrencyLimit {
            limit: 1,
            key: Some("tenant".into()),
        }),
        // Too generous to hold anything back here: the plan reads the buckets too.
        rate_limit: Some(warren::rate_limit::RateLimit {
            count: 1000,
            period: warren::rate_limit::RatePeriod::Second,
            burst: 1000,
            key: Some("tenant".into()),
        }),
        ..TypeRegistration::new("demo:ping", "default")
    }])
    .await
    .unwrap();
    // Key 0 has a backlog of 2,000; the 19 others 100 each.
    let tasks: Vec<NewTask> = (0..3900)
        .map(|i| {
            let tenant = if i < 2000 { 0 } else { 1 + i % 19 };
            NewTask::new("demo:ping".parse().unwrap(), json!({ "tenant": tenant }))
        })
        .collect();
    s.schedule_batch(&tasks).await.unwrap();
    {
        let mut conn = s.connection().await.unwrap();
        exec(&mut conn.as_any(), "ANALYZE warren_tasks").await;
    }
    let clusters = vec!["default".to_string()];
    // Twenty keys of one slot each: the first claim fills them all, the rest find every
    // key full behind its backlog.
    let first = s.claim("node-a", &clusters, 50, 30_000).await.unwrap();
    assert_eq!(first.len(), 20);
    for _ in 0..8 {
        assert!(s
            .claim("node-a", &clusters, 5, 30_000)
            .await
            .unwrap()
            .is_empty());
    }
    let mut pooled = s.connection().await.unwrap();
    let AnyConn::Postgres(c) = pooled.as_any() else {
        unreachable!("a PostgreSQL store")
    };
    let prepared: Vec<Prepared> = diesel::sql_query(
        "SELECT name, generic_plans, custom_plans FROM pg_prepared_statements \
         WHERE statement LIKE 'WITH RECURSIVE keys%' AND statement LIKE '%LIMIT 5))%'",
    )
    .load(c)
    .await
    .unwrap();
    assert_eq!(
        prepared.len(),
        1,
        "one constrained claim statement per limit"
    );
    // Eight claims of 5 on one connection: PostgreSQL plans the first five, then keeps
    // the generic plan (a claim of one cluster passes it as a scalar, not an array).
    assert!(
        prepared[0].generic_plans >= 3,
        "the constrained claim was planned anew on every call: {} generic, {} custom plans",
        prepared[0].generic_plans,
        prepared[0].custom_plans
    );
    diesel::sql_query("SET plan_cache_mode = force_generic_plan")
        .execute(c)
        .await
        .unwrap();
    // ($1 owner, $2 lease until, $3 now, $4 the cluster, $5 now for the rate-limit
    // buckets, $6 the cluster, $7 now, and again for the tasks without a key: $8 the
    // cluster, $9 now; then $10 to $12 now, for spending the tokens).
    let now = 4_000_000_000_000_i64;
    let plan: Vec<PlanLine> = diesel::sql_query(format!(
        "EXPLAIN EXECUTE {}('node-b', {}, {now}, 'default', {now}, 'default', {now}, 'default', {now}, {now}, {now}, {now})",
        prepared[0].name,
        i64::MAX,
    ))
    .load(c)
    .await
    .unwrap();
    let text = plan
        .into_iter()
        .map(|l| l.line)
        .collect::<Vec<_>>()
        .join("\n");
    for index in [
        "warren_tasks_flow_due",
        "warren_tasks_flow_running",
        "warren_tasks_due",
        "warren_rate_buckets_pkey",
    ] {
        assert!(
            text.contains(index),
            "the claim does not use {index}:\n{text}"
        );
    }
    assert!(
        !text.contains("Seq Scan on warren_tasks"),
        "the claim reads the whole table:\n{text}"
    );
    // A key with free slots is read in the index's order up to what is taken, not
    // gathered whole and sorted (key 0's 2,000 would be read on every claim).
    assert!(
        !text.contains("Bitmap Heap Scan on warren_tasks"),
        "the claim gathers a key's whole backlog:\n{text}"
    );
    diesel::sql_query("RESET plan_cache_mode")
        .execute(c)
        .await
        .unwrap();
}

#[derive(QueryableByName)]
struct Scans {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = BigInt)]
    by_index: i64,
}

/// The statement that writes a run group's completions (`warren_complete_runs`) reads
/// each task by its primary key, even on a fresh database whose queue table was never
/// analyzed: a plan made then is kept by the connection, and a whole-table scan per
/// group would grow with the queue (the overload chaos scenario showed it: 61% of
/// the clean drain rate under load).
#[tokio::test]
async fn held_completions_read_tasks_by_key_on_a_fresh_database() {
    let Some(db) = TestDb::with_config(Backend::Postgres, |c| c.max_connections = 1).await else {
        return;
    };
    let s = &db.store;
    let tasks: Vec<NewTask> = (0..200)
        .map(|i| NewTask::new("demo:ping".parse().unwrap(), json!({ "i": i })))
        .collect();
    s.schedule_batch(&tasks).await.unwrap();
    let claimed = s
        .claim("node", &["default".to_string()], 8, 60_000)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 8);
    let ids: Vec<String> = claimed.iter().map(|c| c.task.id.0.to_string()).collect();
    let tokens: Vec<String> = claimed.iter().map(|c| c.token.0.to_string()).collect();
    let repeated = |v: &str| vec![v; claimed.len()].join(",");
    let complete = format!(
        "SELECT warren_complete_runs(ARRAY[{}]::bigint[], ARRAY[{}]::bigint[], \
         ARRAY[{}]::text[], ARRAY[{}]::bigint[], ARRAY[{}]::bigint[])",
        ids.join(","),
        tokens.join(","),
        repeated("'{}'"),
        repeated("1"),
        repeated("2"),
    );
    // The backend's reads of the table not yet counted in the totals (those of this
    // transaction, and of earlier ones not yet reported), before and after.
    let read = "SELECT seq_scan AS seq, coalesce(idx_scan, 0) AS by_index \
                FROM pg_stat_xact_user_tables WHERE relname = 'warren_tasks'";
    let (before, after) = {
        let mut conn = s.connection().await.unwrap();
        let AnyConn::Postgres(c) = conn.as_any() else {
            unreachable!("PostgreSQL")
        };
        exec(
            &mut AnyConn::Postgres(&mut *c),
            "BEGIN; SET LOCAL warren.run = '1'",
        )
        .await;
        let before: Vec<Scans> = diesel::sql_query(read).load(c).await.unwrap();
        exec(&mut AnyConn::Postgres(&mut *c), &complete).await;
        let after: Vec<Scans> = diesel::sql_query(read).load(c).await.unwrap();
        exec(&mut AnyConn::Postgres(&mut *c), "COMMIT").await;
        (before, after)
    };
    let count = |rows: &[Scans]| rows.iter().map(|r| (r.seq, r.by_index)).next();
    let ((seq0, index0), (seq1, index1)) = (
        count(&before).unwrap_or((0, 0)),
        count(&after).expect("the table was read"),
    );
    assert_eq!(
        seq1 - seq0,
        0,
        "the held completions scanned the whole queue table"
    );
    assert!(index1 > index0, "the completions read no index");
    for run in &claimed {
        let t = s.describe(run.task.id).await.unwrap();
        assert_eq!(t.state, warren::task::TaskState::Completed);
    }
    // One plan per connection, not one per call: a plan made for each call's arrays
    // looks cheaper than the generic one and was made afresh for every group's commit
    // (a third of the function's time in a profile of the insert drain), so the
    // function asks for the generic plan, which the scan counts above show reads by key.
    let settings: Vec<Setting> = {
        let mut conn = s.connection().await.unwrap();
        let AnyConn::Postgres(c) = conn.as_any() else {
            unreachable!("PostgreSQL")
        };
        diesel::sql_query(
            "SELECT unnest(proconfig) AS setting FROM pg_proc \
             WHERE proname = 'warren_complete_runs'",
        )
        .load(c)
        .await
        .unwrap()
    };
    let settings: Vec<&str> = settings.iter().map(|s| s.setting.as_str()).collect();
    assert!(
        settings.contains(&"plan_cache_mode=force_generic_plan"),
        "warren_complete_runs plans every call: {settings:?}"
    );
}

#[derive(QueryableByName)]
struct Setting {
    #[diesel(sql_type = Text)]
    setting: String,
}

/// The table and index tuples PostgreSQL's statistics say were read from
/// `warren_tasks` so far, on a store of one connection (its own reads are flushed
/// first, so the count includes everything it ran before).
async fn tuples_read_from_tasks(store: &warren::store::Store) -> i64 {
    #[derive(QueryableByName)]
    struct Read {
        #[diesel(sql_type = BigInt)]
        tuples: i64,
    }
    let mut pooled = store.connection().await.unwrap();
    let AnyConn::Postgres(c) = pooled.as_any() else {
        unreachable!("a PostgreSQL store")
    };
    // Flushed when the connection is next idle, so before the next statement.
    diesel::sql_query("SELECT pg_stat_force_next_flush()")
        .execute(c)
        .await
        .unwrap();
    let read: Read = diesel::sql_query(
        "SELECT (coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) \
          + (SELECT coalesce(sum(idx_tup_read), 0) FROM pg_stat_user_indexes \
             WHERE relname = 'warren_tasks'))::bigint AS tuples \
         FROM pg_stat_user_tables WHERE relname = 'warren_tasks'",
    )
    .get_result(c)
    .await
    .unwrap();
    read.tuples
}

/// `next_due` (`src/store/next_due.rs`) finds the earliest next attempt of a cluster by
/// a few index lookups: one per priority in use and one for the earliest attempt at
/// each. A plain `min(next_attempt)` reads every pending entry of the cluster (the
/// index is ordered by priority first), and the queue asks each time it runs out of
/// due work: with a backlog scheduled for later, that was a scan each time.
#[tokio::test]
async fn next_due_reads_a_few_index_entries_per_priority_not_the_backlog() {
    let Some(db) = TestDb::with_config(Backend::Postgres, |c| c.max_connections = 1).await else {
        return;
    };
    let s = &db.store;
    let now = warren::clock::Clock::now(&*db.clock);
    // A backlog of 3,000 tasks at three priorities, all due later.
    let priorities = [
        warren::task::Priority::BACKGROUND,
        warren::task::Priority::NORMAL,
        warren::task::Priority::INTERACTIVE,
    ];
    let tasks: Vec<NewTask> = (0..3000)
        .map(|i| {
            let mut task = NewTask::new("demo:ping".parse().unwrap(), json!({ "i": i }));
            task.options.priority = Some(priorities[i % 3]);
            task.options.not_before = Some(now + 60_000 + i as i64);
            task
        })
        .collect();
    s.schedule_batch(&tasks).await.unwrap();
    {
        let mut conn = s.connection().await.unwrap();
        exec(&mut conn.as_any(), "ANALYZE warren_tasks").await;
    }
    let clusters = vec!["default".to_string()];
    // Until PostgreSQL settles on a plan for the statement (it plans the first five
    // calls for their arguments, then compares), then counted: the plan it keeps
    // reads the index too.
    for _ in 0..8 {
        assert_eq!(s.next_due(&clusters).await.unwrap(), Some(now + 60_000));
    }
    let before = tuples_read_from_tasks(s).await;
    assert_eq!(s.next_due(&clusters).await.unwrap(), Some(now + 60_000));
    let read = tuples_read_from_tasks(s).await - before;
    // Three priorities: four lookups for the levels (the last finds none) and three for
    // the earliest attempts, a tuple or two each.
    assert!(
        read <= 30,
        "next_due read {read} tuples of warren_tasks for 3,000 pending tasks at 3 priorities"
    );
    // Prepared once on the connection and no longer planned per call: planning this
    // statement costs far more than running it, and a queue asks at about every task
    // while it is idle.
    let mut pooled = s.connection().await.unwrap();
    let AnyConn::Postgres(c) = pooled.as_any() else {
        unreachable!("a PostgreSQL store")
    };
    assert_prepared_once(c, "next_due", "WITH RECURSIVE levels%", 4).await;
}

/// Asserts that the connection `c` has prepared the statement whose text is `like`
/// (`what`) once, and ran a generic plan for it at least `generic` times: it is no
/// longer planned on every call.
async fn assert_prepared_once(
    c: &mut diesel_async::AsyncPgConnection,
    what: &str,
    like: &str,
    generic: i64,
) {
    let prepared: Vec<Prepared> = diesel::sql_query(
        "SELECT name, generic_plans, custom_plans FROM pg_prepared_statements \
         WHERE statement LIKE $1",
    )
    .bind::<Text, _>(like)
    .load(c)
    .await
    .unwrap();
    assert_eq!(prepared.len(), 1, "{what} is not a prepared statement");
    assert!(
        prepared[0].generic_plans >= generic,
        "{what} was planned anew on every call: {} generic, {} custom plans",
        prepared[0].generic_plans,
        prepared[0].custom_plans
    );
}

/// A waiter sets its task's `waited` flag (`PgMarkWaited` in `src/store/wait.rs`)
/// with a statement prepared once per connection: sent
/// as a one-off query it was planned on every wait, which cost about half as much
/// again as running it, on the path from a task's commit to its waiter's answer.
#[tokio::test]
async fn marking_a_task_waited_is_prepared_once_not_planned_per_wait() {
    let Some(db) = TestDb::with_config(Backend::Postgres, |c| c.max_connections = 1).await else {
        return;
    };
    let s = &db.store;
    let tasks: Vec<NewTask> = (0..8)
        .map(|i| NewTask::new("demo:ping".parse().unwrap(), json!({ "i": i })))
        .collect();
    let ids = s.schedule_batch(&tasks).await.unwrap();
    // No node runs them: each wait marks its task, then times out.
    for &id in &ids {
        let waited = s
            .wait(id, std::time::Duration::from_millis(1), WaitFor::Finished)
            .await;
        assert!(
            matches!(waited, Err(StoreError::WaitTimeout { id: timed_out, .. }) if timed_out == id),
            "waiting for pending task {id}: {waited:?}"
        );
    }
    let mut pooled = s.connection().await.unwrap();
    let AnyConn::Postgres(c) = pooled.as_any() else {
        unreachable!("a PostgreSQL store")
    };
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let marked: Count = diesel::sql_query("SELECT count(*) AS n FROM warren_tasks WHERE waited")
        .get_result(c)
        .await
        .unwrap();
    assert_eq!(marked.n, 8, "every waited task has its flag set");
    let marking = "WITH marked AS (UPDATE warren_tasks SET waited%";
    assert_prepared_once(c, "mark_waited", marking, 2).await;
}
