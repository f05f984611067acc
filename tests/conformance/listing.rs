//! Listings, counts and throughput.

use crate::support::conformance::*;

crate::conformance!(
    throughput_counts_finished_tasks_per_bucket_and_outcome,
    list_filters_paging_and_counts,
);

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
        Vec::<TaskId>::new()
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
