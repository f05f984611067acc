//! JavaScript task code: compiled to a component by the toolkit of `guest/js`
//! (`node build.mjs`, QuickJS by default, StarlingMonkey selectable; embedded in the
//! binary and installed on first use, see `embedded.rs`), cached by a hash of
//! everything the build reads. Walking the module's sources never follows a link to a
//! folder, and a linked file must stay inside the module folder.

use super::cache::ComponentCache;
use super::cache_entry::hex;
use super::source_key::collect_module_files;
use super::toolkit::Toolkit;
use super::trust::PrivateTempDir;
use super::WasmError;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Which JavaScript engine a component embeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JsEngine {
    /// QuickJS via componentize-qjs: small (about 1.6 MB), fast to compile and call.
    #[default]
    QuickJs,
    /// StarlingMonkey via componentize-js: larger and slower to compile.
    StarlingMonkey,
}

impl JsEngine {
    fn flag(self) -> &'static str {
        match self {
            JsEngine::QuickJs => "quickjs",
            JsEngine::StarlingMonkey => "starlingmonkey",
        }
    }
}

/// The JavaScript toolkit: a `guest/js` folder with `build.mjs` and its npm packages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsToolkit {
    /// The folder holding `build.mjs`, `warren.js` and `node_modules`.
    pub dir: PathBuf,
    /// The engine to embed.
    pub engine: JsEngine,
    /// The embedded toolkit `dir` belongs to, installed there before the first compile;
    /// `None` for a folder prepared by hand.
    pub embedded: Option<Toolkit>,
}

impl JsToolkit {
    /// A toolkit in `dir` (prepared by hand with `npm ci`) using QuickJS.
    pub fn new(dir: impl Into<PathBuf>) -> JsToolkit {
        JsToolkit {
            dir: dir.into(),
            engine: JsEngine::QuickJs,
            embedded: None,
        }
    }

    /// Compiles `entry` (a file inside the module folder `root`) to a component, unless
    /// the same inputs were built before (the output is kept in `cache`). Returns the
    /// component's bytes. Concurrent calls for the same inputs run one build.
    pub fn compile(
        &self,
        entry: &Path,
        root: &Path,
        cache: &ComponentCache,
    ) -> Result<Vec<u8>, WasmError> {
        // Before the key: it hashes the toolkit's files and the module's packages,
        // which the installs write.
        self.prepare()
            .map_err(|e| self.failed(entry, super::toolkit::error_chain(&e)))?;
        super::module_packages::ensure_installed(root).map_err(|e| self.failed(entry, e))?;
        let key = self.key(entry, root).map_err(|e| self.failed(entry, e))?;
        cache.built(&format!("js-{key}.wasm"), &key, || self.build(entry, root))
    }

    fn failed(&self, entry: &Path, message: impl ToString) -> WasmError {
        WasmError::Compile {
            path: entry.display().to_string(),
            message: message.to_string(),
        }
    }

    /// Runs `node build.mjs` into a private temporary folder and reads the component.
    fn build(&self, entry: &Path, root: &Path) -> Result<Vec<u8>, WasmError> {
        let failed = |message: String| self.failed(entry, message);
        if !self.dir.join("node_modules").is_dir() {
            return Err(failed(format!(
                "the JavaScript toolkit is not installed: run `npm ci --prefix {}`",
                self.dir.display()
            )));
        }
        let scratch = PrivateTempDir::new("warren-js-out")
            .map_err(|e| failed(format!("cannot create a temporary folder: {e}")))?;
        let out = scratch.path().join("task.wasm");
        let output = Command::new("node")
            .arg(self.dir.join("build.mjs"))
            .arg("--js")
            .arg(entry)
            .arg("--root")
            .arg(root)
            .arg("--out")
            .arg(&out)
            .arg("--engine")
            .arg(self.engine.flag())
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => failed(
                    "JavaScript task code needs Node.js 18 or later and npm on the PATH \
                     (for instance `apt-get install nodejs npm`)"
                        .into(),
                ),
                _ => failed(format!("cannot run node: {e}")),
            })?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(failed(stderr.trim().to_string()));
        }
        std::fs::read(&out).map_err(|e| failed(format!("cannot read the built component: {e}")))
    }

    /// A hash of everything a build reads: the module's JavaScript, TypeScript and JSON
    /// files, its installed npm packages, the entry's place among them, the helper, the
    /// WIT world, the pinned toolchain and the engine choice.
    fn key(&self, entry: &Path, root: &Path) -> std::io::Result<String> {
        let mut h = Sha256::new();
        h.update(self.engine.flag());
        for kit_file in [
            "warren.js",
            "build.mjs",
            "package-lock.json",
            "../../wit/warren-task.wit",
        ] {
            h.update(kit_file);
            h.update(std::fs::read(self.dir.join(kit_file)).unwrap_or_default());
        }
        let mut files = Vec::new();
        collect_module_files(&std::fs::canonicalize(root)?, root, &is_source, &mut files)?;
        super::source_key::hash_module_files(&mut h, root, entry, files)?;
        super::module_packages::hash_installed(root, &mut h)?;
        Ok(hex(&h.finalize()))
    }
}

/// Whether a build reads files named like this (`build.mjs` copies or bundles the
/// same ones).
fn is_source(name: &str) -> bool {
    [".js", ".mjs", ".cjs", ".json", ".ts", ".mts", ".cts"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// Whether `code` is task code the JavaScript toolkit compiles: JavaScript (`.js`,
/// `.mjs`) or TypeScript (`.ts`, `.mts`, `.cts`, bundled first).
pub fn is_task_source(code: &Path) -> bool {
    code.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["js", "mjs", "ts", "mts", "cts"].contains(&e))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn sources_are_walked_without_following_folder_links() {
        let root = std::env::temp_dir().join(format!("warren-js-walk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("lib")).unwrap();
        std::fs::write(root.join("task.js"), "x").unwrap();
        std::fs::write(root.join("lib/util.mjs"), "y").unwrap();
        std::fs::write(root.join("lib/notes.txt"), "z").unwrap();
        std::os::unix::fs::symlink(".", root.join("again")).unwrap();
        std::os::unix::fs::symlink("..", root.join("lib/up")).unwrap();
        std::os::unix::fs::symlink("lib/util.mjs", root.join("alias.js")).unwrap();
        let real = std::fs::canonicalize(&root).unwrap();
        let mut files = Vec::new();
        collect_module_files(&real, &root, &is_source, &mut files).unwrap();
        files.sort();
        let names: Vec<_> = files
            .iter()
            .map(|f| f.strip_prefix(&root).unwrap().to_path_buf())
            .collect();
        assert_eq!(
            names,
            [
                Path::new("alias.js"),
                Path::new("lib/util.mjs"),
                Path::new("task.js")
            ]
        );

        let outside = root.with_extension("outside.json");
        std::fs::write(&outside, "{}").unwrap();
        std::os::unix::fs::symlink(&outside, root.join("lib/leak.json")).unwrap();
        let err = collect_module_files(&real, &root, &is_source, &mut Vec::new()).unwrap_err();
        assert!(
            err.to_string()
                .contains("leading outside the module folder"),
            "{err}"
        );
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::remove_file(&outside).unwrap();
    }
}
