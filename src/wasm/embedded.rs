//! The JavaScript toolkit Warren carries: the files of `guest/js` and the WIT world,
//! embedded in the binary at build time and installed under the cache folder (with
//! `npm ci`) the first time JavaScript must be compiled. An installed `warren`, or an
//! application embedding the engine, needs no source tree; `$WARREN_JS_KIT` still
//! points at a toolkit folder prepared by hand (for working on the kit itself).

use super::cache::ComponentCache;
use super::js::{JsEngine, JsToolkit};
use super::toolkit::{KitFile, Requirement, Toolkit, ToolkitError, ToolkitSpec};
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// The embedded files, by their paths in the repository. The installed toolkit keeps
/// that layout, so `build.mjs` finds the world at `../../wit/warren-task.wit` beside
/// itself there as it does in the repository.
const JS_FILES: &[(&str, &[u8])] = &[
    (
        "guest/js/build.mjs",
        include_bytes!("../../guest/js/build.mjs"),
    ),
    (
        "guest/js/warren.js",
        include_bytes!("../../guest/js/warren.js"),
    ),
    (
        "guest/js/warren.d.ts",
        include_bytes!("../../guest/js/warren.d.ts"),
    ),
    (
        "guest/js/package.json",
        include_bytes!("../../guest/js/package.json"),
    ),
    (
        "guest/js/package-lock.json",
        include_bytes!("../../guest/js/package-lock.json"),
    ),
    (
        "wit/warren-task.wit",
        include_bytes!("../../wit/warren-task.wit"),
    ),
];

/// The kit's TypeScript types (`guest/js/warren.d.ts`), for `warren toolkit types`:
/// what makes `import … from 'warren'` type-check in a TypeScript task.
pub const JS_KIT_TYPES: &str = include_str!("../../guest/js/warren.d.ts");

/// Where the toolkit's `build.mjs` lives inside its installation folder.
const JS_WORKDIR: &str = "guest/js";

/// The spec of the JavaScript toolkit for `engine`: the embedded files, Node.js 18 and
/// npm 7 (lock file version 3) or later, and `npm ci`. QuickJS needs only the
/// toolkit's runtime packages (`--omit=dev`, about 40 MB); StarlingMonkey needs its
/// development packages too (about 340 MB), so it is a toolkit of its own.
pub fn js_toolkit_spec(engine: JsEngine) -> ToolkitSpec {
    let hint = "install Node.js 18 or later with npm (for instance `apt-get install nodejs npm`, \
                or from https://nodejs.org), or set WARREN_JS_KIT to a toolkit folder \
                prepared with `npm ci`";
    let (name, title, omit_dev, ready) = match engine {
        JsEngine::QuickJs => (
            "js",
            "the JavaScript toolkit (QuickJS)",
            true,
            vec!["node_modules/componentize-qjs/bin/componentize-qjs".to_string()],
        ),
        JsEngine::StarlingMonkey => (
            "js-starlingmonkey",
            "the JavaScript toolkit (StarlingMonkey)",
            false,
            vec![
                "node_modules/componentize-qjs/bin/componentize-qjs".to_string(),
                "node_modules/@bytecodealliance/componentize-js/src/cli.js".to_string(),
            ],
        ),
    };
    let mut npm_ci: Vec<String> = ["npm", "ci", "--no-audit", "--no-fund"]
        .map(String::from)
        .to_vec();
    if omit_dev {
        npm_ci.push("--omit=dev".into());
    }
    ToolkitSpec {
        name: name.into(),
        title: title.into(),
        files: JS_FILES
            .iter()
            .map(|(path, bytes)| KitFile {
                path: (*path).into(),
                bytes: Cow::Borrowed(*bytes),
            })
            .collect(),
        workdir: JS_WORKDIR.into(),
        requires: Requirement::node_and_npm(18, hint),
        install: vec![npm_ci],
        ready,
    }
}

impl JsEngine {
    /// The engine `$WARREN_JS_ENGINE` names (`quickjs`, the default, or
    /// `starlingmonkey`).
    pub fn from_env() -> JsEngine {
        match std::env::var("WARREN_JS_ENGINE").as_deref() {
            Ok("starlingmonkey") => JsEngine::StarlingMonkey,
            _ => JsEngine::QuickJs,
        }
    }
}

impl JsToolkit {
    /// The toolkit embedded in this binary for `engine`, installed under the cache
    /// root `cache_root` (in `cache_root/toolkits/`) when it first compiles.
    pub fn embedded(cache_root: &Path, engine: JsEngine) -> JsToolkit {
        let toolkit = Toolkit::new(js_toolkit_spec(engine), cache_root);
        JsToolkit {
            dir: toolkit.workdir(),
            engine,
            embedded: Some(toolkit),
        }
    }

    /// The toolkit to use with the cache root `cache_root`: the folder in
    /// `$WARREN_JS_KIT` when set (prepared by hand with `npm ci`), else the embedded
    /// one. `$WARREN_JS_ENGINE` picks the engine.
    pub fn locate_in(cache_root: &Path) -> JsToolkit {
        let engine = JsEngine::from_env();
        match std::env::var_os("WARREN_JS_KIT").filter(|v| !v.is_empty()) {
            Some(dir) => {
                let dir = PathBuf::from(dir);
                JsToolkit {
                    dir: std::fs::canonicalize(&dir).unwrap_or(dir),
                    engine,
                    embedded: None,
                }
            }
            None => JsToolkit::embedded(cache_root, engine),
        }
    }

    /// [`JsToolkit::locate_in`] the default cache root
    /// ([`ComponentCache::default_dir`]); `None` when there is no usable cache folder
    /// to install the embedded toolkit in and `$WARREN_JS_KIT` is not set.
    pub fn locate() -> Option<JsToolkit> {
        match ComponentCache::default_dir() {
            Some(root) => Some(JsToolkit::locate_in(&root)),
            None => std::env::var_os("WARREN_JS_KIT")
                .filter(|v| !v.is_empty())
                .map(|_| JsToolkit::locate_in(Path::new("."))),
        }
    }

    /// Makes the toolkit ready to compile: installs the embedded toolkit unless it is
    /// installed (waiting for another process installing it), or checks that a folder
    /// prepared by hand has `build.mjs` and its packages. The error says what is
    /// missing and how to get it.
    pub fn prepare(&self) -> Result<(), KitNotReady> {
        if let Some(toolkit) = &self.embedded {
            return toolkit
                .ensure()
                .map(|_| ())
                .map_err(|e| KitNotReady::Install(Box::new(e)));
        }
        if !self.dir.join("build.mjs").is_file() {
            return Err(KitNotReady::NoBuildScript {
                dir: self.dir.clone(),
            });
        }
        if !self.dir.join("node_modules").is_dir() {
            return Err(KitNotReady::NotInstalled {
                dir: self.dir.clone(),
            });
        }
        Ok(())
    }
}

/// Why the JavaScript toolkit cannot compile yet (see [`JsToolkit::prepare`]).
#[derive(Debug, thiserror::Error)]
pub enum KitNotReady {
    /// The embedded toolkit could not be installed.
    #[error(transparent)]
    Install(Box<ToolkitError>),
    /// A folder named by `WARREN_JS_KIT` is not a toolkit.
    #[error(
        "the JavaScript toolkit folder {} (WARREN_JS_KIT) has no build.mjs; unset \
         WARREN_JS_KIT to use the toolkit built into warren",
        dir.display()
    )]
    NoBuildScript {
        /// The folder.
        dir: PathBuf,
    },
    /// A folder named by `WARREN_JS_KIT` has not had its packages installed.
    #[error("the JavaScript toolkit is not installed: run `npm ci --prefix {}`", dir.display())]
    NotInstalled {
        /// The folder.
        dir: PathBuf,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_files_are_the_repositorys() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        for (path, bytes) in JS_FILES {
            let on_disk = std::fs::read(repo.join(path)).unwrap();
            assert_eq!(&on_disk[..], *bytes, "{path}");
        }
    }

    #[test]
    fn each_engine_has_its_own_folder_and_build_mjs_finds_the_world() {
        let root = Path::new("/nonexistent/cache");
        let quick = JsToolkit::embedded(root, JsEngine::QuickJs);
        let starling = JsToolkit::embedded(root, JsEngine::StarlingMonkey);
        assert_ne!(quick.dir, starling.dir);
        assert!(quick.dir.starts_with(root.join("toolkits")));
        assert!(quick.dir.ends_with("guest/js"));
        // build.mjs's default --wit is ../../wit/warren-task.wit beside itself: the
        // installed layout keeps the world there.
        let build = std::str::from_utf8(JS_FILES[0].1).unwrap();
        assert!(build.contains("path.join(KIT_DIR, '..', '..', 'wit', 'warren-task.wit')"));
        assert_eq!(Path::new(JS_WORKDIR).components().count(), 2);
        let spec = js_toolkit_spec(JsEngine::QuickJs);
        assert!(spec.files.iter().any(|f| f.path == "wit/warren-task.wit"));
        assert!(spec.install[0].contains(&"--omit=dev".to_string()));
        assert!(!js_toolkit_spec(JsEngine::StarlingMonkey).install[0]
            .contains(&"--omit=dev".to_string()));
    }
}
