//! Cost of running task code in a WebAssembly VM, without a database.
//!
//! Two guests, measured the same way one after the other: the JavaScript example task
//! `demo:ping` (`examples/modules/demo/tasks/ping.js`, module folder
//! `examples/modules/demo`), and its Python twin (`benches/guests/ping.py`, compiled
//! with componentize-py; its measurements are prefixed `py_`). Data `{"ping":42}`
//! completes with `{"pong":42}`. Every run uses `TaskDb::None`, a 30 s timeout and a
//! fresh `KillSwitch`, so only the VM is measured. Measurements:
//!
//! - `js_build` (`py_build`): source → component, i.e. `JsToolkit::compile` (`node
//!   build.mjs`, QuickJS) or `PyToolkit::compile` (componentize-py), into a fresh,
//!   empty cache folder;
//! - `cold_load`: the first `WasmEngine::load` after that: the JavaScript stage is found
//!   in the cache, the component is compiled by cranelift and written to the cache
//!   (includes hashing the inputs, serializing and `instantiate_pre`);
//! - `cache_load`: a further `WasmEngine::load` of the same code, the cache warm
//!   (hash the inputs, deserialize the compiled component, `instantiate_pre`);
//! - `instantiate`: `TaskVm::new` of the loaded code;
//! - `first_call`: the first `TaskVm::run` on that fresh instance;
//! - `fresh_call`: instantiate + first call, i.e. a fresh instance per task;
//! - `drop_vm`: dropping that VM afterwards (not part of `fresh_call`);
//! - `warm_call`: `TaskVm::run` on one reused VM (`max_runs` set far above the loop).
//!
//! Each is timed per sample; the table gives median, p99, min and max, and one JSON
//! line per measurement (plus one per ratio) is printed as it finishes. The engine is
//! the default one (pooling allocator when it can be reserved) and the VMs run on a
//! multi-thread tokio runtime.
//!
//! Run: `cargo bench --bench vm` (needs Node.js 18 or later and npm, and Python 3.9 or
//! later with pip: the toolkits embedded in warren are installed under the tests' cache
//! folder (`warren_testkit::test_cache_dir`) first; without `python3` the Python guest
//! is skipped, saying so). `WARREN_BENCH_QUICK=1` runs far fewer iterations (a smoke
//! test, not figures); `WARREN_BENCH_GUESTS=js` or `=py` measures one guest.

use serde_json::{json, Value};
use std::error::Error;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warren::clock::{SharedClock, SystemClock};
use warren::task::{Resolution, TaskId};
use warren::wasm::{
    EngineConfig, JsToolkit, KillSwitch, PyToolkit, RunEnd, TaskCode, TaskDb, TaskInput, TaskVm,
    VmLimits, WasmEngine,
};

type BenchResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

const TASK_TYPE: &str = "demo:ping";
const DATA: &str = r#"{"ping":42}"#;
const TIMEOUT: Duration = Duration::from_secs(30);

/// Iteration counts.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    /// Cold compiles (each into an emptied cache folder).
    cold: usize,
    /// Loads with the cache warm.
    cache_loads: usize,
    /// Fresh instances (instantiate, first call, drop).
    fresh: usize,
    /// Untimed calls on the reused VM before the timed ones.
    warmup: usize,
    /// Timed calls on the reused VM.
    warm: usize,
}

impl Sizes {
    fn from_env() -> Sizes {
        let quick = std::env::var("WARREN_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        if quick {
            Sizes {
                cold: 1,
                cache_loads: 5,
                fresh: 20,
                warmup: 20,
                warm: 500,
            }
        } else {
            Sizes {
                cold: 3,
                cache_loads: 30,
                fresh: 500,
                warmup: 500,
                warm: 10_000,
            }
        }
    }
}

/// Timings of one measurement, sorted.
struct Measurement {
    name: String,
    samples: Vec<Duration>,
}

impl Measurement {
    fn new(name: String, mut samples: Vec<Duration>) -> Measurement {
        samples.sort();
        Measurement { name, samples }
    }

    /// The sample at quantile `q` (nearest rank).
    fn quantile(&self, q: f64) -> Duration {
        let n = self.samples.len();
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
        self.samples[rank - 1]
    }

    fn median(&self) -> Duration {
        let n = self.samples.len();
        if n % 2 == 1 {
            self.samples[n / 2]
        } else {
            (self.samples[n / 2 - 1] + self.samples[n / 2]) / 2
        }
    }

    fn min(&self) -> Duration {
        self.samples[0]
    }

    fn max(&self) -> Duration {
        self.samples[self.samples.len() - 1]
    }

    fn mean(&self) -> Duration {
        self.samples.iter().sum::<Duration>() / self.samples.len() as u32
    }

    fn json_line(&self) -> String {
        let us = |d: Duration| (d.as_secs_f64() * 1e7).round() / 10.0;
        json!({
            "bench": "vm",
            "measurement": self.name,
            "n": self.samples.len(),
            "median_us": us(self.median()),
            "p99_us": us(self.quantile(0.99)),
            "min_us": us(self.min()),
            "max_us": us(self.max()),
            "mean_us": us(self.mean()),
        })
        .to_string()
    }
}

/// A ratio of two medians against its target.
struct Ratio {
    name: &'static str,
    value: f64,
    target: f64,
}

impl Ratio {
    fn met(&self) -> bool {
        self.value >= self.target
    }

    fn json_line(&self) -> String {
        json!({
            "bench": "vm",
            "ratio": self.name,
            "value": (self.value * 10.0).round() / 10.0,
            "target_min": self.target,
            "met": self.met(),
        })
        .to_string()
    }
}

fn input(id: i64) -> TaskInput {
    TaskInput {
        id: TaskId(id),
        task_type: TASK_TYPE.into(),
        data: DATA.into(),
        aux_data: None,
        failures: 0,
        iteration: 0,
    }
}

/// Checks that a run completed with `{"pong":42}`.
fn check(end: &RunEnd) -> BenchResult<()> {
    match end {
        RunEnd::Resolved(Resolution::Completion { result }) => {
            let value: Value = serde_json::from_str(result)?;
            if value == json!({"pong": 42}) {
                Ok(())
            } else {
                Err(format!("unexpected result {result}").into())
            }
        }
        other => Err(format!("expected a completion, got {other:?}").into()),
    }
}

fn record(out: &mut Vec<Measurement>, name: String, samples: Vec<Duration>) {
    let m = Measurement::new(name, samples);
    println!("{}", m.json_line());
    out.push(m);
}

/// Builds a guest's source into the engine's cache: (engine, entry, module folder).
type BuildSource = Box<dyn Fn(&WasmEngine, &Path, &Path) -> BenchResult<()>>;

/// One guest to measure: its task code, how its source is built, and the prefix of its
/// measurements' names (`""` for JavaScript, whose names predate the others).
struct Guest {
    prefix: &'static str,
    entry: std::path::PathBuf,
    module_dir: std::path::PathBuf,
    build: BuildSource,
    build_name: &'static str,
    cold: usize,
}

/// Cold compiles into an emptied cache folder, then loads from the warm cache.
/// Returns the code as loaded from the cache.
fn compile_and_load(
    engine: &WasmEngine,
    guest: &Guest,
    sizes: Sizes,
    out: &mut Vec<Measurement>,
) -> BenchResult<Arc<TaskCode>> {
    let (entry, module_dir) = (guest.entry.as_path(), guest.module_dir.as_path());
    let name = |what: &str| format!("{}{what}", guest.prefix);
    let cache = engine
        .cache()
        .dir()
        .ok_or("the benchmark needs a disk cache folder")?
        .to_path_buf();
    let (mut build, mut cold_load) = (Vec::new(), Vec::new());
    for _ in 0..guest.cold {
        if cache.exists() {
            std::fs::remove_dir_all(&cache)?;
        }
        engine.cache().forget_loaded();
        let started = Instant::now();
        (guest.build)(engine, entry, module_dir)?;
        build.push(started.elapsed());
        let started = Instant::now();
        let code = engine.load(TASK_TYPE, entry, module_dir)?;
        cold_load.push(started.elapsed());
        if code.from_cache {
            return Err("the cold load came from the cache".into());
        }
    }
    record(out, guest.build_name.into(), build);
    record(out, name("cold_load"), cold_load);

    let mut cache_load = Vec::new();
    let mut code = None;
    for _ in 0..sizes.cache_loads {
        engine.cache().forget_loaded();
        let started = Instant::now();
        let loaded = engine.load(TASK_TYPE, entry, module_dir)?;
        cache_load.push(started.elapsed());
        if !loaded.from_cache {
            return Err("a load with the cache warm did not come from the cache".into());
        }
        code = Some(loaded);
    }
    record(out, name("cache_load"), cache_load);
    code.ok_or_else(|| "no cache loads".into())
}

/// Fresh instance per task, then one reused VM.
async fn run_vms(
    engine: Arc<WasmEngine>,
    code: Arc<TaskCode>,
    sizes: Sizes,
    prefix: &'static str,
) -> BenchResult<Vec<Measurement>> {
    let name = |what: &str| format!("{prefix}{what}");
    let clock: SharedClock = Arc::new(SystemClock);
    let limits = VmLimits {
        max_runs: u32::MAX,
        ..VmLimits::default()
    };
    let mut out = Vec::new();

    let (mut instantiate, mut first_call, mut fresh_call, mut drop_vm) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..sizes.fresh {
        let (code, clock, input, kill) = (
            code.clone(),
            clock.clone(),
            input(i as i64),
            KillSwitch::new(),
        );
        let started = Instant::now();
        let mut vm = TaskVm::new(&engine, code, limits, clock).await?;
        let instantiated = Instant::now();
        let report = vm.run(input, TaskDb::None, Some(TIMEOUT), kill).await;
        let called = Instant::now();
        drop(vm);
        let dropped = Instant::now();
        check(&report.end)?;
        instantiate.push(instantiated - started);
        first_call.push(called - instantiated);
        fresh_call.push(called - started);
        drop_vm.push(dropped - called);
    }
    record(&mut out, name("instantiate"), instantiate);
    record(&mut out, name("first_call"), first_call);
    record(&mut out, name("fresh_call"), fresh_call);
    record(&mut out, name("drop_vm"), drop_vm);

    let mut vm = TaskVm::new(&engine, code, limits, clock).await?;
    let mut warm_call = Vec::with_capacity(sizes.warm);
    for i in 0..sizes.warmup + sizes.warm {
        let (input, kill) = (input(i as i64), KillSwitch::new());
        let started = Instant::now();
        let report = vm.run(input, TaskDb::None, Some(TIMEOUT), kill).await;
        let elapsed = started.elapsed();
        check(&report.end)?;
        if i >= sizes.warmup {
            warm_call.push(elapsed);
        }
    }
    if !vm.is_reusable() || vm.runs() as usize != sizes.warmup + sizes.warm {
        return Err(format!("the reused VM was retired or miscounted: {vm:?}").into());
    }
    record(&mut out, name("warm_call"), warm_call);
    Ok(out)
}

fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

fn print_table(rows: &[Measurement], ratios: &[Ratio]) {
    println!();
    println!(
        "{:<12} {:>6} {:>11} {:>11} {:>11} {:>11}",
        "measurement", "n", "median", "p99", "min", "max"
    );
    for m in rows {
        println!(
            "{:<12} {:>6} {:>11} {:>11} {:>11} {:>11}",
            m.name,
            m.samples.len(),
            fmt_duration(m.median()),
            fmt_duration(m.quantile(0.99)),
            fmt_duration(m.min()),
            fmt_duration(m.max()),
        );
    }
    println!();
    for r in ratios {
        println!(
            "{:<40} {:>9.1}×  (target ≥ {}×: {})",
            r.name,
            r.value,
            r.target,
            if r.met() { "met" } else { "MISSED" }
        );
    }
}

/// Whether `python3` runs (the Python guest is skipped without it).
fn have_python() -> bool {
    std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn main() -> BenchResult<()> {
    let sizes = Sizes::from_env();
    let root = warren_testkit::repo();
    let which = std::env::var("WARREN_BENCH_GUESTS").unwrap_or_else(|_| "js,py".into());
    // The toolkits the tests install (or $WARREN_JS_KIT), installed before anything is
    // timed: the builds measure compiles, not the one-off installs.
    let kit = JsToolkit::locate_in(&warren_testkit::test_cache_dir());
    kit.prepare()?;
    let python = PyToolkit::embedded(&warren_testkit::test_cache_dir());
    let mut guests = Vec::new();
    if which.split(',').any(|g| g == "js") {
        let js = kit.clone();
        guests.push(Guest {
            prefix: "",
            entry: root.join("examples/modules/demo/tasks/ping.js"),
            module_dir: root.join("examples/modules/demo"),
            build: Box::new(move |engine, entry, dir| {
                js.compile(entry, dir, engine.cache())?;
                Ok(())
            }),
            build_name: "js_build",
            cold: sizes.cold,
        });
    }
    if which.split(',').any(|g| g == "py") {
        if have_python() {
            let py = python.clone();
            guests.push(Guest {
                prefix: "py_",
                entry: root.join("benches/guests/ping.py"),
                module_dir: root.join("benches/guests"),
                build: Box::new(move |engine, entry, dir| {
                    py.compile(entry, dir, engine.cache())?;
                    Ok(())
                }),
                build_name: "py_build",
                // A Python build takes seconds: two samples.
                cold: sizes.cold.min(2),
            });
        } else {
            eprintln!("vm bench: python3 cannot be run: the Python guest is skipped");
        }
    }
    let tmp = warren_testkit::Scratch::new("bench-vm");
    let engine = Arc::new(WasmEngine::new(EngineConfig {
        cache_dir: Some(tmp.join("cache")),
        js: Some(kit.clone()),
        python: Some(python),
        ..EngineConfig::default()
    })?);
    eprintln!(
        "vm bench: {TASK_TYPE}, pooled: {}, cache: {}, {sizes:?}",
        engine.is_pooled(),
        engine
            .cache()
            .dir()
            .map_or("none (memory only)".into(), |d| d.display().to_string())
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    for guest in &guests {
        eprintln!("vm bench: {}", guest.entry.display());
        let code = compile_and_load(&engine, guest, sizes, &mut rows)?;
        let prefix = guest.prefix;
        let vm_rows = runtime.block_on(async {
            tokio::spawn(run_vms(engine.clone(), code, sizes, prefix))
                .await
                .map_err(|e| -> Box<dyn Error + Send + Sync> { e.into() })?
        })?;
        rows.extend(vm_rows);
    }

    let median = |name: &str| {
        rows.iter()
            .find(|m| m.name == name)
            .map(|m| m.median().as_secs_f64())
            .unwrap_or(f64::NAN)
    };
    let ratios = [
        Ratio {
            name: "cold_load / cache_load",
            value: median("cold_load") / median("cache_load"),
            target: 100.0,
        },
        Ratio {
            name: "(js_build + cold_load) / cache_load",
            value: (median("js_build") + median("cold_load")) / median("cache_load"),
            target: 100.0,
        },
        Ratio {
            name: "fresh_call / warm_call",
            value: median("fresh_call") / median("warm_call"),
            target: 10.0,
        },
    ];
    for r in &ratios {
        println!("{}", r.json_line());
    }
    print_table(&rows, &ratios);
    if let Some(w) = rows.iter().find(|m| m.name == "warm_call") {
        let verdict = |d: Duration| {
            if d <= Duration::from_micros(50) {
                "met"
            } else {
                "MISSED"
            }
        };
        println!(
            "{:<40} {:>11}  (target ≤ 50 µs: {}; p99 {}: {})",
            "warm_call median",
            fmt_duration(w.median()),
            verdict(w.median()),
            fmt_duration(w.quantile(0.99)),
            verdict(w.quantile(0.99)),
        );
    }
    drop(runtime);
    Ok(())
}
