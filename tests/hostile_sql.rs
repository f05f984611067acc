//! Task code as an adversary: SQL that tries to end the run's transaction, reach
//! files, forge Warren's own rows, poison pooled connections, outrun kills and
//! timeouts, or flood the host with logs and rows. Every body runs on SQLite and on
//! PostgreSQL, with the JavaScript guest `tests/guests/hostile.js`.

mod support;

use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use support::{count, exec, Backend, TestDb};
use warren::clock::SystemClock;
use warren::store::{NewTask, ResolveOutcome, Store, TaskRun};
use warren::task::{RetryPolicy, TaskId, TaskState};
use warren::wasm::{
    KillSwitch, LogLine, TaskCode, TaskDb, TaskInput, TaskVm, VmLimits, WasmEngine,
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn engine() -> &'static WasmEngine {
    static ENGINE: OnceLock<WasmEngine> = OnceLock::new();
    ENGINE.get_or_init(|| WasmEngine::new(support::engine_config()).expect("engine"))
}

fn hostile_code() -> Arc<TaskCode> {
    static CODE: OnceLock<Arc<TaskCode>> = OnceLock::new();
    CODE.get_or_init(|| {
        let guests = root().join("tests/guests");
        engine()
            .load("guests:hostile", &guests.join("hostile.js"), &guests)
            .expect("compile hostile.js")
    })
    .clone()
}

/// How one run of the hostile guest ended.
struct Ran {
    outcome: ResolveOutcome,
    logs: Vec<LogLine>,
    elapsed: Duration,
}

/// Schedules the hostile guest with `data`, then claims and runs it as a runner does.
async fn run_hostile(store: &Store, data: Value) -> (TaskId, Ran) {
    run_hostile_with(
        store,
        data,
        Some(Duration::from_secs(30)),
        KillSwitch::new(),
    )
    .await
}

async fn run_hostile_with(
    store: &Store,
    data: Value,
    timeout: Option<Duration>,
    kill: KillSwitch,
) -> (TaskId, Ran) {
    let (id, run) = schedule_and_claim(store, data).await;
    let ran = run_guest(store, id, run, timeout, kill, VmLimits::default())
        .await
        .resolve()
        .await;
    (id, ran)
}

/// Schedules the hostile guest with `data` and claims it, ready to run.
async fn schedule_and_claim(store: &Store, data: Value) -> (TaskId, TaskRun) {
    let id = store
        .schedule(NewTask::new("guests:hostile".parse().unwrap(), data))
        .await
        .unwrap();
    let claimed = store
        .claim("hostile-runner", &["default".to_string()], 1, 60_000)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(claimed.task.id, id, "the new task is the one due");
    (id, store.begin_run(claimed).await.unwrap())
}

async fn run_guest(
    store: &Store,
    id: TaskId,
    run: TaskRun,
    timeout: Option<Duration>,
    kill: KillSwitch,
    limits: VmLimits,
) -> Guest {
    let task = store.describe(id).await.unwrap();
    let input = TaskInput {
        id,
        task_type: "guests:hostile".into(),
        data: task.data.to_string(),
        aux_data: None,
        failures: task.failures as u32,
        iteration: task.iterations as u32,
    };
    let mut vm = TaskVm::new(engine(), hostile_code(), limits, Arc::new(SystemClock))
        .await
        .expect("instantiate");
    let started = Instant::now();
    let report = vm.run(input, TaskDb::Managed(run), timeout, kill).await;
    let elapsed = started.elapsed();
    let TaskDb::Managed(run) = report.db else {
        panic!("the run comes back")
    };
    Guest {
        run,
        end: report.end,
        logs: report.logs,
        elapsed,
    }
}

/// A run whose guest has ended, not yet resolved.
struct Guest {
    run: TaskRun,
    end: warren::wasm::RunEnd,
    logs: Vec<LogLine>,
    elapsed: Duration,
}

impl Guest {
    /// Applies the run's end as a runner does.
    async fn resolve(self) -> Ran {
        let outcome = self
            .run
            .resolve(self.end.into_resolution(), RetryPolicy::default())
            .await
            .unwrap();
        Ran {
            outcome,
            logs: self.logs,
            elapsed: self.elapsed,
        }
    }
}

/// The `results` the guest completed with.
async fn results(store: &Store, id: TaskId) -> Vec<Value> {
    let task = store.describe(id).await.unwrap();
    assert_eq!(task.state, TaskState::Completed, "{task:?}");
    task.result.unwrap()["results"].as_array().unwrap().clone()
}

fn error_of(result: &Value) -> &str {
    result["error"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error, got {result}"))
}

async fn with_effects(b: Backend) -> Option<TestDb> {
    with_effects_config(b, |_| {}).await
}

async fn with_effects_config(
    b: Backend,
    adjust: impl FnOnce(&mut warren::store::StoreConfig),
) -> Option<TestDb> {
    let db = TestDb::with_config(b, adjust).await?;
    let mut conn = db.store.connection().await.unwrap();
    exec(
        &mut conn.as_any(),
        "CREATE TABLE hostile_effects (task_id BIGINT)",
    )
    .await;
    drop(conn);
    Some(db)
}

fn insert(n: i64) -> Value {
    json!({"sql": "INSERT INTO hostile_effects (task_id) VALUES ($1)", "params": [n]})
}

async fn effects(store: &Store) -> i64 {
    count(store, "SELECT COUNT(*) AS n FROM hostile_effects").await
}

/// A task that inserts, commits and throws is retried with nothing committed: the
/// COMMIT never runs, so its work commits exactly once, with its completion.
async fn commit_inside_a_task_cannot_break_exactly_once(b: Backend) {
    let Some(db) = with_effects(b).await else {
        return;
    };
    let s = &db.store;
    let steps = json!([insert(1), {"sql": "COMMIT"}, {"sql": "END"}]);
    let (id, ran) = run_hostile(s, json!({"steps": steps, "then": "throw"})).await;
    assert!(
        matches!(ran.outcome, ResolveOutcome::Pending { .. }),
        "{:?}",
        ran.outcome
    );
    assert_eq!(
        effects(s).await,
        0,
        "the insert was rolled back with the run"
    );
    let task = s.describe(id).await.unwrap();
    let error = task.last_error.unwrap();
    assert!(
        error.contains("COMMIT is not allowed in task SQL"),
        "{error}"
    );

    let (id, ran) = run_hostile(s, json!({"steps": steps})).await;
    assert_eq!(ran.outcome, ResolveOutcome::Completed);
    let r = results(s, id).await;
    assert_eq!(r[0], json!({"ok": 1}));
    assert!(error_of(&r[1]).contains("COMMIT is not allowed"), "{r:?}");
    assert!(error_of(&r[2]).contains("COMMIT is not allowed"), "{r:?}");
    assert_eq!(effects(s).await, 1, "committed once, with the completion");
}

/// Every statement kind the policy refuses is refused before it runs, with an error
/// naming the kind; the transaction goes on and commits the allowed work.
async fn refused_statements_name_their_kind(b: Backend) {
    let Some(db) = with_effects(b).await else {
        return;
    };
    let s = &db.store;
    let dir = tempdir();
    let attached = dir.join("attached.db");
    let copied = dir.join("copied.db");
    let mut cases: Vec<(String, &str)> = vec![
        ("BEGIN".into(), "BEGIN is not allowed"),
        ("ROLLBACK".into(), "ROLLBACK is not allowed"),
        ("SAVEPOINT a".into(), "SAVEPOINT"),
        ("RELEASE a".into(), "RELEASE"),
        (
            "INSERT INTO hostile_effects VALUES (5); INSERT INTO hostile_effects VALUES (6)".into(),
            "more than one statement is not allowed",
        ),
        (
            "INSERT INTO hostile_effects VALUES (7); COMMIT".into(),
            "more than one statement",
        ),
    ];
    match b {
        Backend::Sqlite => cases.extend([
            ("PRAGMA busy_timeout = 1".to_string(), "PRAGMA busy_timeout is not allowed"),
            ("PRAGMA journal_mode = DELETE".into(), "PRAGMA journal_mode is not allowed"),
            ("PRAGMA query_only = 1".into(), "PRAGMA query_only is not allowed"),
            (
                format!("ATTACH DATABASE '{}' AS other", attached.display()),
                "ATTACH/DETACH (and VACUUM INTO) is not allowed",
            ),
            (format!("VACUUM INTO '{}'", copied.display()), ""),
            (
                "CREATE TRIGGER t AFTER INSERT ON hostile_effects BEGIN DELETE FROM hostile_effects; END"
                    .into(),
                "CREATE TRIGGER is not allowed",
            ),
        ]),
        Backend::Postgres => cases.extend([
            ("END".to_string(), "COMMIT is not allowed"),
            ("SET default_transaction_read_only = on".into(), "SET is not allowed"),
            ("RESET ALL".into(), "RESET is not allowed"),
            ("DISCARD ALL".into(), "DISCARD is not allowed"),
            ("LISTEN hostile".into(), "LISTEN is not allowed"),
            ("PREPARE p AS SELECT 1".into(), "PREPARE is not allowed"),
            (
                format!("COPY hostile_effects TO '{}'", copied.display()),
                "COPY is not allowed",
            ),
            ("COPY hostile_effects FROM PROGRAM 'id'".into(), "COPY is not allowed"),
            ("DO $$ BEGIN COMMIT; END $$".into(), "DO is not allowed"),
            ("CALL hostile()".into(), "CALL is not allowed"),
            (
                "CREATE FUNCTION hostile() RETURNS int AS 'SELECT 1' LANGUAGE sql".into(),
                "CREATE FUNCTION/PROCEDURE is not allowed",
            ),
            ("SELECT lo_import('/etc/hostname')".into(), "calling lo_import is not allowed"),
            ("VACUUM".into(), "VACUUM/ANALYZE is not allowed"),
        ]),
    }
    let mut steps: Vec<Value> = cases.iter().map(|(sql, _)| json!({"sql": sql})).collect();
    steps.push(insert(1));
    let (id, ran) = run_hostile(s, json!({ "steps": steps })).await;
    assert_eq!(ran.outcome, ResolveOutcome::Completed);
    let r = results(s, id).await;
    for ((sql, expected), result) in cases.iter().zip(&r) {
        let error = error_of(result);
        assert!(error.contains(expected), "{sql}: {error}");
    }
    assert_eq!(r.last().unwrap(), &json!({"ok": 1}));
    assert_eq!(effects(s).await, 1, "only the allowed insert committed");
    assert!(!attached.exists(), "ATTACH created {}", attached.display());
    assert!(
        !copied.exists(),
        "a file was written at {}",
        copied.display()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Warren's own tables are out of reach, read or write, however they are named.
async fn warren_tables_are_off_limits(b: Backend) {
    let Some(db) = with_effects(b).await else {
        return;
    };
    let s = &db.store;
    let later = warren::store::ScheduleOptions {
        not_before: Some(s.now() + 3_600_000),
        ..Default::default()
    };
    let victim = s
        .schedule(NewTask::new("other:victim".parse().unwrap(), json!({})).with_options(later))
        .await
        .unwrap();
    let forge = format!(
        "UPDATE warren_tasks SET state = 'completed', result = '{{\"forged\":true}}' WHERE id = {victim}"
    );
    let steps = json!([
        {"sql": forge},
        {"sql": "SELECT id, state FROM warren_tasks", "query": true},
        {"sql": "WITH x AS (SELECT id FROM WARREN_TASKS) SELECT * FROM x", "query": true},
        {"sql": "SELECT 1 AS one WHERE EXISTS (SELECT 1 FROM warren_task_metadata)", "query": true},
        {"sql": "DELETE FROM warren_nodes"},
        {"sql": "DROP TABLE warren_settings"},
        {"sql": "CREATE INDEX hostile_idx ON warren_tasks (state)"},
    ]);
    let (id, ran) = run_hostile(s, json!({ "steps": steps })).await;
    assert_eq!(ran.outcome, ResolveOutcome::Completed);
    for result in results(s, id).await {
        let error = error_of(&result);
        assert!(
            error.contains("Warren's own tables are off limits"),
            "{error}"
        );
    }
    let victim = s.describe(victim).await.unwrap();
    assert_eq!((victim.state, victim.result), (TaskState::Pending, None));
}

/// If a run's transaction ends under it anyway, the run fails for good (its effects
/// may have committed) and its connection is not reused: found by the next statement.
async fn a_transaction_ended_under_the_run_fails_it_for_good(b: Backend) {
    ended_under_the_run(b, Then::AnotherStatement).await;
}

/// The same when the statement that ended the transaction was the run's last: the
/// completion finds it (by the check in its one message) and is not written. Only
/// PostgreSQL defers that finding: SQLite's guard finds the end within the statement
/// that caused it (the case above, and `sqlite_guard.rs`'s tests), so no completion
/// ever follows it there.
async fn a_transaction_ended_by_the_last_statement_fails_the_completion(b: Backend) {
    if b == Backend::Postgres {
        ended_under_the_run(b, Then::Complete).await;
    }
}

/// What the run does after its transaction ended under it.
#[derive(Clone, Copy, PartialEq)]
enum Then {
    AnotherStatement,
    Complete,
}

async fn ended_under_the_run(b: Backend, then: Then) {
    let Some(db) = with_effects(b).await else {
        return;
    };
    let s = &db.store;
    let (id, mut run) = schedule_and_claim(s, json!({})).await;
    let tx = run.transaction().await.unwrap();
    let statement = |n: u32| {
        let sql = format!("INSERT INTO hostile_effects VALUES ({n})");
        warren::store::TaskStatement::execute(sql, "[]").unwrap()
    };
    tx.task_sql(&statement(1)).await.unwrap();
    // What a statement the policy failed to stop would do: end the transaction.
    exec(&mut tx.conn().await.unwrap(), "COMMIT").await;
    let mut committed = 1;
    if then == Then::AnotherStatement {
        // The next statement finds it. On PostgreSQL it is sent in the same round trip
        // as the RELEASE that finds it, so it ran on its own (once).
        let err = tx.task_sql(&statement(2)).await.unwrap_err();
        assert!(
            matches!(err, warren::store::TaskSqlError::TransactionEnded),
            "{err:?}"
        );
        assert!(tx.task_ended_it());
        if b == Backend::Postgres {
            committed = 2;
        }
        // Nothing runs after that.
        let err = tx.task_sql(&statement(3)).await.unwrap_err();
        assert!(
            matches!(err, warren::store::TaskSqlError::TransactionEnded),
            "{err:?}"
        );
    }
    let outcome = run
        .resolve(
            warren::task::Resolution::Completion {
                result: "{}".into(),
            },
            RetryPolicy::default(),
        )
        .await
        .unwrap();
    assert_eq!(outcome, ResolveOutcome::Failed);
    let task = s.describe(id).await.unwrap();
    assert_eq!(task.state, TaskState::Failed);
    assert!(task
        .last_error
        .unwrap()
        .contains("task code ended its transaction"));
    assert_eq!(
        effects(s).await,
        committed,
        "what committed before the run found the end stays, once: no retry repeats it"
    );
}

/// A connection that task SQL changed beyond the run is closed, not handed on: with
/// a pool of one connection, the next run sees a fresh session.
async fn connections_come_back_clean(b: Backend) {
    let Some(db) = with_effects_config(b, |c| c.max_connections = 1).await else {
        return;
    };
    let s = &db.store;
    let mut poison = vec![json!({"sql": "CREATE TEMP TABLE hostile_tmp (a INT)"})];
    if b == Backend::Postgres {
        poison.push(json!({
            "sql": "SELECT set_config('default_transaction_read_only', 'on', false) AS v",
            "query": true
        }));
        poison.push(json!({"sql": "SELECT pg_advisory_lock(42) AS v", "query": true}));
    }
    let (id, ran) = run_hostile(s, json!({ "steps": poison })).await;
    assert_eq!(ran.outcome, ResolveOutcome::Completed);
    for result in results(s, id).await {
        assert!(result.get("error").is_none(), "{result}");
    }
    let check = vec![
        insert(1),
        json!({"sql": "SELECT * FROM hostile_tmp", "query": true}),
    ];
    let (id, ran) = run_hostile(s, json!({ "steps": check })).await;
    assert_eq!(ran.outcome, ResolveOutcome::Completed);
    let r = results(s, id).await;
    assert_eq!(r[0], json!({"ok": 1}), "the session is writable again");
    assert!(
        error_of(&r[1]).contains("hostile_tmp"),
        "the temporary table is gone: {}",
        r[1]
    );
    if b == Backend::Postgres {
        // The server lets go of a closed session's locks once its backend has seen the
        // socket close: soon, but not by the time the next run starts. Had the session
        // gone back to the pool, another session would never get the lock.
        let url = db.url.clone();
        let free = || {
            let url = url.clone();
            async move { advisory_lock_is_free(&url, 42).await }
        };
        warren_testkit::eventually(
            "the advisory lock went with its session",
            Duration::from_secs(30),
            free,
        )
        .await;
    }
    assert_eq!(effects(s).await, 1);
}

/// A run whose connection is lost between two statements is not taken for one whose
/// transaction task code ended: nothing of it committed, so it is retried, not failed
/// for good. (PostgreSQL: a SQLite connection is a file, not a socket.)
async fn a_lost_connection_is_not_an_ended_transaction(b: Backend) {
    if b != Backend::Postgres {
        return;
    }
    let Some(db) = with_effects(b).await else {
        return;
    };
    let s = &db.store;
    let (id, mut run) = schedule_and_claim(s, json!({})).await;
    let tx = run.transaction().await.unwrap();
    let statement = |sql: &str| warren::store::TaskStatement::execute(sql, "[]").unwrap();
    tx.task_sql(&statement("INSERT INTO hostile_effects VALUES (1)"))
        .await
        .unwrap();
    let pid =
        warren::store::TaskStatement::query("SELECT pg_backend_pid() AS pid", "[]", 1024).unwrap();
    let warren::store::TaskSqlOutput::Rows(rows) = tx.task_sql(&pid).await.unwrap() else {
        panic!("rows");
    };
    let pid = serde_json::from_str::<Value>(&rows).unwrap()[0]["pid"]
        .as_i64()
        .unwrap();
    let mut conn = s.connection().await.unwrap();
    exec(
        &mut conn.as_any(),
        &format!("SELECT pg_terminate_backend({pid})"),
    )
    .await;
    drop(conn);
    let err = tx
        .task_sql(&statement("INSERT INTO hostile_effects VALUES (2)"))
        .await
        .unwrap_err();
    assert!(
        !matches!(err, warren::store::TaskSqlError::TransactionEnded),
        "{err:?}"
    );
    assert!(!tx.task_ended_it());
    // Resolving on a dead connection fails: the task keeps running until its lease
    // expires, then runs again.
    assert!(run
        .resolve(
            warren::task::Resolution::Completion {
                result: "{}".into()
            },
            RetryPolicy::default()
        )
        .await
        .is_err());
    assert_eq!(s.describe(id).await.unwrap().state, TaskState::Running);
    assert_eq!(effects(s).await, 0);
}

/// Task statements are prepared once per connection and reused, but task code that
/// sends ever new texts cannot make a connection keep them all: past a bound they are
/// prepared for one use only (`MAX_PREPARED_STATEMENTS`), and the run still works.
async fn ever_new_statements_do_not_fill_the_connection(b: Backend) {
    let Some(db) = with_effects_config(b, |c| c.max_connections = 1).await else {
        return;
    };
    let s = &db.store;
    let texts = warren::store::MAX_PREPARED_STATEMENTS + 100;
    let mut steps: Vec<Value> = (0..texts)
        .map(|n| json!({"sql": format!("SELECT {n} AS n WHERE false")}))
        .collect();
    if b == Backend::Postgres {
        steps.push(
            json!({"sql": "SELECT count(*) AS n FROM pg_prepared_statements", "query": true}),
        );
    }
    let (id, ran) = run_hostile(s, json!({ "steps": steps })).await;
    assert_eq!(ran.outcome, ResolveOutcome::Completed);
    let r = results(s, id).await;
    assert!(
        r[..texts].iter().all(|step| step.get("ok").is_some()),
        "{:?}",
        &r[..3]
    );
    if b == Backend::Postgres {
        // The bound counts what diesel prepares for reuse; the driver may hold one or
        // two more of its own.
        let held = r[texts]["rows"][0]["n"].as_i64().unwrap();
        let most = warren::store::MAX_PREPARED_STATEMENTS as i64 + 5;
        assert!(
            (texts as i64 / 2..=most).contains(&held),
            "the session keeps {held} prepared statements"
        );
    }
}

/// A prepared statement that a change of its table broke for good on its connection
/// ("cached plan must not change result type") fails its run once; the connection is
/// then closed, so the next run prepares it afresh.
async fn a_statement_broken_by_a_table_change_is_prepared_afresh(b: Backend) {
    let Some(db) = with_effects_config(b, |c| c.max_connections = 1).await else {
        return;
    };
    let s = &db.store;
    let mut conn = s.connection().await.unwrap();
    exec(&mut conn.as_any(), "CREATE TABLE hostile_shape (a INT)").await;
    exec(&mut conn.as_any(), "INSERT INTO hostile_shape VALUES (1)").await;
    drop(conn);
    // Run as `execute`: a query's rows come wrapped in JSON, whose type a new column
    // does not change.
    let select = json!({"steps": [{"sql": "SELECT * FROM hostile_shape"}]});
    let (id, _) = run_hostile(s, select.clone()).await;
    assert!(results(s, id).await[0].get("ok").is_some());
    let mut conn = s.connection().await.unwrap();
    exec(
        &mut conn.as_any(),
        "ALTER TABLE hostile_shape ADD COLUMN b INT",
    )
    .await;
    drop(conn);
    let (id, _) = run_hostile(s, select.clone()).await;
    let second = &results(s, id).await[0];
    match b {
        Backend::Postgres => assert!(
            error_of(second).contains("cached plan must not change result type"),
            "{second}"
        ),
        Backend::Sqlite => assert!(second.get("ok").is_some(), "{second}"),
    }
    let (id, _) = run_hostile(s, select).await;
    let third = &results(s, id).await[0];
    assert!(third.get("ok").is_some(), "{third}");
}

/// Whether session advisory lock `key` is free, asked from a session of its own.
async fn advisory_lock_is_free(url: &str, key: i64) -> bool {
    use diesel_async::{AsyncConnection, RunQueryDsl};
    #[derive(diesel::QueryableByName)]
    struct Free {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        free: bool,
    }
    let mut other = diesel_async::AsyncPgConnection::establish(url)
        .await
        .unwrap();
    let rows: Vec<Free> =
        diesel::sql_query(format!("SELECT pg_try_advisory_xact_lock({key}) AS free"))
            .load(&mut other)
            .await
            .unwrap();
    rows[0].free
}

/// A statement that would run for seconds, or waits for a lock, ends soon after the
/// run's timeout or kill: the database stops it, and the runner is free again.
async fn timeouts_and_kills_reach_sql(b: Backend) {
    let Some(db) = with_effects(b).await else {
        return;
    };
    let s = &db.store;
    let long = match b {
        Backend::Postgres => "SELECT pg_sleep(6) AS slept",
        // Counts to a billion: minutes of work for SQLite.
        Backend::Sqlite => {
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) SELECT count(*) AS n FROM c"
        }
    };
    let data = json!({"steps": [{"sql": long, "query": true}], "then": "throw"});
    let (id, ran) = run_hostile_with(
        s,
        data.clone(),
        Some(Duration::from_millis(500)),
        KillSwitch::new(),
    )
    .await;
    eprintln!(
        "{b:?}: a 500 ms timeout ended the run after {:?}",
        ran.elapsed
    );
    assert!(
        ran.elapsed < Duration::from_secs(3),
        "a 500 ms timeout ended the run after {:?}",
        ran.elapsed
    );
    assert!(matches!(ran.outcome, ResolveOutcome::Pending { .. }));
    let error = s.describe(id).await.unwrap().last_error.unwrap();
    assert!(
        error.contains("timed out") || error.contains("time"),
        "{error}"
    );

    // A kill while the statement waits for a lock another session holds. The task is
    // scheduled and claimed first: on SQLite the holder blocks every writer.
    let (id, run) = schedule_and_claim(s, json!({"steps": [insert(1)], "then": "throw"})).await;
    let mut holder = s.connection().await.unwrap();
    holder.begin().await.unwrap();
    exec(
        &mut holder.as_any(),
        "INSERT INTO hostile_effects VALUES (99)",
    )
    .await;
    if b == Backend::Postgres {
        exec(
            &mut holder.as_any(),
            "LOCK TABLE hostile_effects IN ACCESS EXCLUSIVE MODE",
        )
        .await;
    }
    let kill = KillSwitch::new();
    let killer = {
        let kill = kill.clone();
        let url = db.url.clone();
        std::thread::spawn(move || {
            wait_until_blocked(b, &url);
            kill.kill();
            Instant::now()
        })
    };
    let guest = run_guest(s, id, run, None, kill, VmLimits::default()).await;
    let killed_at = killer.join().unwrap();
    let after_kill = killed_at.elapsed();
    eprintln!("{b:?}: the run blocked on a lock ended {after_kill:?} after the kill");
    assert!(
        after_kill < Duration::from_secs(1),
        "the run ended {after_kill:?} after the kill"
    );
    holder.rollback().await.unwrap();
    let ran = guest.resolve().await;
    assert!(
        matches!(ran.outcome, ResolveOutcome::Pending { .. }),
        "{:?}",
        ran.outcome
    );
    assert_eq!(effects(s).await, 0);
}

/// Waits until a session of the database waits for a lock (PostgreSQL), or gives the
/// guest a moment to start its statement (SQLite shows no waiting sessions).
fn wait_until_blocked(b: Backend, url: &str) {
    match b {
        Backend::Sqlite => std::thread::sleep(Duration::from_millis(300)),
        Backend::Postgres => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
                #[derive(diesel::QueryableByName)]
                struct N {
                    #[diesel(sql_type = diesel::sql_types::BigInt)]
                    n: i64,
                }
                let mut c = AsyncPgConnection::establish(url).await.unwrap();
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    let rows: Vec<N> = diesel::sql_query(
                        "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
                    )
                    .load(&mut c)
                    .await
                    .unwrap();
                    if rows[0].n > 0 || Instant::now() > deadline {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            });
        }
    }
}

/// Rows, results, errors and logs handed from task code to the host are bounded.
async fn host_memory_is_bounded(b: Backend) {
    let Some(db) = with_effects(b).await else {
        return;
    };
    let s = &db.store;
    let (small, huge) = match b {
        Backend::Sqlite => ("SELECT x'0102ff' AS b", "SELECT randomblob(20000000) AS b"),
        Backend::Postgres => (
            "SELECT '\\x0102ff'::bytea AS b",
            "SELECT decode(repeat('ab', 20000000), 'hex') AS b",
        ),
    };
    let steps = json!([{"sql": small, "query": true}, {"sql": huge, "query": true}]);
    let (id, ran) = run_hostile(
        s,
        json!({"steps": steps, "logLines": 2000, "logBytes": 1024}),
    )
    .await;
    assert_eq!(ran.outcome, ResolveOutcome::Completed);
    let r = results(s, id).await;
    assert_eq!(
        r[0],
        json!({"rows": [{"b": "\\x0102ff"}]}),
        "binary values come back as \\x hex text on both backends"
    );
    assert!(
        error_of(&r[1]).contains("larger than 16777216 bytes of JSON"),
        "{}",
        r[1]
    );
    let kept: usize = ran.logs.iter().map(|l| l.message.len()).sum();
    assert!(kept <= 300 << 10, "{kept} bytes of log kept");
    let last = &ran.logs.last().unwrap().message;
    assert!(last.contains("dropped"), "{last}");

    let (id, ran) = run_hostile(s, json!({"resultBytes": 2 << 20})).await;
    assert!(matches!(ran.outcome, ResolveOutcome::Pending { .. }));
    let error = s.describe(id).await.unwrap().last_error.unwrap();
    assert!(error.contains("at most 1048576 are stored"), "{error}");
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "warren-hostile-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

conformance!(
    commit_inside_a_task_cannot_break_exactly_once,
    refused_statements_name_their_kind,
    warren_tables_are_off_limits,
    a_transaction_ended_under_the_run_fails_it_for_good,
    a_transaction_ended_by_the_last_statement_fails_the_completion,
    ever_new_statements_do_not_fill_the_connection,
    a_lost_connection_is_not_an_ended_transaction,
    a_statement_broken_by_a_table_change_is_prepared_afresh,
    connections_come_back_clean,
    timeouts_and_kills_reach_sql,
    a_transaction_open_past_its_limit_is_stopped_and_rolled_back,
    host_memory_is_bounded,
);

/// `maxtransaction`: a run whose transaction stays open past the limit, whether the
/// guest computes meanwhile or its statement waits in the database, is stopped and
/// rolled back like a timeout, and retried; the limit counts from the first database
/// call, so work before it does not use the limit up.
async fn a_transaction_open_past_its_limit_is_stopped_and_rolled_back(b: Backend) {
    let Some(db) = with_effects(b).await else {
        return;
    };
    let s = &db.store;
    let limit = VmLimits {
        max_transaction: Some(Duration::from_millis(300)),
        ..VmLimits::default()
    };
    let run_limited = |data: Value| {
        async move {
            let (id, run) = schedule_and_claim(s, data).await;
            let kill = KillSwitch::new();
            let ran = run_guest(s, id, run, None, kill.clone(), limit)
                .await
                .resolve()
                .await;
            // The runner's view: since when the run's transaction was open.
            assert!(kill.transaction_open_for().is_some(), "the run used SQL");
            (id, ran)
        }
    };
    let long = match b {
        Backend::Postgres => "SELECT pg_sleep(6) AS slept",
        Backend::Sqlite => {
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) SELECT count(*) AS n FROM c"
        }
    };
    for data in [
        json!({"steps": [insert(1)], "spinMs": 10_000}),
        json!({"steps": [insert(2), {"sql": long, "query": true}]}),
    ] {
        let (id, ran) = run_limited(data.clone()).await;
        assert!(
            ran.elapsed < Duration::from_secs(3),
            "{b:?} {data}: a 300 ms transaction limit ended the run after {:?}",
            ran.elapsed
        );
        assert!(
            matches!(ran.outcome, ResolveOutcome::Pending { .. }),
            "{b:?} {data}: retried"
        );
        let error = s.describe(id).await.unwrap().last_error.unwrap();
        assert!(
            error.contains("transaction was open longer than its limit of 300 ms"),
            "{b:?} {data}: {error}"
        );
        assert_eq!(effects(s).await, 0, "{b:?} {data}: rolled back");
        s.cancel(id, "done with").await.unwrap();
    }
    // Half a second of work before the first statement, then a quick transaction.
    let (id, ran) = run_limited(json!({"spinBeforeMs": 500, "steps": [insert(3)]})).await;
    assert!(
        matches!(ran.outcome, ResolveOutcome::Completed),
        "{b:?}: {:?}",
        s.describe(id).await.unwrap().last_error
    );
    assert_eq!(effects(s).await, 1);
}
