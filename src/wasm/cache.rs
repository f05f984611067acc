//! The cache of compiled components, keyed by the content hash of the code and the
//! engine's compatibility hash: in memory for this process, and on disk in a private
//! folder so later processes skip the compile.
//!
//! Compiled components are native code, so an entry on disk is used only when it is
//! safe: the folder and the file belong to this user and nobody else can write them,
//! and the entry names the key it is looked up under (see [`super::cache_entry`]).
//! Anything else is compiled again in memory, with a warning naming the file and why.
//! However many callers ask for one component at once, it is compiled once: within a
//! process by [`InFlight`], and across processes (nodes on one machine, parallel
//! tests) sharing the folder by a file lock held around "look on disk, else compile".

// Unsafe code is allowed here (and denied elsewhere, see `lib.rs`): loading a compiled
// component from disk (`Component::deserialize`) is unsafe by wasmtime's contract, since
// it trusts the file to be native code wasmtime produced. The one unsafe call below
// says why that holds.
#![allow(unsafe_code)]

use super::cache_entry::{self, hex, Lookup};
use super::in_flight::InFlight;
use super::trust::{check_dir, create_private_dir};
use super::WasmError;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use wasmtime::component::Component;
use wasmtime::Engine;

/// Compiled components, in memory and (when a safe folder is available) on disk.
pub struct ComponentCache {
    /// The private folder of the disk cache; `None`: memory only.
    dir: Option<PathBuf>,
    /// Components compiled or loaded by this process, by key.
    loaded: Mutex<HashMap<String, Component>>,
    compiling: InFlight<Result<Component, WasmError>>,
    building: InFlight<Result<Vec<u8>, WasmError>>,
    compiles: AtomicU64,
    builds: AtomicU64,
}

impl std::fmt::Debug for ComponentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentCache")
            .field("dir", &self.dir)
            .field("compiles", &self.compiles())
            .field("builds", &self.builds())
            .finish()
    }
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

impl ComponentCache {
    /// A cache keeping its files in `dir` (created readable by this user only), or in
    /// memory only when `dir` is `None` or cannot be trusted with native code (then a
    /// warning says why, once).
    pub fn new(dir: Option<PathBuf>) -> ComponentCache {
        let dir = match dir {
            Some(dir) => match create_private_dir(&dir)
                .map_err(|e| format!("cannot create it: {e}"))
                .and_then(|()| check_dir(&dir))
            {
                Ok(()) => Some(dir),
                Err(why) => {
                    tracing::warn!(
                        dir = %dir.display(),
                        reason = %why,
                        "the compile cache folder is not safe to load native code from; \
                         compiled code is kept in memory only"
                    );
                    None
                }
            },
            None => {
                tracing::warn!(
                    "no folder for the compile cache (neither $WARREN_CACHE_DIR, \
                     $XDG_CACHE_HOME nor $HOME is set); compiled code is kept in memory only"
                );
                None
            }
        };
        ComponentCache {
            dir,
            loaded: Mutex::default(),
            compiling: InFlight::default(),
            building: InFlight::default(),
            compiles: AtomicU64::new(0),
            builds: AtomicU64::new(0),
        }
    }

    /// `$WARREN_CACHE_DIR`, else `$XDG_CACHE_HOME/warren`, else `$HOME/.cache/warren`;
    /// `None` when none is set (there is no shared fallback folder: anyone could
    /// create it first).
    pub fn default_dir() -> Option<PathBuf> {
        let env = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        env("WARREN_CACHE_DIR")
            .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("warren")))
            .or_else(|| env("HOME").map(|d| d.join(".cache").join("warren")))
    }

    /// The folder of the disk cache; `None` when compiled code is kept in memory only.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Components compiled by this cache so far (not loaded from memory or disk): a
    /// statistic, for `warren build`'s report and for tests.
    pub fn compiles(&self) -> u64 {
        self.compiles.load(Ordering::Relaxed)
    }

    /// JavaScript builds run by this cache so far (see [`ComponentCache::built`]): a
    /// statistic, like [`ComponentCache::compiles`].
    pub fn builds(&self) -> u64 {
        self.builds.load(Ordering::Relaxed)
    }

    /// Forgets the components kept in memory, so the next loads read the disk cache or
    /// compile again (for benchmarks of those paths).
    pub fn forget_loaded(&self) {
        self.lock_loaded().clear();
    }

    fn lock_loaded(&self) -> std::sync::MutexGuard<'_, HashMap<String, Component>> {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The key of `bytes` compiled by `engine`.
    fn key(engine: &Engine, bytes: &[u8]) -> String {
        let mut hasher = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        hasher.0.update(bytes);
        hex(&hasher.0.finalize())
    }

    /// The component for `bytes` (binary or WAT text; `source` names it in errors):
    /// from memory, else from a trusted disk entry, else compiled (and stored). Returns
    /// whether it came from a cache rather than a compile made for this call.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        source: &Path,
    ) -> Result<(Component, bool), WasmError> {
        let key = Self::key(engine, bytes);
        if let Some(found) = self.lock_loaded().get(&key) {
            return Ok((found.clone(), true));
        }
        let mut compiled_here = false;
        let component = self.compiling.run(&key, || {
            if let Some(found) = self.lock_loaded().get(&key) {
                return Ok(found.clone());
            }
            let component = self.exclusively(&format!("{key}.cwasm"), || {
                match self.read_disk_entry(engine, &key) {
                    Some(component) => Ok(component),
                    None => {
                        compiled_here = true;
                        self.compile(engine, &key, bytes, source)
                    }
                }
            })?;
            self.lock_loaded().insert(key.clone(), component.clone());
            Ok(component)
        })?;
        Ok((component, !compiled_here))
    }

    /// The component of a trusted disk entry for `key`, if there is one.
    fn read_disk_entry(&self, engine: &Engine, key: &str) -> Option<Component> {
        let file = self.dir.as_ref()?.join(format!("{key}.cwasm"));
        let payload = self.lookup(&file, key)?;
        // SAFETY: the payload comes from a file this user owns and nobody else can
        // write, in a folder of the same kind, and its header names this key (which
        // includes the engine's compatibility hash) and the digest of this payload: it
        // is a component this cache serialized with this engine build.
        match unsafe { Component::deserialize(engine, &payload) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %format!("{e:#}"), "unusable compile cache entry; recompiling");
                None
            }
        }
    }

    fn compile(
        &self,
        engine: &Engine,
        key: &str,
        bytes: &[u8],
        source: &Path,
    ) -> Result<Component, WasmError> {
        self.compiles.fetch_add(1, Ordering::Relaxed);
        let component = Component::new(engine, bytes).map_err(|e| WasmError::Invalid {
            path: source.display().to_string(),
            message: format!("{e:#}"),
            source: super::wasmtime_cause(e),
        })?;
        match component.serialize() {
            Ok(serialized) => self.store(&format!("{key}.cwasm"), key, &serialized),
            Err(e) => {
                tracing::warn!(source = %source.display(), error = %format!("{e:#}"), "cannot serialize a compiled component")
            }
        }
        Ok(component)
    }

    /// The output of a build (for instance JavaScript compiled to a component) whose
    /// inputs hash to `key`: from a trusted disk entry `name`, else from `build`, run
    /// once however many callers ask at the same time, and stored.
    pub(crate) fn built(
        &self,
        name: &str,
        key: &str,
        build: impl FnOnce() -> Result<Vec<u8>, WasmError>,
    ) -> Result<Vec<u8>, WasmError> {
        let on_disk = || self.lookup(&self.dir.as_ref()?.join(name), key);
        if let Some(found) = on_disk() {
            return Ok(found);
        }
        self.building.run(key, || {
            self.exclusively(name, || {
                if let Some(found) = on_disk() {
                    return Ok(found);
                }
                self.builds.fetch_add(1, Ordering::Relaxed);
                let output = build()?;
                self.store(name, key, &output);
                Ok(output)
            })
        })
    }

    /// Runs `work` (look for entry `name` on disk, else make and store it) while holding
    /// an exclusive lock on `name.lock` in the cache folder, so processes sharing the
    /// folder make each entry once: the others wait, then find it on disk. Without a
    /// folder, or when the lock cannot be taken (then with a warning), `work` runs
    /// unlocked: the worst case is a duplicate compile, never a wrong entry (entries
    /// are written atomically).
    fn exclusively<T>(&self, name: &str, work: impl FnOnce() -> T) -> T {
        let Some(dir) = &self.dir else {
            return work();
        };
        let path = dir.join(format!("{name}.lock"));
        let mut options = std::fs::OpenOptions::new();
        options.create(true).truncate(false).write(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let locked = create_private_dir(dir)
            .and_then(|()| options.open(&path))
            .and_then(|file| file.lock().map(|()| file));
        match locked {
            // The lock is released when the file is closed, after `work`.
            Ok(_file) => work(),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot lock the compile cache entry; it may be compiled twice");
                work()
            }
        }
    }

    /// The payload of the entry `file` for `key` when it can be trusted; a refused
    /// entry is reported.
    fn lookup(&self, file: &Path, key: &str) -> Option<Vec<u8>> {
        match cache_entry::read(file, key) {
            Lookup::Found(payload) => Some(payload),
            Lookup::Missing => None,
            Lookup::Refused(why) => {
                tracing::warn!(file = %file.display(), reason = %why, "compile cache entry not trusted; compiling again");
                None
            }
        }
    }

    /// Writes an entry when there is a disk cache; failing to is only worth a warning.
    fn store(&self, name: &str, key: &str, payload: &[u8]) {
        let Some(dir) = &self.dir else { return };
        // The folder may have been removed since (it is a cache): make it again, and
        // write only into a folder that is still private.
        let written = create_private_dir(dir)
            .and_then(|()| check_dir(dir).map_err(std::io::Error::other))
            .and_then(|()| cache_entry::write(dir, name, key, payload));
        if let Err(e) = written {
            tracing::warn!(file = %dir.join(name).display(), error = %e, "cannot write the compile cache");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_folder_components_are_kept_in_memory() {
        let cache = ComponentCache::new(None);
        assert_eq!(cache.dir(), None);
        let engine = Engine::default();
        let load = || {
            cache
                .load_or_compile(&engine, b"(component)", Path::new("empty.wat"))
                .unwrap()
                .1
        };
        assert!(!load(), "the first load compiles");
        assert!(load(), "the second comes from memory");
        assert_eq!(cache.compiles(), 1);
        cache.forget_loaded();
        assert!(!load());
        assert_eq!(cache.compiles(), 2);
    }

    /// Two caches on one folder stand for two processes (nodes on one machine, test
    /// binaries run in parallel): each entry is made once, the other cache waits for
    /// it and then reads it from disk.
    #[test]
    fn caches_sharing_a_folder_compile_a_component_once() {
        let dir = std::env::temp_dir().join(format!(
            "warren-cache-lock-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let first = ComponentCache::new(Some(dir.clone()));
        let second = ComponentCache::new(Some(dir.clone()));
        assert!(first.dir().is_some() && second.dir().is_some());
        let engine = Engine::default();
        let wat = b"(component (core module (func (export \"f\"))))";
        std::thread::scope(|s| {
            for cache in [&first, &second] {
                let engine = &engine;
                s.spawn(move || {
                    cache
                        .load_or_compile(engine, wat, Path::new("f.wat"))
                        .unwrap()
                });
            }
        });
        assert_eq!(
            first.compiles() + second.compiles(),
            1,
            "one of the two compiled, the other loaded the entry from disk"
        );
        // While an entry is being made, its lock is held against every other open of
        // the lock file, as another process's would be.
        let lock_file = dir.join("x.wasm.lock");
        let output = first
            .built("x.wasm", &"ab".repeat(32), || {
                let other = std::fs::File::open(&lock_file).unwrap();
                assert!(matches!(
                    other.try_lock(),
                    Err(std::fs::TryLockError::WouldBlock)
                ));
                Ok(b"built".to_vec())
            })
            .unwrap();
        assert_eq!(output, b"built");
        let again = second
            .built("x.wasm", &"ab".repeat(32), || panic!("built twice"))
            .unwrap();
        assert_eq!(
            again, b"built",
            "the second cache reads the entry from disk"
        );
        let other = std::fs::File::open(&lock_file).unwrap();
        other.try_lock().expect("released once the entry is made");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
