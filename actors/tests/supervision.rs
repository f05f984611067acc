//! Supervision and lifecycle of a node: crashed children are restarted without losing
//! tasks, a runner whose host code panics is replaced, a crash loop gives up, ephemeral
//! tasks follow the caller's transaction, graceful shutdown loses nothing, and each
//! scheduled tick runs once across three nodes driven by an injected clock.

use actix::Addr;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use warren::clock::ManualClock;
use warren::store::{NewTask, StateFilter, Store, TaskFilter, WaitFor};
use warren::task::{TaskId, TaskState};
use warren::wasm::VmLimits;
use warren_actors::*;

mod support;
use support::{copy_demo_module, repo};

/// A fresh folder under the system temp dir for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("warren-sup-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A modules folder with the demo module and a `sup` module: `sup:say` logs its
/// `say` field and completes; `sup:loop` never ends; `sup:spin` is an ephemeral loop.
/// `sup:pairloop` and `sup:pairsay` are the same codes on a second one-runner cluster.
fn modules(dir: &Path) -> PathBuf {
    let modules = dir.join("modules");
    copy_demo_module(&modules);
    let sup = modules.join("sup");
    std::fs::create_dir_all(&sup).unwrap();
    std::fs::write(
        sup.join("say.js"),
        "import { defineTask } from 'warren';\n\
         export const runTask = defineTask((task, ctx) => {\n\
           console.log(task.data.say);\n\
           ctx.resolveByCompletion({ said: task.data.say });\n\
         });\n",
    )
    .unwrap();
    std::fs::copy(
        repo().join("tests/guests/infinite_loop.js"),
        sup.join("loop.js"),
    )
    .unwrap();
    std::fs::write(
        sup.join("moduledefinition.xml"),
        r#"<module name="sup"><servicemanager>
             <taskcluster tag="solo" workers="1"/>
             <taskcluster tag="pair" workers="1"/>
             <managedtask type="say" code="say.js" cluster="solo"/>
             <managedtask type="loop" code="loop.js"/>
             <managedtask type="pairloop" code="loop.js" cluster="pair"/>
             <managedtask type="pairsay" code="say.js" cluster="pair"/>
             <ephemeraltask type="echo" code="say.js"/>
             <ephemeraltask type="spin" code="loop.js" cluster="solo"/>
             <ephemeraltask type="soloecho" code="say.js" cluster="solo"/>
           </servicemanager></module>"#,
    )
    .unwrap();
    modules
}

fn builder(dir: &Path, node: &str) -> WarrenBuilder {
    Warren::builder()
        .database(format!("sqlite://{}", dir.join("warren.db").display()))
        .modules_dir(modules(dir))
        .node_name(node)
        .engine(support::engine_config())
}

async fn start(builder: WarrenBuilder) -> Addr<Supervisor> {
    let (node, broken) = builder.start().await.expect("node starts");
    assert!(broken.is_empty(), "{broken:?}");
    node
}

async fn store(dir: &Path) -> Store {
    Store::open(&format!("sqlite://{}", dir.join("warren.db").display()))
        .await
        .unwrap()
}

async fn schedule_pings(node: &Addr<Supervisor>, n: usize) -> Vec<TaskId> {
    let mut ids = Vec::new();
    for i in 0..n {
        let task = ScheduleTask::managed("demo:ping".parse().unwrap(), json!({ "ping": i }));
        ids.push(node.send(task).await.unwrap().unwrap());
    }
    ids
}

/// Waits until `id` runs on one of the node's runners (the node has no event for a
/// start, so this looks at its status, up to a minute).
async fn running(node: &Addr<Supervisor>, id: TaskId) {
    support::eventually("the task to start", Duration::from_secs(60), || async {
        let status = node.send(Status).await.unwrap().unwrap();
        status.queue.runners.iter().any(|r| r.task_id == Some(id))
    })
    .await
}

/// Waits (woken by the store's notifications) until every task finished; returns them.
async fn finished(store: &Store, ids: &[TaskId]) -> Vec<warren::store::TaskOutcome> {
    let mut outcomes = Vec::new();
    for &id in ids {
        outcomes.push(
            store
                .wait(id, Duration::from_secs(60), WaitFor::Finished)
                .await
                .unwrap(),
        );
    }
    outcomes
}

#[actix_rt::test]
async fn a_crashed_queue_is_restarted_and_no_task_is_lost() {
    let dir = scratch("queue");
    let node = start(builder(&dir, "n1").scheduler_poll(None)).await;
    let store = store(&dir).await;
    let mut ids = schedule_pings(&node, 30).await;
    node.send(InjectFault(Child::Queue)).await.unwrap();
    ids.extend(schedule_pings(&node, 30).await);
    let outcomes = finished(&store, &ids).await;
    assert!(
        outcomes.iter().all(|o| o.state == TaskState::Completed),
        "{outcomes:?}"
    );
    // The new queue answers, and serves new work.
    let status = node.send(Status).await.unwrap().unwrap();
    assert!(!status.queue.draining);
    let more = schedule_pings(&node, 1).await;
    assert_eq!(finished(&store, &more).await[0].state, TaskState::Completed);
    // The scheduler is supervised the same way.
    node.send(InjectFault(Child::Scheduler)).await.unwrap();
    store.request_scheduled_run("demo:heartbeat").await.unwrap();
    assert_eq!(
        node.send(RunDueScheduled).await.unwrap(),
        vec!["demo:heartbeat".to_string()]
    );
    node.send(Shutdown {
        grace: Duration::from_secs(10),
    })
    .await
    .unwrap();
}

#[actix_rt::test]
async fn a_runner_whose_host_code_panics_is_replaced() {
    let dir = scratch("runner");
    let limits = VmLimits {
        panic_on_log: Some("panic the host"),
        ..VmLimits::default()
    };
    let node = start(builder(&dir, "n1").vm_limits(limits)).await;
    let store = store(&dir).await;
    // The `solo` cluster has one runner: the crash takes it down.
    let crash = node
        .send(ScheduleTask::managed(
            "sup:say".parse().unwrap(),
            json!({"say": "panic the host"}),
        ))
        .await
        .unwrap()
        .unwrap();
    let failed = store
        .wait(crash, Duration::from_secs(60), WaitFor::AnyOutcome)
        .await
        .unwrap();
    assert_eq!(failed.failures, 1, "{failed:?}");
    let error = failed.error.unwrap_or_default();
    assert!(
        error.contains("the runner crashed") && error.contains("injected host fault"),
        "{error}"
    );
    // The replacement runner serves the cluster.
    let fine = node
        .send(ScheduleTask::managed(
            "sup:say".parse().unwrap(),
            json!({"say": "hello"}),
        ))
        .await
        .unwrap()
        .unwrap();
    let outcome = store
        .wait(fine, Duration::from_secs(60), WaitFor::Finished)
        .await
        .unwrap();
    assert_eq!(
        (outcome.state, outcome.result),
        (TaskState::Completed, Some(json!({"said": "hello"})))
    );
    // Ephemeral runs crash the same way, and the caller learns why.
    let err = node
        .send(RunEphemeralTask::new(
            "sup:echo",
            json!({"say": "panic the host"}),
        ))
        .await
        .unwrap()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("the runner crashed"), "{err}");
    let ok = node
        .send(RunEphemeralTask::new("sup:echo", json!({"say": "again"})))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ok, json!({"said": "again"}));
    node.send(Shutdown {
        grace: Duration::from_secs(10),
    })
    .await
    .unwrap();
}

/// Runners share threads: a runner that crashes stops only itself, never the thread it
/// shares. With one thread for every runner, a crash of the `solo` runner leaves the
/// `pair` runner's run going: it is cancelled later without a crash on its record, and
/// that runner then serves the next task of its cluster.
#[actix_rt::test]
async fn a_crashed_runner_leaves_the_runners_of_its_thread_running() {
    let dir = scratch("shared-thread");
    let limits = VmLimits {
        panic_on_log: Some("panic the host"),
        ..VmLimits::default()
    };
    let one_thread = builder(&dir, "n1")
        .vm_limits(limits)
        .runner_threads(std::num::NonZeroUsize::MIN);
    let node = start(one_thread).await;
    let store = store(&dir).await;
    let managed = |task_type: &str, data| ScheduleTask::managed(task_type.parse().unwrap(), data);

    let endless = node
        .send(managed("sup:pairloop", json!({})))
        .await
        .unwrap()
        .unwrap();
    running(&node, endless).await;
    let crash = node
        .send(managed("sup:say", json!({"say": "panic the host"})))
        .await
        .unwrap()
        .unwrap();
    let crashed = store
        .wait(crash, Duration::from_secs(60), WaitFor::AnyOutcome)
        .await
        .unwrap();
    assert!(
        crashed
            .error
            .unwrap_or_default()
            .contains("the runner crashed"),
        "the solo runner did not crash"
    );
    // The replacement, on the same thread, serves the solo cluster.
    let after = node
        .send(managed("sup:say", json!({"say": "after"})))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        finished(&store, &[after]).await[0].state,
        TaskState::Completed
    );

    // The pair runner's endless run went on through the crash beside it.
    let next = node
        .send(managed("sup:pairsay", json!({"say": "next"})))
        .await
        .unwrap()
        .unwrap();
    let described = store.describe(endless).await.unwrap();
    assert_eq!(
        (described.state, described.failures),
        (TaskState::Running, 0),
        "the endless run stopped with the crash beside it"
    );
    node.send(CancelTask(endless)).await.unwrap().unwrap();
    let outcomes = finished(&store, &[endless, next]).await;
    assert_eq!(
        (outcomes[0].state, outcomes[0].failures),
        (TaskState::Cancelled, 0),
        "{:?}",
        outcomes[0]
    );
    assert_eq!(
        (outcomes[1].state, outcomes[1].result.clone()),
        (TaskState::Completed, Some(json!({"said": "next"})))
    );
    node.send(Shutdown {
        grace: Duration::from_secs(10),
    })
    .await
    .unwrap();
}

/// An actor that runs an endless ephemeral task for as long as it lives.
struct Caller {
    node: Addr<Supervisor>,
}

impl actix::Actor for Caller {
    type Context = actix::Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        use actix::prelude::*;
        let node = self.node.clone();
        // The task's future lives in the actor's context: it is dropped when the
        // actor stops, which kills the task.
        ctx.spawn(
            async move {
                let task = node
                    .send(RunEphemeralTask::new("sup:spin", json!({})))
                    .await
                    .unwrap();
                let _ = task.await;
            }
            .into_actor(self),
        );
    }
}

#[derive(actix::Message)]
#[rtype(result = "()")]
struct StopCaller;

impl actix::Handler<StopCaller> for Caller {
    type Result = ();
    fn handle(&mut self, _: StopCaller, ctx: &mut actix::Context<Self>) {
        use actix::ActorContext;
        ctx.stop();
    }
}

#[actix_rt::test]
async fn a_stopped_callers_ephemeral_task_is_killed_and_its_runner_serves_the_next() {
    use actix::Actor;
    let dir = scratch("caller");
    let node = start(builder(&dir, "n1")).await;
    let caller = Caller { node: node.clone() }.start();
    let spinning = || async {
        let status = node.send(Status).await.unwrap().unwrap();
        status
            .queue
            .runners
            .iter()
            .any(|r| r.task_type.as_deref() == Some("sup:spin"))
    };
    support::eventually("the endless task to run", Duration::from_secs(60), spinning).await;
    caller.send(StopCaller).await.unwrap();
    // `solo` has one runner: the next task there runs only if the endless one died.
    let next = node
        .send(RunEphemeralTask::new(
            "sup:soloecho",
            json!({"say": "next"}),
        ))
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(next, json!({"said": "next"}));
    assert!(!spinning().await);
    node.send(Shutdown {
        grace: Duration::from_secs(10),
    })
    .await
    .unwrap();
}

#[actix_rt::test]
async fn too_many_crashes_within_the_window_give_up() {
    let dir = scratch("giveup");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let node = start(
        builder(&dir, "n1")
            .restart_policy(1, Duration::from_secs(3600))
            .on_give_up(move |why| {
                let _ = tx.send(why.to_string());
            }),
    )
    .await;
    let store = store(&dir).await;
    node.send(InjectFault(Child::Queue)).await.unwrap();
    // One crash is within the policy: the node still works.
    let ids = schedule_pings(&node, 1).await;
    assert_eq!(finished(&store, &ids).await[0].state, TaskState::Completed);
    node.send(InjectFault(Child::Queue)).await.unwrap();
    let why = rx.recv().await.expect("the supervisor gives up");
    assert!(
        why.contains("giving up: 2 crashes") && why.contains("injected fault: the queue panics"),
        "{why}"
    );
    // It unregistered the node on the way out.
    assert!(store.list_nodes().await.unwrap().is_empty());
}

#[actix_rt::test]
async fn an_ephemeral_task_in_a_transaction_starts_on_commit_and_not_on_rollback() {
    let dir = scratch("ephemeral-tx");
    let node = start(builder(&dir, "n1")).await;
    let store = store(&dir).await;

    let mut conn = store.connection().await.unwrap();
    conn.begin().await.unwrap();
    let task = node
        .send(
            RunEphemeralTask::new("sup:echo", json!({"say": "committed"}))
                .after_commit(conn.after_commit()),
        )
        .await
        .unwrap();
    // Nothing runs while the transaction is open.
    let status = node.send(Status).await.unwrap().unwrap();
    assert!(
        status.queue.runners.iter().all(|r| r.task_type.is_none()),
        "{:?}",
        status.queue.runners
    );
    conn.commit().await.unwrap();
    assert_eq!(task.await.unwrap(), json!({"said": "committed"}));

    conn.begin().await.unwrap();
    let task = node
        .send(
            RunEphemeralTask::new("sup:echo", json!({"say": "rolled back"}))
                .after_commit(conn.after_commit()),
        )
        .await
        .unwrap();
    conn.rollback().await.unwrap();
    let err = task.await.unwrap_err().to_string();
    assert!(err.contains("did not commit"), "{err}");

    // A managed task scheduled on the same connection exists only after the commit,
    // and the commit wakes the queue.
    conn.begin().await.unwrap();
    let id = conn
        .schedule(NewTask::new(
            "demo:ping".parse().unwrap(),
            json!({"ping": 7}),
        ))
        .await
        .unwrap();
    conn.commit().await.unwrap();
    let outcome = store
        .wait(id, Duration::from_secs(60), WaitFor::Finished)
        .await
        .unwrap();
    assert_eq!(outcome.result, Some(json!({"pong": 7})));
    node.send(Shutdown {
        grace: Duration::from_secs(10),
    })
    .await
    .unwrap();
}

#[actix_rt::test]
async fn graceful_shutdown_loses_nothing() {
    let dir = scratch("shutdown");
    let node = start(builder(&dir, "n1")).await;
    let store = store(&dir).await;
    let ids = schedule_pings(&node, 200).await;
    let endless = node
        .send(ScheduleTask::managed(
            "sup:loop".parse().unwrap(),
            json!({}),
        ))
        .await
        .unwrap()
        .unwrap();
    running(&node, endless).await;
    node.send(Shutdown {
        grace: Duration::from_millis(500),
    })
    .await
    .unwrap();
    // Nothing is left running or leased: every task either completed or waits.
    let all = store
        .list(&TaskFilter {
            limit: 1000,
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 201);
    for task in &all {
        assert!(
            matches!(task.state, TaskState::Completed | TaskState::Pending),
            "task {} is {:?}",
            task.id,
            task.state
        );
        assert_eq!(task.lease_owner, None, "task {} keeps a lease", task.id);
    }
    // The endless task was killed at the end of the grace period: one failed attempt,
    // to be retried.
    let looped = store.describe(endless).await.unwrap();
    assert_eq!((looped.state, looped.failures), (TaskState::Pending, 1));
    store.cancel(endless, "test over").await.unwrap();

    // A new node finishes the rest; every ping ran exactly once.
    let node = start(builder(&dir, "n2")).await;
    let outcomes = finished(&store, &ids).await;
    assert!(outcomes.iter().all(|o| o.state == TaskState::Completed));
    let completed = store
        .list(&TaskFilter {
            state: StateFilter::Completed,
            limit: 1000,
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(completed.len(), 200);
    assert!(completed.iter().all(|t| t.iterations == 1));
    node.send(Shutdown {
        grace: Duration::from_secs(10),
    })
    .await
    .unwrap();
}

/// Instant of a UTC date-time.
fn at(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap()
        .timestamp_millis()
}

#[actix_rt::test]
async fn each_scheduled_tick_runs_once_across_three_nodes() {
    let dir = scratch("ticks");
    // Monday 2026-11-30 13:58:30 UTC = 14:58:30 in Amsterdam.
    let clock = ManualClock::new(at("2026-11-30T13:58:30Z"));
    let mut nodes = Vec::new();
    for name in ["a", "b", "c"] {
        let b = builder(&dir, name)
            .clock(clock.clone() as Arc<dyn warren::clock::Clock>)
            .scheduler_poll(None);
        nodes.push(start(b).await);
    }
    let run_everywhere = || async {
        let answers =
            futures_util::future::join_all(nodes.iter().map(|n| n.send(RunDueScheduled))).await;
        let mut tags: Vec<String> = answers.into_iter().flat_map(Result::unwrap).collect();
        tags.sort();
        tags
    };
    // Syncing the schedule set every tag's next run; nothing is due yet.
    assert_eq!(run_everywhere().await, Vec::<String>::new());
    // 13:59:00: the every-minute heartbeat, on exactly one node.
    clock.set(at("2026-11-30T13:59:00Z"));
    assert_eq!(run_everywhere().await, vec!["demo:heartbeat"]);
    assert_eq!(run_everywhere().await, Vec::<String>::new());
    // 14:00:00 = 15:00 in Amsterdam on a Monday: both tags, once each.
    clock.set(at("2026-11-30T14:00:00Z"));
    assert_eq!(
        run_everywhere().await,
        vec!["demo:heartbeat", "demo:mondays"]
    );
    // Ten missed minutes coalesce into one run.
    clock.set(at("2026-11-30T14:10:30Z"));
    assert_eq!(run_everywhere().await, vec!["demo:heartbeat"]);
    let states = store(&dir).await.list_scheduled().await.unwrap();
    let heartbeat = states.iter().find(|s| s.tag == "demo:heartbeat").unwrap();
    assert_eq!(heartbeat.last_outcome.as_deref(), Some("completed"));
    assert_eq!(heartbeat.next_run, Some(at("2026-11-30T14:11:00Z")));
    let mondays = states.iter().find(|s| s.tag == "demo:mondays").unwrap();
    assert_eq!(mondays.next_run, Some(at("2026-12-07T14:00:00Z")));
    for node in nodes {
        node.send(Shutdown {
            grace: Duration::from_secs(10),
        })
        .await
        .unwrap();
    }
}
