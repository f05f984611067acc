//! The WebAssembly host: loading task code (WAT and JavaScript), reusable VMs, kills,
//! timeouts, memory limits, and task SQL on the run's own transaction (both backends).
//!
//! JavaScript guests are compiled here from `tests/guests/*.js` with the toolkit
//! embedded in warren, installed under the tests' cache folder (`warren_testkit::test_cache_dir`) on first use (it
//! needs Node.js 18 or later and npm); nothing is precompiled.

mod support;

use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use support::{count, exec, Backend, TestDb};
use warren::clock::SystemClock;
use warren::store::{NewTask, ResolveOutcome, Store, StoreConfig};
use warren::task::{Resolution, RetryPolicy, TaskId, TaskState};
use warren::wasm::{
    FailureCause, KillSwitch, RunEnd, TaskCode, TaskDb, TaskInput, TaskVm, VmLimits, WasmEngine,
    WasmError,
};
use warren_testkit::eventually;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn guests() -> PathBuf {
    root().join("tests/guests")
}

/// One engine for the whole test binary; compiled components are cached under target/.
fn engine() -> &'static WasmEngine {
    static ENGINE: OnceLock<WasmEngine> = OnceLock::new();
    ENGINE.get_or_init(|| WasmEngine::new(support::engine_config()).expect("engine"))
}

fn load(file: &str) -> Arc<TaskCode> {
    let dir = if file.ends_with(".wat") {
        guests().join("wat")
    } else {
        guests()
    };
    engine()
        .load(&format!("guests:{file}"), &dir.join(file), &guests())
        .unwrap_or_else(|e| panic!("load {file}: {e}"))
}

async fn vm(file: &str) -> TaskVm {
    vm_with(file, VmLimits::default()).await
}

async fn vm_with(file: &str, limits: VmLimits) -> TaskVm {
    TaskVm::new(engine(), load(file), limits, Arc::new(SystemClock))
        .await
        .expect("instantiate")
}

fn input(data: Value) -> TaskInput {
    TaskInput {
        id: TaskId(7),
        task_type: "guests:test".into(),
        data: data.to_string(),
        aux_data: None,
        failures: 0,
        iteration: 0,
    }
}

async fn run(vm: &mut TaskVm, data: Value) -> RunEnd {
    vm.run(
        input(data),
        TaskDb::None,
        Some(Duration::from_secs(30)),
        KillSwitch::new(),
    )
    .await
    .end
}

fn completion(end: &RunEnd) -> Value {
    match end {
        RunEnd::Resolved(Resolution::Completion { result }) => {
            serde_json::from_str(result).unwrap()
        }
        other => panic!("expected a completion, got {other:?}"),
    }
}

fn temporary_error(end: &RunEnd) -> (String, Option<String>) {
    match end {
        RunEnd::Resolved(Resolution::TemporaryFailure { error, stack, .. }) => {
            (error.clone(), stack.clone())
        }
        other => panic!("expected a temporary failure, got {other:?}"),
    }
}

#[tokio::test]
async fn wat_component_completes_and_echoes() {
    let mut v = vm("complete.wat").await;
    assert_eq!(completion(&run(&mut v, json!({})).await), json!({}));
    // Built against the 0.2.0 world, it calls the 0.2.0 host interface: served by the
    // host's 0.2.1 one.
    let mut v = vm("old_world_host.wat").await;
    assert_eq!(completion(&run(&mut v, json!({})).await), json!({}));
    let mut v = vm("echo.wat").await;
    assert_eq!(
        completion(&run(&mut v, json!({"a": [1, 2]})).await),
        json!({"a": [1, 2]})
    );
    let mut v = vm("temporary_failure.wat").await;
    match run(&mut v, json!({})).await {
        RunEnd::Resolved(Resolution::TemporaryFailure {
            error, next_retry, ..
        }) => {
            assert_eq!((error.as_str(), next_retry), ("wat says no", Some(7)));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn code_that_does_not_implement_the_world_is_refused_at_load() {
    let path = guests().join("wat/missing_export.wat");
    let err = engine()
        .load("guests:broken", &path, &guests())
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, WasmError::Invalid { .. }), "{text}");
    assert!(text.contains("missing_export.wat"), "{text}");
    assert!(
        text.contains("run-task"),
        "the message should name the missing export: {text}"
    );
    let err = engine()
        .load("guests:nothing", &guests().join("nothing.wasm"), &guests())
        .unwrap_err();
    assert!(
        err.to_string().starts_with("cannot read task code"),
        "{err}"
    );
}

#[tokio::test]
async fn a_trap_is_a_failure_and_retires_the_vm() {
    let mut v = vm("trap.wat").await;
    match run(&mut v, json!({})).await {
        RunEnd::Failed {
            error,
            stack,
            cause,
        } => {
            assert!(error.starts_with("task trapped"), "{error}");
            assert!(stack.unwrap().contains("unreachable"));
            assert_eq!(cause, FailureCause::Trapped);
        }
        other => panic!("{other:?}"),
    }
    assert!(!v.is_reusable());
}

#[tokio::test]
async fn an_endless_loop_is_stopped_by_its_timeout() {
    for file in ["spin.wat", "infinite_loop.js"] {
        let mut v = vm(file).await;
        let started = Instant::now();
        let report = v
            .run(
                input(json!({})),
                TaskDb::None,
                Some(Duration::from_millis(100)),
                KillSwitch::new(),
            )
            .await;
        match report.end {
            RunEnd::Failed { error, cause, .. } => {
                assert_eq!(cause, FailureCause::TimedOut);
                assert_eq!(error, "task has timed out after 100 ms");
            }
            other => panic!("{file}: {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{file}");
        assert!(!v.is_reusable());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_from_another_thread_stops_the_guest() {
    let mut v = vm("infinite_loop.js").await;
    let kill = KillSwitch::new();
    let killer = {
        let kill = kill.clone();
        // Let the guest get going, then kill it from a plain OS thread.
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let at = Instant::now();
            kill.kill();
            at
        })
    };
    let report = v.run(input(json!({})), TaskDb::None, None, kill).await;
    let killed_at = killer.join().unwrap();
    match report.end {
        RunEnd::Failed { error, cause, .. } => {
            assert_eq!(cause, FailureCause::Killed);
            assert_eq!(error, "task was killed");
        }
        other => panic!("{other:?}"),
    }
    // Without the kill this run would never end (it has no timeout); the bound only
    // checks that the kill, not something later, ended it. It is two 5 ms ticks when
    // the machine is idle, but the first run of this suite compiles every JS guest in
    // parallel, and the ticker thread can then wait for a core for hundreds of ms.
    assert!(
        killed_at.elapsed() < Duration::from_secs(5),
        "stopped {:?} after the kill",
        killed_at.elapsed()
    );
}

#[tokio::test]
async fn globals_persist_on_a_reused_vm_and_reset_after_recycling() {
    let limits = VmLimits {
        max_runs: 3,
        ..VmLimits::default()
    };
    let mut v = vm_with("counter.js", limits).await;
    let counts: Vec<Value> = {
        let mut out = Vec::new();
        for _ in 0..3 {
            out.push(completion(&run(&mut v, json!({})).await)["count"].clone());
        }
        out
    };
    assert_eq!(counts, vec![json!(1), json!(2), json!(3)]);
    assert!(!v.is_reusable(), "recycled after max_runs");
    let mut fresh = vm_with("counter.js", limits).await;
    assert_eq!(
        completion(&run(&mut fresh, json!({})).await)["count"],
        json!(1)
    );
}

#[tokio::test]
async fn a_memory_hog_is_stopped_and_the_process_carries_on() {
    let limits = VmLimits {
        memory_bytes: 64 << 20,
        ..VmLimits::default()
    };
    let mut v = vm_with("memory_hog.js", limits).await;
    let end = run(&mut v, json!({})).await;
    let error = match &end {
        RunEnd::Resolved(Resolution::TemporaryFailure { error, .. }) => error.clone(),
        RunEnd::Failed { error, .. } => error.clone(),
        other => panic!("{other:?}"),
    };
    assert!(
        error.contains("out of memory") || error.contains("memory limit of 64 MiB"),
        "{error}"
    );
    let mut other = vm("counter.js").await;
    assert_eq!(
        completion(&run(&mut other, json!({})).await)["count"],
        json!(1)
    );
}

#[tokio::test]
async fn resolution_rules_are_enforced() {
    let mut v = vm("two_resolutions.js").await;
    assert_eq!(
        temporary_error(&run(&mut v, json!({})).await).0,
        "a resolution was already selected"
    );
    let mut v = vm("no_resolution.js").await;
    let report = v
        .run(input(json!({})), TaskDb::None, None, KillSwitch::new())
        .await;
    assert_eq!(temporary_error(&report.end).0, "no resolution selected");
    assert!(report
        .logs
        .iter()
        .any(|l| l.message.contains("returning without a resolution")));
    // An exception carries its message and the JS stack.
    let mut v = vm("insert_then_throw.js").await;
    let (error, stack) = temporary_error(&run(&mut v, json!({})).await);
    assert!(
        error.contains("execute failed") || error.contains("deliberate"),
        "{error}"
    );
    assert!(stack.is_some());
    // A raw throw without the kit is a trap; the guest's stderr holds its message.
    let mut v = vm("raw_throw.js").await;
    match run(&mut v, json!({})).await {
        RunEnd::Failed { stack, .. } => assert!(stack.unwrap().contains("guest stderr")),
        other => panic!("{other:?}"),
    }
    // Bundled (TypeScript), the stack on its stderr is put back in the author's lines.
    let mut v = vm("raw_throw_ts.ts").await;
    match run(&mut v, json!({})).await {
        RunEnd::Failed { stack, .. } => {
            let stack = stack.unwrap();
            assert!(stack.contains("raw_throw_ts: uncaught"), "{stack}");
            assert!(stack.contains("/guests/raw_throw_ts.ts:6:"), "{stack}");
            assert!(!stack.contains("raw_throw_ts.js"), "{stack}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn bad_json_data_is_a_permanent_failure() {
    let mut v = vm("echo.js").await;
    let mut bad = input(json!({}));
    bad.data = "{not json".into();
    match v.run(bad, TaskDb::None, None, KillSwitch::new()).await.end {
        RunEnd::Resolved(Resolution::PermanentFailure { error, .. }) => {
            assert!(error.starts_with("task data is not valid JSON"), "{error}")
        }
        other => panic!("{other:?}"),
    }
    // Aux data is merged over the data.
    let mut with_aux = input(json!({"a": 1, "b": 1}));
    with_aux.aux_data = Some(json!({"b": 2}).to_string());
    let end = v
        .run(with_aux, TaskDb::None, None, KillSwitch::new())
        .await
        .end;
    assert_eq!(completion(&end), json!({"a": 1, "b": 2}));
}

#[tokio::test]
async fn compiled_components_are_cached_on_disk() {
    let first = load("echo.wat");
    let second = load("echo.wat");
    assert!(
        second.from_cache,
        "the second load must come from the cache"
    );
    let _ = first;
}

/// Claims the one due task, runs `file` on it with the run's transaction, and applies
/// the outcome as a runner does.
async fn run_managed(store: &Store, file: &str) -> ResolveOutcome {
    support::run_managed_on(store, vm(file).await).await
}

async fn effects_db(b: Backend) -> Option<TestDb> {
    let db = TestDb::new(b).await?;
    let mut conn = db.store.connection().await.unwrap();
    exec(
        &mut conn.as_any(),
        "CREATE TABLE guest_effects (task_id BIGINT, note TEXT)",
    )
    .await;
    Some(db)
}

async fn effects_commit_with_completion(b: Backend) {
    let Some(db) = effects_db(b).await else {
        return;
    };
    let s = &db.store;
    let id = s
        .schedule(NewTask::new(
            "guests:insert".parse().unwrap(),
            json!({"note": "hello"}),
        ))
        .await
        .unwrap();
    assert_eq!(
        run_managed(s, "insert_then_complete.js").await,
        ResolveOutcome::Completed
    );
    let t = s.describe(id).await.unwrap();
    assert_eq!(
        (t.state, t.result),
        (TaskState::Completed, Some(json!({"inserted": 1})))
    );
    assert_eq!(
        count(
            s,
            &format!(
                "SELECT COUNT(*) AS n FROM guest_effects WHERE task_id = {id} AND note = 'hello'"
            )
        )
        .await,
        1
    );
}

async fn effects_vanish_when_the_task_throws(b: Backend) {
    let Some(db) = effects_db(b).await else {
        return;
    };
    let s = &db.store;
    let id = s
        .schedule(NewTask::new("guests:throw".parse().unwrap(), json!({})))
        .await
        .unwrap();
    let outcome = run_managed(s, "insert_then_throw.js").await;
    assert!(
        matches!(outcome, ResolveOutcome::Pending { next_attempt } if next_attempt > s.now()),
        "{outcome:?}"
    );
    assert_eq!(count(s, "SELECT COUNT(*) AS n FROM guest_effects").await, 0);
    let t = s.describe(id).await.unwrap();
    assert_eq!((t.state, t.failures), (TaskState::Pending, 1));
    assert!(t.last_error.unwrap().contains("deliberate failure"));
    assert!(t.last_stack.unwrap().contains("insert_then_throw.js"));
}

async fn host_functions_work_on_the_run_transaction(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let id = s
        .schedule(NewTask::new("guests:host".parse().unwrap(), json!({})))
        .await
        .unwrap();
    assert_eq!(
        run_managed(s, "host_calls.js").await,
        ResolveOutcome::Completed
    );
    let t = s.describe(id).await.unwrap();
    let r = t.result.unwrap();
    assert_eq!(r["rows"], json!([{"one": 1, "two": "two"}]));
    assert!(
        r["badError"].as_str().unwrap().contains("no_such_table"),
        "{r}"
    );
    assert_eq!(
        (r["metaBefore"].clone(), r["metaAfter"].clone()),
        (Value::Null, json!("v"))
    );
    let scheduled = TaskId(r["scheduled"].as_i64().unwrap());
    let child = s.describe(scheduled).await.unwrap();
    assert_eq!(
        (child.data, child.priority),
        (json!({"from": id}), warren::task::Priority::BACKGROUND)
    );
    assert_eq!(
        s.metadata(id, "guest-key").await.unwrap().as_deref(),
        Some("v")
    );
    // A unique key given twice in one run: one task, with the first call's data.
    assert_eq!(r["uniqueFirst"], r["uniqueAgain"], "{r}");
    let unique = s
        .describe(TaskId(r["uniqueFirst"].as_i64().unwrap()))
        .await
        .unwrap();
    assert_eq!(unique.data, json!({"n": 1}));
    assert_eq!(
        unique.unique.map(|u| u.key).as_deref(),
        Some("guest-unique")
    );
    assert!(
        r["badUnique"]
            .as_str()
            .unwrap()
            .contains("uniqueKey: must not be empty"),
        "{r}"
    );
    assert!(r["now"].as_i64().unwrap() > 1_700_000_000_000);
}

async fn ephemeral_transaction_commits_on_completion(b: Backend) {
    let Some(db) = effects_db(b).await else {
        return;
    };
    let s = &db.store;
    let tx = s.begin_transaction().await.unwrap();
    let mut v = vm("insert_then_complete.js").await;
    let report = v
        .run(
            input(json!({"note": "ephemeral"})),
            TaskDb::Ephemeral(tx),
            None,
            KillSwitch::new(),
        )
        .await;
    assert_eq!(completion(&report.end), json!({"inserted": 1}));
    let TaskDb::Ephemeral(tx) = report.db else {
        panic!()
    };
    tx.commit().await.unwrap();
    assert_eq!(
        count(
            s,
            "SELECT COUNT(*) AS n FROM guest_effects WHERE note = 'ephemeral'"
        )
        .await,
        1
    );
}

async fn a_snooze_commits_the_work_and_keeps_the_failure_count(b: Backend) {
    let Some(db) = effects_db(b).await else {
        return;
    };
    let s = &db.store;
    let until = support::T0 + 60 * support::MIN;
    let id = s
        .schedule(NewTask::new(
            "guests:snooze".parse().unwrap(),
            json!({"until": until, "note": "snoozed"}),
        ))
        .await
        .unwrap();
    // One failure first, so there is a count to keep.
    let claimed = s
        .claim("test-runner", &["default".to_string()], 1, 60_000)
        .await
        .unwrap()
        .remove(0);
    let failure = Resolution::TemporaryFailure {
        error: "first try".into(),
        stack: None,
        next_retry: Some(support::T0),
    };
    s.begin_run(claimed)
        .await
        .unwrap()
        .resolve(failure, RetryPolicy::default())
        .await
        .unwrap();
    assert_eq!(
        run_managed(s, "snooze.js").await,
        ResolveOutcome::Pending {
            next_attempt: until
        }
    );
    let t = s.describe(id).await.unwrap();
    assert_eq!(
        (t.state, t.failures, t.iterations, t.next_attempt),
        (TaskState::Pending, 1, 2, until)
    );
    assert_eq!(
        count(
            s,
            "SELECT COUNT(*) AS n FROM guest_effects WHERE note = 'snoozed'"
        )
        .await,
        1
    );
}

/// Task code's `setProgress` while its run holds its transaction open: this node sees
/// each report at once, another process sees it on PostgreSQL (written outside the
/// run's transaction) and after the run on SQLite; a bad report throws in the task
/// with the host's reason, and the last report is kept.
async fn task_code_reports_progress_while_it_runs(b: Backend) {
    let Some(db) = effects_db(b).await else {
        return;
    };
    let s = &db.store;
    let other = Store::open_with(StoreConfig::new(&db.url), db.clock.clone())
        .await
        .unwrap();
    let until = s.now() + 60_000;
    let id = s
        .schedule(NewTask::new(
            "guests:progress".parse().unwrap(),
            json!({"steps": 4, "insert": true, "until": until, "bad": 2}),
        ))
        .await
        .unwrap();
    // The VM reads the test's clock: the run spins until the clock reaches `until`.
    let vm = TaskVm::new(
        engine(),
        load("progress.js"),
        VmLimits::default(),
        db.clock.clone(),
    )
    .await
    .expect("instantiate");
    let running = tokio::spawn({
        let s = s.clone();
        async move { support::run_managed_on(&s, vm).await }
    });
    eventually(
        "the run's latest report",
        Duration::from_secs(60),
        || async {
            s.describe(id)
                .await
                .unwrap()
                .progress
                .is_some_and(|p| p.fraction == 0.75)
        },
    )
    .await;
    let live = s.describe(id).await.unwrap().progress.unwrap();
    assert_eq!(live.message.as_deref(), Some("step 3 of 4"));
    s.flush_progress().await;
    let outside = other.describe(id).await.unwrap().progress;
    match b {
        Backend::Postgres => assert_eq!(outside, Some(live)),
        Backend::Sqlite => assert_eq!(outside, None),
    }
    db.clock.set(until);
    assert_eq!(running.await.unwrap(), ResolveOutcome::Completed);
    s.flush_progress().await;
    let t = other.describe(id).await.unwrap();
    assert_eq!(
        t.result.unwrap(),
        json!({
            "badError": "setProgress failed: progress must be a fraction from 0 to 1, not 2",
            "typeError": "progress must be a number from 0 to 1, not string",
        })
    );
    let kept = t.progress.unwrap();
    assert_eq!((kept.fraction, kept.message), (1.0, None));
    assert_eq!(
        count(s, "SELECT COUNT(*) AS n FROM guest_effects").await,
        1,
        "the run's own work committed with it"
    );
}

/// Hostile or careless task code reporting on every step of a long loop: the run is not
/// held up by it (reports go to memory, the writer takes only the latest), and the last
/// report is the one kept.
async fn a_flood_of_progress_reports_keeps_only_the_last(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let id = s
        .schedule(NewTask::new(
            "guests:progress".parse().unwrap(),
            json!({"steps": 50_000}),
        ))
        .await
        .unwrap();
    assert_eq!(
        run_managed(s, "progress.js").await,
        ResolveOutcome::Completed
    );
    s.flush_progress().await;
    let other = Store::open_with(StoreConfig::new(&db.url), db.clock.clone())
        .await
        .unwrap();
    let kept = other.describe(id).await.unwrap().progress.unwrap();
    assert_eq!((kept.fraction, kept.message), (1.0, None));
    assert_eq!(
        count(s, "SELECT COUNT(*) AS n FROM warren_task_progress").await,
        1,
        "one row per task, however many reports"
    );
}

conformance!(
    task_code_reports_progress_while_it_runs,
    a_flood_of_progress_reports_keeps_only_the_last,
    effects_commit_with_completion,
    effects_vanish_when_the_task_throws,
    host_functions_work_on_the_run_transaction,
    ephemeral_transaction_commits_on_completion,
    a_snooze_commits_the_work_and_keeps_the_failure_count,
);
