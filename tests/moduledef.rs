//! Tests of `warren::moduledef`: reading and validating `moduledefinition.xml`.
//!
//! Fixture modules live in `tests/fixtures/modules/`: `alpha` uses every element and
//! attribute, `broken` has several errors, `notes` is a folder without a definition.
//! Inline definitions are parsed with `alpha` as their module folder, so its code files
//! (`tasks/ping.js`, ...) exist for them too.

use std::path::{Path, PathBuf};
use warren::cron::{CronMask, ZoneSpec};
use warren::flow::ConcurrencyLimit;
use warren::moduledef::{
    load_module, load_modules_dir, parse_module, DefinitionError, LoadOptions, Location,
    ModuleDefinition, TaskKind, DEFAULT_CLUSTER,
};
use warren::rate_limit::{RateLimit, RatePeriod};
use warren::task::{Backoff, Priority, RetryPolicy, TaskType, DEFAULT_FAIL_RESCHEDULE_MS};

/// The file name inline definitions are reported under.
const FILE: &str = "m/moduledefinition.xml";

fn fixtures() -> PathBuf {
    let here = Path::new(file!());
    let here = if here.is_absolute() {
        here.to_path_buf()
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(here)
    };
    here.parent().unwrap().join("fixtures").join("modules")
}

fn alpha_dir() -> PathBuf {
    fixtures().join("alpha")
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse_with(xml: &str, opts: &LoadOptions) -> Result<ModuleDefinition, Vec<DefinitionError>> {
    parse_module(xml, Path::new(FILE), &alpha_dir(), opts)
}

fn parse(xml: &str) -> Result<ModuleDefinition, Vec<DefinitionError>> {
    parse_with(xml, &LoadOptions::with_env(&no_env))
}

/// The module, panicking with the errors when it does not load.
fn ok(xml: &str) -> ModuleDefinition {
    match parse(xml) {
        Ok(m) => m,
        Err(errors) => panic!("unexpected errors: {}", show(&errors).join("\n")),
    }
}

fn show(errors: &[DefinitionError]) -> Vec<String> {
    errors.iter().map(|e| e.to_string()).collect()
}

/// The errors of a definition that must not load, as displayed.
fn errors(xml: &str) -> Vec<String> {
    match parse(xml) {
        Ok(m) => panic!("expected errors, but it loaded: {m:?}"),
        Err(errors) => show(&errors),
    }
}

/// A fresh, empty temporary folder for one test.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("warren-moduledef-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a module folder with the definition and (empty) code files.
fn write_module(dir: &Path, xml: &[u8], code_files: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("moduledefinition.xml"), xml).unwrap();
    for f in code_files {
        let path = dir.join(f);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "// dummy\n").unwrap();
    }
}

#[test]
fn full_valid_module_loads_every_element_and_attribute() {
    let dir = alpha_dir();
    let m = load_module(&dir, &LoadOptions::with_env(&no_env)).unwrap();
    let file = dir.join("moduledefinition.xml");
    assert_eq!(m.name, "alpha");
    assert_eq!(m.dir, dir);
    assert_eq!(m.file, file);
    assert_eq!((m.location.line, m.location.col), (3, 15));

    // Clusters: declared ones in order, then the implicit default.
    let clusters: Vec<(&str, u32)> = m
        .clusters
        .iter()
        .map(|c| (c.tag.as_str(), c.workers))
        .collect();
    assert_eq!(clusters, [("mail", 4), ("heavy", 1), ("default", 1)]);
    assert_eq!(m.cluster_workers("mail"), 4);
    assert_eq!(m.cluster_workers("default"), 1);
    assert_eq!(m.cluster_workers("nosuch"), 0);
    assert_eq!(
        m.clusters[0].location,
        Location {
            file: file.clone(),
            line: 6,
            col: 5
        }
    );

    assert_eq!(m.managed.len(), 4);
    let ping = &m.managed[0];
    assert_eq!(ping.task_type, "alpha:ping".parse::<TaskType>().unwrap());
    assert_eq!(ping.kind, TaskKind::Managed);
    assert_eq!(ping.code, dir.join("tasks/ping.js"));
    assert_eq!(ping.cluster, DEFAULT_CLUSTER);
    assert_eq!(ping.priority, Priority::NORMAL);
    assert_eq!(ping.timeout_ms, 0);
    assert_eq!(ping.retry, RetryPolicy::default());
    assert_eq!(ping.retry.fail_reschedule_ms, DEFAULT_FAIL_RESCHEDULE_MS);
    assert_eq!(ping.retry.max_failures, -1);
    assert_eq!(ping.description.as_deref(), Some("Answers a ping"));
    assert_eq!((ping.location.line, ping.location.col), (8, 5));

    // `objectname` alias, priority by name, every number given.
    let sendmail = &m.managed[1];
    assert_eq!(sendmail.task_type.as_str(), "alpha:sendmail");
    assert_eq!(sendmail.code, dir.join("tasks/sendmail.js"));
    assert_eq!(sendmail.cluster, "mail");
    assert_eq!(sendmail.priority, Priority::INTERACTIVE);
    assert_eq!(sendmail.timeout_ms, 30_000);
    assert_eq!(
        sendmail.retry,
        RetryPolicy {
            fail_reschedule_ms: 60_000,
            max_failures: 5,
            backoff: Backoff::Linear,
            backoff_max_ms: Some(600_000),
            jitter_permille: 100,
        }
    );
    assert_eq!(sendmail.description, None);
    assert_eq!(
        sendmail.concurrency,
        Some(ConcurrencyLimit {
            limit: 2,
            key: Some("domain".into())
        })
    );
    assert_eq!(ping.concurrency, None);
    assert_eq!(
        sendmail.rate_limit,
        Some(RateLimit {
            count: 20,
            period: RatePeriod::Second,
            burst: 20,
            key: Some("domain".into())
        })
    );
    assert_eq!(ping.rate_limit, None);

    // A limit for the whole type.
    let export = &m.managed[2];
    assert_eq!(
        export.concurrency,
        Some(ConcurrencyLimit {
            limit: 1,
            key: None
        })
    );

    // `script` alias with `.` and `..` inside the folder, priority by number.
    let reindex = &m.managed[3];
    assert_eq!(reindex.code, dir.join("tasks/reindex.js"));
    assert_eq!(reindex.cluster, "heavy");
    assert_eq!(reindex.priority, Priority(-150));
    assert_eq!(reindex.retry.max_failures, 0);

    assert_eq!(m.ephemeral.len(), 1);
    let compile = &m.ephemeral[0];
    assert_eq!(compile.task_type.as_str(), "alpha:compile");
    assert_eq!(compile.kind, TaskKind::Ephemeral);
    assert_eq!(compile.timeout_ms, 30_000);
    assert_eq!(compile.priority, Priority::UPDATE_INTERACTIVE);
    assert_eq!(compile.retry, RetryPolicy::reference(0, 0));
    assert_eq!(
        compile.description.as_deref(),
        Some("Compiles an asset pack")
    );

    let t = |name: &str| TaskType::new("alpha", name).unwrap();
    assert_eq!(m.task_type(&t("compile")), Some(compile));
    assert_eq!(m.task_type(&t("sendmail")), Some(sendmail));
    assert_eq!(m.task_type(&t("nosuch")), None);

    assert_eq!(m.scheduled.len(), 4);
    let updates = &m.scheduled[0];
    assert_eq!(updates.tag, "alpha:updates");
    assert_eq!(updates.code, dir.join("tasks/updates.js"));
    assert_eq!(updates.runat, Some(CronMask::parse("13 0 * * *").unwrap()));
    assert_eq!(updates.runtz, ZoneSpec::Utc);
    assert!(!updates.run_at_startup);
    assert_eq!(updates.timeout_ms, 60 * 60_000);
    assert!(updates.args.is_empty());
    assert_eq!(updates.description, None);

    let mondays = &m.scheduled[1];
    assert_eq!(mondays.tag, "alpha:mondays");
    assert_eq!(mondays.code, dir.join("tasks/mondays.js"));
    assert_eq!(mondays.runat, Some(CronMask::parse("0 15 * * 1").unwrap()));
    assert_eq!(mondays.runtz, ZoneSpec::parse("Europe/Amsterdam").unwrap());
    assert!(mondays.run_at_startup);
    assert_eq!(mondays.timeout_ms, 5 * 60_000);
    assert_eq!(mondays.description.as_deref(), Some("Monday report"));
    // Exact text, entities and CDATA decoded, empty <arg/> kept.
    assert_eq!(mondays.args, ["--full", " a & b ", "<raw>", ""]);
    assert_eq!(m.scheduled_task("alpha:mondays"), Some(mondays));

    let maintenance = &m.scheduled[2];
    assert_eq!(maintenance.runtz, ZoneSpec::Maintenance);
    assert!(!maintenance.run_at_startup);
    assert_eq!(maintenance.timeout_ms, 0);
    assert_eq!(maintenance.code, dir.join("tasks/maintenance.js"));

    let manual = &m.scheduled[3];
    assert_eq!(manual.runat, None);
    assert!(manual.run_at_startup);
}

#[test]
fn load_module_accepts_the_definition_file_itself() {
    let dir = alpha_dir();
    let opts = LoadOptions::with_env(&no_env);
    let by_file = load_module(&dir.join("moduledefinition.xml"), &opts).unwrap();
    let by_dir = load_module(&dir, &opts).unwrap();
    assert_eq!(by_file, by_dir);
}

#[test]
fn defaults_of_a_minimal_module() {
    let m = ok(r#"<module name="m">
  <servicemanager>
    <managedtask type="a" code="tasks/ping.js"/>
    <ephemeraltask type="b" code="tasks/ping.js"/>
    <task tag="c" code="tasks/ping.js"/>
  </servicemanager>
</module>"#);
    let a = &m.managed[0];
    assert_eq!(a.task_type.as_str(), "m:a");
    assert_eq!(a.cluster, "default");
    assert_eq!(a.priority, Priority::NORMAL);
    assert_eq!(a.timeout_ms, 0);
    assert_eq!(a.retry.fail_reschedule_ms, 15 * 60 * 1000);
    assert_eq!(a.retry.max_failures, -1);
    assert_eq!(a.memory_limit_mb, 256);
    assert_eq!(a.description, None);
    assert_eq!(a.code, alpha_dir().join("tasks/ping.js"));
    let b = &m.ephemeral[0];
    assert_eq!(b.kind, TaskKind::Ephemeral);
    assert_eq!(b.cluster, "default");
    assert_eq!(b.timeout_ms, 0);
    let c = &m.scheduled[0];
    assert_eq!(c.tag, "m:c");
    assert_eq!(c.runat, None);
    assert_eq!(c.runtz, ZoneSpec::Utc);
    assert!(!c.run_at_startup);
    assert_eq!(c.timeout_ms, 3_600_000);
    assert_eq!(m.clusters.len(), 1);
    assert_eq!(m.clusters[0].tag, "default");
    assert_eq!(m.clusters[0].workers, 1);
    assert_eq!(
        (m.clusters[0].location.line, m.clusters[0].location.col),
        (1, 1)
    );
}

#[test]
fn module_without_servicemanager_is_empty_and_other_sections_are_ignored() {
    let m = ok(
        r#"<module name="m"><meta><anything weird="yes"/></meta><x:y xmlns:x="urn:x"/></module>"#,
    );
    assert!(m.managed.is_empty() && m.ephemeral.is_empty() && m.scheduled.is_empty());
    assert_eq!(m.cluster_workers("default"), 1);
}

#[test]
fn declaring_the_default_cluster_overrides_it() {
    let m = ok(r#"<module name="m">
  <servicemanager>
    <taskcluster tag="default" workers="3"/>
  </servicemanager>
</module>"#);
    assert_eq!(m.clusters.len(), 1);
    assert_eq!(m.cluster_workers("default"), 3);
}

#[test]
fn module_name_defaults_to_the_folder_name() {
    let m = parse_module(
        r#"<module><servicemanager><managedtask type="a" code="tasks/ping.js"/></servicemanager></module>"#,
        Path::new(FILE),
        &alpha_dir(),
        &LoadOptions::with_env(&no_env),
    )
    .unwrap();
    assert_eq!(m.name, "alpha");
    assert_eq!(m.managed[0].task_type.as_str(), "alpha:a");
    assert_eq!((m.location.line, m.location.col), (1, 1));
}

#[test]
fn folder_name_that_is_not_a_valid_module_name() {
    let dir = temp_dir("bad name");
    write_module(&dir, b"<module>\n</module>\n", &[]);
    let errs = load_module(&dir, &LoadOptions::with_env(&no_env)).unwrap_err();
    let file = dir.join("moduledefinition.xml");
    assert_eq!(
        show(&errs),
        [format!(
            "{}:1:1: <module> has no name attribute and its folder name '{}' is not a valid module name (use only letters, digits, '_', '-' and '.'): add name=\"...\"",
            file.display(),
            dir.file_name().unwrap().to_string_lossy()
        )]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn invalid_names() {
    assert_eq!(
        errors(r#"<module name="my module">
  <servicemanager>
    <managedtask type="a:b" code="tasks/ping.js"/>
    <taskcluster tag=""/>
    <task tag="x y" code="tasks/ping.js"/>
    <managedtask type="ok" code="tasks/ping.js" cluster="no/slash"/>
  </servicemanager>
</module>"#),
        [
            "m/moduledefinition.xml:1:15: invalid module name 'my module': use only letters, digits, '_', '-' and '.'",
            "m/moduledefinition.xml:3:24: invalid task type name 'a:b': use only letters, digits, '_', '-' and '.'",
            "m/moduledefinition.xml:4:23: invalid cluster tag '': use only letters, digits, '_', '-' and '.'",
            "m/moduledefinition.xml:5:16: invalid task tag 'x y': use only letters, digits, '_', '-' and '.'",
            "m/moduledefinition.xml:6:58: invalid cluster name 'no/slash': use only letters, digits, '_', '-' and '.'",
        ]
    );
}

#[test]
fn root_element_must_be_module() {
    assert_eq!(
        errors("<?xml version=\"1.0\"?>\n<modul name=\"m\"/>"),
        ["m/moduledefinition.xml:2:1: the root element must be <module>, not <modul>"]
    );
}

#[test]
fn xml_syntax_error_has_a_position() {
    assert_eq!(
        errors("<module name=\"m\">\n  <servicemanager>\n    <managedtask type=\"a\" code=\"tasks/ping.js\">\n  </servicemanager>\n</module>\n"),
        ["m/moduledefinition.xml:4:3: XML syntax error: expected 'managedtask' tag, not 'servicemanager'"]
    );
    assert_eq!(
        errors("<module name=\"m\">\n  <task tag=\"a\" tag=\"b\"/>\n</module>"),
        ["m/moduledefinition.xml:2:17: XML syntax error: attribute 'tag' is already defined"]
    );
}

#[test]
fn unclosed_document_points_at_its_end() {
    assert_eq!(
        errors("<module name=\"m\">\n  <servicemanager>\n"),
        ["m/moduledefinition.xml:3:1: XML syntax error: the root node was opened but never closed"]
    );
}

#[test]
fn unknown_attributes_are_errors() {
    assert_eq!(
        errors(r#"<module name="m">
  <servicemanager>
    <managedtask type="a" code="tasks/ping.js" maxfailure="3"/>
    <task tag="b" code="tasks/ping.js" colour="red"/>
    <taskcluster tag="c" workers="2" x:note="namespaced attributes are ignored" xmlns:x="urn:x"/>
  </servicemanager>
</module>"#),
        [
            "m/moduledefinition.xml:3:48: unknown attribute 'maxfailure' on <managedtask> (did you mean 'maxfailures'?)",
            "m/moduledefinition.xml:4:40: unknown attribute 'colour' on <task> (allowed: tag, code, objectname, script, runat, runtz, runatstartup, timeout, maxtransaction, memorylimit, description, ifenvironset, unlessenvironset)",
        ]
    );
}

#[test]
fn unknown_elements_and_stray_text_in_servicemanager_are_errors() {
    assert_eq!(
        errors(r#"<module name="m">
  <servicemanager>
    <managedtsk type="a" code="tasks/ping.js"/>
    <webservice name="b"/>
    stray words
    <task tag="c" code="tasks/ping.js"><argument>x</argument><arg>y<b>z</b></arg></task>
    <managedtask type="d" code="tasks/ping.js"><arg>no</arg></managedtask>
  </servicemanager>
</module>"#),
        [
            "m/moduledefinition.xml:3:5: unknown element <managedtsk> in <servicemanager> (did you mean <managedtask>?)",
            "m/moduledefinition.xml:4:5: unknown element <webservice> in <servicemanager> (expected managedtask, ephemeraltask, taskcluster or task)",
            "m/moduledefinition.xml:5:5: unexpected text inside <servicemanager>",
            "m/moduledefinition.xml:6:40: unexpected element <argument> inside <task> (only <arg> is allowed)",
            "m/moduledefinition.xml:6:68: unexpected element <b> inside <arg> (an argument is text only)",
            "m/moduledefinition.xml:7:48: unexpected element <arg> inside <managedtask> (it takes no child elements)",
        ]
    );
}

#[test]
fn required_attributes_and_code_aliases() {
    assert_eq!(
        errors(r#"<module name="m">
  <servicemanager>
    <managedtask code="tasks/ping.js"/>
    <task code="tasks/ping.js"/>
    <taskcluster workers="2"/>
    <ephemeraltask type="a"/>
    <managedtask type="b" code="tasks/ping.js" script="tasks/ping.js"/>
  </servicemanager>
</module>"#),
        [
            "m/moduledefinition.xml:3:5: <managedtask> is missing the required attribute 'type'",
            "m/moduledefinition.xml:4:5: <task> is missing the required attribute 'tag'",
            "m/moduledefinition.xml:5:5: <taskcluster> is missing the required attribute 'tag'",
            "m/moduledefinition.xml:6:5: <ephemeraltask> needs its code: add a 'code' attribute (or its alias 'objectname' or 'script')",
            "m/moduledefinition.xml:7:56: give only one of 'code', 'objectname' and 'script': 'script' repeats 'code'",
        ]
    );
}

#[test]
fn duplicate_types_tags_and_clusters() {
    assert_eq!(
        errors(
            r#"<module name="m">
  <servicemanager>
    <taskcluster tag="mail"/>
    <taskcluster tag="mail" workers="2"/>
    <managedtask type="a" code="tasks/ping.js"/>
    <ephemeraltask type="a" code="tasks/ping.js"/>
    <task tag="a" code="tasks/ping.js"/>
    <task tag="a" code="tasks/ping.js"/>
  </servicemanager>
</module>"#
        ),
        [
            "m/moduledefinition.xml:4:23: duplicate cluster 'mail' (already declared at 3:23)",
            "m/moduledefinition.xml:6:26: duplicate task type 'a' (already declared at 5:24)",
            "m/moduledefinition.xml:8:16: duplicate task tag 'a' (already declared at 7:16)",
        ]
    );
}

#[test]
fn unknown_cluster() {
    assert_eq!(
        errors(r#"<module name="m">
  <servicemanager>
    <taskcluster tag="mail"/>
    <managedtask type="a" code="tasks/ping.js" cluster="mial"/>
    <ephemeraltask type="b" code="tasks/ping.js" cluster="mail"/>
  </servicemanager>
</module>"#),
        [
            "m/moduledefinition.xml:4:57: unknown cluster 'mial': declare it with <taskcluster tag=\"mial\"/> or use 'default'"
        ]
    );
}

#[test]
fn bad_runat_names_the_field() {
    let errs = errors(
        r#"<module name="m">
  <servicemanager>
    <task tag="a" runat="61 0 * * *" code="tasks/ping.js"/>
    <task tag="b" runat="" code="tasks/ping.js"/>
    <task tag="c" runat="4 5 30 2 *" code="tasks/ping.js"/>
  </servicemanager>
</module>"#,
    );
    assert_eq!(errs.len(), 3, "{errs:?}");
    let prefix = "m/moduledefinition.xml:3:26: invalid runat '61 0 * * *': ";
    assert!(errs[0].starts_with(prefix), "{}", errs[0]);
    assert!(errs[0][prefix.len()..].contains("minute"), "{}", errs[0]);
    assert_eq!(
        errs[1],
        "m/moduledefinition.xml:4:26: runat is empty: leave it out for a task that runs only when triggered by hand"
    );
    // A mask no date can match is refused when loading, not when it is first due.
    let prefix = "m/moduledefinition.xml:5:26: invalid runat '4 5 30 2 *': ";
    assert!(errs[2].starts_with(prefix), "{}", errs[2]);
    assert!(errs[2].contains("no date matches"), "{}", errs[2]);
}

#[test]
fn bad_runtz() {
    let errs = errors(
        r#"<module name="m">
  <servicemanager>
    <task tag="a" runat="0 * * * *" runtz="Mars/Olympus_Mons" code="tasks/ping.js"/>
  </servicemanager>
</module>"#,
    );
    assert_eq!(errs.len(), 1, "{errs:?}");
    let prefix = "m/moduledefinition.xml:3:44: invalid runtz 'Mars/Olympus_Mons': ";
    assert!(errs[0].starts_with(prefix), "{}", errs[0]);
    assert!(errs[0].len() > prefix.len(), "{}", errs[0]);
}

#[test]
fn ephemeral_tasks_refuse_retry_attributes() {
    assert_eq!(
        errors(r#"<module name="m">
  <servicemanager>
    <ephemeraltask type="a" code="tasks/ping.js" maxfailures="3" failreschedule="1000"/>
  </servicemanager>
</module>"#),
        [
            "m/moduledefinition.xml:3:50: attribute 'maxfailures' is not allowed on <ephemeraltask>: ephemeral tasks are never retried",
            "m/moduledefinition.xml:3:66: attribute 'failreschedule' is not allowed on <ephemeraltask>: ephemeral tasks are never retried",
        ]
    );
}

#[test]
fn code_paths_must_exist_and_stay_inside_the_module() {
    let dir = alpha_dir();
    let errs = errors(
        r#"<module name="m">
  <servicemanager>
    <managedtask type="a" code="tasks/missing.js"/>
    <managedtask type="b" code="../broken/tasks/ping.js"/>
    <managedtask type="c" code="tasks/../../alpha/tasks/ping.js"/>
    <managedtask type="d" code="/etc/hostname"/>
    <managedtask type="e" code="tasks"/>
    <managedtask type="f" code=""/>
  </servicemanager>
</module>"#,
    );
    assert_eq!(
        errs,
        [
            format!(
                "m/moduledefinition.xml:3:33: code file 'tasks/missing.js' not found (looked for {})",
                dir.join("tasks/missing.js").display()
            ),
            "m/moduledefinition.xml:4:33: code path '../broken/tasks/ping.js' leads outside the module folder".to_string(),
            "m/moduledefinition.xml:5:33: code path 'tasks/../../alpha/tasks/ping.js' leads outside the module folder".to_string(),
            "m/moduledefinition.xml:6:33: code path '/etc/hostname' must be relative to the module folder".to_string(),
            format!(
                "m/moduledefinition.xml:7:33: code path 'tasks' is not a file ({})",
                dir.join("tasks").display()
            ),
            "m/moduledefinition.xml:8:33: code path is empty".to_string(),
        ]
    );
}

#[test]
fn numbers_booleans_and_priorities_are_checked() {
    assert_eq!(
        errors(r#"<module name="m">
  <servicemanager>
    <taskcluster tag="a" workers="0"/>
    <taskcluster tag="b" workers="many"/>
    <managedtask type="c" code="tasks/ping.js" maxfailures="-2" failreschedule="0" timeout="-1"/>
    <managedtask type="d" code="tasks/ping.js" priority="urgent"/>
    <task tag="e" code="tasks/ping.js" runatstartup="yes" timeout="1.5"/>
  </servicemanager>
</module>"#),
        [
            "m/moduledefinition.xml:3:35: invalid workers '0': expected a whole number of workers from 1 to 1024",
            "m/moduledefinition.xml:4:35: invalid workers 'many': expected a whole number of workers from 1 to 1024",
            "m/moduledefinition.xml:5:61: invalid maxfailures '-2': expected -1 (retry forever) or a whole number of 0 or more",
            "m/moduledefinition.xml:5:81: invalid failreschedule '0': expected a whole number of milliseconds from 1 to 86400000 (one day)",
            "m/moduledefinition.xml:5:93: invalid timeout '-1': expected a whole number of milliseconds (0 = no timeout)",
            "m/moduledefinition.xml:6:58: unknown priority 'urgent': use a number or one of background, normal, interactive, update, updateinteractive",
            "m/moduledefinition.xml:7:54: invalid runatstartup 'yes': expected true, false, 1 or 0",
            "m/moduledefinition.xml:7:68: invalid timeout '1.5': expected a whole number of minutes (0 = no timeout)",
        ]
    );
}

#[test]
fn retry_attributes_are_checked() {
    assert_eq!(
        errors(r#"<module name="m">
  <servicemanager>
    <managedtask type="a" code="tasks/ping.js" backoff="fibonacci"/>
    <managedtask type="b" code="tasks/ping.js" failreschedule="60000" backoffmax="1000"/>
    <managedtask type="c" code="tasks/ping.js" backoffjitter="1.5"/>
    <managedtask type="d" code="tasks/ping.js" backoffmax="0" backoffjitter="x"/>
    <managedtask type="f" code="tasks/ping.js" failreschedule="soon" backoffmax="60000"/>
    <ephemeraltask type="e" code="tasks/ping.js" backoff="linear"/>
  </servicemanager>
</module>"#),
        [
            "m/moduledefinition.xml:3:57: invalid backoff: 'fibonacci' is not a back-off (exponential, linear or constant)",
            "m/moduledefinition.xml:4:83: backoffmax 1000 is shorter than failreschedule 60000: the first retry would already wait longer than the maximum",
            "m/moduledefinition.xml:5:63: invalid backoffjitter '1.5': expected a fraction from 0.0 to 1.0 (0.25 moves each delay by up to 25% either way)",
            "m/moduledefinition.xml:6:60: invalid backoffmax '0': expected a whole number of milliseconds from 1 to 31536000000 (one year)",
            "m/moduledefinition.xml:6:78: invalid backoffjitter 'x': expected a fraction from 0.0 to 1.0 (0.25 moves each delay by up to 25% either way)",
            "m/moduledefinition.xml:7:64: invalid failreschedule 'soon': expected a whole number of milliseconds from 1 to 86400000 (one day)",
            "m/moduledefinition.xml:8:50: attribute 'backoff' is not allowed on <ephemeraltask>: ephemeral tasks are never retried",
        ]
    );
}

#[test]
fn concurrency_attributes_are_checked() {
    assert_eq!(
        errors(r#"<module name="m">
  <servicemanager>
    <managedtask type="a" code="tasks/ping.js" concurrency="0"/>
    <managedtask type="b" code="tasks/ping.js" concurrency="two" concurrencykey="tenant"/>
    <managedtask type="c" code="tasks/ping.js" concurrencykey="tenant"/>
    <managedtask type="d" code="tasks/ping.js" concurrency="3" concurrencykey="a.b"/>
    <ephemeraltask type="e" code="tasks/ping.js" concurrency="1"/>
  </servicemanager>
</module>"#),
        [
            "m/moduledefinition.xml:3:61: invalid concurrency '0': expected a whole number of running tasks from 1 to 100000",
            "m/moduledefinition.xml:4:61: invalid concurrency 'two': expected a whole number of running tasks from 1 to 100000",
            "m/moduledefinition.xml:5:64: concurrencykey needs concurrency: say how many tasks may run at once per key",
            "m/moduledefinition.xml:6:80: invalid concurrencykey 'a.b': '.' is not allowed: a key field is a top-level data field named with ASCII letters, digits, '_' and '-'",
            "m/moduledefinition.xml:7:50: unknown attribute 'concurrency' on <ephemeraltask> (allowed: type, code, objectname, script, cluster, priority, timeout, maxtransaction, memorylimit, description, ifenvironset, unlessenvironset)",
        ]
    );
}

#[test]
fn rate_limit_attributes_are_read_and_checked() {
    let m = ok(r#"<module name="m">
  <servicemanager>
    <managedtask type="a" code="tasks/ping.js" ratelimit="20/s"/>
    <managedtask type="b" code="tasks/ping.js" ratelimit="100/m" ratelimitkey="tenant" ratelimitburst="5" concurrency="2" concurrencykey="tenant"/>
  </servicemanager>
</module>"#);
    assert_eq!(
        m.managed[0].rate_limit,
        Some(RateLimit {
            count: 20,
            period: RatePeriod::Second,
            burst: 20,
            key: None
        }),
        "the burst is a second's worth unless said"
    );
    assert_eq!(
        m.managed[1].rate_limit,
        Some(RateLimit {
            count: 100,
            period: RatePeriod::Minute,
            burst: 5,
            key: Some("tenant".into())
        })
    );
    assert_eq!(
        errors(r#"<module name="m">
  <servicemanager>
    <managedtask type="a" code="tasks/ping.js" ratelimit="20/d"/>
    <managedtask type="b" code="tasks/ping.js" ratelimitkey="tenant" ratelimitburst="3"/>
    <managedtask type="c" code="tasks/ping.js" ratelimit="1/s" ratelimitburst="0"/>
    <managedtask type="d" code="tasks/ping.js" ratelimit="1/s" concurrency="1" concurrencykey="tenant"/>
    <managedtask type="e" code="tasks/ping.js" ratelimit="1/s" ratelimitkey="user" concurrency="1" concurrencykey="tenant"/>
    <managedtask type="f" code="tasks/ping.js" ratelimit="1/s" ratelimitkey="a b"/>
    <managedtask type="h" code="tasks/ping.js" ratelimit="1/s" ratelimitkey="a.b" concurrency="1" concurrencykey="tenant"/>
    <ephemeraltask type="g" code="tasks/ping.js" ratelimit="1/s"/>
  </servicemanager>
</module>"#),
        [
            "m/moduledefinition.xml:3:59: invalid ratelimit '20/d': expected starts per period as N/s, N/m or N/h with N from 1 to 1000000 (for example 20/s)",
            "m/moduledefinition.xml:4:62: ratelimitkey needs ratelimit: say how many tasks may start per second, minute or hour (for example ratelimit=\"20/s\")",
            "m/moduledefinition.xml:4:86: ratelimitburst needs ratelimit: say how many tasks may start per second, minute or hour (for example ratelimit=\"20/s\")",
            "m/moduledefinition.xml:5:80: invalid ratelimitburst '0': expected a whole number of starts from 1 to 1000000",
            "m/moduledefinition.xml:6:59: ratelimitkey (none) must be the field concurrencykey names ('tenant'): a type with both rules counts both per value of one field",
            "m/moduledefinition.xml:7:78: ratelimitkey ('user') must be the field concurrencykey names ('tenant'): a type with both rules counts both per value of one field",
            "m/moduledefinition.xml:8:78: invalid ratelimitkey 'a b': ' ' is not allowed: a key field is a top-level data field named with ASCII letters, digits, '_' and '-'",
            "m/moduledefinition.xml:9:78: invalid ratelimitkey 'a.b': '.' is not allowed: a key field is a top-level data field named with ASCII letters, digits, '_' and '-'",
            "m/moduledefinition.xml:10:50: unknown attribute 'ratelimit' on <ephemeraltask> (allowed: type, code, objectname, script, cluster, priority, timeout, maxtransaction, memorylimit, description, ifenvironset, unlessenvironset)",
        ]
    );
}

#[test]
fn several_errors_are_reported_at_once_in_document_order() {
    let errs = errors(
        r#"<module name="m">
  <servicemanager>
    <managedtask type="a" code="tasks/ping.js" cluster="nosuch"/>
    <managedtask type="a" code="tasks/ping.js" maxfailures="x"/>
    <task tag="t" code="tasks/nope.js" runatstartup="maybe"/>
  </servicemanager>
</module>"#,
    );
    assert_eq!(
        errs,
        [
            "m/moduledefinition.xml:3:57: unknown cluster 'nosuch': declare it with <taskcluster tag=\"nosuch\"/> or use 'default'".to_string(),
            "m/moduledefinition.xml:4:24: duplicate task type 'a' (already declared at 3:24)".to_string(),
            "m/moduledefinition.xml:4:61: invalid maxfailures 'x': expected -1 (retry forever) or a whole number of 0 or more".to_string(),
            format!(
                "m/moduledefinition.xml:5:25: code file 'tasks/nope.js' not found (looked for {})",
                alpha_dir().join("tasks/nope.js").display()
            ),
            "m/moduledefinition.xml:5:54: invalid runatstartup 'maybe': expected true, false, 1 or 0".to_string(),
        ]
    );
}

const APPLICABILITY: &str = r#"<module name="m">
  <servicemanager>
    <taskcluster tag="big" workers="8" ifenvironset="BIG"/>
    <managedtask type="prod" code="tasks/ping.js" ifenvironset="PROD"/>
    <managedtask type="dev" code="tasks/ping.js" unlessenvironset="PROD"/>
    <task tag="backup" runat="0 3 * * *" code="tasks/ping.js" ifenvironset="PROD"/>
    <task tag="backup" code="tasks/ping.js" unlessenvironset="PROD"/>
    <task tag="both" code="tasks/ping.js" ifenvironset="PROD" unlessenvironset="QUIET"/>
  </servicemanager>
</module>"#;

#[test]
fn applicability_follows_the_injected_environment() {
    let prod = |name: &str| match name {
        "PROD" => Some("1".to_string()),
        "QUIET" => Some(String::new()), // set but empty counts as unset
        _ => None,
    };
    let m = parse_with(APPLICABILITY, &LoadOptions::with_env(&prod)).unwrap();
    let types: Vec<&str> = m.managed.iter().map(|t| t.task_type.as_str()).collect();
    assert_eq!(types, ["m:prod"]);
    let tags: Vec<(&str, bool)> = m
        .scheduled
        .iter()
        .map(|t| (t.tag.as_str(), t.runat.is_some()))
        .collect();
    assert_eq!(tags, [("m:backup", true), ("m:both", false)]);
    assert_eq!(m.scheduled[1].runat, None);
    assert_eq!(m.cluster_workers("big"), 0);
    assert_eq!(m.clusters.len(), 1);

    let m = parse_with(APPLICABILITY, &LoadOptions::with_env(&no_env)).unwrap();
    let types: Vec<&str> = m.managed.iter().map(|t| t.task_type.as_str()).collect();
    assert_eq!(types, ["m:dev"]);
    let tags: Vec<&str> = m.scheduled.iter().map(|t| t.tag.as_str()).collect();
    assert_eq!(tags, ["m:backup"]);
    assert_eq!(m.scheduled[0].runat, None);

    let all = |name: &str| Some(format!("value of {name}"));
    let m = parse_with(APPLICABILITY, &LoadOptions::with_env(&all)).unwrap();
    assert_eq!(m.cluster_workers("big"), 8);
    let tags: Vec<&str> = m.scheduled.iter().map(|t| t.tag.as_str()).collect();
    assert_eq!(tags, ["m:backup"]);
}

#[test]
fn elements_that_do_not_apply_are_still_validated() {
    assert_eq!(
        errors(r#"<module name="m">
  <servicemanager>
    <managedtask type="a" code="tasks/ping.js" maxfailures="lots" ifenvironset="NEVER"/>
    <managedtask type="b" code="tasks/ping.js" cluster="nosuch" ifenvironset="NEVER"/>
    <task tag="c" code="tasks/ping.js" ifenvironset="TWO VARS"/>
    <task tag="d" code="tasks/ping.js" unlessenvironset=""/>
  </servicemanager>
</module>"#),
        [
            "m/moduledefinition.xml:3:61: invalid maxfailures 'lots': expected -1 (retry forever) or a whole number of 0 or more",
            "m/moduledefinition.xml:4:57: unknown cluster 'nosuch': declare it with <taskcluster tag=\"nosuch\"/> or use 'default'",
            "m/moduledefinition.xml:5:54: invalid ifenvironset 'TWO VARS': expected one environment variable name",
            "m/moduledefinition.xml:6:58: invalid unlessenvironset '': expected one environment variable name",
        ]
    );
}

#[test]
fn a_task_type_needs_its_cluster_to_apply_too() {
    let xml = r#"<module name="m">
  <servicemanager>
    <taskcluster tag="big" workers="8" ifenvironset="BIG"/>
    <managedtask type="a" code="tasks/ping.js" cluster="big"/>
  </servicemanager>
</module>"#;
    let big = |name: &str| (name == "BIG").then(|| "yes".to_string());
    let m = parse_with(xml, &LoadOptions::with_env(&big)).unwrap();
    assert_eq!(m.managed[0].cluster, "big");
    assert_eq!(m.cluster_workers("big"), 8);
    assert_eq!(
        show(&parse(xml).unwrap_err()),
        ["m/moduledefinition.xml:4:57: cluster 'big' is declared but does not apply here (its ifenvironset/unlessenvironset condition does not hold)"]
    );
}

#[test]
fn duplicates_among_applying_elements_are_still_errors() {
    let xml = r#"<module name="m">
  <servicemanager>
    <task tag="a" code="tasks/ping.js" ifenvironset="X"/>
    <task tag="a" code="tasks/ping.js" ifenvironset="Y"/>
  </servicemanager>
</module>"#;
    let only_x = |name: &str| (name == "X").then(|| "1".to_string());
    assert!(parse_with(xml, &LoadOptions::with_env(&only_x)).is_ok());
    let both = |_: &str| Some("1".to_string());
    assert_eq!(
        show(&parse_with(xml, &LoadOptions::with_env(&both)).unwrap_err()),
        ["m/moduledefinition.xml:4:16: duplicate task tag 'a' (already declared at 3:16)"]
    );
}

#[test]
fn process_environment_options_exist() {
    // Only checks that the real-environment lookup is wired up; the tests above inject theirs.
    let opts = LoadOptions::from_process_env();
    assert_eq!(
        (opts.env)("WARREN_MODULEDEF_TEST_SURELY_UNSET_VARIABLE"),
        None
    );
    let default: LoadOptions = LoadOptions::default();
    assert!(format!("{default:?}").starts_with("LoadOptions"));
}

#[test]
fn load_modules_dir_loads_good_and_reports_broken_modules() {
    let root = fixtures();
    let results = load_modules_dir(&root, &LoadOptions::with_env(&no_env));
    // alpha and broken, sorted by folder name; `notes` has no definition and is skipped.
    assert_eq!(results.len(), 2);
    let alpha = results[0].as_ref().unwrap();
    assert_eq!(alpha.name, "alpha");
    let broken = show(results[1].as_ref().unwrap_err());
    let file = root.join("broken").join("moduledefinition.xml");
    let f = file.display();
    assert_eq!(
        broken[..4],
        [
            format!("{f}:3:51: unknown attribute 'maxfailure' on <managedtask> (did you mean 'maxfailures'?)"),
            format!("{f}:4:24: duplicate task type 'ping' (already declared at 3:24)"),
            format!(
                "{f}:4:36: code file 'tasks/missing.js' not found (looked for {})",
                root.join("broken").join("tasks/missing.js").display()
            ),
            format!("{f}:4:63: unknown cluster 'mail': declare it with <taskcluster tag=\"mail\"/> or use 'default'"),
        ]
    );
    // The reason comes from the cron parser; it names the field.
    let prefix = format!("{f}:5:32: invalid runat '61 0 * * *': ");
    assert!(broken[4].starts_with(&prefix), "{}", broken[4]);
    assert!(
        broken[4][prefix.len()..].contains("minute"),
        "{}",
        broken[4]
    );
    assert_eq!(broken.len(), 5);
}

#[test]
fn load_modules_dir_reports_duplicate_module_names() {
    let root = temp_dir("dupnames");
    let one = br#"<module name="shared"><servicemanager><managedtask type="a" code="a.js"/></servicemanager></module>"#;
    write_module(&root.join("a-first"), one, &["a.js"]);
    write_module(&root.join("b-second"), b"<module name=\"shared\"/>", &[]);
    write_module(&root.join("c-third"), b"<module/>", &[]);
    let results = load_modules_dir(&root, &LoadOptions::with_env(&no_env));
    assert_eq!(results.len(), 3);
    assert_eq!(results[0].as_ref().unwrap().name, "shared");
    assert_eq!(
        show(results[1].as_ref().unwrap_err()),
        [format!(
            "{}:1:15: duplicate module name 'shared': already loaded from {}",
            root.join("b-second/moduledefinition.xml").display(),
            root.join("a-first/moduledefinition.xml").display()
        )]
    );
    assert_eq!(results[2].as_ref().unwrap().name, "c-third");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn unreadable_and_non_utf8_definitions() {
    let root = temp_dir("unreadable");
    let opts = LoadOptions::with_env(&no_env);
    let errs = load_module(&root.join("nosuch"), &opts).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].location.line, 0);
    let shown = errs[0].to_string();
    assert!(
        shown.starts_with(&format!(
            "{}: cannot read the module definition: ",
            root.join("nosuch").display()
        )),
        "{shown}"
    );

    write_module(
        &root.join("latin1"),
        b"<module name=\"m\">\n  <!-- caf\xe9 -->\n</module>",
        &[],
    );
    let errs = load_module(&root.join("latin1"), &opts).unwrap_err();
    assert_eq!(
        show(&errs),
        [format!(
            "{}:2:11: the file is not valid UTF-8",
            root.join("latin1/moduledefinition.xml").display()
        )]
    );

    let missing = load_modules_dir(&root.join("nosuch"), &opts);
    assert_eq!(missing.len(), 1);
    assert!(missing[0].is_err());
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn errors_display_and_are_std_errors() {
    let e = DefinitionError {
        location: Location {
            file: PathBuf::from("x/moduledefinition.xml"),
            line: 7,
            col: 3,
        },
        message: "something is wrong".to_string(),
    };
    assert_eq!(
        e.to_string(),
        "x/moduledefinition.xml:7:3: something is wrong"
    );
    let boxed: Box<dyn std::error::Error> = Box::new(e);
    assert_eq!(
        boxed.to_string(),
        "x/moduledefinition.xml:7:3: something is wrong"
    );
    assert_eq!(TaskKind::Managed.to_string(), "managed");
    assert_eq!(TaskKind::Ephemeral.to_string(), "ephemeral");
}

#[test]
fn namespaced_definitions_load() {
    // WebHare's files carry a default namespace; elements are matched by local name.
    let m = ok(
        r#"<module xmlns="http://www.webhare.net/xmlns/system/moduledefinition" name="m">
  <servicemanager>
    <managedtask type="a" code="tasks/ping.js"/>
  </servicemanager>
</module>"#,
    );
    assert_eq!(m.managed[0].task_type.as_str(), "m:a");
}

#[test]
fn transaction_limit_defaults_to_ten_minutes_and_is_checked() {
    let m = ok(r#"<module name="m">
  <servicemanager>
    <managedtask type="a" code="tasks/ping.js" maxtransaction="2000"/>
    <ephemeraltask type="b" code="tasks/ping.js" maxtransaction="0"/>
    <task tag="c" code="tasks/ping.js"/>
  </servicemanager>
</module>"#);
    assert_eq!(m.managed[0].max_transaction_ms, 2000);
    assert_eq!(m.ephemeral[0].max_transaction_ms, 0);
    assert_eq!(m.scheduled[0].max_transaction_ms, 600_000);
    let errs = errors(
        r#"<module name="m"><servicemanager>
<task tag="c" code="tasks/ping.js" maxtransaction="ten minutes"/></servicemanager></module>"#,
    );
    assert_eq!(
        errs,
        ["m/moduledefinition.xml:2:52: invalid maxtransaction 'ten minutes': expected a whole number of milliseconds (0 = no limit)"]
    );
}

#[test]
fn memory_limit_is_set_per_task_and_checked() {
    let m = ok(r#"<module name="m">
  <servicemanager>
    <managedtask type="a" code="tasks/ping.js" memorylimit="64"/>
    <ephemeraltask type="b" code="tasks/ping.js" memorylimit="1024"/>
    <task tag="c" code="tasks/ping.js" memorylimit="32"/>
  </servicemanager>
</module>"#);
    assert_eq!(m.managed[0].memory_limit_mb, 64);
    assert_eq!(m.ephemeral[0].memory_limit_mb, 1024);
    assert_eq!(m.scheduled[0].memory_limit_mb, 32);
    let errs = errors(
        r#"<module name="m"><servicemanager><managedtask type="a" code="tasks/ping.js" memorylimit="0"/></servicemanager></module>"#,
    );
    assert_eq!(errs.len(), 1);
    assert!(errs[0].contains(":1:"), "{}", errs[0]);
    assert!(errs[0].contains("memorylimit"), "{}", errs[0]);
    assert!(
        errs[0].contains("a whole number of MiB from 1 to 4096"),
        "{}",
        errs[0]
    );
}
