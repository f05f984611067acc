//! The WebAssembly host: task code runs as components of the `warren:task` world
//! (`wit/warren-task.wit`) under wasmtime.
//!
//! - [`WasmEngine`]: one wasmtime engine (component model, async host calls, pooling
//!   allocator with an on-demand fallback, copy-on-write memory images, epoch
//!   interruption driven by a ticker thread) and the compiled-component cache.
//! - [`TaskCode`]: one task type's compiled component, ready to instantiate.
//! - [`TaskVm`]: a live instance of it, reused for the next task of that type until it
//!   is recycled (by run count or age) or broken (a trap, kill or timeout).
//! - [`VmCache`]: the idle VMs a runner keeps, bounded so that all runners fit the pool.
//! - [`KillSwitch`]: stops a running guest from any thread within two ticks.
//! - [`JsToolkit`]: compiles JavaScript and TypeScript task code with the toolkit
//!   embedded in the binary, which [`Toolkit`] installs under the cache folder on first
//!   use; [`PyToolkit`] does the same for Python.
//! - [`SourceMap`]: a bundled task's source map, read from its component, which puts
//!   failure stacks back in the author's lines.

mod bindings;
mod bounded_command;
mod cache;
mod cache_entry;
mod embedded;
mod engine;
mod host;
mod in_flight;
mod js;
mod module_packages;
mod python;
mod source_key;
mod source_map;
mod toolkit;
mod trust;
mod vm;
mod vm_cache;

pub use cache::ComponentCache;
pub use embedded::{js_toolkit_spec, KitNotReady, JS_KIT_TYPES};
pub use engine::{
    EngineConfig, PoolUsage, VmBudget, WasmEngine, MIN_VMS_PER_RUNNER, TICK, VM_BUDGET,
};
pub use host::{LogLine, TaskDb};
pub use js::{is_task_source, JsEngine, JsToolkit};
pub use python::{is_python_source, python_toolkit_spec, PyToolkit};
pub use source_map::{SourceMap, SourceMapError, SECTION as SOURCE_MAP_SECTION};
pub use toolkit::{
    error_chain, installed_toolkits, pip_install, toolkits_dir, Ensured, InstalledToolkit, KitFile,
    Requirement, Toolkit, ToolkitError, ToolkitSpec, ToolkitState,
};
pub use vm::{FailureCause, KillSwitch, RunEnd, RunReport, TaskCode, TaskInput, TaskVm, VmLimits};
pub use vm_cache::{idle_vms_per_runner, VmCache};

/// The error underneath a [`WasmError`] (wasmtime's, or the operating system's), kept
/// for [`std::error::Error::source`]; shared, so that a [`WasmError`] stays cheap to
/// clone (every task waiting for a type's code gets the same error).
pub type WasmCause = std::sync::Arc<dyn std::error::Error + Send + Sync>;

/// A wasmtime error as a [`WasmCause`] (wasmtime's error type is not a
/// [`std::error::Error`] itself).
pub(crate) fn wasmtime_cause(e: wasmtime::Error) -> WasmCause {
    std::sync::Arc::from(e.into_boxed_dyn_error())
}

/// What can go wrong loading or running task code. Each message names what failed
/// and why, the underlying error's text included; `source()` gives that error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WasmError {
    /// The wasmtime engine could not be set up.
    #[error("cannot set up the WebAssembly engine: {message}")]
    Engine {
        /// What failed.
        message: String,
        /// The underlying error.
        #[source]
        source: WasmCause,
    },
    /// A code file could not be read.
    #[error("cannot read task code {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        message: String,
        /// The underlying error, when the operating system gave one.
        #[source]
        source: Option<WasmCause>,
    },
    /// A file is not a valid component, or not one of the task world.
    #[error("task code {path} is not a valid task component: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong (for a missing export, names it).
        message: String,
        /// wasmtime's error.
        #[source]
        source: WasmCause,
    },
    /// Source code (JavaScript, TypeScript, Python) could not be compiled to a
    /// component.
    #[error("compiling {path} to WebAssembly failed: {message}")]
    Compile {
        /// The source file.
        path: String,
        /// The compiler's message, or what is missing to run it.
        message: String,
    },
    /// Instantiating a component failed (for instance, limits too small for it).
    #[error("cannot instantiate {task_type}: {message}")]
    Instantiate {
        /// The task type.
        task_type: String,
        /// Why.
        message: String,
        /// wasmtime's error.
        #[source]
        source: WasmCause,
    },
    /// The engine's instance pool had no free slot for a new VM: dropping idle VMs
    /// makes room (see [`VmCache::instantiate`]).
    #[error("cannot instantiate {task_type}: the instance pool is full ({message})")]
    PoolExhausted {
        /// The task type.
        task_type: String,
        /// The pool's message, naming the limit that was reached.
        message: String,
        /// wasmtime's error.
        #[source]
        source: WasmCause,
    },
}
