//! The store's conformance suite: every test body runs against SQLite and PostgreSQL
//! (`sqlite::NAME` and `postgres::NAME`).

mod support;

use serde_json::json;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use support::{count, exec, Backend, TestDb, MIN, T0};
use warren::store::{
    NewTask, ResolveOutcome, ScheduleOptions, StateFilter, Store, StoreError, TaskFilter, WaitFor,
};
use warren::task::{Priority, Resolution, RetryPolicy, TaskState, TaskType};

conformance!(
    schedule_and_describe_keep_every_field,
    schedule_in_caller_transaction_exists_only_if_committed,
    bad_input_is_refused_and_changes_nothing,
    claims_follow_priority_then_next_attempt_then_id,
    claims_respect_not_before_and_clusters,
    tasks_without_a_cluster_get_their_types_registered_cluster,
    released_claims_are_pending_again_without_a_failure,
    concurrent_claimers_never_share_a_task,
    stale_fencing_token_cannot_resolve,
    completions_finishing_together_each_commit_and_stale_ones_are_refused,
    expired_lease_is_recovered_and_claimed_again,
    a_lease_renewed_after_recovery_read_it_keeps_its_task,
    task_effects_commit_with_completion,
    task_effects_vanish_with_temporary_failure,
    tasks_scheduled_by_a_run_exist_only_if_it_commits,
    retry_schedule_doubles_then_caps_at_one_day,
    max_failures_edge_cases,
    explicit_retry_and_not_before_win,
    restart_resets_failures_and_replaces_data,
    permanent_failure_and_cancellation_resolutions,
    malformed_result_json_becomes_a_temporary_failure,
    cancel_pending_running_and_finished,
    retry_now_delete_duplicate_and_prune,
    delete_refuses_a_task_claimed_meanwhile_and_keeps_its_metadata,
    reschedule_moves_the_next_attempt_and_requeues_finished_tasks,
    throughput_counts_finished_tasks_per_bucket_and_outcome,
    list_filters_paging_and_counts,
    metadata_is_case_insensitive,
    wait_returns_promptly_after_the_commit,
    wait_times_out_and_accepts_temporary_failures,
    scheduled_ticks_run_once_across_nodes,
    scheduled_runs_never_overlap_and_missed_ticks_coalesce,
    scheduled_run_now_and_enable,
    nodes_heartbeat_and_settings,
    nodes_publish_their_runners,
    task_type_checks_see_registrations_and_live_nodes,
    task_sql_binds_parameters_and_returns_json_rows,
);

fn ping() -> TaskType {
    "demo:ping".parse().unwrap()
}

fn task(data: serde_json::Value) -> NewTask {
    NewTask::new(ping(), data)
}

fn task_with(data: serde_json::Value, options: ScheduleOptions) -> NewTask {
    task(data).with_options(options)
}

fn clusters() -> Vec<String> {
    vec!["default".to_string()]
}

const LEASE: i64 = 30_000;

/// Claims exactly one task (the next due one) and opens its run.
async fn claim_one(store: &Store) -> warren::store::TaskRun {
    let mut claimed = store.claim("node-a", &clusters(), 1, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 1, "expected one due task");
    store.begin_run(claimed.remove(0)).await.unwrap()
}

fn complete(result: serde_json::Value) -> Resolution {
    Resolution::Completion {
        result: result.to_string(),
    }
}

fn temporary(error: &str) -> Resolution {
    Resolution::TemporaryFailure {
        error: error.into(),
        stack: Some("at runTask (task.js:3)".into()),
        next_retry: None,
    }
}

async fn schedule_and_describe_keep_every_field(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let id = s
        .schedule(task_with(
            json!({"ping": 42}),
            ScheduleOptions {
                not_before: Some(T0 + 5 * MIN),
                priority: Some(Priority::INTERACTIVE),
                timeout_ms: Some(2500),
                aux_data: Some(json!({"extra": true})),
                metadata: vec![("Origin".into(), "test".into())],
                cluster: Some("mail".into()),
            },
        ))
        .await
        .unwrap();
    let t = s.describe(id).await.unwrap();
    assert_eq!(t.task_type, ping());
    assert_eq!(t.state, TaskState::Pending);
    assert_eq!(t.data, json!({"ping": 42}));
    assert_eq!(t.aux_data, Some(json!({"extra": true})));
    assert_eq!(t.merged_data(), json!({"ping": 42, "extra": true}));
    assert_eq!(t.priority, Priority::INTERACTIVE);
    assert_eq!(t.timeout_ms, 2500);
    assert_eq!(t.cluster, "mail");
    assert_eq!(t.created_at, T0);
    assert_eq!(t.not_before, Some(T0 + 5 * MIN));
    assert_eq!(t.next_attempt, T0 + 5 * MIN);
    assert_eq!((t.failures, t.iterations, t.lease_token), (0, 0, 0));
    assert_eq!(t.metadata, vec![("Origin".to_string(), "test".to_string())]);
    assert_eq!((t.result, t.last_error, t.finished_at), (None, None, None));

    let plain = s
        .describe(s.schedule(task(json!({}))).await.unwrap())
        .await
        .unwrap();
    assert_eq!(plain.priority, Priority::NORMAL);
    assert_eq!(plain.cluster, "default");
    assert_eq!(plain.next_attempt, T0);

    // In a batch, each task keeps its own options, set or not, in input order.
    let ids = s
        .schedule_batch(&[
            task(json!({"n": 0})),
            task_with(
                json!({"n": 1}),
                ScheduleOptions {
                    not_before: Some(T0 + MIN),
                    priority: Some(Priority::INTERACTIVE),
                    timeout_ms: Some(100),
                    aux_data: Some(json!({"a": 1})),
                    metadata: vec![("k".into(), "v".into())],
                    cluster: Some("mail".into()),
                },
            ),
            task(json!({"n": 2})),
        ])
        .await
        .unwrap();
    assert!(ids[0] < ids[1] && ids[1] < ids[2], "{ids:?}");
    let batch = [
        s.describe(ids[0]).await.unwrap(),
        s.describe(ids[1]).await.unwrap(),
        s.describe(ids[2]).await.unwrap(),
    ];
    for (n, t) in batch.iter().enumerate() {
        assert_eq!(t.data, json!({ "n": n }));
    }
    for t in [&batch[0], &batch[2]] {
        assert_eq!(
            (
                t.aux_data.clone(),
                t.not_before,
                t.next_attempt,
                t.timeout_ms
            ),
            (None, None, T0, 0)
        );
        assert_eq!(
            (t.priority, t.cluster.as_str()),
            (Priority::NORMAL, "default")
        );
        assert!(t.metadata.is_empty());
    }
    let t = &batch[1];
    assert_eq!(
        (
            t.aux_data.clone(),
            t.not_before,
            t.next_attempt,
            t.timeout_ms
        ),
        (Some(json!({"a": 1})), Some(T0 + MIN), T0 + MIN, 100)
    );
    assert_eq!(
        (t.priority, t.cluster.as_str()),
        (Priority::INTERACTIVE, "mail")
    );
    assert_eq!(t.metadata, vec![("k".to_string(), "v".to_string())]);
    assert!(matches!(
        s.describe(999_999).await,
        Err(StoreError::NotFound(999_999))
    ));
}

async fn schedule_in_caller_transaction_exists_only_if_committed(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let mut conn = s.connection().await.unwrap();
    exec(
        &mut conn.as_any(),
        "CREATE TABLE orders (id INTEGER PRIMARY KEY)",
    )
    .await;

    conn.begin().await.unwrap();
    exec(&mut conn.as_any(), "INSERT INTO orders VALUES (1)").await;
    let kept = s
        .schedule_in(&mut conn.as_any(), task(json!({"order": 1})))
        .await
        .unwrap();
    conn.commit().await.unwrap();

    conn.begin().await.unwrap();
    exec(&mut conn.as_any(), "INSERT INTO orders VALUES (2)").await;
    let batch = s
        .schedule_batch_in(
            &mut conn.as_any(),
            &[task(json!({"order": 2})), task(json!({"order": 3}))],
        )
        .await
        .unwrap();
    conn.rollback().await.unwrap();
    drop(conn);

    assert_eq!(s.describe(kept).await.unwrap().data, json!({"order": 1}));
    for id in batch {
        assert!(matches!(s.describe(id).await, Err(StoreError::NotFound(_))));
    }
    assert_eq!(count(s, "SELECT COUNT(*) AS n FROM orders").await, 1);
    assert_eq!(count(s, "SELECT COUNT(*) AS n FROM warren_tasks").await, 1);
}

async fn bad_input_is_refused_and_changes_nothing(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let err = s.schedule(task(json!([1, 2]))).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid task data: must be a JSON object, got an array"
    );
    let err = s
        .schedule_batch(&[
            task(json!({"ok": 1})),
            task_with(
                json!({}),
                ScheduleOptions {
                    cluster: Some("no spaces".into()),
                    ..Default::default()
                },
            ),
        ])
        .await
        .unwrap_err();
    assert!(
        err.to_string().starts_with("invalid cluster: 'no spaces'"),
        "{err}"
    );
    let err = s
        .schedule(task_with(
            json!({}),
            ScheduleOptions {
                aux_data: Some(json!("x")),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid aux data: must be a JSON object, got a string"
    );
    let err = s
        .list(&TaskFilter {
            limit: 0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "invalid limit: 0 is outside 1–10000");
    assert!("sometimes".parse::<StateFilter>().is_err());
    assert_eq!(count(s, "SELECT COUNT(*) AS n FROM warren_tasks").await, 0);
}

async fn claims_follow_priority_then_next_attempt_then_id(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let opts = |p: Priority, nb: Option<i64>| ScheduleOptions {
        priority: Some(p),
        not_before: nb,
        ..Default::default()
    };
    // Scheduled at different times so next_attempt differs.
    let bg = s
        .schedule(task_with(
            json!({"n": "bg"}),
            opts(Priority::BACKGROUND, None),
        ))
        .await
        .unwrap();
    db.clock.advance(1000);
    let normal_first = s
        .schedule(task_with(
            json!({"n": "normal-first"}),
            opts(Priority::NORMAL, None),
        ))
        .await
        .unwrap();
    let urgent = s
        .schedule(task_with(
            json!({"n": "urgent"}),
            opts(Priority::UPDATE_INTERACTIVE, None),
        ))
        .await
        .unwrap();
    // Same priority, earlier next attempt than normal_first: an explicit earlier time.
    db.clock.advance(1000);
    let normal_second = s
        .schedule(task_with(
            json!({"n": "normal-second"}),
            opts(Priority::NORMAL, None),
        ))
        .await
        .unwrap();
    let normal_same = s
        .schedule(task_with(
            json!({"n": "normal-same"}),
            opts(Priority::NORMAL, None),
        ))
        .await
        .unwrap();
    let order: Vec<i64> = s
        .claim("n", &clusters(), 10, LEASE)
        .await
        .unwrap()
        .iter()
        .map(|c| c.task.id)
        .collect();
    assert_eq!(
        order,
        vec![urgent, normal_first, normal_second, normal_same, bg]
    );
}

async fn tasks_without_a_cluster_get_their_types_registered_cluster(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let mail: TaskType = "demo:mail".parse().unwrap();
    // Before any node registered the type, it goes to `default`.
    let early = s
        .schedule(NewTask::new(mail.clone(), json!({})))
        .await
        .unwrap();
    s.register_task_types(&[("demo:mail".into(), "mailers".into())])
        .await
        .unwrap();
    let batch = s
        .schedule_batch(&[
            NewTask::new(mail.clone(), json!({})),
            task(json!({})),
            NewTask::new(mail.clone(), json!({})).with_options(ScheduleOptions {
                cluster: Some("urgent".into()),
                ..Default::default()
            }),
        ])
        .await
        .unwrap();
    let cluster = |id| async move { s.describe(id).await.unwrap().cluster };
    assert_eq!(cluster(early).await, "default");
    assert_eq!(cluster(batch[0]).await, "mailers");
    assert_eq!(cluster(batch[1]).await, "default", "unregistered type");
    assert_eq!(
        cluster(batch[2]).await,
        "urgent",
        "an explicit cluster wins"
    );
    // A later definition moves the type; the latest registration wins.
    s.register_task_types(&[("demo:mail".into(), "bulk".into())])
        .await
        .unwrap();
    let moved = s.schedule(NewTask::new(mail, json!({}))).await.unwrap();
    assert_eq!(cluster(moved).await, "bulk");
    // Claims for the cluster find it.
    let claimed = s
        .claim("node-a", &["bulk".to_string()], 10, LEASE)
        .await
        .unwrap();
    assert_eq!(
        claimed.iter().map(|c| c.task.id).collect::<Vec<_>>(),
        vec![moved]
    );
}

async fn released_claims_are_pending_again_without_a_failure(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let ids = s
        .schedule_batch(&[task(json!({"n": 1})), task(json!({"n": 2}))])
        .await
        .unwrap();
    let claimed = s.claim("node-a", &clusters(), 2, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let first = (claimed[0].task.id, claimed[0].token);
    // A stale token releases nothing; the right one releases the task.
    assert_eq!(
        s.release_claims(&[(first.0, first.1 + 7)]).await.unwrap(),
        0
    );
    assert_eq!(s.release_claims(&[first]).await.unwrap(), 1);
    assert_eq!(
        s.release_claims(&[first]).await.unwrap(),
        0,
        "released once"
    );
    let released = s.describe(first.0).await.unwrap();
    assert_eq!(
        (released.state, released.failures, released.iterations),
        (TaskState::Pending, 0, 0)
    );
    assert_eq!((released.lease_owner, released.started_at), (None, None));
    // It is claimed again (with a new token); the other task is still running.
    let again = s.claim("node-b", &clusters(), 5, LEASE).await.unwrap();
    assert_eq!(
        again.iter().map(|c| c.task.id).collect::<Vec<_>>(),
        vec![first.0]
    );
    assert!(again[0].token > first.1);
    let other = ids.iter().find(|&&id| id != first.0).copied().unwrap();
    assert_eq!(s.describe(other).await.unwrap().state, TaskState::Running);
}

async fn claims_respect_not_before_and_clusters(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let later = s
        .schedule(task_with(
            json!({}),
            ScheduleOptions {
                not_before: Some(T0 + MIN),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let mail = s
        .schedule(task_with(
            json!({}),
            ScheduleOptions {
                cluster: Some("mail".into()),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    assert!(s
        .claim("n", &clusters(), 10, LEASE)
        .await
        .unwrap()
        .is_empty());
    let got = s
        .claim("n", &["mail".to_string()], 10, LEASE)
        .await
        .unwrap();
    assert_eq!(
        got.iter().map(|c| c.task.id).collect::<Vec<_>>(),
        vec![mail]
    );
    assert_eq!(got[0].task.state, TaskState::Running);
    assert_eq!(got[0].task.lease_owner.as_deref(), Some("n"));
    assert_eq!(got[0].task.lease_until, Some(T0 + LEASE));
    assert_eq!(got[0].token, 1);
    db.clock.advance(MIN);
    let got = s.claim("n", &clusters(), 10, LEASE).await.unwrap();
    assert_eq!(
        got.iter().map(|c| c.task.id).collect::<Vec<_>>(),
        vec![later]
    );
}

async fn concurrent_claimers_never_share_a_task(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    const TASKS: usize = 10_000;
    let batch: Vec<NewTask> = (0..TASKS).map(|i| task(json!({"i": i}))).collect();
    s.schedule_batch(&batch).await.unwrap();
    let mut claimers = Vec::new();
    for w in 0..8 {
        let store = s.clone();
        claimers.push(tokio::spawn(async move {
            let owner = format!("claimer-{w}");
            let mut mine = Vec::new();
            loop {
                let got = store
                    .claim(&owner, &["default".to_string()], 25, LEASE)
                    .await
                    .unwrap();
                if got.is_empty() {
                    return mine;
                }
                mine.extend(got.into_iter().map(|c| c.task.id));
            }
        }));
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    for c in claimers {
        for id in c.await.unwrap() {
            total += 1;
            assert!(seen.insert(id), "task {id} was claimed twice");
        }
    }
    assert_eq!(total, TASKS);
    assert_eq!(
        count(
            s,
            "SELECT COUNT(*) AS n FROM warren_tasks WHERE state = 'running' AND lease_token = 1"
        )
        .await,
        TASKS as i64
    );
}

async fn stale_fencing_token_cannot_resolve(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let id = s.schedule(task(json!({}))).await.unwrap();
    let first = s.claim("a", &clusters(), 1, LEASE).await.unwrap().remove(0);
    // The lease runs out; the task is recovered and claimed by another runner.
    db.clock.advance(LEASE + 1);
    assert_eq!(
        s.recover_expired_leases(&|_| RetryPolicy::default())
            .await
            .unwrap(),
        vec![id]
    );
    let second = s.claim("b", &clusters(), 1, LEASE).await.unwrap().remove(0);
    assert_eq!(second.token, first.token + 1);

    let stale = s.begin_run(first.clone()).await.unwrap();
    let err = stale
        .resolve(complete(json!({"from": "a"})), RetryPolicy::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::LeaseLost { id: i, token } if i == id && token == first.token),
        "{err}"
    );
    let err = s
        .record_failure(id, first.token, "late", None, None, RetryPolicy::default())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { .. }));
    assert!(!s.renew_lease(id, first.token, "a", LEASE).await.unwrap());

    let fresh = s.begin_run(second).await.unwrap();
    assert_eq!(
        fresh
            .resolve(complete(json!({"from": "b"})), RetryPolicy::default())
            .await
            .unwrap(),
        ResolveOutcome::Completed
    );
    let t = s.describe(id).await.unwrap();
    assert_eq!(t.result, Some(json!({"from": "b"})));
    assert_eq!(t.state, TaskState::Completed);
}

async fn completions_finishing_together_each_commit_and_stale_ones_are_refused(b: Backend) {
    // One pooled connection, held by the test while the runs resolve: every completion
    // is queued before any can be written. On PostgreSQL they then share one statement
    // and one commit; on SQLite each commits in its own transaction, one after another.
    let Some(db) = TestDb::with_config(b, |c| c.max_connections = 1).await else {
        return;
    };
    let s = &db.store;
    for i in 0..20 {
        s.schedule(task(json!({ "i": i }))).await.unwrap();
    }
    let claimed = s.claim("a", &clusters(), 20, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 20);
    // A second run of the first task with the token of an older claim.
    let mut stale = claimed[0].clone();
    stale.token -= 1;
    let mut runs = Vec::new();
    for c in claimed.iter().cloned().chain([stale.clone()]) {
        runs.push(s.begin_run(c).await.unwrap());
    }

    // Someone waits for the outcome of the fifth task, on another store (a pool of its
    // own). On PostgreSQL the completion's NOTIFY is what wakes it: make sure it has
    // asked for one before the completions are written.
    let watched = claimed[4].task.id;
    let other = db.another_node().await;
    let waiter = {
        let other = other.clone();
        tokio::spawn(async move {
            other
                .wait(watched, Duration::from_secs(10), WaitFor::Finished)
                .await
        })
    };
    if b == Backend::Postgres {
        let flagged =
            format!("SELECT COUNT(*) AS n FROM warren_tasks WHERE id = {watched} AND waited");
        let deadline = Instant::now() + Duration::from_secs(10);
        while count(&other, &flagged).await == 0 {
            assert!(
                Instant::now() < deadline,
                "the waiter never asked for a NOTIFY"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    let held = s.connection().await.unwrap();
    let mut resolving = Box::pin(futures_util::future::join_all(
        runs.into_iter()
            .enumerate()
            .map(|(n, run)| run.resolve(complete(json!({ "n": n })), RetryPolicy::default())),
    ));
    assert!(futures_util::poll!(&mut resolving).is_pending());
    drop(held);
    let outcomes = resolving.await;

    for (n, outcome) in outcomes[..20].iter().enumerate() {
        assert_eq!(
            outcome.as_ref().unwrap(),
            &ResolveOutcome::Completed,
            "run {n}"
        );
        let t = s.describe(claimed[n].task.id).await.unwrap();
        assert_eq!(t.state, TaskState::Completed);
        assert_eq!(t.result, Some(json!({ "n": n })));
        assert_eq!(t.iterations, 1);
    }
    let refused = outcomes[20].as_ref().unwrap_err();
    assert!(
        matches!(refused, StoreError::LeaseLost { id, token } if *id == stale.task.id && *token == stale.token),
        "{refused}"
    );
    let woken = waiter.await.unwrap().unwrap();
    assert_eq!(woken.state, TaskState::Completed);
    assert_eq!(woken.result, Some(json!({ "n": 4 })));

    let stats = s.completion_stats();
    match b {
        Backend::Postgres => assert_eq!((stats.statements, stats.completions), (1, 21)),
        Backend::Sqlite => assert_eq!((stats.statements, stats.completions), (0, 0)),
    }
}

async fn expired_lease_is_recovered_and_claimed_again(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let id = s.schedule(task(json!({}))).await.unwrap();
    let c = s
        .claim("dead-node", &clusters(), 1, LEASE)
        .await
        .unwrap()
        .remove(0);
    // A renewed lease is not recovered.
    db.clock.advance(LEASE - 1);
    assert!(s
        .renew_lease(id, c.token, "dead-node", LEASE)
        .await
        .unwrap());
    db.clock.advance(LEASE - 1);
    assert!(s
        .recover_expired_leases(&|_| RetryPolicy::default())
        .await
        .unwrap()
        .is_empty());
    // Then the node dies.
    db.clock.advance(2);
    assert_eq!(
        s.recover_expired_leases(&|_| RetryPolicy::default())
            .await
            .unwrap(),
        vec![id]
    );
    let t = s.describe(id).await.unwrap();
    assert_eq!(t.state, TaskState::Pending);
    assert_eq!((t.failures, t.iterations), (1, 1));
    assert_eq!(
        t.next_attempt,
        s.now(),
        "a crashed run is due again at once"
    );
    assert!(t.last_error.unwrap().contains("dead-node"));
    let again = s.claim("live-node", &clusters(), 1, LEASE).await.unwrap();
    assert_eq!(again[0].task.id, id);
    assert_eq!(again[0].token, c.token + 1);
    // With no retries allowed, an expired lease finishes the task as failed.
    db.clock.advance(LEASE + 1);
    let none = RetryPolicy {
        max_failures: 1,
        ..RetryPolicy::default()
    };
    s.recover_expired_leases(&|_| none).await.unwrap();
    assert_eq!(s.describe(id).await.unwrap().state, TaskState::Failed);
}

/// Recovery reads the expired leases, then writes each recovery. A runner that renews
/// its lease between the two keeps its task: the write carries `lease_until < now`, not
/// only the token (a write fenced by the token alone, as a failure is, would take a
/// live run away).
async fn a_lease_renewed_after_recovery_read_it_keeps_its_task(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let id = s.schedule(task(json!({}))).await.unwrap();
    let c = s
        .claim("slow-node", &clusters(), 1, LEASE)
        .await
        .unwrap()
        .remove(0);
    db.clock.advance(LEASE + 1);
    let read = s.expired_leases().await.unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(
        (read[0].id, read[0].token, read[0].owner.as_deref()),
        (id, c.token, Some("slow-node"))
    );
    assert_eq!(read[0].task_type, Some(ping()));
    // The runner renews between the read and the write: the write loses.
    assert!(s
        .renew_lease(id, c.token, "slow-node", LEASE)
        .await
        .unwrap());
    assert!(!s
        .recover_lease(&read[0], RetryPolicy::default())
        .await
        .unwrap());
    let t = s.describe(id).await.unwrap();
    assert_eq!(t.state, TaskState::Running);
    assert_eq!((t.failures, t.iterations, t.lease_token), (0, 0, c.token));
    assert_eq!(t.lease_until, Some(s.now() + LEASE));
    assert_eq!(t.last_error, None);
    // Once the renewed lease has expired too, the same read recovers it.
    db.clock.advance(LEASE + 1);
    assert!(s
        .recover_lease(&read[0], RetryPolicy::default())
        .await
        .unwrap());
    let t = s.describe(id).await.unwrap();
    assert_eq!((t.state, t.failures), (TaskState::Pending, 1));
    assert!(t.last_error.unwrap().contains("slow-node"));
    // A read whose token has moved on (claimed again) recovers nothing.
    let again = s
        .claim("live-node", &clusters(), 1, LEASE)
        .await
        .unwrap()
        .remove(0);
    db.clock.advance(LEASE + 1);
    assert!(!s
        .recover_lease(&read[0], RetryPolicy::default())
        .await
        .unwrap());
    let t = s.describe(id).await.unwrap();
    assert_eq!((t.state, t.lease_token), (TaskState::Running, again.token));
    assert_eq!(
        s.recover_expired_leases(&|_| RetryPolicy::default())
            .await
            .unwrap(),
        vec![id]
    );
}

async fn setup_effects_table(s: &Store) {
    let mut conn = s.connection().await.unwrap();
    exec(
        &mut conn.as_any(),
        "CREATE TABLE effects (task_id BIGINT NOT NULL)",
    )
    .await;
}

async fn task_effects_commit_with_completion(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    setup_effects_table(s).await;
    let id = s.schedule(task(json!({}))).await.unwrap();
    let mut run = claim_one(s).await;
    exec(
        &mut run.conn().await.unwrap(),
        &format!("INSERT INTO effects VALUES ({id})"),
    )
    .await;
    // Not visible outside the task's transaction before it commits.
    assert_eq!(count(s, "SELECT COUNT(*) AS n FROM effects").await, 0);
    let outcome = run
        .resolve(complete(json!({"pong": 42})), RetryPolicy::default())
        .await
        .unwrap();
    assert_eq!(outcome, ResolveOutcome::Completed);
    assert_eq!(count(s, "SELECT COUNT(*) AS n FROM effects").await, 1);
    let t = s.describe(id).await.unwrap();
    assert_eq!(t.state, TaskState::Completed);
    assert_eq!(t.result, Some(json!({"pong": 42})));
    assert_eq!(t.finished_at, Some(T0));
    assert_eq!((t.iterations, t.failures), (1, 0));
    assert_eq!((t.lease_owner, t.lease_until), (None, None));
}

async fn task_effects_vanish_with_temporary_failure(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    setup_effects_table(s).await;
    let id = s.schedule(task(json!({}))).await.unwrap();
    let mut run = claim_one(s).await;
    exec(
        &mut run.conn().await.unwrap(),
        &format!("INSERT INTO effects VALUES ({id})"),
    )
    .await;
    let outcome = run
        .resolve(temporary("smtp down"), RetryPolicy::default())
        .await
        .unwrap();
    assert_eq!(
        outcome,
        ResolveOutcome::Pending {
            next_attempt: T0 + 15 * MIN
        }
    );
    assert_eq!(count(s, "SELECT COUNT(*) AS n FROM effects").await, 0);
    let t = s.describe(id).await.unwrap();
    assert_eq!(t.state, TaskState::Pending);
    assert_eq!(t.last_error.as_deref(), Some("smtp down"));
    assert_eq!(t.last_stack.as_deref(), Some("at runTask (task.js:3)"));
    assert_eq!((t.failures, t.iterations), (1, 1));
    // A run dropped without a resolution (a crashed runner) rolls back too.
    db.clock.advance(15 * MIN);
    let mut run = claim_one(s).await;
    exec(
        &mut run.conn().await.unwrap(),
        &format!("INSERT INTO effects VALUES ({id})"),
    )
    .await;
    drop(run);
    assert_eq!(count(s, "SELECT COUNT(*) AS n FROM effects").await, 0);
    // The database stays writable after the dropped run (no lock left behind).
    s.schedule(task(json!({}))).await.unwrap();
}

async fn tasks_scheduled_by_a_run_exist_only_if_it_commits(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    s.schedule(task(json!({"n": 1}))).await.unwrap();
    s.schedule(task(json!({"n": 2}))).await.unwrap();
    let mut run = claim_one(s).await;
    let child = run.schedule(task(json!({"child": "kept"}))).await.unwrap();
    run.resolve(complete(json!(null)), RetryPolicy::default())
        .await
        .unwrap();
    let mut run = claim_one(s).await;
    let lost = run.schedule(task(json!({"child": "lost"}))).await.unwrap();
    run.resolve(temporary("no"), RetryPolicy::default())
        .await
        .unwrap();
    assert_eq!(
        s.describe(child).await.unwrap().data,
        json!({"child": "kept"})
    );
    assert!(matches!(
        s.describe(lost).await,
        Err(StoreError::NotFound(_))
    ));
}

/// Moves the clock to the only unfinished task's next attempt, fails it once (claim +
/// temporary failure) and returns the outcome.
async fn fail_once(db: &TestDb, policy: RetryPolicy) -> ResolveOutcome {
    let s = &db.store;
    let next = s
        .list(&TaskFilter {
            state: StateFilter::Unfinished,
            ..Default::default()
        })
        .await
        .unwrap();
    db.clock.set(next[0].next_attempt.max(s.now()));
    claim_one(s)
        .await
        .resolve(temporary("boom"), policy)
        .await
        .unwrap()
}

async fn retry_schedule_doubles_then_caps_at_one_day(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    db.store.schedule(task(json!({}))).await.unwrap();
    let mut delays = Vec::new();
    let mut failed_at = T0;
    for _ in 0..9 {
        match fail_once(&db, RetryPolicy::default()).await {
            ResolveOutcome::Pending { next_attempt } => {
                delays.push((next_attempt - failed_at) / MIN);
                failed_at = next_attempt;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(delays, vec![15, 30, 60, 120, 240, 480, 1440, 1440, 1440]);
    let t = db
        .store
        .list(&TaskFilter::default())
        .await
        .unwrap()
        .remove(0);
    assert_eq!((t.failures, t.iterations), (9, 9));
    // A custom failreschedule doubles from its own base.
    let db2 = TestDb::new(b).await.unwrap();
    db2.store.schedule(task(json!({}))).await.unwrap();
    let fast = RetryPolicy {
        fail_reschedule_ms: 1000,
        max_failures: -1,
    };
    assert_eq!(
        fail_once(&db2, fast).await,
        ResolveOutcome::Pending {
            next_attempt: T0 + 1000
        }
    );
    assert_eq!(
        fail_once(&db2, fast).await,
        ResolveOutcome::Pending {
            next_attempt: T0 + 1000 + 2000
        }
    );
}

async fn max_failures_edge_cases(b: Backend) {
    // maxfailures = N ends with N + 1 failures; 0 never retries; -1 retries forever.
    for (max, expected_failures) in [(0, 1), (1, 2), (2, 3)] {
        let Some(db) = TestDb::new(b).await else {
            return;
        };
        let id = db.store.schedule(task(json!({}))).await.unwrap();
        let policy = RetryPolicy {
            fail_reschedule_ms: MIN,
            max_failures: max,
        };
        let mut outcomes = Vec::new();
        loop {
            let o = fail_once(&db, policy).await;
            outcomes.push(o);
            if o == ResolveOutcome::Failed {
                break;
            }
        }
        assert_eq!(
            outcomes.len() as i32,
            expected_failures,
            "maxfailures={max}"
        );
        let t = db.store.describe(id).await.unwrap();
        assert_eq!(t.state, TaskState::Failed);
        assert_eq!(t.failures, expected_failures, "maxfailures={max}");
        assert_eq!(t.last_error.as_deref(), Some("boom"));
        assert!(t.finished_at.is_some());
    }
}

async fn explicit_retry_and_not_before_win(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let id = s.schedule(task(json!({}))).await.unwrap();
    let run = claim_one(s).await;
    let at = T0 + 3 * MIN;
    let r = Resolution::TemporaryFailure {
        error: "later".into(),
        stack: None,
        next_retry: Some(at),
    };
    assert_eq!(
        run.resolve(r, RetryPolicy::default()).await.unwrap(),
        ResolveOutcome::Pending { next_attempt: at }
    );
    // A retry time in the past means now.
    db.clock.set(at);
    let run = claim_one(s).await;
    let r = Resolution::TemporaryFailure {
        error: "again".into(),
        stack: None,
        next_retry: Some(T0),
    };
    assert_eq!(
        run.resolve(r, RetryPolicy::default()).await.unwrap(),
        ResolveOutcome::Pending { next_attempt: at }
    );
    // not-before holds back retries too.
    let nb = T0 + 24 * 60 * MIN;
    let id2 = s
        .schedule(task_with(
            json!({}),
            ScheduleOptions {
                not_before: Some(nb),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    db.clock.set(nb);
    let mut claimed = s.claim("n", &clusters(), 10, LEASE).await.unwrap();
    claimed.retain(|c| c.task.id == id2);
    // Pretend the clock is behind not-before (an operator moved it back): the retry
    // still waits for not-before.
    db.clock.set(nb - 60 * MIN);
    let run = s.begin_run(claimed.remove(0)).await.unwrap();
    let outcome = run
        .resolve(temporary("x"), RetryPolicy::default())
        .await
        .unwrap();
    assert_eq!(outcome, ResolveOutcome::Pending { next_attempt: nb });
    assert_eq!(s.describe(id).await.unwrap().failures, 2);
}

async fn restart_resets_failures_and_replaces_data(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let id = s
        .schedule(task_with(
            json!({"step": 1}),
            ScheduleOptions {
                aux_data: Some(json!({"a": 1})),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    fail_once(&db, RetryPolicy::default()).await;
    fail_once(&db, RetryPolicy::default()).await;
    db.clock.set(s.describe(id).await.unwrap().next_attempt);
    let now = s.now();
    let run = claim_one(s).await;
    let r = Resolution::Restart {
        at: now + 10 * MIN,
        new_data: Some(json!({"step": 2}).to_string()),
        new_aux_data: None,
    };
    assert_eq!(
        run.resolve(r, RetryPolicy::default()).await.unwrap(),
        ResolveOutcome::Pending {
            next_attempt: now + 10 * MIN
        }
    );
    let t = s.describe(id).await.unwrap();
    assert_eq!(t.state, TaskState::Pending);
    assert_eq!((t.failures, t.iterations), (0, 3));
    assert_eq!(t.data, json!({"step": 2}));
    assert_eq!(t.aux_data, Some(json!({"a": 1})));
    assert_eq!(t.last_error, None);
    // A restart in the past runs now; new aux data replaces the old.
    db.clock.set(now + 10 * MIN);
    let run = claim_one(s).await;
    let r = Resolution::Restart {
        at: 0,
        new_data: None,
        new_aux_data: Some(json!({"b": 2}).to_string()),
    };
    assert_eq!(
        run.resolve(r, RetryPolicy::default()).await.unwrap(),
        ResolveOutcome::Pending {
            next_attempt: now + 10 * MIN
        }
    );
    assert_eq!(
        s.describe(id).await.unwrap().aux_data,
        Some(json!({"b": 2}))
    );
    // A restart of a task cancelled meanwhile is skipped: the cancellation stands.
    let run = claim_one(s).await;
    s.cancel(id, "operator").await.unwrap();
    let r = Resolution::Restart {
        at: 0,
        new_data: None,
        new_aux_data: None,
    };
    assert!(matches!(
        run.resolve(r, RetryPolicy::default()).await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert_eq!(s.describe(id).await.unwrap().state, TaskState::Cancelled);
}

async fn permanent_failure_and_cancellation_resolutions(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let a = s.schedule(task(json!({}))).await.unwrap();
    let c = s.schedule(task(json!({}))).await.unwrap();
    let run = claim_one(s).await;
    let r = Resolution::PermanentFailure {
        error: "bad address".into(),
        result: Some(json!({"code": 550}).to_string()),
    };
    assert_eq!(
        run.resolve(r, RetryPolicy::default()).await.unwrap(),
        ResolveOutcome::Failed
    );
    let run = claim_one(s).await;
    let r = Resolution::Cancellation {
        error: "not needed".into(),
    };
    assert_eq!(
        run.resolve(r, RetryPolicy::default()).await.unwrap(),
        ResolveOutcome::Cancelled
    );
    let ta = s.describe(a).await.unwrap();
    assert_eq!(
        (ta.state, ta.last_error.as_deref(), ta.result),
        (
            TaskState::Failed,
            Some("bad address"),
            Some(json!({"code": 550}))
        )
    );
    let tc = s.describe(c).await.unwrap();
    assert_eq!(
        (tc.state, tc.last_error.as_deref()),
        (TaskState::Cancelled, Some("not needed"))
    );
    // Finished tasks are never claimed again.
    db.clock.advance(100 * 24 * 60 * MIN);
    assert!(s
        .claim("n", &clusters(), 10, LEASE)
        .await
        .unwrap()
        .is_empty());
}

async fn malformed_result_json_becomes_a_temporary_failure(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let id = s.schedule(task(json!({}))).await.unwrap();
    let run = claim_one(s).await;
    let r = Resolution::Completion {
        result: "{not json".into(),
    };
    assert!(matches!(
        run.resolve(r, RetryPolicy::default()).await.unwrap(),
        ResolveOutcome::Pending { .. }
    ));
    let t = s.describe(id).await.unwrap();
    assert_eq!(t.state, TaskState::Pending);
    assert!(t.last_error.unwrap().starts_with(&format!(
        "task {id}: the resolution's result is not valid JSON"
    )));
}

async fn cancel_pending_running_and_finished(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let pending = s
        .schedule(task_with(
            json!({}),
            ScheduleOptions {
                not_before: Some(T0 + MIN),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let running = s.schedule(task(json!({}))).await.unwrap();
    assert_eq!(
        s.cancel(pending, "not wanted").await.unwrap(),
        TaskState::Pending
    );
    let run = claim_one(s).await;
    assert_eq!(run.claimed().task.id, running);
    assert_eq!(
        s.cancel(running, "stop it").await.unwrap(),
        TaskState::Running
    );
    // The runner's lease is void: it can neither renew nor complete.
    assert!(!s
        .renew_lease(running, run.claimed().token, "node-a", LEASE)
        .await
        .unwrap());
    assert!(matches!(
        run.resolve(complete(json!(1)), RetryPolicy::default())
            .await,
        Err(StoreError::LeaseLost { .. })
    ));
    let t = s.describe(running).await.unwrap();
    assert_eq!(
        (t.state, t.last_error.as_deref(), t.finished_at),
        (TaskState::Cancelled, Some("stop it"), Some(T0))
    );
    let err = s.cancel(running, "again").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("task {running} is cancelled: cannot cancel it (it has finished)")
    );
    db.clock.advance(2 * MIN);
    assert!(s
        .claim("n", &clusters(), 10, LEASE)
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        s.cancel(12345, "x").await,
        Err(StoreError::NotFound(12345))
    ));
}

async fn retry_now_delete_duplicate_and_prune(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    // Retry now pulls a waiting retry forward.
    let id = s
        .schedule(task_with(
            json!({"x": 1}),
            ScheduleOptions {
                metadata: vec![("k".into(), "v".into())],
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    fail_once(&db, RetryPolicy::default()).await;
    assert_eq!(s.retry_now(id).await.unwrap(), s.now());
    assert_eq!(
        s.claim("n", &clusters(), 1, LEASE).await.unwrap()[0]
            .task
            .id,
        id
    );
    // ... but not past not-before.
    let nb = s
        .schedule(task_with(
            json!({}),
            ScheduleOptions {
                not_before: Some(T0 + 60 * MIN),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    assert_eq!(s.retry_now(nb).await.unwrap(), T0 + 60 * MIN);
    // Running tasks cannot be retried or deleted.
    assert!(matches!(
        s.retry_now(id).await,
        Err(StoreError::WrongState {
            state: TaskState::Running,
            ..
        })
    ));
    assert!(matches!(
        s.delete(id).await,
        Err(StoreError::WrongState {
            state: TaskState::Running,
            ..
        })
    ));
    // A failed task can be retried with a fresh failure count.
    s.record_failure(
        id,
        2,
        "fatal",
        None,
        None,
        RetryPolicy {
            max_failures: 0,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(s.describe(id).await.unwrap().state, TaskState::Failed);
    s.retry_now(id).await.unwrap();
    let t = s.describe(id).await.unwrap();
    assert_eq!(
        (t.state, t.failures, t.finished_at),
        (TaskState::Pending, 0, None)
    );
    assert!(matches!(
        s.duplicate(id).await,
        Err(StoreError::WrongState { .. })
    ));
    // Complete it, duplicate it, prune it.
    let run = claim_one(s).await;
    run.resolve(complete(json!("ok")), RetryPolicy::default())
        .await
        .unwrap();
    assert!(matches!(
        s.retry_now(id).await,
        Err(StoreError::WrongState {
            state: TaskState::Completed,
            ..
        })
    ));
    let copy = s.duplicate(id).await.unwrap();
    let c = s.describe(copy).await.unwrap();
    assert_eq!(
        (c.state, c.data.clone(), c.metadata.clone()),
        (
            TaskState::Pending,
            json!({"x": 1}),
            vec![("k".to_string(), "v".to_string())]
        )
    );
    db.clock.advance(3 * 24 * 60 * MIN - 1);
    assert_eq!(
        s.prune_finished(warren::store::DEFAULT_RETENTION_MS)
            .await
            .unwrap(),
        0
    );
    db.clock.advance(2);
    assert_eq!(
        s.prune_finished(warren::store::DEFAULT_RETENTION_MS)
            .await
            .unwrap(),
        1
    );
    assert!(matches!(s.describe(id).await, Err(StoreError::NotFound(_))));
    assert_eq!(
        count(
            s,
            &format!("SELECT COUNT(*) AS n FROM warren_task_metadata WHERE task_id = {id}")
        )
        .await,
        0
    );
    s.delete(nb).await.unwrap();
    assert!(matches!(s.delete(nb).await, Err(StoreError::NotFound(_))));
    assert!(s.describe(copy).await.is_ok());
}

/// Delete against a claim committed after the delete began: it refuses, and the task
/// keeps its metadata. The claim is written in a transaction that commits only once the
/// delete waits for its row (PostgreSQL); on SQLite the delete waits for the write lock
/// before it reads anything, so it sees the claim either way.
async fn delete_refuses_a_task_claimed_meanwhile_and_keeps_its_metadata(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let id = s
        .schedule(task_with(
            json!({}),
            ScheduleOptions {
                metadata: vec![("Origin".into(), "test".into())],
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let mut claimer = s.connection().await.unwrap();
    claimer.begin().await.unwrap();
    exec(
        &mut claimer.as_any(),
        &format!(
            "UPDATE warren_tasks SET state = 'running', lease_owner = 'node-b', \
             lease_until = {}, lease_token = lease_token + 1, started_at = {} WHERE id = {id}",
            s.now() + LEASE,
            s.now()
        ),
    )
    .await;
    let deleting = tokio::spawn({
        let s = s.clone();
        async move { s.delete(id).await }
    });
    until_a_statement_waits_for_a_lock(b, s).await;
    claimer.commit().await.unwrap();
    let refused = deleting.await.unwrap();
    assert!(
        matches!(
            refused,
            Err(StoreError::WrongState {
                state: TaskState::Running,
                ..
            })
        ),
        "{refused:?}"
    );
    let t = s.describe(id).await.unwrap();
    assert_eq!(t.state, TaskState::Running);
    assert_eq!(t.metadata, vec![("Origin".to_string(), "test".to_string())]);
    // Cancelled, it can be deleted, metadata and all.
    s.cancel(id, "stop").await.unwrap();
    s.delete(id).await.unwrap();
    assert!(matches!(s.describe(id).await, Err(StoreError::NotFound(_))));
    assert_eq!(
        count(
            s,
            &format!("SELECT COUNT(*) AS n FROM warren_task_metadata WHERE task_id = {id}")
        )
        .await,
        0
    );
}

/// Returns once a statement of this test's database waits for a lock another
/// transaction holds (PostgreSQL). SQLite's writers wait for the write lock inside
/// SQLite, where nothing shows it; the tests that call this do not depend on it there.
async fn until_a_statement_waits_for_a_lock(b: Backend, s: &Store) {
    if b != Backend::Postgres {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(
        s,
        "SELECT COUNT(*) AS n FROM pg_stat_activity \
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .await
        == 0
    {
        assert!(Instant::now() < deadline, "no statement waits for a lock");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn reschedule_moves_the_next_attempt_and_requeues_finished_tasks(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    // A pending task moves to the given instant, later or earlier.
    let id = s.schedule(task(json!({}))).await.unwrap();
    assert_eq!(
        s.reschedule(id, T0 + 10 * MIN).await.unwrap(),
        T0 + 10 * MIN
    );
    assert_eq!(s.describe(id).await.unwrap().next_attempt, T0 + 10 * MIN);
    assert!(s
        .claim("n", &clusters(), 1, LEASE)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(s.reschedule(id, T0 - MIN).await.unwrap(), T0 - MIN);
    // Never before its not-before time.
    let nb = s
        .schedule(task_with(
            json!({}),
            ScheduleOptions {
                not_before: Some(T0 + 60 * MIN),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    assert_eq!(s.reschedule(nb, T0 + MIN).await.unwrap(), T0 + 60 * MIN);
    // A running task is refused and left alone.
    let run = claim_one(s).await;
    assert_eq!(run.claimed().task.id, id);
    let err = s.reschedule(id, T0 + MIN).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::WrongState {
                state: TaskState::Running,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("cannot reschedule it"), "{err}");
    let before = s.describe(id).await.unwrap();
    assert_eq!(before.state, TaskState::Running);
    // A cancelled task is queued again with a fresh failure count.
    drop(run);
    s.cancel(id, "stop").await.unwrap();
    assert_eq!(s.reschedule(id, T0 + 5 * MIN).await.unwrap(), T0 + 5 * MIN);
    let t = s.describe(id).await.unwrap();
    assert_eq!(
        (t.state, t.next_attempt, t.finished_at, t.failures),
        (TaskState::Pending, T0 + 5 * MIN, None, 0)
    );
    // A completed task is refused; an unknown one is not found.
    let done = s.schedule(task(json!({}))).await.unwrap();
    s.reschedule(done, T0 - 2 * MIN).await.unwrap();
    let run = claim_one(s).await;
    assert_eq!(run.claimed().task.id, done);
    run.resolve(complete(json!(1)), RetryPolicy::default())
        .await
        .unwrap();
    assert!(matches!(
        s.reschedule(done, T0).await,
        Err(StoreError::WrongState {
            state: TaskState::Completed,
            ..
        })
    ));
    assert!(matches!(
        s.reschedule(999_999, T0).await,
        Err(StoreError::NotFound(999_999))
    ));
}

async fn throughput_counts_finished_tasks_per_bucket_and_outcome(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    // Minute 0: two completions; minute 2: a failure and a cancellation; a task still
    // pending is not counted.
    for _ in 0..2 {
        s.schedule(task(json!({}))).await.unwrap();
        let run = claim_one(s).await;
        run.resolve(complete(json!(1)), RetryPolicy::default())
            .await
            .unwrap();
    }
    db.clock.advance(2 * MIN + 30_000);
    s.schedule(task(json!({}))).await.unwrap();
    let run = claim_one(s).await;
    run.resolve(
        Resolution::PermanentFailure {
            error: "no".into(),
            result: None,
        },
        RetryPolicy::default(),
    )
    .await
    .unwrap();
    let cancelled = s.schedule(task(json!({}))).await.unwrap();
    s.cancel(cancelled, "stop").await.unwrap();
    s.schedule(task(json!({}))).await.unwrap();

    let points = s.throughput(T0, T0 + 4 * MIN, MIN).await.unwrap();
    let counts: Vec<(i64, i64, i64, i64)> = points
        .iter()
        .map(|p| (p.at, p.completed, p.failed, p.cancelled))
        .collect();
    assert_eq!(
        counts,
        vec![
            (T0, 2, 0, 0),
            (T0 + MIN, 0, 0, 0),
            (T0 + 2 * MIN, 0, 1, 1),
            (T0 + 3 * MIN, 0, 0, 0),
        ]
    );
    // The range's ends: `until` is exclusive, and a partial last bucket is kept.
    let points = s
        .throughput(T0 + MIN, T0 + 2 * MIN + 31_000, MIN)
        .await
        .unwrap();
    assert_eq!(points.len(), 2);
    assert_eq!((points[1].failed, points[1].cancelled), (1, 1));
    assert!(s.throughput(T0, T0, MIN).await.unwrap().is_empty());
    assert!(matches!(
        s.throughput(T0, T0 + MIN, 0).await,
        Err(StoreError::Invalid {
            field: "bucket_ms",
            ..
        })
    ));
}

async fn list_filters_paging_and_counts(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let mail: TaskType = "mail:send".parse().unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            s.schedule(NewTask::new(mail.clone(), json!({"i": i})))
                .await
                .unwrap(),
        );
        db.clock.advance(1000);
    }
    let later = s
        .schedule(task_with(
            json!({}),
            ScheduleOptions {
                not_before: Some(T0 + 60 * MIN),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let run = claim_one(s).await; // the oldest mail task
    run.resolve(complete(json!(true)), RetryPolicy::default())
        .await
        .unwrap();
    let running = s.claim("n", &clusters(), 1, LEASE).await.unwrap()[0]
        .task
        .id;

    let list = |f: TaskFilter| async move {
        s.list(&f)
            .await
            .unwrap()
            .iter()
            .map(|t| t.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        list(TaskFilter::default()).await,
        vec![later, ids[4], ids[3], ids[2], ids[1], ids[0]]
    );
    assert_eq!(
        list(TaskFilter {
            type_mask: Some("MAIL:*".into()),
            state: StateFilter::Pending,
            ..Default::default()
        })
        .await,
        vec![ids[4], ids[3], ids[2]]
    );
    assert_eq!(
        list(TaskFilter {
            type_mask: Some("*:ping".into()),
            ..Default::default()
        })
        .await,
        vec![later]
    );
    assert_eq!(
        list(TaskFilter {
            type_mask: Some("mail_send".into()),
            ..Default::default()
        })
        .await,
        Vec::<i64>::new()
    );
    assert_eq!(
        list(TaskFilter {
            state: StateFilter::Future,
            ..Default::default()
        })
        .await,
        vec![later]
    );
    assert_eq!(
        list(TaskFilter {
            state: StateFilter::Running,
            ..Default::default()
        })
        .await,
        vec![running]
    );
    assert_eq!(
        list(TaskFilter {
            state: StateFilter::Completed,
            ..Default::default()
        })
        .await,
        vec![ids[0]]
    );
    assert_eq!(
        list(TaskFilter {
            state: StateFilter::Unfinished,
            limit: 2,
            ..Default::default()
        })
        .await,
        vec![later, ids[4]]
    );
    assert_eq!(
        list(TaskFilter {
            before_id: Some(ids[3]),
            limit: 2,
            ..Default::default()
        })
        .await,
        vec![ids[2], ids[1]]
    );
    assert_eq!(
        list(TaskFilter {
            created_from: Some(T0 + 1000),
            created_until: Some(T0 + 3000),
            ..Default::default()
        })
        .await,
        vec![ids[2], ids[1]]
    );

    let counts = s.queue_counts().await.unwrap();
    assert_eq!(counts.len(), 2);
    let m = &counts.iter().find(|c| c.task_type == "mail:send").unwrap();
    assert_eq!((m.pending, m.running, m.completed, m.future), (3, 1, 1, 0));
    let p = &counts.iter().find(|c| c.task_type == "demo:ping").unwrap();
    assert_eq!((p.pending, p.future), (0, 1));
}

async fn metadata_is_case_insensitive(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let id = s
        .schedule(task_with(
            json!({}),
            ScheduleOptions {
                metadata: vec![("Key".into(), "1".into()), ("KEY".into(), "2".into())],
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    assert_eq!(s.metadata(id, "key").await.unwrap().as_deref(), Some("2"));
    s.set_metadata(id, "kEy", "3").await.unwrap();
    assert_eq!(
        s.describe(id).await.unwrap().metadata,
        vec![("kEy".to_string(), "3".to_string())]
    );
    let mut run = claim_one(s).await;
    run.set_metadata("progress", "50%").await.unwrap();
    assert_eq!(
        run.metadata("PROGRESS").await.unwrap().as_deref(),
        Some("50%")
    );
    run.resolve(temporary("x"), RetryPolicy::default())
        .await
        .unwrap();
    assert_eq!(
        s.metadata(id, "progress").await.unwrap(),
        None,
        "metadata set in a failed run rolls back"
    );
    assert!(matches!(
        s.set_metadata(4242, "a", "b").await,
        Err(StoreError::NotFound(4242))
    ));
}

async fn wait_returns_promptly_after_the_commit(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = db.store.clone();
    let id = s.schedule(task(json!({}))).await.unwrap();
    let run = claim_one(&s).await;
    let waiter = {
        let s = s.clone();
        tokio::spawn(async move { s.wait(id, Duration::from_secs(30), WaitFor::Finished).await })
    };
    // Let the waiter subscribe and make its first check: it must still be waiting.
    tokio::task::yield_now().await;
    assert!(!waiter.is_finished());
    let committed = Instant::now();
    run.resolve(complete(json!({"pong": 1})), RetryPolicy::default())
        .await
        .unwrap();
    let outcome = waiter.await.unwrap().unwrap();
    let took = committed.elapsed();
    assert_eq!(outcome.state, TaskState::Completed);
    assert_eq!(outcome.result, Some(json!({"pong": 1})));
    // Woken by the commit's notification, well inside SQLite's 1 s safety re-check
    // (PostgreSQL waiters have no re-check at all).
    assert!(
        took < Duration::from_millis(500),
        "wait returned {took:?} after the commit"
    );
    // A finished task answers at once.
    let again = s
        .wait(id, Duration::from_millis(1), WaitFor::Finished)
        .await
        .unwrap();
    assert_eq!(again.state, TaskState::Completed);
}

async fn wait_times_out_and_accepts_temporary_failures(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = db.store.clone();
    let id = s.schedule(task(json!({}))).await.unwrap();
    let err = s
        .wait(id, Duration::from_millis(50), WaitFor::Finished)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::WaitTimeout { id: i, .. } if i == id));
    let waiter = {
        let s = s.clone();
        tokio::spawn(async move {
            s.wait(id, Duration::from_secs(30), WaitFor::AnyOutcome)
                .await
        })
    };
    claim_one(&s)
        .await
        .resolve(temporary("flaky"), RetryPolicy::default())
        .await
        .unwrap();
    let outcome = waiter.await.unwrap().unwrap();
    assert_eq!(
        (outcome.state, outcome.error.as_deref(), outcome.failures),
        (TaskState::Pending, Some("flaky"), 1)
    );
    assert!(matches!(
        s.wait(777, Duration::from_millis(10), WaitFor::Finished)
            .await,
        Err(StoreError::NotFound(777))
    ));
}

fn spec(tag: &str, mask: Option<&str>) -> warren::store::ScheduledSpec {
    warren::store::ScheduledSpec {
        tag: tag.into(),
        mask: mask.map(|m| m.parse().unwrap()),
        zone: warren::cron::ZoneSpec::Utc,
    }
}

async fn scheduled_ticks_run_once_across_nodes(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let nodes = [
        db.store.clone(),
        db.another_node().await,
        db.another_node().await,
    ];
    let tags = vec!["demo:every5".to_string()];
    for n in &nodes {
        n.sync_scheduled(&[spec("demo:every5", Some("*/5 * * * *"))], 0)
            .await
            .unwrap();
    }
    let st = &db.store.list_scheduled().await.unwrap()[0];
    assert_eq!(st.next_run, Some(T0 + 5 * MIN));
    let mut runs = 0;
    for tick in 1..=6 {
        db.clock.set(T0 + tick * 5 * MIN);
        let claims = futures_claims(&nodes, &tags).await;
        assert_eq!(claims.len(), 1, "tick {tick} ran {} times", claims.len());
        let (node, run) = &claims[0];
        assert!(nodes[*node]
            .finish_scheduled(&run.tag, run.token, "completed", "ok")
            .await
            .unwrap());
        runs += 1;
    }
    assert_eq!(runs, 6);
    assert_eq!(
        nodes[0].next_scheduled_wakeup(&tags).await.unwrap(),
        Some(T0 + 35 * MIN)
    );
}

/// Every node tries to claim at the same moment; returns (node index, run) for each win.
async fn futures_claims(
    nodes: &[Store],
    tags: &[String],
) -> Vec<(usize, warren::store::ScheduledRun)> {
    let mut handles = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let (n, tags) = (n.clone(), tags.to_vec());
        handles.push(tokio::spawn(async move {
            n.claim_due_scheduled(&format!("node-{i}"), &tags, 60 * MIN, 0)
                .await
                .unwrap()
        }));
    }
    let mut won = Vec::new();
    for (i, h) in handles.into_iter().enumerate() {
        won.extend(h.await.unwrap().into_iter().map(|r| (i, r)));
    }
    won
}

async fn scheduled_runs_never_overlap_and_missed_ticks_coalesce(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let tags = vec!["demo:minutely".to_string()];
    s.sync_scheduled(&[spec("demo:minutely", Some("* * * * *"))], 0)
        .await
        .unwrap();
    db.clock.set(T0 + MIN);
    let run = s
        .claim_due_scheduled("a", &tags, 10 * MIN, 0)
        .await
        .unwrap()
        .remove(0);
    assert!(!run.requested);
    // Three ticks pass while it runs: none starts.
    for _ in 0..3 {
        db.clock.advance(MIN);
        assert!(s
            .claim_due_scheduled("b", &tags, 10 * MIN, 0)
            .await
            .unwrap()
            .is_empty());
    }
    assert!(s
        .finish_scheduled(&run.tag, run.token, "completed", "done")
        .await
        .unwrap());
    // The missed ticks run once, right after.
    assert_eq!(
        s.claim_due_scheduled("b", &tags, 10 * MIN, 0)
            .await
            .unwrap()
            .len(),
        1
    );
    let st = s.list_scheduled().await.unwrap().remove(0);
    assert_eq!(st.next_run, Some(T0 + 5 * MIN));
    assert_eq!(st.last_outcome.as_deref(), Some("completed"));
    assert!(st.running);
    // The node running it dies; once its claim expires the tag runs again, and a week
    // of ticks missed while everything was down is one run.
    db.clock.advance(7 * 24 * 60 * MIN);
    let runs = s
        .claim_due_scheduled("c", &tags, 10 * MIN, 0)
        .await
        .unwrap();
    assert_eq!(runs.len(), 1);
    assert!(s
        .claim_due_scheduled("c", &tags, 10 * MIN, 0)
        .await
        .unwrap()
        .is_empty());
    // The dead node's late finish is refused.
    assert!(!s
        .finish_scheduled(&run.tag, run.token + 1, "completed", "late")
        .await
        .unwrap());
    assert!(s
        .finish_scheduled(&runs[0].tag, runs[0].token, "failed", "boom")
        .await
        .unwrap());
}

async fn scheduled_run_now_and_enable(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let tags = vec!["demo:manual".to_string(), "demo:daily".to_string()];
    s.sync_scheduled(
        &[
            spec("demo:manual", None),
            spec("demo:daily", Some("0 3 * * *")),
        ],
        0,
    )
    .await
    .unwrap();
    assert!(s
        .claim_due_scheduled("a", &tags, MIN, 0)
        .await
        .unwrap()
        .is_empty());
    s.request_scheduled_run("demo:manual").await.unwrap();
    assert_eq!(s.next_scheduled_wakeup(&tags).await.unwrap(), Some(T0));
    let runs = s.claim_due_scheduled("a", &tags, MIN, 0).await.unwrap();
    assert_eq!(
        (runs.len(), runs[0].tag.as_str(), runs[0].requested),
        (1, "demo:manual", true)
    );
    assert!(matches!(
        s.request_scheduled_run("demo:nope").await,
        Err(StoreError::UnknownScheduled(_))
    ));
    // Disabled: the mask no longer fires, but run-now still works.
    s.set_scheduled_enabled("demo:daily", false, 0)
        .await
        .unwrap();
    db.clock.set(T0 + 2 * 24 * 60 * MIN);
    assert!(s
        .claim_due_scheduled("a", &tags, MIN, 0)
        .await
        .unwrap()
        .is_empty());
    // Re-enabled: the next run is computed from now, nothing is made up.
    s.set_scheduled_enabled("demo:daily", true, 0)
        .await
        .unwrap();
    assert!(s
        .claim_due_scheduled("a", &tags, MIN, 0)
        .await
        .unwrap()
        .is_empty());
    let daily = s
        .list_scheduled()
        .await
        .unwrap()
        .into_iter()
        .find(|x| x.tag == "demo:daily")
        .unwrap();
    assert_eq!(daily.next_run, Some(T0 + 2 * 24 * 60 * MIN + 3 * 60 * MIN));
    // A changed mask moves the next run.
    s.sync_scheduled(&[spec("demo:daily", Some("30 1 * * *"))], 0)
        .await
        .unwrap();
    let daily = s
        .list_scheduled()
        .await
        .unwrap()
        .into_iter()
        .find(|x| x.tag == "demo:daily")
        .unwrap();
    assert_eq!(
        (daily.mask.as_deref(), daily.next_run),
        (Some("30 1 * * *"), Some(T0 + 2 * 24 * 60 * MIN + 90 * MIN))
    );
}

async fn nodes_heartbeat_and_settings(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    s.register_node("alpha", &json!({"pid": 1})).await.unwrap();
    db.clock.advance(MIN);
    s.register_node("beta", &json!({"pid": 2})).await.unwrap();
    assert!(s.heartbeat("beta").await.unwrap());
    assert!(!s.heartbeat("gamma").await.unwrap());
    let nodes = s.list_nodes().await.unwrap();
    assert_eq!(
        nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
        vec!["alpha", "beta"]
    );
    assert_eq!(nodes[1].info, json!({"pid": 2}));
    assert_eq!(
        s.prune_nodes(MIN / 2).await.unwrap(),
        vec!["alpha".to_string()]
    );
    s.remove_node("beta").await.unwrap();
    assert!(s.list_nodes().await.unwrap().is_empty());
    // The maintenance offset: a valid setting wins; otherwise one random value is
    // chosen once and every node sees it.
    assert_eq!(s.maintenance_offset(Some("90")).await.unwrap(), 90);
    let first = s.maintenance_offset(None).await.unwrap();
    assert!(first < 1440);
    let other = db.another_node().await;
    assert_eq!(other.maintenance_offset(Some("1440")).await.unwrap(), first);
    assert_eq!(other.maintenance_offset(Some("-5")).await.unwrap(), first);
}

async fn nodes_publish_their_runners(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    s.register_node("alpha", &json!({"pid": 1})).await.unwrap();
    assert_eq!(s.list_nodes().await.unwrap()[0].runners, json!([]));
    let runners = json!([{"cluster": "default", "index": 0, "task_id": 7}]);
    assert!(s.set_node_runners("alpha", &runners).await.unwrap());
    assert!(!s.set_node_runners("gamma", &runners).await.unwrap());
    let other = db.another_node().await;
    assert_eq!(other.list_nodes().await.unwrap()[0].runners, runners);
    // Starting again forgets the runners of the previous start.
    s.register_node("alpha", &json!({"pid": 2})).await.unwrap();
    assert_eq!(s.list_nodes().await.unwrap()[0].runners, json!([]));
}

async fn task_type_checks_see_registrations_and_live_nodes(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let mail: TaskType = "demo:mail".parse().unwrap();
    // Nothing registered, no node: the default cluster, unserved.
    let check = s.check_task_type(&mail, None).await.unwrap();
    assert!(!check.is_registered());
    assert_eq!((check.cluster.as_str(), check.served), ("default", false));
    assert_eq!(check.warnings().len(), 1);
    assert!(check.warnings()[0].contains("cluster 'default'"));
    // Registered by a node started after this store opened: seen.
    let other = db.another_node().await;
    other
        .register_task_types(&[("demo:mail".into(), "mail".into())])
        .await
        .unwrap();
    let check = s.check_task_type(&mail, None).await.unwrap();
    assert_eq!(check.registered_cluster.as_deref(), Some("mail"));
    assert_eq!((check.cluster.as_str(), check.served), ("mail", false));
    // A live node serving the cluster; an explicit cluster wins over the registered one.
    other
        .register_node("mailer", &json!({"clusters": {"default": 1, "mail": 2}}))
        .await
        .unwrap();
    let check = s.check_task_type(&mail, None).await.unwrap();
    assert!(check.served && check.warnings().is_empty());
    let check = s.check_task_type(&mail, Some("parked")).await.unwrap();
    assert_eq!((check.cluster.as_str(), check.served), ("parked", false));
    // Silent for longer than the liveness window: no longer live.
    db.clock.advance(warren::store::NODE_LIVENESS_MS);
    assert!(s.cluster_is_served("mail").await.unwrap());
    db.clock.advance(1);
    assert!(!s.cluster_is_served("mail").await.unwrap());
    assert!(other.heartbeat("mailer").await.unwrap());
    assert!(s.cluster_is_served("mail").await.unwrap());
}

async fn task_sql_binds_parameters_and_returns_json_rows(b: Backend) {
    use warren::store::dynamic::{execute, parse_params, query_json};
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let mut conn = s.connection().await.unwrap();
    exec(
        &mut conn.as_any(),
        "CREATE TABLE notes (id BIGINT, body TEXT, score REAL)",
    )
    .await;
    conn.begin().await.unwrap();
    let p = |json: &str| parse_params(json).unwrap();
    let insert = "INSERT INTO notes (id, body, score) VALUES ($1, $2, $3);";
    let hostile = "'); DROP TABLE notes; --";
    assert_eq!(
        execute(
            &mut conn.as_any(),
            insert,
            p(&format!("[1, {}, 1.5]", json!(hostile)))
        )
        .await
        .unwrap(),
        1
    );
    assert_eq!(
        execute(
            &mut conn.as_any(),
            insert,
            p(r#"[2, {"tags": ["a"]}, null]"#)
        )
        .await
        .unwrap(),
        1
    );
    // Placeholders may appear in any order; '$1' inside a string literal is text.
    let sql = "SELECT id, body, score, 'costs $1' AS note FROM notes WHERE id >= $2 AND id <= $1 ORDER BY id";
    let rows: serde_json::Value = serde_json::from_str(
        &query_json(&mut conn.as_any(), sql, p("[2, 1]"))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        rows,
        json!([
            {"id": 1, "body": hostile, "score": 1.5, "note": "costs $1"},
            {"id": 2, "body": "{\"tags\":[\"a\"]}", "score": null, "note": "costs $1"},
        ])
    );
    let none = query_json(
        &mut conn.as_any(),
        "SELECT id FROM notes WHERE id > $1",
        p("[5]"),
    )
    .await
    .unwrap();
    assert_eq!(none, "[]");
    assert_eq!(
        execute(
            &mut conn.as_any(),
            "UPDATE notes SET score = $1",
            p("[2.0]")
        )
        .await
        .unwrap(),
        2
    );
    // Bad input names what is wrong and changes nothing.
    assert_eq!(
        parse_params("{").unwrap_err().to_string().split(':').next(),
        Some("invalid SQL parameters")
    );
    assert!(parse_params(r#"{"a": 1}"#)
        .unwrap_err()
        .to_string()
        .contains("must be a JSON array"));
    assert!(parse_params("").unwrap().is_empty() && parse_params("null").unwrap().is_empty());
    assert!(execute(
        &mut conn.as_any(),
        "INSERT INTO nowhere VALUES ($1)",
        p("[1]")
    )
    .await
    .is_err());
    assert!(execute(&mut conn.as_any(), " ; ", vec![]).await.is_err());
    // After a failed statement the transaction goes on (a savepoint on PostgreSQL).
    assert_eq!(
        execute(
            &mut conn.as_any(),
            "DELETE FROM notes WHERE id = $1",
            p("[2]")
        )
        .await
        .unwrap(),
        1
    );
    conn.commit().await.unwrap();
    assert_eq!(count(s, "SELECT COUNT(*) AS n FROM notes").await, 1);
}
