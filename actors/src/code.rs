//! Compiled task code shared by every runner of a node: each task type's component is
//! loaded (compiled, or read from the disk cache) once.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use warren::wasm::{TaskCode, WasmEngine, WasmError};

/// The engine and the task code loaded so far.
#[derive(Clone)]
pub struct CodeCache {
    engine: Arc<WasmEngine>,
    loaded: Arc<Mutex<HashMap<String, Arc<TaskCode>>>>,
}

impl CodeCache {
    /// An empty cache over `engine`.
    pub fn new(engine: Arc<WasmEngine>) -> CodeCache {
        CodeCache {
            engine,
            loaded: Arc::default(),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &WasmEngine {
        &self.engine
    }

    /// The code of `name`, loading it from `code` on first use.
    pub fn get(
        &self,
        name: &str,
        code: &Path,
        module_dir: &Path,
    ) -> Result<Arc<TaskCode>, WasmError> {
        if let Some(found) = self
            .loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Ok(found.clone());
        }
        let loaded = self.engine.load(name, code, module_dir)?;
        self.loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), loaded.clone());
        Ok(loaded)
    }
}
