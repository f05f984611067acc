//! JavaScript task code: compiled to a component by the toolkit in `guest/js`
//! (`node build.mjs`, QuickJS by default, StarlingMonkey selectable), cached by a hash
//! of everything the build reads.

use super::cache::ComponentCache;
use super::cache_entry::hex;
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
}

impl JsToolkit {
    /// A toolkit in `dir` using QuickJS.
    pub fn new(dir: impl Into<PathBuf>) -> JsToolkit {
        JsToolkit {
            dir: dir.into(),
            engine: JsEngine::QuickJs,
        }
    }

    /// Finds the toolkit: `$WARREN_JS_KIT`, else `guest/js` under the working
    /// directory, else the source tree this binary was built from. `$WARREN_JS_ENGINE`
    /// (`quickjs` or `starlingmonkey`) picks the engine.
    pub fn locate() -> Option<JsToolkit> {
        let candidates = [
            std::env::var_os("WARREN_JS_KIT").map(PathBuf::from),
            Some(PathBuf::from("guest/js")),
            Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("guest/js")),
        ];
        let dir = candidates
            .into_iter()
            .flatten()
            .find(|d| d.join("build.mjs").is_file())?;
        let engine = match std::env::var("WARREN_JS_ENGINE").as_deref() {
            Ok("starlingmonkey") => JsEngine::StarlingMonkey,
            _ => JsEngine::QuickJs,
        };
        Some(JsToolkit {
            dir: std::fs::canonicalize(&dir).unwrap_or(dir),
            engine,
        })
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
        let key = self.key(entry, root).map_err(|e| self.failed(entry, e))?;
        cache.built(&format!("js-{key}.wasm"), &key, || self.build(entry, root))
    }

    fn failed(&self, entry: &Path, message: impl ToString) -> WasmError {
        WasmError::JsCompile {
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

    /// A hash of everything a build reads: the module's JavaScript and JSON files, the
    /// entry's place among them, the helper, the WIT world, the pinned toolchain and the
    /// engine choice.
    fn key(&self, entry: &Path, root: &Path) -> std::io::Result<String> {
        let mut h = Sha256::new();
        h.update(self.engine.flag());
        h.update(
            entry
                .strip_prefix(root)
                .unwrap_or(entry)
                .to_string_lossy()
                .as_bytes(),
        );
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
        collect_sources(root, &mut files)?;
        files.sort();
        for file in files {
            h.update(
                file.strip_prefix(root)
                    .unwrap_or(&file)
                    .to_string_lossy()
                    .as_bytes(),
            );
            h.update(std::fs::read(&file)?);
        }
        Ok(hex(&h.finalize()))
    }
}

fn collect_sources(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if !name.starts_with('.') && name != "node_modules" {
                collect_sources(&path, out)?;
            }
        } else if [".js", ".mjs", ".cjs", ".json"]
            .iter()
            .any(|ext| name.ends_with(ext))
        {
            out.push(path);
        }
    }
    Ok(())
}
