//! Helpers shared by the actor tests: where the repository is, the cache folder and
//! JavaScript toolkit the tests share, the demo module copied into a test's modules
//! folder, and a bounded wait for conditions nothing announces.

#![allow(dead_code)] // each test file uses its own part

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use warren::wasm::{EngineConfig, JsEngine, JsToolkit};

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The cache folder the tests share, under `target/`: compiled components, and the
/// JavaScript toolkit embedded in warren, installed there on first use.
pub fn test_cache_dir() -> PathBuf {
    repo().join("target/warren-test-cache")
}

/// The embedded JavaScript toolkit (QuickJS), installed under [`test_cache_dir`] (a
/// check once it is there). Panics saying what is missing (Node.js, npm) otherwise.
pub fn js_toolkit() -> JsToolkit {
    let kit = JsToolkit::embedded(&test_cache_dir(), JsEngine::QuickJs);
    if let Err(e) = kit.prepare() {
        panic!("cannot install the JavaScript toolkit the tests compile with: {e}");
    }
    kit
}

/// Engine settings of the in-process tests: the shared cache folder and the embedded
/// toolkit — never a `$WARREN_JS_KIT` of the environment.
pub fn engine_config() -> EngineConfig {
    EngineConfig {
        cache_dir: Some(test_cache_dir()),
        js: Some(js_toolkit()),
        ..EngineConfig::default()
    }
}

/// Points a `warren` child process at the shared cache folder, with the embedded
/// toolkit installed there first (so nodes started together do not all wait on one
/// install) and no `$WARREN_JS_KIT` or `$WARREN_JS_ENGINE` of the environment.
pub fn use_test_cache(cmd: &mut Command) -> &mut Command {
    js_toolkit();
    cmd.env("WARREN_CACHE_DIR", test_cache_dir())
        .env_remove("WARREN_JS_KIT")
        .env_remove("WARREN_JS_ENGINE")
}

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

/// Looks at `check` every 20 ms, up to `limit`, until it holds: for states nothing
/// announces (a task starting to run). Panics naming `what` when time runs out.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
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
