//! The `warren` command as a user runs it: output, messages and exit statuses.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn warren(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(args)
        .env_remove("WARREN_DATABASE_URL")
        .env_remove("WARREN_MAINTENANCE_OFFSET")
        .output()
        .expect("run warren")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/modules")
}

#[test]
fn cron_next_prints_instants_in_utc() {
    let o = warren(&[
        "cron",
        "next",
        "0 15 * * 1",
        "--tz",
        "Europe/Amsterdam",
        "--after",
        "2026-03-20T00:00:00Z",
        "--count",
        "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Winter time (UTC+1), then summer time (UTC+2) from 29 March.
    assert_eq!(
        stdout(&o),
        "2026-03-23T14:00:00Z\n2026-03-30T13:00:00Z\n2026-04-06T13:00:00Z\n"
    );
}

#[test]
fn cron_next_is_strictly_after() {
    let o = warren(&[
        "cron",
        "next",
        "@hourly",
        "--after",
        "2026-01-01T10:00:00Z",
        "--count",
        "2",
    ]);
    assert_eq!(stdout(&o), "2026-01-01T11:00:00Z\n2026-01-01T12:00:00Z\n");
}

#[test]
fn cron_next_maintenance_zone_uses_the_configured_offset() {
    let o = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args([
            "cron",
            "next",
            "45 0 * * *",
            "--tz",
            "maintenance",
            "--after",
            "2026-01-01T00:00:00Z",
        ])
        .env("WARREN_MAINTENANCE_OFFSET", "90")
        .output()
        .unwrap();
    assert_eq!(stdout(&o), "2026-01-01T02:15:00Z\n");
    let o = warren(&["cron", "next", "45 0 * * *", "--tz", "maintenance"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("WARREN_MAINTENANCE_OFFSET"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn cron_next_rejects_bad_input_naming_the_field_or_zone() {
    let o = warren(&["cron", "next", "0 25 * * *"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "warren: invalid cron mask '0 25 * * *': hour field: value 25 is out of range 0-23\n"
    );
    let o = warren(&["cron", "next", "4 5 30 2 *"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no date matches"), "{}", stderr(&o));
    let o = warren(&["cron", "next", "* * * * *", "--tz", "Mars/Base"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unknown time zone 'Mars/Base'"),
        "{}",
        stderr(&o)
    );
    let o = warren(&["cron", "next", "* * * * *", "--after", "yesterday"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("invalid --after 'yesterday'"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn modules_check_summarises_a_good_module() {
    let o = warren(&[
        "modules",
        "check",
        fixtures().join("alpha").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("module alpha ("), "{out}");
    assert!(out.contains("managed   alpha:ping"), "{out}");
    assert!(out.contains("ephemeral alpha:compile"), "{out}");
    assert!(out.contains("cluster mail"), "{out}");
    assert!(
        out.contains(
            "retry: retried forever, exponential from 900000 ms, one day after six doublings"
        ),
        "{out}"
    );
    assert!(
        out.contains("concurrency: at most 2 running per value of data.domain"),
        "{out}"
    );
    assert!(
        out.contains("concurrency: at most 1 running across all nodes"),
        "{out}"
    );
    assert!(
        out.contains(
            "rate limit: at most 20 starts per second per value of data.domain, in bursts of up to 20"
        ),
        "{out}"
    );
    assert!(out.contains("scheduled alpha:mondays"), "{out}");
    assert!(
        out.contains("runat '0 15 * * 1' Europe/Amsterdam, next 20"),
        "{out}"
    );
    assert!(
        out.contains("scheduled alpha:manual                 only when run by hand"),
        "{out}"
    );
}

#[test]
fn modules_check_reports_errors_with_positions_and_exit_2() {
    let o = warren(&["modules", "check", fixtures().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("broken/moduledefinition.xml:5:32: invalid runat '61 0 * * *': minute field: value 61 is out of range 0-59"),
        "{err}"
    );
    assert!(
        err.contains("broken/moduledefinition.xml:3:51: unknown attribute 'maxfailure'"),
        "{err}"
    );
    assert!(
        err.ends_with("warren: 1 of 2 module(s) have errors and would not load\n"),
        "{err}"
    );
    // The good module is still summarised.
    assert!(stdout(&o).contains("module alpha"));
    let o = warren(&["modules", "check", "/no/such/dir"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o), "warren: /no/such/dir: no such file or folder\n");

    // The same as JSON, with the same exit status.
    let o = warren(&["modules", "check", "--json", fixtures().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let checked: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let errors = checked["errors"].as_array().unwrap();
    assert!(
        errors.iter().any(|e| e
            .as_str()
            .unwrap()
            .contains("broken/moduledefinition.xml:3:51: unknown attribute 'maxfailure'")),
        "{checked}"
    );
    let alpha = &checked["modules"][0];
    assert_eq!(alpha["name"], "alpha");
    let ping = alpha["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "alpha:ping")
        .unwrap();
    assert_eq!(
        (&ping["kind"], &ping["max_failures"]),
        (&serde_json::json!("managed"), &serde_json::json!(-1))
    );
    let mondays = alpha["scheduled"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["tag"] == "alpha:mondays")
        .unwrap();
    assert_eq!(
        (&mondays["runat"], &mondays["runtz"]),
        (
            &serde_json::json!("0 15 * * 1"),
            &serde_json::json!("Europe/Amsterdam")
        )
    );
}

#[test]
fn migrate_creates_then_reports_up_to_date() {
    let path = std::env::temp_dir().join(format!("warren-cli-migrate-{}.db", std::process::id()));
    let url = format!("sqlite://{}", path.display());
    let o = warren(&["migrate", "--database", &url]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("applied migration"), "{}", stdout(&o));
    let o = warren(&["migrate", "--database", &url]);
    assert_eq!(stdout(&o), format!("{url}: schema is up to date\n"));
    remove_db(&path);
    let o = warren(&["migrate", "--database", "mysql://x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("unsupported database URL 'mysql://x'"),
        "{}",
        stderr(&o)
    );
}

/// A module folder in a fresh temporary directory with the given code files.
fn temp_module(name: &str, xml_body: &str, files: &[(&str, &Path)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("warren-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("tasks")).unwrap();
    for (target, source) in files {
        std::fs::copy(source, dir.join(target)).unwrap();
    }
    std::fs::write(
        dir.join("moduledefinition.xml"),
        format!("<module name=\"{name}\"><servicemanager>{xml_body}</servicemanager></module>"),
    )
    .unwrap();
    dir
}

#[test]
fn build_compiles_task_code_then_reuses_the_cache() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let module = temp_module(
        "buildok",
        r#"<managedtask type="ping" code="tasks/ping.js"/><managedtask type="done" code="tasks/complete.wat"/>"#,
        &[
            (
                "tasks/ping.js",
                &repo.join("examples/modules/demo/tasks/ping.js"),
            ),
            (
                "tasks/complete.wat",
                &repo.join("tests/guests/wat/complete.wat"),
            ),
        ],
    );
    let build = || {
        Command::new(env!("CARGO_BIN_EXE_warren"))
            .args(["build", module.to_str().unwrap()])
            .env("WARREN_CACHE_DIR", warren_testkit::test_cache_dir())
            .env_remove("WARREN_JS_KIT")
            .env_remove("WARREN_JS_ENGINE")
            .output()
            .unwrap()
    };
    let first = build();
    assert!(
        first.status.success(),
        "{}{}",
        stdout(&first),
        stderr(&first)
    );
    let out = stdout(&first);
    assert!(
        out.contains("[1/2] buildok:ping (tasks/ping.js) … "),
        "{out}"
    );
    assert!(
        out.contains("[2/2] buildok:done (tasks/complete.wat) … "),
        "{out}"
    );
    assert!(out.contains("2 built, 0 failed"), "{out}");
    let second = build();
    assert_eq!(
        stdout(&second).matches("… cached").count(),
        2,
        "{}",
        stdout(&second)
    );
    let _ = std::fs::remove_dir_all(&module);
}

#[test]
fn build_reports_code_that_does_not_implement_the_world() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let module = temp_module(
        "buildbad",
        r#"<managedtask type="bad" code="tasks/bad.wat"/>"#,
        &[(
            "tasks/bad.wat",
            &repo.join("tests/guests/wat/missing_export.wat"),
        )],
    );
    let o = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["build", module.to_str().unwrap()])
        .env("WARREN_CACHE_DIR", warren_testkit::test_cache_dir())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stdout(&o).contains("[1/1] buildbad:bad (tasks/bad.wat) … failed"),
        "{}",
        stdout(&o)
    );
    assert!(
        stderr(&o).contains("bad.wat is not a valid task component"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("run-task"), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&module);
}

/// A fresh SQLite database for one test: its path and URL.
fn temp_db(name: &str) -> (PathBuf, String) {
    let path = std::env::temp_dir().join(format!("warren-cli-{name}-{}.db", std::process::id()));
    remove_db(&path);
    let url = format!("sqlite://{}", path.display());
    (path, url)
}

use warren_testkit::remove_sqlite as remove_db;

/// Runs `body` on a store opened on `url` (for what a node would have done).
fn with_store<T>(url: &str, body: impl AsyncFnOnce(&warren::store::Store) -> T) -> T {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = warren::store::Store::open(url).await.unwrap();
        body(&store).await
    })
}

/// Registers task types in the default cluster, as a node whose modules declare them
/// does when it starts.
fn register_types(url: &str, types: &[&str]) {
    let types: Vec<warren::store::TypeRegistration> = types
        .iter()
        .map(|t| warren::store::TypeRegistration::new(*t, "default"))
        .collect();
    with_store(url, async |store| {
        store.register_task_types(&types).await.unwrap()
    });
}

/// Schedules a task with `warren schedule`; returns its id.
fn schedule(url: &str, args: &[&str]) -> i64 {
    let mut all = vec!["schedule", "--database", url];
    all.extend_from_slice(args);
    let o = warren(&all);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).trim().parse().expect("an id")
}

fn json_out(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", stderr(o));
    serde_json::from_str(&stdout(o)).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

#[test]
fn tasks_list_shows_a_table_or_json_with_filters() {
    let (path, url) = temp_db("tasks-list");
    register_types(&url, &["demo:ping", "demo:record"]);
    let ping = schedule(&url, &["demo:ping", r#"{"ping": 1}"#]);
    let record = schedule(
        &url,
        &["demo:record", "{}", "--not-before", "2040-01-01T00:00:00Z"],
    );
    let o = warren(&["tasks", "list", "--database", &url]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("ID  TYPE         STATE    CREATED"),
        "{out}"
    );
    assert!(
        lines[1].starts_with(&format!("{record:<2}  demo:record  pending  ")),
        "{out}"
    );
    assert!(lines[1].contains("next 2040-01-01 00:00:00Z"), "{out}");
    assert!(
        lines[2].starts_with(&format!("{ping:<2}  demo:ping    pending  ")),
        "{out}"
    );
    assert!(lines[2].contains("due now"), "{out}");

    let listed = json_out(&warren(&[
        "tasks",
        "list",
        "--database",
        &url,
        "--type",
        "demo:p*",
        "--json",
    ]));
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], serde_json::json!(ping));
    assert_eq!(listed[0]["data"], serde_json::json!({"ping": 1}));
    let future = json_out(&warren(&[
        "tasks",
        "list",
        "--database",
        &url,
        "--state",
        "future",
        "--json",
    ]));
    assert_eq!(future[0]["id"], serde_json::json!(record));
    let paged = json_out(&warren(&[
        "tasks",
        "list",
        "--database",
        &url,
        "--before",
        &record.to_string(),
        "--limit",
        "5",
        "--from",
        "2000-01-01T00:00:00Z",
        "--json",
    ]));
    assert_eq!(paged.as_array().unwrap().len(), 1);
    let o = warren(&[
        "tasks",
        "list",
        "--database",
        &url,
        "--until",
        "0",
        "--json",
    ]);
    assert_eq!(json_out(&o), serde_json::json!([]));

    let o = warren(&["tasks", "list", "--database", &url, "--state", "sleeping"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("invalid --state: 'sleeping' is not one of"),
        "{}",
        stderr(&o)
    );
    let o = warren(&["tasks", "list", "--database", &url, "--from", "yesterday"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("invalid --from 'yesterday'"),
        "{}",
        stderr(&o)
    );
    let o = warren(&["tasks", "list", "--database", &url, "--limit", "0"]);
    assert_eq!(o.status.code(), Some(2));
    let o = warren(&["tasks", "list", "--database", "mysql://x"]);
    assert_eq!(o.status.code(), Some(1));
    remove_db(&path);
}

#[test]
fn schedule_with_a_unique_key_prints_the_task_that_has_it() {
    let (path, url) = temp_db("unique");
    register_types(&url, &["demo:ping"]);
    let args = |data: &'static str| {
        vec![
            "demo:ping",
            data,
            "--unique-key",
            "nightly",
            "--debounce",
            "60000",
        ]
    };
    let first = schedule(&url, &args(r#"{"v": 1}"#));
    let mut again_args = vec!["schedule", "--database", &url];
    again_args.extend(args(r#"{"v": 2}"#));
    let again = warren(&again_args);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(stdout(&again).trim(), first.to_string());
    assert!(
        stderr(&again).contains(&format!("task {first} already has unique key 'nightly'")),
        "{}",
        stderr(&again)
    );
    assert_eq!(task_count(&url), 1);
    // Debounced: the duplicate's data replaced the first.
    let shown = json_out(&warren(&[
        "tasks",
        "show",
        &first.to_string(),
        "--json",
        "--database",
        &url,
    ]));
    assert_eq!(shown["data"], serde_json::json!({"v": 2}));
    let o = warren(&["tasks", "show", &first.to_string(), "--database", &url]);
    assert!(
        stdout(&o).contains("nightly (while pending, running)"),
        "{}",
        stdout(&o)
    );
    // Bad options name their flag, and schedule nothing.
    for (bad, flag) in [
        (vec!["--unique-key", ""], "--unique-key"),
        (vec!["--debounce", "100"], "--debounce"),
        (
            vec!["--unique-key", "k", "--unique-states", "done"],
            "--unique-states",
        ),
    ] {
        let mut all = vec!["schedule", "--database", &url, "demo:ping", "{}"];
        all.extend(bad);
        let o = warren(&all);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(flag), "{}", stderr(&o));
    }
    assert_eq!(task_count(&url), 1);
    remove_db(&path);
}

#[test]
fn tasks_show_retry_cancel_and_delete() {
    let (path, url) = temp_db("tasks-admin");
    register_types(&url, &["demo:ping"]);
    let id = schedule(
        &url,
        &["demo:ping", r#"{"ping": 7}"#, "--priority", "interactive"],
    );
    let ids = id.to_string();
    let o = warren(&["tasks", "show", &ids, "--database", &url]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with(&format!(
            "id            {id}\ntype          demo:ping\nstate         pending\n"
        )),
        "{out}"
    );
    assert!(out.contains("priority      interactive (-100)"), "{out}");
    assert!(
        out.contains("data          {\n                \"ping\": 7\n              }"),
        "{out}"
    );
    let shown = json_out(&warren(&[
        "tasks",
        "show",
        &ids,
        "--json",
        "--database",
        &url,
    ]));
    assert_eq!(
        (shown["id"].as_i64(), shown["state"].as_str()),
        (Some(id), Some("pending"))
    );

    let o = warren(&["tasks", "cancel", &ids, "--database", &url]);
    assert_eq!(
        stdout(&o),
        format!("task {id} cancelled (it was pending)\n")
    );
    let o = warren(&["tasks", "cancel", &ids, "--database", &url]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot cancel it"), "{}", stderr(&o));
    let shown = json_out(&warren(&[
        "tasks",
        "show",
        &ids,
        "--json",
        "--database",
        &url,
    ]));
    assert_eq!(shown["state"], "cancelled");

    let o = warren(&["tasks", "retry", &ids, "--database", &url]);
    assert_eq!(stdout(&o), format!("task {id} is pending and runs now\n"));
    let shown = json_out(&warren(&[
        "tasks",
        "show",
        &ids,
        "--json",
        "--database",
        &url,
    ]));
    assert_eq!(shown["state"], "pending");

    let o = warren(&["tasks", "delete", &ids, "--database", &url]);
    assert_eq!(stdout(&o), format!("task {id} deleted\n"));
    for command in ["show", "retry", "cancel", "delete"] {
        let o = warren(&["tasks", command, &ids, "--database", &url]);
        assert_eq!(o.status.code(), Some(2), "{command}");
        assert_eq!(
            stderr(&o),
            format!("warren: task {id} does not exist\n"),
            "{command}"
        );
    }
    let o = warren(&["tasks", "show", "seven", "--database", &url]);
    assert_eq!(o.status.code(), Some(2));
    remove_db(&path);
}

#[test]
fn tasks_retry_cancel_and_delete_every_task_a_filter_matches() {
    let (path, url) = temp_db("tasks-bulk");
    register_types(&url, &["mail:send", "demo:ping"]);
    let mut mail = Vec::new();
    for domain in ["example.com", "example.com", "example.org"] {
        let data = format!(r#"{{"to": {{"domain": "{domain}"}}}}"#);
        mail.push(schedule(&url, &["mail:send", &data]));
    }
    let ping = schedule(&url, &["demo:ping", "{}"]);
    let bulk = |args: &[&str]| {
        let mut all = vec!["tasks"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--database", &url]);
        warren(&all)
    };
    // Listing takes the same filter options.
    let listed = json_out(&bulk(&[
        "list",
        "--data",
        "to.domain=example.com",
        "--json",
    ]));
    let listed: Vec<i64> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, [mail[1], mail[0]]);
    // Without a terminal to ask on, a bulk action wants --yes, and changes nothing.
    let o = bulk(&["cancel", "--type", "mail:*"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("3 tasks match; add --yes to cancel them (nothing was changed)"),
        "{}",
        stderr(&o)
    );
    let o = bulk(&["cancel", "--yes"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("give a task id, or filter options"),
        "{}",
        stderr(&o)
    );
    let o = bulk(&["cancel", &ping.to_string(), "--state", "failed"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not both"), "{}", stderr(&o));
    let o = bulk(&["cancel", "--data", "to.domain", "--yes"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("invalid --data: 'to.domain' has no '='"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        json_out(&bulk(&["list", "--state", "cancelled", "--json"])),
        serde_json::json!([])
    );

    let o = bulk(&["cancel", "--type", "mail:*", "--yes"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "cancelled 3 tasks of 3 matching\n");
    let report = json_out(&bulk(&[
        "retry",
        "--state",
        "cancelled",
        "--data-contains",
        "EXAMPLE.COM",
        "--yes",
        "--json",
    ]));
    assert_eq!(
        (&report["action"], &report["matched"], &report["changed"]),
        (
            &serde_json::json!("retry"),
            &serde_json::json!(2),
            &serde_json::json!(2)
        )
    );
    let o = bulk(&["delete", "--state", "all", "--yes"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "deleted 4 tasks of 4 matching\n");
    assert_eq!(task_count(&url), 0);
    remove_db(&path);
}

#[test]
fn tasks_logs_prints_each_recorded_run_and_follow_stops_when_the_task_is_done() {
    let (path, url) = temp_db("tasks-logs");
    register_types(&url, &["demo:ping"]);
    let id = schedule(&url, &["demo:ping", "{}"]);
    let logs = |extra: &[&str]| {
        let ids = id.to_string();
        let mut args = vec!["tasks", "logs", ids.as_str(), "--database", &url];
        args.extend_from_slice(extra);
        warren(&args)
    };
    let o = logs(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!(
            "task {id} is pending and has no recorded runs yet"
        )),
        "{}",
        stdout(&o)
    );
    // Two runs as a node records them: a retry that logged (with an escape sequence
    // the terminal must not act on), then a completion that logged nothing.
    with_store(&url, async |store| {
        use warren::store::{RunLogLine, RunOutcome, RunRecord};
        let claimed = store
            .claim("node-a", &["default".to_string()], 1, 30_000)
            .await
            .unwrap();
        let token = claimed[0].token;
        store
            .record_failure(
                &warren::executor::RunFailure::new(warren::task::TaskId(id), token, "boom"),
                warren::task::RetryPolicy::default(),
            )
            .await
            .unwrap();
        store
            .record_run(RunRecord {
                task_id: warren::task::TaskId(id),
                lease_token: token,
                node: "node-a".into(),
                started_at: 1_764_900_000_000,
                finished_at: 1_764_900_000_250,
                outcome: RunOutcome::Retry,
                error: Some("boom".into()),
                log: vec![
                    RunLogLine {
                        level: "info".into(),
                        message: "step 1 \x1b[2J".into(),
                    },
                    RunLogLine {
                        level: "stdout".into(),
                        message: "printed".into(),
                    },
                ],
            })
            .await
            .unwrap();
        store.retry_now(warren::task::TaskId(id)).await.unwrap();
        let claimed = store
            .claim("node-a", &["default".to_string()], 1, 30_000)
            .await
            .unwrap();
        let run = store
            .begin_run(claimed.into_iter().next().unwrap())
            .await
            .unwrap();
        run.resolve(
            warren::task::Resolution::Completion {
                result: "{}".into(),
            },
            warren::task::RetryPolicy::default(),
        )
        .await
        .unwrap();
    });
    let o = logs(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("run 1 · retry · node-a · started 2025-12-05 02:00:00Z · 250 ms"),
        "{out}"
    );
    assert_eq!(lines[1], "  error: boom", "{out}");
    assert_eq!(lines[2], "  [info] step 1 \\u{1b}[2J", "{out}");
    assert_eq!(lines[3], "  [stdout] printed", "{out}");
    assert!(
        lines[4].starts_with(&format!("task {id} completed at "))
            && lines[4].ends_with(
                "that run has no record (it logged nothing, or its record was not written)"
            ),
        "{out}"
    );
    // --json: one line per run; --follow ends once the task has finished.
    let o = logs(&["--json", "--follow"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let runs: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(runs.len(), 1, "{}", stdout(&o));
    assert_eq!(runs[0]["outcome"], "retry");
    assert_eq!(runs[0]["log"][0]["message"], "step 1 \u{1b}[2J");
    let o = warren(&["tasks", "logs", "999", "--database", &url]);
    assert_eq!(o.status.code(), Some(2));
    remove_db(&path);
}

#[test]
fn scheduled_list_run_enable_and_disable() {
    let (path, url) = temp_db("scheduled");
    // A node records the declared tags when it starts; do what it does.
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = warren::store::Store::open(&url).await.unwrap();
        let spec = |tag: &str, mask: Option<&str>| warren::store::ScheduledSpec {
            tag: tag.into(),
            mask: mask.map(|m| m.parse().unwrap()),
            zone: warren::cron::ZoneSpec::parse("UTC").unwrap(),
        };
        store
            .sync_scheduled(
                &[
                    spec("demo:heartbeat", Some("* * * * *")),
                    spec("demo:manual", None),
                ],
                0,
            )
            .await
            .unwrap();
    });
    let o = warren(&["scheduled", "list", "--database", &url]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("TAG             MASK       ZONE  STATUS"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("demo:heartbeat  * * * * *  UTC   enabled "),
        "{out}"
    );
    assert!(
        lines[2].starts_with("demo:manual     (by hand)  UTC   enabled "),
        "{out}"
    );

    let o = warren(&["scheduled", "run", "demo:manual", "--database", &url]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("run of demo:manual requested"),
        "{}",
        stdout(&o)
    );
    let o = warren(&["scheduled", "disable", "demo:heartbeat", "--database", &url]);
    assert_eq!(
        stdout(&o),
        "demo:heartbeat disabled: it runs only when run by hand\n"
    );
    let listed = json_out(&warren(&[
        "scheduled",
        "list",
        "--json",
        "--database",
        &url,
    ]));
    assert_eq!(
        (&listed[0]["tag"], &listed[0]["enabled"]),
        (
            &serde_json::json!("demo:heartbeat"),
            &serde_json::json!(false)
        )
    );
    assert_eq!(listed[1]["run_requested"], serde_json::json!(true));
    let o = warren(&["scheduled", "enable", "demo:heartbeat", "--database", &url]);
    assert_eq!(stdout(&o), "demo:heartbeat enabled\n");
    let listed = json_out(&warren(&[
        "scheduled",
        "list",
        "--json",
        "--database",
        &url,
    ]));
    assert_eq!(listed[0]["enabled"], serde_json::json!(true));

    for command in ["run", "enable", "disable"] {
        let o = warren(&["scheduled", command, "demo:nope", "--database", &url]);
        assert_eq!(o.status.code(), Some(2), "{command}");
        assert_eq!(
            stderr(&o),
            "warren: scheduled task 'demo:nope' does not exist\n"
        );
    }
    remove_db(&path);
}

#[test]
fn clusters_and_types_list_pause_and_resume() {
    let (path, url) = temp_db("pauses");
    register_types(&url, &["demo:ping", "demo:mail"]);
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--database", &url]);
        warren(&all)
    };
    let o = run(&["clusters", "pause", "default"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "cluster 'default' paused: running tasks finish, no new ones start\n"
    );
    let o = run(&["clusters", "pause", "default"]);
    assert_eq!(stdout(&o), "cluster 'default' was paused already\n");
    let o = run(&["types", "pause", "demo:mail"]);
    assert!(o.status.success(), "{}", stderr(&o));

    let out = stdout(&run(&["clusters", "list"]));
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("CLUSTER  STATE"), "{out}");
    assert!(lines[1].starts_with("default  paused since "), "{out}");
    assert!(lines[1].ends_with("demo:mail, demo:ping"), "{out}");
    let listed = json_out(&run(&["types", "list", "--json"]));
    assert_eq!(listed[0]["name"], "demo:mail");
    assert_eq!(listed[0]["kind"], "task");
    assert!(listed[0]["paused_since"].is_i64(), "{listed}");
    assert_eq!(listed[1]["name"], "demo:ping");
    assert_eq!(listed[1]["paused_since"], serde_json::Value::Null);
    assert_eq!(listed[1]["cluster_paused"], true);
    let out = stdout(&run(&["types", "list"]));
    assert!(
        out.lines()
            .any(|l| l.starts_with("demo:ping  default  held: its cluster is paused")),
        "{out}"
    );

    // Unknown names: exit 2, a message naming what is wrong, nothing paused.
    let o = run(&["clusters", "pause", "defualt"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        "warren: invalid cluster: no node knows cluster 'defualt' (known: default)\n"
    );
    let o = run(&["types", "pause", "demo:pnig"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("'demo:pnig'"), "{}", stderr(&o));

    // A task scheduled while paused is kept, with a warning; resuming reports what
    // changed.
    let o = run(&["schedule", "demo:ping", "{}"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o)
            .contains("cluster 'default' is paused: the demo:ping task waits until it is resumed"),
        "{}",
        stderr(&o)
    );
    assert_eq!(task_count(&url), 1);
    let id = stdout(&o).trim().to_string();
    let shown = stdout(&run(&["tasks", "show", &id]));
    assert!(
        shown.contains("cluster 'default' is paused: the task starts once it is resumed"),
        "{shown}"
    );
    let shown = json_out(&run(&["tasks", "show", &id, "--json"]));
    assert_eq!(
        shown["held_by"],
        serde_json::json!({"kind": "cluster", "name": "default"})
    );
    // With --json the answer carries the warnings, and standard error stays quiet.
    let o = run(&["schedule", "demo:ping", "{}", "--json"]);
    let answer = json_out(&o);
    assert_eq!(answer["created"], true);
    assert!(answer["id"].is_i64(), "{answer}");
    assert!(
        answer["warnings"]
            .to_string()
            .contains("cluster 'default' is paused"),
        "{answer}"
    );
    assert_eq!(stderr(&o), "");
    // `wait` takes --json like every command (it prints JSON anyway): here it gives up
    // at once on the waiting task, exit 1, not a usage error.
    let o = run(&["wait", &id, "--json", "--timeout", "0"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    for (args, said) in [
        (
            ["clusters", "resume", "default"],
            "cluster 'default' resumed\n",
        ),
        (
            ["types", "resume", "demo:mail"],
            "task type 'demo:mail' resumed\n",
        ),
        (
            ["types", "resume", "demo:mail"],
            "task type 'demo:mail' was not paused\n",
        ),
    ] {
        let o = run(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(stdout(&o), said);
    }
    let listed = json_out(&run(&["clusters", "list", "--json"]));
    assert_eq!(listed[0]["paused_since"], serde_json::Value::Null);
    let shown = json_out(&run(&["tasks", "show", &id, "--json"]));
    assert_eq!(shown["held_by"], serde_json::Value::Null);
    remove_db(&path);
}

#[test]
fn serve_refuses_a_remote_address_without_allow_remote() {
    let o = warren(&[
        "serve",
        "--modules",
        fixtures().to_str().unwrap(),
        "--listen",
        "0.0.0.0:4900",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--allow-remote"), "{}", stderr(&o));
    let o = warren(&["serve", "--modules", "x", "--listen", "nowhere"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("invalid --listen 'nowhere'"),
        "{}",
        stderr(&o)
    );
}

/// The tasks in the database at `url`.
fn task_count(url: &str) -> usize {
    with_store(url, async |store| {
        let filter = warren::store::TaskFilter {
            limit: 10_000,
            ..Default::default()
        };
        store.list(&filter).await.unwrap().len()
    })
}

/// Whether `text` holds a control character other than a line break: something a
/// terminal would act on.
fn has_raw_controls(text: &str) -> bool {
    text.chars().any(|c| c.is_control() && c != '\n')
}

#[test]
fn task_text_with_escape_sequences_is_shown_escaped() {
    let (path, url) = temp_db("escapes");
    // A task whose code failed with escape sequences in its error and stack: clear the
    // screen, set the window title, colour, a C1 CSI, a carriage return.
    let error = "\x1b[2J\x1b]0;owned\x07\x1b[31mboom\u{9b}0m\rdone";
    let stack = "at runTask (task.js:3)\n\x1b[8mhidden\x1b[0m";
    let id = with_store(&url, async |store| {
        let id = store
            .schedule(warren::store::NewTask::new(
                "demo:ping".parse().unwrap(),
                serde_json::json!({"note": "\u{9b}2J"}),
            ))
            .await
            .unwrap();
        let claimed = store
            .claim("node", &["default".to_string()], 1, 30_000)
            .await
            .unwrap();
        let never = warren::task::RetryPolicy {
            max_failures: 0,
            ..Default::default()
        };
        let failure = warren::executor::RunFailure {
            stack: Some(stack.to_string()),
            ..warren::executor::RunFailure::new(id, claimed[0].token, error)
        };
        store.record_failure(&failure, never).await.unwrap();
        id
    });
    let ids = id.to_string();

    let o = warren(&["tasks", "list", "--database", &url]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(!has_raw_controls(&out), "{out:?}");
    assert!(
        out.contains("\\u{1b}[2J\\u{1b}]0;owned\\u{7}\\u{1b}[31mboom\\u{9b}0m\\rdone"),
        "{out}"
    );

    let o = warren(&["tasks", "show", &ids, "--database", &url]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(!has_raw_controls(&out), "{out:?}");
    assert!(out.contains("last error    \\u{1b}[2J"), "{out}");
    // The stack keeps its lines.
    assert!(
        out.contains("last stack    at runTask (task.js:3)\n              \\u{1b}[8mhidden"),
        "{out}"
    );

    // JSON stays exact: the same text, escaped the JSON way.
    for command in [
        vec!["tasks", "show", &ids, "--json"],
        vec!["tasks", "list", "--json"],
    ] {
        let mut args = command.clone();
        args.extend(["--database", &url]);
        let o = warren(&args);
        assert!(
            !has_raw_controls(&stdout(&o)),
            "{command:?}: {:?}",
            stdout(&o)
        );
        let value = json_out(&o);
        let task = if value.is_array() { &value[0] } else { &value };
        assert_eq!(task["last_error"], error, "{command:?}");
    }
    let o = warren(&["tasks", "show", &ids, "--json", "--database", &url]);
    assert_eq!(json_out(&o)["last_stack"], stack);
    assert_eq!(json_out(&o)["data"]["note"], "\u{9b}2J");

    // `wait` prints the outcome as JSON: exact, and nothing a terminal acts on.
    let o = warren(&["wait", &ids, "--timeout", "5", "--database", &url]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(!has_raw_controls(&stdout(&o)), "{:?}", stdout(&o));
    let outcome: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(outcome["error"], error);
    remove_db(&path);
}

#[test]
fn huge_durations_and_bad_counts_are_refused_naming_the_flag_before_anything_is_done() {
    let (path, url) = temp_db("durations");
    register_types(&url, &["demo:ping"]);
    let huge = "18446744073709551615";
    for (args, flag) in [
        (vec!["schedule", "demo:ping", "--wait", huge], "--wait"),
        (
            vec!["schedule", "demo:ping", "--timeout", "99999999999999999999"],
            "--timeout",
        ),
        (vec!["schedule", "demo:ping", "--wait=-1"], "--wait"),
        (vec!["wait", "1", "--timeout", huge], "--timeout"),
        (vec!["serve", "--modules", "x", "--lease", huge], "--lease"),
        (vec!["serve", "--modules", "x", "--lease", "0"], "--lease"),
        (vec!["serve", "--modules", "x", "--grace", huge], "--grace"),
        (
            vec!["serve", "--modules", "x", "--runner-threads", "0"],
            "--runner-threads",
        ),
        (
            vec!["serve", "--modules", "x", "--idle-spin-us", "10001"],
            "--idle-spin-us",
        ),
        (
            vec!["serve", "--modules", "x", "--idle-spin-us=-1"],
            "--idle-spin-us",
        ),
    ] {
        let mut all = args.clone();
        all.extend(["--database", &url]);
        let o = warren(&all);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(flag), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    let o = warren(&["schedule", "demo:ping", "--wait", huge, "--database", &url]);
    assert!(stderr(&o).contains("too long"), "{}", stderr(&o));
    assert_eq!(task_count(&url), 0, "a refused schedule created a task");
    // The largest accepted value works.
    let id = schedule(&url, &["demo:ping", "--timeout", "31536000000"]);
    assert_eq!(task_count(&url), 1);
    let o = warren(&[
        "tasks",
        "show",
        &id.to_string(),
        "--json",
        "--database",
        &url,
    ]);
    assert_eq!(
        json_out(&o)["timeout_ms"],
        serde_json::json!(31_536_000_000_i64)
    );
    remove_db(&path);
}

#[test]
fn unknown_task_types_are_refused_unless_allowed() {
    let (path, url) = temp_db("unknown-type");
    let o = warren(&["schedule", "demo:nope", "--database", &url]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("unknown task type 'demo:nope'"), "{err}");
    assert!(err.contains("--allow-unknown-type"), "{err}");
    assert_eq!(stdout(&o), "");
    assert_eq!(task_count(&url), 0);

    // Asked for: scheduled, with a warning that nothing serves its cluster.
    let o = warren(&[
        "schedule",
        "demo:nope",
        "--allow-unknown-type",
        "--database",
        &url,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).trim().parse::<i64>().is_ok(), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("warren: warning: no live node serves cluster 'default'"),
        "{}",
        stderr(&o)
    );
    assert_eq!(task_count(&url), 1);

    // A registered type with no node running: scheduled, with the warning.
    register_types(&url, &["demo:ping"]);
    let o = warren(&["schedule", "demo:ping", "--database", &url]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("no live node serves"), "{}", stderr(&o));
    // With a live node serving its cluster: no warning.
    with_store(&url, async |store| {
        let info = serde_json::json!({"clusters": {"default": 1}});
        store.register_node("cli-node", &info).await.unwrap()
    });
    let o = warren(&["schedule", "demo:ping", "--database", &url]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stderr(&o), "");
    assert_eq!(task_count(&url), 3);
    remove_db(&path);
}

#[test]
fn serve_prints_a_generated_token_once_on_stderr_and_never_logs_it() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::Duration;
    let (path, url) = temp_db("token");
    let modules = std::env::temp_dir().join(format!("warren-cli-token-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&modules);
    std::fs::create_dir_all(modules.join("empty")).unwrap();
    std::fs::write(
        modules.join("empty/moduledefinition.xml"),
        r#"<module name="empty"><servicemanager/></module>"#,
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["serve", "--modules", modules.to_str().unwrap()])
        .args(["--database", &url, "--listen", "127.0.0.1:0"])
        .args([
            "--log-format",
            "json",
            "--node",
            "token-node",
            "--grace",
            "1",
        ])
        .env_remove("WARREN_TOKEN")
        .env_remove("WARREN_DATABASE_URL")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start warren serve");
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr_pipe = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr_pipe).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    // Until the dashboard is announced, then stop the node and read to the end.
    while !lines.iter().any(|l: &String| l.starts_with("dashboard: ")) {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => lines.push(line),
            Err(e) => {
                let _ = child.kill();
                panic!(
                    "no 'dashboard:' line ({e}); stderr so far:\n{}",
                    lines.join("\n")
                );
            }
        }
    }
    let stopped = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) {
        lines.push(line);
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}: {}", lines.join("\n"));
    let all = lines.join("\n");

    let announced = lines.iter().find(|l| l.starts_with("dashboard: ")).unwrap();
    let (_, token) = announced
        .split_once("#token=")
        .unwrap_or_else(|| panic!("no token in {announced}"));
    assert_eq!(token.len(), 64, "{announced}");
    assert_eq!(all.matches(token).count(), 1, "{all}");
    // The log (every JSON line) names the dashboard's address, never the token.
    let logged: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(logged.len() >= 2, "{all}");
    let dashboard = logged
        .iter()
        .find(|e| e["fields"]["message"] == "dashboard")
        .unwrap_or_else(|| panic!("the dashboard is not logged: {all}"));
    let logged_url = dashboard["fields"]["url"].as_str().unwrap();
    assert!(logged_url.starts_with("http://127.0.0.1:"), "{logged_url}");
    assert!(!logged_url.contains("token"), "{logged_url}");
    assert!(
        lines
            .iter()
            .filter(|l| l.starts_with('{'))
            .all(|l| !l.contains(token)),
        "{all}"
    );
    let _ = std::fs::remove_dir_all(&modules);
    remove_db(&path);
}

/// Runs `warren` with `input` on its standard input.
fn warren_with_stdin(args: &[&str], input: &str) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(args)
        .env_remove("WARREN_DATABASE_URL")
        .env_remove("WARREN_MAINTENANCE_OFFSET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run warren");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().expect("warren ends")
}

#[test]
fn schedule_batch_checks_every_line_then_schedules_them_all() {
    let (path, url) = temp_db("batch");
    register_types(&url, &["demo:ping"]);
    let dir = std::env::temp_dir().join(format!("warren-cli-batch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    // Bad lines: every one reported as FILE:LINE, in order, and nothing scheduled.
    let bad = dir.join("bad.jsonl");
    std::fs::write(
        &bad,
        [
            r#"{"type": "demo:ping", "data": {"n": 1}}"#,
            "",
            r#"{"type": "demo:ping", "priority": "urgent"}"#,
            r#"{"type": "demo:ping", "data": "#,
            r#"{"type": "demo:nope"}"#,
            r#"{"type": "demo:ping", "data": [1]}"#,
            r#"{"type": "demo:ping", "data": {"n": 7}}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let file = bad.to_str().unwrap();
    let o = warren(&["schedule", "--batch", file, "--database", &url]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    let reported: Vec<&str> = err.lines().collect();
    assert_eq!(reported.len(), 5, "{err}");
    assert!(
        reported[0].starts_with(&format!("{file}:3: priority: unknown priority 'urgent'")),
        "{err}"
    );
    assert!(
        reported[1].starts_with(&format!("{file}:4: not valid JSON")),
        "{err}"
    );
    assert!(
        reported[2].starts_with(&format!("{file}:5: type: unknown task type 'demo:nope'")),
        "{err}"
    );
    assert!(
        reported[3].starts_with(&format!("{file}:6: data: invalid data")),
        "{err}"
    );
    assert_eq!(
        reported[4],
        format!("warren: 4 of the 6 tasks of {file} are invalid; nothing was scheduled")
    );
    assert_eq!(stdout(&o), "");
    assert_eq!(task_count(&url), 0);

    // Good lines: scheduled, ids printed in order, one per line.
    let good = dir.join("good.jsonl");
    std::fs::write(
        &good,
        concat!(
            "{\"type\": \"demo:ping\", \"data\": {\"n\": 0}}\n",
            "\n",
            "{\"type\": \"demo:ping\", \"data\": {\"n\": 1}, \"priority\": \"interactive\", ",
            "\"not_before\": \"2030-01-01T00:00:00Z\"}\n",
            "  \n",
            "{\"type\": \"demo:ping\", \"data\": {\"n\": 2}, \"priority\": 7, \"cluster\": \"mail\"}\n",
        ),
    )
    .unwrap();
    let o = warren(&[
        "schedule",
        "--batch",
        good.to_str().unwrap(),
        "--database",
        &url,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ids: Vec<i64> = stdout(&o)
        .lines()
        .map(|l| l.parse().expect("an id"))
        .collect();
    assert_eq!(ids.len(), 3, "{}", stdout(&o));
    assert!(ids[0] < ids[1] && ids[1] < ids[2], "{ids:?}");
    let tasks = with_store(&url, async |store| {
        let mut tasks = Vec::new();
        for id in &ids {
            tasks.push(store.describe(warren::task::TaskId(*id)).await.unwrap());
        }
        tasks
    });
    for (i, t) in tasks.iter().enumerate() {
        assert_eq!(t.data, serde_json::json!({ "n": i }));
        assert_eq!(t.task_type.as_str(), "demo:ping");
    }
    assert_eq!(
        (
            tasks[0].priority.0,
            tasks[1].priority.0,
            tasks[2].priority.0
        ),
        (0, -100, 7)
    );
    assert_eq!(tasks[1].not_before, Some(1_893_456_000_000));
    assert_eq!(
        (tasks[0].cluster.as_str(), tasks[2].cluster.as_str()),
        ("default", "mail")
    );
    // Warnings once each: two clusters no live node serves.
    let warnings = stderr(&o);
    assert_eq!(warnings.lines().count(), 2, "{warnings}");
    assert!(warnings.contains("cluster 'default'"), "{warnings}");
    assert!(warnings.contains("cluster 'mail'"), "{warnings}");
    assert_eq!(task_count(&url), 3);

    // Standard input, `-`: bad lines are named <stdin>, good ones scheduled; --json
    // prints one array.
    let o = warren_with_stdin(
        &["schedule", "--batch", "-", "--database", &url],
        "{\"type\": \"demo:ping\"}\n{\"type\": \"demo:ping\", \"timeout_ms\": -1}\n",
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).starts_with("<stdin>:2: timeout_ms: "),
        "{}",
        stderr(&o)
    );
    assert_eq!(task_count(&url), 3);
    let o = warren_with_stdin(
        &["schedule", "--batch", "-", "--json", "--database", &url],
        "{\"type\": \"demo:ping\", \"data\": {\"n\": 3}}\n{\"type\": \"demo:nope\", \"allow_unknown_type\": true}\n",
    );
    let ids = json_out(&o);
    let ids = ids.as_array().unwrap();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids[0].as_i64() < ids[1].as_i64(), "{ids:?}");
    assert_eq!(task_count(&url), 5);

    // --batch stands alone: not with a type or the single task's flags; without it a
    // type is needed.
    for args in [
        vec!["schedule", "--batch", "-", "demo:ping"],
        vec!["schedule", "--batch", "-", "--priority", "5"],
        vec!["schedule", "--batch", "-", "--wait", "5"],
        vec!["schedule"],
    ] {
        let mut all = args.clone();
        all.extend(["--database", &url]);
        let o = warren_with_stdin(&all, "");
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
    assert_eq!(task_count(&url), 5);
    let _ = std::fs::remove_dir_all(&dir);
    remove_db(&path);
}

#[test]
fn toolkit_types_prints_or_writes_the_kits_typescript_types() {
    let printed = warren(&["toolkit", "types"]);
    assert!(printed.status.success(), "{}", stderr(&printed));
    let expected = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest/js/warren.d.ts"),
    )
    .unwrap();
    assert_eq!(stdout(&printed), expected);
    let dir = std::env::temp_dir().join(format!("warren-types-{}", std::process::id()));
    let out = dir.join("types/warren.d.ts");
    let written = warren(&["toolkit", "types", "--out", out.to_str().unwrap()]);
    assert!(written.status.success(), "{}", stderr(&written));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), expected);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_command_that_prints_data_takes_json() {
    use serde_json::json;
    let (path, url) = temp_db("json-everywhere");
    let migrated = json_out(&warren(&["migrate", "--json", "--database", &url]));
    assert!(
        !migrated["applied"].as_array().unwrap().is_empty(),
        "{migrated}"
    );
    let again = json_out(&warren(&["migrate", "--json", "--database", &url]));
    assert_eq!(again["applied"], json!([]));

    let fires = json_out(&warren(&[
        "cron",
        "next",
        "0 15 * * 1",
        "--after",
        "2026-01-05T00:00:00Z",
        "--count",
        "2",
        "--json",
    ]));
    assert_eq!(
        fires,
        json!([
            {"at": "2026-01-05T15:00:00Z", "ms": 1_767_625_200_000_i64},
            {"at": "2026-01-12T15:00:00Z", "ms": 1_768_230_000_000_i64},
        ])
    );

    register_types(&url, &["demo:ping"]);
    let id = schedule(&url, &["demo:ping", "{}"]);
    let ids = id.to_string();
    let db = ["--database", url.as_str(), "--json"];
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&db);
        json_out(&warren(&all))
    };
    let cancelled = run(&["tasks", "cancel", &ids]);
    assert_eq!(
        cancelled,
        json!({"id": id, "state": "cancelled", "was": "pending"})
    );
    let retried = run(&["tasks", "retry", &ids]);
    assert_eq!(
        (&retried["id"], &retried["state"]),
        (&json!(id), &json!("pending"))
    );
    assert!(retried["next_attempt"].as_i64().unwrap() > 1_700_000_000_000);
    run(&["tasks", "cancel", &ids]);
    assert_eq!(
        run(&["tasks", "delete", &ids]),
        json!({"id": id, "deleted": true})
    );

    assert_eq!(
        run(&["clusters", "pause", "default"]),
        json!({"kind": "cluster", "name": "default", "paused": true, "changed": true})
    );
    assert_eq!(
        run(&["clusters", "pause", "default"])["changed"],
        json!(false)
    );
    assert_eq!(
        run(&["clusters", "resume", "default"]),
        json!({"kind": "cluster", "name": "default", "paused": false, "changed": true})
    );
    let paused = run(&["types", "pause", "demo:ping"]);
    assert_eq!(
        (&paused["kind"], &paused["paused"]),
        (&json!("type"), &json!(true))
    );
    assert_eq!(
        run(&["types", "resume", "demo:ping"])["changed"],
        json!(true)
    );

    with_store(&url, async |store| {
        let spec = warren::store::ScheduledSpec {
            tag: "demo:tick".into(),
            mask: Some("* * * * *".parse().unwrap()),
            zone: warren::cron::ZoneSpec::parse("UTC").unwrap(),
        };
        store.sync_scheduled(&[spec], 0).await.unwrap();
    });
    assert_eq!(
        run(&["scheduled", "run", "demo:tick"]),
        json!({"tag": "demo:tick", "run_requested": true})
    );
    assert_eq!(
        run(&["scheduled", "disable", "demo:tick"]),
        json!({"tag": "demo:tick", "enabled": false})
    );
    assert_eq!(
        run(&["scheduled", "enable", "demo:tick"]),
        json!({"tag": "demo:tick", "enabled": true})
    );

    let cache = std::env::temp_dir().join(format!("warren-cli-json-cache-{}", std::process::id()));
    let o = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["toolkit", "status", "--json"])
        .env("WARREN_CACHE_DIR", &cache)
        .env_remove("WARREN_JS_KIT")
        .output()
        .unwrap();
    let status = json_out(&o);
    let names: Vec<&str> = status["embedded"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["js", "js-starlingmonkey", "python"]);
    assert_eq!(status["other_versions"], json!([]));
    let _ = std::fs::remove_dir_all(&cache);
    remove_db(&path);
}

#[test]
fn schedule_keeps_a_traceparent_given_by_flag_or_environment() {
    const FLAG: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const ENV: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let (path, url) = temp_db("traceparent");
    register_types(&url, &["demo:ping"]);
    let by_flag = schedule(&url, &["demo:ping", "--traceparent", FLAG]);
    let o = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["schedule", "--database", &url, "demo:ping"])
        .env("TRACEPARENT", ENV)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let by_env: i64 = stdout(&o).trim().parse().unwrap();
    let bad = warren(&[
        "schedule",
        "--database",
        &url,
        "demo:ping",
        "--traceparent",
        "00-abc",
    ]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("'00-abc' is not a W3C traceparent"),
        "{}",
        stderr(&bad)
    );
    // A TRACEPARENT that is not one was set by another tool: ignored, with a warning.
    let o = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["schedule", "--database", &url, "demo:ping"])
        .env("TRACEPARENT", "garbage")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("warren: TRACEPARENT ignored: 'garbage' is not a W3C traceparent"),
        "{}",
        stderr(&o)
    );
    let kept = with_store(&url, async |store| {
        let mut kept = Vec::new();
        for id in [by_flag, by_env] {
            let value = store
                .metadata(warren::task::TaskId(id), "traceparent")
                .await
                .unwrap();
            kept.push(value);
        }
        kept
    });
    assert_eq!(kept, [Some(FLAG.to_string()), Some(ENV.to_string())]);
    remove_db(&path);
}
