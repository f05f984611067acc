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
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
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
            .env("WARREN_CACHE_DIR", repo.join("target/warren-test-cache"))
            .env("WARREN_JS_KIT", repo.join("guest/js"))
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
        .env("WARREN_CACHE_DIR", repo.join("target/warren-test-cache"))
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
