//! The compile cache and JavaScript toolkit every test shares: the toolkit embedded in
//! Warren, installed under the cache folder on first use, never a `$WARREN_JS_KIT` of
//! the environment, so the tests need nothing prepared by hand but Node.js and npm.

use std::path::PathBuf;
use std::process::Command;
use warren::wasm::{EngineConfig, JsEngine, JsToolkit};

/// The cache folder the tests share: compiled components, and the JavaScript toolkit
/// installed there on first use. It lives in the build folder (`$CARGO_TARGET_DIR`
/// when set, as CI sets it to a cache kept between runs; else the repository's
/// `target/`), so it lasts as long as the build it belongs to. Processes sharing it
/// compile each component once (the cache locks its entries).
pub fn test_cache_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|dir| !dir.is_empty())
        .map(|dir| crate::repo().join(dir))
        .unwrap_or_else(|| crate::repo().join("target"));
    target.join("warren-test-cache")
}

/// The embedded JavaScript toolkit (QuickJS), installed under [`test_cache_dir`] (only
/// a check once it is there). Panics saying what is missing (Node.js, npm) otherwise.
pub fn js_toolkit() -> JsToolkit {
    let kit = JsToolkit::embedded(&test_cache_dir(), JsEngine::QuickJs);
    if let Err(e) = kit.prepare() {
        panic!("cannot install the JavaScript toolkit the tests compile with: {e}");
    }
    kit
}

/// Engine settings of in-process tests: the shared cache folder and toolkit.
pub fn engine_config() -> EngineConfig {
    EngineConfig {
        cache_dir: Some(test_cache_dir()),
        js: Some(js_toolkit()),
        ..EngineConfig::default()
    }
}

/// Points a `warren` child process at the shared cache folder, with the toolkit
/// installed there first (so nodes started together do not all wait on one install)
/// and no `$WARREN_JS_KIT` or `$WARREN_JS_ENGINE` of the environment.
pub fn use_test_cache(cmd: &mut Command) -> &mut Command {
    js_toolkit();
    cmd.env("WARREN_CACHE_DIR", test_cache_dir())
        .env_remove("WARREN_JS_KIT")
        .env_remove("WARREN_JS_ENGINE")
}
