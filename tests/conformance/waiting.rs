//! Waiting for a task's outcome.

use crate::support::conformance::*;

crate::conformance!(
    wait_returns_promptly_after_the_commit,
    wait_times_out_and_accepts_temporary_failures,
    waiters_are_woken_by_outcomes_written_with_a_runs_work,
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
