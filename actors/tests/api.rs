//! The dashboard's HTTP API (`docs/api.md`) against an in-process node on SQLite: every
//! endpoint's answers, and refused calls (bad input, token, origin, content type) that
//! change nothing.
//!
//! Tasks that must stay put are scheduled on the cluster `parked`, which no runner
//! serves; the module `apitest` has a task that never ends (for cancelling a running
//! task), one that completes at once, and a scheduled task run by hand.

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::test::{self, TestRequest};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;
use warren::store::{NewTask, ScheduleOptions, Store, TypeRegistration, WaitFor};
use warren::task::{TaskId, TaskState};
use warren_actors::web::{app, Dashboard, WebState};
use warren_actors::{Shutdown, Supervisor, Warren};

const TOKEN: &str = "test-token-0123456789";
const HOST: &str = "127.0.0.1:4900";

mod support;
use support::repo;

/// The modules folder, written once per test process.
fn modules() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("warren-api-modules-{}", std::process::id()));
        let module = dir.join("apitest");
        std::fs::create_dir_all(module.join("tasks")).unwrap();
        for (from, to) in [
            ("tests/guests/infinite_loop.js", "tasks/loop.js"),
            ("tests/guests/counter.js", "tasks/counter.js"),
            ("tests/guests/logs_then_fails_once.js", "tasks/flaky.js"),
            ("tests/guests/progress.js", "tasks/progress.js"),
        ] {
            std::fs::copy(repo().join(from), module.join(to)).unwrap();
        }
        std::fs::write(
            module.join("moduledefinition.xml"),
            r#"<module name="apitest"><servicemanager>
                 <taskcluster tag="default" workers="1"/>
                 <managedtask type="loop" code="tasks/loop.js"/>
                 <managedtask type="count" code="tasks/counter.js"/>
                 <managedtask type="flaky" code="tasks/flaky.js"/>
                 <managedtask type="progress" code="tasks/progress.js"/>
                 <task tag="manual" code="tasks/counter.js"/>
               </servicemanager></module>"#,
        )
        .unwrap();
        dir
    })
}

/// A node of its own for one test, with the dashboard's state.
struct TestNode {
    node: actix::Addr<Supervisor>,
    store: Store,
    state: WebState,
    db: PathBuf,
    /// The database's URL (SQLite: the file `db`).
    url: String,
    /// A PostgreSQL node's database, dropped with the node.
    _postgres: Option<warren_testkit::FreshDatabase>,
}

impl TestNode {
    async fn start(name: &str) -> TestNode {
        let db = std::env::temp_dir().join(format!("warren-api-{name}-{}.db", std::process::id()));
        remove_db(&db);
        let url = format!("sqlite://{}", db.display());
        TestNode::start_on(url, db, None).await
    }

    /// A node on a fresh PostgreSQL database, or `None` when PostgreSQL tests are
    /// skipped (see `warren_testkit::admin_url`).
    async fn start_on_postgres(what: &str) -> Option<TestNode> {
        let server = warren_testkit::admin_url(what)?;
        let fresh = warren_testkit::FreshDatabase::create(&server, "warren_t_api")
            .await
            .unwrap();
        let url = fresh.url().to_string();
        Some(TestNode::start_on(url, PathBuf::new(), Some(fresh)).await)
    }

    async fn start_on(
        url: String,
        db: PathBuf,
        postgres: Option<warren_testkit::FreshDatabase>,
    ) -> TestNode {
        let (node, broken) = Warren::builder()
            .database(&url)
            .modules_dir(modules())
            .node_name("api-node")
            .engine(support::engine_config())
            .start()
            .await
            .expect("node starts");
        assert!(broken.is_empty(), "{broken:?}");
        let state = WebState::for_node(node.clone(), TOKEN).await.unwrap();
        let store = state.store.clone();
        TestNode {
            node,
            store,
            state,
            db,
            url,
            _postgres: postgres,
        }
    }

    /// Waits until the node has recorded its scheduled tags (its scheduler does so just
    /// after it starts).
    async fn scheduled_recorded(&self) {
        eventually("the scheduled tags to be recorded", || async {
            !self.store.list_scheduled().await.unwrap().is_empty()
        })
        .await;
    }

    /// Number of tasks in the database.
    async fn task_count(&self) -> i64 {
        let counts = self.store.queue_counts().await.unwrap();
        counts
            .iter()
            .map(|c| c.pending + c.future + c.running + c.completed + c.failed + c.cancelled)
            .sum()
    }

    async fn stop(self) {
        self.node
            .send(Shutdown {
                grace: Duration::from_secs(5),
            })
            .await
            .unwrap();
        if self._postgres.is_none() {
            remove_db(&self.db);
        }
    }
}

use support::remove_sqlite as remove_db;

/// An answer: status, headers and body.
struct Answer {
    status: StatusCode,
    headers: header::HeaderMap,
    body: actix_web::web::Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(&name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }

    /// Asserts an error answer: status, and the JSON error naming it.
    fn assert_error(&self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        let body = self.json();
        assert_eq!(body["error"]["status"], json!(status), "{body}");
        assert!(body["error"]["message"].as_str().is_some(), "{body}");
        body
    }
}

async fn send<S, R, B>(app: &S, req: R) -> Answer
where
    S: Service<R, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let response = test::call_service(app, req).await;
    let (status, headers) = (response.status(), response.headers().clone());
    let body = test::read_body(response).await;
    Answer {
        status,
        headers,
        body,
    }
}

/// A GET with the token.
fn get(uri: &str) -> TestRequest {
    TestRequest::get()
        .uri(uri)
        .insert_header((header::HOST, HOST))
        .insert_header((header::AUTHORIZATION, format!("Bearer {TOKEN}")))
}

/// A same-origin JSON POST with the token.
fn post(uri: &str, body: Value) -> TestRequest {
    TestRequest::post()
        .uri(uri)
        .insert_header((header::HOST, HOST))
        .insert_header((header::ORIGIN, format!("http://{HOST}")))
        .insert_header((header::AUTHORIZATION, format!("Bearer {TOKEN}")))
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .set_payload(body.to_string())
}

/// A task on the `parked` cluster, which no runner serves: it stays pending.
fn parked(task_type: &str) -> Value {
    json!({"type": task_type, "data": {"n": 1}, "cluster": "parked"})
}

/// Polls `check` (bounded) until it holds: for a task to start running, which nothing
/// announces.
async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    support::eventually(what, Duration::from_secs(120), check).await
}

#[actix_rt::test]
async fn static_files_are_served_with_security_headers() {
    let n = TestNode::start("static").await;
    let app = test::init_service(app(n.state.clone())).await;
    for (uri, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/app.css", "text/css; charset=utf-8"),
        ("/assets/favicon.svg", "image/svg+xml"),
    ] {
        // No token needed.
        let a = send(&app, TestRequest::get().uri(uri).to_request()).await;
        assert_eq!(a.status, StatusCode::OK, "{uri}");
        assert_eq!(a.header(header::CONTENT_TYPE), content_type, "{uri}");
        assert_eq!(a.header(header::CACHE_CONTROL), "no-cache");
        assert!(a
            .header(header::CONTENT_SECURITY_POLICY)
            .starts_with("default-src 'self'; img-src 'self' data:; style-src 'self'"));
        assert_eq!(a.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert_eq!(a.header(header::REFERRER_POLICY), "no-referrer");
        assert!(!a.body.is_empty());
    }
    let a = send(&app, TestRequest::get().uri("/assets/nope.js").to_request()).await;
    a.assert_error(404);
    n.stop().await;
}

#[actix_rt::test]
async fn every_api_call_needs_the_token() {
    let n = TestNode::start("token").await;
    n.scheduled_recorded().await;
    let app = test::init_service(app(n.state.clone())).await;
    let id = n
        .store
        .schedule(
            NewTask::new("apitest:count".parse().unwrap(), json!({})).with_options(
                ScheduleOptions {
                    cluster: Some("parked".into()),
                    ..ScheduleOptions::default()
                },
            ),
        )
        .await
        .unwrap();
    let gets = [
        "/api/tasks".to_string(),
        format!("/api/tasks/{id}"),
        "/api/counts".into(),
        "/api/throughput".into(),
        "/api/scheduled".into(),
        "/api/nodes".into(),
        "/api/overview".into(),
        "/api/openapi.json".into(),
        "/metrics".into(),
    ];
    for uri in &gets {
        let missing = TestRequest::get().uri(uri).to_request();
        send(&app, missing).await.assert_error(401);
        let wrong = TestRequest::get()
            .uri(uri)
            .insert_header((header::AUTHORIZATION, "Bearer not-the-token"))
            .to_request();
        send(&app, wrong).await.assert_error(401);
        let basic = TestRequest::get()
            .uri(uri)
            .insert_header((header::AUTHORIZATION, format!("Basic {TOKEN}")))
            .to_request();
        send(&app, basic).await.assert_error(401);
        assert_eq!(
            send(&app, get(uri).to_request()).await.status,
            StatusCode::OK,
            "{uri}"
        );
    }
    let before = n.store.describe(id).await.unwrap();
    for (uri, body) in [
        ("/api/tasks".to_string(), parked("apitest:count")),
        (format!("/api/tasks/{id}/cancel"), json!({})),
        (format!("/api/tasks/{id}/delete"), json!({})),
        (format!("/api/tasks/{id}/reschedule"), json!({"at": 0})),
        (
            "/api/scheduled/apitest:manual/disable".to_string(),
            json!({}),
        ),
    ] {
        let req = TestRequest::post()
            .uri(&uri)
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .set_payload(body.to_string())
            .to_request();
        send(&app, req).await.assert_error(401);
    }
    assert_eq!(n.store.describe(id).await.unwrap(), before);
    assert_eq!(n.task_count().await, 1);
    assert!(n.store.list_scheduled().await.unwrap()[0].enabled);
    n.stop().await;
}

#[actix_rt::test]
async fn tasks_are_scheduled_shown_listed_and_paged() {
    let n = TestNode::start("list").await;
    let app = test::init_service(app(n.state.clone())).await;
    // Every field of a new task.
    let a = send(
        &app,
        post(
            "/api/tasks",
            json!({
                "type": "apitest:count",
                "data": {"ping": 42},
                "priority": "interactive",
                "not_before": "2030-01-01T00:00:00Z",
                "timeout_ms": 2500,
                "aux_data": {"extra": true},
                "metadata": {"origin": "api"},
                "cluster": "parked",
            }),
        )
        .to_request(),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let first = a.json()["id"].as_i64().unwrap();
    let t = send(&app, get(&format!("/api/tasks/{first}")).to_request())
        .await
        .json();
    assert_eq!(t["id"], json!(first));
    assert_eq!(t["task_type"], "apitest:count");
    assert_eq!(t["state"], "pending");
    assert_eq!(t["cluster"], "parked");
    assert_eq!(t["data"], json!({"ping": 42}));
    assert_eq!(t["aux_data"], json!({"extra": true}));
    assert_eq!(t["priority"], json!(-100));
    assert_eq!(t["timeout_ms"], json!(2500));
    assert_eq!(t["not_before"], json!(1_893_456_000_000_i64));
    assert_eq!(t["metadata"], json!([["origin", "api"]]));
    assert_eq!(t["result"], Value::Null);
    // Only the type is required; a numeric priority and an instant in ms work too.
    let mut ids = vec![first];
    for i in 0..4 {
        let body = json!({"type": "apitest:loop", "cluster": "parked", "priority": 5, "not_before": 1000 + i});
        let a = send(&app, post("/api/tasks", body).to_request()).await;
        assert_eq!(a.status, StatusCode::CREATED);
        ids.push(a.json()["id"].as_i64().unwrap());
    }
    let minimal = send(
        &app,
        post("/api/tasks", json!({"type": "apitest:count"})).to_request(),
    )
    .await;
    let minimal = minimal.json()["id"].as_i64().unwrap();
    assert_eq!(
        n.store.describe(TaskId(minimal)).await.unwrap().data,
        json!({}),
        "data defaults to {{}}"
    );
    n.store
        .wait(TaskId(minimal), Duration::from_secs(120), WaitFor::Finished)
        .await
        .unwrap();

    // The listing: newest first, without the large fields.
    let page = send(&app, get("/api/tasks").to_request()).await.json();
    let listed: Vec<i64> = page["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    let mut expected = ids.clone();
    expected.push(minimal);
    expected.reverse();
    assert_eq!(listed, expected);
    assert_eq!(page["next_before"], Value::Null);
    let item = page["tasks"][0].as_object().unwrap();
    for heavy in ["data", "aux_data", "result", "last_stack", "metadata"] {
        assert!(!item.contains_key(heavy), "{heavy} listed");
    }
    for kept in [
        "id",
        "task_type",
        "state",
        "created_at",
        "next_attempt",
        "last_error",
    ] {
        assert!(item.contains_key(kept), "{kept} missing");
    }

    // Paging.
    let page = send(&app, get("/api/tasks?limit=2").to_request())
        .await
        .json();
    assert_eq!(page["tasks"].as_array().unwrap().len(), 2);
    let next = page["next_before"].as_i64().unwrap();
    assert_eq!(next, expected[1]);
    let page = send(
        &app,
        get(&format!("/api/tasks?limit=2&before={next}")).to_request(),
    )
    .await
    .json();
    assert_eq!(page["tasks"][0]["id"], json!(expected[2]));
    let last = send(
        &app,
        get(&format!("/api/tasks?limit=10&before={}", expected[3])).to_request(),
    )
    .await
    .json();
    assert_eq!(last["tasks"].as_array().unwrap().len(), 2);
    assert_eq!(last["next_before"], Value::Null);

    // Filters: type mask, state, creation time.
    let only = |page: Value| -> Vec<i64> {
        page["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_i64().unwrap())
            .collect()
    };
    let loops = only(
        send(&app, get("/api/tasks?type=*:lo*").to_request())
            .await
            .json(),
    );
    assert_eq!(loops.len(), 4);
    let completed = only(
        send(&app, get("/api/tasks?state=completed").to_request())
            .await
            .json(),
    );
    assert_eq!(completed, vec![minimal]);
    let future = only(
        send(&app, get("/api/tasks?state=future").to_request())
            .await
            .json(),
    );
    assert_eq!(future, vec![first]);
    let pending = only(
        send(&app, get("/api/tasks?state=pending").to_request())
            .await
            .json(),
    );
    assert_eq!(pending.len(), 4);
    let created = n.store.describe(TaskId(first)).await.unwrap().created_at;
    let none = only(
        send(
            &app,
            get(&format!("/api/tasks?until={created}")).to_request(),
        )
        .await
        .json(),
    );
    assert!(none.is_empty());
    let all = only(
        send(
            &app,
            get("/api/tasks?from=2000-01-01T00:00:00Z&state=all").to_request(),
        )
        .await
        .json(),
    );
    assert_eq!(all.len(), 6);

    // Bad input: 400 naming the field.
    for (uri, field) in [
        ("/api/tasks?state=sleeping", "state"),
        ("/api/tasks?limit=0", "limit"),
        ("/api/tasks?limit=1001", "limit"),
        ("/api/tasks?limit=ten", "limit"),
        ("/api/tasks?from=yesterday", "from"),
        ("/api/tasks?until=soon", "until"),
        ("/api/tasks?before=x", "before"),
        ("/api/tasks/abc", "id"),
    ] {
        let body = send(&app, get(uri).to_request()).await.assert_error(400);
        assert_eq!(body["error"]["field"], json!(field), "{uri}: {body}");
    }
    let body = send(&app, get("/api/tasks/999999").to_request())
        .await
        .assert_error(404);
    assert_eq!(body["error"]["message"], "task 999999 does not exist");
    n.stop().await;
}

#[actix_rt::test]
async fn scheduling_refuses_bad_input_and_foreign_calls_and_changes_nothing() {
    let n = TestNode::start("refuse").await;
    let app = test::init_service(app(n.state.clone())).await;
    let cases: Vec<(TestRequest, u16, Option<&str>)> = vec![
        (
            post("/api/tasks", json!({})).set_payload("{\"type\": "),
            400,
            None,
        ),
        (post("/api/tasks", json!([1, 2])), 400, None),
        (post("/api/tasks", json!({"data": {}})), 400, None),
        (
            post(
                "/api/tasks",
                json!({"type": "apitest:count", "colour": "red"}),
            ),
            400,
            None,
        ),
        (
            post("/api/tasks", json!({"type": "no-module"})),
            400,
            Some("type"),
        ),
        (
            post("/api/tasks", json!({"type": "apitest:count", "data": [1]})),
            400,
            Some("data"),
        ),
        (
            post(
                "/api/tasks",
                json!({"type": "apitest:count", "aux_data": 3}),
            ),
            400,
            Some("aux_data"),
        ),
        (
            post(
                "/api/tasks",
                json!({"type": "apitest:count", "timeout_ms": -1}),
            ),
            400,
            Some("timeout_ms"),
        ),
        (
            post(
                "/api/tasks",
                json!({"type": "apitest:count", "priority": "urgent"}),
            ),
            400,
            Some("priority"),
        ),
        (
            post(
                "/api/tasks",
                json!({"type": "apitest:count", "not_before": "later"}),
            ),
            400,
            Some("not_before"),
        ),
        (
            post(
                "/api/tasks",
                json!({"type": "apitest:count", "cluster": "no spaces"}),
            ),
            400,
            Some("cluster"),
        ),
        (
            post("/api/tasks", parked("apitest:count"))
                .insert_header((header::ORIGIN, "http://evil.example")),
            403,
            None,
        ),
        (
            post("/api/tasks", parked("apitest:count")).insert_header((header::ORIGIN, "null")),
            403,
            None,
        ),
        (
            post("/api/tasks", parked("apitest:count"))
                .insert_header((header::CONTENT_TYPE, "text/plain")),
            415,
            None,
        ),
        (
            post("/api/tasks", parked("apitest:count"))
                .insert_header((header::CONTENT_TYPE, "application/x-www-form-urlencoded")),
            415,
            None,
        ),
    ];
    for (req, status, field) in cases {
        let body = send(&app, req.to_request()).await.assert_error(status);
        if let Some(field) = field {
            assert_eq!(body["error"]["field"], json!(field), "{body}");
        }
        assert_eq!(n.task_count().await, 0, "{body}");
    }
    // An array: a bad task is refused naming its position and field, and none of the
    // array's tasks is scheduled.
    let mut tasks: Vec<Value> = (0..5).map(|_| parked("apitest:count")).collect();
    tasks[3]["priority"] = json!("urgent");
    let body = send(&app, post("/api/tasks", json!(tasks)).to_request())
        .await
        .assert_error(400);
    assert_eq!(body["error"]["field"], "[3].priority", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("[3].priority: unknown priority 'urgent'"),
        "{message}"
    );
    assert_eq!(n.task_count().await, 0, "{body}");
    for (index, bad, field) in [
        (0, json!(5), "[0]"),
        (4, json!({"type": "apitest:count", "data": [1]}), "[4].data"),
        (
            1,
            json!({"type": "apitest:count", "timeout_ms": -1}),
            "[1].timeout_ms",
        ),
        (2, json!({"type": "apitest:count", "colour": "red"}), "[2]"),
        (3, json!({"type": "apitest:nope"}), "[3].type"),
    ] {
        let mut tasks: Vec<Value> = (0..5).map(|_| parked("apitest:count")).collect();
        tasks[index] = bad;
        let body = send(&app, post("/api/tasks", json!(tasks)).to_request())
            .await
            .assert_error(400);
        assert_eq!(body["error"]["field"], field, "{body}");
        assert_eq!(n.task_count().await, 0, "{body}");
    }
    // Every bad task counts; the first is named.
    let tasks = json!([{"type": "apitest:count"}, {"type": "x"}, {"type": "y"}]);
    let body = send(&app, post("/api/tasks", tasks).to_request())
        .await
        .assert_error(400);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("[1].type: "), "{message}");
    assert!(message.contains("and 1 more"), "{message}");
    // More than 10,000 tasks in one request: refused naming the limit.
    let tasks: Vec<Value> = (0..10_001).map(|_| parked("apitest:count")).collect();
    let body = send(&app, post("/api/tasks", json!(tasks)).to_request())
        .await
        .assert_error(400);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("at most 10000"), "{message}");
    assert_eq!(n.task_count().await, 0);

    // A POST without Content-Type at all is refused too.
    let req = TestRequest::post()
        .uri("/api/tasks")
        .insert_header((header::AUTHORIZATION, format!("Bearer {TOKEN}")))
        .set_payload(parked("apitest:count").to_string())
        .to_request();
    send(&app, req).await.assert_error(415);
    // Without an Origin (curl, scripts) it is accepted.
    let req = TestRequest::post()
        .uri("/api/tasks")
        .insert_header((header::AUTHORIZATION, format!("Bearer {TOKEN}")))
        .insert_header((header::CONTENT_TYPE, "application/json; charset=utf-8"))
        .set_payload(parked("apitest:count").to_string())
        .to_request();
    assert_eq!(send(&app, req).await.status, StatusCode::CREATED);
    assert_eq!(n.task_count().await, 1);
    n.stop().await;
}

#[actix_rt::test]
async fn an_array_of_tasks_is_scheduled_in_one_request() {
    let n = TestNode::start("batch").await;
    let app = test::init_service(app(n.state.clone())).await;
    let tasks = json!([
        {"type": "apitest:count", "cluster": "parked", "data": {"n": 0}},
        {"type": "apitest:loop", "cluster": "parked", "data": {"n": 1}, "priority": "interactive",
         "not_before": "2030-01-01T00:00:00Z", "metadata": {"origin": "batch"}},
        {"type": "apitest:count", "cluster": "parked", "data": {"n": 2}, "priority": 7,
         "timeout_ms": 250, "aux_data": {"extra": 2}},
    ]);
    let a = send(&app, post("/api/tasks", tasks).to_request()).await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let answer = a.json();
    let ids: Vec<i64> = answer["ids"]
        .as_array()
        .unwrap_or_else(|| panic!("no ids: {answer}"))
        .iter()
        .map(|id| id.as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{answer}");
    assert!(ids[0] < ids[1] && ids[1] < ids[2], "ids in order: {ids:?}");
    // One warning, however many tasks go to the unserved cluster of one type.
    let warnings = answer["warnings"].as_array().unwrap();
    let parked_warnings = warnings
        .iter()
        .filter(|w| w.as_str().unwrap().contains("cluster 'parked'"))
        .count();
    assert_eq!(warnings.len(), 2, "{answer}");
    assert_eq!(parked_warnings, 2, "{answer}");
    assert_ne!(warnings[0], warnings[1], "{answer}");
    let mut t = Vec::new();
    for id in &ids {
        t.push(n.store.describe(TaskId(*id)).await.unwrap());
    }
    for (i, task) in t.iter().enumerate() {
        assert_eq!(task.data, json!({ "n": i }));
        assert_eq!(task.cluster, "parked");
        assert_eq!(task.state, TaskState::Pending);
    }
    assert_eq!(
        (t[0].task_type.as_str(), t[1].task_type.as_str()),
        ("apitest:count", "apitest:loop")
    );
    assert_eq!(
        (t[0].priority.0, t[1].priority.0, t[2].priority.0),
        (0, -100, 7)
    );
    assert_eq!(t[1].not_before, Some(1_893_456_000_000));
    assert_eq!(t[1].metadata, vec![("origin".into(), "batch".into())]);
    assert_eq!(
        (t[2].timeout_ms, t[2].aux_data.clone()),
        (250, Some(json!({"extra": 2})))
    );
    assert_eq!(n.task_count().await, 3);

    // An empty array schedules nothing.
    let a = send(&app, post("/api/tasks", json!([])).to_request()).await;
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.json(), json!({"ids": [], "created": [], "warnings": []}));

    // The largest batch: 10,000 tasks in one request, counted in the metrics.
    let tasks: Vec<Value> = (0..10_000)
        .map(|i| json!({"type": "apitest:count", "cluster": "parked", "data": {"i": i}}))
        .collect();
    let a = send(&app, post("/api/tasks", json!(tasks)).to_request()).await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let ids = a.json()["ids"].as_array().unwrap().clone();
    assert_eq!(ids.len(), 10_000);
    let last = n
        .store
        .describe(TaskId(ids[9_999].as_i64().unwrap()))
        .await
        .unwrap();
    assert_eq!(last.data, json!({"i": 9_999}));
    assert_eq!(n.task_count().await, 10_003);
    let metrics = n.state.metrics.render(&Default::default());
    assert!(
        metrics.contains("warren_tasks_scheduled_total{type=\"apitest:count\"} 10002"),
        "{metrics}"
    );
    n.stop().await;
}

#[actix_rt::test]
async fn a_unique_key_answers_with_the_task_that_has_it() {
    let n = TestNode::start("unique").await;
    let app = test::init_service(app(n.state.clone())).await;
    let keyed = |data: Value| json!({"type": "apitest:count", "cluster": "parked", "data": data, "unique_key": "k"});
    let a = send(
        &app,
        post("/api/tasks", keyed(json!({"n": 1}))).to_request(),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    assert_eq!(a.json()["created"], json!(true));
    let first = a.json()["id"].as_i64().unwrap();
    // The same key again: 200 with the first task's id, and nothing new.
    let a = send(
        &app,
        post("/api/tasks", keyed(json!({"n": 2}))).to_request(),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(
        (a.json()["id"].as_i64(), a.json()["created"].clone()),
        (Some(first), json!(false))
    );
    let mut other = keyed(json!({}));
    other["unique_key"] = json!("other");
    other["unique_states"] = json!(["completed"]);
    let a = send(
        &app,
        post("/api/tasks", json!([keyed(json!({})), other])).to_request(),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    assert_eq!(a.json()["created"], json!([false, true]));
    assert_eq!(a.json()["ids"][0].as_i64(), Some(first));
    assert_eq!(n.task_count().await, 2);
    // The task shows its key; the metrics count the tasks created, not the duplicates.
    let shown = send(&app, get(&format!("/api/tasks/{first}")).to_request())
        .await
        .json();
    assert_eq!(shown["data"], json!({"n": 1}));
    assert_eq!(
        shown["unique"],
        json!({"key": "k", "period_start": null, "states": ["pending", "running"]})
    );
    let metrics = n.state.metrics.render(&Default::default());
    assert!(
        metrics.contains("warren_tasks_scheduled_total{type=\"apitest:count\"} 2"),
        "{metrics}"
    );
    // Bad options are refused naming the field, and nothing is scheduled.
    for (body, field) in [
        (
            keyed(json!({}))
                .as_object()
                .map(|o| {
                    let mut o = o.clone();
                    o.insert("unique_key".into(), json!(""));
                    Value::Object(o)
                })
                .unwrap(),
            "unique_key",
        ),
        (
            json!({"type": "apitest:count", "debounce_ms": 5}),
            "debounce_ms",
        ),
        (
            json!({"type": "apitest:count", "unique_key": "x", "unique_states": ["done"]}),
            "unique_states",
        ),
        (
            json!({"type": "apitest:count", "unique_key": "x", "unique_period_ms": 0}),
            "unique_period_ms",
        ),
    ] {
        let error = send(&app, post("/api/tasks", body).to_request())
            .await
            .assert_error(400);
        assert_eq!(error["error"]["field"], json!(field), "{error}");
    }
    assert_eq!(n.task_count().await, 2);
    n.stop().await;
}

#[actix_rt::test]
async fn unknown_task_types_are_refused_unless_allowed_and_unserved_clusters_warned() {
    let n = TestNode::start("types").await;
    let app = test::init_service(app(n.state.clone())).await;
    let created = |body: Value| {
        let app = &app;
        async move {
            let a = send(app, post("/api/tasks", body).to_request()).await;
            assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
            let answer = a.json();
            let id = answer["id"].as_i64().unwrap();
            let warnings: Vec<String> = answer["warnings"]
                .as_array()
                .unwrap_or_else(|| panic!("no warnings array: {answer}"))
                .iter()
                .map(|w| w.as_str().unwrap().to_string())
                .collect();
            (id, warnings)
        }
    };

    // A type no node has registered: 400 naming the field, nothing created.
    let body = send(
        &app,
        post("/api/tasks", json!({"type": "apitest:nope"})).to_request(),
    )
    .await
    .assert_error(400);
    assert_eq!(body["error"]["field"], "type", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("'apitest:nope'"), "{message}");
    assert!(message.contains("allow_unknown_type"), "{message}");
    assert_eq!(n.task_count().await, 0);

    // Asked for: created, with a warning that no live node serves its cluster.
    let (nope, warnings) = created(json!({
        "type": "apitest:nope", "cluster": "parked", "allow_unknown_type": true
    }))
    .await;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("no live node serves cluster 'parked'"),
        "{warnings:?}"
    );
    let t = n.store.describe(TaskId(nope)).await.unwrap();
    assert_eq!(
        (t.task_type.as_str(), t.cluster.as_str()),
        ("apitest:nope", "parked")
    );

    // A registered type in a cluster this node serves: no warning.
    let (_, warnings) = created(json!({
        "type": "apitest:loop", "not_before": "2040-01-01T00:00:00Z"
    }))
    .await;
    assert_eq!(warnings, Vec::<String>::new());

    // A type another node registered for a cluster no live node serves: the task goes
    // to that cluster, with a warning; once a live node serves it, none.
    n.store
        .register_task_types(&[TypeRegistration::new("other:mail", "mail")])
        .await
        .unwrap();
    let (mail, warnings) = created(json!({"type": "other:mail"})).await;
    assert_eq!(
        n.store.describe(TaskId(mail)).await.unwrap().cluster,
        "mail"
    );
    assert!(warnings[0].contains("cluster 'mail'"), "{warnings:?}");
    n.store
        .register_node("mailer", &json!({"clusters": {"mail": 1}}))
        .await
        .unwrap();
    let (_, warnings) = created(json!({"type": "other:mail"})).await;
    assert_eq!(warnings, Vec::<String>::new());

    // Duplicating a task of an unknown type needs the flag too.
    n.store.cancel(TaskId(nope), "stop").await.unwrap();
    let before = n.task_count().await;
    let body = send(
        &app,
        post(&format!("/api/tasks/{nope}/duplicate"), json!({})).to_request(),
    )
    .await
    .assert_error(400);
    assert_eq!(body["error"]["field"], "type", "{body}");
    assert_eq!(n.task_count().await, before);
    let a = send(
        &app,
        post(
            &format!("/api/tasks/{nope}/duplicate"),
            json!({"allow_unknown_type": true}),
        )
        .to_request(),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let answer = a.json();
    assert!(
        answer["warnings"][0]
            .as_str()
            .unwrap()
            .contains("cluster 'parked'"),
        "{answer}"
    );
    assert_eq!(n.task_count().await, before + 1);
    n.stop().await;
}

#[actix_rt::test]
async fn task_actions_change_only_what_they_should() {
    let n = TestNode::start("actions").await;
    let app = test::init_service(app(n.state.clone())).await;
    let schedule = |body: Value| {
        let app = &app;
        async move {
            send(app, post("/api/tasks", body).to_request())
                .await
                .json()["id"]
                .as_i64()
                .unwrap()
        }
    };
    let id = schedule(parked("apitest:count")).await;
    let now = n.store.now();

    // Reschedule: to an instant (RFC 3339 or ms).
    let a = send(
        &app,
        post(
            &format!("/api/tasks/{id}/reschedule"),
            json!({"at": "2031-01-01T00:00:00Z"}),
        )
        .to_request(),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.json(),
        json!({"id": id, "next_attempt": 1_924_992_000_000_i64})
    );
    assert_eq!(
        n.store.describe(TaskId(id)).await.unwrap().next_attempt,
        1_924_992_000_000
    );
    let body = send(
        &app,
        post(
            &format!("/api/tasks/{id}/reschedule"),
            json!({"at": "soon"}),
        )
        .to_request(),
    )
    .await
    .assert_error(400);
    assert_eq!(body["error"]["field"], "at");
    send(
        &app,
        post(&format!("/api/tasks/{id}/reschedule"), json!({})).to_request(),
    )
    .await
    .assert_error(400);
    assert_eq!(
        n.store.describe(TaskId(id)).await.unwrap().next_attempt,
        1_924_992_000_000
    );

    // Retry: due now.
    let a = send(
        &app,
        post(&format!("/api/tasks/{id}/retry"), json!({})).to_request(),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let next = a.json()["next_attempt"].as_i64().unwrap();
    assert!(next >= now && next <= n.store.now(), "{next}");

    // Duplicate a pending task: 409, nothing scheduled.
    send(
        &app,
        post(&format!("/api/tasks/{id}/duplicate"), json!({})).to_request(),
    )
    .await
    .assert_error(409);
    assert_eq!(n.task_count().await, 1);

    // Cancel: answers the state it was in; a second cancel is 409.
    let a = send(
        &app,
        post(&format!("/api/tasks/{id}/cancel"), json!({})).to_request(),
    )
    .await;
    assert_eq!(a.json(), json!({"id": id, "was": "pending"}));
    assert_eq!(
        n.store.describe(TaskId(id)).await.unwrap().state,
        TaskState::Cancelled
    );
    send(
        &app,
        post(&format!("/api/tasks/{id}/cancel"), json!({})).to_request(),
    )
    .await
    .assert_error(409);

    // Duplicate the cancelled task: a new pending copy.
    let a = send(
        &app,
        post(&format!("/api/tasks/{id}/duplicate"), json!({})).to_request(),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let copy = a.json()["id"].as_i64().unwrap();
    let c = n.store.describe(TaskId(copy)).await.unwrap();
    assert_eq!(
        (c.state, c.data, c.cluster.as_str()),
        (TaskState::Pending, json!({"n": 1}), "parked")
    );

    // Retry the cancelled task: pending again.
    send(
        &app,
        post(&format!("/api/tasks/{id}/retry"), json!({})).to_request(),
    )
    .await;
    assert_eq!(
        n.store.describe(TaskId(id)).await.unwrap().state,
        TaskState::Pending
    );

    // Delete; then it is gone (404 for every action).
    let a = send(
        &app,
        post(&format!("/api/tasks/{id}/delete"), json!({})).to_request(),
    )
    .await;
    assert_eq!(a.json(), json!({"id": id}));
    for action in ["retry", "cancel", "delete", "duplicate"] {
        send(
            &app,
            post(&format!("/api/tasks/{id}/{action}"), json!({})).to_request(),
        )
        .await
        .assert_error(404);
    }
    send(
        &app,
        post(&format!("/api/tasks/{id}/reschedule"), json!({"at": 0})).to_request(),
    )
    .await
    .assert_error(404);
    // Unknown fields and bad bodies are refused before anything changes.
    let before = n.store.describe(TaskId(copy)).await.unwrap();
    send(
        &app,
        post(&format!("/api/tasks/{copy}/cancel"), json!({"why": "x"})).to_request(),
    )
    .await
    .assert_error(400);
    send(
        &app,
        post(&format!("/api/tasks/{copy}/delete"), json!({}))
            .set_payload("{")
            .to_request(),
    )
    .await
    .assert_error(400);
    send(
        &app,
        post(&format!("/api/tasks/{copy}/delete"), json!({}))
            .insert_header((header::ORIGIN, "https://elsewhere.example"))
            .to_request(),
    )
    .await
    .assert_error(403);
    send(
        &app,
        post(&format!("/api/tasks/{copy}/cancel"), json!({}))
            .insert_header((header::CONTENT_TYPE, "text/plain"))
            .to_request(),
    )
    .await
    .assert_error(415);
    assert_eq!(n.store.describe(TaskId(copy)).await.unwrap(), before);
    n.stop().await;
}

#[actix_rt::test]
async fn a_running_task_shows_as_a_busy_runner_and_cancel_kills_it() {
    let n = TestNode::start("running").await;
    let app = test::init_service(app(n.state.clone())).await;
    let a = send(
        &app,
        post("/api/tasks", json!({"type": "apitest:loop"})).to_request(),
    )
    .await;
    let id = a.json()["id"].as_i64().unwrap();
    eventually("the endless task to run", || async {
        let nodes = send(&app, get("/api/nodes").to_request()).await.json();
        nodes["runners"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["task_id"] == json!(id))
    })
    .await;
    let nodes = send(&app, get("/api/nodes").to_request()).await.json();
    assert_eq!(nodes["node"], "api-node");
    assert_eq!(nodes["nodes"][0]["name"], "api-node");
    let runner = &nodes["runners"][0];
    assert_eq!(
        (
            &runner["node"],
            &runner["cluster"],
            &runner["index"],
            &runner["task_type"]
        ),
        (
            &json!("api-node"),
            &json!("default"),
            &json!(0),
            &json!("apitest:loop")
        )
    );
    assert!(runner["running_ms"].as_u64().is_some());
    // The endless loop never touches the database: no transaction.
    assert_eq!(runner["transaction_ms"], Value::Null);
    let overview = send(&app, get("/api/overview").to_request()).await.json();
    assert_eq!(
        (
            overview["runners"].clone(),
            overview["busy_runners"].clone()
        ),
        (json!(1), json!(1))
    );
    assert_eq!(overview["totals"]["running"], json!(1));

    // A running task cannot be deleted, retried or rescheduled.
    for (action, body) in [
        ("delete", json!({})),
        ("retry", json!({})),
        ("reschedule", json!({"at": 0})),
    ] {
        send(
            &app,
            post(&format!("/api/tasks/{id}/{action}"), body).to_request(),
        )
        .await
        .assert_error(409);
    }
    assert_eq!(
        n.store.describe(TaskId(id)).await.unwrap().state,
        TaskState::Running
    );

    // Cancel kills it: the runner is free again.
    let a = send(
        &app,
        post(&format!("/api/tasks/{id}/cancel"), json!({})).to_request(),
    )
    .await;
    assert_eq!(a.json(), json!({"id": id, "was": "running"}));
    let outcome = n
        .store
        .wait(TaskId(id), Duration::from_secs(10), WaitFor::Finished)
        .await
        .unwrap();
    assert_eq!(outcome.state, TaskState::Cancelled);
    eventually("the runner to be free", || async {
        let nodes = send(&app, get("/api/nodes").to_request()).await.json();
        nodes["runners"][0]["task_id"].is_null()
    })
    .await;
    n.stop().await;
}

/// A task's progress is served live while it runs (on SQLite from the node's memory:
/// the run may hold the only write lock), stays after the run ends, is left out of
/// listings, and `warren tasks show` (another process, reading the database) prints it:
/// on PostgreSQL while the task runs, on SQLite once it has ended.
#[actix_rt::test]
async fn a_running_tasks_progress_is_served_live_and_kept_on_sqlite() {
    progress_is_served_live_and_kept(TestNode::start("progress").await).await;
}

/// [`a_running_tasks_progress_is_served_live_and_kept_on_sqlite`] on PostgreSQL.
#[actix_rt::test]
async fn a_running_tasks_progress_is_served_live_and_kept_on_postgres() {
    if let Some(n) = TestNode::start_on_postgres("the API's progress test").await {
        progress_is_served_live_and_kept(n).await;
    }
}

/// `warren tasks show ID` on the node's database: the line that starts with
/// `progress`, if any.
fn progress_line_shown(url: &str, id: i64) -> Option<String> {
    let shown = std::process::Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["tasks", "show", &id.to_string()])
        .env("WARREN_DATABASE_URL", url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{text}");
    text.lines()
        .find(|l| l.starts_with("progress"))
        .map(str::to_string)
}

async fn progress_is_served_live_and_kept(n: TestNode) {
    let on_postgres = n.url.starts_with("postgres");
    let app = test::init_service(app(n.state.clone())).await;
    // It reports steps 0–3 of 4, then spins until cancelled (its `until` is far off).
    let until = n.store.now() + 3_600_000;
    let a = send(
        &app,
        post(
            "/api/tasks",
            json!({"type": "apitest:progress", "data": {"steps": 4, "until": until}}),
        )
        .to_request(),
    )
    .await;
    let id = a.json()["id"].as_i64().unwrap();
    eventually("the running task's last report", || async {
        let t = send(&app, get(&format!("/api/tasks/{id}")).to_request())
            .await
            .json();
        t["state"] == "running" && t["progress"]["fraction"] == json!(0.75)
    })
    .await;
    let t = send(&app, get(&format!("/api/tasks/{id}")).to_request())
        .await
        .json();
    assert_eq!(t["progress"]["message"], "step 3 of 4", "{t}");
    assert!(t["progress"]["at"].as_i64().unwrap() > 0, "{t}");
    let listed = send(&app, get("/api/tasks?type=apitest:progress").to_request())
        .await
        .json();
    assert_eq!(listed["tasks"][0]["id"], json!(id));
    assert!(listed["tasks"][0].get("progress").is_none(), "{listed}");
    if on_postgres {
        // Written outside the run's transaction while it runs: the CLI sees it.
        eventually("the CLI to show the running task's progress", || async {
            progress_line_shown(&n.url, id)
                .is_some_and(|line| line.contains("75% step 3 of 4 (reported "))
        })
        .await;
    } else {
        assert_eq!(
            progress_line_shown(&n.url, id),
            None,
            "SQLite: in the node's memory"
        );
    }

    send(
        &app,
        post(&format!("/api/tasks/{id}/cancel"), json!({})).to_request(),
    )
    .await;
    n.store
        .wait(TaskId(id), Duration::from_secs(10), WaitFor::Finished)
        .await
        .unwrap();
    // The killed run's last report is written once its runner has let go of the run
    // (just after the cancel committed): what another process reads.
    let elsewhere = Store::open(&n.url).await.unwrap();
    eventually("the last report to be written", || async {
        elsewhere
            .describe(TaskId(id))
            .await
            .unwrap()
            .progress
            .is_some()
    })
    .await;
    let t = send(&app, get(&format!("/api/tasks/{id}")).to_request())
        .await
        .json();
    assert_eq!(t["state"], "cancelled");
    assert_eq!(
        (&t["progress"]["fraction"], &t["progress"]["message"]),
        (&json!(0.75), &json!("step 3 of 4")),
        "the last report stays: {t}"
    );
    let line = progress_line_shown(&n.url, id).expect("a progress line");
    assert!(line.contains("75% step 3 of 4 (last reported "), "{line}");
    n.stop().await;
}

/// A task's trace context comes from its `traceparent` field, else the request's
/// `traceparent` header, and is kept as its `traceparent` metadata; a bad one is
/// refused naming where it was, and nothing is scheduled.
#[actix_rt::test]
async fn a_traceparent_field_or_header_is_kept_with_the_task() {
    const FIELD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const HEADER: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let n = TestNode::start("traceparent").await;
    let app = test::init_service(app(n.state.clone())).await;
    let traced = |body: Value, header: Option<&str>| {
        let mut req = post("/api/tasks", body);
        if let Some(value) = header {
            req = req.insert_header(("traceparent", value));
        }
        req.to_request()
    };
    let mut with_field = parked("apitest:count");
    with_field["traceparent"] = json!(FIELD);
    let a = send(&app, traced(with_field.clone(), Some(HEADER))).await;
    let id = TaskId(a.json()["id"].as_i64().unwrap());
    assert_eq!(
        n.store
            .metadata(id, "traceparent")
            .await
            .unwrap()
            .as_deref(),
        Some(FIELD),
        "the field wins over the header"
    );
    let a = send(
        &app,
        traced(json!([parked("apitest:count"), with_field]), Some(HEADER)),
    )
    .await;
    let ids: Vec<TaskId> = a.json()["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| TaskId(id.as_i64().unwrap()))
        .collect();
    assert_eq!(
        n.store
            .metadata(ids[0], "traceparent")
            .await
            .unwrap()
            .as_deref(),
        Some(HEADER)
    );
    assert_eq!(
        n.store
            .metadata(ids[1], "traceparent")
            .await
            .unwrap()
            .as_deref(),
        Some(FIELD)
    );
    let before = n.task_count().await;
    let mut bad_field = parked("apitest:count");
    bad_field["traceparent"] = json!("00-nope");
    let body = send(&app, traced(bad_field, None)).await.assert_error(400);
    assert_eq!(body["error"]["field"], "traceparent", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'00-nope' is not a W3C traceparent"),
        "{body}"
    );
    assert_eq!(
        n.task_count().await,
        before,
        "nothing refused was scheduled"
    );
    // A header that is not a trace context is ignored, as W3C asks of a receiver.
    let a = send(&app, traced(parked("apitest:count"), Some("01-zz"))).await;
    assert_eq!(a.status.as_u16(), 201);
    let id = TaskId(a.json()["id"].as_i64().unwrap());
    assert_eq!(n.store.metadata(id, "traceparent").await.unwrap(), None);
    n.stop().await;
}

#[actix_rt::test]
async fn tasks_are_searched_counted_and_acted_on_in_bulk() {
    let n = TestNode::start("bulk").await;
    let app = test::init_service(app(n.state.clone())).await;
    let mut ids = Vec::new();
    for (ty, data) in [
        (
            "apitest:count",
            json!({"to": {"domain": "example.com"}, "n": 1}),
        ),
        (
            "apitest:count",
            json!({"to": {"domain": "example.org"}, "n": 2}),
        ),
        (
            "apitest:other",
            json!({"to": {"domain": "example.com"}, "n": 3}),
        ),
    ] {
        let a = send(
            &app,
            post(
                "/api/tasks",
                json!({"type": ty, "data": data, "cluster": "parked", "allow_unknown_type": true}),
            )
            .to_request(),
        )
        .await;
        ids.push(a.json()["id"].as_i64().unwrap());
    }
    // The listing and the count take the same filter fields.
    let a = send(
        &app,
        get("/api/tasks?data=to.domain%3Dexample.com&type=apitest:*").to_request(),
    )
    .await;
    let listed: Vec<i64> = a.json()["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, [ids[2], ids[0]]);
    let a = send(
        &app,
        get("/api/tasks/count?data_contains=EXAMPLE.ORG").to_request(),
    )
    .await;
    assert_eq!(a.json(), json!({"count": 1, "newest_id": ids[1]}));
    // Bad filters name their field.
    for (uri, field) in [
        ("/api/tasks?data=to.domain", "data"),
        ("/api/tasks/count?state=done", "state"),
        ("/api/tasks/count?from=soon", "from"),
    ] {
        let body = send(&app, get(uri).to_request()).await.assert_error(400);
        assert_eq!(body["error"]["field"], json!(field), "{uri}: {body}");
    }
    for (body, field) in [
        (json!({"action": "retry", "filter": {}}), "filter"),
        (
            json!({"action": "purge", "filter": {"state": "failed"}}),
            "action",
        ),
        (
            json!({"action": "retry", "filter": {"colour": "red"}}),
            "filter",
        ),
        (
            json!({"action": "retry", "filter": {"state": "failed"}, "reason": "x"}),
            "reason",
        ),
        (json!({"action": "delete", "filter": {"data": "n"}}), "data"),
    ] {
        let answer = send(&app, post("/api/tasks/bulk", body.clone()).to_request())
            .await
            .assert_error(400);
        assert_eq!(answer["error"]["field"], json!(field), "{body}: {answer}");
    }
    assert_eq!(
        n.task_count().await,
        3,
        "refused bulk requests change nothing"
    );
    for id in &ids {
        assert_eq!(
            n.store.describe(TaskId(*id)).await.unwrap().state,
            TaskState::Pending
        );
    }
    let counted = send(
        &app,
        get("/api/tasks/count?type=apitest:count").to_request(),
    )
    .await
    .json();
    assert_eq!(counted, json!({"count": 2, "newest_id": ids[1]}));

    // A running task (the endless loop) cancelled in bulk is stopped on this node.
    let a = send(
        &app,
        post(
            "/api/tasks",
            json!({"type": "apitest:loop", "data": {"n": 9}}),
        )
        .to_request(),
    )
    .await;
    let looping = a.json()["id"].as_i64().unwrap();
    eventually("the endless task to run", || async {
        n.store.describe(TaskId(looping)).await.unwrap().state == TaskState::Running
    })
    .await;
    let a = send(
        &app,
        post(
            "/api/tasks/bulk",
            json!({"action": "cancel", "filter": {"data_contains": "\"n\""}, "reason": "maintenance"}),
        )
        .to_request(),
    )
    .await;
    let report = a.json();
    assert_eq!(a.status, StatusCode::OK, "{report}");
    assert_eq!(
        (&report["matched"], &report["changed"]),
        (&json!(4), &json!(4))
    );
    assert_eq!(report["cancelled_running"], json!([looping]));
    let outcome = n
        .store
        .wait(TaskId(looping), Duration::from_secs(10), WaitFor::Finished)
        .await
        .unwrap();
    assert_eq!(outcome.state, TaskState::Cancelled);
    assert_eq!(outcome.error.as_deref(), Some("maintenance"));
    eventually("the runner to be free", || async {
        let nodes = send(&app, get("/api/nodes").to_request()).await.json();
        nodes["runners"][0]["task_id"].is_null()
    })
    .await;

    // Retry the cancelled tasks of one domain, then delete the rest.
    let a = send(
        &app,
        post(
            "/api/tasks/bulk",
            json!({"action": "retry", "filter": {"state": "cancelled", "data": "to.domain=example.com"}}),
        )
        .to_request(),
    )
    .await;
    let report = a.json();
    assert_eq!(
        (&report["matched"], &report["changed"]),
        (&json!(2), &json!(2)),
        "{report}"
    );
    for id in [ids[0], ids[2]] {
        assert_eq!(
            n.store.describe(TaskId(id)).await.unwrap().state,
            TaskState::Pending
        );
    }
    let a = send(
        &app,
        post(
            "/api/tasks/bulk",
            json!({"action": "delete", "filter": {"state": "all"}}),
        )
        .to_request(),
    )
    .await;
    let report = a.json();
    assert_eq!(
        (&report["matched"], &report["changed"]),
        (&json!(4), &json!(4)),
        "{report}"
    );
    assert_eq!(n.task_count().await, 0);
    let metrics = send(&app, get("/metrics").to_request()).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert_eq!(
        sample(&text, "warren_bulk_changed_tasks_total{action=\"cancel\"}"),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "warren_bulk_changed_tasks_total{action=\"delete\"}"),
        Some(4.0)
    );
    n.stop().await;
}

#[actix_rt::test]
async fn a_tasks_runs_are_shown_with_their_outcomes_errors_and_logs() {
    let n = TestNode::start("runs").await;
    let app = test::init_service(app(n.state.clone())).await;
    // A task that completes without logging, then the flaky one, on the cluster's one
    // runner: by the time the flaky task's runs are recorded, the quiet one's record
    // would have been written too.
    let a = send(
        &app,
        post("/api/tasks", json!({"type": "apitest:count"})).to_request(),
    )
    .await;
    let quiet = a.json()["id"].as_i64().unwrap();
    let a = send(
        &app,
        post("/api/tasks", json!({"type": "apitest:flaky"})).to_request(),
    )
    .await;
    let id = a.json()["id"].as_i64().unwrap();
    let outcome = n
        .store
        .wait(TaskId(id), Duration::from_secs(60), WaitFor::Finished)
        .await
        .unwrap();
    assert_eq!(outcome.state, TaskState::Completed);
    // The last run's record is written just after its completion commits.
    eventually("both runs to be recorded", || async {
        n.store.task_runs(TaskId(id)).await.unwrap().len() == 2
    })
    .await;
    let runs = send(&app, get(&format!("/api/tasks/{id}/runs")).to_request())
        .await
        .json();
    let runs = runs["runs"].as_array().unwrap().clone();
    assert_eq!(runs[0]["outcome"], "retry", "{runs:?}");
    assert_eq!(runs[0]["error"], "first run fails");
    assert_eq!(runs[0]["node"], "api-node");
    assert_eq!(
        runs[0]["log"],
        json!([{"level": "info", "message": "run after 0 failure(s)"}])
    );
    assert_eq!(runs[1]["outcome"], "completed");
    assert_eq!(runs[1]["error"], Value::Null);
    assert_eq!(runs[1]["log"][0]["message"], "run after 1 failure(s)");
    assert!(runs[1]["lease_token"].as_i64() > runs[0]["lease_token"].as_i64());
    assert!(runs[0]["finished_at"].as_i64() >= runs[0]["started_at"].as_i64());
    // A quiet completion is not recorded.
    let done = n.store.describe(TaskId(quiet)).await.unwrap();
    assert_eq!(done.state, TaskState::Completed);
    let runs = send(&app, get(&format!("/api/tasks/{quiet}/runs")).to_request())
        .await
        .json();
    assert_eq!(runs, json!({"runs": []}));
    send(&app, get("/api/tasks/999999/runs").to_request())
        .await
        .assert_error(404);
    n.stop().await;
}

#[actix_rt::test]
async fn nodes_include_the_runners_other_nodes_publish() {
    let n = TestNode::start("nodes").await;
    n.scheduled_recorded().await;
    let app = test::init_service(app(n.state.clone())).await;
    let now = n.store.now();
    n.store
        .register_node("other-node", &json!({"pid": 1}))
        .await
        .unwrap();
    n.store
        .set_node_runners(
            "other-node",
            &json!([
                {"cluster": "mail", "index": 0, "task_id": 99, "task_type": "x:y", "started_at": now - 75_000, "transaction_since": now - 70_000},
                {"cluster": "mail", "index": 1, "task_id": null, "task_type": null, "started_at": null},
            ]),
        )
        .await
        .unwrap();
    let nodes = send(&app, get("/api/nodes").to_request()).await.json();
    let names: Vec<&str> = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["api-node", "other-node"]);
    assert_eq!(nodes["nodes"][1]["info"], json!({"pid": 1}));
    let runners = nodes["runners"].as_array().unwrap();
    assert_eq!(runners.len(), 3, "{runners:?}");
    assert_eq!(runners[0]["node"], "api-node");
    let busy = &runners[1];
    assert_eq!(
        (&busy["node"], &busy["cluster"], &busy["task_id"]),
        (&json!("other-node"), &json!("mail"), &json!(99))
    );
    assert!(busy["running_ms"].as_u64().unwrap() >= 75_000);
    assert!(busy["transaction_ms"].as_u64().unwrap() >= 70_000);
    assert_eq!(runners[2]["running_ms"], Value::Null);
    let overview = send(&app, get("/api/overview").to_request()).await.json();
    assert_eq!(overview["nodes"], json!(2));
    assert_eq!(overview["runners"], json!(3));
    assert_eq!(overview["busy_runners"], json!(1));
    assert_eq!(overview["long_transactions"], json!(1));
    assert_eq!(overview["backend"], "sqlite");
    assert_eq!(overview["node"], "api-node");
    assert_eq!(overview["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(overview["scheduled"], json!(1));
    n.stop().await;
}

#[actix_rt::test]
async fn counts_and_throughput() {
    let n = TestNode::start("counts").await;
    let app = test::init_service(app(n.state.clone())).await;
    for _ in 0..2 {
        send(
            &app,
            post("/api/tasks", parked("apitest:loop")).to_request(),
        )
        .await;
    }
    let done = send(
        &app,
        post("/api/tasks", json!({"type": "apitest:count"})).to_request(),
    )
    .await
    .json()["id"]
        .as_i64()
        .unwrap();
    n.store
        .wait(TaskId(done), Duration::from_secs(120), WaitFor::Finished)
        .await
        .unwrap();
    let counts = send(&app, get("/api/counts").to_request()).await.json();
    assert_eq!(
        counts["types"],
        json!([
            {"task_type": "apitest:count", "pending": 0, "future": 0, "running": 0, "completed": 1, "failed": 0, "cancelled": 0},
            {"task_type": "apitest:loop", "pending": 2, "future": 0, "running": 0, "completed": 0, "failed": 0, "cancelled": 0},
        ])
    );
    assert_eq!(
        counts["totals"],
        json!({"pending": 2, "future": 0, "running": 0, "completed": 1, "failed": 0, "cancelled": 0})
    );
    let t = send(&app, get("/api/throughput").to_request()).await.json();
    assert_eq!(t["bucket_ms"], json!(60_000));
    let points = t["points"].as_array().unwrap();
    assert_eq!(points.len(), 60);
    let at: Vec<i64> = points.iter().map(|p| p["at"].as_i64().unwrap()).collect();
    assert!(at.windows(2).all(|w| w[1] - w[0] == 60_000));
    assert_eq!(at[0] % 60_000, 0);
    let now = n.store.now();
    assert!(at[59] <= now && now < at[59] + 60_000);
    let completed: i64 = points
        .iter()
        .map(|p| p["completed"].as_i64().unwrap())
        .sum();
    assert_eq!(completed, 1);
    n.stop().await;
}

#[actix_rt::test]
async fn scheduled_tasks_are_listed_run_enabled_and_disabled() {
    let n = TestNode::start("scheduled").await;
    n.scheduled_recorded().await;
    let app = test::init_service(app(n.state.clone())).await;
    let list = send(&app, get("/api/scheduled").to_request()).await.json();
    let s = &list["scheduled"][0];
    assert_eq!(s["tag"], "apitest:manual");
    assert_eq!((&s["mask"], &s["enabled"]), (&Value::Null, &json!(true)));
    for key in [
        "zone",
        "next_run",
        "run_requested",
        "running",
        "run_owner",
        "last_start",
        "last_finish",
        "last_outcome",
        "last_output",
    ] {
        assert!(s.get(key).is_some(), "{key} missing");
    }
    let a = send(
        &app,
        post("/api/scheduled/apitest:manual/disable", json!({})).to_request(),
    )
    .await;
    assert_eq!(a.json(), json!({"tag": "apitest:manual", "enabled": false}));
    assert!(!n.store.list_scheduled().await.unwrap()[0].enabled);
    // URL-encoded tags work.
    let a = send(
        &app,
        post("/api/scheduled/apitest%3Amanual/enable", json!({})).to_request(),
    )
    .await;
    assert_eq!(a.json(), json!({"tag": "apitest:manual", "enabled": true}));
    assert!(n.store.list_scheduled().await.unwrap()[0].enabled);

    // Refused calls change nothing.
    send(
        &app,
        post("/api/scheduled/apitest:manual/disable", json!({}))
            .insert_header((header::ORIGIN, "http://evil.example"))
            .to_request(),
    )
    .await
    .assert_error(403);
    send(
        &app,
        post("/api/scheduled/apitest:manual/run", json!({"now": true})).to_request(),
    )
    .await
    .assert_error(400);
    let state = n.store.list_scheduled().await.unwrap();
    assert!(state[0].enabled && !state[0].run_requested && state[0].last_start.is_none());
    for action in ["run", "enable", "disable"] {
        send(
            &app,
            post(&format!("/api/scheduled/apitest:nope/{action}"), json!({})).to_request(),
        )
        .await
        .assert_error(404);
    }

    // Run now: the node runs it once.
    let a = send(
        &app,
        post("/api/scheduled/apitest:manual/run", json!({})).to_request(),
    )
    .await;
    assert_eq!(a.json(), json!({"tag": "apitest:manual"}));
    eventually("the scheduled run to finish", || async {
        let list = send(&app, get("/api/scheduled").to_request()).await.json();
        list["scheduled"][0]["last_outcome"] == json!("completed")
    })
    .await;
    n.stop().await;
}

#[actix_rt::test]
async fn clusters_and_types_are_listed_paused_and_resumed() {
    let n = TestNode::start("pauses").await;
    n.scheduled_recorded().await;
    let app = test::init_service(app(n.state.clone())).await;
    let list = send(&app, get("/api/clusters").to_request()).await.json();
    assert_eq!(list["pauses"], json!([]));
    let default = &list["clusters"][0];
    assert_eq!(default["name"], "default");
    assert_eq!(default["paused_since"], Value::Null);
    assert_eq!(
        default["task_types"],
        json!([
            "apitest:count",
            "apitest:flaky",
            "apitest:loop",
            "apitest:progress"
        ])
    );
    assert_eq!(default["live_nodes"], 1);

    let a = send(
        &app,
        post("/api/types/apitest%3Acount/pause", json!({})).to_request(),
    )
    .await;
    assert_eq!(
        a.json(),
        json!({"kind": "type", "name": "apitest:count", "paused": true, "changed": true})
    );
    let a = send(
        &app,
        post("/api/clusters/default/pause", json!({})).to_request(),
    )
    .await;
    assert_eq!(a.json()["changed"], json!(true));
    let a = send(
        &app,
        post("/api/clusters/default/pause", json!({})).to_request(),
    )
    .await;
    assert_eq!(a.json()["changed"], json!(false), "paused already");
    // A scheduled tag pauses as a type.
    let a = send(
        &app,
        post("/api/types/apitest:manual/pause", json!({})).to_request(),
    )
    .await;
    assert_eq!(a.json()["changed"], json!(true));
    let list = send(&app, get("/api/clusters").to_request()).await.json();
    let kinds: Vec<(&str, &str)> = list["pauses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["kind"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("cluster", "default"),
            ("type", "apitest:count"),
            ("type", "apitest:manual")
        ]
    );
    assert!(list["clusters"][0]["paused_since"].is_i64());
    let types = list["types"].as_array().unwrap();
    let shown: Vec<(&str, &str, bool, bool)> = types
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap(),
                t["kind"].as_str().unwrap(),
                t["paused_since"].is_i64(),
                t["cluster_paused"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            ("apitest:count", "task", true, true),
            ("apitest:flaky", "task", false, true),
            ("apitest:loop", "task", false, true),
            ("apitest:manual", "scheduled", true, false),
            ("apitest:progress", "task", false, true)
        ]
    );

    // Refused calls change nothing.
    let e = send(
        &app,
        post("/api/clusters/defualt/pause", json!({})).to_request(),
    )
    .await
    .assert_error(400);
    let message = e["error"]["message"].as_str().unwrap();
    assert!(message.contains("cluster 'defualt'"), "{message}");
    send(
        &app,
        post("/api/types/apitest:nope/pause", json!({})).to_request(),
    )
    .await
    .assert_error(400);
    send(
        &app,
        post("/api/types/apitest:count/resume", json!({"now": true})).to_request(),
    )
    .await
    .assert_error(400);
    send(
        &app,
        post("/api/clusters/default/resume", json!({}))
            .insert_header((header::ORIGIN, "http://evil.example"))
            .to_request(),
    )
    .await
    .assert_error(403);
    assert_eq!(n.store.pauses().await.unwrap().len(), 3);

    // A task scheduled while paused runs once everything is resumed.
    let a = send(
        &app,
        post("/api/tasks", json!({"type": "apitest:count", "data": {}})).to_request(),
    )
    .await;
    let answer = a.json();
    let id: warren::task::TaskId = serde_json::from_value(answer["id"].clone()).unwrap();
    assert!(
        answer["warnings"]
            .to_string()
            .contains("cluster 'default' is paused"),
        "{answer}"
    );
    let probe = n
        .store
        .claim("probe", &["default".to_string()], 10, 30_000)
        .await
        .unwrap();
    assert!(probe.is_empty(), "a claim took paused work: {probe:?}");
    let t = n.store.describe(id).await.unwrap();
    assert_eq!(
        (t.state, t.started_at),
        (warren::task::TaskState::Pending, None)
    );
    // Its view says what it waits for: the cluster's pause goes before the type's.
    let shown = send(&app, get(&format!("/api/tasks/{id}")).to_request())
        .await
        .json();
    assert_eq!(
        shown["held_by"],
        json!({"kind": "cluster", "name": "default"})
    );
    for uri in [
        "/api/clusters/default/resume",
        "/api/types/apitest:count/resume",
        "/api/types/apitest:manual/resume",
    ] {
        let a = send(&app, post(uri, json!({})).to_request()).await;
        assert_eq!(
            (a.json()["paused"].clone(), a.json()["changed"].clone()),
            (json!(false), json!(true)),
            "{uri}"
        );
    }
    let outcome = n
        .store
        .wait(
            id,
            Duration::from_secs(60),
            warren::store::WaitFor::Finished,
        )
        .await
        .unwrap();
    assert_eq!(outcome.state, warren::task::TaskState::Completed);
    let shown = send(&app, get(&format!("/api/tasks/{id}")).to_request())
        .await
        .json();
    assert_eq!(shown["held_by"], Value::Null);
    n.stop().await;
}

/// The value of a sample line `name{labels} value` in Prometheus text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[actix_rt::test]
async fn metrics_count_scheduling_runs_and_vms() {
    let n = TestNode::start("metrics").await;
    let app = test::init_service(app(n.state.clone())).await;
    send(
        &app,
        post("/api/tasks", parked("apitest:loop")).to_request(),
    )
    .await;
    for _ in 0..2 {
        let id = send(
            &app,
            post("/api/tasks", json!({"type": "apitest:count"})).to_request(),
        )
        .await
        .json()["id"]
            .as_i64()
            .unwrap();
        n.store
            .wait(TaskId(id), Duration::from_secs(120), WaitFor::Finished)
            .await
            .unwrap();
    }
    // A run's duration is recorded when its runner is done with it, just after the
    // outcome commits.
    eventually("both runs to be recorded", || async {
        let text = send(&app, get("/metrics").to_request()).await.body;
        let text = String::from_utf8_lossy(&text);
        sample(
            &text,
            "warren_run_duration_seconds_count{type=\"apitest:count\"}",
        ) == Some(2.0)
    })
    .await;
    let a = send(&app, get("/metrics").to_request()).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.header(header::CONTENT_TYPE),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = String::from_utf8(a.body.to_vec()).unwrap();
    // Every line is a comment or `series value`.
    for line in text.lines() {
        assert!(
            line.starts_with("# HELP ")
                || line.starts_with("# TYPE ")
                || line
                    .rsplit_once(' ')
                    .is_some_and(|(_, v)| v.parse::<f64>().is_ok()),
            "bad line {line:?}"
        );
    }
    let value =
        |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    assert_eq!(
        value("warren_tasks_scheduled_total{type=\"apitest:loop\"}"),
        1.0
    );
    assert_eq!(
        value("warren_tasks_scheduled_total{type=\"apitest:count\"}"),
        2.0
    );
    assert_eq!(
        value("warren_tasks_finished_total{type=\"apitest:count\",outcome=\"completed\"}"),
        2.0
    );
    assert_eq!(value("warren_queue_depth{state=\"pending\"}"), 1.0);
    assert_eq!(value("warren_queue_depth{state=\"completed\"}"), 2.0);
    assert_eq!(value("warren_queue_depth{state=\"failed\"}"), 0.0);
    assert_eq!(
        value("warren_run_duration_seconds_count{type=\"apitest:count\"}"),
        2.0
    );
    assert_eq!(
        value("warren_run_duration_seconds_bucket{type=\"apitest:count\",le=\"+Inf\"}"),
        2.0
    );
    assert!(value("warren_run_duration_seconds_sum{type=\"apitest:count\"}") > 0.0);
    assert_eq!(value("warren_runners{cluster=\"default\"}"), 1.0);
    assert_eq!(value("warren_runners_busy{cluster=\"default\"}"), 0.0);
    // SQLite: the store's pool of 8, and no connections of the runners' threads.
    assert_eq!(value("warren_db_connections_max{pool=\"store\"}"), 8.0);
    assert!(value("warren_db_connections{pool=\"store\"}") >= 1.0);
    assert_eq!(value("warren_db_connections{pool=\"runner_threads\"}"), 0.0);
    assert_eq!(value("warren_db_connections_max{pool=\"queue\"}"), 0.0);
    assert_eq!(
        value("warren_db_connections_max{pool=\"runner_threads\"}"),
        0.0
    );
    // One runner: the first run creates the VM, the second reuses it.
    assert_eq!(value("warren_vm_instantiations_total"), 1.0);
    assert_eq!(value("warren_vm_reuses_total"), 1.0);
    for kind in [
        "# TYPE warren_tasks_scheduled_total counter",
        "# TYPE warren_tasks_finished_total counter",
        "# TYPE warren_queue_depth gauge",
        "# TYPE warren_run_duration_seconds histogram",
        "# TYPE warren_runners gauge",
        "# TYPE warren_runners_busy gauge",
        "# TYPE warren_vm_instantiations_total counter",
        "# TYPE warren_vm_reuses_total counter",
    ] {
        assert!(text.contains(kind), "{kind}");
    }
    n.stop().await;
}

#[actix_rt::test]
async fn unknown_routes_and_methods_are_json_errors() {
    let n = TestNode::start("routes").await;
    let app = test::init_service(app(n.state.clone())).await;
    send(&app, get("/api/nope").to_request())
        .await
        .assert_error(404);
    send(&app, get("/nope").to_request())
        .await
        .assert_error(404);
    send(&app, get("/api/tasks/1/retry").to_request())
        .await
        .assert_error(405);
    let put = TestRequest::put()
        .uri("/api/tasks")
        .insert_header((header::AUTHORIZATION, format!("Bearer {TOKEN}")))
        .to_request();
    send(&app, put).await.assert_error(405);
    let a = send(&app, get("/api/openapi.json").to_request()).await;
    assert_eq!(a.header(header::CACHE_CONTROL), "no-store");
    let doc = a.json();
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/api/tasks",
        "/api/tasks/count",
        "/api/tasks/bulk",
        "/api/tasks/{id}",
        "/api/tasks/{id}/runs",
        "/api/tasks/{id}/retry",
        "/api/tasks/{id}/reschedule",
        "/api/tasks/{id}/cancel",
        "/api/tasks/{id}/delete",
        "/api/tasks/{id}/duplicate",
        "/api/counts",
        "/api/throughput",
        "/api/scheduled",
        "/api/scheduled/{tag}/run",
        "/api/scheduled/{tag}/enable",
        "/api/scheduled/{tag}/disable",
        "/api/nodes",
        "/api/overview",
        "/api/openapi.json",
        "/metrics",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} not described");
    }
    n.stop().await;
}

#[actix_rt::test]
async fn the_dashboard_serves_on_a_real_port_until_stopped() {
    use std::io::{Read, Write};
    let n = TestNode::start("port").await;
    let dashboard = Dashboard::start(n.state.clone(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = dashboard.addr();
    assert_ne!(addr.port(), 0);
    // A plain HTTP/1.1 client on a thread of its own (the node answers on this one).
    let request = move |path: &'static str| {
        actix_rt::task::spawn_blocking(move || {
            let mut stream = std::net::TcpStream::connect(addr)?;
            write!(
                stream,
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
            )?;
            let mut answer = String::new();
            stream.read_to_string(&mut answer)?;
            Ok::<_, std::io::Error>(answer)
        })
    };
    let page = request("/").await.unwrap().unwrap();
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    let overview = request("/api/overview").await.unwrap().unwrap();
    assert!(overview.starts_with("HTTP/1.1 200 OK"), "{overview}");
    assert!(overview.contains("\"node\":\"api-node\""), "{overview}");
    dashboard.stop().await;
    let refused = request("/").await.unwrap();
    assert!(refused.is_err(), "still serving after stop: {refused:?}");
    n.stop().await;
}
