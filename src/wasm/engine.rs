//! The one wasmtime engine of a node, its linker, and the epoch ticker.

use super::cache::ComponentCache;
use super::host::HostState;
use super::js::JsToolkit;
use super::python::PyToolkit;
use super::WasmError;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances: guests are interrupted (killed, timed out) within two
/// ticks, and yield to other async work once per tick.
pub const TICK: Duration = Duration::from_millis(5);

/// Settings of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Where compiled components are cached; `None`: [`ComponentCache::default_dir`]
    /// (and memory only when that is `None` too, or the folder is not private).
    pub cache_dir: Option<PathBuf>,
    /// Use the pooling allocator (falls back to on-demand allocation when the pool
    /// cannot be reserved).
    pub pooling: bool,
    /// Largest linear memory any instance may have (bytes); per-VM limits are lower.
    pub max_memory_bytes: usize,
    /// Live VMs the engine is sized for: the pool holds this many component instances,
    /// each with the core instances, memories and tables of [`VM_BUDGET`]. Runners keep
    /// their idle VMs within it (see [`super::idle_vms_per_runner`]). Also bounds the
    /// idle VMs when the pool is not used, to bound memory.
    pub pool_instances: u32,
    /// The JavaScript toolkit, for `.js` task code; `None`: [`JsToolkit::locate_in`]
    /// the cache folder (the embedded toolkit, installed under it on first use).
    pub js: Option<JsToolkit>,
    /// The Python toolkit, for `.py` task code; `None`: the embedded one, installed
    /// under the cache folder on first use.
    pub python: Option<PyToolkit>,
    /// Write a perf map (`/tmp/perf-PID.map`) naming the compiled guest functions, so
    /// that `perf` profiles show guest code by function instead of as bare addresses.
    /// For profiling only: the map grows with every component compiled or loaded.
    pub perf_map: bool,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            cache_dir: None,
            pooling: true,
            max_memory_bytes: 1 << 30,
            pool_instances: 128,
            js: None,
            python: None,
            perf_map: false,
        }
    }
}

/// The pool slots one VM is budgeted, by kind of slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmBudget {
    /// Core module instances.
    pub core_instances: u32,
    /// Linear memories.
    pub memories: u32,
    /// Tables.
    pub tables: u32,
}

/// What one VM is budgeted in the pool: a QuickJS task component, the kind of task
/// code most often run, with headroom. Measured with [`WasmEngine::pool_usage`]
/// (wasmtime 48, componentize-qjs 0.4.5; see `tests/hostile_code.rs`): one QuickJS VM
/// holds 9 core instances, 2 memories and 2 tables; a hand-written WAT task 1, 1 and 0.
/// The pool that stopped at "maximum concurrent limit of 1024 for core instances"
/// after about a hundred VMs had budgeted 8 core instances per VM. Larger VMs still
/// run: a runner short of slots drops idle VMs (see [`super::VmCache::instantiate`]).
pub const VM_BUDGET: VmBudget = VmBudget {
    core_instances: 12,
    memories: 3,
    tables: 4,
};

/// What the pool holds right now: a statistic, for sizing the pool and for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolUsage {
    /// Live component instances (one per VM).
    pub component_instances: u64,
    /// Live core module instances.
    pub core_instances: u64,
    /// Linear memories in use.
    pub memories: usize,
    /// Tables in use.
    pub tables: usize,
}

/// The fewest VMs the pool is sized for per runner: the one it runs and three idle ones.
pub const MIN_VMS_PER_RUNNER: u32 = 4;

impl EngineConfig {
    /// These settings with a pool large enough for `runners` runners: at least
    /// [`MIN_VMS_PER_RUNNER`] VMs each, so every runner keeps a few idle VMs however
    /// many runners a node has (a larger configured pool is kept).
    pub fn sized_for_runners(mut self, runners: usize) -> EngineConfig {
        let wanted = u32::try_from(runners)
            .unwrap_or(u32::MAX)
            .saturating_mul(MIN_VMS_PER_RUNNER);
        self.pool_instances = self.pool_instances.max(wanted);
        self
    }
}

/// The engine shared by every task VM of a node.
pub struct WasmEngine {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<HostState>,
    pub(crate) cache: ComponentCache,
    pub(crate) js: Option<JsToolkit>,
    pub(crate) python: Option<PyToolkit>,
    pooled: bool,
    vm_slots: u32,
    ticker_stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for WasmEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmEngine")
            .field("pooled", &self.pooled)
            .field("cache", &self.cache)
            .finish()
    }
}

impl Drop for WasmEngine {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

fn base_config(perf_map: bool) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.memory_init_cow(true);
    if perf_map {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    config
}

impl WasmEngine {
    /// Builds the engine, its linker (WASI without filesystem, network or environment,
    /// plus Warren's host interface) and starts the epoch ticker.
    pub fn new(settings: EngineConfig) -> Result<WasmEngine, WasmError> {
        let (engine, pooled) = if settings.pooling {
            let mut pool = PoolingAllocationConfig::default();
            let vms = settings.pool_instances;
            pool.total_component_instances(vms);
            pool.total_core_instances(vms.saturating_mul(VM_BUDGET.core_instances));
            pool.total_memories(vms.saturating_mul(VM_BUDGET.memories));
            pool.total_tables(vms.saturating_mul(VM_BUDGET.tables));
            pool.max_memory_size(settings.max_memory_bytes);
            let mut config = base_config(settings.perf_map);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
            match Engine::new(&config) {
                Ok(engine) => (engine, true),
                Err(e) => {
                    tracing::warn!(error = %e, "pooling allocator unavailable; using on-demand allocation");
                    (Self::on_demand(settings.perf_map)?, false)
                }
            }
        } else {
            (Self::on_demand(settings.perf_map)?, false)
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(engine_error)?;
        super::bindings::TaskWorld::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(engine_error)?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_ticker(&engine, ticker_stop.clone())?;
        let cache_dir = settings.cache_dir.or_else(ComponentCache::default_dir);
        Ok(WasmEngine {
            // Without a usable cache folder there is nowhere to install the toolkit.
            js: settings
                .js
                .or_else(|| cache_dir.as_deref().map(JsToolkit::locate_in)),
            python: settings
                .python
                .or_else(|| cache_dir.as_deref().map(PyToolkit::embedded)),
            cache: ComponentCache::new(cache_dir),
            engine,
            linker,
            pooled,
            vm_slots: settings.pool_instances,
            ticker_stop,
        })
    }

    fn on_demand(perf_map: bool) -> Result<Engine, WasmError> {
        Engine::new(&base_config(perf_map)).map_err(engine_error)
    }

    /// Whether instances come from the pooling allocator.
    pub fn is_pooled(&self) -> bool {
        self.pooled
    }

    /// How many VMs of [`VM_BUDGET`] size may be live at once
    /// ([`EngineConfig::pool_instances`]).
    pub fn vm_slots(&self) -> u32 {
        self.vm_slots
    }

    /// What the instance pool holds right now; `None` without the pooling allocator.
    pub fn pool_usage(&self) -> Option<PoolUsage> {
        let m = self.engine.pooling_allocator_metrics()?;
        Some(PoolUsage {
            component_instances: m.component_instances(),
            core_instances: m.core_instances(),
            memories: m.memories(),
            tables: m.tables(),
        })
    }

    /// The compiled-component cache.
    pub fn cache(&self) -> &ComponentCache {
        &self.cache
    }
}

/// A wasmtime error setting up the engine, its text as before.
fn engine_error(e: wasmtime::Error) -> WasmError {
    WasmError::Engine {
        message: e.to_string(),
        source: super::wasmtime_cause(e),
    }
}

/// Advances the engine's epoch every [`TICK`] until the engine is dropped.
fn spawn_ticker(engine: &Engine, stop: Arc<AtomicBool>) -> Result<(), WasmError> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("warren-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })
        .map(|_| ())
        .map_err(|e| WasmError::Engine {
            message: format!("cannot start the epoch ticker: {e}"),
            source: std::sync::Arc::new(e),
        })
}
