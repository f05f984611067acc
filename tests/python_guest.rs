//! Python task code under the host: `tests/guests/py/kit_cases.py`, compiled with
//! the Python toolkit warren carries (componentize-py, installed with pip under the
//! tests' cache folder on first use), keeps the kit's rules (exactly one resolution;
//! an exception is a temporary failure carrying the Python traceback; data with aux
//! data merged; bad JSON fails for good), runs SQL on the run's transaction on both
//! backends (committed with the completion, rolled back on an exception), reuses its
//! VM between runs, and is stopped by its timeout like any other task code.
//!
//! Needs Python 3.9 or later with pip, and PyPI (or pip's cache); skipped loudly
//! without `python3`, failing under `CI=true`.

mod support;

use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use support::{count, exec, Backend, TestDb};
use warren::clock::SystemClock;
use warren::store::{NewTask, ResolveOutcome, Store};
use warren::task::{Priority, Resolution, TaskId, TaskState};
use warren::wasm::{
    FailureCause, KillSwitch, RunEnd, TaskCode, TaskDb, TaskInput, TaskVm, VmLimits, WasmEngine,
};

fn module_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/guests/py")
}

/// Whether Python can be used; under `CI=true` it must be.
fn have_python() -> bool {
    let ok = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true but python3 cannot be run: the Python guest tests need it"
        );
        eprintln!("\n SKIPPED: Python guest tests — python3 cannot be run\n");
    }
    ok
}

/// One engine for the whole test binary.
fn engine() -> &'static WasmEngine {
    static ENGINE: OnceLock<WasmEngine> = OnceLock::new();
    ENGINE.get_or_init(|| WasmEngine::new(support::engine_config()).expect("engine"))
}

/// The compiled task code, once for the whole test binary (one compile takes seconds).
fn code() -> Arc<TaskCode> {
    static CODE: OnceLock<Arc<TaskCode>> = OnceLock::new();
    CODE.get_or_init(|| {
        engine()
            .load(
                "guests:python",
                &module_dir().join("kit_cases.py"),
                &module_dir(),
            )
            .unwrap_or_else(|e| panic!("load kit_cases.py: {e}"))
    })
    .clone()
}

async fn vm() -> TaskVm {
    TaskVm::new(engine(), code(), VmLimits::default(), Arc::new(SystemClock))
        .await
        .expect("instantiate")
}

fn input(data: Value) -> TaskInput {
    TaskInput {
        id: TaskId(7),
        task_type: "guests:python".into(),
        data: data.to_string(),
        aux_data: None,
        failures: 2,
        iteration: 3,
    }
}

async fn run(vm: &mut TaskVm, input: TaskInput) -> RunEnd {
    vm.run(
        input,
        TaskDb::None,
        Some(Duration::from_secs(30)),
        KillSwitch::new(),
    )
    .await
    .end
}

fn resolution(end: RunEnd) -> Resolution {
    match end {
        RunEnd::Resolved(r) => r,
        other => panic!("not resolved: {other:?}"),
    }
}

fn completion(end: RunEnd) -> Value {
    match resolution(end) {
        Resolution::Completion { result } => serde_json::from_str(&result).unwrap(),
        other => panic!("not a completion: {other:?}"),
    }
}

fn temporary(end: RunEnd) -> (String, Option<String>) {
    match resolution(end) {
        Resolution::TemporaryFailure { error, stack, .. } => (error, stack),
        other => panic!("not a temporary failure: {other:?}"),
    }
}

#[tokio::test]
async fn the_python_kit_keeps_the_resolution_rules() {
    if !have_python() {
        return;
    }
    let mut v = vm().await;
    let mut echo = input(json!({"case": "echo", "a": 1, "b": 1}));
    echo.aux_data = Some(json!({"b": 2}).to_string());
    let report = v.run(echo, TaskDb::None, None, KillSwitch::new()).await;
    // What the module logged at build time is written at the instance's first run.
    assert_eq!(report.logs[0].message, "kit_cases loaded at build time");
    let r = completion(report.end);
    assert_eq!(r["data"], json!({"case": "echo", "a": 1, "b": 2}));
    assert_eq!(r["raw"], json!({"case": "echo", "a": 1, "b": 1}));
    assert_eq!(r["aux"], json!({"b": 2}));
    assert_eq!(
        (&r["id"], &r["type"], &r["failures"], &r["iteration"]),
        (&json!(7), &json!("guests:python"), &json!(2), &json!(3))
    );
    assert!(r["now_ms"].as_i64().unwrap() > 1_700_000_000_000);
    assert!(r["now"].as_str().unwrap().ends_with("+00:00"), "{r}");

    let (error, _) = temporary(run(&mut v, input(json!({"case": "twice"}))).await);
    assert_eq!(error, "ResolutionError: a resolution was already selected");
    let report = v
        .run(
            input(json!({"case": "none"})),
            TaskDb::None,
            None,
            KillSwitch::new(),
        )
        .await;
    assert!(
        report
            .logs
            .iter()
            .any(|l| l.message == "returning without a resolution"),
        "{:?}",
        report.logs
    );
    let (error, _) = temporary(report.end);
    assert_eq!(error, "no resolution selected");
    let (error, stack) = temporary(run(&mut v, input(json!({"case": "after"}))).await);
    assert_eq!(error, "KeyError: 'after the resolution'");
    assert!(stack.unwrap().contains("kit_cases.py"));
    let (error, _) = temporary(run(&mut v, input(json!({"case": "unserialisable"}))).await);
    assert_eq!(
        error,
        "TypeError: Object of type set is not JSON serializable"
    );
    assert_eq!(
        resolution(run(&mut v, input(json!({"case": "far"}))).await),
        Resolution::Snooze { at: i64::MAX },
        "a time past u64 is the largest, not a trap"
    );
    let mut listed = input(json!({}));
    listed.data = r#"[1, 2]"#.into();
    listed.aux_data = Some(json!({"b": 2}).to_string());
    match resolution(run(&mut v, listed).await) {
        // A list is not merged with aux data; it has no "case" key either.
        Resolution::TemporaryFailure { error, .. } => {
            assert!(error.starts_with("TypeError: list indices"), "{error}")
        }
        other => panic!("{other:?}"),
    }
    match resolution(run(&mut v, input(json!({"case": "permanent"}))).await) {
        Resolution::PermanentFailure { error, result } => {
            assert_eq!(
                (error.as_str(), result.as_deref()),
                ("bad input", Some(r#"{"partial":1}"#))
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        resolution(run(&mut v, input(json!({"case": "cancel"}))).await),
        Resolution::Cancellation {
            error: "RuntimeError: not wanted".into()
        }
    );
    match resolution(run(&mut v, input(json!({"case": "restart"}))).await) {
        Resolution::Restart { at, new_data, .. } => {
            assert!(at > 1_700_000_000_000);
            assert_eq!(new_data.as_deref(), Some(r#"{"case":"echo"}"#));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        resolution(run(&mut v, input(json!({"case": "snooze"}))).await),
        Resolution::Snooze { at } if at > 1_700_000_000_000
    ));
    match resolution(run(&mut v, input(json!({"case": "retry_at"}))).await) {
        Resolution::TemporaryFailure { next_retry, .. } => {
            assert_eq!(next_retry, Some(1_893_456_000_000))
        }
        other => panic!("{other:?}"),
    }
    let mut bad = input(json!({}));
    bad.data = "{not json".into();
    match resolution(run(&mut v, bad).await) {
        Resolution::PermanentFailure { error, .. } => {
            assert!(error.starts_with("task data is not valid JSON"), "{error}")
        }
        other => panic!("{other:?}"),
    }
    // The same VM served every run: its globals persisted.
    let r = completion(run(&mut v, input(json!({"case": "echo"}))).await);
    assert_eq!(r["runs"], json!(13));
}

#[tokio::test]
async fn a_python_task_that_never_returns_is_stopped_by_its_timeout() {
    if !have_python() {
        return;
    }
    let mut v = vm().await;
    let report = v
        .run(
            input(json!({"case": "spin"})),
            TaskDb::None,
            Some(Duration::from_millis(300)),
            KillSwitch::new(),
        )
        .await;
    match report.end {
        RunEnd::Failed { error, cause, .. } => {
            assert_eq!(cause, FailureCause::TimedOut);
            assert!(error.contains("timed out"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!v.is_reusable(), "a timed-out VM is discarded");
}

#[tokio::test]
async fn a_python_memory_hog_is_stopped_and_its_vm_discarded() {
    if !have_python() {
        return;
    }
    let limits = VmLimits {
        memory_bytes: 96 << 20,
        ..VmLimits::default()
    };
    let mut v = TaskVm::new(engine(), code(), limits, Arc::new(SystemClock))
        .await
        .expect("instantiate");
    match run(&mut v, input(json!({"case": "hog"}))).await {
        // CPython turns the refused growth into a MemoryError the kit reports, or the
        // guest traps: either way the run fails and the VM is not used again.
        RunEnd::Resolved(Resolution::TemporaryFailure { error, .. }) => {
            assert!(error.starts_with("MemoryError"), "{error}")
        }
        RunEnd::Failed { cause, .. } => assert_eq!(cause, FailureCause::OutOfMemory),
        other => panic!("{other:?}"),
    }
    assert!(
        !v.is_reusable(),
        "a VM that hit its memory limit is discarded"
    );
}

#[tokio::test]
async fn python_builds_see_only_copies_and_refuse_shadowed_or_empty_task_modules() {
    if !have_python() {
        return;
    }
    let scratch = warren_testkit::Scratch::new("python-build");
    let module = scratch.join("mod");
    std::fs::create_dir_all(&module).unwrap();
    let task = "from warren import define_task\n\n@define_task\ndef run_task(task, ctx):\n    ctx.resolve_by_completion(1)\n";
    // A task module named like a standard library module would import that one.
    std::fs::write(module.join("json.py"), task).unwrap();
    std::fs::write(module.join("empty.py"), "x = 1\n").unwrap();
    // The top level runs at build time, in folders it may write: the copies.
    std::fs::write(
        module.join("writer.py"),
        format!("for folder in ('/0', '/1'):\n    open(folder + '/planted.txt', 'w').write('x')\n{task}"),
    )
    .unwrap();
    let load = |file: &str| engine().load("guests:build", &module.join(file), &module);
    let err = load("json.py").unwrap_err().to_string();
    assert!(err.contains("is not the module folder's file"), "{err}");
    let err = load("empty.py").unwrap_err().to_string();
    assert!(err.contains("defines no task function"), "{err}");
    load("writer.py").unwrap();
    let toolkit = warren::wasm::PyToolkit::embedded(&support::test_cache_dir()).dir();
    for dir in [module.as_path(), toolkit.as_path()] {
        assert!(
            !dir.join("planted.txt").exists(),
            "{} was written to",
            dir.display()
        );
    }
}

/// Claims the one due task and runs the Python guest on it with the run's
/// transaction, applying the outcome as a runner does.
async fn run_managed(store: &Store) -> ResolveOutcome {
    support::run_managed_on(store, vm().await).await
}

async fn python_sql_commits_with_the_run_and_rolls_back_on_an_exception(b: Backend) {
    if !have_python() {
        return;
    }
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let mut conn = s.connection().await.unwrap();
    exec(
        &mut conn.as_any(),
        "CREATE TABLE guest_effects (task_id BIGINT, note TEXT)",
    )
    .await;
    drop(conn);
    let task = |case: &str| NewTask::new("guests:python".parse().unwrap(), json!({"case": case}));

    let id = s.schedule(task("host")).await.unwrap();
    assert_eq!(run_managed(s).await, ResolveOutcome::Completed);
    let r = s.describe(id).await.unwrap().result.unwrap();
    assert_eq!(r["inserted"], json!(1));
    assert_eq!(r["rows"], json!([{"task_id": id.0, "note": "host"}]));
    assert!(
        r["bad"].as_str().unwrap().starts_with("execute failed: "),
        "{r}"
    );
    assert!(r["bad"].as_str().unwrap().contains("no_such_table"), "{r}");
    assert!(
        r["unknown"]
            .as_str()
            .unwrap()
            .contains("unknown option(s) colour"),
        "{r}"
    );
    assert_eq!(
        (&r["meta_before"], &r["meta_after"]),
        (&Value::Null, &json!("v"))
    );
    assert_eq!(
        r["bad_progress"],
        json!("set_progress failed: progress must be a fraction from 0 to 1, not 2")
    );
    s.flush_progress().await;
    let progress = s.describe(id).await.unwrap().progress.unwrap();
    assert_eq!(
        (progress.fraction, progress.message.as_deref()),
        (0.25, Some("a quarter"))
    );
    let child = s
        .describe(TaskId(r["child"].as_i64().unwrap()))
        .await
        .unwrap();
    assert_eq!(
        (child.data, child.priority, child.timeout_ms),
        (json!({"from": id.0}), Priority::BACKGROUND, 5_000)
    );
    assert_eq!(
        (child.not_before, child.aux_data),
        (Some(1_893_456_000_000), Some(json!({"extra": true})))
    );
    assert_eq!(child.metadata, vec![("origin".into(), "python".into())]);
    assert_eq!(
        s.metadata(id, "PY-key").await.unwrap().as_deref(),
        Some("v")
    );
    assert_eq!(count(s, "SELECT COUNT(*) AS n FROM py_effects").await, 1);

    let id = s.schedule(task("raise")).await.unwrap();
    assert!(matches!(
        run_managed(s).await,
        ResolveOutcome::Pending { .. }
    ));
    let t = s.describe(id).await.unwrap();
    assert_eq!((t.state, t.failures), (TaskState::Pending, 1));
    assert_eq!(
        t.last_error.as_deref(),
        Some("ValueError: deliberate failure")
    );
    let stack = t.last_stack.unwrap();
    assert!(
        stack.contains("File \"/py/kit_cases.py\", line 82, in run_task"),
        "{stack}"
    );
    assert!(
        !stack.contains("warren.py"),
        "the kit's frames are left out: {stack}"
    );
    assert_eq!(count(s, "SELECT COUNT(*) AS n FROM guest_effects").await, 0);
}

#[tokio::test]
async fn python_sql_commits_with_the_run_and_rolls_back_on_an_exception_sqlite() {
    python_sql_commits_with_the_run_and_rolls_back_on_an_exception(Backend::Sqlite).await;
}

#[tokio::test]
async fn python_sql_commits_with_the_run_and_rolls_back_on_an_exception_postgres() {
    python_sql_commits_with_the_run_and_rolls_back_on_an_exception(Backend::Postgres).await;
}
