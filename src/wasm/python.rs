//! Python task code: compiled to a component by the toolkit of `guest/python`
//! (`build.py`, which runs componentize-py; embedded in the binary and installed under
//! the cache folder on first use, with pip, into a folder of its own), and cached by a
//! hash of everything the build reads. A task is one `.py` file of its module folder,
//! imported as a module of its package path (`tasks/greet.py` is `tasks.greet`).

use super::cache::ComponentCache;
use super::cache_entry::hex;
use super::source_key::collect_module_files;
use super::toolkit::{error_chain, pip_install, KitFile, Requirement, Toolkit, ToolkitSpec};
use super::trust::PrivateTempDir;
use super::WasmError;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The embedded files, by their paths in the repository (the installed toolkit keeps
/// that layout, so `build.py` finds the world at `../../wit/warren-task.wit`).
const PY_FILES: &[(&str, &[u8])] = &[
    (
        "guest/python/build.py",
        include_bytes!("../../guest/python/build.py"),
    ),
    (
        "guest/python/warren.py",
        include_bytes!("../../guest/python/warren.py"),
    ),
    (
        "guest/python/requirements.txt",
        include_bytes!("../../guest/python/requirements.txt"),
    ),
    (
        "wit/warren-task.wit",
        include_bytes!("../../wit/warren-task.wit"),
    ),
];

/// Where `build.py` lives inside the toolkit's installation folder.
const PY_WORKDIR: &str = "guest/python";

/// The folder (inside the working folder) pip installs componentize-py into; a folder
/// on `PYTHONPATH` rather than a virtual environment, which could not be moved into
/// place after the install.
const DEPS: &str = "deps";

/// The spec of the Python toolkit: the embedded files, Python 3 with pip, and the
/// pinned componentize-py installed with pip.
pub fn python_toolkit_spec() -> ToolkitSpec {
    let hint = "install Python 3.9 or later with pip (for instance `apt-get install \
                python3 python3-pip`)";
    ToolkitSpec {
        name: "python".into(),
        title: "the Python toolkit (componentize-py)".into(),
        files: PY_FILES
            .iter()
            .map(|(path, bytes)| KitFile {
                path: (*path).into(),
                bytes: Cow::Borrowed(*bytes),
            })
            .collect(),
        workdir: PY_WORKDIR.into(),
        requires: vec![Requirement::python3(hint)],
        install: vec![pip_install(DEPS, "requirements.txt")],
        ready: vec![format!("{DEPS}/componentize_py/__init__.py")],
    }
}

/// The Python toolkit embedded in this binary, installed under a cache root.
#[derive(Debug, Clone)]
pub struct PyToolkit {
    toolkit: Toolkit,
}

impl PyToolkit {
    /// The embedded toolkit, installed under `cache_root` (in `cache_root/toolkits/`)
    /// when it first compiles.
    pub fn embedded(cache_root: &Path) -> PyToolkit {
        PyToolkit {
            toolkit: Toolkit::new(python_toolkit_spec(), cache_root),
        }
    }

    /// The installed toolkit's working folder (holding `build.py` and `deps/`).
    pub fn dir(&self) -> PathBuf {
        self.toolkit.workdir()
    }

    /// Compiles `entry` (a `.py` file inside the module folder `root`) to a component,
    /// unless the same inputs were built before (the output is kept in `cache`).
    /// Installs the toolkit first if needed.
    pub fn compile(
        &self,
        entry: &Path,
        root: &Path,
        cache: &ComponentCache,
    ) -> Result<Vec<u8>, WasmError> {
        let failed = |message: String| WasmError::Compile {
            path: entry.display().to_string(),
            message,
        };
        self.toolkit.ensure().map_err(|e| failed(error_chain(&e)))?;
        let key = self.key(entry, root).map_err(|e| failed(e.to_string()))?;
        cache.built(&format!("py-{key}.wasm"), &key, || {
            self.build(entry, root).map_err(failed)
        })
    }

    /// Runs `python3 build.py` into a private temporary folder and reads the component.
    fn build(&self, entry: &Path, root: &Path) -> Result<Vec<u8>, String> {
        let dir = self.dir();
        let scratch = PrivateTempDir::new("warren-py-out")
            .map_err(|e| format!("cannot create a temporary folder: {e}"))?;
        let out = scratch.path().join("task.wasm");
        let output = Command::new("python3")
            .arg(dir.join("build.py"))
            .arg("--py")
            .arg(entry)
            .arg("--root")
            .arg(root)
            .arg("--out")
            .arg(&out)
            .env("PYTHONPATH", dir.join(DEPS))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .output()
            .map_err(|e| format!("cannot run python3: {e}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).trim().to_string());
        }
        std::fs::read(&out).map_err(|e| format!("cannot read the built component: {e}"))
    }

    /// A hash of everything a build reads: the module's Python files, the entry's
    /// place among them, the kit, the WIT world and the pinned compiler.
    fn key(&self, entry: &Path, root: &Path) -> std::io::Result<String> {
        let mut h = Sha256::new();
        h.update(b"python");
        h.update(self.toolkit.hash());
        // Tracebacks name the module folder (build.py bakes it in).
        h.update(root.file_name().unwrap_or_default().as_encoded_bytes());
        // The files build.py copies for the compiler (`module_files` there), and all
        // it copies.
        let mut files = Vec::new();
        let is_python = |name: &str| name.ends_with(".py");
        collect_module_files(&std::fs::canonicalize(root)?, root, &is_python, &mut files)?;
        super::source_key::hash_module_files(&mut h, root, entry, files)?;
        Ok(hex(&h.finalize()))
    }
}

/// Whether `code` is Python task code.
pub fn is_python_source(code: &Path) -> bool {
    code.extension().is_some_and(|e| e == "py")
}
