//! Operating on tasks: cancel, retry now, reschedule, delete, duplicate, prune, metadata.

use crate::support::conformance::*;

crate::conformance!(
    cancel_pending_running_and_finished,
    retry_now_delete_duplicate_and_prune,
    delete_refuses_a_task_claimed_meanwhile_and_keeps_its_metadata,
    reschedule_moves_the_next_attempt_and_requeues_finished_tasks,
    metadata_is_case_insensitive,
    pruning_goes_in_bounded_batches_oldest_first,
);

/// Pruning deletes at most the batch size per call, the longest-finished tasks first,
/// with their metadata, and leaves unfinished and recent ones alone.
async fn pruning_goes_in_bounded_batches_oldest_first(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let with_metadata = || {
        task_with(
            json!({}),
            ScheduleOptions {
                metadata: vec![("k".into(), "v".into())],
                ..Default::default()
            },
        )
    };
    let mut finished = Vec::new();
    for _ in 0..5 {
        let id = s.schedule(with_metadata()).await.unwrap();
        s.cancel(id, "done with").await.unwrap();
        finished.push(id);
        db.clock.advance(MIN);
    }
    let unfinished = s.schedule(with_metadata()).await.unwrap();
    let retention = 10 * MIN;
    // The first three finished 12, 11 and just over 10 minutes ago: past the retention.
    db.clock.advance(retention - 3 * MIN + 1);
    assert_eq!(s.prune_finished(s.now() - retention, 2).await.unwrap(), 2);
    assert!(matches!(
        s.describe(finished[0]).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.describe(finished[1]).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(s.describe(finished[2]).await.is_ok());
    assert_eq!(s.prune_finished(s.now() - retention, 2).await.unwrap(), 1);
    assert_eq!(s.prune_finished(s.now() - retention, 2).await.unwrap(), 0);
    assert!(s.describe(finished[3]).await.is_ok());
    db.clock.advance(10 * MIN);
    assert_eq!(s.prune_finished(s.now() - retention, 2).await.unwrap(), 2);
    assert_eq!(s.prune_finished(s.now() - retention, 2).await.unwrap(), 0);
    assert_eq!(
        s.describe(unfinished).await.unwrap().state,
        TaskState::Pending
    );
    assert_eq!(
        count(s, "SELECT COUNT(*) AS n FROM warren_task_metadata").await,
        1
    );
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
        s.cancel(TaskId(12345), "x").await,
        Err(StoreError::NotFound(TaskId(12345)))
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
        &RunFailure::new(id, LeaseToken(2), "fatal"),
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
        s.prune_finished(s.now() - warren::store::DEFAULT_RETENTION_MS, 10)
            .await
            .unwrap(),
        0
    );
    db.clock.advance(2);
    assert_eq!(
        s.prune_finished(s.now() - warren::store::DEFAULT_RETENTION_MS, 10)
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
        s.reschedule(TaskId(999_999), T0).await,
        Err(StoreError::NotFound(TaskId(999_999)))
    ));
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
        s.set_metadata(TaskId(4242), "a", "b").await,
        Err(StoreError::NotFound(TaskId(4242)))
    ));
}
