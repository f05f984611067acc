//! `warren_schedule(task_type, data, options)`, the PostgreSQL function applications in
//! any language schedule with (migration `2026-12-10-000012_schedule_function`): it
//! writes the row the Rust API writes for the same options, shares unique keys with
//! it, is part of the caller's transaction (a rollback leaves no task and wakes nobody;
//! a commit wakes the task's cluster), and refuses bad input naming the argument or
//! option at fault, leaving nothing behind.
//!
//! PostgreSQL only; skipped loudly without `WARREN_TEST_DATABASE_URL` (failing under
//! `CI=true`). SQLite's equivalent, a documented `INSERT … RETURNING`, is exercised by
//! `actors/tests/sql_examples.rs` with the example that documents it.

mod support;

use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use serde_json::{json, Value};
use std::time::Duration;
use support::{count, Backend, TestDb};
use warren::flow::ConcurrencyLimit;
use warren::store::{
    AnyConn, NewTask, ScheduleOptions, Task, TypeRegistration, Unique, UniqueStates,
};
use warren::task::{Priority, TaskId, TaskState};

#[derive(QueryableByName)]
struct Scheduled {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// `SELECT warren_schedule(…)` with JSON texts; the id, or the database's message.
async fn schedule_sql(
    c: &mut AsyncPgConnection,
    task_type: &str,
    data: &str,
    options: &str,
) -> Result<TaskId, String> {
    diesel::sql_query("SELECT warren_schedule($1, $2::jsonb, $3::jsonb) AS id")
        .bind::<Text, _>(task_type)
        .bind::<Text, _>(data)
        .bind::<Text, _>(options)
        .get_result::<Scheduled>(c)
        .await
        .map(|s| TaskId(s.id))
        .map_err(|e| e.to_string())
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A task as the comparison sees it: what does not depend on when or by which path
/// it was scheduled (the id, the instants, the per-path suffix of the unique key). Its
/// start is kept as -1 when it is its `not_before`, else as the delay after its
/// creation.
fn comparable(mut task: Task, suffix: &str) -> Task {
    // Both paths wrote the instants of now, in ms, and periods that hold them.
    let now = now_ms();
    assert!(
        (now - 60_000..=now).contains(&task.created_at),
        "created at {} (now {now})",
        task.created_at
    );
    if let Some(u) = &task.unique {
        if let Some(start) = u.period_start {
            assert!((start..start + 3_600_000).contains(&task.created_at));
            assert_eq!(start % 3_600_000, 0);
        }
    }
    task.id = TaskId(0);
    task.next_attempt = match task.not_before {
        Some(at) if at == task.next_attempt => -1,
        _ => task.next_attempt - task.created_at,
    };
    task.created_at = 0;
    if let Some(unique) = &mut task.unique {
        unique.key = unique.key.strip_suffix(suffix).unwrap().to_string();
        unique.period_start = unique.period_start.map(|_| 0);
    }
    task
}

#[tokio::test]
async fn the_function_writes_the_row_the_rust_api_writes() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let s = &db.store;
    let mut keyed = TypeRegistration::new("demo:keyed", "mail");
    keyed.concurrency = Some(ConcurrencyLimit {
        limit: 2,
        key: Some("tenant".into()),
    });
    s.register_task_types(&[TypeRegistration::new("demo:ping", "default"), keyed])
        .await
        .unwrap();
    // Both paths read the same clock: the database's.
    db.clock.set(now_ms());
    let later = now_ms() + 3_600_000;
    let unique = |key: &str| Unique {
        key: key.into(),
        states: UniqueStates::UNFINISHED.with(TaskState::Completed),
        period_ms: Some(3_600_000),
        debounce: None,
    };
    // (task type, data, Rust options, SQL options); `{path}` in a unique key becomes
    // `-rust` or `-sql`, so the two paths' tasks do not meet as duplicates.
    let cases: Vec<(&str, Value, ScheduleOptions, Value)> = vec![
        (
            "demo:ping",
            json!({"ping": 1}),
            ScheduleOptions::default(),
            json!({}),
        ),
        (
            "demo:ping",
            json!({"ping": "two", "nested": {"list": [1, 2.5, null, "x\"y"]}}),
            ScheduleOptions {
                not_before: Some(later),
                priority: Some(Priority::INTERACTIVE),
                timeout_ms: Some(2500),
                aux_data: Some(json!({"extra": true})),
                // As the API reads a JSON object: in key order, the last of keys that
                // differ only in case winning.
                metadata: vec![
                    ("SOURCE".into(), "x".into()),
                    ("Source".into(), "sql".into()),
                    ("a".into(), "1".into()),
                    ("ÉTAT".into(), "ok".into()),
                ],
                cluster: Some("other".into()),
                unique: None,
                // SQL schedules for no waiter.
                waited: false,
            },
            json!({"not_before": later.to_string(), "priority": "\tinteractive ",
                   "timeout_ms": 2500, "aux_data": {"extra": true},
                   "metadata": {"Source": "sql", "SOURCE": "x", "a": "1", "ÉTAT": "ok"},
                   "cluster": "other"}),
        ),
        (
            "demo:ping",
            json!({}),
            ScheduleOptions {
                priority: Some(Priority(-150)),
                not_before: Some(1_000),
                ..Default::default()
            },
            json!({"priority": -150, "not_before": "1970-01-01T00:00:01Z"}),
        ),
        (
            "demo:keyed",
            json!({"tenant": "acme"}),
            ScheduleOptions::default(),
            json!({}),
        ),
        (
            "demo:keyed",
            json!({"tenant": 7}),
            ScheduleOptions {
                cluster: Some("elsewhere".into()),
                ..Default::default()
            },
            json!({"cluster": "elsewhere"}),
        ),
        (
            "demo:ping",
            json!({"ping": 4}),
            ScheduleOptions {
                unique: Some(unique("report{path}")),
                ..Default::default()
            },
            json!({"unique_key": "report{path}", "unique_states": ["completed"],
                   "unique_period_ms": 3_600_000}),
        ),
        (
            "demo:ping",
            json!({"ping": 5}),
            ScheduleOptions {
                unique: Some(Unique {
                    key: "burst{path}".into(),
                    states: UniqueStates::UNFINISHED,
                    period_ms: None,
                    debounce: Some(warren::store::Debounce {
                        delay_ms: 500,
                        max_ms: Some(5000),
                    }),
                }),
                ..Default::default()
            },
            json!({"unique_key": "burst{path}", "debounce_ms": 500, "debounce_max_ms": 5000}),
        ),
        (
            "demo:unknown",
            json!({}),
            ScheduleOptions::default(),
            json!({"allow_unknown_type": true}),
        ),
    ];
    let mut conn = s.connection().await.unwrap();
    let AnyConn::Postgres(c) = conn.as_any() else {
        unreachable!()
    };
    for (task_type, data, mut options, sql_options) in cases {
        if let Some(u) = &mut options.unique {
            u.key = u.key.replace("{path}", "-rust");
        }
        let rust_task =
            NewTask::new(task_type.parse().unwrap(), data.clone()).with_options(options);
        let rust_id = s.schedule(rust_task).await.unwrap();
        let sql_options = sql_options.to_string().replace("{path}", "-sql");
        let sql_id = schedule_sql(c, task_type, &data.to_string(), &sql_options)
            .await
            .unwrap_or_else(|e| panic!("{task_type} {sql_options}: {e}"));
        assert_ne!(rust_id, sql_id);
        let by_rust = comparable(s.describe(rust_id).await.unwrap(), "-rust");
        let by_sql = comparable(s.describe(sql_id).await.unwrap(), "-sql");
        assert_eq!(by_sql, by_rust, "{task_type} {sql_options}");
        // Metadata is found by its key in any case, non-ASCII included.
        for id in [rust_id, sql_id] {
            let found = s.metadata(id, "état").await.unwrap();
            assert_eq!(found.is_some(), !by_rust.metadata.is_empty(), "{id}");
        }
    }
    drop(conn);
    // The keyed task in its type's cluster got its key; the one elsewhere none.
    assert_eq!(
        count(
            s,
            "SELECT COUNT(*) AS n FROM warren_tasks WHERE flow_key = 'acme' AND cluster = 'mail'"
        )
        .await,
        2
    );
}

#[tokio::test]
async fn unique_keys_and_debouncing_are_shared_with_the_rust_api() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let s = &db.store;
    s.register_task_types(&[TypeRegistration::new("demo:ping", "default")])
        .await
        .unwrap();
    // The first task was scheduled 30 s ago, due 30 s from now.
    db.clock.set(now_ms() - 30_000);
    let debounced = Unique {
        debounce: Some(warren::store::Debounce {
            delay_ms: 60_000,
            max_ms: None,
        }),
        ..Unique::key("burst")
    };
    let first = s
        .schedule(
            NewTask::new("demo:ping".parse().unwrap(), json!({"n": 1})).with_options(
                ScheduleOptions {
                    unique: Some(debounced),
                    ..Default::default()
                },
            ),
        )
        .await
        .unwrap();
    let before = s.describe(first).await.unwrap();
    let mut conn = s.connection().await.unwrap();
    let AnyConn::Postgres(c) = conn.as_any() else {
        unreachable!()
    };
    // A duplicate scheduled by SQL is the Rust task, given the new data and pushed back.
    let again = schedule_sql(
        c,
        "demo:ping",
        r#"{"n": 2}"#,
        r#"{"unique_key": "burst", "debounce_ms": 60000, "aux_data": {"extra": 1}}"#,
    )
    .await
    .unwrap();
    assert_eq!(again, first);
    // A plain unique key, first by SQL: the Rust API finds the SQL task.
    let by_sql = schedule_sql(c, "demo:ping", "{}", r#"{"unique_key": "plain"}"#)
        .await
        .unwrap();
    drop(conn);
    let after = s.describe(first).await.unwrap();
    assert_eq!(after.data, json!({"n": 2}));
    assert_eq!(after.aux_data, Some(json!({"extra": 1})));
    // Pushed to a minute after the duplicate call.
    let expected = now_ms() + 60_000;
    assert!(
        (expected - 10_000..=expected).contains(&after.next_attempt),
        "{} -> {} (expected about {expected})",
        before.next_attempt,
        after.next_attempt
    );
    assert!(after.next_attempt > before.next_attempt + 20_000);
    let by_rust = s
        .schedule_batch_reporting(&[NewTask::new("demo:ping".parse().unwrap(), json!({}))
            .with_options(ScheduleOptions {
                unique: Some(Unique::key("plain")),
                ..Default::default()
            })])
        .await
        .unwrap();
    assert_eq!(by_rust[0].id, by_sql);
    assert!(!by_rust[0].created);
    assert_eq!(count(s, "SELECT COUNT(*) AS n FROM warren_tasks").await, 2);
}

#[tokio::test]
async fn a_rolled_back_schedule_leaves_nothing_and_a_committed_one_wakes_its_cluster() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let s = &db.store;
    let mut wakes = s.subscribe_work().await.unwrap();
    let mut conn = s.connection().await.unwrap();
    let AnyConn::Postgres(c) = conn.as_any() else {
        unreachable!()
    };
    let unknown = r#"{"allow_unknown_type": true, "cluster": "CLUSTER"}"#;
    c.batch_execute("BEGIN").await.unwrap();
    let rolled = schedule_sql(c, "app:job", "{}", &unknown.replace("CLUSTER", "rolled"))
        .await
        .unwrap();
    c.batch_execute("ROLLBACK").await.unwrap();
    // Committed, but not due yet: nothing to wake anyone for.
    let future = format!(
        r#"{{"allow_unknown_type": true, "cluster": "later", "not_before": {}}}"#,
        now_ms() + 3_600_000
    );
    c.batch_execute("BEGIN").await.unwrap();
    schedule_sql(c, "app:job", "{}", &future).await.unwrap();
    c.batch_execute("COMMIT").await.unwrap();
    c.batch_execute("BEGIN").await.unwrap();
    let kept = schedule_sql(
        c,
        "app:job",
        r#"{"n": 1}"#,
        &unknown.replace("CLUSTER", "kept"),
    )
    .await
    .unwrap();
    c.batch_execute("COMMIT").await.unwrap();
    drop(conn);
    // Notifications arrive in commit order: had the rolled-back or the future task sent
    // one, it would come first.
    let first = tokio::time::timeout(Duration::from_secs(30), wakes.recv())
        .await
        .expect("a wake-up for the committed task")
        .unwrap();
    assert_eq!(first, "kept");
    assert!(
        s.describe(rolled).await.is_err(),
        "the rolled-back task exists"
    );
    assert_eq!(s.describe(kept).await.unwrap().state, TaskState::Pending);
    assert_eq!(count(s, "SELECT COUNT(*) AS n FROM warren_tasks").await, 2);
}

#[tokio::test]
async fn bad_input_is_refused_naming_what_is_wrong() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let s = &db.store;
    s.register_task_types(&[TypeRegistration::new("demo:ping", "default")])
        .await
        .unwrap();
    let cases: [(&str, &str, &str, &str); 26] = [
        (
            "nocolon",
            "{}",
            "{}",
            "task_type: 'nocolon' is not module:type",
        ),
        (
            "demo:pi ng",
            "{}",
            "{}",
            "task_type: 'demo:pi ng' is not module:type",
        ),
        (
            "demo:nope",
            "{}",
            "{}",
            "task_type: unknown task type 'demo:nope'",
        ),
        (
            "demo:ping",
            "[1]",
            "{}",
            "data: must be a JSON object, got array",
        ),
        (
            "demo:ping",
            "{}",
            "[]",
            "options: must be a JSON object, got array",
        ),
        (
            "demo:ping",
            "{}",
            r#"{"priorty": 1}"#,
            "options: unknown option 'priorty'",
        ),
        (
            "demo:ping",
            "{}",
            r#"{"priority": "soon"}"#,
            "options.priority: unknown priority \"soon\"",
        ),
        (
            "demo:ping",
            "{}",
            r#"{"priority": 1.5}"#,
            "options.priority: unknown priority 1.5",
        ),
        (
            "demo:ping",
            "{}",
            r#"{"priority": 3000000000}"#,
            "options.priority",
        ),
        (
            "demo:ping",
            "{}",
            r#"{"not_before": "next week"}"#,
            "options.not_before: invalid instant",
        ),
        (
            "demo:ping",
            "{}",
            r#"{"not_before": true}"#,
            "options.not_before: invalid instant",
        ),
        (
            "demo:ping",
            "{}",
            r#"{"not_before": "tomorrow"}"#,
            "options.not_before: invalid instant",
        ),
        (
            "demo:ping",
            "{}",
            r#"{"not_before": "2026-11-28T10:00:00"}"#,
            "options.not_before: invalid instant",
        ),
        (
            "demo:ping",
            "{}",
            r#"{"metadata": {"\t": "v"}}"#,
            "options.metadata: keys must not be empty",
        ),
        (
            "demo:ping",
            "{}",
            r#"{"unique_key": "\u00a0\u2003"}"#,
            "options.unique_key: must not be empty",
        ),
        (
            "demo:ping",
            "{}",
            r#"{"timeout_ms": -1}"#,
            "options.timeout_ms: invalid -1",
        ),
        (
            "demo:ping",
            "{}",
            r#"{"aux_data": 5}"#,
            "options.aux_data: must be a JSON object, got number",
        ),
        (
            "demo:ping",
            "{}",
            r#"{"metadata": {"k": 1}}"#,
            "options.metadata: the value of 'k' must be a string",
        ),
        (
            "demo:ping",
            "{}",
            r#"{"metadata": {" ": "v"}}"#,
            "options.metadata: keys must not be empty",
        ),
        (
            "demo:ping",
            "{}",
            r#"{"cluster": "a b"}"#,
            "options.cluster: \"a b\" is not a cluster name",
        ),
        (
            "demo:ping",
            "{}",
            r#"{"unique_key": " "}"#,
            "options.unique_key: must not be empty",
        ),
        (
            "demo:ping",
            "{}",
            r#"{"unique_key": "a\nb"}"#,
            "options.unique_key: must not contain control characters",
        ),
        (
            "demo:ping",
            "{}",
            r#"{"unique_key": "k", "unique_states": ["done"]}"#,
            "options.unique_states: 'done' is not a state",
        ),
        (
            "demo:ping",
            "{}",
            r#"{"debounce_ms": 10}"#,
            "options.debounce_ms: applies only to a task with a unique key",
        ),
        (
            "demo:ping",
            "{}",
            r#"{"unique_key": "k", "debounce_ms": 100, "debounce_max_ms": 50}"#,
            "options.debounce_max_ms: 50 ms is shorter than the debounce delay (100 ms)",
        ),
        (
            "demo:ping",
            "{}",
            r#"{"unique_key": "k", "unique_period_ms": 0}"#,
            "options.unique_period_ms: 0 is not a number of ms from 1",
        ),
    ];
    let mut conn = s.connection().await.unwrap();
    let AnyConn::Postgres(c) = conn.as_any() else {
        unreachable!()
    };
    for (task_type, data, options, expected) in cases {
        let err = schedule_sql(c, task_type, data, options)
            .await
            .expect_err(&format!("{task_type} {data} {options} was accepted"));
        assert!(
            err.contains(&format!("warren_schedule: {expected}")),
            "{task_type} {data} {options}: {err}"
        );
    }
    // Refusals carry SQLSTATE 22023 (invalid_parameter_value), for callers to catch.
    c.batch_execute(
        "DO $$ BEGIN PERFORM warren_schedule('demo:ping', '[]'); \
         RAISE EXCEPTION 'accepted'; \
         EXCEPTION WHEN invalid_parameter_value THEN NULL; END $$",
    )
    .await
    .unwrap();
    // NULL arguments: a type is required, data and options default to {}.
    let err = diesel::sql_query("SELECT warren_schedule(NULL, '{}') AS id")
        .get_result::<Scheduled>(c)
        .await
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("warren_schedule: task_type: missing"), "{err}");
    let defaulted = diesel::sql_query("SELECT warren_schedule('demo:ping', NULL) AS id")
        .get_result::<Scheduled>(c)
        .await
        .unwrap();
    drop(conn);
    let task = s.describe(TaskId(defaulted.id)).await.unwrap();
    assert_eq!(task.data, json!({}));
    assert_eq!(count(s, "SELECT COUNT(*) AS n FROM warren_tasks").await, 1);
}
