//! Compiled task code shared by every runner of a node: each task type's component is
//! loaded (compiled, or read from the disk cache) once, ahead of the first task when
//! the node warms up.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use warren::catalog::Catalog;
use warren::wasm::{TaskCode, WasmEngine, WasmError};

/// The engine and the task code loaded so far.
#[derive(Clone)]
pub(crate) struct CodeCache {
    engine: Arc<WasmEngine>,
    loaded: Arc<Mutex<HashMap<String, Arc<TaskCode>>>>,
}

impl CodeCache {
    /// An empty cache over `engine`.
    pub(crate) fn new(engine: Arc<WasmEngine>) -> CodeCache {
        CodeCache {
            engine,
            loaded: Arc::default(),
        }
    }

    /// The engine.
    pub(crate) fn engine(&self) -> &WasmEngine {
        &self.engine
    }

    /// The code of `name`, loading it from `code` on first use.
    pub(crate) fn get(
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

impl CodeCache {
    /// Loads every task type's and scheduled task's code in the background, so the
    /// first task of a fresh node does not wait for its compile; logs progress. A task
    /// that arrives meanwhile waits for that same compile (the engine compiles each
    /// component once, however many ask for it) rather than starting another.
    pub(crate) fn warm_up(&self, catalog: &Catalog) {
        let mut work: Vec<(String, PathBuf, PathBuf)> = catalog
            .task_types()
            .map(|t| {
                (
                    t.def.task_type.to_string(),
                    t.def.code.clone(),
                    t.module_dir.clone(),
                )
            })
            .chain(
                catalog
                    .scheduled_tasks()
                    .map(|s| (s.def.tag.clone(), s.def.code.clone(), s.module_dir.clone())),
            )
            .collect();
        if work.is_empty() {
            return;
        }
        // Types sharing one code file share one compile: load each file once first.
        work.sort_by(|a, b| a.1.cmp(&b.1));
        let cache = self.clone();
        let spawned = std::thread::Builder::new()
            .name("warren-warm-up".into())
            .spawn(move || {
                let total = work.len();
                let started = std::time::Instant::now();
                let mut failed = 0;
                for (i, (name, code, module_dir)) in work.iter().enumerate() {
                    let one = std::time::Instant::now();
                    match cache.get(name, code, module_dir) {
                        Ok(loaded) => tracing::info!(
                            "task code {}/{total} ready: {name} ({} in {} ms)",
                            i + 1,
                            if loaded.from_cache {
                                "from the cache"
                            } else {
                                "compiled"
                            },
                            one.elapsed().as_millis()
                        ),
                        Err(e) => {
                            failed += 1;
                            tracing::warn!("task code {}/{total} failed: {name}: {e}", i + 1);
                        }
                    }
                }
                tracing::info!(
                    "task code warmed up: {} of {total} ready in {} ms",
                    total - failed,
                    started.elapsed().as_millis()
                );
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start warming up task code ({e}); it compiles on first use");
        }
    }
}
