//! JavaScript task code: compiled to a component by the toolkit of `guest/js`
//! (`node build.mjs`, QuickJS by default, StarlingMonkey selectable; embedded in the
//! binary and installed on first use, see `embedded.rs`), cached by a hash of
//! everything the build reads.

use super::cache::{create_private_dir, hex};
use super::toolkit::Toolkit;
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

/// The JavaScript toolkit: a `guest/js` folder with `build.mjs` and its npm packages;
/// usually the one embedded in the binary ([`JsToolkit::locate`]).
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

    /// Compiles `entry` (a file inside the module folder `root`) to a component in the
    /// cache folder `cache`, unless the same inputs were compiled before. Returns the
    /// component's path.
    pub fn compile(&self, entry: &Path, root: &Path, cache: &Path) -> Result<PathBuf, WasmError> {
        let failed = |message: String| WasmError::JsCompile {
            path: entry.display().to_string(),
            message,
        };
        // Before the key: it hashes the toolkit's files, which an install writes.
        self.prepare().map_err(failed)?;
        let key = self.key(entry, root).map_err(|e| failed(e.to_string()))?;
        let out = cache.join(format!("js-{key}.wasm"));
        if out.is_file() {
            return Ok(out);
        }
        create_private_dir(cache).map_err(|e| failed(e.to_string()))?;
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
        Ok(out)
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
