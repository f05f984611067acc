//! A module folder's npm packages: a module whose JavaScript or TypeScript imports npm
//! packages has a `package.json` and, from its author, a `package-lock.json`. When the
//! lock file is there and `node_modules` is not (a fresh checkout, a deploy that
//! leaves installed packages out), Warren runs `npm ci --ignore-scripts` there once
//! before the first compile. Install scripts do not run: they would run on the node,
//! outside the sandbox task code is held in, and bundling never needs them.
//!
//! An install holds an exclusive lock on the lock file itself, so processes and
//! threads compiling the same module at once install once; the others wait and find
//! `node_modules`. The packages' contents count in the compile cache's key through
//! [`hash_installed`].

use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::SystemTime;

/// How many trailing lines of a failed `npm ci` an error quotes.
const OUTPUT_LINES: usize = 30;

/// Installs the packages of module folder `root` with `npm ci --ignore-scripts` when it
/// has a `package-lock.json` and no `node_modules`; does nothing otherwise. The error
/// says what failed, for the compile error of the task that needed it.
pub(super) fn ensure_installed(root: &Path) -> Result<(), String> {
    let lock_path = root.join("package-lock.json");
    if !lock_path.is_file() || root.join("node_modules").exists() {
        return Ok(());
    }
    let lock = std::fs::File::open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
    // Another process or thread may have installed while this one waited.
    if root.join("node_modules").exists() {
        return Ok(());
    }
    tracing::info!(
        dir = %root.display(),
        "installing the module's npm packages (`npm ci --ignore-scripts`; once, since it has a package-lock.json and no node_modules)"
    );
    let output = Command::new("npm")
        .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
        .current_dir(root)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            format!(
                "the module folder {} has a package-lock.json, and installing its packages needs npm: {e}",
                root.display()
            )
        })?;
    if output.status.success() {
        return Ok(());
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(OUTPUT_LINES)..].join("\n");
    // A half-made node_modules would be taken for an installed one next time.
    let _ = std::fs::remove_dir_all(root.join("node_modules"));
    Err(format!(
        "installing the packages of {} (`npm ci --ignore-scripts`) failed ({}); its last output:\n{tail}",
        root.display(),
        output.status
    ))
}

/// Adds what identifies the installed packages of `root` to `h`: every file under
/// `node_modules` by path, size and modification time (a stat, not a read, per file).
/// A package installed, removed, upgraded or edited by hand changes it. Links are not
/// followed (npm links workspace packages; their targets are outside `node_modules`
/// and are hashed as the module's own files when inside the module folder).
pub(super) fn hash_installed(root: &Path, h: &mut Sha256) -> std::io::Result<()> {
    let modules = root.join("node_modules");
    if !modules.is_dir() {
        return Ok(());
    }
    let mut entries = Vec::new();
    walk(&modules, &modules, &mut entries)?;
    entries.sort();
    for (path, size, modified) in entries {
        h.update(path.as_bytes());
        h.update(size.to_le_bytes());
        h.update(modified.to_le_bytes());
    }
    Ok(())
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, u64, u128)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_dir() {
            walk(base, &path, out)?;
        } else {
            let meta = entry.metadata()?;
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            let rel = path.strip_prefix(base).unwrap_or(&path);
            out.push((rel.to_string_lossy().into_owned(), meta.len(), modified));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(root: &Path) -> String {
        let mut h = Sha256::new();
        hash_installed(root, &mut h).unwrap();
        super::super::cache_entry::hex(&h.finalize())
    }

    #[test]
    fn a_changed_package_changes_the_hash() {
        let root = std::env::temp_dir().join(format!("warren-packages-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("node_modules/pkg")).unwrap();
        let none = {
            let empty = root.join("empty");
            std::fs::create_dir_all(&empty).unwrap();
            digest(&empty)
        };
        std::fs::write(root.join("node_modules/pkg/index.js"), "one").unwrap();
        let first = digest(&root);
        assert_ne!(first, none);
        assert_eq!(digest(&root), first, "the same packages hash the same");
        std::fs::write(root.join("node_modules/pkg/index.js"), "three").unwrap();
        assert_ne!(digest(&root), first, "an edited file");
        let edited = digest(&root);
        std::fs::write(root.join("node_modules/pkg/extra.js"), "").unwrap();
        assert_ne!(digest(&root), edited, "an added file");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn nothing_is_installed_without_a_lock_file_or_with_node_modules() {
        let root = std::env::temp_dir().join(format!("warren-no-install-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        // No lock file: nothing to do, even without npm.
        ensure_installed(&root).unwrap();
        assert!(!root.join("node_modules").exists());
        std::fs::write(root.join("package-lock.json"), "not json").unwrap();
        std::fs::create_dir_all(root.join("node_modules")).unwrap();
        ensure_installed(&root).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
    }
}
