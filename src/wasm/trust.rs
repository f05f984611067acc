//! Whether a folder or file may be trusted with compiled code: compiled components are
//! native code, loaded with `unsafe` wasmtime calls, so they are read only from folders
//! and files that this user owns and that nobody else can write.

use std::fs::Metadata;
use std::io;
use std::path::{Path, PathBuf};

/// Creates `dir` (and missing parents) readable by this user only; an existing folder
/// is left as it is, for [`check_dir`] to judge.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}

/// A fresh folder of this process under the system's temporary folder, readable by
/// this user only, removed when dropped. Its name is random and it is created only if
/// it did not exist, so nobody can have prepared it.
pub(crate) struct PrivateTempDir(PathBuf);

impl PrivateTempDir {
    /// Creates `<temp>/<prefix>-<pid>-<random>`.
    pub(crate) fn new(prefix: &str) -> io::Result<PrivateTempDir> {
        let mut last = None;
        for _ in 0..8 {
            let dir = std::env::temp_dir().join(format!(
                "{prefix}-{}-{:016x}",
                std::process::id(),
                rand::random::<u64>()
            ));
            let mut builder = std::fs::DirBuilder::new();
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            match builder.create(&dir) {
                Ok(()) => return Ok(PrivateTempDir(dir)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free temporary folder name")))
    }

    /// The folder.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PrivateTempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Checks that `dir` is a folder owned by this user and not writable by group or
/// others. The error says why not, for the warning that names the folder.
pub(crate) fn check_dir(dir: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(dir).map_err(|e| format!("cannot inspect it: {e}"))?;
    if !meta.is_dir() {
        return Err("it is not a folder".into());
    }
    check_private(&meta)
}

/// Checks that `meta` (of an open file or a folder) belongs to this user and cannot be
/// written by group or others.
#[cfg(unix)]
pub(crate) fn check_private(meta: &Metadata) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(format!(
            "it is owned by uid {}, not by this user (uid {me})",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "it is writable by group or others (mode {mode:04o})"
        ));
    }
    Ok(())
}

/// Without Unix ownership and modes nothing can be checked, so nothing is trusted.
#[cfg(not(unix))]
pub(crate) fn check_private(_meta: &Metadata) -> Result<(), String> {
    Err("file ownership cannot be checked on this platform".into())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn fresh(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("warren-trust-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_created_folder_is_private_and_trusted() {
        let dir = fresh("created");
        create_private_dir(&dir.join("a/b")).unwrap();
        let mode = std::fs::metadata(dir.join("a/b"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_eq!(check_dir(&dir.join("a/b")), Ok(()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_private_temporary_folder_is_fresh_and_removed_when_dropped() {
        let (a, b) = (
            PrivateTempDir::new("warren-t").unwrap(),
            PrivateTempDir::new("warren-t").unwrap(),
        );
        assert_ne!(a.path(), b.path());
        assert_eq!(check_dir(a.path()), Ok(()));
        let kept = a.path().to_path_buf();
        drop(a);
        assert!(!kept.exists());
    }

    #[test]
    fn folders_and_files_writable_by_others_are_not_trusted() {
        let dir = fresh("open");
        create_private_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let why = check_dir(&dir).unwrap_err();
        assert!(
            why.contains("writable by group or others (mode 0777)"),
            "{why}"
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let file = dir.join("f");
        std::fs::write(&file, "x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o620)).unwrap();
        let why = check_private(&std::fs::metadata(&file).unwrap()).unwrap_err();
        assert!(why.contains("mode 0620"), "{why}");
        assert!(check_dir(&file).unwrap_err().contains("not a folder"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
