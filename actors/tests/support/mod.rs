//! Helpers shared by the actor tests: where the repository is, the demo module copied
//! into a test's modules folder, and a bounded wait for conditions nothing announces.

#![allow(dead_code)] // each test file uses its own part

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
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
