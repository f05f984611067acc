//! The retry rule as the store applies it.

use crate::support::conformance::*;
use warren::task::{decide_failure, Backoff, FailureDecision};

crate::conformance!(
    retry_schedule_doubles_then_caps_at_one_day,
    a_types_backoff_and_jitter_apply_as_failures_are_recorded,
    a_snooze_keeps_the_failure_count,
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
    let fast = RetryPolicy::reference(1000, -1);
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

async fn a_types_backoff_and_jitter_apply_as_failures_are_recorded(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let id = db.store.schedule(task(json!({}))).await.unwrap();
    let linear = RetryPolicy {
        fail_reschedule_ms: MIN,
        backoff: Backoff::Linear,
        backoff_max_ms: Some(2 * MIN),
        jitter_permille: 200,
        ..RetryPolicy::default()
    };
    let mut failed_at = T0;
    for (failures, base) in [(0, MIN), (1, 2 * MIN), (2, 2 * MIN)] {
        let FailureDecision::Retry { next_attempt } =
            decide_failure(linear, id, failures, failed_at, None, None)
        else {
            panic!("retried forever");
        };
        assert_eq!(
            fail_once(&db, linear).await,
            ResolveOutcome::Pending { next_attempt }
        );
        let delay = next_attempt - failed_at;
        assert!(
            delay >= base * 8 / 10 && delay <= 2 * MIN,
            "failure {failures}: {delay} ms"
        );
        failed_at = next_attempt;
    }
}

async fn a_snooze_keeps_the_failure_count(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let id = s.schedule(task(json!({}))).await.unwrap();
    fail_once(&db, RetryPolicy::default()).await;
    db.clock.set(T0 + 15 * MIN);
    let snoozed = claim_one(s)
        .await
        .resolve(
            Resolution::Snooze { at: T0 + 20 * MIN },
            RetryPolicy::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        snoozed,
        ResolveOutcome::Pending {
            next_attempt: T0 + 20 * MIN
        }
    );
    let t = s.describe(id).await.unwrap();
    assert_eq!(
        (t.state, t.failures, t.iterations),
        (TaskState::Pending, 1, 2)
    );
    assert_eq!(
        t.last_error.as_deref(),
        Some("boom"),
        "a snooze is no failure: the last one stays"
    );
    // The next failure goes on from the count the snooze kept: the second delay, 30 min.
    assert_eq!(
        fail_once(&db, RetryPolicy::default()).await,
        ResolveOutcome::Pending {
            next_attempt: T0 + 50 * MIN
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
        let policy = RetryPolicy::reference(MIN, max);
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
