//! Runs and claims on the connections of a thread (PostgreSQL; SQLite has none, and its
//! runs take the store's pool): they commit exactly as on the store's pool, give their
//! connection back, never wait for one, and close one they abandon.

use crate::support::conformance::*;
use warren::store::{TaskRun, ThreadConnections};

crate::conformance!(
    runs_on_a_threads_connections_commit_once_and_give_the_connection_back,
    a_run_that_finds_its_threads_connections_taken_uses_the_stores_pool,
    a_run_dropped_midway_closes_its_threads_connection,
    an_ephemeral_transaction_on_a_threads_connections_commits_and_gives_it_back,
    claims_on_a_threads_connections_reuse_one,
);

/// The connections of a thread with one runner: `Some` on PostgreSQL only.
fn one_runner_thread(store: &Store, b: Backend) -> Option<ThreadConnections> {
    let thread = store.thread_connections().unwrap();
    assert_eq!(thread.is_some(), b == Backend::Postgres);
    if let Some(thread) = &thread {
        assert_eq!((thread.open(), thread.max()), (0, 0));
        thread.add_user();
        assert_eq!((thread.open(), thread.max()), (0, 1));
    }
    thread
}

/// A database with the `effects` table, and the connections of a thread with one
/// runner (`None` on SQLite); `None` when the backend is not available.
async fn with_effects_and_a_thread(b: Backend) -> Option<(TestDb, Option<ThreadConnections>)> {
    let db = TestDb::new(b).await?;
    setup_effects_table(&db.store).await;
    let thread = one_runner_thread(&db.store, b);
    Some((db, thread))
}

/// Schedules a task and begins its run on `thread`.
async fn run_on(store: &Store, thread: &Option<ThreadConnections>) -> (TaskId, TaskRun) {
    store.schedule(task(json!({}))).await.unwrap();
    next_run_on(store, thread).await
}

/// Claims the next due task and begins its run on `thread`.
async fn next_run_on(store: &Store, thread: &Option<ThreadConnections>) -> (TaskId, TaskRun) {
    let mut claimed = store.claim("node-a", &clusters(), 1, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 1, "expected one due task");
    let run = store
        .begin_run_on(claimed.remove(0), thread.clone())
        .await
        .unwrap();
    (run.claimed().task.id, run)
}

/// Inserts the task's row into `effects` in the run's transaction.
async fn insert_effect(run: &mut TaskRun, id: TaskId) {
    let tx = run.transaction().await.unwrap();
    let insert =
        TaskStatement::execute("INSERT INTO effects VALUES ($1)", &format!("[{id}]")).unwrap();
    tx.task_sql(&insert).await.unwrap();
}

/// Connections of `thread` open now (none on SQLite).
fn open(thread: &Option<ThreadConnections>) -> usize {
    thread.as_ref().map_or(0, ThreadConnections::open)
}

async fn runs_on_a_threads_connections_commit_once_and_give_the_connection_back(b: Backend) {
    let Some((db, thread)) = with_effects_and_a_thread(b).await else {
        return;
    };
    let s = &db.store;
    let on_thread = usize::from(thread.is_some());
    for n in 1..=3 {
        let (id, mut run) = run_on(s, &thread).await;
        insert_effect(&mut run, id).await;
        assert_eq!(
            open(&thread),
            on_thread,
            "the run's transaction is on the thread"
        );
        // Not visible outside the run's transaction before it commits.
        assert_eq!(count(s, "SELECT COUNT(*) AS n FROM effects").await, n - 1);
        let outcome = run
            .resolve(complete(json!({"n": n})), RetryPolicy::default())
            .await
            .unwrap();
        assert_eq!(outcome, ResolveOutcome::Completed);
        assert_eq!(count(s, "SELECT COUNT(*) AS n FROM effects").await, n);
        let t = s.describe(id).await.unwrap();
        assert_eq!(
            (t.state, t.result),
            (TaskState::Completed, Some(json!({"n": n})))
        );
        // The connection went back: the next run reuses it instead of opening one.
        assert_eq!(open(&thread), on_thread);
    }
}

async fn a_run_that_finds_its_threads_connections_taken_uses_the_stores_pool(b: Backend) {
    let Some((db, thread)) = with_effects_and_a_thread(b).await else {
        return;
    };
    let s = &db.store;
    for _ in 0..2 {
        s.schedule(task(json!({}))).await.unwrap();
    }
    // Both claimed before any run writes (on SQLite a claim waits for the writer).
    let mut claimed = s.claim("node-a", &clusters(), 2, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 2, "expected two due tasks");
    let mut begin = async || {
        let run = s.begin_run_on(claimed.remove(0), thread.clone());
        let run = run.await.unwrap();
        (run.claimed().task.id, run)
    };
    let (first_id, mut first) = begin().await;
    let (second_id, mut second) = begin().await;
    insert_effect(&mut first, first_id).await;
    let complete_first = async |first: TaskRun| {
        let outcome = first.resolve(complete(json!(1)), RetryPolicy::default());
        assert_eq!(outcome.await.unwrap(), ResolveOutcome::Completed);
    };
    let mut first = Some(first);
    // The thread's one connection carries the first run's open transaction: the second
    // run must not wait for it (it would wait forever: the first ends only after it).
    if b == Backend::Sqlite {
        // SQLite has one writer: the second run's write would wait for the first's.
        complete_first(first.take().unwrap()).await;
    }
    tokio::time::timeout(
        Duration::from_secs(30),
        insert_effect(&mut second, second_id),
    )
    .await
    .expect("the second run waited for the thread's connection");
    assert_eq!(open(&thread), usize::from(thread.is_some()));
    second
        .resolve(complete(json!(2)), RetryPolicy::default())
        .await
        .unwrap();
    if let Some(first) = first {
        complete_first(first).await;
    }
    assert_eq!(count(s, "SELECT COUNT(*) AS n FROM effects").await, 2);
    for id in [first_id, second_id] {
        assert_eq!(s.describe(id).await.unwrap().state, TaskState::Completed);
    }
}

async fn a_run_dropped_midway_closes_its_threads_connection(b: Backend) {
    let Some((db, thread)) = with_effects_and_a_thread(b).await else {
        return;
    };
    let s = &db.store;
    let (id, mut run) = run_on(s, &thread).await;
    insert_effect(&mut run, id).await;
    let token = run.claimed().token;
    drop(run);
    // Closed, not given back with its transaction open: nothing of the run committed.
    assert_eq!(open(&thread), 0);
    assert_eq!(count(s, "SELECT COUNT(*) AS n FROM effects").await, 0);
    // The task runs again once its lease is given up; the thread opens a new connection.
    assert_eq!(s.release_claims(&[(id, token)]).await.unwrap(), 1);
    let (again_id, mut again) = next_run_on(s, &thread).await;
    assert_eq!(again_id, id);
    insert_effect(&mut again, id).await;
    assert_eq!(open(&thread), usize::from(thread.is_some()));
    again
        .resolve(complete(json!({})), RetryPolicy::default())
        .await
        .unwrap();
    assert_eq!(count(s, "SELECT COUNT(*) AS n FROM effects").await, 1);
    assert_eq!(s.describe(id).await.unwrap().state, TaskState::Completed);
}

/// An ephemeral or scheduled task's transaction (opened by its first SQL statement)
/// takes the thread's connection as a managed run's does.
async fn an_ephemeral_transaction_on_a_threads_connections_commits_and_gives_it_back(b: Backend) {
    let Some((db, thread)) = with_effects_and_a_thread(b).await else {
        return;
    };
    let s = &db.store;
    let on_thread = usize::from(thread.is_some());
    for n in 1..=2 {
        let mut tx = s.begin_transaction_on(thread.as_ref()).await.unwrap();
        let insert = TaskStatement::execute("INSERT INTO effects VALUES ($1)", &format!("[{n}]"));
        tx.task_sql(&insert.unwrap()).await.unwrap();
        assert_eq!(open(&thread), on_thread, "the transaction is on the thread");
        tx.commit().await.unwrap();
        assert_eq!(count(s, "SELECT COUNT(*) AS n FROM effects").await, n);
        assert_eq!(open(&thread), on_thread, "given back, not closed");
    }
}

/// The queue's claims on its thread's connections: each claim takes the same one.
async fn claims_on_a_threads_connections_reuse_one(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let thread = one_runner_thread(s, b);
    let on_thread = usize::from(thread.is_some());
    let mut ids = HashSet::new();
    for _ in 0..2 {
        ids.insert(s.schedule(task(json!({}))).await.unwrap());
    }
    let (mut claimed, clusters) = (HashSet::new(), clusters());
    for _ in 0..2 {
        let tasks = s.claim_on("node-a", &clusters, 1, LEASE, thread.as_ref());
        let tasks = tasks.await.unwrap();
        assert_eq!(tasks.len(), 1);
        claimed.insert(tasks[0].task.id);
        assert_eq!(
            open(&thread),
            on_thread,
            "claimed on the thread's connection"
        );
    }
    assert_eq!(claimed, ids, "each task claimed once");
    let none_left = s.claim_on("node-a", &clusters, 1, LEASE, thread.as_ref());
    assert!(none_left.await.unwrap().is_empty());
}
