//! A whole node in-process: managed, ephemeral and scheduled tasks of the demo module
//! (JavaScript), cancellation, a dropped ephemeral caller, and graceful shutdown.

use serde_json::json;
use std::path::PathBuf;
use std::time::Duration;
use warren::store::{PauseTarget, Store, TaskOutcome, WaitFor};
use warren::task::TaskState;
use warren_actors::*;

mod support;
use support::{copy_demo_module, repo};

/// A modules folder holding the demo module and a `slow` module with an endless task.
fn modules() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("warren-node-modules-{}", std::process::id()));
    let slow = dir.join("slow");
    std::fs::create_dir_all(slow.join("tasks")).unwrap();
    std::fs::copy(
        repo().join("tests/guests/infinite_loop.js"),
        slow.join("tasks/loop.js"),
    )
    .unwrap();
    std::fs::copy(
        repo().join("tests/guests/counter.js"),
        slow.join("tasks/counter.js"),
    )
    .unwrap();
    std::fs::write(
        slow.join("moduledefinition.xml"),
        r#"<module name="slow"><servicemanager>
             <managedtask type="loop" code="tasks/loop.js"/>
             <ephemeraltask type="spin" code="tasks/loop.js"/>
             <ephemeraltask type="counter" code="tasks/counter.js"/>
             <managedtask type="count" code="tasks/counter.js"/>
           </servicemanager></module>"#,
    )
    .unwrap();
    copy_demo_module(&dir);
    dir
}

/// Starts the node "test-node" on [`modules`], with its SQLite database at `db`.
async fn start(db: &std::path::Path) -> (actix::Addr<Supervisor>, Store) {
    start_on(db, &modules(), Warren::builder().node_name("test-node")).await
}

/// Starts `builder`'s node on the module folders in `dir`, with its SQLite database in
/// `dir` too; returns the node and a store on the same file.
async fn start_in(
    dir: &std::path::Path,
    builder: WarrenBuilder,
) -> (actix::Addr<Supervisor>, Store) {
    start_on(&dir.join("node.db"), dir, builder).await
}

/// Starts `builder`'s node on the module folders in `modules`, with its SQLite database
/// at `db`; returns the node and a store on the same file.
async fn start_on(
    db: &std::path::Path,
    modules: &std::path::Path,
    builder: WarrenBuilder,
) -> (actix::Addr<Supervisor>, Store) {
    let url = format!("sqlite://{}", db.display());
    let (node, broken) = builder
        .database(&url)
        .modules_dir(modules)
        .engine(support::engine_config())
        .start()
        .await
        .expect("node starts");
    assert!(broken.is_empty(), "{broken:?}");
    (node, Store::open(&url).await.unwrap())
}

/// Schedules a managed task of `task_type` with `{}` on `node`.
async fn schedule(node: &actix::Addr<Supervisor>, task_type: &str) -> warren::task::TaskId {
    node.send(ScheduleTask::managed(task_type.parse().unwrap(), json!({})))
        .await
        .unwrap()
        .unwrap()
}

/// Waits (bounded) until `check` holds.
async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    support::eventually(what, Duration::from_secs(60), check).await
}

/// Waits (bounded) until one of `node`'s runners runs managed task `id`.
async fn running_on_a_runner(node: &actix::Addr<Supervisor>, id: warren::task::TaskId) {
    eventually("the task to run on a runner", || async {
        let status = node.send(Status).await.unwrap().unwrap();
        status.queue.runners.iter().any(|r| r.task_id == Some(id))
    })
    .await;
}

/// Schedules `demo:ping` with `{"ping": n}` on `node` and waits for its outcome.
async fn ping(node: &actix::Addr<Supervisor>, store: &Store, n: i64) -> TaskOutcome {
    let id = node
        .send(ScheduleTask::managed(
            "demo:ping".parse().unwrap(),
            json!({ "ping": n }),
        ))
        .await
        .unwrap()
        .unwrap();
    store
        .wait(id, Duration::from_secs(60), WaitFor::Finished)
        .await
        .unwrap()
}

#[actix_rt::test]
async fn a_node_runs_managed_ephemeral_and_scheduled_tasks() {
    let db = std::env::temp_dir().join(format!("warren-node-{}.db", std::process::id()));
    let (node, store) = start(&db).await;

    // Managed: {"ping": 42} → {"pong": 42}.
    let outcome = ping(&node, &store, 42).await;
    assert_eq!(
        (outcome.state, outcome.result),
        (TaskState::Completed, Some(json!({"pong": 42})))
    );

    // Ephemeral: the caller gets the result.
    let result = node
        .send(RunEphemeralTask::new(
            "demo:compile",
            json!({"numbers": [3, 1, 2]}),
        ))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(result["sum"], json!(6));
    let err = node
        .send(RunEphemeralTask::new("demo:nope", json!({})))
        .await
        .unwrap()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown ephemeral task type demo:nope"),
        "{err}"
    );

    // A dropped ephemeral caller kills its task; the runner then serves the next one.
    let endless = node
        .send(RunEphemeralTask::new("slow:spin", json!({})))
        .await
        .unwrap();
    let status = || async { node.send(Status).await.unwrap().unwrap() };
    eventually("the endless ephemeral task to start", || async {
        status()
            .await
            .queue
            .runners
            .iter()
            .any(|r| r.task_type.as_deref() == Some("slow:spin"))
    })
    .await;
    drop(endless);
    let count = node
        .send(RunEphemeralTask::new("slow:counter", json!({})))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(count, json!({"count": 1}));

    // Cancelling a running managed task kills it.
    let looping = node
        .send(ScheduleTask::managed(
            "slow:loop".parse().unwrap(),
            json!({}),
        ))
        .await
        .unwrap()
        .unwrap();
    running_on_a_runner(&node, looping).await;
    assert_eq!(
        node.send(CancelTask(looping)).await.unwrap().unwrap(),
        TaskState::Running
    );
    eventually("the cancelled task's runner to be free", || async {
        !status()
            .await
            .queue
            .runners
            .iter()
            .any(|r| r.task_id == Some(looping))
    })
    .await;
    assert_eq!(
        store.describe(looping).await.unwrap().state,
        TaskState::Cancelled
    );

    // Scheduled, by hand: the outcome is recorded.
    node.send(RunScheduledNow("demo:heartbeat".into()))
        .await
        .unwrap()
        .unwrap();
    eventually("the heartbeat to finish", || async {
        store
            .list_scheduled()
            .await
            .unwrap()
            .iter()
            .any(|s| s.tag == "demo:heartbeat" && s.last_outcome.as_deref() == Some("completed"))
    })
    .await;
    let nodes = store.list_nodes().await.unwrap();
    assert_eq!(
        nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
        vec!["test-node"]
    );

    // Graceful shutdown unregisters the node and stops the system.
    node.send(Shutdown {
        grace: Duration::from_secs(5),
    })
    .await
    .unwrap();
    assert!(store.list_nodes().await.unwrap().is_empty());
    support::remove_sqlite(&db);
}

/// On SQLite, a task scheduled by another process (`warren schedule … --wait`, as from
/// a second terminal) wakes the node's queue through the file's wake-up socket, and its
/// outcome wakes the waiting process the same way. The node's safety poll is an hour
/// long, so nothing but the wake-up can start the task before the command gives up.
#[cfg(unix)]
#[actix_rt::test]
async fn a_task_scheduled_by_another_process_wakes_the_queue() {
    let dir = support::Scratch::new("node-wake");
    let url = format!("sqlite://{}", dir.join("node.db").display());
    let (node, broken) = Warren::builder()
        .database(&url)
        .modules_dir(modules())
        .node_name("wake-node")
        .engine(support::engine_config())
        .queue_poll(Duration::from_secs(3600))
        .start()
        .await
        .expect("node starts");
    assert!(broken.is_empty(), "{broken:?}");
    let store = Store::open(&url).await.unwrap();

    // One task in-process first: its code is compiled and the node is warm.
    assert_eq!(ping(&node, &store, 1).await.state, TaskState::Completed);

    // Then from another process, which waits for the outcome.
    let mut schedule = std::process::Command::new(env!("CARGO_BIN_EXE_warren"));
    schedule
        .args(["schedule", "--database", &url])
        .args(["demo:ping", r#"{"ping": 2}"#, "--wait", "60"])
        .env_remove("WARREN_DATABASE_URL")
        .env_remove("WARREN_MAINTENANCE_OFFSET");
    support::use_test_cache(&mut schedule);
    // On a blocking thread: the node runs on this one.
    let output = tokio::task::spawn_blocking(move || schedule.output())
        .await
        .unwrap()
        .expect("run warren schedule");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "{stdout}{stderr}");
    let mut lines = stdout.lines();
    let id: i64 = lines.next().unwrap().parse().expect("the task's id");
    let printed: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(printed["id"], json!(id));
    assert_eq!(printed["state"], json!("completed"));
    assert_eq!(printed["result"], json!({"pong": 2}));

    node.send(Shutdown {
        grace: Duration::from_secs(5),
    })
    .await
    .unwrap();
    // A node that shut down leaves no socket of its process behind, although a store
    // of the file is still open here (`warren serve` exits without dropping its own).
    let ours = format!("{}-", std::process::id());
    let left: Vec<String> = std::fs::read_dir(dir.join("node.db-wake"))
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with(&ours))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "sockets left by this process: {left:?}");
    drop(store);
}

/// One runner serving 150 JavaScript task types, each with VMs of its own: the pool held
/// about a hundred QuickJS VMs, after which every new type failed until a restart. The
/// runner now keeps its share of idle VMs (least recently used dropped), so all run.
#[actix_rt::test]
async fn one_runner_serves_150_task_types() {
    let dir = std::env::temp_dir().join(format!("warren-node-many-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let module = dir.join("many");
    std::fs::create_dir_all(module.join("tasks")).unwrap();
    std::fs::copy(
        repo().join("tests/guests/counter.js"),
        module.join("tasks/counter.js"),
    )
    .unwrap();
    let types: String = (0..150)
        .map(|i| format!(r#"<ephemeraltask type="t{i}" code="tasks/counter.js"/>"#))
        .collect();
    std::fs::write(
        module.join("moduledefinition.xml"),
        format!(r#"<module name="many"><servicemanager>{types}</servicemanager></module>"#),
    )
    .unwrap();
    let (node, _) = start_in(&dir, Warren::builder().node_name("many-types")).await;
    let run = |task_type: String| {
        let node = node.clone();
        async move {
            node.send(RunEphemeralTask::new(&task_type, json!({})))
                .await
                .unwrap()
                .await
                .unwrap_or_else(|e| panic!("{task_type}: {e}"))
        }
    };
    for i in 0..150 {
        assert_eq!(run(format!("many:t{i}")).await, json!({"count": 1}));
    }
    // The most recent types kept their VMs (globals persist); the oldest were dropped.
    assert_eq!(run("many:t149".into()).await, json!({"count": 2}));
    assert_eq!(run("many:t0".into()).await, json!({"count": 1}));
    node.send(Shutdown {
        grace: Duration::from_secs(5),
    })
    .await
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Pausing a task type or a cluster (as `warren types|clusters pause` does, from another
/// store on the same file): the node refuses ephemeral tasks of it, does not start its
/// managed tasks while other work in the cluster runs past them, and runs them once
/// resumed.
#[actix_rt::test]
async fn paused_types_and_clusters_hold_their_work_until_resumed() {
    let db = std::env::temp_dir().join(format!("warren-node-pause-{}.db", std::process::id()));
    let (node, store) = start(&db).await;
    let ephemeral = |task_type: &'static str| {
        let node = node.clone();
        async move {
            node.send(RunEphemeralTask::new(task_type, json!({"numbers": [1, 2]})))
                .await
                .unwrap()
                .await
        }
    };
    assert_eq!(ephemeral("demo:compile").await.unwrap()["sum"], json!(3));

    let ping = PauseTarget::TaskType("demo:ping".into());
    let compile = PauseTarget::TaskType("demo:compile".into());
    assert!(store.pause(&ping).await.unwrap());
    assert!(store.pause(&compile).await.unwrap());
    // The node reads the pauses when woken: ephemeral tasks of a paused type are refused.
    eventually("the node to refuse the paused ephemeral type", || async {
        matches!(ephemeral("demo:compile").await, Err(Error::Paused(p)) if p == compile)
    })
    .await;
    let err = ephemeral("demo:compile").await.unwrap_err().to_string();
    assert_eq!(
        err,
        "task type 'demo:compile' is paused: its ephemeral tasks are refused until it is resumed"
    );

    // A paused managed task waits; a task of another type behind it in the same cluster runs.
    let schedule = |task_type: &'static str| {
        let node = node.clone();
        async move {
            node.send(ScheduleTask::managed(
                task_type.parse().unwrap(),
                json!({"ping": 7}),
            ))
            .await
            .unwrap()
            .unwrap()
        }
    };
    let held = schedule("demo:ping").await;
    let behind = schedule("slow:count").await;
    let outcome = store
        .wait(behind, Duration::from_secs(60), WaitFor::Finished)
        .await
        .unwrap();
    assert_eq!(outcome.state, TaskState::Completed);
    assert_eq!(
        store.describe(held).await.unwrap().state,
        TaskState::Pending
    );

    assert!(store.resume(&ping).await.unwrap());
    assert!(store.resume(&compile).await.unwrap());
    let outcome = store
        .wait(held, Duration::from_secs(60), WaitFor::Finished)
        .await
        .unwrap();
    assert_eq!(
        (outcome.state, outcome.result),
        (TaskState::Completed, Some(json!({"pong": 7})))
    );
    eventually("the resumed ephemeral type to run", || async {
        ephemeral("demo:compile").await.is_ok()
    })
    .await;

    // A paused cluster: the same for every type in it.
    let default = PauseTarget::Cluster("default".into());
    assert!(store.pause(&default).await.unwrap());
    eventually(
        "the node to refuse ephemeral tasks of the paused cluster",
        || async {
            matches!(ephemeral("demo:compile").await, Err(Error::Paused(p)) if p == default)
        },
    )
    .await;
    // Scheduling still works; no claim takes the task (a probe's neither), the node
    // has not started it, and it runs once the cluster is resumed.
    let held = schedule("slow:count").await;
    let probe = store
        .claim("probe", &["default".to_string()], 10, 30_000)
        .await
        .unwrap();
    assert!(probe.is_empty(), "{probe:?}");
    let t = store.describe(held).await.unwrap();
    assert_eq!((t.state, t.started_at), (TaskState::Pending, None));
    assert!(store.resume(&default).await.unwrap());
    let outcome = store
        .wait(held, Duration::from_secs(60), WaitFor::Finished)
        .await
        .unwrap();
    assert_eq!(outcome.state, TaskState::Completed);

    node.send(Shutdown {
        grace: Duration::from_secs(5),
    })
    .await
    .unwrap();
    support::remove_sqlite(&db);
}

/// Tasks a node claimed ahead (its runner busy, its runs short) and has not started
/// are given back when their type is paused: pending again, no failure counted, and
/// they run once it is resumed.
#[actix_rt::test]
async fn a_pause_gives_back_the_tasks_a_node_claimed_ahead() {
    let db = std::env::temp_dir().join(format!("warren-node-ahead-{}.db", std::process::id()));
    let (node, store) = start(&db).await;
    let finished = |id| {
        let store = store.clone();
        async move {
            store
                .wait(id, Duration::from_secs(60), WaitFor::Finished)
                .await
                .unwrap()
                .state
        }
    };
    // Short runs first (enough to outweigh the first one's instantiation in the moving
    // average), so the cluster claims ahead of its (one) runner.
    for _ in 0..40 {
        let id = schedule(&node, "slow:count").await;
        assert_eq!(finished(id).await, TaskState::Completed);
    }
    // The runner is busy with an endless task; three more tasks are claimed ahead.
    let looping = schedule(&node, "slow:loop").await;
    running_on_a_runner(&node, looping).await;
    let mut ahead = Vec::new();
    for _ in 0..3 {
        ahead.push(schedule(&node, "slow:count").await);
    }
    eventually("the node to claim them ahead", || async {
        let mut all = true;
        for id in &ahead {
            all &= store.describe(*id).await.unwrap().state == TaskState::Running;
        }
        all
    })
    .await;

    let count = PauseTarget::TaskType("slow:count".into());
    assert!(store.pause(&count).await.unwrap());
    eventually("the node to give them back", || async {
        let mut all = true;
        for id in &ahead {
            let t = store.describe(*id).await.unwrap();
            all &= t.state == TaskState::Pending && t.lease_owner.is_none();
        }
        all
    })
    .await;
    for id in &ahead {
        let t = store.describe(*id).await.unwrap();
        assert_eq!((t.failures, t.started_at), (0, None), "task {id}");
    }
    // The runner frees up; the paused tasks still wait, and run once resumed.
    assert_eq!(
        node.send(CancelTask(looping)).await.unwrap().unwrap(),
        TaskState::Running
    );
    assert!(store.resume(&count).await.unwrap());
    for id in ahead {
        assert_eq!(finished(id).await, TaskState::Completed);
    }
    node.send(Shutdown {
        grace: Duration::from_secs(5),
    })
    .await
    .unwrap();
    support::remove_sqlite(&db);
}

/// Runners share threads (`runner_threads`): with one thread for three runners, two
/// guests that compute forever (no host call, so they give the thread back only at the
/// engine's epoch ticks) still leave the third runner its turns. It would never run its
/// task if a guest held its thread until it ended.
#[actix_rt::test]
async fn runners_sharing_one_thread_take_turns_with_endless_guests() {
    let dir = std::env::temp_dir().join(format!("warren-node-threads-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let module = dir.join("spin");
    std::fs::create_dir_all(module.join("tasks")).unwrap();
    for (from, to) in [
        ("infinite_loop.js", "loop.js"),
        ("counter.js", "counter.js"),
    ] {
        std::fs::copy(
            repo().join("tests/guests").join(from),
            module.join("tasks").join(to),
        )
        .unwrap();
    }
    std::fs::write(
        module.join("moduledefinition.xml"),
        r#"<module name="spin"><servicemanager>
             <taskcluster tag="shared" workers="3"/>
             <managedtask type="loop" code="tasks/loop.js" cluster="shared"/>
             <managedtask type="count" code="tasks/counter.js" cluster="shared"/>
           </servicemanager></module>"#,
    )
    .unwrap();
    let builder = Warren::builder()
        .node_name("threads-node")
        .runner_threads(std::num::NonZeroUsize::MIN);
    let (node, store) = start_in(&dir, builder).await;

    let endless = [
        schedule(&node, "spin:loop").await,
        schedule(&node, "spin:loop").await,
    ];
    for id in endless {
        running_on_a_runner(&node, id).await;
    }
    let count = schedule(&node, "spin:count").await;
    let outcome = store
        .wait(count, Duration::from_secs(60), WaitFor::Finished)
        .await
        .unwrap();
    assert_eq!(outcome.state, TaskState::Completed, "{outcome:?}");
    for id in endless {
        assert_eq!(store.describe(id).await.unwrap().state, TaskState::Running);
        node.send(CancelTask(id)).await.unwrap().unwrap();
    }

    node.send(Shutdown {
        grace: Duration::from_secs(5),
    })
    .await
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// On PostgreSQL a managed run's transaction is carried by a connection of its runners'
/// thread, and its claim by one of the queue's thread, which the node's status counts
/// apart from the store's pool (bounded by the runners, and by the clusters); a SQLite
/// node has no such connections.
#[actix_rt::test]
async fn runs_take_their_runners_threads_connections_on_postgres() {
    let dir = std::env::temp_dir().join(format!("warren-node-conns-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    copy_demo_module(&dir);
    let sqlite = format!("sqlite://{}", dir.join("node.db").display());
    let fresh = match warren_testkit::admin_url("the runner threads' connections test") {
        Some(server) => Some(
            warren_testkit::FreshDatabase::create(&server, "warren_t_node")
                .await
                .unwrap(),
        ),
        None => None,
    };
    let mut urls = vec![sqlite];
    urls.extend(fresh.as_ref().map(|f| f.url().to_string()));
    for url in urls {
        let on_postgres = url.starts_with("postgres");
        let (node, broken) = Warren::builder()
            .node_name("conns-node")
            .database(&url)
            .modules_dir(&dir)
            .engine(support::engine_config())
            .start()
            .await
            .expect("node starts");
        assert!(broken.is_empty(), "{broken:?}");
        let store = Store::open(&url).await.unwrap();
        let id = node
            .send(ScheduleTask::managed(
                "demo:record".parse().unwrap(),
                json!({ "message": "on the thread" }),
            ))
            .await
            .unwrap()
            .unwrap();
        let outcome = store
            .wait(id, Duration::from_secs(60), WaitFor::Finished)
            .await
            .unwrap();
        assert_eq!(outcome.state, TaskState::Completed, "{outcome:?}");
        let status = node.send(Status).await.unwrap().unwrap();
        let (threads, runners) = (
            status.queue.connections.runner_threads,
            status.queue.runners,
        );
        if on_postgres {
            // The run's connection went back to its thread's pool, open for the next.
            assert_eq!(threads.open, 1, "{threads:?}");
            // One per runner on the threads: the clusters' runners listed here, and
            // the scheduled tasks' runners (the demo module has scheduled tasks).
            assert!(threads.max > runners.len(), "one per runner: {threads:?}");
        } else {
            assert_eq!((threads.open, threads.max), (0, 0), "{threads:?}");
        }
        let pool = status.queue.connections.store;
        assert!(pool.open >= 1 && pool.open <= pool.max, "{pool:?}");
        // The queue claimed on a connection of its own thread: one per cluster.
        let queue = status.queue.connections.queue;
        if on_postgres {
            assert_eq!(queue.open, 1, "{queue:?}");
            let clusters: std::collections::BTreeSet<_> =
                runners.iter().map(|r| r.cluster.clone()).collect();
            assert_eq!(queue.max, clusters.len(), "{queue:?}");
        } else {
            assert_eq!((queue.open, queue.max), (0, 0), "{queue:?}");
        }
        node.send(Shutdown {
            grace: Duration::from_secs(5),
        })
        .await
        .unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
