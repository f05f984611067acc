//! The on-disk cache of compiled components, keyed by the content hash of the code and
//! the engine's compatibility hash. Only files this cache wrote are ever deserialized.

use super::WasmError;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::component::Component;
use wasmtime::Engine;

/// Where compiled components are kept.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: PathBuf,
}

/// Feeds `Hash` output into SHA-256, for hashing the engine's compatibility hash.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// Lower-case hex of a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl ComponentCache {
    /// A cache in `dir` (created when first written).
    pub fn new(dir: PathBuf) -> ComponentCache {
        ComponentCache { dir }
    }

    /// `$WARREN_CACHE_DIR`, else `$XDG_CACHE_HOME/warren`, else `~/.cache/warren`, else
    /// a folder in the system's temporary directory.
    pub fn default_dir() -> PathBuf {
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        env("WARREN_CACHE_DIR")
            .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("warren")))
            .or_else(|| env("HOME").map(|d| d.join(".cache").join("warren")))
            .unwrap_or_else(|| std::env::temp_dir().join("warren-cache"))
    }

    /// The cache folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key of `bytes` compiled by `engine`.
    fn key(engine: &Engine, bytes: &[u8]) -> String {
        let mut hasher = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        hasher.0.update(bytes);
        hex(&hasher.0.finalize())
    }

    /// The component for `bytes` (binary or WAT text), from the cache when present,
    /// else compiled and stored. Returns whether it came from the cache.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        source: &Path,
    ) -> Result<(Component, bool), WasmError> {
        let file = self.dir.join(format!("{}.cwasm", Self::key(engine, bytes)));
        if file.exists() {
            // SAFETY: the file was written by `store` below into Warren's own cache
            // folder, under a name derived from the engine's compatibility hash, so it
            // holds a component this engine serialized.
            match unsafe { Component::deserialize_file(engine, &file) } {
                Ok(component) => return Ok((component, true)),
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "unreadable cache entry; recompiling");
                }
            }
        }
        let component = Component::new(engine, bytes).map_err(|e| WasmError::Invalid {
            path: source.display().to_string(),
            message: format!("{e:#}"),
        })?;
        if let Err(e) = self.store(&component, &file) {
            tracing::warn!(file = %file.display(), error = %e, "cannot write the component cache");
        }
        Ok((component, false))
    }

    fn store(&self, component: &Component, file: &Path) -> std::io::Result<()> {
        create_private_dir(&self.dir)?;
        let bytes = component
            .serialize()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let tmp = file.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, file)
    }
}

/// Creates `dir` readable by this user only (the cache holds native code).
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}
