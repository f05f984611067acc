//! Runs and their resolutions: the task's own work commits with its completion, or vanishes with it.

use crate::support::conformance::*;

crate::conformance!(
    task_effects_commit_with_completion,
    task_effects_vanish_with_temporary_failure,
    tasks_scheduled_by_a_run_exist_only_if_it_commits,
    restart_resets_failures_and_replaces_data,
    permanent_failure_and_cancellation_resolutions,
    malformed_result_json_becomes_a_temporary_failure,
    started_at_is_when_the_run_began_not_the_claim,
    task_statements_commit_with_the_completion_and_a_failed_one_is_undone_alone,
    a_run_that_lost_its_lease_commits_none_of_its_statements,
    a_run_whose_transaction_is_in_error_rolls_back_and_is_retried,
    an_application_transaction_on_a_runs_connection_nests_in_the_run,
    a_run_dropped_unresolved_leaves_nothing_and_holds_nothing,
);

/// A database with the `effects` table and one task, claimed: its id and its run.
async fn one_run_with_effects(b: Backend) -> Option<(TestDb, TaskId, warren::store::TaskRun)> {
    let db = TestDb::new(b).await?;
    setup_effects_table(&db.store).await;
    let id = db.store.schedule(task(json!({}))).await.unwrap();
    let run = claim_one(&db.store).await;
    Some((db, id, run))
}

async fn task_effects_commit_with_completion(b: Backend) {
    let Some((db, id, mut run)) = one_run_with_effects(b).await else {
        return;
    };
    let s = &db.store;
    exec(
        &mut run.conn().await.unwrap(),
        &format!("INSERT INTO effects VALUES ({id})"),
    )
    .await;
    // Not visible outside the task's transaction before it commits.
    assert_eq!(count(s, "SELECT COUNT(*) AS n FROM effects").await, 0);
    let outcome = run
        .resolve(complete(json!({"pong": 42})), RetryPolicy::default())
        .await
        .unwrap();
    assert_eq!(outcome, ResolveOutcome::Completed);
    assert_eq!(count(s, "SELECT COUNT(*) AS n FROM effects").await, 1);
    let t = s.describe(id).await.unwrap();
    assert_eq!(t.state, TaskState::Completed);
    assert_eq!(t.result, Some(json!({"pong": 42})));
    assert_eq!(t.finished_at, Some(T0));
    assert_eq!((t.iterations, t.failures), (1, 0));
    assert_eq!((t.lease_owner, t.lease_until), (None, None));
}

async fn task_effects_vanish_with_temporary_failure(b: Backend) {
    let Some((db, id, mut run)) = one_run_with_effects(b).await else {
        return;
    };
    let s = &db.store;
    exec(
        &mut run.conn().await.unwrap(),
        &format!("INSERT INTO effects VALUES ({id})"),
    )
    .await;
    let outcome = run
        .resolve(temporary("smtp down"), RetryPolicy::default())
        .await
        .unwrap();
    assert_eq!(
        outcome,
        ResolveOutcome::Pending {
            next_attempt: T0 + 15 * MIN
        }
    );
    assert_eq!(count(s, "SELECT COUNT(*) AS n FROM effects").await, 0);
    let t = s.describe(id).await.unwrap();
    assert_eq!(t.state, TaskState::Pending);
    assert_eq!(t.last_error.as_deref(), Some("smtp down"));
    assert_eq!(t.last_stack.as_deref(), Some("at runTask (task.js:3)"));
    assert_eq!((t.failures, t.iterations), (1, 1));
    // A run dropped without a resolution (a crashed runner) rolls back too.
    db.clock.advance(15 * MIN);
    let mut run = claim_one(s).await;
    exec(
        &mut run.conn().await.unwrap(),
        &format!("INSERT INTO effects VALUES ({id})"),
    )
    .await;
    drop(run);
    assert_eq!(count(s, "SELECT COUNT(*) AS n FROM effects").await, 0);
    // The database stays writable after the dropped run (no lock left behind).
    s.schedule(task(json!({}))).await.unwrap();
}

async fn tasks_scheduled_by_a_run_exist_only_if_it_commits(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    s.schedule(task(json!({"n": 1}))).await.unwrap();
    s.schedule(task(json!({"n": 2}))).await.unwrap();
    let mut run = claim_one(s).await;
    let child = run.schedule(task(json!({"child": "kept"}))).await.unwrap();
    run.resolve(complete(json!(null)), RetryPolicy::default())
        .await
        .unwrap();
    let mut run = claim_one(s).await;
    let lost = run.schedule(task(json!({"child": "lost"}))).await.unwrap();
    run.resolve(temporary("no"), RetryPolicy::default())
        .await
        .unwrap();
    assert_eq!(
        s.describe(child).await.unwrap().data,
        json!({"child": "kept"})
    );
    assert!(matches!(
        s.describe(lost).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn restart_resets_failures_and_replaces_data(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let id = s
        .schedule(task_with(
            json!({"step": 1}),
            ScheduleOptions {
                aux_data: Some(json!({"a": 1})),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    fail_once(&db, RetryPolicy::default()).await;
    fail_once(&db, RetryPolicy::default()).await;
    db.clock.set(s.describe(id).await.unwrap().next_attempt);
    let now = s.now();
    let run = claim_one(s).await;
    let r = Resolution::Restart {
        at: now + 10 * MIN,
        new_data: Some(json!({"step": 2}).to_string()),
        new_aux_data: None,
    };
    assert_eq!(
        run.resolve(r, RetryPolicy::default()).await.unwrap(),
        ResolveOutcome::Pending {
            next_attempt: now + 10 * MIN
        }
    );
    let t = s.describe(id).await.unwrap();
    assert_eq!(t.state, TaskState::Pending);
    assert_eq!((t.failures, t.iterations), (0, 3));
    assert_eq!(t.data, json!({"step": 2}));
    assert_eq!(t.aux_data, Some(json!({"a": 1})));
    assert_eq!(t.last_error, None);
    // A restart in the past runs now; new aux data replaces the old.
    db.clock.set(now + 10 * MIN);
    let run = claim_one(s).await;
    let r = Resolution::Restart {
        at: 0,
        new_data: None,
        new_aux_data: Some(json!({"b": 2}).to_string()),
    };
    assert_eq!(
        run.resolve(r, RetryPolicy::default()).await.unwrap(),
        ResolveOutcome::Pending {
            next_attempt: now + 10 * MIN
        }
    );
    assert_eq!(
        s.describe(id).await.unwrap().aux_data,
        Some(json!({"b": 2}))
    );
    // A restart of a task cancelled meanwhile is skipped: the cancellation stands.
    let run = claim_one(s).await;
    s.cancel(id, "operator").await.unwrap();
    let r = Resolution::Restart {
        at: 0,
        new_data: None,
        new_aux_data: None,
    };
    assert!(matches!(
        run.resolve(r, RetryPolicy::default()).await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert_eq!(s.describe(id).await.unwrap().state, TaskState::Cancelled);
}

async fn permanent_failure_and_cancellation_resolutions(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let a = s.schedule(task(json!({}))).await.unwrap();
    let c = s.schedule(task(json!({}))).await.unwrap();
    let run = claim_one(s).await;
    let r = Resolution::PermanentFailure {
        error: "bad address".into(),
        result: Some(json!({"code": 550}).to_string()),
    };
    assert_eq!(
        run.resolve(r, RetryPolicy::default()).await.unwrap(),
        ResolveOutcome::Failed
    );
    let run = claim_one(s).await;
    let r = Resolution::Cancellation {
        error: "not needed".into(),
    };
    assert_eq!(
        run.resolve(r, RetryPolicy::default()).await.unwrap(),
        ResolveOutcome::Cancelled
    );
    let ta = s.describe(a).await.unwrap();
    assert_eq!(
        (ta.state, ta.last_error.as_deref(), ta.result),
        (
            TaskState::Failed,
            Some("bad address"),
            Some(json!({"code": 550}))
        )
    );
    let tc = s.describe(c).await.unwrap();
    assert_eq!(
        (tc.state, tc.last_error.as_deref()),
        (TaskState::Cancelled, Some("not needed"))
    );
    // Finished tasks are never claimed again.
    db.clock.advance(100 * 24 * 60 * MIN);
    assert!(s
        .claim("n", &clusters(), 10, LEASE)
        .await
        .unwrap()
        .is_empty());
}

async fn malformed_result_json_becomes_a_temporary_failure(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let id = s.schedule(task(json!({}))).await.unwrap();
    let run = claim_one(s).await;
    let r = Resolution::Completion {
        result: "{not json".into(),
    };
    assert!(matches!(
        run.resolve(r, RetryPolicy::default()).await.unwrap(),
        ResolveOutcome::Pending { .. }
    ));
    let t = s.describe(id).await.unwrap();
    assert_eq!(t.state, TaskState::Pending);
    assert!(t.last_error.unwrap().starts_with(&format!(
        "task {id}: the resolution's result is not valid JSON"
    )));
}

/// A task claimed ahead of its runner starts later than it was claimed: whatever ends
/// its run (a completion with or without database work, a failure, a temporary failure),
/// `started_at` is the run's start, and a run that never began keeps the claim's time.
async fn started_at_is_when_the_run_began_not_the_claim(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    setup_effects_table(s).await;
    let ends = [
        ("completed alone", complete(json!({}))),
        ("completed with work", complete(json!({}))),
        (
            "failed",
            Resolution::PermanentFailure {
                error: "no".into(),
                result: None,
            },
        ),
        ("failed temporarily", temporary("later")),
    ];
    for (i, (what, end)) in ends.into_iter().enumerate() {
        let id = s.schedule(task(json!({ "i": i }))).await.unwrap();
        let claimed_at = s.now();
        let mut claimed = s.claim("node-a", &clusters(), 1, LEASE).await.unwrap();
        assert_eq!(claimed[0].task.started_at, Some(claimed_at), "{what}");
        db.clock.advance(5_000);
        let began = s.now();
        let mut run = s.begin_run(claimed.remove(0)).await.unwrap();
        if what == "completed with work" {
            exec(
                &mut run.conn().await.unwrap(),
                &format!("INSERT INTO effects VALUES ({id})"),
            )
            .await;
        }
        db.clock.advance(1_000);
        run.resolve(end, RetryPolicy::default()).await.unwrap();
        let t = s.describe(id).await.unwrap();
        assert_eq!(t.started_at, Some(began), "{what}");
        if t.state.is_finished() {
            assert_eq!(t.finished_at, Some(began + 1_000), "{what}");
        }
    }
    // A run that never began (its runner could not start it) keeps the claim's time.
    let id = s.schedule(task(json!({ "never": true }))).await.unwrap();
    let claimed_at = s.now();
    let claimed = s.claim("node-a", &clusters(), 1, LEASE).await.unwrap();
    db.clock.advance(5_000);
    s.record_failure(
        &RunFailure::new(id, claimed[0].token, "no VM"),
        RetryPolicy::default(),
    )
    .await
    .unwrap();
    assert_eq!(s.describe(id).await.unwrap().started_at, Some(claimed_at));
}

/// A statement of task code, with its parameters as JSON text.
fn statement(sql: &str, params: &str) -> TaskStatement {
    TaskStatement::execute(sql, params).unwrap()
}

/// Task SQL through the run's own path (each statement in a savepoint of its own; on
/// PostgreSQL the first opens the transaction in the same round trip): a failing
/// statement is undone alone and the run goes on; the others commit with the
/// completion, whose result is stored as sent, quotes and backslashes included.
async fn task_statements_commit_with_the_completion_and_a_failed_one_is_undone_alone(b: Backend) {
    let Some((db, id, mut run)) = one_run_with_effects(b).await else {
        return;
    };
    let s = &db.store;
    let tx = run.transaction().await.unwrap();
    let insert = statement("INSERT INTO effects VALUES ($1)", &format!("[{id}]"));
    let null = statement("INSERT INTO effects VALUES (NULL)", "[]");
    // A failing first statement (on PostgreSQL it has no savepoint: the transaction it
    // opened is rolled back), then a failing later one (rolled back to its savepoint).
    for _ in 0..2 {
        let err = tx.task_sql(&null).await.unwrap_err();
        assert!(err.to_string().to_lowercase().contains("null"), "{err}");
        let inserted = tx.task_sql(&insert).await.unwrap();
        assert_eq!(inserted, TaskSqlOutput::Changes(1));
    }
    let query = TaskStatement::query("SELECT COUNT(*) AS n FROM effects", "[]", 1 << 10).unwrap();
    let TaskSqlOutput::Rows(rows) = tx.task_sql(&query).await.unwrap() else {
        panic!("a query hands back rows");
    };
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&rows).unwrap(),
        json!([{"n": 2}])
    );
    assert_eq!(
        count(s, "SELECT COUNT(*) AS n FROM effects").await,
        0,
        "not yet committed"
    );
    let result = json!({"text": "it's a \\ back'slash, \"quoted\", ünï ✓, $$ E'x'"});
    let outcome = run
        .resolve(complete(result.clone()), RetryPolicy::default())
        .await
        .unwrap();
    assert_eq!(outcome, ResolveOutcome::Completed);
    assert_eq!(count(s, "SELECT COUNT(*) AS n FROM effects").await, 2);
    let t = s.describe(id).await.unwrap();
    assert_eq!((t.state, t.result), (TaskState::Completed, Some(result)));
    assert_eq!((t.iterations, t.lease_owner), (1, None));
}

/// A run whose task was cancelled while it ran: its completion is refused and none of
/// its statements commit.
async fn a_run_that_lost_its_lease_commits_none_of_its_statements(b: Backend) {
    let Some((db, id, mut run)) = one_run_with_effects(b).await else {
        return;
    };
    let s = &db.store;
    // Cancelled before the run writes (on SQLite the run's first write would hold the
    // write lock, and the cancel would wait for it).
    s.cancel(id, "operator").await.unwrap();
    let tx = run.transaction().await.unwrap();
    let insert = statement("INSERT INTO effects VALUES ($1)", &format!("[{id}]"));
    tx.task_sql(&insert).await.unwrap();
    assert!(matches!(
        run.resolve(complete(json!({})), RetryPolicy::default())
            .await,
        Err(StoreError::LeaseLost { .. })
    ));
    assert_eq!(count(s, "SELECT COUNT(*) AS n FROM effects").await, 0);
    assert_eq!(s.describe(id).await.unwrap().state, TaskState::Cancelled);
}

/// A run whose transaction is open but in error (a statement failed outside the
/// savepoints of task SQL, as when a kill's cancel lands between two statements) rolls
/// back, and its temporary failure retries the task as usual: it is not mistaken for a
/// transaction that task code ended, which would fail the task for good.
async fn a_run_whose_transaction_is_in_error_rolls_back_and_is_retried(b: Backend) {
    use diesel_async::SimpleAsyncConnection;
    let Some((db, id, mut run)) = one_run_with_effects(b).await else {
        return;
    };
    let s = &db.store;
    let tx = run.transaction().await.unwrap();
    let insert = statement("INSERT INTO effects VALUES ($1)", &format!("[{id}]"));
    tx.task_sql(&insert).await.unwrap();
    let failed = match tx.conn().await.unwrap() {
        warren::store::AnyConn::Postgres(c) => c.batch_execute("SELECT * FROM no_such_table").await,
        warren::store::AnyConn::Sqlite(c) => c.batch_execute("SELECT * FROM no_such_table").await,
    };
    assert!(failed.is_err());
    let outcome = run
        .resolve(temporary("it went wrong"), RetryPolicy::default())
        .await
        .unwrap();
    assert!(
        matches!(outcome, ResolveOutcome::Pending { .. }),
        "{outcome:?}"
    );
    assert_eq!(count(s, "SELECT COUNT(*) AS n FROM effects").await, 0);
    let t = s.describe(id).await.unwrap();
    assert_eq!((t.state, t.failures), (TaskState::Pending, 1));
}

/// An application's own `transaction()` on a run's connection nests in the run's
/// transaction (a savepoint): what it wrote still rolls back with the run.
async fn an_application_transaction_on_a_runs_connection_nests_in_the_run(b: Backend) {
    use diesel_async::{AsyncConnection, SimpleAsyncConnection};
    let Some((db, id, mut run)) = one_run_with_effects(b).await else {
        return;
    };
    let s = &db.store;
    let insert = format!("INSERT INTO effects VALUES ({id})");
    let written: Result<(), diesel::result::Error> = match run.conn().await.unwrap() {
        warren::store::AnyConn::Postgres(c) => {
            c.transaction(async |c| c.batch_execute(&insert).await)
                .await
        }
        warren::store::AnyConn::Sqlite(c) => {
            c.transaction(async |c| c.batch_execute(&insert).await)
                .await
        }
    };
    written.unwrap();
    run.resolve(temporary("undo it"), RetryPolicy::default())
        .await
        .unwrap();
    assert_eq!(count(s, "SELECT COUNT(*) AS n FROM effects").await, 0);
}

/// A run dropped without being resolved (its runner went away) rolls back: none of its
/// statements commit, and its connection holds no transaction for the next user (on
/// SQLite, no write lock: the next writes go through at once).
async fn a_run_dropped_unresolved_leaves_nothing_and_holds_nothing(b: Backend) {
    let Some((db, id, mut run)) = one_run_with_effects(b).await else {
        return;
    };
    let s = &db.store;
    let tx = run.transaction().await.unwrap();
    let insert = statement("INSERT INTO effects VALUES ($1)", &format!("[{id}]"));
    tx.task_sql(&insert).await.unwrap();
    drop(run);
    // A held write lock would fail these with "database is locked".
    s.schedule(task(json!({}))).await.unwrap();
    let mut conn = s.connection().await.unwrap();
    exec(&mut conn.as_any(), "INSERT INTO effects VALUES (0)").await;
    drop(conn);
    assert_eq!(count(s, "SELECT COUNT(*) AS n FROM effects").await, 1);
}
