//! Toolkits Warren carries inside its binary and installs on first use.
//!
//! A toolkit is a handful of files (a build script, a helper, a lock file of pinned
//! packages) plus the commands that fetch its dependencies (`npm ci` for JavaScript; a
//! Python toolkit would create a virtual environment). [`ToolkitSpec`] describes one;
//! [`Toolkit`] is that spec installed under a cache folder, in a folder named after a
//! hash of the spec, so a Warren that carries other files gets a folder of its own.
//!
//! Installing writes the files into a temporary folder, runs the commands there and
//! renames the folder into place, so a killed install never leaves a half toolkit
//! behind; a lock file makes a second process (or thread) wait for the first install
//! instead of running its own. Commands run with the inherited environment, so package
//! registry settings (`npm_config_*`, `.npmrc`, proxies) apply, and their download
//! caches are kept.

use super::cache_entry::hex;
use super::trust::create_private_dir;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The file an installed toolkit folder holds once complete: the spec's name and hash.
const MARKER: &str = ".warren-toolkit";

/// How many trailing lines of a failed command's output an error quotes.
const OUTPUT_LINES: usize = 40;

/// One file of a toolkit, by its path inside the toolkit folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KitFile {
    /// The path inside the toolkit folder, `/`-separated and relative.
    pub path: String,
    /// The file's contents (usually embedded in the binary).
    pub bytes: Cow<'static, [u8]>,
}

/// A program a toolkit's install commands need, with its oldest usable major version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The program run to ask its version (`node`), looked up on the `PATH`.
    pub program: String,
    /// Its name for people (`Node.js`).
    pub what: String,
    /// The oldest major version that works.
    pub min_major: u32,
    /// How to get it, for the error message.
    pub hint: String,
}

impl Requirement {
    /// Python 3 (`python3`), which pip-based toolkits need; `hint` says how to get it.
    pub fn python3(hint: &str) -> Requirement {
        Requirement {
            program: "python3".into(),
            what: "Python".into(),
            min_major: 3,
            hint: hint.into(),
        }
    }

    /// Node.js of at least `node_major` and npm 7 or later, which npm-based toolkits
    /// need; `hint` says how to get them.
    pub fn node_and_npm(node_major: u32, hint: &str) -> Vec<Requirement> {
        vec![
            Requirement {
                program: "node".into(),
                what: "Node.js".into(),
                min_major: node_major,
                hint: hint.into(),
            },
            Requirement {
                program: "npm".into(),
                what: "npm".into(),
                min_major: 7,
                hint: hint.into(),
            },
        ]
    }
}

/// The major version in what `program --version` printed: the first word that is a
/// version (`v20.1.0`, `11.6.2`, the `3.11.7` of `Python 3.11.7`).
fn major_version(printed: &str) -> Option<u32> {
    printed
        .split_whitespace()
        .map(|word| word.trim_start_matches('v'))
        .find(|word| word.starts_with(|c: char| c.is_ascii_digit()))
        .and_then(|word| word.split('.').next())
        .and_then(|major| major.parse().ok())
}

/// The install command of a pip-based toolkit: the wheels (never a build from source)
/// that `requirements` lists, into the folder `target` (relative to the working
/// folder), which users put on `PYTHONPATH`. A folder, not a virtual environment: the
/// installer renames the toolkit into place after the install, and a virtual
/// environment's scripts hold their absolute paths.
pub fn pip_install(target: &str, requirements: &str) -> Vec<String> {
    [
        "python3",
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-input",
        "--only-binary=:all:",
        "--target",
        target,
        "-r",
        requirements,
    ]
    .map(String::from)
    .to_vec()
}

/// An error and its causes, `: `-separated, for messages that must say why.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What a toolkit is made of and how it is installed; pure data, so it can be hashed,
/// compared and printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolkitSpec {
    /// Short name, the prefix of its folder (`js`).
    pub name: String,
    /// Its name for people (`the JavaScript toolkit`).
    pub title: String,
    /// The files written into the toolkit folder before the commands run.
    pub files: Vec<KitFile>,
    /// The folder (relative to the toolkit folder) the commands run in and the
    /// toolkit's users are pointed at (`guest/js`).
    pub workdir: String,
    /// Programs the commands need.
    pub requires: Vec<Requirement>,
    /// The commands, in order, each a program and its arguments, run in `workdir`.
    pub install: Vec<Vec<String>>,
    /// Paths (relative to `workdir`) that exist once the install worked.
    pub ready: Vec<String>,
}

impl ToolkitSpec {
    /// The SHA-256 (hex) of everything that makes up the spec: a different file or
    /// command gives a different toolkit folder.
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        let mut field = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        field(self.name.as_bytes());
        field(self.workdir.as_bytes());
        for file in &self.files {
            field(file.path.as_bytes());
            field(&file.bytes);
        }
        for command in &self.install {
            field(b"command");
            for arg in command {
                field(arg.as_bytes());
            }
        }
        for ready in &self.ready {
            field(ready.as_bytes());
        }
        hex(&h.finalize())
    }

    /// The folder name of this spec's installation: its name and the first 16 hex
    /// digits of its hash.
    pub fn folder_name(&self) -> String {
        format!("{}-{}", self.name, &self.hash()[..16])
    }
}

/// Whether a toolkit is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolkitState {
    /// Installed and complete.
    Installed,
    /// Not installed (the next [`Toolkit::ensure`] installs it).
    Missing,
    /// The folder is there but something it needs is gone (the next
    /// [`Toolkit::ensure`] reinstalls it).
    Damaged,
}

/// What [`Toolkit::ensure`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ensured {
    /// The toolkit's working folder ([`Toolkit::workdir`]).
    pub workdir: PathBuf,
    /// Whether this call installed it (`false`: it was installed already).
    pub installed_now: bool,
    /// How long this call took, waiting for another install included.
    pub took: Duration,
}

/// Why a toolkit could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum ToolkitError {
    /// A required program is not on the `PATH` (or cannot be run).
    #[error("{title} needs {what} (`{program}`), which cannot be run: {hint}")]
    Missing {
        /// The toolkit.
        title: String,
        /// The program's name for people.
        what: String,
        /// The program.
        program: String,
        /// How to get it.
        hint: String,
        /// Why it could not be run.
        #[source]
        source: std::io::Error,
    },
    /// A required program is older than the toolkit needs, or did not say its version.
    #[error("{title} needs {what} {min_major} or later, but `{program} --version` says '{found}': {hint}")]
    TooOld {
        /// The toolkit.
        title: String,
        /// The program's name for people.
        what: String,
        /// The program.
        program: String,
        /// The oldest major version that works.
        min_major: u32,
        /// What the program said.
        found: String,
        /// How to get a newer one.
        hint: String,
    },
    /// A file or folder of the install could not be written, renamed or locked.
    #[error("cannot install {title}: {action} {path}")]
    Io {
        /// The toolkit.
        title: String,
        /// What was being done.
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// An install command failed.
    #[error(
        "installing {title}: `{command}` in {dir} failed ({status}); its last output:\n{output}"
    )]
    Command {
        /// The toolkit.
        title: String,
        /// The command line.
        command: String,
        /// Where it ran.
        dir: PathBuf,
        /// How it ended.
        status: String,
        /// The end of what it printed.
        output: String,
    },
    /// The commands succeeded but left out something the toolkit needs.
    #[error("installing {title}: the install commands succeeded but {missing} is missing")]
    Incomplete {
        /// The toolkit.
        title: String,
        /// The path that should exist.
        missing: String,
    },
}

/// The folder toolkits are installed in, under a cache root (the folder compiled
/// components are cached in, such as [`super::ComponentCache::default_dir`]).
pub fn toolkits_dir(cache_root: &Path) -> PathBuf {
    cache_root.join("toolkits")
}

/// A toolkit spec and where it is (or will be) installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toolkit {
    spec: ToolkitSpec,
    /// [`ToolkitSpec::hash`], computed once.
    hash: String,
    /// `<toolkits folder>/<name>-<hash>`.
    dir: PathBuf,
}

impl Toolkit {
    /// The toolkit `spec` installed under the cache root `cache_root` (in
    /// `cache_root/toolkits/<name>-<hash>`); nothing is done until [`Toolkit::ensure`].
    pub fn new(spec: ToolkitSpec, cache_root: &Path) -> Toolkit {
        let hash = spec.hash();
        let dir = toolkits_dir(cache_root).join(format!("{}-{}", spec.name, &hash[..16]));
        Toolkit { spec, hash, dir }
    }

    /// What the toolkit is made of.
    pub fn spec(&self) -> &ToolkitSpec {
        &self.spec
    }

    /// [`ToolkitSpec::hash`] of its spec.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The installation folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The folder the toolkit's users are pointed at: `workdir` inside [`Toolkit::dir`].
    pub fn workdir(&self) -> PathBuf {
        self.dir.join(&self.spec.workdir)
    }

    /// Whether it is installed, without installing or waiting for an install.
    pub fn state(&self) -> ToolkitState {
        let marker = std::fs::read_to_string(self.dir.join(MARKER)).unwrap_or_default();
        if !self.dir.exists() {
            ToolkitState::Missing
        } else if marker.lines().nth(1) == Some(self.hash.as_str())
            && self.missing_ready(&self.workdir()).is_none()
        {
            ToolkitState::Installed
        } else {
            ToolkitState::Damaged
        }
    }

    /// The first `ready` path absent under `workdir`, if any.
    fn missing_ready(&self, workdir: &Path) -> Option<String> {
        self.spec
            .ready
            .iter()
            .find(|r| !workdir.join(r).exists())
            .cloned()
    }

    /// Installs the toolkit unless it is installed already, waiting for an install by
    /// another process or thread to finish first. Logs one line when it installs.
    pub fn ensure(&self) -> Result<Ensured, ToolkitError> {
        let started = Instant::now();
        let done = |installed_now| Ensured {
            workdir: self.workdir(),
            installed_now,
            took: started.elapsed(),
        };
        if self.state() == ToolkitState::Installed {
            return Ok(done(false));
        }
        self.check_requirements()?;
        let parent = self.dir.parent().unwrap_or(Path::new("."));
        create_private_dir(parent).map_err(|e| self.io("creating", parent, e))?;
        let lock_path = parent.join(format!("{}.lock", self.folder_name()));
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| self.io("opening the lock file", &lock_path, e))?;
        lock.lock().map_err(|e| self.io("locking", &lock_path, e))?;
        // Another process may have installed it while this one waited.
        let result = match self.state() {
            ToolkitState::Installed => Ok(done(false)),
            _ => self.install_locked(parent).map(|()| done(true)),
        };
        drop(lock);
        result
    }

    /// Installs while holding the lock: clears leftovers, installs into a temporary
    /// folder, and renames it into place.
    fn install_locked(&self, parent: &Path) -> Result<(), ToolkitError> {
        let name = self.folder_name();
        // Temporary folders of this spec are leftovers of killed installs (the lock is
        // held), as is a damaged installation.
        let leftover = format!(".{name}.");
        if let Ok(entries) = std::fs::read_dir(parent) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(&leftover) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        if self.dir.exists() {
            let aside = parent.join(format!(".{name}.old-{}", std::process::id()));
            std::fs::rename(&self.dir, &aside)
                .map_err(|e| self.io("moving aside the damaged", &self.dir, e))?;
            let _ = std::fs::remove_dir_all(&aside);
        }
        let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
        let result = self.install_into(&tmp);
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        result?;
        std::fs::rename(&tmp, &self.dir).map_err(|e| {
            let _ = std::fs::remove_dir_all(&tmp);
            self.io("moving the finished install into", &self.dir, e)
        })
    }

    /// Writes the files into `tmp`, runs the install commands, checks the result and
    /// writes the marker.
    fn install_into(&self, tmp: &Path) -> Result<(), ToolkitError> {
        std::fs::create_dir_all(tmp).map_err(|e| self.io("creating", tmp, e))?;
        for file in &self.spec.files {
            let path = tmp.join(&file.path);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| self.io("creating", dir, e))?;
            }
            std::fs::write(&path, &file.bytes).map_err(|e| self.io("writing", &path, e))?;
        }
        let workdir = tmp.join(&self.spec.workdir);
        std::fs::create_dir_all(&workdir).map_err(|e| self.io("creating", &workdir, e))?;
        let commands: Vec<String> = self.spec.install.iter().map(|c| c.join(" ")).collect();
        tracing::info!(
            dir = %self.dir.display(),
            "installing {} (`{}`; once per Warren version)",
            self.spec.title,
            commands.join(" && ")
        );
        for (argv, line) in self.spec.install.iter().zip(&commands) {
            let Some((program, args)) = argv.split_first() else {
                continue;
            };
            let failed = |status: String, output: String| ToolkitError::Command {
                title: self.spec.title.clone(),
                command: line.clone(),
                dir: self.workdir(),
                status,
                output,
            };
            let output = Command::new(program)
                .args(args)
                .current_dir(&workdir)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| failed(format!("cannot run {program}: {e}"), String::new()))?;
            if !output.status.success() {
                let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&output.stderr));
                return Err(failed(output.status.to_string(), tail(&text, OUTPUT_LINES)));
            }
        }
        if let Some(missing) = self.missing_ready(&workdir) {
            return Err(ToolkitError::Incomplete {
                title: self.spec.title.clone(),
                missing: self.workdir().join(missing).display().to_string(),
            });
        }
        let marker = tmp.join(MARKER);
        std::fs::write(&marker, format!("{}\n{}\n", self.spec.name, self.hash))
            .map_err(|e| self.io("writing", &marker, e))
    }

    /// Checks that every required program runs and is recent enough.
    pub fn check_requirements(&self) -> Result<(), ToolkitError> {
        for req in &self.spec.requires {
            let output = Command::new(&req.program)
                .arg("--version")
                .stdin(Stdio::null())
                .output()
                .map_err(|source| ToolkitError::Missing {
                    title: self.spec.title.clone(),
                    what: req.what.clone(),
                    program: req.program.clone(),
                    hint: req.hint.clone(),
                    source,
                })?;
            let found = String::from_utf8_lossy(&output.stdout).trim().to_string();
            let major = major_version(&found);
            if !output.status.success() || major.is_none_or(|m| m < req.min_major) {
                return Err(ToolkitError::TooOld {
                    title: self.spec.title.clone(),
                    what: req.what.clone(),
                    program: req.program.clone(),
                    min_major: req.min_major,
                    found,
                    hint: req.hint.clone(),
                });
            }
        }
        Ok(())
    }

    /// The installation folder's name.
    fn folder_name(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn io(&self, action: &'static str, path: &Path, source: std::io::Error) -> ToolkitError {
        ToolkitError::Io {
            title: self.spec.title.clone(),
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// An installation found in a toolkits folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledToolkit {
    /// Its folder.
    pub dir: PathBuf,
    /// The spec name its marker records.
    pub name: String,
    /// The spec hash its marker records.
    pub hash: String,
}

/// Every complete installation under the cache root `cache_root`, sorted by folder;
/// for reporting (and spotting versions no binary uses any more).
pub fn installed_toolkits(cache_root: &Path) -> Vec<InstalledToolkit> {
    let mut found: Vec<InstalledToolkit> = std::fs::read_dir(toolkits_dir(cache_root))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let dir = entry.path();
            let marker = std::fs::read_to_string(dir.join(MARKER)).ok()?;
            let mut lines = marker.lines();
            Some(InstalledToolkit {
                name: lines.next()?.to_string(),
                hash: lines.next()?.to_string(),
                dir,
            })
        })
        .collect();
    found.sort_by(|a, b| a.dir.cmp(&b.dir));
    found
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.trim_end().lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn the_major_version_is_the_first_version_word() {
        assert_eq!(major_version("v20.20.2"), Some(20));
        assert_eq!(major_version("11.19.1"), Some(11));
        assert_eq!(major_version("Python 3.11.7"), Some(3));
        assert_eq!(major_version("no version here"), None);
        assert_eq!(major_version(""), None);
    }

    /// A fresh, empty folder under the system's temporary directory.
    fn scratch(label: &str) -> PathBuf {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "warren-toolkit-test-{}-{label}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    /// A toolkit whose install runs `script` in its workdir and must leave `done`.
    fn spec(script: &str) -> ToolkitSpec {
        ToolkitSpec {
            name: "fake".into(),
            title: "the fake toolkit".into(),
            files: vec![
                KitFile {
                    path: "kit/tool.txt".into(),
                    bytes: Cow::Borrowed(b"tool"),
                },
                KitFile {
                    path: "spec/world.txt".into(),
                    bytes: Cow::Owned(b"world".to_vec()),
                },
            ],
            workdir: "kit".into(),
            requires: Vec::new(),
            install: vec![sh(script)],
            ready: vec!["done".into()],
        }
    }

    #[test]
    fn installs_once_and_then_reuses_the_installation() {
        let cache = scratch("once");
        let log = cache.join("runs.log");
        let kit = Toolkit::new(
            spec(&format!(
                "test -f tool.txt && test -f ../spec/world.txt && echo run >> {} && touch done",
                log.display()
            )),
            &cache,
        );
        assert_eq!(kit.state(), ToolkitState::Missing);
        let first = kit.ensure().expect("install");
        assert!(first.installed_now);
        assert_eq!(
            first.workdir,
            cache
                .join("toolkits")
                .join(kit.spec().folder_name())
                .join("kit")
        );
        assert!(first.workdir.join("done").is_file());
        assert_eq!(kit.state(), ToolkitState::Installed);
        let second = kit.ensure().expect("reuse");
        assert!(!second.installed_now);
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "run\n");
        let listed = installed_toolkits(&cache);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].hash, kit.spec().hash());
        assert_eq!(listed[0].dir, kit.dir());
        std::fs::remove_dir_all(&cache).unwrap();
    }

    #[test]
    fn concurrent_installs_run_the_commands_once() {
        let cache = scratch("concurrent");
        let log = cache.join("runs.log");
        let kit = Toolkit::new(
            spec(&format!("echo run >> {} && touch done", log.display())),
            &cache,
        );
        let results: Vec<Ensured> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..6).map(|_| s.spawn(|| kit.ensure())).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap().expect("install"))
                .collect()
        });
        assert_eq!(results.iter().filter(|r| r.installed_now).count(), 1);
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "run\n");
        std::fs::remove_dir_all(&cache).unwrap();
    }

    #[test]
    fn a_failed_install_leaves_nothing_and_quotes_the_output() {
        let cache = scratch("failed");
        let kit = Toolkit::new(
            spec("echo fetching; echo 'E404 no such package' >&2; exit 3"),
            &cache,
        );
        let err = kit.ensure().expect_err("the command fails");
        let text = err.to_string();
        assert!(matches!(err, ToolkitError::Command { .. }), "{text}");
        assert!(text.contains("E404 no such package"), "{text}");
        assert!(text.contains("exit status: 3"), "{text}");
        assert_eq!(kit.state(), ToolkitState::Missing);
        let left: Vec<_> = std::fs::read_dir(cache.join("toolkits"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".lock"))
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
        std::fs::remove_dir_all(&cache).unwrap();
    }

    #[test]
    fn commands_that_leave_out_a_ready_path_are_an_incomplete_install() {
        let cache = scratch("incomplete");
        let kit = Toolkit::new(spec("true"), &cache);
        let err = kit.ensure().expect_err("no `done`");
        assert!(matches!(err, ToolkitError::Incomplete { .. }), "{err}");
        assert!(err.to_string().contains("done"), "{err}");
        assert!(!kit.dir().exists());
        std::fs::remove_dir_all(&cache).unwrap();
    }

    #[test]
    fn leftovers_of_a_killed_install_are_cleared_and_a_damaged_one_is_replaced() {
        let cache = scratch("leftovers");
        let kit = Toolkit::new(spec("touch done"), &cache);
        let parent = cache.join("toolkits");
        // A killed install: its temporary folder, never renamed into place.
        let stale = parent.join(format!(".{}.tmp-999999", kit.spec().folder_name()));
        assert_eq!(kit.dir(), parent.join(kit.spec().folder_name()));
        std::fs::create_dir_all(stale.join("kit")).unwrap();
        kit.ensure().expect("install");
        assert!(!stale.exists());
        // Someone removed a file the toolkit needs.
        std::fs::remove_file(kit.workdir().join("done")).unwrap();
        assert_eq!(kit.state(), ToolkitState::Damaged);
        assert!(kit.ensure().expect("reinstall").installed_now);
        assert_eq!(kit.state(), ToolkitState::Installed);
        std::fs::remove_dir_all(&cache).unwrap();
    }

    #[test]
    fn a_different_spec_gets_a_folder_of_its_own() {
        let a = spec("touch done");
        let mut b = a.clone();
        b.files[0].bytes = Cow::Borrowed(b"tool v2");
        let mut c = a.clone();
        c.install.push(sh("true"));
        assert_ne!(a.folder_name(), b.folder_name());
        assert_ne!(a.folder_name(), c.folder_name());
        assert_eq!(a.folder_name(), a.clone().folder_name());
    }

    /// Writes an executable script at `path` that prints `version`. A child process
    /// writes it: a file this process held open for writing could be inherited by a
    /// child another test thread forks, and executing it would fail (ETXTBSY).
    fn fake_program(path: &Path, version: &str) {
        let status = Command::new("sh")
            .arg("-c")
            .arg(r#"printf '#!/bin/sh\necho %s\n' "$2" > "$1.new" && chmod 755 "$1.new" && mv "$1.new" "$1""#)
            .arg("sh")
            .arg(path)
            .arg(version)
            .status()
            .unwrap();
        assert!(status.success());
    }

    #[cfg(unix)]
    #[test]
    fn missing_and_old_programs_are_named() {
        let cache = scratch("requirements");
        let mut missing = spec("touch done");
        missing.requires = vec![Requirement {
            program: cache.join("no-such-node").display().to_string(),
            what: "Node.js".into(),
            min_major: 18,
            hint: "install Node.js 18 or later".into(),
        }];
        let err = Toolkit::new(missing, &cache).ensure().expect_err("missing");
        assert!(matches!(err, ToolkitError::Missing { .. }), "{err}");
        assert!(err.to_string().contains("Node.js"), "{err}");
        assert!(
            err.to_string().contains("install Node.js 18 or later"),
            "{err}"
        );

        let old_node = cache.join("old-node");
        fake_program(&old_node, "v16.20.2");
        let mut old = spec("touch done");
        old.requires = vec![Requirement {
            program: old_node.display().to_string(),
            what: "Node.js".into(),
            min_major: 18,
            hint: "install Node.js 18 or later".into(),
        }];
        let kit = Toolkit::new(old.clone(), &cache);
        let err = kit.ensure().expect_err("too old");
        assert!(matches!(err, ToolkitError::TooOld { .. }), "{err}");
        assert!(err.to_string().contains("v16.20.2"), "{err}");
        assert_eq!(kit.state(), ToolkitState::Missing);

        fake_program(&old_node, "v20.1.0");
        assert!(kit.ensure().expect("new enough").installed_now);
        std::fs::remove_dir_all(&cache).unwrap();
    }
}
