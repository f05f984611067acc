//! The one wasmtime engine of a node, its linker, and the epoch ticker.

use super::cache::ComponentCache;
use super::host::HostState;
use super::js::JsToolkit;
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
    /// Where compiled components are cached; `None`: [`ComponentCache::default_dir`].
    pub cache_dir: Option<PathBuf>,
    /// Use the pooling allocator (falls back to on-demand allocation when the pool
    /// cannot be reserved).
    pub pooling: bool,
    /// Largest linear memory any instance may have (bytes); per-VM limits are lower.
    pub max_memory_bytes: usize,
    /// Live component instances the pool holds at once.
    pub pool_instances: u32,
    /// The JavaScript toolkit, for `.js` task code; `None`: [`JsToolkit::locate_in`]
    /// the cache folder (the embedded toolkit, installed under it on first use).
    pub js: Option<JsToolkit>,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            cache_dir: None,
            pooling: true,
            max_memory_bytes: 1 << 30,
            pool_instances: 128,
            js: None,
        }
    }
}

/// The engine shared by every task VM of a node.
pub struct WasmEngine {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<HostState>,
    pub(crate) cache: ComponentCache,
    pub(crate) js: Option<JsToolkit>,
    pooled: bool,
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

fn base_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.memory_init_cow(true);
    config
}

impl WasmEngine {
    /// Builds the engine, its linker (WASI without filesystem, network or environment,
    /// plus Warren's host interface) and starts the epoch ticker.
    pub fn new(settings: EngineConfig) -> Result<WasmEngine, WasmError> {
        let (engine, pooled) = if settings.pooling {
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(settings.pool_instances);
            pool.total_core_instances(settings.pool_instances * 8);
            pool.total_memories(settings.pool_instances * 2);
            pool.total_tables(settings.pool_instances * 8);
            pool.max_memory_size(settings.max_memory_bytes);
            let mut config = base_config();
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
            match Engine::new(&config) {
                Ok(engine) => (engine, true),
                Err(e) => {
                    tracing::warn!(error = %e, "pooling allocator unavailable; using on-demand allocation");
                    (Self::on_demand()?, false)
                }
            }
        } else {
            (Self::on_demand()?, false)
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| WasmError::Engine(e.to_string()))?;
        super::bindings::TaskWorld::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)
            .map_err(|e| WasmError::Engine(e.to_string()))?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_ticker(&engine, ticker_stop.clone())?;
        let cache_dir = settings
            .cache_dir
            .unwrap_or_else(ComponentCache::default_dir);
        Ok(WasmEngine {
            js: Some(
                settings
                    .js
                    .unwrap_or_else(|| JsToolkit::locate_in(&cache_dir)),
            ),
            cache: ComponentCache::new(cache_dir),
            engine,
            linker,
            pooled,
            ticker_stop,
        })
    }

    fn on_demand() -> Result<Engine, WasmError> {
        Engine::new(&base_config()).map_err(|e| WasmError::Engine(e.to_string()))
    }

    /// Whether instances come from the pooling allocator.
    pub fn is_pooled(&self) -> bool {
        self.pooled
    }

    /// The compiled-component cache.
    pub fn cache(&self) -> &ComponentCache {
        &self.cache
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
        .map_err(|e| WasmError::Engine(format!("cannot start the epoch ticker: {e}")))
}
