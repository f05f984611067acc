//! A module folder's npm packages: a module whose JavaScript or TypeScript imports npm
//! packages has a `package.json` and, from its author, a `package-lock.json`. When both
//! are there and `node_modules` is not (a fresh checkout, a deploy that leaves
//! installed packages out), Warren installs the packages once, before the first
//! compile: `npm ci --ignore-scripts --omit=dev` in a private folder holding only
//! those two files, then `node_modules` is moved into the module folder whole.
//!
//! Nothing of the module runs on the node: install scripts are off, the module's own
//! `.npmrc` is not read (it is not copied; it could name programs for npm to run), and
//! a lock file naming anything but registry downloads (a git repository, a local
//! folder, a link) is refused. An install holds an exclusive lock on the lock file, so
//! processes and threads compiling the same module at once install once; since
//! `node_modules` appears complete or not at all, a killed install leaves nothing that
//! looks installed. The packages' contents count in the compile cache's key through
//! [`hash_installed`].

use super::bounded_command::{run_bounded, Bounded};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

/// How many trailing lines of a failed `npm ci` an error quotes.
const OUTPUT_LINES: usize = 30;

/// The longest a module's `npm ci` may take: past it the install is stopped and the
/// compile fails saying so (a registry that stops answering would otherwise hold the
/// install lock, and every compile of the module, for ever).
const INSTALL_LIMIT: Duration = Duration::from_secs(600);

/// Installs the packages of module folder `root` when it has a `package.json` and a
/// `package-lock.json` and no `node_modules`; does nothing otherwise. The error says
/// what failed, for the compile error of the task that needed it.
pub(super) fn ensure_installed(root: &Path) -> Result<(), String> {
    let lock_path = root.join("package-lock.json");
    let wanted = |root: &Path| {
        root.join("package.json").is_file()
            && lock_path.is_file()
            && !root.join("node_modules").exists()
    };
    if !wanted(root) {
        return Ok(());
    }
    let lock = std::fs::File::open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
    // Another process or thread may have installed while this one waited.
    if !wanted(root) {
        return Ok(());
    }
    let text = std::fs::read_to_string(&lock_path)
        .map_err(|e| format!("cannot read {}: {e}", lock_path.display()))?;
    check_lock(&text).map_err(|e| format!("{}: {e}", lock_path.display()))?;
    // A folder of the module's own file system, so node_modules can be renamed into
    // place; a dot-folder, which builds and the cache key skip.
    let scratch = root.join(format!(".warren-npm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let result = install_in(root, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// Runs `npm ci` in `scratch` on copies of the module's package files and moves the
/// installed `node_modules` into `root`.
fn install_in(root: &Path, scratch: &Path) -> Result<(), String> {
    std::fs::create_dir(scratch)
        .map_err(|e| format!("cannot create {}: {e}", scratch.display()))?;
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(root.join(file), scratch.join(file))
            .map_err(|e| format!("cannot copy {file} to {}: {e}", scratch.display()))?;
    }
    tracing::info!(
        dir = %root.display(),
        "installing the module's npm packages (`npm ci --ignore-scripts --omit=dev`; once, since it has a package-lock.json and no node_modules)"
    );
    let mut npm = Command::new("npm");
    npm.args([
        "ci",
        "--ignore-scripts",
        "--omit=dev",
        "--no-audit",
        "--no-fund",
    ])
    .current_dir(scratch);
    let ended = run_bounded(npm, INSTALL_LIMIT).map_err(|e| {
        format!(
            "the module folder {} has a package-lock.json, and installing its packages needs npm: {e}",
            root.display()
        )
    })?;
    let failed = |output: &Output, how: String| {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(OUTPUT_LINES)..].join("\n");
        format!(
            "installing the packages of {} (`npm ci --ignore-scripts --omit=dev`) {how}; its last output:\n{tail}",
            root.display()
        )
    };
    match ended {
        Bounded::TimedOut(output) => {
            let limit = INSTALL_LIMIT.as_secs();
            return Err(failed(
                &output,
                format!("did not finish within {limit} s and was stopped"),
            ));
        }
        Bounded::Exited(output) if !output.status.success() => {
            return Err(failed(&output, format!("failed ({})", output.status)));
        }
        Bounded::Exited(_) => {}
    }
    let installed = scratch.join("node_modules");
    if !installed.is_dir() {
        // A lock file with no packages: nothing to install, but mark it done.
        std::fs::create_dir(&installed)
            .map_err(|e| format!("cannot create {}: {e}", installed.display()))?;
    }
    std::fs::rename(&installed, root.join("node_modules")).map_err(|e| {
        format!(
            "cannot move the installed packages into {}: {e}",
            root.display()
        )
    })
}

/// Refuses a lock file that names anything but registry downloads: a git repository,
/// a local folder or file, or a link would make npm run or read things of the
/// module's choosing on the node.
fn check_lock(text: &str) -> Result<(), String> {
    let lock: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))?;
    let mut entries: Vec<(String, &Value)> = Vec::new();
    if let Some(packages) = lock.get("packages").and_then(Value::as_object) {
        entries.extend(
            packages
                .iter()
                .filter(|(name, _)| !name.is_empty())
                .map(|(name, entry)| (name.clone(), entry)),
        );
    } else {
        collect_v1(&lock, &mut entries);
    }
    for (name, entry) in entries {
        if entry.get("link").and_then(Value::as_bool) == Some(true) {
            return Err(format!(
                "{name} is a link; only registry packages can be installed"
            ));
        }
        for field in ["resolved", "version"] {
            let Some(value) = entry.get(field).and_then(Value::as_str) else {
                continue;
            };
            // `npm:` is an alias of another registry package.
            let from_registry = ["https://", "http://", "npm:"]
                .iter()
                .any(|scheme| value.starts_with(scheme));
            if value.contains(':') && !from_registry {
                return Err(format!(
                    "{name} comes from {value}; only registry packages can be installed"
                ));
            }
        }
    }
    Ok(())
}

/// The entries of a version 1 lock file (nested `dependencies`).
fn collect_v1<'a>(node: &'a Value, out: &mut Vec<(String, &'a Value)>) {
    if let Some(deps) = node.get("dependencies").and_then(Value::as_object) {
        for (name, entry) in deps {
            out.push((name.clone(), entry));
            collect_v1(entry, out);
        }
    }
}

/// Adds what identifies the installed packages of `root` to `h`: every file under
/// every `node_modules` folder of the module (nested ones included) by path, size and
/// modification time (a stat, not a read, per file). A package installed, removed,
/// upgraded or edited by hand changes it. Links are not followed.
pub(super) fn hash_installed(root: &Path, h: &mut Sha256) -> std::io::Result<()> {
    let mut entries = Vec::new();
    find_node_modules(root, root, &mut entries)?;
    entries.sort();
    for (path, size, modified) in entries {
        h.update(path.as_bytes());
        h.update(size.to_le_bytes());
        h.update(modified.to_le_bytes());
    }
    Ok(())
}

/// Walks `dir` (skipping dot-folders) for `node_modules` folders and stats their files.
fn find_node_modules(
    base: &Path,
    dir: &Path,
    out: &mut Vec<(String, u64, u128)>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if !entry.file_type()?.is_dir() || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if name == "node_modules" {
            walk(base, &entry.path(), out)?;
        } else {
            find_node_modules(base, &entry.path(), out)?;
        }
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
    fn lock_files_naming_anything_but_the_registry_are_refused() {
        let v3 = |entry: &str| {
            format!(
                r#"{{"lockfileVersion": 3, "packages": {{"": {{}}, "node_modules/x": {entry}}}}}"#
            )
        };
        check_lock(&v3(
            r#"{"version": "1.0.0", "resolved": "https://registry.npmjs.org/x/-/x-1.0.0.tgz"}"#,
        ))
        .unwrap();
        for bad in [
            r#"{"resolved": "git+ssh://git@github.com/a/x.git#abc"}"#,
            r#"{"resolved": "file:../x"}"#,
            r#"{"link": true, "resolved": "../x"}"#,
            r#"{"version": "file:../x.tgz"}"#,
        ] {
            let err = check_lock(&v3(bad)).unwrap_err();
            assert!(err.contains("node_modules/x"), "{bad}: {err}");
        }
        let v1 = r#"{"lockfileVersion": 1, "dependencies": {"a": {"version": "1.0.0",
            "dependencies": {"b": {"version": "git+https://example.com/b.git"}}}}}"#;
        assert!(check_lock(v1)
            .unwrap_err()
            .contains("b comes from git+https"));
        assert!(check_lock("not json").is_err());
    }

    #[test]
    fn nested_node_modules_count_in_the_hash() {
        let root = std::env::temp_dir().join(format!("warren-nested-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("tasks/node_modules/pkg")).unwrap();
        let before = digest(&root);
        std::fs::write(root.join("tasks/node_modules/pkg/index.js"), "x").unwrap();
        assert_ne!(digest(&root), before);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn nothing_is_installed_without_a_lock_file_or_with_node_modules() {
        let root = std::env::temp_dir().join(format!("warren-no-install-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        // No lock file: nothing to do, even without npm.
        std::fs::write(root.join("package.json"), "{}").unwrap();
        ensure_installed(&root).unwrap();
        assert!(!root.join("node_modules").exists());
        std::fs::write(root.join("package-lock.json"), "not json").unwrap();
        let err = ensure_installed(&root).unwrap_err();
        assert!(err.contains("not valid JSON"), "{err}");
        std::fs::create_dir_all(root.join("node_modules")).unwrap();
        ensure_installed(&root).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
    }
}
