//! Several `warren serve` processes on one PostgreSQL database share the queue: 2,000
//! tasks that each insert one row in their transaction, one node SIGKILLed mid-run.
//! Every task completes, every row exists exactly once, and the killed node's tasks are
//! finished by the others after its leases expire.
//!
//! Needs `WARREN_TEST_DATABASE_URL` (a PostgreSQL server URL); skipped loudly without it
//! (failing under `CI=true`).

mod support;

use diesel_async::SimpleAsyncConnection;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use warren::store::{NewTask, StateFilter, Store, TaskFilter};
use warren::task::TaskState;

const TASKS: usize = 2000;

fn module_dir() -> PathBuf {
    modules_with_slow_insert(
        "multi",
        r#"<module name="multi"><servicemanager>
             <taskcluster tag="default" workers="2"/>
             <managedtask type="insert" code="tasks/slow_insert.js"/>
           </servicemanager></module>"#,
    )
}

/// A modules folder of its own holding module `name`, with `tests/guests/slow_insert.js`
/// as `tasks/slow_insert.js` and `definition` as its module definition.
fn modules_with_slow_insert(name: &str, definition: &str) -> PathBuf {
    modules_with_guest(name, "slow_insert.js", definition)
}

/// A modules folder of its own holding module `name`, with `tests/guests/GUEST` as
/// `tasks/GUEST` and `definition` as its module definition.
fn modules_with_guest(name: &str, guest: &str, definition: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("warren-multinode-{name}-{}", std::process::id()));
    let module = dir.join(name);
    std::fs::create_dir_all(module.join("tasks")).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/guests")
            .join(guest),
        module.join("tasks").join(guest),
    )
    .unwrap();
    std::fs::write(module.join("moduledefinition.xml"), definition).unwrap();
    dir
}

fn warren(args: &[&str], db: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warren"));
    support::use_test_cache(&mut cmd)
        .args(args)
        .env("WARREN_DATABASE_URL", db)
        .env("RUST_LOG", "warn");
    cmd
}

/// A fresh database with an `effects` table, and `modules` compiled into the tests'
/// cache: the database, its URL and a store on it.
async fn prepared(
    server: &str,
    name: &str,
    modules: &Path,
) -> (warren_testkit::FreshDatabase, String, Store) {
    let fresh = warren_testkit::FreshDatabase::create(server, name)
        .await
        .unwrap();
    let db = fresh.url().to_string();
    let store = Store::open(&db).await.unwrap();
    let mut conn = store.connection().await.unwrap();
    if let warren::store::AnyConn::Postgres(c) = conn.as_any() {
        c.batch_execute("CREATE TABLE effects (task_id BIGINT NOT NULL)")
            .await
            .unwrap();
    }
    drop(conn);
    let built = warren(&["build", modules.to_str().unwrap()], &db)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    (fresh, db, store)
}

/// `warren serve` as node `name` with `extra` arguments; three nodes on one machine,
/// so each dashboard listens on a port of its own.
fn serve(modules: &Path, db: &str, name: &str, extra: &[&str]) -> Child {
    let mut args = vec![
        "serve",
        "--modules",
        modules.to_str().unwrap(),
        "--node",
        name,
    ];
    args.extend_from_slice(extra);
    args.extend(["--listen", "127.0.0.1:0"]);
    warren(&args, db).stdout(Stdio::null()).spawn().unwrap()
}

/// The rows in `effects`, and the distinct tasks that wrote them.
async fn effects(store: &Store) -> (i64, i64) {
    let mut conn = store.connection().await.unwrap();
    let warren::store::AnyConn::Postgres(c) = conn.as_any() else {
        unreachable!("the multi-node tests run on PostgreSQL")
    };
    #[derive(diesel::QueryableByName)]
    struct Counts {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        rows: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        distinct_tasks: i64,
    }
    let counts: Vec<Counts> = diesel_async::RunQueryDsl::load(
        diesel::sql_query(
            "SELECT COUNT(*) AS rows, COUNT(DISTINCT task_id) AS distinct_tasks FROM effects",
        ),
        c,
    )
    .await
    .unwrap();
    (counts[0].rows, counts[0].distinct_tasks)
}

/// How many sessions wait for an advisory lock of the store's database.
async fn lock_waiters(store: &Store) -> i64 {
    let mut conn = store.connection().await.unwrap();
    let warren::store::AnyConn::Postgres(c) = conn.as_any() else {
        unreachable!("the multi-node tests run on PostgreSQL")
    };
    #[derive(diesel::QueryableByName)]
    struct Waiting {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let rows: Vec<Waiting> = diesel_async::RunQueryDsl::load(
        diesel::sql_query(
            "SELECT COUNT(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        ),
        c,
    )
    .await
    .unwrap();
    rows[0].n
}

struct Nodes(Vec<Child>);

/// Three `warren serve` nodes named `NAME1` to `NAME3`, once all three have registered.
async fn three_nodes(modules: &Path, db: &str, name: &str, store: &Store) -> Nodes {
    let nodes = Nodes(
        (1..=3)
            .map(|n| serve(modules, db, &format!("{name}{n}"), &[]))
            .collect(),
    );
    support::eventually(
        "the three nodes to register",
        Duration::from_secs(120),
        || {
            let store = store.clone();
            async move { store.list_nodes().await.unwrap().len() == 3 }
        },
    )
    .await;
    nodes
}

/// Three nodes of 3 runners each running `NAME:work` (the guest `keyed_span.js`, which
/// records each run's start and end in the table `spans`) with the flow rules `rules`
/// (attributes of its `<managedtask>`), on a fresh database named after `name`.
async fn spans_cluster(
    server: &str,
    name: &str,
    rules: &str,
) -> (PathBuf, warren_testkit::FreshDatabase, Store, Nodes) {
    let modules = modules_with_guest(
        name,
        "keyed_span.js",
        &format!(
            r#"<module name="{name}"><servicemanager>
             <taskcluster tag="default" workers="3"/>
             <managedtask type="work" code="tasks/keyed_span.js" {rules}/>
           </servicemanager></module>"#
        ),
    );
    let (fresh, db, store) =
        prepared(server, &format!("warren_t_multinode_{name}"), &modules).await;
    let mut conn = store.connection().await.unwrap();
    if let warren::store::AnyConn::Postgres(c) = conn.as_any() {
        c.batch_execute(
            "CREATE TABLE spans (task_id BIGINT PRIMARY KEY, tenant TEXT NOT NULL, \
             started TIMESTAMPTZ NOT NULL, ended TIMESTAMPTZ)",
        )
        .await
        .unwrap();
    }
    drop(conn);
    let nodes = three_nodes(&modules, &db, name, &store).await;
    (modules, fresh, store, nodes)
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_the_queue_and_survive_a_killed_node() {
    let Some(server) = warren_testkit::admin_url("the multi-node test") else {
        return;
    };
    let modules = module_dir();
    let (fresh, db, store) = prepared(&server, "warren_t_multinode", &modules).await;

    let tasks: Vec<NewTask> = (0..TASKS)
        .map(|i| NewTask::new("multi:insert".parse().unwrap(), json!({ "i": i })))
        .collect();
    store.schedule_batch(&tasks).await.unwrap();

    let mut nodes = Nodes(
        (1..=3)
            .map(|n| {
                serve(
                    &modules,
                    &db,
                    &format!("node{n}"),
                    &["--lease", "2", "--grace", "5"],
                )
            })
            .collect(),
    );

    let completed = |store: Store| async move {
        store
            .queue_counts()
            .await
            .unwrap()
            .iter()
            .map(|c| c.completed)
            .sum::<i64>()
    };
    // Let the nodes get going, then kill node2 in the middle of its work.
    let started = Instant::now();
    while completed(store.clone()).await < (TASKS / 5) as i64 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the nodes make no progress"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    nodes.0[1].kill().unwrap();
    nodes.0[1].wait().unwrap();
    let orphans: Vec<warren::task::TaskId> = store
        .list(&TaskFilter {
            state: StateFilter::Running,
            limit: 100,
            ..TaskFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.lease_owner.as_deref() == Some("node2"))
        .map(|t| t.id)
        .collect();
    assert!(
        !orphans.is_empty(),
        "node2 was killed while it held no task"
    );

    while completed(store.clone()).await < TASKS as i64 {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "not every task completed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Every row exactly once.
    assert_eq!(effects(&store).await, (TASKS as i64, TASKS as i64));

    // node2's tasks were taken over after their leases expired.
    for id in orphans {
        let t = store.describe(id).await.unwrap();
        assert_eq!(t.state, TaskState::Completed, "task {id}");
        assert!(t.failures >= 1, "task {id} should count the lost run");
        assert_ne!(t.lease_owner.as_deref(), Some("node2"));
    }

    // The survivors shut down gracefully on SIGTERM.
    for i in [0, 2] {
        let pid = nodes.0[i].id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = nodes.0[i].wait().unwrap();
        assert!(status.success(), "node exit {status:?}");
    }
    drop(store);
    drop(fresh);
    let _ = std::fs::remove_dir_all(modules);
}

/// A node SIGKILLed while one of its runners holds a run group open (a completed run's
/// work written and its completion held, not committed, and the next run of the group
/// under way): PostgreSQL rolls the group back, and both tasks run again on another node
/// after their leases expire, each row written exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_while_a_run_group_is_open_loses_no_run_and_repeats_none() {
    const WARM: usize = 10;
    let Some(server) = warren_testkit::admin_url("the run group kill test") else {
        return;
    };
    let modules = modules_with_guest(
        "grp",
        "grouped_insert.js",
        r#"<module name="grp"><servicemanager>
             <taskcluster tag="default" workers="1"/>
             <managedtask type="insert" code="tasks/grouped_insert.js"/>
           </servicemanager></module>"#,
    );
    let (fresh, db, store) = prepared(&server, "warren_t_group_kill", &modules).await;
    // A group stays joinable for 10 s, so that the machine's speed cannot keep the
    // second run out of it.
    let args = ["--lease", "2", "--grace", "1", "--run-group-ms", "10000"];
    let mut node1 = Nodes(vec![serve(&modules, &db, "gk1", &args)]);
    let task = |hold: bool| NewTask::new("grp:insert".parse().unwrap(), json!({ "hold": hold }));
    let completed = |id: warren::task::TaskId| {
        let store = store.clone();
        async move { store.describe(id).await.unwrap().state == TaskState::Completed }
    };
    // Ten tasks first, so that the node has compiled the code, warmed a VM, and counts
    // the type's runs as short (only those group). (The two tasks below then reach the
    // runner one after the other, claimed ahead or each by the claim its runner's last
    // run left out, which keeps the group open.)
    let warm = store
        .schedule_batch(&(0..WARM).map(|_| task(false)).collect::<Vec<_>>())
        .await
        .unwrap();
    support::eventually(
        "the first tasks to complete",
        Duration::from_secs(120),
        || {
            let all = futures_util::future::join_all(warm.iter().map(|&id| completed(id)));
            async move { all.await.into_iter().all(|done| done) }
        },
    )
    .await;

    // The test holds the advisory lock the second task waits for.
    let mut holder = store.connection().await.unwrap();
    let warren::store::AnyConn::Postgres(lock) = holder.as_any() else {
        unreachable!("PostgreSQL")
    };
    lock.batch_execute("SELECT pg_advisory_lock(42)")
        .await
        .unwrap();
    let ids = store
        .schedule_batch(&[task(false), task(true)])
        .await
        .unwrap();
    let (first, second) = (ids[0], ids[1]);
    support::eventually(
        "the second run to wait for the lock",
        Duration::from_secs(60),
        || {
            let store = store.clone();
            async move { lock_waiters(&store).await == 1 }
        },
    )
    .await;
    // The first run completed into the group: the cluster has one runner, and the
    // second run is under way on it, yet the first's row is still `running` (its
    // completion is held for the group's commit) and its row in `effects` is not
    // visible. Alone, it would have committed before the second run began.
    let t = store.describe(first).await.unwrap();
    assert_eq!(t.state, TaskState::Running, "the first run committed alone");
    assert_eq!(effects(&store).await, (WARM as i64, WARM as i64));

    node1.0[0].kill().unwrap();
    node1.0[0].wait().unwrap();
    // The killed node's backend goes on waiting for the lock; once it has it, it finds
    // its client gone and rolls the group back.
    lock.batch_execute("SELECT pg_advisory_unlock(42)")
        .await
        .unwrap();
    drop(holder);

    let mut node2 = Nodes(vec![serve(&modules, &db, "gk2", &args)]);
    support::eventually(
        "both tasks to complete on the second node",
        Duration::from_secs(120),
        || {
            let (a, b) = (completed(first), completed(second));
            async move { a.await && b.await }
        },
    )
    .await;
    // Every row exactly once: the first ten's, the first's and the second's.
    let all = WARM as i64 + 2;
    assert_eq!(effects(&store).await, (all, all));
    for id in [first, second] {
        let t = store.describe(id).await.unwrap();
        assert!(t.failures >= 1, "task {id}: the lost run is counted");
        assert_eq!(t.lease_owner, None);
    }
    node2.0[0].kill().unwrap();
    node2.0[0].wait().unwrap();
    drop(store);
    drop(fresh);
    let _ = std::fs::remove_dir_all(modules);
}

/// A modules folder for the pause test: `pause:insert` in cluster `default` and
/// `pause:marker` in cluster `other`, both inserting one row per task.
fn pause_module_dir() -> PathBuf {
    modules_with_slow_insert(
        "pause",
        r#"<module name="pause"><servicemanager>
             <taskcluster tag="default" workers="2"/>
             <taskcluster tag="other" workers="1"/>
             <managedtask type="insert" code="tasks/slow_insert.js"/>
             <managedtask type="marker" code="tasks/slow_insert.js" cluster="other"/>
           </servicemanager></module>"#,
    )
}

/// Three nodes, paused from the command line as an operator would: while the cluster
/// `default` (then the type `pause:insert`) is paused, none of the nodes starts its
/// tasks, though they run the tasks of cluster `other` scheduled after them; once
/// resumed, every held task runs exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_hold_paused_work_until_it_is_resumed() {
    let Some(server) = warren_testkit::admin_url("the multi-node pause test") else {
        return;
    };
    let modules = pause_module_dir();
    let (fresh, db, store) = prepared(&server, "warren_t_multinode_pause", &modules).await;
    let cli = |args: &[&str]| {
        let out = warren(args, &db).output().unwrap();
        assert!(
            out.status.success(),
            "warren {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(cli(&["clusters", "pause", "default"]).contains("cluster 'default' paused"));

    let nodes = three_nodes(&modules, &db, "pause", &store).await;

    // Opened after the nodes registered their types, so it puts tasks in their
    // types' clusters.
    let scheduler = Store::open(&db).await.unwrap();
    let schedule = |task_type: &str, n: usize| {
        let tasks: Vec<NewTask> = (0..n)
            .map(|i| NewTask::new(task_type.parse().unwrap(), json!({ "i": i })))
            .collect();
        let store = scheduler.clone();
        async move { store.schedule_batch(&tasks).await.unwrap() }
    };
    let finish_all = |ids: Vec<warren::task::TaskId>| {
        let store = store.clone();
        async move {
            for id in ids {
                let outcome = store
                    .wait(
                        id,
                        Duration::from_secs(120),
                        warren::store::WaitFor::Finished,
                    )
                    .await
                    .unwrap();
                assert_eq!(outcome.state, TaskState::Completed, "task {id}");
            }
        }
    };
    let unstarted = |ids: Vec<warren::task::TaskId>| {
        let store = store.clone();
        async move {
            for id in ids {
                let t = store.describe(id).await.unwrap();
                assert_eq!(
                    (t.state, t.started_at),
                    (TaskState::Pending, None),
                    "paused task {id} was started"
                );
            }
        }
    };

    // The cluster is paused: the nodes run the other cluster's tasks, scheduled after
    // the held ones (each node's queue is woken for both), and none of the held ones.
    let held = schedule("pause:insert", 30).await;
    finish_all(schedule("pause:marker", 10).await).await;
    unstarted(held.clone()).await;
    let listed = cli(&["clusters", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let default = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "default")
        .unwrap();
    assert!(default["paused_since"].is_i64(), "{default}");
    assert_eq!(default["live_nodes"], 3, "{default}");

    // The type is paused instead of the cluster: the same, and then both are resumed.
    assert!(cli(&["types", "pause", "pause:insert"]).contains("paused"));
    assert!(cli(&["clusters", "resume", "default"]).contains("resumed"));
    finish_all(schedule("pause:marker", 10).await).await;
    unstarted(held.clone()).await;
    assert!(cli(&["types", "resume", "pause:insert"]).contains("resumed"));
    finish_all(held.clone()).await;

    // Every held task ran exactly once.
    assert_eq!(effects(&store).await, (50, 50));
    drop(nodes);
    drop(store);
    drop(fresh);
    let _ = std::fs::remove_dir_all(modules);
}

/// Three nodes of three runners each run `flow:work` (at most 2 running per tenant):
/// tenant `big`'s 60 tasks are at the head of the queue, then 10 of each of three
/// small tenants. No tenant ever runs more than 2 at once (each run records when it
/// began and ended in its own transaction), `big` does reach 2, the small tenants
/// finish long before `big` does (a full key holds up no other), and every task runs
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_keep_each_key_within_its_concurrency_limit() {
    let Some(server) = warren_testkit::admin_url("the multi-node concurrency test") else {
        return;
    };
    let (modules, fresh, store, nodes) = spans_cluster(
        &server,
        "flow",
        r#"concurrency="2" concurrencykey="tenant""#,
    )
    .await;
    let mut tasks: Vec<NewTask> = (0..60)
        .map(|i| {
            NewTask::new(
                "flow:work".parse().unwrap(),
                json!({ "tenant": "big", "i": i }),
            )
        })
        .collect();
    for tenant in ["t1", "t2", "t3"] {
        tasks.extend((0..10).map(|i| {
            NewTask::new(
                "flow:work".parse().unwrap(),
                json!({ "tenant": tenant, "i": i }),
            )
        }));
    }
    let ids = store.schedule_batch(&tasks).await.unwrap();
    for id in ids {
        let outcome = store
            .wait(
                id,
                Duration::from_secs(120),
                warren::store::WaitFor::Finished,
            )
            .await
            .unwrap();
        assert_eq!(outcome.state, TaskState::Completed, "task {id}");
    }

    #[derive(diesel::QueryableByName)]
    struct Tenant {
        #[diesel(sql_type = diesel::sql_types::Text)]
        tenant: String,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        runs: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        most_at_once: i64,
        #[diesel(sql_type = diesel::sql_types::Double)]
        last_end: f64,
    }
    let mut conn = store.connection().await.unwrap();
    let warren::store::AnyConn::Postgres(c) = conn.as_any() else {
        unreachable!("the multi-node tests run on PostgreSQL")
    };
    // For each run's start, the runs of its tenant in progress at that instant.
    let tenants: Vec<Tenant> = diesel_async::RunQueryDsl::load(
        diesel::sql_query(
            "SELECT a.tenant, count(DISTINCT a.task_id) AS runs, max(o.n) AS most_at_once, \
             extract(epoch FROM max(a.ended))::float8 AS last_end \
             FROM spans a CROSS JOIN LATERAL (SELECT count(*) AS n FROM spans b \
             WHERE b.tenant = a.tenant AND b.started <= a.started AND b.ended > a.started) o \
             GROUP BY a.tenant ORDER BY a.tenant",
        ),
        c,
    )
    .await
    .unwrap();
    drop(conn);
    let by_name = |name: &str| tenants.iter().find(|t| t.tenant == name).unwrap();
    let big = by_name("big");
    assert_eq!(big.runs, 60, "each task ran once");
    assert_eq!(
        big.most_at_once, 2,
        "big reached its limit and never passed it"
    );
    for small in ["t1", "t2", "t3"] {
        let t = by_name(small);
        assert_eq!(t.runs, 10, "{small}: each task ran once");
        assert!(
            t.most_at_once <= 2,
            "{small} ran {} at once",
            t.most_at_once
        );
        assert!(
            t.last_end < big.last_end,
            "{small} finished after big: it waited behind a full key"
        );
    }
    drop(nodes);
    drop(store);
    drop(fresh);
    let _ = std::fs::remove_dir_all(modules);
}

/// Three nodes share a rate limit of 20 starts per second with bursts of 2, although
/// their nine runners could start hundreds per second: every ten-second window of
/// their runs holds 200 starts ± 10% (each run records its start in its own
/// transaction). The windows start a second after the first start: in that second each
/// runner also starts its VM, so the first tasks claimed start late, bunched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_hold_a_rate_limit_within_ten_percent_over_ten_seconds() {
    let Some(server) = warren_testkit::admin_url("the multi-node rate-limit test") else {
        return;
    };
    let (modules, fresh, store, nodes) =
        spans_cluster(&server, "rate", r#"ratelimit="20/s" ratelimitburst="2""#).await;
    let tasks: Vec<NewTask> = (0..300)
        .map(|i| {
            NewTask::new(
                "rate:work".parse().unwrap(),
                json!({ "tenant": "all", "i": i }),
            )
        })
        .collect();
    let ids = store.schedule_batch(&tasks).await.unwrap();
    // Tasks start in queue order: the 281st starts about 14 s after the first.
    let outcome = store
        .wait(
            ids[280],
            Duration::from_secs(120),
            warren::store::WaitFor::Finished,
        )
        .await
        .unwrap();
    assert_eq!(outcome.state, TaskState::Completed);

    #[derive(diesel::QueryableByName)]
    struct Start {
        #[diesel(sql_type = diesel::sql_types::Double)]
        at: f64,
    }
    let mut conn = store.connection().await.unwrap();
    let warren::store::AnyConn::Postgres(c) = conn.as_any() else {
        unreachable!("the multi-node tests run on PostgreSQL")
    };
    let starts: Vec<f64> = diesel_async::RunQueryDsl::load::<Start>(
        diesel::sql_query(
            "SELECT extract(epoch FROM started)::float8 AS at FROM spans ORDER BY started",
        ),
        c,
    )
    .await
    .unwrap()
    .into_iter()
    .map(|s| s.at)
    .collect();
    drop(conn);
    let first = starts[0];
    let last = *starts.last().unwrap();
    assert!(last - first >= 12.0, "the runs span {:.1} s", last - first);
    let within = |from: f64| {
        starts
            .iter()
            .filter(|&&s| s >= from && s < from + 10.0)
            .count()
    };
    let per_second: Vec<usize> = (0..((last - first) as usize + 1))
        .map(|i| {
            let from = first + i as f64;
            starts
                .iter()
                .filter(|&&s| s >= from && s < from + 1.0)
                .count()
        })
        .collect();
    // Every ten-second window from a start a second on that the recorded runs cover.
    let windows: Vec<usize> = starts
        .iter()
        .filter(|&&s| s >= first + 1.0 && s + 10.0 <= last)
        .map(|&s| within(s))
        .collect();
    let (fewest, most) = (windows.iter().min().unwrap(), windows.iter().max().unwrap());
    eprintln!(
        "rate limit 20/s: {fewest} to {most} starts per ten seconds, {} in the first ten; \
         per second: {per_second:?}",
        within(first)
    );
    assert!(
        *fewest >= 180 && *most <= 220,
        "{fewest} to {most} starts per ten seconds, for a limit of 200; per second: {per_second:?}"
    );
    drop(nodes);
    drop(store);
    drop(fresh);
    let _ = std::fs::remove_dir_all(modules);
}
