//! Waiting for a task's outcome.

use crate::support::conformance::*;

crate::conformance!(
    wait_returns_promptly_after_the_commit,
    wait_times_out_and_accepts_temporary_failures,
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
