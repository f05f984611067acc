//! The dashboard in a real browser: `warren serve` on a fresh SQLite database with a
//! small module, driven by `tests/browser/dashboard.test.mjs` (playwright-core and
//! Debian's headless Chromium). The page finds a failed task through the filters,
//! retries it and sees it complete; runs a scheduled task by hand and sees its run
//! finish; pauses and resumes a task type and its cluster; and takes a screenshot of
//! every page (under `target/screenshots/`).
//!
//! Needs `/usr/bin/chromium` (skipped loudly without it, failing under `CI=true`, where
//! `.ci/run` installs it) and Node.js 20 with npm: the test installs its driver
//! (`tests/browser`, with `npm ci`) under the tests' cache folder (`warren_testkit::test_cache_dir`) itself.

mod support;

use std::borrow::Cow;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{repo, test_cache_dir, Server};
use warren::wasm::{KitFile, Requirement, Toolkit, ToolkitSpec};

const CHROMIUM: &str = "/usr/bin/chromium";
const TOKEN: &str = "dashboard-browser-test-token";
/// The managed task that fails its first run and completes when retried.
const FLAKY: &str = "dash:flaky";
/// The unique key the flaky task is scheduled with, which its view must show.
const UNIQUE_KEY: &str = "order-42";
/// The scheduled task the browser runs by hand.
const TAG: &str = "dash:tick";

/// The browser driver and its script: `tests/browser` (playwright-core pinned by its
/// lock file, and `dashboard.test.mjs`), installed with `npm ci` under the tests' cache
/// folder by the installer that installs warren's own JavaScript toolkit — once per
/// version of those files, atomically, one install at a time.
fn browser_driver() -> Toolkit {
    let file = |name: &str| KitFile {
        path: format!("browser/{name}"),
        bytes: Cow::Owned(std::fs::read(repo().join("tests/browser").join(name)).unwrap()),
    };
    let hint = "install Node.js 20 or later with npm";
    let spec = ToolkitSpec {
        name: "browser-test".into(),
        title: "the dashboard browser test's driver (playwright-core)".into(),
        files: vec![
            file("package.json"),
            file("package-lock.json"),
            file("dashboard.test.mjs"),
        ],
        workdir: "browser".into(),
        requires: Requirement::node_and_npm(20, hint),
        install: vec![["npm", "ci", "--no-audit", "--no-fund"]
            .map(String::from)
            .to_vec()],
        ready: vec!["node_modules/playwright-core/package.json".into()],
    };
    Toolkit::new(spec, &test_cache_dir())
}

/// The folder holding the installed driver and `dashboard.test.mjs`, or `None` (after
/// saying why, loudly) when Chromium is missing outside CI; under `CI=true`, where
/// `.ci/run` installs Chromium, a missing Chromium fails the test. The driver is
/// installed when needed; an install that fails fails the test.
fn browser_test_dir() -> Option<PathBuf> {
    if !Path::new(CHROMIUM).exists() {
        let what = format!("{CHROMIUM} (apt-get install --no-install-recommends chromium)");
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI=true but the dashboard browser test cannot run: missing {what}");
        }
        eprintln!();
        eprintln!("==================================================================");
        eprintln!(" SKIPPED: dashboard browser test — missing {what}");
        eprintln!("==================================================================");
        eprintln!();
        return None;
    }
    match browser_driver().ensure() {
        Ok(done) => Some(done.workdir),
        Err(e) => {
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                text.push_str(&format!(": {c}"));
                cause = c.source();
            }
            panic!("cannot install the browser test's driver: {text}");
        }
    }
}

/// A WebAssembly text literal's contents for `text` (quotes and backslashes escaped).
fn wat_string(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// What the flaky task reports as its progress: on its first run (before it fails),
/// and on later runs (before it completes).
const FLAKY_PROGRESS: [(f64, &str); 2] = [(0.4, "copying files"), (1.0, "done")];

/// A hand-written task component: a permanent failure on its first run (iteration 0),
/// a completion with a result on every later run — so a retry from the dashboard
/// completes it. Each run first reports its progress (`FLAKY_PROGRESS`) through the
/// host's `set-progress`. (Its layout follows tests/guests/wat/complete.wat, with the
/// memory and allocator in a module of their own, instantiated first, so that the host
/// function can be lowered with them before the task's module is instantiated.)
fn flaky_wat() -> String {
    let error = "dash:flaky fails its first run on purpose; retry it to complete it";
    let result = r#"{"completed":"on a retry"}"#;
    let [(first_fraction, first_message), (later_fraction, later_message)] = FLAKY_PROGRESS;
    format!(
        r#"(component
  (type $types-iface
    (instance
      (type $opt-string (option string))
      (type $task-rec (record
        (field "id" u64)
        (field "task-type" string)
        (field "data" string)
        (field "aux-data" $opt-string)
        (field "failures" u32)
        (field "iteration" u32)))
      (export "task" (type $task (eq $task-rec)))
      (type $opt-u64 (option u64))
      (type $failure-rec (record
        (field "error" string)
        (field "stack" $opt-string)
        (field "next-retry-ms" $opt-u64)))
      (export "failure" (type $failure (eq $failure-rec)))
      (type $restart-rec (record
        (field "at-ms" u64)
        (field "new-data" $opt-string)
        (field "new-aux-data" $opt-string)))
      (export "restart" (type $restart (eq $restart-rec)))
      (type $perm (tuple string $opt-string))
      (type $resolution-var (variant
        (case "completion" string)
        (case "permanent-failure" $perm)
        (case "cancellation" string)
        (case "temporary-failure" $failure)
        (case "restart" $restart)
        (case "snooze" u64)))
      (export "resolution" (type (eq $resolution-var)))))
  (import "warren:task/types@0.2.1" (instance $types (type $types-iface)))
  (alias export $types "task" (type $task))
  (alias export $types "resolution" (type $resolution))
  (import "task" (type $task-t (eq $task)))
  (import "resolution" (type $resolution-t (eq $resolution)))
  (import "warren:task/host@0.2.1" (instance $host
    (export "set-progress"
      (func (param "fraction" f64) (param "message" (option string)) (result (result (error string)))))))
  (alias export $host "set-progress" (func $set-progress))

  (core module $libc-module
    (memory (export "memory") 1)
    (global $next (mut i32) (i32.const 4096))
    (func (export "cabi_realloc") (param $old i32) (param $old-size i32) (param $align i32) (param $size i32) (result i32)
      (local $ptr i32) (local $end i32)
      (local.set $ptr
        (i32.and
          (i32.add (global.get $next) (i32.sub (local.get $align) (i32.const 1)))
          (i32.sub (i32.const 0) (local.get $align))))
      (local.set $end (i32.add (local.get $ptr) (local.get $size)))
      (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
        (then
          (if (i32.eq
                (memory.grow
                  (i32.add
                    (i32.div_u (i32.sub (local.get $end) (i32.mul (memory.size) (i32.const 65536))) (i32.const 65536))
                    (i32.const 1)))
                (i32.const -1))
            (then unreachable))))
      (global.set $next (local.get $end))
      (local.get $ptr))
    (func (export "reset")
      (global.set $next (i32.const 4096))))
  (core instance $libc (instantiate $libc-module))
  (alias core export $libc "memory" (core memory $mem))
  (alias core export $libc "cabi_realloc" (core func $realloc))
  (core func $set-progress-core (canon lower (func $set-progress) (memory $mem) (realloc $realloc)))
  (core instance $host-core (export "set-progress" (func $set-progress-core)))

  (core module $m
    (import "libc" "memory" (memory 1))
    (import "libc" "reset" (func $reset))
    ;; fraction, message (some, pointer, length), where the result goes
    (import "host" "set-progress" (func $set-progress (param f64 i32 i32 i32 i32)))
    (data (i32.const 16) "{result}")
    (data (i32.const 128) "{error}")
    (data (i32.const 1024) "{first_message}")
    (data (i32.const 1280) "{later_message}")
    (func (export "cabi_post_run-task") (param $ret i32)
      (call $reset))
    ;; The resolution goes to 512: discriminant at +0, payload at +8.
    (func (export "run-task")
      (param $id i64) (param $type-ptr i32) (param $type-len i32)
      (param $data-ptr i32) (param $data-len i32)
      (param $aux-tag i32) (param $aux-ptr i32) (param $aux-len i32)
      (param $failures i32) (param $iteration i32)
      (result i32)
      (if (i32.eqz (local.get $iteration))
        (then
          (call $set-progress (f64.const {first_fraction}) (i32.const 1) (i32.const 1024) (i32.const {first_len}) (i32.const 2048))
          (i32.store8 (i32.const 512) (i32.const 1))     ;; case 1: permanent-failure
          (i32.store (i32.const 520) (i32.const 128))    ;; error: pointer
          (i32.store (i32.const 524) (i32.const {error_len})) ;; error: length
          (i32.store8 (i32.const 528) (i32.const 0))     ;; result: none
          (return (i32.const 512))))
      (call $set-progress (f64.const {later_fraction}) (i32.const 1) (i32.const 1280) (i32.const {later_len}) (i32.const 2048))
      (i32.store8 (i32.const 512) (i32.const 0))         ;; case 0: completion
      (i32.store (i32.const 520) (i32.const 16))         ;; result: pointer
      (i32.store (i32.const 524) (i32.const {result_len})) ;; result: length
      (i32.const 512)))
  (core instance $i (instantiate $m (with "libc" (instance $libc)) (with "host" (instance $host-core))))
  (alias core export $i "run-task" (core func $run-task-core))
  (alias core export $i "cabi_post_run-task" (core func $post-return))
  (type $run-task-t (func (param "t" $task-t) (result $resolution-t)))
  (func $run-task (type $run-task-t)
    (canon lift (core func $run-task-core) (memory $mem) (realloc $realloc)
      (post-return $post-return)))
  (export "run-task" (func $run-task)))
"#,
        result = wat_string(result),
        error = wat_string(error),
        result_len = result.len(),
        error_len = error.len(),
        first_message = wat_string(first_message),
        first_len = first_message.len(),
        later_message = wat_string(later_message),
        later_len = later_message.len(),
    )
}

/// A modules folder with the `dash` module: the flaky task, a task that always
/// completes, and two scheduled tasks (one with a mask, one only run by hand).
fn modules_dir(root: &Path) -> PathBuf {
    let modules = root.join("modules");
    let module = modules.join("dash");
    std::fs::create_dir_all(module.join("tasks")).unwrap();
    std::fs::write(module.join("tasks/flaky.wat"), flaky_wat()).unwrap();
    std::fs::copy(
        repo().join("tests/guests/wat/complete.wat"),
        module.join("tasks/complete.wat"),
    )
    .unwrap();
    std::fs::write(
        module.join("moduledefinition.xml"),
        r#"<module name="dash"><servicemanager>
             <taskcluster tag="default" workers="2"/>
             <managedtask type="flaky" code="tasks/flaky.wat" maxfailures="0"/>
             <managedtask type="done" code="tasks/complete.wat"/>
             <managedtask type="keyed" code="tasks/complete.wat"
                          concurrency="1" concurrencykey="tenant"/>
             <managedtask type="rated" code="tasks/complete.wat"
                          ratelimit="1/h" ratelimitkey="tenant"/>
             <task tag="tick" runat="0 4 * * *" code="tasks/complete.wat"/>
             <task tag="report" code="tasks/complete.wat"/>
           </servicemanager></module>"#,
    )
    .unwrap();
    modules
}

fn warren(db: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warren"));
    cmd.env("WARREN_DATABASE_URL", db)
        .env("WARREN_CACHE_DIR", test_cache_dir())
        .env_remove("WARREN_TOKEN")
        .env_remove("WARREN_MAINTENANCE_OFFSET")
        .env("RUST_LOG", "warn");
    cmd
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `warren schedule …`: the new task's id.
fn schedule(db: &str, args: &[&str]) -> i64 {
    let o = warren(db).arg("schedule").args(args).output().unwrap();
    assert!(o.status.success(), "warren schedule {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("warren schedule printed no id: {}", text(&o)))
}

/// `warren wait ID`: its output (exit 0 only for a completed task).
fn wait(db: &str, id: i64) -> Output {
    warren(db)
        .args(["wait", &id.to_string(), "--timeout", "60"])
        .output()
        .unwrap()
}

/// Starts `warren serve` on a port the system picks; returns it with the dashboard's
/// address (from the "dashboard: http://…" line it prints), once that port answers.
fn serve(db: &str, modules: &Path) -> (Server, SocketAddr) {
    let mut child = warren(db)
        .args([
            "serve",
            "--modules",
            modules.to_str().unwrap(),
            "--node",
            "dash-node",
            "--listen",
            "127.0.0.1:0",
            "--token",
            TOKEN,
            "--grace",
            "2",
        ])
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
            if let Some(url) = line.trim().strip_prefix("dashboard: ") {
                let _ = tx.send(url.to_string());
            }
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    let server = Server { child, log };
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| {
            panic!(
                "warren serve printed no 'dashboard: URL' line within 60 s; its stderr:\n{}",
                server.log()
            )
        });
    let addr: SocketAddr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("dashboard address in '{url}': {e}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the dashboard at {addr} does not answer; serve's stderr:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (server, addr)
}

/// Runs a command to its end, killing it after `limit`.
fn run_with_limit(mut cmd: Command, limit: Duration) -> (ExitStatus, String) {
    let out_path = std::env::temp_dir().join(format!(
        "warren-dashboard-browser-{}.log",
        std::process::id()
    ));
    let out = std::fs::File::create(&out_path).unwrap();
    let mut child = cmd
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("start node");
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let status = child.wait().unwrap();
            let output = std::fs::read_to_string(&out_path).unwrap_or_default();
            panic!("the browser test ran longer than {limit:?} and was killed ({status}); its output:\n{output}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    (status, output)
}

/// Registers a second node whose runner is busy with a task whose transaction has been
/// open for 70 s, as a node publishes its runners: the dashboard must warn of it. A
/// thread keeps its heartbeat going (a silent node is forgotten after a minute) until
/// the returned flag is dropped.
fn publish_a_runner_with_a_long_transaction(db: &str) -> StuckNode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = runtime.block_on(async {
        let store = warren::store::Store::open(db).await.unwrap();
        let now = store.now();
        store
            .register_node("stuck-node", &serde_json::json!({"pid": 1}))
            .await
            .unwrap();
        store
            .set_node_runners(
                "stuck-node",
                &serde_json::json!([{"cluster": "default", "index": 0, "task_id": 1,
                    "task_type": "dash:done", "started_at": now - 75_000,
                    "transaction_since": now - 70_000}]),
            )
            .await
            .unwrap();
        store
    });
    let alive = Arc::new(AtomicBool::new(true));
    let beating = alive.clone();
    std::thread::spawn(move || {
        while beating.load(Ordering::SeqCst) {
            let _ = runtime.block_on(store.heartbeat("stuck-node"));
            std::thread::sleep(Duration::from_secs(2));
        }
    });
    StuckNode(alive)
}

/// Keeps the stuck node's heartbeat going while it lives.
struct StuckNode(Arc<AtomicBool>);

impl Drop for StuckNode {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

#[test]
fn dashboard_retries_a_failed_task_and_runs_a_scheduled_task_in_a_browser() {
    let Some(browser_dir) = browser_test_dir() else {
        return;
    };
    let root = std::env::temp_dir().join(format!("warren-dashboard-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let db = format!("sqlite://{}", root.join("warren.db").display());
    let modules = modules_dir(&root);

    let o = warren(&db).arg("migrate").output().unwrap();
    assert!(o.status.success(), "warren migrate: {}", text(&o));

    let (server, addr) = serve(&db, &modules);

    // Some finished work for the overview, one task for later, then the flaky task.
    let done: Vec<i64> = (0..4)
        .map(|i| schedule(&db, &["dash:done", &format!("{{\"n\": {i}}}")]))
        .collect();
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    schedule(
        &db,
        &["dash:done", "{\"later\": true}", "--not-before", &later],
    );
    // Keyed tasks waiting for later: the types table shows them under their keys.
    for tenant in ["a", "a", "b"] {
        schedule(
            &db,
            &[
                "dash:keyed",
                &format!("{{\"tenant\": \"{tenant}\"}}"),
                "--not-before",
                &later,
            ],
        );
    }
    // Two rate-limited tasks of one tenant at 1/h: one runs, the other waits an hour.
    let rated: Vec<i64> = (0..2)
        .map(|_| schedule(&db, &["dash:rated", "{\"tenant\": \"c\"}"]))
        .collect();
    let flaky = schedule(
        &db,
        &[
            FLAKY,
            r#"{"order": 42, "note": "fails once"}"#,
            "--unique-key",
            UNIQUE_KEY,
        ],
    );
    for id in &done {
        let o = wait(&db, *id);
        assert!(o.status.success(), "dash:done task {id}: {}", text(&o));
    }
    let o = wait(&db, rated[0]);
    assert!(
        o.status.success(),
        "the first dash:rated task: {}",
        text(&o)
    );
    let o = wait(&db, flaky);
    assert_eq!(
        o.status.code(),
        Some(1),
        "the flaky task should fail its first run: {}\nserve:\n{}",
        text(&o),
        server.log()
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("failed"),
        "the flaky task should be failed: {}",
        text(&o)
    );

    // Cancelled tasks for a bulk retry from the task list: three of batch 1 (due in an
    // hour, so that retried they wait) and one of batch 2, which must stay cancelled.
    let bulk: Vec<i64> = (0..4)
        .map(|i| {
            let batch = if i < 3 { 1 } else { 2 };
            let data = format!("{{\"batch\": {batch}, \"i\": {i}}}");
            schedule(&db, &["dash:done", &data, "--not-before", &later])
        })
        .collect();
    let o = warren(&db)
        .args(["tasks", "cancel", "--data-contains", "\"batch\"", "--yes"])
        .output()
        .unwrap();
    assert!(o.status.success(), "bulk cancel: {}", text(&o));

    let _stuck = publish_a_runner_with_a_long_transaction(&db);

    let mut node = Command::new("node");
    node.arg(browser_dir.join("dashboard.test.mjs"))
        .current_dir(&browser_dir)
        .env("WARREN_URL", format!("http://{addr}"))
        .env("WARREN_TOKEN", TOKEN)
        .env("WARREN_FAILED_TYPE", FLAKY)
        .env("WARREN_SCHEDULED_TAG", TAG)
        .env("WARREN_LONG_TRANSACTION", "1")
        .env("WARREN_UNIQUE_KEY", UNIQUE_KEY)
        .env("WARREN_PAUSE_TYPE", "dash:done")
        .env("WARREN_KEYED_TYPE", "dash:keyed")
        .env("WARREN_RATED_TYPE", "dash:rated")
        .env("WARREN_LEAVE_PAUSED", "1")
        .env("WARREN_BULK_DATA", "batch=1")
        .env("WARREN_BULK_COUNT", "3")
        .env(
            "WARREN_FLAKY_PROGRESS",
            serde_json::json!(FLAKY_PROGRESS).to_string(),
        )
        .env("WARREN_SCREENSHOTS", repo().join("target/screenshots"));
    let (status, output) = run_with_limit(node, Duration::from_secs(240));
    println!("{output}");
    assert!(
        status.success(),
        "the dashboard browser test failed ({status}):\n{output}\nwarren serve's stderr:\n{}",
        server.log()
    );

    // The browser left cluster `default` paused (and resumed the type): a task of it
    // waits until the cluster is resumed from the command line.
    let listed = warren(&db)
        .args(["clusters", "list", "--json"])
        .output()
        .unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert!(listed[0]["paused_since"].is_i64(), "{listed}");
    let o = warren(&db)
        .args(["types", "list", "--json"])
        .output()
        .unwrap();
    let types: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        types
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["paused_since"].is_null()),
        "{types}"
    );
    let o = warren(&db)
        .args(["clusters", "resume", "default"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));

    // The bulk retry requeued batch 1 (waiting for its not-before time) and left batch 2.
    for (i, id) in bulk.iter().enumerate() {
        let o = warren(&db)
            .args(["tasks", "show", &id.to_string(), "--json"])
            .output()
            .unwrap();
        let shown: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let expected = if i < 3 { "pending" } else { "cancelled" };
        assert_eq!(shown["state"], expected, "bulk task {i}: {shown}");
    }

    // The retry the browser made really completed the task.
    let o = wait(&db, flaky);
    assert!(
        o.status.success(),
        "task {flaky} should have completed after the retry: {}",
        text(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("on a retry"),
        "task {flaky}'s result: {}",
        text(&o)
    );

    drop(server);
    let _ = std::fs::remove_dir_all(&root);
}
