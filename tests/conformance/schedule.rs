//! Scheduling: alone, in batches, in a caller's transaction, and what is refused.

use crate::support::conformance::*;

crate::conformance!(
    schedule_and_describe_keep_every_field,
    schedule_in_caller_transaction_exists_only_if_committed,
    scheduling_in_a_callers_transaction_wakes_the_queue_on_commit,
    bad_input_is_refused_and_changes_nothing,
    scheduling_wakes_the_clusters_with_work_due_now,
);

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
                unique: None,
                waited: true,
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
    assert_eq!(
        (t.failures, t.iterations, t.lease_token),
        (0, 0, LeaseToken(0))
    );
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
                    unique: None,
                    waited: true,
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
    // Stored as waited for: the first task and the batch's second, no other.
    assert_eq!(
        numbers(
            s,
            "SELECT id AS n FROM warren_tasks WHERE waited ORDER BY id"
        )
        .await,
        vec![id.0, ids[1].0]
    );
    assert!(matches!(
        s.describe(TaskId(999_999)).await,
        Err(StoreError::NotFound(TaskId(999_999)))
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
    let kept = conn.schedule(task(json!({"order": 1}))).await.unwrap();
    conn.commit().await.unwrap();

    conn.begin().await.unwrap();
    exec(&mut conn.as_any(), "INSERT INTO orders VALUES (2)").await;
    let batch = conn
        .schedule_batch(&[task(json!({"order": 2})), task(json!({"order": 3}))])
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

/// A task scheduled in an application's transaction wakes the queue of its cluster
/// when that transaction commits, on both backends (PostgreSQL by `NOTIFY`, SQLite by
/// the store after the commit), and a rolled-back one wakes nobody.
async fn scheduling_in_a_callers_transaction_wakes_the_queue_on_commit(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let mut wakeups = s.subscribe_work().await.unwrap();
    let mut conn = s.connection().await.unwrap();

    conn.begin().await.unwrap();
    conn.schedule(task_with(
        json!({"rolled": "back"}),
        ScheduleOptions {
            cluster: Some("discarded".into()),
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    conn.rollback().await.unwrap();

    conn.begin().await.unwrap();
    conn.schedule_batch(&[task_with(
        json!({"order": 1}),
        ScheduleOptions {
            cluster: Some("mail".into()),
            ..Default::default()
        },
    )])
    .await
    .unwrap();
    assert!(
        matches!(
            wakeups.try_recv(),
            Err(tokio::sync::broadcast::error::TryRecvError::Empty)
        ),
        "no wake-up before the commit"
    );
    conn.commit().await.unwrap();
    // The first wake-up is the committed one's: the rolled-back cluster never comes.
    let woken = tokio::time::timeout(Duration::from_secs(30), wakeups.recv())
        .await
        .expect("the commit wakes the queue")
        .unwrap();
    assert_eq!(woken, "mail");
}

async fn bad_input_is_refused_and_changes_nothing(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let err = s.schedule(task(json!([1, 2]))).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid data: must be a JSON object, got an array"
    );
    // The store names fields as `NewTask` does, and `validate` refuses what scheduling
    // would, before any transaction.
    assert!(matches!(
        task(json!([1, 2])).validate(),
        Err(StoreError::Invalid { field: "data", .. })
    ));
    let negative = task_with(
        json!({}),
        ScheduleOptions {
            timeout_ms: Some(-1),
            ..Default::default()
        },
    );
    assert!(matches!(
        negative.validate(),
        Err(StoreError::Invalid {
            field: "timeout_ms",
            ..
        })
    ));
    assert!(matches!(
        s.schedule(negative).await,
        Err(StoreError::Invalid {
            field: "timeout_ms",
            ..
        })
    ));
    assert!(task(json!({})).validate().is_ok());
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
        "invalid aux_data: must be a JSON object, got a string"
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

/// `schedule` and `schedule_batch` (one statement on PostgreSQL when no task has
/// metadata, a transaction otherwise) wake each cluster that has work due now, once per
/// call, and no cluster whose tasks are due later; ids come back in input order.
async fn scheduling_wakes_the_clusters_with_work_due_now(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let mut wakeups = s.subscribe_work().await.unwrap();
    let in_cluster = |cluster: &str, not_before: Option<i64>| {
        task_with(
            json!({ "cluster": cluster }),
            ScheduleOptions {
                cluster: Some(cluster.into()),
                not_before,
                ..Default::default()
            },
        )
    };
    let later = Some(T0 + MIN);
    s.schedule(in_cluster("later", later)).await.unwrap();
    s.schedule(in_cluster("alone", None)).await.unwrap();
    let ids = s
        .schedule_batch(&[
            in_cluster("b", None),
            in_cluster("a", None),
            in_cluster("b", None),
            in_cluster("later", later),
        ])
        .await
        .unwrap();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let clusters: Vec<String> = clusters_of(s, &ids).await;
    assert_eq!(clusters, ["b", "a", "b", "later"], "ids in input order");
    let mut with_metadata = in_cluster("meta", None);
    with_metadata.options.metadata = vec![("k".into(), "v".into())];
    s.schedule(with_metadata).await.unwrap();
    // In a caller's transaction: woken when it commits, never when it rolls back.
    let mut conn = s.connection().await.unwrap();
    conn.begin().await.unwrap();
    conn.schedule(in_cluster("rolled-back", None))
        .await
        .unwrap();
    conn.rollback().await.unwrap();
    conn.begin().await.unwrap();
    conn.schedule_batch(&[in_cluster("tx", None), in_cluster("later", later)])
        .await
        .unwrap();
    conn.commit().await.unwrap();
    drop(conn);
    // A task with a unique key is inserted alone, and announced apart.
    let mut unique = in_cluster("unique", None);
    unique.options.unique = Some(warren::store::Unique::key("once"));
    s.schedule(unique).await.unwrap();
    let mut woken = Vec::new();
    while woken.len() < 6 {
        let cluster = tokio::time::timeout(Duration::from_secs(30), wakeups.recv())
            .await
            .expect("a wake-up for each cluster with work due now")
            .unwrap();
        woken.push(cluster);
    }
    woken[1..3].sort();
    assert_eq!(woken, ["alone", "a", "b", "meta", "tx", "unique"]);
    assert!(
        matches!(
            wakeups.try_recv(),
            Err(tokio::sync::broadcast::error::TryRecvError::Empty)
        ),
        "nothing more: tasks due later wake nobody"
    );
}

/// The clusters of tasks `ids`, in that order.
async fn clusters_of(s: &Store, ids: &[TaskId]) -> Vec<String> {
    let mut clusters = Vec::new();
    for id in ids {
        clusters.push(s.describe(*id).await.unwrap().cluster);
    }
    clusters
}
