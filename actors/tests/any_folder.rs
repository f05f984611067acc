//! The `warren` binary on its own: copied to a folder of its own, run from a working
//! directory outside the repository with a fresh cache folder, its own `HOME` and no
//! `$WARREN_JS_KIT`, it installs the JavaScript toolkit it carries (with `npm ci`),
//! compiles the demo module's JavaScript and completes a task. Nothing of the source
//! tree is used but the demo module, copied into the working directory.
//!
//! Needs Node.js 18 or later and npm, and the npm registry (or npm's download cache:
//! the test passes on `npm_config_cache`, so downloads are reused as they are for a
//! user whose `HOME` is theirs).

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use support::copy_demo_module;
use support::Server;

/// A fresh folder for this test, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// npm's download cache of the user running the tests (`npm config get cache`).
fn npm_cache() -> Option<String> {
    let o = Command::new("npm")
        .args(["config", "get", "cache"])
        .output()
        .ok()?;
    let dir = String::from_utf8_lossy(&o.stdout).trim().to_string();
    (o.status.success() && !dir.is_empty()).then_some(dir)
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The folders of one run: a copy of the binary, a working directory with the demo
/// module, an empty cache folder and an empty home.
struct Setup {
    scratch: Scratch,
    bin: PathBuf,
    work: PathBuf,
    cache: PathBuf,
    home: PathBuf,
    npm_cache: Option<String>,
}

impl Setup {
    fn new() -> Setup {
        let scratch =
            Scratch(std::env::temp_dir().join(format!("warren-any-folder-{}", std::process::id())));
        let _ = std::fs::remove_dir_all(&scratch.0);
        let bin = scratch.0.join("bin/warren");
        let work = scratch.0.join("work");
        let cache = scratch.0.join("cache");
        let home = scratch.0.join("home");
        for dir in [bin.parent().unwrap(), &work, &home] {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::copy(env!("CARGO_BIN_EXE_warren"), &bin).unwrap();
        copy_demo_module(&work.join("modules"));
        Setup {
            npm_cache: npm_cache(),
            scratch,
            bin,
            work,
            cache,
            home,
        }
    }

    /// The copied binary, in the working directory, with only this run's folders.
    fn warren(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.current_dir(&self.work)
            .env("HOME", &self.home)
            .env("WARREN_CACHE_DIR", &self.cache)
            .env("RUST_LOG", "info");
        for var in [
            "WARREN_JS_KIT",
            "WARREN_JS_ENGINE",
            "WARREN_DATABASE_URL",
            "WARREN_TOKEN",
            "XDG_CACHE_HOME",
            "CARGO_MANIFEST_DIR",
        ] {
            cmd.env_remove(var);
        }
        if let Some(dir) = &self.npm_cache {
            cmd.env("npm_config_cache", dir);
        }
        cmd
    }

    /// Starts `warren serve --modules modules` on a port the system picks, once its
    /// "dashboard: URL" line shows the node runs (its task types are registered).
    fn serve(&self) -> Server {
        let mut child = self
            .warren()
            .args(["serve", "--modules", "modules", "--listen", "127.0.0.1:0"])
            .args(["--grace", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start warren serve");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.starts_with("dashboard: ") {
                    let _ = tx.send(());
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let server = Server { child, log };
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            panic!(
                "warren serve printed no 'dashboard: URL' line within 60 s; its stderr:\n{}",
                server.log()
            );
        }
        server
    }
}

/// Whether `dir` or a folder under it (not following symbolic links) is named
/// `node_modules`.
fn has_node_modules(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            is_dir && (e.file_name() == "node_modules" || has_node_modules(&e.path()))
        })
}

#[test]
fn a_copied_binary_installs_its_toolkit_and_runs_javascript_from_any_folder() {
    let setup = Setup::new();
    let status = setup.warren().args(["toolkit", "status"]).output().unwrap();
    assert!(status.status.success(), "{}", text(&status));
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(
        out.contains("the JavaScript toolkit (QuickJS) (embedded, hash ")
            && out.contains("): not installed"),
        "{out}"
    );

    let server = setup.serve();
    let started = Instant::now();
    let scheduled = setup
        .warren()
        .args(["schedule", "demo:ping", r#"{"ping": 42}"#, "--wait", "300"])
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(
        scheduled.status.success(),
        "{}\nwarren serve's stderr:\n{}",
        text(&scheduled),
        server.log()
    );
    let out = String::from_utf8_lossy(&scheduled.stdout);
    assert!(
        out.contains(r#""state":"completed""#) && out.contains(r#""result":{"pong":42}"#),
        "{out}"
    );
    eprintln!(
        "install + compile + run of demo:ping from a fresh cache: {:.1} s",
        took.as_secs_f64()
    );
    drop(server);

    // The toolkit went into the fresh cache folder, nowhere else.
    let status = setup.warren().args(["toolkit", "status"]).output().unwrap();
    let out = String::from_utf8_lossy(&status.stdout).into_owned();
    let installed_at = setup.cache.join("toolkits");
    assert!(
        out.lines()
            .any(|l| l.starts_with("the JavaScript toolkit (QuickJS)")
                && l.contains(&format!("installed at {}", installed_at.display()))),
        "{out}"
    );
    assert!(
        out.contains("in use: the embedded toolkit (QuickJS)"),
        "{out}"
    );
    assert!(
        !has_node_modules(&setup.work),
        "node_modules in the working directory"
    );
    assert!(!has_node_modules(&setup.home), "node_modules in HOME");
    assert!(has_node_modules(&installed_at));
    assert!(setup.scratch.0.join("work/warren.db").is_file());
}
