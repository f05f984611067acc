//! The examples, run the way a user runs them: `warren serve` on a fresh database with
//! an example module copied into a folder of its own.
//!
//! Scheduling from other languages (`examples/sql`): with the demo module running, an
//! example program schedules `demo:ping` in a transaction of its own (beside a row of
//! its application's), and the node runs the task.
//! - PostgreSQL, through `warren_schedule`: Python with psycopg, Node.js with
//!   node-postgres. Each example also shows bad input refused with SQLSTATE 22023.
//! - SQLite, through the documented `INSERT … RETURNING` and the wake-up datagram:
//!   Python's standard library.
//!
//! The TypeScript module (`examples/modules/typescript`), copied without its packages:
//! the node installs them from its lock file, bundles the task with its zod import,
//! completes a task, fails one for good with zod's messages, and stores the stack of a
//! thrown error with the `.ts` file's own line.
//!
//! The examples' packages (psycopg from PyPI, pg and zod from npm) are installed on
//! first use (under the tests' cache folder, or in the copied module). Needs Python 3
//! and Node.js 20 with npm (skipped loudly without them, failing under `CI=true`); the
//! PostgreSQL part needs `WARREN_TEST_DATABASE_URL` as the other PostgreSQL tests do.

mod support;

use serde_json::{json, Value};
use std::borrow::Cow;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{copy_demo_module, repo, test_cache_dir, Server};
use warren::store::{NewTask, Store, WaitFor};
use warren::task::{TaskId, TaskState};
use warren::wasm::{KitFile, Requirement, Toolkit, ToolkitSpec};

/// Whether `program --version` runs; under `CI=true` a missing program fails the test,
/// elsewhere it is skipped loudly.
fn have(program: &str, what: &str) -> bool {
    let runs = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !runs {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI=true but {what} (`{program}`) cannot be run: the examples test needs it");
        }
        eprintln!("\n SKIPPED: an examples test — {what} (`{program}`) cannot be run\n");
    }
    runs
}

/// The example folder `examples/sql/<dir>`'s files named `files`, as toolkit files.
fn example_files(dir: &str, files: &[&str]) -> Vec<KitFile> {
    files
        .iter()
        .map(|name| KitFile {
            path: format!("{dir}/{name}"),
            bytes: Cow::Owned(
                std::fs::read(repo().join("examples/sql").join(dir).join(name)).unwrap(),
            ),
        })
        .collect()
}

/// Installs a spec under the tests' cache folder (once per version of its files) and
/// returns its working folder; an install that fails fails the test.
fn installed(spec: ToolkitSpec) -> PathBuf {
    match Toolkit::new(spec, &test_cache_dir()).ensure() {
        Ok(done) => done.workdir,
        Err(e) => panic!(
            "cannot install an example's packages: {}",
            warren::wasm::error_chain(&e)
        ),
    }
}

/// psycopg, pinned by `examples/sql/python/requirements.txt`, in a folder of its own
/// (`deps`, put on `PYTHONPATH`): unlike a virtual environment, it can be moved into
/// place after the install.
fn psycopg() -> PathBuf {
    installed(ToolkitSpec {
        name: "example-python".into(),
        title: "the Python example's packages (psycopg)".into(),
        files: example_files("python", &["requirements.txt"]),
        workdir: "python".into(),
        requires: vec![Requirement::python3("install Python 3.9 or later with pip")],
        install: vec![warren::wasm::pip_install("deps", "requirements.txt")],
        ready: vec!["deps/psycopg/__init__.py".into()],
    })
    .join("deps")
}

/// The Node.js example with node-postgres, pinned by its lock file.
fn node_example() -> PathBuf {
    installed(ToolkitSpec {
        name: "example-node".into(),
        title: "the Node.js example's packages (pg)".into(),
        files: example_files(
            "node",
            &["package.json", "package-lock.json", "schedule_pg.mjs"],
        ),
        workdir: "node".into(),
        requires: Requirement::node_and_npm(20, "install Node.js 20 or later with npm"),
        install: vec![["npm", "ci", "--no-audit", "--no-fund"]
            .map(String::from)
            .to_vec()],
        ready: vec!["node_modules/pg/package.json".into()],
    })
}

fn warren(db: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warren"));
    support::use_test_cache(&mut cmd)
        .env("WARREN_DATABASE_URL", db)
        .env("RUST_LOG", "warn");
    cmd
}

/// `warren serve` on `db` with the modules in `modules`, once it has registered
/// `task_type`.
async fn serve(db: &str, modules: &Path, store: &Store, task_type: &str) -> Server {
    let mut child = warren(db)
        .args(["serve", "--modules", modules.to_str().unwrap()])
        .args(["--node", "examples", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start warren serve");
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    let mut server = Server { child, log };
    let registered = task_type.parse().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while !store
        .check_task_type(&registered, None)
        .await
        .is_ok_and(|c| c.is_registered())
    {
        let exited = server.child.try_wait().unwrap();
        assert!(
            exited.is_none()
                && std::time::Instant::now() < deadline
                && !server.log().contains("modules with errors were skipped"),
            "warren serve did not register {task_type} ({exited:?}); its stderr:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server
}

/// Runs an example; the task id it printed as `{"id": N}`. `refuses` says whether it
/// shows bad input refused (it must then say so on stderr).
fn run_example(mut cmd: Command, refuses: bool) -> TaskId {
    let out = cmd.output().expect("run the example");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{cmd:?} failed:\n{stdout}\n{stderr}");
    if refuses {
        assert!(
            stderr.contains("refused as expected") && stderr.contains("warren_schedule: "),
            "{stderr}"
        );
    }
    let printed: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{cmd:?} printed {stdout:?}: {e}"));
    TaskId(printed["id"].as_i64().unwrap())
}

/// Waits for task `id` to complete with `{"pong": ping}`.
async fn assert_pong(store: &Store, server: &Server, id: TaskId, ping: i64) {
    let outcome = store
        .wait(id, Duration::from_secs(120), WaitFor::Finished)
        .await
        .unwrap_or_else(|e| panic!("waiting for task {id}: {e}\n{}", server.log()));
    assert_eq!(
        outcome.state,
        TaskState::Completed,
        "{outcome:?}\n{}",
        server.log()
    );
    assert_eq!(outcome.result, Some(json!({ "pong": ping })));
}

/// A scratch folder with the demo module under `modules/`.
fn scratch_with_demo(name: &str) -> support::Scratch {
    let scratch = support::Scratch::new(name);
    copy_demo_module(&scratch.join("modules"));
    scratch
}

/// The `n` of a `SELECT COUNT(*) AS n …` on PostgreSQL.
async fn count_pg(store: &Store, sql: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = store.connection().await.unwrap();
    let warren::store::AnyConn::Postgres(c) = conn.as_any() else {
        unreachable!("a PostgreSQL store")
    };
    let rows: Vec<Count> = diesel_async::RunQueryDsl::load(diesel::sql_query(sql), c)
        .await
        .unwrap();
    rows[0].n
}

#[tokio::test]
async fn python_and_node_schedule_with_warren_schedule_on_postgresql() {
    let Some(server_url) = warren_testkit::admin_url("the PostgreSQL examples test") else {
        return;
    };
    if !have("python3", "Python 3") || !have("node", "Node.js") {
        return;
    }
    let deps = psycopg();
    let node = node_example();
    let fresh = warren_testkit::FreshDatabase::create(&server_url, "warren_t")
        .await
        .unwrap();
    let db = fresh.url().to_string();
    let store = Store::open(&db).await.unwrap();
    let scratch = scratch_with_demo("sql-examples-pg");
    let server = serve(&db, &scratch.join("modules"), &store, "demo:ping").await;

    let mut python = Command::new("python3");
    python
        .arg(repo().join("examples/sql/python/schedule_pg.py"))
        .args([&db, "42"])
        .env("PYTHONPATH", &deps);
    let id = run_example(python, true);
    assert_pong(&store, &server, id, 42).await;

    let mut js = Command::new("node");
    js.arg(node.join("schedule_pg.mjs")).args([&db, "7"]);
    let id = run_example(js, true);
    assert_pong(&store, &server, id, 7).await;

    // Each example's order row committed with its task, once.
    assert_eq!(
        count_pg(&store, "SELECT COUNT(*) AS n FROM demo_orders").await,
        2
    );
    drop(server);
}

#[tokio::test]
async fn python_schedules_with_the_documented_insert_on_sqlite() {
    if !have("python3", "Python 3") {
        return;
    }
    let scratch = scratch_with_demo("sql-examples-sqlite");
    let file = scratch.join("warren.db");
    let db = format!("sqlite://{}", file.display());
    let store = Store::open(&db).await.unwrap();
    let server = serve(&db, &scratch.join("modules"), &store, "demo:ping").await;
    let mut python = Command::new("python3");
    python
        .arg(repo().join("examples/sql/python/schedule_sqlite.py"))
        .arg(&file)
        .arg("5");
    let id = run_example(python, false);
    assert_pong(&store, &server, id, 5).await;
    let task = store.describe(id).await.unwrap();
    assert_eq!(task.cluster, "default");
    assert_eq!(task.priority.0, -100);
    drop(server);
}

/// A node serving `examples/modules/NAME` (copied without its packages into a scratch
/// folder) on a fresh SQLite file, once it has registered `task_type`.
struct ExampleNode {
    scratch: support::Scratch,
    file: PathBuf,
    store: Store,
    server: Server,
}

impl ExampleNode {
    async fn start(name: &str, task_type: &str) -> ExampleNode {
        let scratch = support::Scratch::new(&format!("{name}-module"));
        copy_without_packages(
            &repo().join("examples/modules").join(name),
            &scratch.join("modules").join(name),
        );
        let file = scratch.join("warren.db");
        let db = format!("sqlite://{}", file.display());
        let store = Store::open(&db).await.unwrap();
        let server = serve(&db, &scratch.join("modules"), &store, task_type).await;
        ExampleNode {
            scratch,
            file,
            store,
            server,
        }
    }

    /// Schedules `data` as a task of `task_type` and waits (up to `limit`) for `accept`.
    async fn outcome(
        &self,
        task_type: &str,
        data: Value,
        limit: Duration,
        accept: WaitFor,
    ) -> (TaskId, warren::store::TaskOutcome) {
        let task = NewTask::new(task_type.parse().unwrap(), data);
        let id = self.store.schedule(task).await.unwrap();
        let outcome = self.store.wait(id, limit, accept).await.unwrap();
        (id, outcome)
    }
}

/// Copies the folder `from` to `to`, leaving out `node_modules`.
fn copy_without_packages(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "node_modules" {
                copy_without_packages(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[tokio::test]
async fn the_typescript_module_installs_its_packages_and_stacks_name_its_lines() {
    if !have("node", "Node.js") {
        return;
    }
    let node = ExampleNode::start("typescript", "tsdemo:greet").await;
    let greet = |data| {
        node.outcome(
            "tsdemo:greet",
            data,
            Duration::from_secs(180),
            WaitFor::Finished,
        )
    };

    let (_, outcome) = greet(json!({"name": "Ann", "email": "ann@example.com"})).await;
    assert_eq!(
        outcome.state,
        TaskState::Completed,
        "{outcome:?}\n{}",
        node.server.log()
    );
    assert_eq!(
        outcome.result,
        Some(json!({"greeting": "Welcome, Ann (from example.com)!"}))
    );
    assert!(
        node.scratch
            .join("modules/typescript/node_modules/zod/package.json")
            .is_file(),
        "the node installed the module's packages"
    );

    let (_, outcome) = greet(json!({"name": "", "email": "nope"})).await;
    assert_eq!(outcome.state, TaskState::Failed, "{outcome:?}");
    let error = outcome.error.unwrap();
    assert!(error.starts_with("invalid sign-up: name: "), "{error}");
    assert!(error.contains("email: Invalid email"), "{error}");

    let (thrown, outcome) = node
        .outcome(
            "tsdemo:greet",
            json!({"name": "throw", "email": "t@example.com"}),
            Duration::from_secs(60),
            WaitFor::AnyOutcome,
        )
        .await;
    assert_eq!(
        (outcome.state, outcome.failures),
        (TaskState::Pending, 1),
        "{outcome:?}"
    );
    let stack = node
        .store
        .describe(thrown)
        .await
        .unwrap()
        .last_stack
        .unwrap();
    // `throw new Error('asked to throw')` is line 19 of tasks/greet.ts.
    assert!(stack.contains("/typescript/tasks/greet.ts:19:"), "{stack}");
    assert!(!stack.contains("greet.js"), "{stack}");
}

/// The first column of `sql`'s rows on the SQLite file `file`, as JSON (read with
/// Python's sqlite3, which this test needs anyway).
fn sqlite_column(file: &Path, sql: &str) -> Value {
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sqlite3, sys; c = sqlite3.connect(sys.argv[1]); \
             print(json.dumps([r[0] for r in c.execute(sys.argv[2])]))",
        ])
        .arg(file)
        .arg(sql)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn the_python_module_commits_its_insert_and_rolls_it_back_on_an_exception() {
    if !have("python3", "Python 3") {
        return;
    }
    let node = ExampleNode::start("pydemo", "pydemo:ping").await;
    let (_, outcome) = node
        .outcome(
            "pydemo:ping",
            json!({"ping": 7}),
            Duration::from_secs(300),
            WaitFor::Finished,
        )
        .await;
    assert_eq!(
        outcome.state,
        TaskState::Completed,
        "{outcome:?}\n{}",
        node.server.log()
    );
    assert_eq!(outcome.result, Some(json!({"pong": 7, "recorded": 1})));

    let (failing, outcome) = node
        .outcome(
            "pydemo:ping",
            json!({"ping": 8, "fail": true}),
            Duration::from_secs(60),
            WaitFor::AnyOutcome,
        )
        .await;
    assert_eq!(
        (outcome.state, outcome.failures),
        (TaskState::Pending, 1),
        "{outcome:?}"
    );
    assert_eq!(
        outcome.error.as_deref(),
        Some("RuntimeError: asked to fail after the insert")
    );
    let stack = node
        .store
        .describe(failing)
        .await
        .unwrap()
        .last_stack
        .unwrap();
    // The raise is line 14 of tasks/ping.py; the kit's own frames are left out.
    assert!(
        stack.contains("File \"/pydemo/tasks/ping.py\", line 14, in run_task"),
        "{stack}"
    );
    assert!(!stack.contains("warren.py"), "{stack}");
    // The failed run's insert was rolled back: only the completed task's row is there.
    assert_eq!(
        sqlite_column(&node.file, "SELECT value FROM pings ORDER BY value"),
        json!([7])
    );
}
