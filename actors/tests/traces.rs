//! Traces of runs with OpenTelemetry, through the SDK's in-memory exporter installed as
//! the OpenTelemetry layer of this test binary's global subscriber (the node's runners
//! work on threads of their own, so the subscriber must be global: one test of this
//! binary installs it; the other runs `warren serve` in a process of its own). A task scheduled inside an application's span gets that span's context as its
//! `traceparent` metadata; each run (the retry too) is a span linked to it, with the
//! task's id, type, attempt and outcome; its SQL statements and host calls are child
//! spans; and a task scheduled by task code links to the run's `schedule-task` span.

mod support;

use opentelemetry::trace::{SpanId, Status};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::json;
use std::time::Duration;
use support::{eventually, remove_sqlite, repo, Scratch};
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;
use warren::store::{NewTask, WaitFor};
use warren::task::{TaskId, TaskState};
use warren::trace::{TraceParent, TRACEPARENT};
use warren_actors::{Shutdown, Warren};

/// Installs the global subscriber: an OpenTelemetry layer exporting to memory.
fn install() -> (SdkTracerProvider, InMemorySpanExporter) {
    use opentelemetry::trace::TracerProvider as _;
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("traces-test")));
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    (provider, exporter)
}

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|KeyValue { key: k, .. }| k.as_str() == key)
        .map(|kv| &kv.value)
}

/// The finished spans named `name` whose `task.id` is `id`, by attempt.
fn runs_of(spans: &[SpanData], name: &str, id: TaskId) -> Vec<SpanData> {
    let mut runs: Vec<SpanData> = spans
        .iter()
        .filter(|s| s.name == name && attribute(s, "task.id") == Some(&Value::I64(id.0)))
        .cloned()
        .collect();
    runs.sort_by_key(|s| match attribute(s, "task.attempt") {
        Some(Value::I64(n)) => *n,
        _ => 0,
    });
    runs
}

/// The ids of the spans `run`'s links point at, with their trace ids.
fn links(run: &SpanData) -> Vec<(String, SpanId)> {
    run.links
        .iter()
        .map(|l| {
            (
                l.span_context.trace_id().to_string(),
                l.span_context.span_id(),
            )
        })
        .collect()
}

#[actix_rt::test]
async fn runs_are_spans_linked_to_where_their_task_was_scheduled() {
    let (provider, exporter) = install();
    let scratch = Scratch::new("traces");
    let module = scratch.join("modules/traced");
    std::fs::create_dir_all(module.join("tasks")).unwrap();
    std::fs::copy(
        repo().join("tests/guests/traced.js"),
        module.join("tasks/traced.js"),
    )
    .unwrap();
    std::fs::write(
        module.join("moduledefinition.xml"),
        r#"<module name="traced"><servicemanager>
             <taskcluster tag="default" workers="2"/>
             <managedtask type="flaky" code="tasks/traced.js"/>
             <managedtask type="leaf" code="tasks/traced.js"/>
           </servicemanager></module>"#,
    )
    .unwrap();
    let db = scratch.join("traces.db");
    let (node, broken) = Warren::builder()
        .database(format!("sqlite://{}", db.display()))
        .modules_dir(scratch.join("modules"))
        .node_name("trace-node")
        .engine(support::engine_config())
        .start()
        .await
        .expect("node starts");
    assert!(broken.is_empty(), "{broken:?}");
    let store = warren::store::Store::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();

    // The application's span, and a task scheduled inside it.
    let checkout = tracing::info_span!("checkout");
    let parent = TraceParent::of_span(&checkout).expect("the layer gives the span a context");
    let id = async {
        store
            .schedule(NewTask::new(
                "traced:flaky".parse().unwrap(),
                json!({"child": "traced:leaf"}),
            ))
            .await
            .unwrap()
    }
    .instrument(checkout.clone())
    .await;
    drop(checkout);
    assert_eq!(
        store.metadata(id, TRACEPARENT).await.unwrap(),
        Some(parent.to_string()),
        "the task keeps the context it was scheduled in"
    );
    let done = store
        .wait(id, Duration::from_secs(60), WaitFor::Finished)
        .await
        .unwrap();
    assert_eq!(done.state, TaskState::Completed);
    let child = TaskId(
        store.describe(id).await.unwrap().result.unwrap()["child"]
            .as_i64()
            .unwrap(),
    );
    store
        .wait(child, Duration::from_secs(60), WaitFor::Finished)
        .await
        .unwrap();
    // A run's span ends once its outcome is settled, just after the task finished.
    eventually(
        "both tasks' runs to be exported",
        Duration::from_secs(20),
        || async {
            let spans = exporter.get_finished_spans().unwrap();
            runs_of(&spans, "run traced:flaky", id).len() == 2
                && runs_of(&spans, "run traced:leaf", child).len() == 2
        },
    )
    .await;
    let spans = exporter.get_finished_spans().unwrap();

    let runs = runs_of(&spans, "run traced:flaky", id);
    let scheduled_in = (
        parent.span_context().trace_id().to_string(),
        parent.span_context().span_id(),
    );
    for (run, (attempt, outcome)) in runs.iter().zip([(1, "retry"), (2, "completed")]) {
        assert_eq!(
            links(run),
            vec![scheduled_in.clone()],
            "attempt {attempt} links to the application's span"
        );
        assert_eq!(
            attribute(run, "task.type"),
            Some(&Value::from("traced:flaky"))
        );
        assert_eq!(attribute(run, "task.attempt"), Some(&Value::I64(attempt)));
        // What was stored, as the run history names it (not what the code asked for).
        assert_eq!(attribute(run, "task.outcome"), Some(&Value::from(outcome)));
        assert_eq!(
            run.attributes
                .iter()
                .filter(|kv| kv.key.as_str() == "task.outcome")
                .count(),
            1,
            "recorded once"
        );
        // Its SQL statement is a child of it.
        let sql: Vec<&SpanData> = spans
            .iter()
            .filter(|s| s.name == "task sql" && s.parent_span_id == run.span_context.span_id())
            .collect();
        assert_eq!(sql.len(), 1, "attempt {attempt}: {sql:?}");
        assert_eq!(
            attribute(sql[0], "db.query.text"),
            Some(&Value::from("SELECT 1 AS one"))
        );
    }
    assert_eq!(
        runs[0].status,
        Status::error("first run fails"),
        "a failed run's span says so"
    );
    assert_eq!(runs[1].status, Status::Unset);

    // The task its second run scheduled links to that run's `schedule-task` span.
    let schedule_task: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.name == "schedule-task" && s.parent_span_id == runs[1].span_context.span_id())
        .collect();
    assert_eq!(schedule_task.len(), 1, "{schedule_task:?}");
    let scheduled_by_task = (
        schedule_task[0].span_context.trace_id().to_string(),
        schedule_task[0].span_context.span_id(),
    );
    for leaf in runs_of(&spans, "run traced:leaf", child) {
        assert_eq!(links(&leaf), vec![scheduled_by_task.clone()]);
    }

    provider.shutdown().unwrap();
    node.send(Shutdown {
        grace: Duration::from_secs(5),
    })
    .await
    .unwrap();
    remove_sqlite(&db);
}

/// One HTTP request an OTLP receiver took: its path, content type and body.
struct Received {
    path: String,
    content_type: String,
    body: Vec<u8>,
}

/// A minimal OTLP/HTTP receiver: answers every request 200 and keeps it.
fn otlp_receiver() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let sink = sink.clone();
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                loop {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = request_line
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or_default()
                        .to_string();
                    let (mut length, mut content_type) = (0usize, String::new());
                    loop {
                        let mut line = String::new();
                        reader.read_line(&mut line).unwrap();
                        let line = line.trim_end();
                        if line.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':') {
                            match name.to_ascii_lowercase().as_str() {
                                "content-length" => length = value.trim().parse().unwrap(),
                                "content-type" => content_type = value.trim().to_string(),
                                _ => {}
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    sink.lock().unwrap().push(Received {
                        path,
                        content_type,
                        body,
                    });
                    writer
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                        .unwrap();
                }
            });
        }
    });
    (addr, received)
}

/// `warren serve` with OTEL_EXPORTER_OTLP_ENDPOINT set exports each run's span over
/// OTLP/HTTP, linked to the `traceparent` the task was scheduled with, and sends what
/// it buffered when it stops.
#[test]
fn warren_serve_exports_run_spans_over_otlp_http() {
    use std::process::{Command, Stdio};
    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (addr, received) = otlp_receiver();
    let scratch = Scratch::new("otlp");
    let module = scratch.join("modules/otlp");
    std::fs::create_dir_all(module.join("tasks")).unwrap();
    std::fs::copy(
        repo().join("tests/guests/wat/complete.wat"),
        module.join("tasks/done.wat"),
    )
    .unwrap();
    std::fs::write(
        module.join("moduledefinition.xml"),
        r#"<module name="otlp"><servicemanager>
             <managedtask type="done" code="tasks/done.wat"/>
           </servicemanager></module>"#,
    )
    .unwrap();
    let db = scratch.join("otlp.db");
    let url = format!("sqlite://{}", db.display());
    let warren = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_warren"));
        cmd.env("WARREN_DATABASE_URL", &url)
            .env("WARREN_CACHE_DIR", support::test_cache_dir())
            .env_remove("TRACEPARENT");
        cmd
    };
    let migrated = warren().arg("migrate").output().unwrap();
    assert!(migrated.status.success());
    let serve = warren()
        .args(["serve", "--no-dashboard", "--modules"])
        .arg(scratch.join("modules"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"))
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let scheduled = warren()
        .args([
            "schedule",
            "otlp:done",
            "--allow-unknown-type",
            "--wait",
            "60",
        ])
        .env("TRACEPARENT", PARENT)
        .output()
        .unwrap();
    let stop = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status()
        .unwrap();
    assert!(stop.success());
    let out = serve.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        scheduled.status.success(),
        "{}\n{log}",
        String::from_utf8_lossy(&scheduled.stderr)
    );
    assert!(out.status.success(), "{log}");
    let received = received.lock().unwrap();
    let traces: Vec<&Received> = received.iter().filter(|r| r.path == "/v1/traces").collect();
    assert!(!traces.is_empty(), "nothing was exported; serve:\n{log}");
    assert!(traces
        .iter()
        .all(|r| r.content_type == "application/x-protobuf"));
    // The protobuf holds the span's name and, in its link, the parent's trace id.
    let trace_id = (0..16)
        .map(|i| u8::from_str_radix(&PARENT[3 + 2 * i..5 + 2 * i], 16).unwrap())
        .collect::<Vec<u8>>();
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    assert!(
        traces.iter().any(|r| contains(&r.body, b"run otlp:done")
            && contains(&r.body, &trace_id)
            && contains(&r.body, b"warren")),
        "no exported span names the run and links to the parent"
    );
    remove_sqlite(&db);
}
