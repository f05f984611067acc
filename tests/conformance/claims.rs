//! Claims, leases and fencing tokens: order, clusters, concurrency, releases, recovery of expired leases.

use crate::support::conformance::*;
use warren::store::PauseTarget;

crate::conformance!(
    claims_follow_priority_then_next_attempt_then_id,
    claims_respect_not_before_and_clusters,
    a_claim_over_several_clusters_takes_each_once_in_queue_order,
    tasks_without_a_cluster_get_their_types_registered_cluster,
    released_claims_are_pending_again_without_a_failure,
    concurrent_claimers_never_share_a_task,
    stale_fencing_token_cannot_resolve,
    completions_finishing_together_each_commit_and_stale_ones_are_refused,
    a_queued_completion_commits_without_its_caller_and_only_quiet_completions_queue,
    expired_lease_is_recovered_and_claimed_again,
    a_lease_renewed_after_recovery_read_it_keeps_its_task,
    the_next_due_attempt_is_the_earliest_over_every_priority_of_the_clusters_asked,
);

/// `next_due` finds the earliest next attempt whatever the priority it sits at (the
/// index is ordered by priority first), only among pending tasks without a concurrency
/// key, and only in the clusters asked.
async fn the_next_due_attempt_is_the_earliest_over_every_priority_of_the_clusters_asked(
    b: Backend,
) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let now = warren::clock::Clock::now(&*db.clock);
    let at = |p: Priority, not_before: i64, cluster: &str| ScheduleOptions {
        priority: Some(p),
        not_before: Some(not_before),
        cluster: Some(cluster.to_string()),
        ..Default::default()
    };
    assert_eq!(
        s.next_due(&clusters()).await.unwrap(),
        None,
        "nothing pending"
    );
    // Due now, then claimed: a running task is not waited for.
    s.schedule(task_with(
        json!({"n": "claimed"}),
        at(Priority::BACKGROUND, now, "default"),
    ))
    .await
    .unwrap();
    assert_eq!(s.claim("n", &clusters(), 1, LEASE).await.unwrap().len(), 1);
    for (n, p, offset) in [
        ("urgent-late", Priority::UPDATE_INTERACTIVE, 9_000),
        ("normal", Priority::NORMAL, 5_000),
        ("background-early", Priority::BACKGROUND, 3_000),
        ("background-late", Priority::BACKGROUND, 7_000),
        ("interactive", Priority::INTERACTIVE, 4_000),
    ] {
        s.schedule(task_with(json!({ "n": n }), at(p, now + offset, "default")))
            .await
            .unwrap();
    }
    s.schedule(task_with(
        json!({"n": "elsewhere"}),
        at(Priority::NORMAL, now + 1_000, "other"),
    ))
    .await
    .unwrap();
    assert_eq!(s.next_due(&clusters()).await.unwrap(), Some(now + 3_000));
    assert_eq!(
        s.next_due(&["other".to_string()]).await.unwrap(),
        Some(now + 1_000)
    );
    assert_eq!(
        s.next_due(&["default".to_string(), "other".to_string()])
            .await
            .unwrap(),
        Some(now + 1_000)
    );
    assert_eq!(s.next_due(&["none".to_string()]).await.unwrap(), None);
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
    let order: Vec<TaskId> = s
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
    s.register_task_types(&[TypeRegistration::new("demo:mail", "mailers")])
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
    s.register_task_types(&[TypeRegistration::new("demo:mail", "bulk")])
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
        s.release_claims(&[(first.0, LeaseToken(first.1 .0 + 7))])
            .await
            .unwrap(),
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
    assert_eq!(got[0].token, LeaseToken(1));
    db.clock.advance(MIN);
    let got = s.claim("n", &clusters(), 10, LEASE).await.unwrap();
    assert_eq!(
        got.iter().map(|c| c.task.id).collect::<Vec<_>>(),
        vec![later]
    );
}

/// A claim for several clusters (the store API allows it; a node's queue claims one
/// at a time, which PostgreSQL runs as a statement of another shape: see
/// `push_cluster_names`) takes from each, in one queue order, never a task twice
/// when a cluster is named twice, and nothing of a paused cluster.
async fn a_claim_over_several_clusters_takes_each_once_in_queue_order(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    // A cluster can be paused once a node knows it.
    s.register_task_types(&[TypeRegistration::new("demo:slow", "slow")])
        .await
        .unwrap();
    let in_cluster = |cluster: &str, priority: Priority| {
        task_with(
            json!({ "cluster": cluster }),
            ScheduleOptions {
                cluster: Some(cluster.into()),
                priority: Some(priority),
                ..Default::default()
            },
        )
    };
    let mail_low = s
        .schedule(in_cluster("mail", Priority::BACKGROUND))
        .await
        .unwrap();
    let default_normal = s
        .schedule(in_cluster("default", Priority::NORMAL))
        .await
        .unwrap();
    let mail_urgent = s
        .schedule(in_cluster("mail", Priority::UPDATE_INTERACTIVE))
        .await
        .unwrap();
    let slow = s
        .schedule(in_cluster("slow", Priority::UPDATE_INTERACTIVE))
        .await
        .unwrap();
    s.pause(&PauseTarget::Cluster("slow".into())).await.unwrap();

    let names: Vec<String> = ["mail", "default", "mail", "slow"]
        .iter()
        .map(|n| n.to_string())
        .collect();
    // A repeated name must not make a task count twice against the limit.
    let got = s.claim("n", &names, 2, LEASE).await.unwrap();
    assert_eq!(
        got.iter().map(|c| c.task.id).collect::<Vec<_>>(),
        vec![mail_urgent, default_normal],
        "both clusters, each task once, in queue order, nothing of the paused one"
    );
    let got = s.claim("n", &names, 10, LEASE).await.unwrap();
    assert_eq!(
        got.iter().map(|c| c.task.id).collect::<Vec<_>>(),
        vec![mail_low]
    );
    assert_eq!(got[0].token, LeaseToken(1));
    // The limit applies to the claim as a whole.
    s.resume(&PauseTarget::Cluster("slow".into()))
        .await
        .unwrap();
    let again = s
        .schedule(in_cluster("mail", Priority::NORMAL))
        .await
        .unwrap();
    let got = s.claim("n", &names, 1, LEASE).await.unwrap();
    assert_eq!(
        got.iter().map(|c| c.task.id).collect::<Vec<_>>(),
        vec![slow]
    );
    let got = s.claim("n", &names, 5, LEASE).await.unwrap();
    assert_eq!(
        got.iter().map(|c| c.task.id).collect::<Vec<_>>(),
        vec![again]
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
    assert_eq!(second.token, first.token.next());

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
        .record_failure(
            &RunFailure::new(id, first.token, "late"),
            RetryPolicy::default(),
        )
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
    stale.token = LeaseToken(stale.token.0 - 1);
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
        Backend::Postgres => assert_eq!((stats.groups, stats.items), (1, 21)),
        Backend::Sqlite => assert_eq!((stats.groups, stats.items), (0, 0)),
    }
}

async fn a_queued_completion_commits_without_its_caller_and_only_quiet_completions_queue(
    b: Backend,
) {
    let Some(db) = TestDb::with_config(b, |c| c.max_connections = 1).await else {
        return;
    };
    let s = &db.store;
    setup_effects_table(s).await;
    for i in 0..5 {
        s.schedule(task(json!({ "i": i }))).await.unwrap();
    }
    let claimed = s.claim("a", &clusters(), 5, LEASE).await.unwrap();
    let id = |n: usize| claimed[n].task.id;
    let mut runs = Vec::new();
    for c in claimed.iter().cloned() {
        runs.push(s.begin_run(c).await.unwrap());
    }
    let mut runs = runs.into_iter();
    let mut run = || runs.next().unwrap();
    let (quiet, nobody_waits, stale, mut wrote, fails) = (run(), run(), run(), run(), run());
    // The third task is cancelled before its run ends: its token is stale.
    s.cancel(id(2), "test").await.unwrap();

    // A run that did database work is not queued: it commits with its completion.
    exec(
        &mut wrote.conn().await.unwrap(),
        &format!("INSERT INTO effects VALUES ({})", id(3)),
    )
    .await;
    let Err((wrote, resolution)) = wrote.complete_queued(complete(json!({"n": 3}))) else {
        panic!("a run with database work was queued");
    };
    assert_eq!(resolution, complete(json!({"n": 3})));
    let policy = RetryPolicy::default();
    let outcome = wrote.resolve(resolution, policy).await.unwrap();
    assert_eq!(outcome, ResolveOutcome::Completed);
    assert_eq!(count(s, "SELECT COUNT(*) AS n FROM effects").await, 1);
    // Nor is another resolution.
    let failure = Resolution::PermanentFailure {
        error: "no".into(),
        result: None,
    };
    let Err((fails, resolution)) = fails.complete_queued(failure.clone()) else {
        panic!("a failure was queued");
    };
    assert_eq!(resolution, failure);
    let outcome = fails.resolve(resolution, policy).await.unwrap();
    assert_eq!(outcome, ResolveOutcome::Failed);

    // The pool's one connection, held while the quiet runs complete: nothing can be
    // written before their callers have gone on.
    let held = s.connection().await.unwrap();
    let queued = [
        quiet.complete_queued(complete(json!({"n": 0}))),
        nobody_waits.complete_queued(complete(json!({"n": 1}))),
        stale.complete_queued(complete(json!({"n": 2}))),
    ];
    drop(held);
    match b {
        Backend::Postgres => {
            let [quiet, nobody_waits, stale] = queued.map(|q| q.expect("queued"));
            drop(nobody_waits);
            assert_eq!(quiet.await.unwrap(), ResolveOutcome::Completed);
            let refused = stale.await.unwrap_err();
            assert!(
                matches!(refused, StoreError::LeaseLost { id: lost, .. } if lost == id(2)),
                "{refused}"
            );
            // A completion nobody waits for is written all the same.
            s.flush_completions().await;
        }
        Backend::Sqlite => {
            // Each completion is a write of its own: the caller resolves it as usual.
            for (n, q) in queued.into_iter().enumerate() {
                let Err((run, resolution)) = q else {
                    panic!("a completion was queued on SQLite");
                };
                assert_eq!(resolution, complete(json!({ "n": n })));
                let outcome = run.resolve(resolution, policy).await;
                assert_eq!(outcome.is_ok(), n != 2, "run {n}: {outcome:?}");
            }
        }
    }
    for n in 0..2 {
        let t = s.describe(id(n)).await.unwrap();
        assert_eq!(t.state, TaskState::Completed, "task {n}");
        assert_eq!(t.result, Some(json!({ "n": n })), "task {n}");
    }
    let t = s.describe(id(2)).await.unwrap();
    assert_eq!((t.state, t.result), (TaskState::Cancelled, None));
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
    assert_eq!(again[0].token, c.token.next());
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
