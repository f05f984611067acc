//! The retry rule as the store applies it.

use crate::support::conformance::*;

crate::conformance!(
    retry_schedule_doubles_then_caps_at_one_day,
    max_failures_edge_cases,
    explicit_retry_and_not_before_win,
);

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
