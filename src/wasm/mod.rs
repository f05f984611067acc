//! The WebAssembly host: task code runs as components of the `warren:task` world
//! (`wit/warren-task.wit`) under wasmtime.
//!
//! - [`WasmEngine`]: one wasmtime engine (component model, async host calls, pooling
//!   allocator with an on-demand fallback, copy-on-write memory images, epoch
//!   interruption driven by a ticker thread) and the compiled-component cache.
//! - [`TaskCode`]: one task type's compiled component, ready to instantiate.
//! - [`TaskVm`]: a live instance of it, reused for the next task of that type until it
//!   is recycled (by run count or age) or broken (a trap, kill or timeout).
//! - [`KillSwitch`]: stops a running guest from any thread within two ticks.
//! - [`JsToolkit`]: compiles JavaScript task code with the toolkit embedded in the
//!   binary, which [`Toolkit`] installs under the cache folder on first use.

mod bindings;
mod cache;
mod embedded;
mod engine;
mod host;
mod js;
mod toolkit;
mod vm;

pub use cache::ComponentCache;
pub use embedded::js_toolkit_spec;
pub use engine::{EngineConfig, WasmEngine, TICK};
pub use host::{LogLine, TaskDb};
pub use js::{JsEngine, JsToolkit};
pub use toolkit::{
    installed_toolkits, toolkits_dir, Ensured, InstalledToolkit, KitFile, Requirement, Toolkit,
    ToolkitError, ToolkitSpec, ToolkitState,
};
pub use vm::{KillSwitch, RunEnd, RunReport, TaskCode, TaskInput, TaskVm, VmLimits};

/// What can go wrong loading or running task code.
#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    /// The wasmtime engine could not be set up.
    #[error("cannot set up the WebAssembly engine: {0}")]
    Engine(String),
    /// A code file could not be read.
    #[error("cannot read task code {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// A file is not a valid component, or not one of the task world.
    #[error("task code {path} is not a valid task component: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong (for a missing export, names it).
        message: String,
    },
    /// JavaScript could not be compiled to a component.
    #[error("compiling {path} to WebAssembly failed: {message}")]
    JsCompile {
        /// The JavaScript file.
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
    },
}
