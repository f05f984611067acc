//! Unique tasks: a duplicate is returned instead of created, by the rules of its
//! states, period and debounce, and the database keeps it so under races.

use crate::support::conformance::*;
use warren::store::{Debounce, Scheduled, Unique, UniqueStates};

crate::conformance!(
    a_unique_key_returns_the_unfinished_task_and_creates_nothing,
    finished_states_count_when_asked_and_a_new_period_starts_afresh,
    a_debounce_replaces_pending_data_and_pushes_back_up_to_its_maximum,
    three_stores_racing_create_one_task,
    a_rolled_back_duplicate_does_not_hold_the_key,
    a_finished_task_is_not_queued_again_beside_its_duplicate,
    bad_unique_options_are_refused_and_change_nothing,
);

fn keyed(data: serde_json::Value, unique: Unique) -> NewTask {
    task_with(
        data,
        ScheduleOptions {
            unique: Some(unique),
            ..Default::default()
        },
    )
}

async fn tasks_in_table(s: &Store) -> i64 {
    count(s, "SELECT COUNT(*) AS n FROM warren_tasks").await
}

async fn a_unique_key_returns_the_unfinished_task_and_creates_nothing(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let first = s
        .schedule(keyed(json!({"n": 1}), Unique::key("invoice-42")))
        .await
        .unwrap();
    let again = s
        .schedule_batch_reporting(&[task_with(
            json!({"n": 2}),
            ScheduleOptions {
                unique: Some(Unique::key("invoice-42")),
                metadata: vec![("from".into(), "second".into())],
                ..Default::default()
            },
        )])
        .await
        .unwrap();
    assert_eq!(
        again,
        vec![Scheduled {
            id: first,
            created: false
        }]
    );
    let t = s.describe(first).await.unwrap();
    assert_eq!(
        t.data,
        json!({"n": 1}),
        "a duplicate leaves the task as it was"
    );
    assert!(t.metadata.is_empty(), "{:?}", t.metadata);
    let unique = t.unique.expect("the key is stored");
    assert_eq!(
        (unique.key.as_str(), unique.period_start),
        ("invoice-42", None)
    );
    assert_eq!(unique.states, UniqueStates::UNFINISHED);
    assert_eq!(tasks_in_table(s).await, 1);

    // Another key, or no key, is another task.
    let other = s
        .schedule(keyed(json!({}), Unique::key("invoice-43")))
        .await
        .unwrap();
    let plain = s.schedule(task(json!({}))).await.unwrap();
    assert!(other != first && plain != first && plain != other);

    // In one batch, the second task with a key finds the first.
    let batch = s
        .schedule_batch_reporting(&[
            keyed(json!({}), Unique::key("batch")),
            task(json!({})),
            keyed(json!({}), Unique::key("batch")),
        ])
        .await
        .unwrap();
    assert_eq!(batch[0].id, batch[2].id);
    assert!(
        batch[0].id < batch[1].id,
        "ids follow the batch's order: {batch:?}"
    );
    let created: Vec<bool> = batch.iter().map(|s| s.created).collect();
    assert_eq!(created, vec![true, true, false]);

    // While it runs it still counts; once completed, the key is free again.
    let run = claim_one(s).await;
    assert_eq!(run.claimed().task.id, first);
    assert_eq!(
        s.schedule(keyed(json!({}), Unique::key("invoice-42")))
            .await
            .unwrap(),
        first
    );
    run.resolve(complete(json!(null)), RetryPolicy::default())
        .await
        .unwrap();
    let next = s
        .schedule(keyed(json!({"n": 3}), Unique::key("invoice-42")))
        .await
        .unwrap();
    assert!(next > first);
    assert_eq!(s.describe(next).await.unwrap().data, json!({"n": 3}));
}

async fn finished_states_count_when_asked_and_a_new_period_starts_afresh(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let once = Unique {
        states: UniqueStates::UNFINISHED.with(TaskState::Completed),
        ..Unique::key("welcome-mail")
    };
    let id = s.schedule(keyed(json!({}), once.clone())).await.unwrap();
    claim_one(s)
        .await
        .resolve(complete(json!(null)), RetryPolicy::default())
        .await
        .unwrap();
    // Completed counts for this task: no second welcome mail.
    assert_eq!(s.schedule(keyed(json!({}), once)).await.unwrap(), id);
    assert_eq!(tasks_in_table(s).await, 1);

    let hourly = Unique {
        period_ms: Some(60 * MIN),
        states: UniqueStates::UNFINISHED.with(TaskState::Completed),
        ..Unique::key("report")
    };
    let this_hour = s.schedule(keyed(json!({}), hourly.clone())).await.unwrap();
    let stored = s.describe(this_hour).await.unwrap().unique.unwrap();
    assert_eq!(stored.key, "report");
    assert_eq!(stored.period_start, Some(T0 - T0.rem_euclid(60 * MIN)));
    db.clock.advance(60 * MIN);
    let next_hour = s.schedule(keyed(json!({}), hourly.clone())).await.unwrap();
    assert_ne!(next_hour, this_hour, "a new period makes a new task");
    assert_eq!(
        s.schedule(keyed(json!({}), hourly)).await.unwrap(),
        next_hour
    );
}

async fn a_debounce_replaces_pending_data_and_pushes_back_up_to_its_maximum(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let debounced = Unique {
        debounce: Some(Debounce {
            delay_ms: 1000,
            max_ms: Some(3000),
        }),
        ..Unique::key("reindex")
    };
    let id = s
        .schedule(keyed(json!({"v": 1}), debounced.clone()))
        .await
        .unwrap();
    assert_eq!(s.describe(id).await.unwrap().next_attempt, T0 + 1000);
    db.clock.advance(500);
    assert_eq!(
        s.schedule(keyed(json!({"v": 2}), debounced.clone()))
            .await
            .unwrap(),
        id
    );
    let t = s.describe(id).await.unwrap();
    assert_eq!((t.data, t.next_attempt), (json!({"v": 2}), T0 + 1500));
    // Never past the maximum after the first schedule.
    db.clock.set(T0 + 2500);
    s.schedule(keyed(json!({"v": 3}), debounced.clone()))
        .await
        .unwrap();
    let t = s.describe(id).await.unwrap();
    assert_eq!((t.data, t.next_attempt), (json!({"v": 3}), T0 + 3000));
    assert!(s
        .claim("node-a", &clusters(), 1, LEASE)
        .await
        .unwrap()
        .is_empty());
    // Once it runs, a duplicate finds it and leaves it as it is.
    db.clock.set(T0 + 3000);
    let run = claim_one(s).await;
    assert_eq!(run.claimed().task.data, json!({"v": 3}));
    s.schedule(keyed(json!({"v": 4}), debounced)).await.unwrap();
    assert_eq!(s.describe(id).await.unwrap().data, json!({"v": 3}));
    assert_eq!(tasks_in_table(s).await, 1);
}

async fn three_stores_racing_create_one_task(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let (s1, s2, s3) = (&db.store, db.another_node().await, db.another_node().await);
    const ROUNDS: usize = 20;
    for round in 0..ROUNDS {
        let key = format!("race-{round}");
        let schedule = |s: &Store, n: u32| {
            let task = keyed(json!({ "by": n }), Unique::key(key.clone()));
            let s = s.clone();
            async move { s.schedule_batch_reporting(&[task]).await.unwrap()[0] }
        };
        let (a, b, c) = tokio::join!(schedule(s1, 1), schedule(&s2, 2), schedule(&s3, 3));
        assert!(
            a.id == b.id && b.id == c.id,
            "round {round}: {a:?} {b:?} {c:?}"
        );
        let created = [a, b, c].iter().filter(|s| s.created).count();
        assert_eq!(created, 1, "round {round}: {a:?} {b:?} {c:?}");
    }
    assert_eq!(tasks_in_table(s1).await, ROUNDS as i64);
}

async fn a_rolled_back_duplicate_does_not_hold_the_key(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let other = db.another_node().await;
    let mut conn = db.store.connection().await.unwrap();
    conn.begin().await.unwrap();
    conn.schedule(keyed(json!({"by": "rolled back"}), Unique::key("k")))
        .await
        .unwrap();
    // The other node's schedule waits for the open transaction (PostgreSQL: the
    // index entry; SQLite: the write lock) and creates the task once it rolls back.
    let racing = tokio::spawn(async move {
        other
            .schedule_batch_reporting(&[keyed(json!({"by": "other"}), Unique::key("k"))])
            .await
            .unwrap()[0]
    });
    conn.rollback().await.unwrap();
    drop(conn);
    let after = racing.await.unwrap();
    assert!(after.created, "{after:?}");
    // (SQLite may give the new task the rolled-back one's id: it was never committed.)
    let t = db.store.describe(after.id).await.unwrap();
    assert_eq!(t.data, json!({"by": "other"}));
    assert_eq!(tasks_in_table(&db.store).await, 1);
}

async fn a_finished_task_is_not_queued_again_beside_its_duplicate(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let failed = s
        .schedule(keyed(json!({}), Unique::key("sync")))
        .await
        .unwrap();
    claim_one(s)
        .await
        .resolve(
            Resolution::PermanentFailure {
                error: "no".into(),
                result: None,
            },
            RetryPolicy::default(),
        )
        .await
        .unwrap();
    let newer = s
        .schedule(keyed(json!({}), Unique::key("sync")))
        .await
        .unwrap();
    assert_ne!(newer, failed);
    match s.retry_now(failed).await {
        Err(StoreError::UniqueConflict {
            id,
            existing,
            key,
            state,
        }) => {
            assert_eq!((id, existing, key.as_str()), (failed, newer, "sync"));
            assert_eq!(state, TaskState::Pending);
        }
        other => panic!("expected a unique conflict, got {other:?}"),
    }
    assert_eq!(s.describe(failed).await.unwrap().state, TaskState::Failed);
    // Once the newer one no longer counts, the old one may go again.
    s.cancel(newer, "superseded").await.unwrap();
    s.retry_now(failed).await.unwrap();
    assert_eq!(s.describe(failed).await.unwrap().state, TaskState::Pending);
}

async fn bad_unique_options_are_refused_and_change_nothing(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let refused = |unique: Unique| {
        let task = keyed(json!({}), unique);
        async move { s.schedule(task).await.unwrap_err() }
    };
    let field = |e: StoreError| match e {
        StoreError::Invalid { field, .. } => field,
        other => panic!("expected an invalid field, got {other}"),
    };
    assert_eq!(field(refused(Unique::key("")).await), "unique_key");
    assert_eq!(field(refused(Unique::key("a\u{1f}b")).await), "unique_key");
    let period = Unique {
        period_ms: Some(-5),
        ..Unique::key("k")
    };
    assert_eq!(field(refused(period).await), "unique_period_ms");
    let debounce = Unique {
        debounce: Some(Debounce {
            delay_ms: 0,
            max_ms: None,
        }),
        ..Unique::key("k")
    };
    assert_eq!(field(refused(debounce).await), "debounce_ms");
    let forever = Unique {
        debounce: Some(Debounce {
            delay_ms: 1000,
            max_ms: Some(i64::MAX),
        }),
        ..Unique::key("k")
    };
    assert_eq!(field(refused(forever).await), "debounce_max_ms");
    assert_eq!(tasks_in_table(s).await, 0);
}
