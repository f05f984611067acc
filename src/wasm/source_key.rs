//! The part of a compile cache key that covers a module's source files, shared by the
//! toolkits that compile source code (JavaScript and TypeScript, Python): the entry's
//! place in the module folder, then each file's path in it and its contents, in path
//! order, so a file renamed, moved, added or edited gives another key.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Adds `entry`'s path in `root` and every file of `files` (paths in `root`, then
/// contents, each after its length, so no two sets of files hash alike) to `h`.
pub(super) fn hash_module_files(
    h: &mut Sha256,
    root: &Path,
    entry: &Path,
    mut files: Vec<PathBuf>,
) -> std::io::Result<()> {
    let relative = |path: &Path| {
        path.strip_prefix(root)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    };
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(relative(entry).as_bytes());
    files.sort();
    for file in files {
        field(relative(&file).as_bytes());
        field(&std::fs::read(&file)?);
    }
    Ok(())
}

/// Adds the files under `dir` whose names `wanted` accepts to `out`, skipping
/// dot-folders, `node_modules` and `__pycache__`. Links to folders are never followed
/// (as the build scripts do not), so links to `.` or a parent cannot make the walk
/// endless; a linked file counts when it resolves inside the module folder `real_root`
/// (canonical), is an error when it leads outside, and is skipped when dangling.
pub(super) fn collect_module_files(
    real_root: &Path,
    dir: &Path,
    wanted: &dyn Fn(&str) -> bool,
    out: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if !name.starts_with('.') && name != "node_modules" && name != "__pycache__" {
                collect_module_files(real_root, &path, wanted, out)?;
            }
        } else if kind.is_symlink() && wanted(&name) {
            let Ok(target) = std::fs::canonicalize(&path) else {
                continue; // dangling: nothing to read
            };
            if target.is_dir() {
                continue;
            }
            if !target.starts_with(real_root) {
                return Err(std::io::Error::other(format!(
                    "{} is a symbolic link leading outside the module folder (to {})",
                    path.display(),
                    target.display()
                )));
            }
            out.push(path);
        } else if kind.is_file() && wanted(&name) {
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(files: &[(&str, &str)]) -> Vec<u8> {
        let root = std::env::temp_dir().join(format!(
            "warren-source-key-{}-{}",
            std::process::id(),
            files.len()
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let mut paths = Vec::new();
        for (name, text) in files {
            std::fs::write(root.join(name), text).unwrap();
            paths.push(root.join(name));
        }
        let mut h = Sha256::new();
        hash_module_files(&mut h, &root, &root.join("a.py"), paths).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        h.finalize().to_vec()
    }

    #[test]
    fn files_are_hashed_with_their_lengths() {
        // Without lengths these two would feed the hash the same bytes.
        assert_ne!(
            key(&[("a.py", "b.pyX")]),
            key(&[("a.py", ""), ("b.py", "X")])
        );
        assert_eq!(key(&[("a.py", "x")]), key(&[("a.py", "x")]));
    }
}
