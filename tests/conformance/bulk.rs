//! Searching tasks (data fields, data text, error text) and bulk actions on what a
//! filter matches.

use crate::support::conformance::*;
use warren::store::{BulkAction, BulkOptions, DataEquals, Unique};

crate::conformance!(
    data_searches_compare_json_scalars_alike_on_both_backends,
    text_searches_match_data_and_errors_ignoring_case_and_wildcards,
    bulk_retry_requeues_failed_and_cancelled_matches_in_batches,
    bulk_cancel_and_delete_leave_what_they_cannot_change,
    bulk_retry_of_a_keyed_task_whose_key_is_taken_is_refused_alone,
    a_bulk_action_bounded_by_the_count_leaves_tasks_scheduled_after_it,
);

/// What the CLI and the dashboard do: count, note the newest match, act up to it. A
/// matching task scheduled after the count (while a person reads it) is not touched.
async fn a_bulk_action_bounded_by_the_count_leaves_tasks_scheduled_after_it(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let counted: Vec<TaskId> = {
        let mut ids = Vec::new();
        for i in 0..3 {
            ids.push(s.schedule(task(json!({ "i": i }))).await.unwrap());
        }
        ids
    };
    let filter = TaskFilter {
        state: StateFilter::Pending,
        ..TaskFilter::default()
    };
    assert_eq!(s.count(&filter).await.unwrap(), 3);
    let newest = s.newest_matching(&filter).await.unwrap().unwrap();
    assert_eq!(newest, counted[2]);
    let later = s.schedule(task(json!({ "i": 3 }))).await.unwrap();
    let bounded = TaskFilter {
        before_id: Some(TaskId(newest.0 + 1)),
        ..filter
    };
    let report = s
        .bulk(BulkAction::Cancel, &bounded, &BulkOptions::default())
        .await
        .unwrap();
    assert_eq!((report.matched, report.changed), (3, 3));
    for id in counted {
        assert_eq!(s.describe(id).await.unwrap().state, TaskState::Cancelled);
    }
    assert_eq!(s.describe(later).await.unwrap().state, TaskState::Pending);
}

/// The ids a filter lists, oldest first.
async fn listed(s: &Store, filter: TaskFilter) -> Vec<TaskId> {
    let mut ids: Vec<TaskId> = s
        .list(&filter)
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    ids.sort();
    ids
}

fn data_is(text: &str) -> TaskFilter {
    TaskFilter {
        data_equals: Some(DataEquals::parse(text).unwrap()),
        ..TaskFilter::default()
    }
}

async fn data_searches_compare_json_scalars_alike_on_both_backends(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let mut ids = Vec::new();
    for data in [
        json!({"order": {"id": 42, "to": "ann@example.com"}, "vip": true}),
        json!({"order": {"id": "42"}, "vip": false}),
        json!({"order": {"id": 42.0}, "vip": null, "items": [{"sku": "A-1"}]}),
        json!({"order": {"id": 7}, "note": "it's \"quoted\" and 100% sure"}),
        json!({"order": 42}),
        // Not a number: a numeric search passes it by without an error.
        json!({"order": {"id": "abc"}, "city": "ÉCOLE"}),
    ] {
        ids.push(s.schedule(task(data)).await.unwrap());
    }
    // A number equals a number of the same value, never the string.
    assert_eq!(listed(s, data_is("order.id=42")).await, [ids[0], ids[2]]);
    assert_eq!(listed(s, data_is("order.id=42.00")).await, [ids[0], ids[2]]);
    assert_eq!(listed(s, data_is("order.id=\"42\"")).await, [ids[1]]);
    // A string that is not JSON is a string.
    assert_eq!(
        listed(s, data_is("order.to=ann@example.com")).await,
        [ids[0]]
    );
    assert_eq!(listed(s, data_is("vip=true")).await, [ids[0]]);
    assert_eq!(listed(s, data_is("vip=false")).await, [ids[1]]);
    // `null` is a present null, not a missing field.
    assert_eq!(listed(s, data_is("vip=null")).await, [ids[2]]);
    assert_eq!(listed(s, data_is("items.0.sku=A-1")).await, [ids[2]]);
    assert_eq!(
        listed(s, data_is("note=it's \"quoted\" and 100% sure")).await,
        [ids[3]]
    );
    // A path through a scalar, or to nothing, matches nothing.
    assert!(listed(s, data_is("order.id.x=42")).await.is_empty());
    assert!(listed(s, data_is("missing=1")).await.is_empty());
    assert_eq!(listed(s, data_is("order.id=abc")).await, [ids[5]]);
    // The same text, case and all, matches on both backends (case folding beyond
    // ASCII is PostgreSQL's alone).
    let city = TaskFilter {
        data_contains: Some("ÉCOLE".into()),
        ..TaskFilter::default()
    };
    assert_eq!(listed(s, city).await, [ids[5]]);
    // A NUL in a search is refused, naming the field, on both backends.
    for filter in [
        TaskFilter {
            data_contains: Some("a\0b".into()),
            ..TaskFilter::default()
        },
        TaskFilter {
            error_contains: Some("\0".into()),
            ..TaskFilter::default()
        },
        data_is("k=\"\\u0000\""),
    ] {
        for err in [
            s.list(&filter).await.map(|_| ()).unwrap_err(),
            s.count(&filter).await.map(|_| ()).unwrap_err(),
            s.bulk(BulkAction::Delete, &filter, &BulkOptions::default())
                .await
                .map(|_| ())
                .unwrap_err(),
        ] {
            assert!(
                matches!(
                    err,
                    StoreError::Invalid {
                        field: "data_contains" | "error_contains" | "data",
                        ..
                    }
                ),
                "{err:?}"
            );
        }
    }
    // It combines with the other criteria, counts agree with listings, and paging
    // keeps the search.
    let mut filter = data_is("order.id=42");
    filter.state = StateFilter::Pending;
    assert_eq!(s.count(&filter).await.unwrap(), 2);
    filter.before_id = Some(ids[2]);
    assert_eq!(listed(s, filter.clone()).await, [ids[0]]);
    assert_eq!(s.count(&filter).await.unwrap(), 1);
    filter.state = StateFilter::Failed;
    assert_eq!(s.count(&filter).await.unwrap(), 0);
}

async fn text_searches_match_data_and_errors_ignoring_case_and_wildcards(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let smtp = s
        .schedule(task(json!({"to": "Ann@Example.com"})))
        .await
        .unwrap();
    let percent = s
        .schedule(task(json!({"note": "100% done_ok"})))
        .await
        .unwrap();
    let plain = s.schedule(task(json!({"note": "100 done"}))).await.unwrap();
    // Matched by `e_o` only if `_` were a wildcard.
    s.schedule(task(json!({"note": "eXo"}))).await.unwrap();
    for (id, why) in [(smtp, "SMTP Timeout after 30 s"), (plain, "refused")] {
        s.cancel(id, why).await.unwrap();
    }
    let contains = |data: Option<&str>, error: Option<&str>| TaskFilter {
        data_contains: data.map(str::to_string),
        error_contains: error.map(str::to_string),
        ..TaskFilter::default()
    };
    assert_eq!(listed(s, contains(Some("ann@EXAMPLE"), None)).await, [smtp]);
    // LIKE's wildcards are plain characters here.
    assert_eq!(listed(s, contains(Some("100%"), None)).await, [percent]);
    assert_eq!(listed(s, contains(Some("e_o"), None)).await, [percent]);
    assert_eq!(listed(s, contains(None, Some("timeout"))).await, [smtp]);
    // A task with no error never matches an error search.
    assert!(listed(s, contains(None, Some("")))
        .await
        .iter()
        .all(|id| *id != percent));
    assert!(listed(s, contains(Some("ann"), Some("refused")))
        .await
        .is_empty());
}

/// `n` tasks of type `ty` with data `{"n": i}`, each failed for good.
async fn failed_tasks(db: &TestDb, ty: &str, n: usize) -> Vec<TaskId> {
    let s = &db.store;
    let mut ids = Vec::new();
    for i in 0..n {
        let new = NewTask::new(ty.parse().unwrap(), json!({ "n": i }));
        ids.push(s.schedule(new).await.unwrap());
    }
    for _ in 0..n {
        claim_one(s)
            .await
            .resolve(
                Resolution::PermanentFailure {
                    error: "mail server down".into(),
                    result: None,
                },
                RetryPolicy::default(),
            )
            .await
            .unwrap();
    }
    ids
}

async fn bulk_retry_requeues_failed_and_cancelled_matches_in_batches(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let mail = failed_tasks(&db, "mail:send", 7).await;
    let other = failed_tasks(&db, "report:build", 2).await;
    let cancelled = s
        .schedule(NewTask::new("mail:send".parse().unwrap(), json!({})))
        .await
        .unwrap();
    s.cancel(cancelled, "stop").await.unwrap();
    // Not before an hour from now: retried, it waits for that.
    let later = s
        .schedule(task_with(
            json!({}),
            ScheduleOptions {
                not_before: Some(s.now() + 60 * MIN),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    s.cancel(later, "stop").await.unwrap();
    let running = s
        .schedule(NewTask::new("mail:send".parse().unwrap(), json!({})))
        .await
        .unwrap();
    let run = claim_one(s).await;
    assert_eq!(run.claimed().task.id, running);
    db.clock.advance(MIN);

    let filter = TaskFilter {
        type_mask: Some("MAIL:*".into()),
        ..TaskFilter::default()
    };
    let options = BulkOptions {
        batch: 3,
        ..BulkOptions::default()
    };
    let report = s.bulk(BulkAction::Retry, &filter, &options).await.unwrap();
    assert_eq!(report.matched, 9, "{report:?}");
    assert_eq!(report.changed, 8, "{report:?}");
    assert_eq!(report.skipped.get(&TaskState::Running), Some(&1));
    assert_eq!(report.batches, 3, "9 matches in pages of 3: {report:?}");
    assert_eq!((report.moved_on, report.refused), (0, 0));
    for id in mail.iter().chain([&cancelled]) {
        let t = s.describe(*id).await.unwrap();
        assert_eq!(
            (t.state, t.failures, t.finished_at, t.next_attempt),
            (TaskState::Pending, 0, None, s.now()),
            "task {id}"
        );
    }
    for id in &other {
        assert_eq!(s.describe(*id).await.unwrap().state, TaskState::Failed);
    }
    assert_eq!(s.describe(running).await.unwrap().state, TaskState::Running);
    // The other filter: by data, and the not-before time holds.
    let report = s
        .bulk(
            BulkAction::Retry,
            &TaskFilter {
                state: StateFilter::Cancelled,
                type_mask: Some("demo:*".into()),
                ..TaskFilter::default()
            },
            &BulkOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!((report.matched, report.changed), (1, 1));
    let t = s.describe(later).await.unwrap();
    assert_eq!(
        (t.state, t.next_attempt),
        (TaskState::Pending, t.not_before.unwrap())
    );
    // The retried tasks run again and complete.
    drop(run);
    let claimed = s.claim("node-a", &clusters(), 100, LEASE).await.unwrap();
    let claimed: HashSet<TaskId> = claimed.iter().map(|c| c.task.id).collect();
    assert!(mail.iter().all(|id| claimed.contains(id)), "{claimed:?}");
    assert!(!claimed.contains(&later));
}

async fn bulk_cancel_and_delete_leave_what_they_cannot_change(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let mut pending = Vec::new();
    for i in 0..5 {
        pending.push(
            s.schedule(task(json!({ "batch": 7, "i": i })))
                .await
                .unwrap(),
        );
    }
    let done = s.schedule(task(json!({ "batch": 7 }))).await.unwrap();
    let untouched = s.schedule(task(json!({ "batch": 8 }))).await.unwrap();
    // Claims the oldest due task: `pending[0]`, which then runs.
    let run = claim_one(s).await;
    let running = run.claimed().task.id;
    assert_eq!(running, pending[0]);
    let waiter = {
        let s = s.clone();
        tokio::spawn(async move {
            s.wait(done, Duration::from_secs(10), WaitFor::Finished)
                .await
        })
    };
    tokio::task::yield_now().await;
    let filter = TaskFilter {
        data_equals: Some(DataEquals::parse("batch=7").unwrap()),
        ..TaskFilter::default()
    };
    let options = BulkOptions {
        batch: 2,
        reason: "stopped in bulk".into(),
    };
    let committed = Instant::now();
    let report = s.bulk(BulkAction::Cancel, &filter, &options).await.unwrap();
    assert_eq!((report.matched, report.changed), (6, 6), "{report:?}");
    assert_eq!(report.cancelled_running, [running]);
    for id in pending.iter().chain([&done]) {
        let t = s.describe(*id).await.unwrap();
        assert_eq!(t.state, TaskState::Cancelled, "task {id}");
        assert_eq!(t.last_error.as_deref(), Some("stopped in bulk"));
    }
    // The running task's run can no longer commit, and its waiter hears at once.
    assert!(matches!(
        run.resolve(complete(json!(1)), RetryPolicy::default())
            .await,
        Err(StoreError::LeaseLost { .. })
    ));
    let outcome = waiter.await.unwrap().unwrap();
    assert_eq!(outcome.state, TaskState::Cancelled);
    // Woken by the cancellation, well inside SQLite's 1 s safety re-check (PostgreSQL
    // waiters have none).
    let took = committed.elapsed();
    assert!(
        took < Duration::from_millis(500),
        "the waiter heard after {took:?}"
    );
    assert_eq!(
        s.describe(untouched).await.unwrap().state,
        TaskState::Pending
    );

    // Cancelling again changes nothing: every match is finished.
    let again = s.bulk(BulkAction::Cancel, &filter, &options).await.unwrap();
    assert_eq!((again.matched, again.changed), (6, 0));
    assert_eq!(again.skipped.get(&TaskState::Cancelled), Some(&6));
    assert_eq!(again.batches, 0, "no write without something to change");

    // Delete leaves a running task; here the running one is another.
    let busy = s.schedule(task(json!({ "batch": 7 }))).await.unwrap();
    let run = claim_one(s).await;
    assert_eq!(run.claimed().task.id, untouched);
    s.cancel(busy, "x").await.unwrap();
    let mut all_sevens = filter.clone();
    all_sevens.state = StateFilter::All;
    let report = s
        .bulk(
            BulkAction::Delete,
            &TaskFilter {
                data_contains: Some("\"batch\"".into()),
                ..TaskFilter::default()
            },
            &options,
        )
        .await
        .unwrap();
    assert_eq!((report.matched, report.changed), (8, 7), "{report:?}");
    assert_eq!(report.skipped.get(&TaskState::Running), Some(&1));
    assert_eq!(s.count(&all_sevens).await.unwrap(), 0);
    assert_eq!(
        s.describe(untouched).await.unwrap().state,
        TaskState::Running
    );
    drop(run);
}

async fn bulk_retry_of_a_keyed_task_whose_key_is_taken_is_refused_alone(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let keyed = |key: &str| {
        task_with(
            json!({}),
            ScheduleOptions {
                unique: Some(Unique::key(key)),
                ..Default::default()
            },
        )
    };
    let taken = s.schedule(keyed("k1")).await.unwrap();
    s.cancel(taken, "x").await.unwrap();
    let free = s.schedule(keyed("k2")).await.unwrap();
    s.cancel(free, "x").await.unwrap();
    let plain = s.schedule(task(json!({}))).await.unwrap();
    s.cancel(plain, "x").await.unwrap();
    // A new task holds k1 now.
    let holder = s.schedule(keyed("k1")).await.unwrap();
    assert_ne!(holder, taken);
    let report = s
        .bulk(
            BulkAction::Retry,
            &TaskFilter {
                state: StateFilter::Cancelled,
                ..TaskFilter::default()
            },
            &BulkOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!((report.matched, report.changed, report.refused), (3, 2, 1));
    assert!(
        report.refusals[0].contains(&holder.to_string()),
        "{:?}",
        report.refusals
    );
    assert_eq!(s.describe(taken).await.unwrap().state, TaskState::Cancelled);
    assert_eq!(s.describe(free).await.unwrap().state, TaskState::Pending);
    assert_eq!(s.describe(plain).await.unwrap().state, TaskState::Pending);
}
