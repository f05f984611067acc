//! Waiting for a task's outcome.

use crate::support::conformance::*;

crate::conformance!(
    wait_returns_promptly_after_the_commit,
    wait_times_out_and_accepts_temporary_failures,
    waiters_are_woken_by_outcomes_written_with_a_runs_work,
    tasks_scheduled_for_a_waiter_are_waited_for_from_their_insert,
);

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
        s.wait(TaskId(777), Duration::from_millis(10), WaitFor::Finished)
            .await,
        Err(StoreError::NotFound(TaskId(777)))
    ));
}

/// A run with database work writes its outcome in its own transaction (not the grouped
/// completion of runs without work): a waiter hears of each kind of outcome from that
/// commit, on PostgreSQL through the `waited` flag the outcome's UPDATE returns.
async fn waiters_are_woken_by_outcomes_written_with_a_runs_work(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = db.store.clone();
    let mut conn = s.connection().await.unwrap();
    exec(
        &mut conn.as_any(),
        "CREATE TABLE effects (task_id BIGINT NOT NULL)",
    )
    .await;
    drop(conn);
    let resolutions = [
        (complete(json!({"pong": 1})), TaskState::Completed),
        (
            Resolution::PermanentFailure {
                error: "no".into(),
                result: None,
            },
            TaskState::Failed,
        ),
        (
            Resolution::Cancellation {
                error: "stop".into(),
            },
            TaskState::Cancelled,
        ),
    ];
    for (resolution, state) in resolutions {
        let id = s.schedule(task(json!({}))).await.unwrap();
        let mut run = claim_one(&s).await;
        exec(
            &mut run.conn().await.unwrap(),
            &format!("INSERT INTO effects VALUES ({id})"),
        )
        .await;
        let waiter = {
            let s = s.clone();
            tokio::spawn(
                async move { s.wait(id, Duration::from_secs(60), WaitFor::Finished).await },
            )
        };
        if b == Backend::Postgres {
            // The waiter has asked for a notification once its flag is set.
            let flagged =
                format!("SELECT COUNT(*) AS n FROM warren_tasks WHERE id = {id} AND waited");
            warren_testkit::eventually("the waiter's flag", Duration::from_secs(30), || {
                let (s, flagged) = (s.clone(), flagged.clone());
                async move { count(&s, &flagged).await == 1 }
            })
            .await;
        }
        let committed = Instant::now();
        run.resolve(resolution, RetryPolicy::default())
            .await
            .unwrap();
        let outcome = waiter.await.unwrap().unwrap();
        assert_eq!(outcome.state, state);
        // Woken by the commit, not by SQLite's 1 s re-check or the 60 s deadline.
        let took = committed.elapsed();
        assert!(
            took < Duration::from_millis(900),
            "{state}: woken {took:?} after the commit"
        );
    }
    let flagged = "SELECT COUNT(*) AS n FROM warren_tasks WHERE waited";
    let expected = if b == Backend::Postgres { 3 } else { 0 };
    assert_eq!(count(&s, flagged).await, expected);
}

/// A task scheduled with `waited` is stored as waited for by every way of scheduling
/// (alone, in a batch, in a caller's transaction, with a unique key), so its outcome
/// wakes a waiter that set nothing. On PostgreSQL its wait then writes nothing: a row
/// another transaction holds (as a claim does for a moment) does not hold the wait
/// up, where a task scheduled without the flag must be marked first, and its wait
/// queues behind the lock (and, taking it, would make a claim skip the task).
async fn tasks_scheduled_for_a_waiter_are_waited_for_from_their_insert(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = db.store.clone();
    let waited = |n: i64| {
        task_with(
            json!({ "n": n }),
            ScheduleOptions {
                waited: true,
                ..ScheduleOptions::default()
            },
        )
    };
    let alone = s.schedule(waited(1)).await.unwrap();
    let batch = s
        .schedule_batch(&[waited(2), task(json!({"n": 3})), waited(4)])
        .await
        .unwrap();
    let mut conn = s.connection().await.unwrap();
    conn.begin().await.unwrap();
    let in_tx = conn.schedule(waited(5)).await.unwrap();
    conn.commit().await.unwrap();
    drop(conn);
    let keyed = s
        .schedule(task_with(
            json!({"n": 6}),
            ScheduleOptions {
                waited: true,
                unique: Some(warren::store::Unique::key("k")),
                ..ScheduleOptions::default()
            },
        ))
        .await
        .unwrap();
    assert_eq!(
        numbers(
            &s,
            "SELECT id AS n FROM warren_tasks WHERE waited ORDER BY id"
        )
        .await,
        vec![alone.0, batch[0].0, batch[2].0, in_tx.0, keyed.0],
        "exactly the tasks scheduled with `waited` are stored as waited for"
    );

    // Its outcome wakes a waiter at once (nothing but the insert asked for it).
    let run = claim_one(&s).await;
    assert_eq!(
        run.claimed().task.id,
        alone,
        "the oldest due task is claimed first"
    );
    let waiter = {
        let s = s.clone();
        tokio::spawn(async move {
            s.wait(alone, Duration::from_secs(30), WaitFor::Finished)
                .await
        })
    };
    tokio::task::yield_now().await;
    run.resolve(complete(json!({"done": 1})), RetryPolicy::default())
        .await
        .unwrap();
    let outcome = waiter.await.unwrap().unwrap();
    assert_eq!(outcome.state, TaskState::Completed);

    if b == Backend::Postgres {
        // Another transaction holds the rows of two pending tasks, one scheduled for
        // a waiter and one not.
        let plain = batch[1];
        let mut holder = s.connection().await.unwrap();
        holder.begin().await.unwrap();
        exec(
            &mut holder.as_any(),
            &format!(
                "SELECT id FROM warren_tasks WHERE id IN ({}, {}) FOR NO KEY UPDATE",
                batch[0].0, plain.0
            ),
        )
        .await;
        // The waited-for task's wait runs to its own timeout; the guard is only there
        // to fail the test rather than hang it, should the wait take the lock.
        let guarded = tokio::time::timeout(
            Duration::from_secs(20),
            s.wait(batch[0], Duration::from_millis(20), WaitFor::Finished),
        )
        .await;
        assert!(
            matches!(guarded, Ok(Err(StoreError::WaitTimeout { id, .. })) if id == batch[0]),
            "a wait on a task scheduled for it takes no lock: {guarded:?}"
        );
        // The other's wait marks the task first, and that waits for the lock, however
        // short the wait's own timeout.
        let blocked = tokio::time::timeout(
            Duration::from_millis(300),
            s.wait(plain, Duration::from_millis(20), WaitFor::Finished),
        )
        .await;
        assert!(
            blocked.is_err(),
            "a wait that marks the task queues behind its lock: {blocked:?}"
        );
        holder.rollback().await.unwrap();
    }
}
