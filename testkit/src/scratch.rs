//! Scratch folders and files under the system's temp folder, unique per process and
//! call, removed again when dropped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// The repository's root (the tests' guests, examples and modules live there).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the test kit lives in a folder of the repository")
        .to_path_buf()
}

/// A name no other test of any running process uses: `{prefix}_{pid}_{n}` (lower
/// case letters, digits and `_` when `prefix` has only those, so it is also a valid
/// PostgreSQL database name).
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// A fresh, empty folder for one test, removed with everything in it when dropped.
#[derive(Debug)]
pub struct Scratch(PathBuf);

impl Scratch {
    /// Makes `{temp}/warren-{label}_{pid}_{n}`, emptied first should a killed run
    /// have left it behind.
    pub fn new(label: &str) -> Scratch {
        let dir = std::env::temp_dir().join(unique_name(&format!("warren-{label}")));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        Scratch(dir)
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// A path inside the folder.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Removes a SQLite database file and everything SQLite and Warren keep beside it:
/// the `-wal` and `-shm` files and the `-wake` folder of its wake-up sockets.
pub fn remove_sqlite(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let _ = std::fs::remove_dir_all(format!("{}-wake", path.display()));
}
