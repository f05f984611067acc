//! Helpers shared by the actor tests: where the repository is, the cache folder and
//! JavaScript toolkit the tests share, the demo module copied into a test's modules
//! folder, and a bounded wait for conditions nothing announces.

#![allow(dead_code, unused_imports)] // each test file uses its own part

use std::path::Path;
pub use warren_testkit::{
    engine_config, eventually, js_toolkit, remove_sqlite, repo, test_cache_dir, use_test_cache,
    Scratch,
};

/// Copies `examples/modules/demo` (definition and task code) to `modules/demo`.
pub fn copy_demo_module(modules: &Path) {
    let demo = modules.join("demo");
    std::fs::create_dir_all(demo.join("tasks")).unwrap();
    for entry in std::fs::read_dir(repo().join("examples/modules/demo/tasks")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, demo.join("tasks").join(path.file_name().unwrap())).unwrap();
    }
    std::fs::copy(
        repo().join("examples/modules/demo/moduledefinition.xml"),
        demo.join("moduledefinition.xml"),
    )
    .unwrap();
}

/// A `warren serve` child process, killed when dropped; its stderr is collected in
/// `log` for failure messages.
pub struct Server {
    /// The process.
    pub child: std::process::Child,
    /// What it wrote to stderr so far.
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    /// What the process wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
