//! The task-code boundary: task code cannot starve the node or escape its module.
//!
//! - A runner serving hundreds of task types keeps its VMs within the engine's pool
//!   (150 and 500 types, WAT and QuickJS), and a full pool costs idle VMs, not tasks.
//! - The compile cache loads native code only from private files written for the key
//!   they are found under, and compiles a component once however many ask for it.
//! - Code paths and the sources a build reads stay inside the module folder; links to
//!   folders are not followed.
//!
//! JavaScript guests use the toolkit embedded in warren, installed under the tests'
//! shared cache folder on first use (Node.js and npm needed, nothing else).

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;
use warren::clock::SystemClock;
use warren::moduledef::{load_module, LoadOptions};
use warren::task::{Resolution, TaskId};
mod support;

use warren::wasm::{
    idle_vms_per_runner, EngineConfig, JsEngine, JsToolkit, KillSwitch, RunEnd, TaskDb, TaskInput,
    TaskVm, VmCache, VmLimits, WasmEngine, VM_BUDGET,
};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn guests() -> PathBuf {
    root().join("tests/guests")
}

/// A fresh, empty folder for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("warren-hostile-{}-{name}", std::process::id()));
    if dir.exists() {
        make_private(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn make_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).unwrap();
}

/// An engine as a node with `runners` runners builds it, caching in `cache`.
fn engine(cache: &Path, runners: usize) -> WasmEngine {
    WasmEngine::new(
        EngineConfig {
            cache_dir: Some(cache.to_path_buf()),
            js: Some(JsToolkit::embedded(
                &support::test_cache_dir(),
                JsEngine::QuickJs,
            )),
            ..EngineConfig::default()
        }
        .sized_for_runners(runners),
    )
    .expect("engine")
}

/// `tests/guests/wat/complete.wat`, completing with `{"n": n}` instead of `{}`: a
/// distinct component for every `n`.
fn wat_task(n: usize) -> String {
    let result = format!("{{\\\"n\\\":{n}}}");
    let len = format!("{{\"n\":{n}}}").len();
    let text = std::fs::read_to_string(guests().join("wat/complete.wat")).unwrap();
    let text = text
        .replace(
            r#"(data (i32.const 16) "{}")"#,
            &format!(r#"(data (i32.const 16) "{result}")"#),
        )
        .replace(
            "(i32.store (i32.const 44) (i32.const 2))",
            &format!("(i32.store (i32.const 44) (i32.const {len}))"),
        );
    assert!(
        text.contains(&result),
        "complete.wat changed: update wat_task"
    );
    text
}

/// Writes `tasks/t<n>.wat` for each `n` into the module folder `dir`.
fn write_wat_tasks(dir: &Path, ns: impl IntoIterator<Item = usize>) {
    std::fs::create_dir_all(dir.join("tasks")).unwrap();
    for n in ns {
        std::fs::write(dir.join(format!("tasks/t{n}.wat")), wat_task(n)).unwrap();
    }
}

fn input(task_type: &str) -> TaskInput {
    TaskInput {
        id: TaskId(1),
        task_type: task_type.into(),
        data: "{}".into(),
        aux_data: None,
        failures: 0,
        iteration: 0,
    }
}

async fn run(vm: &mut TaskVm) -> Value {
    let task_type = vm.code().task_type.clone();
    let end = vm
        .run(
            input(&task_type),
            TaskDb::None,
            Some(Duration::from_secs(60)),
            KillSwitch::new(),
        )
        .await
        .end;
    match end {
        RunEnd::Resolved(Resolution::Completion { result }) => {
            serde_json::from_str(&result).unwrap()
        }
        other => panic!("{task_type}: expected a completion, got {other:?}"),
    }
}

/// Runs one task of `task_type` (code `code`) as a runner does: on its idle VM, else on
/// a new one, which goes back to the cache afterwards.
async fn run_as_runner(
    engine: &WasmEngine,
    vms: &mut VmCache<TaskVm>,
    task_type: &str,
    code: &Path,
    module_dir: &Path,
) -> Value {
    let mut vm = match vms.take_reusable(task_type) {
        Some(vm) => vm,
        None => {
            let code = engine
                .load(task_type, code, module_dir)
                .unwrap_or_else(|e| panic!("load {task_type}: {e}"));
            vms.instantiate(engine, code, VmLimits::default(), Arc::new(SystemClock))
                .await
                .unwrap_or_else(|e| panic!("{task_type}: {e}"))
        }
    };
    let result = run(&mut vm).await;
    vms.check_in(vm);
    result
}

/// `types` distinct WAT task types, run one after another by one runner.
async fn wat_types_on_one_runner(types: usize) {
    let dir = scratch(&format!("types-{types}"));
    write_wat_tasks(&dir, 0..types);
    let engine = engine(&dir.join("cache"), 1);
    assert!(engine.is_pooled(), "the pooling allocator must be in use");
    let mut vms = VmCache::new(idle_vms_per_runner(engine.vm_slots(), 1));
    for n in 0..types {
        let code = dir.join(format!("tasks/t{n}.wat"));
        let result = run_as_runner(&engine, &mut vms, &format!("m:t{n}"), &code, &dir).await;
        assert_eq!(result, json!({ "n": n }));
        assert!(vms.len() <= vms.capacity());
        let usage = engine.pool_usage().unwrap();
        if n == 0 {
            let one = (usage.core_instances, usage.memories, usage.tables);
            assert_eq!(one, (1, 1, 0), "what one WAT VM holds");
        }
        assert!(usage.component_instances <= u64::from(engine.vm_slots()));
    }
    assert_eq!(engine.cache().compiles(), types as u64);
    // The most recent types kept their VMs; the oldest were dropped.
    assert_eq!(vms.len(), vms.capacity().min(types));
    assert_eq!(vms.take_reusable("m:t0").is_some(), types <= vms.capacity());
    assert!(vms.take_reusable(&format!("m:t{}", types - 1)).is_some());
    drop(vms);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_runner_serves_150_task_types() {
    wat_types_on_one_runner(150).await;
}

#[tokio::test]
async fn a_runner_serves_500_task_types() {
    wat_types_on_one_runner(500).await;
}

/// The failure of the issue: QuickJS VMs of 150 task types on one runner (about a
/// hundred fitted the old pool). One component, a VM per type.
#[tokio::test]
async fn a_runner_serves_150_javascript_task_types() {
    let cache = warren_testkit::test_cache_dir();
    let engine = engine(&cache, 1);
    assert!(engine.is_pooled(), "the pooling allocator must be in use");
    let mut vms = VmCache::new(idle_vms_per_runner(engine.vm_slots(), 1));
    let code = guests().join("counter.js");
    for n in 0..150 {
        let task_type = format!("js:t{n}");
        let result = run_as_runner(&engine, &mut vms, &task_type, &code, &guests()).await;
        assert_eq!(result, json!({"count": 1}), "{task_type}");
        if n == 0 {
            // What one QuickJS VM takes from the pool, against what it is budgeted.
            let one = engine.pool_usage().unwrap();
            eprintln!("one QuickJS VM holds {one:?}; budget {VM_BUDGET:?}");
            assert_eq!(one.component_instances, 1);
            assert!(one.core_instances <= u64::from(VM_BUDGET.core_instances));
            assert!(one.memories <= VM_BUDGET.memories as usize);
            assert!(one.tables <= VM_BUDGET.tables as usize);
        }
    }
    assert_eq!(vms.len(), vms.capacity());
    // A kept VM is reused: its globals persist.
    let last = "js:t149";
    assert_eq!(
        run_as_runner(&engine, &mut vms, last, &code, &guests()).await,
        json!({"count": 2})
    );
}

/// A cache allowed more idle VMs than the pool holds (as when VMs are larger than
/// budgeted): a full pool costs idle VMs, never the task.
#[tokio::test]
async fn a_full_pool_drops_idle_vms_instead_of_failing_the_task() {
    let dir = scratch("full-pool");
    write_wat_tasks(&dir, 0..40);
    let engine = WasmEngine::new(EngineConfig {
        cache_dir: Some(dir.join("cache")),
        pool_instances: 8,
        ..EngineConfig::default()
    })
    .unwrap();
    assert!(engine.is_pooled());
    let mut vms = VmCache::new(100);
    for n in 0..40 {
        let code = dir.join(format!("tasks/t{n}.wat"));
        let result = run_as_runner(&engine, &mut vms, &format!("m:t{n}"), &code, &dir).await;
        assert_eq!(result, json!({ "n": n }));
    }
    assert_eq!(vms.len(), 8, "idle VMs were dropped to make room");
    // With nothing idle to drop, the pool's error does reach the caller.
    let code = engine
        .load("m:t0", &dir.join("tasks/t0.wat"), &dir)
        .unwrap();
    let mut live = Vec::new();
    let mut none_idle = VmCache::new(0);
    let err = loop {
        match none_idle
            .instantiate(
                &engine,
                code.clone(),
                VmLimits::default(),
                Arc::new(SystemClock),
            )
            .await
        {
            Ok(vm) => live.push(vm),
            Err(e) => break e,
        }
    };
    assert!(
        err.to_string().contains("the instance pool is full"),
        "{err}"
    );
    assert!(live.len() + vms.len() <= 8);
    drop((live, vms));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Events logged while `f` runs on this thread, as `LEVEL field=value …` lines.
fn logged<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let value = tracing::subscriber::with_default(Capture(lines.clone()), f);
    let lines = lines.lock().unwrap().clone();
    (value, lines)
}

/// A subscriber keeping every event's level and fields.
struct Capture(Arc<Mutex<Vec<String>>>);

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut line = event.metadata().level().to_string();
        let mut visit = |field: &tracing::field::Field, value: &dyn std::fmt::Debug| {
            line.push_str(&format!(" {}={value:?}", field.name()));
        };
        event.record(&mut visit);
        self.0.lock().unwrap().push(line);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// The `.cwasm` files in `dir`.
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    files.sort();
    files
}

async fn run_code(engine: &WasmEngine, task_type: &str, code: &Path, dir: &Path) -> (bool, Value) {
    let code = engine.load(task_type, code, dir).unwrap();
    let from_cache = code.from_cache;
    let mut vm = TaskVm::new(engine, code, VmLimits::default(), Arc::new(SystemClock))
        .await
        .unwrap();
    (from_cache, run(&mut vm).await)
}

#[tokio::test]
async fn a_cache_entry_copied_over_another_types_entry_is_not_run() {
    let dir = scratch("copied");
    write_wat_tasks(&dir, [1, 2]);
    let cache = dir.join("cache");
    let (a, b) = (dir.join("tasks/t1.wat"), dir.join("tasks/t2.wat"));
    let first = engine(&cache, 1);
    first.load("m:a", &a, &dir).unwrap();
    let a_entry = entries(&cache);
    first.load("m:b", &b, &dir).unwrap();
    let b_entry: Vec<_> = entries(&cache)
        .into_iter()
        .filter(|e| !a_entry.contains(e))
        .collect();
    let (a_entry, b_entry) = (&a_entry[0], &b_entry[0]);
    std::fs::copy(a_entry, b_entry).unwrap();

    // A restarted node: B's own code runs, compiled again, and the entry is named.
    let second = engine(&cache, 1);
    let (b_from_cache, logs) = logged(|| second.load("m:b", &b, &dir).unwrap().from_cache);
    assert!(!b_from_cache, "the copied entry must not be loaded");
    assert_eq!(second.cache().compiles(), 1);
    let warning = logs
        .iter()
        .find(|l| l.starts_with("WARN") && l.contains(&b_entry.display().to_string()))
        .unwrap_or_else(|| panic!("no warning naming {}: {logs:?}", b_entry.display()));
    assert!(warning.contains("was written for key"), "{warning}");
    assert_eq!(
        run_code(&second, "m:b", &b, &dir).await,
        (true, json!({"n": 2}))
    );
    // The entry was rewritten; A's own entry is still trusted.
    let third = engine(&cache, 1);
    assert_eq!(
        run_code(&third, "m:a", &a, &dir).await,
        (true, json!({"n": 1}))
    );
    assert_eq!(
        run_code(&third, "m:b", &b, &dir).await,
        (true, json!({"n": 2}))
    );
    assert_eq!(third.cache().compiles(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_cache_folder_or_file_writable_by_others_is_not_trusted() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("open-cache");
    write_wat_tasks(&dir, [1, 2]);
    let cache = dir.join("cache");
    let (a, b) = (dir.join("tasks/t1.wat"), dir.join("tasks/t2.wat"));
    let first = engine(&cache, 1);
    first.load("m:a", &a, &dir).unwrap();
    first.load("m:b", &b, &dir).unwrap();

    // A file others may write is refused, even in a private folder.
    let a_entry = entries(&cache)[0].clone();
    std::fs::set_permissions(&a_entry, std::fs::Permissions::from_mode(0o666)).unwrap();
    let second = engine(&cache, 1);
    let ((), logs) = logged(|| {
        for (t, code) in [("m:a", &a), ("m:b", &b)] {
            second.load(t, code, &dir).unwrap();
        }
    });
    assert_eq!(
        second.cache().compiles(),
        1,
        "only the open file is recompiled"
    );
    assert!(
        logs.iter().any(|l| l.starts_with("WARN")
            && l.contains(&a_entry.display().to_string())
            && l.contains("writable by group or others (mode 0666)")),
        "{logs:?}"
    );

    // A folder others may write is not used at all: compiled code stays in memory.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (third, logs) = logged(|| engine(&cache, 1));
    assert_eq!(third.cache().dir(), None);
    assert!(
        logs.iter().any(|l| l.starts_with("WARN")
            && l.contains(&cache.display().to_string())
            && l.contains("writable by group or others (mode 0777)")),
        "{logs:?}"
    );
    assert_eq!(
        run_code(&third, "m:b", &b, &dir).await,
        (false, json!({"n": 2}))
    );
    assert_eq!(third.cache().compiles(), 1);
    make_private(&cache);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn concurrent_loads_of_one_component_compile_it_once() {
    let dir = scratch("concurrent");
    write_wat_tasks(&dir, [7]);
    let engine = Arc::new(engine(&dir.join("cache"), 1));
    let code = dir.join("tasks/t7.wat");
    let callers = 8;
    let start = Arc::new(Barrier::new(callers));
    let threads: Vec<_> = (0..callers)
        .map(|i| {
            let (engine, start, code, dir) =
                (engine.clone(), start.clone(), code.clone(), dir.clone());
            std::thread::spawn(move || {
                start.wait();
                engine.load(&format!("m:t{i}"), &code, &dir).unwrap()
            })
        })
        .collect();
    let loaded: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(engine.cache().compiles(), 1);
    assert_eq!(loaded.iter().filter(|c| !c.from_cache).count(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A JavaScript module whose folder links to itself twice: the build and the hash of
/// its sources do not follow the links (they would never end), concurrent loads build
/// and compile it once, and it runs.
#[tokio::test]
async fn javascript_in_a_module_linking_to_itself_builds_once_and_runs() {
    let dir = scratch("js-links");
    std::fs::create_dir_all(dir.join("tasks")).unwrap();
    // Unique source, so neither the build nor the compile can come from an earlier run.
    let source = std::fs::read_to_string(guests().join("counter.js")).unwrap()
        + &format!("\n// {:016x}\n", rand::random::<u64>());
    std::fs::write(dir.join("tasks/counter.js"), source).unwrap();
    std::os::unix::fs::symlink(".", dir.join("self")).unwrap();
    std::os::unix::fs::symlink("..", dir.join("tasks/up")).unwrap();
    let engine = Arc::new(engine(&dir.join("cache"), 1));
    let code = dir.join("tasks/counter.js");
    let callers = 4;
    let start = Arc::new(Barrier::new(callers));
    let threads: Vec<_> = (0..callers)
        .map(|i| {
            let (engine, start, code, dir) =
                (engine.clone(), start.clone(), code.clone(), dir.clone());
            std::thread::spawn(move || {
                start.wait();
                engine.load(&format!("m:c{i}"), &code, &dir).unwrap()
            })
        })
        .collect();
    let loaded: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(engine.cache().builds(), 1);
    assert_eq!(engine.cache().compiles(), 1);
    let mut vm = TaskVm::new(
        &engine,
        loaded[0].clone(),
        VmLimits::default(),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    assert_eq!(run(&mut vm).await, json!({"count": 1}));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_code_path_through_a_link_leaving_the_module_is_refused() {
    let dir = scratch("links-out");
    let outside = dir.join("elsewhere");
    write_wat_tasks(&outside, [1]);
    let module = dir.join("m");
    std::fs::create_dir_all(module.join("tasks")).unwrap();
    std::fs::write(module.join("tasks/own.wat"), wat_task(2)).unwrap();
    std::os::unix::fs::symlink(outside.join("tasks"), module.join("linked")).unwrap();
    std::os::unix::fs::symlink(outside.join("tasks/t1.wat"), module.join("tasks/file.wat"))
        .unwrap();
    std::os::unix::fs::symlink("own.wat", module.join("tasks/alias.wat")).unwrap();
    std::fs::write(
        module.join("moduledefinition.xml"),
        r#"<module name="m"><servicemanager>
  <managedtask type="folder" code="linked/t1.wat"/>
  <managedtask type="file" code="tasks/file.wat"/>
</servicemanager></module>"#,
    )
    .unwrap();
    let errors = load_module(&module, &LoadOptions::from_process_env()).unwrap_err();
    let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    let real = std::fs::canonicalize(outside.join("tasks/t1.wat")).unwrap();
    let file = module.join("moduledefinition.xml");
    assert_eq!(
        shown,
        [
            format!(
                "{}:2:36: code path 'linked/t1.wat' leads outside the module folder through a symbolic link (to {})",
                file.display(),
                real.display()
            ),
            format!(
                "{}:3:34: code path 'tasks/file.wat' leads outside the module folder through a symbolic link (to {})",
                file.display(),
                real.display()
            ),
        ]
    );
    // A link inside the module is fine.
    std::fs::write(
        module.join("moduledefinition.xml"),
        r#"<module name="m"><servicemanager>
  <managedtask type="alias" code="tasks/alias.wat"/>
</servicemanager></module>"#,
    )
    .unwrap();
    load_module(&module, &LoadOptions::from_process_env()).expect("a link inside the module");
    // The engine checks again when it loads code.
    let engine = engine(&dir.join("cache"), 1);
    let err = engine
        .load("m:folder", &module.join("linked/t1.wat"), &module)
        .unwrap_err();
    assert!(
        err.to_string().contains("leads outside its module folder"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
