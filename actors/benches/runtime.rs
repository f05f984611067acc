//! End-to-end throughput and latency of a Warren node, with the JavaScript `ping` task
//! of the demo module (`{"ping": n}` → `{"pong": n}`) compiled to WebAssembly.
//!
//! Measures, per backend (SQLite file; PostgreSQL when a server is named):
//! - managed throughput with 1 and 4 runners: N tasks scheduled in one batch commit,
//!   timed from just before that commit until every task completed (the runners claim,
//!   run the guest and commit each resolution; on PostgreSQL, the completions of runs
//!   that did no SQL and finish at the same moment share a commit);
//! - commit-to-start latency: one task at a time on an idle node, from the commit that
//!   scheduled it to the moment its run started (reported by the runner through the
//!   `test-hooks` probe, monotonic microseconds), p50/p99, and to the moment a waiter
//!   saw its outcome; in turn for tasks scheduled for their waiter (`waited`) and
//!   tasks whose wait must mark them (on PostgreSQL a write that can race the claim);
//! - ephemeral round trip on warm runners: `RunEphemeralTask` sent and its result
//!   received by one caller in a loop (p50/p99), and the throughput of 4 callers;
//! - with 16 runners, the drain of a backlog of 10,000 tasks (`WARREN_BENCH_DRAIN_TASKS`),
//!   timed as the peer times its drain: from the moment the scheduled backlog may run
//!   (its type resumed) to the last completion: no-op tasks, tasks that insert one row in their
//!   own transaction (checked to leave every row exactly once), and tasks that log a
//!   line, so that every run is recorded in its task's history (what a recorded run
//!   costs beside the no-op, which is not recorded);
//! - on PostgreSQL, the peer graphile-worker in the same run when Node.js and its
//!   folder are present (see `runtime/graphile.rs`), its configurations A–D, and the
//!   ratios the performance goals are stated in: Warren's no-op drain to A and B, its
//!   insert drain to C and D.
//!
//! Run: `cargo bench --bench runtime`. PostgreSQL runs when `WARREN_BENCH_DATABASE_URL`
//! (or `WARREN_TEST_DATABASE_URL`) names a server such as
//! `postgres://postgres@127.0.0.1/postgres`; the bench creates `warren_rt_<pid>` there
//! and drops it at the end. `WARREN_BENCH_BACKENDS=sqlite|postgres` runs one backend;
//! `WARREN_BENCH_TASKS=N` sets the managed task count (default 4,000; SQLite 2,000);
//! `WARREN_BENCH_SAMPLES=N` the latency samples (default 300 / 3,000 ephemeral);
//! `WARREN_BENCH_NODES` and `WARREN_BENCH_DRAINS` run a part alone (see `Parts`);
//! `WARREN_BENCH_IDLE_SPIN_US=N` sets the nodes' idle spin (`WarrenBuilder::idle_spin`;
//! 0 measures without it); `WARREN_BENCH_RUN_GROUP_SIZE=N` the most runs of a runner
//! that share a commit (`WarrenBuilder::run_groups`; 1 measures without run groups), and
//! `WARREN_BENCH_RUN_GROUP_MS=N` how long after its first completion a group may still
//! take a run; `WARREN_BENCH_PERF_MAP=1` has the engine write a perf map, so that a
//! profile (`scripts/drain-cpu.py` with `PROFILE`) names guest functions.
//! JavaScript is compiled with the toolkit embedded in warren, installed (needs Node.js
//! 18 or later and npm) under the tests' cache folder (`warren_testkit::test_cache_dir`) like the tests' before any
//! node starts.

#[path = "runtime/graphile.rs"]
mod graphile;

use serde_json::json;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use warren::store::{
    AnyConn, NewTask, PauseTarget, ScheduleOptions, StateFilter, Store, TaskFilter, WaitFor,
};
use warren::task::TaskId;
use warren::wasm::{EngineConfig, JsToolkit};
use warren_actors::{GetNodeContext, RunEphemeralTask, Shutdown, Supervisor, Warren};

type BenchResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

use warren_testkit::{repo, test_cache_dir};

fn env_count(name: &str, default: usize) -> BenchResult<usize> {
    match std::env::var(name) {
        Ok(v) => Ok(v
            .parse()
            .map_err(|_| format!("{name}={v} is not a count"))?),
        Err(_) => Ok(default),
    }
}

/// `bench:insert`: one row into `bench_effects` in the run's own transaction, committed
/// with the completion (exactly once).
const INSERT_JS: &str = r#"import { defineTask } from 'warren';
export const runTask = defineTask((task, ctx) => {
  ctx.execute('INSERT INTO bench_effects (task_id) VALUES ($1)', [task.id]);
  ctx.resolveByCompletion({});
});
"#;

/// `bench:log`: logs one line and completes, so that each run is recorded in the task's
/// history (a quiet completion is not): what a recorded run costs, beside the no-op.
const LOG_JS: &str = r#"import { defineTask } from 'warren';
export const runTask = defineTask((task, ctx) => {
  console.log(`task ${task.id} ran`);
  ctx.resolveByCompletion({});
});
"#;

/// A modules folder with a `bench` module: managed `bench:ping` and ephemeral
/// `bench:echo` (both the demo's ping code), and managed `bench:insert` (one row per
/// task), in a cluster of `runners`.
fn modules(runners: usize) -> BenchResult<PathBuf> {
    let dir =
        std::env::temp_dir().join(format!("warren-bench-rt-{}-{runners}", std::process::id()));
    let module = dir.join("bench");
    std::fs::create_dir_all(&module)?;
    std::fs::copy(
        repo().join("examples/modules/demo/tasks/ping.js"),
        module.join("ping.js"),
    )?;
    std::fs::write(module.join("insert.js"), INSERT_JS)?;
    std::fs::write(module.join("log.js"), LOG_JS)?;
    std::fs::write(
        module.join("moduledefinition.xml"),
        format!(
            r#"<module name="bench"><servicemanager>
                 <taskcluster tag="bench" workers="{runners}"/>
                 <managedtask type="ping" code="ping.js" cluster="bench"/>
                 <managedtask type="insert" code="insert.js" cluster="bench"/>
                 <managedtask type="log" code="log.js" cluster="bench"/>
                 <ephemeraltask type="echo" code="ping.js" cluster="bench"/>
               </servicemanager></module>"#
        ),
    )?;
    Ok(dir)
}

/// The toolkit the tests install (or `$WARREN_JS_KIT`), installed now so no node
/// start is timed with the install in it.
fn js_toolkit() -> BenchResult<JsToolkit> {
    let kit = JsToolkit::locate_in(&test_cache_dir());
    kit.prepare()?;
    Ok(kit)
}

/// Receives each managed run's start, as the runner reports it.
type Starts = tokio::sync::mpsc::UnboundedReceiver<(TaskId, Instant)>;

async fn start(url: &str, runners: usize) -> BenchResult<(actix::Addr<Supervisor>, Starts)> {
    let (probe, starts) = tokio::sync::mpsc::unbounded_channel();
    let mut builder = Warren::builder();
    if std::env::var_os("WARREN_BENCH_IDLE_SPIN_US").is_some() {
        let us = env_count("WARREN_BENCH_IDLE_SPIN_US", 0)?;
        builder = builder.idle_spin(Duration::from_micros(us as u64));
    }
    if std::env::var_os("WARREN_BENCH_RUN_GROUP_SIZE").is_some()
        || std::env::var_os("WARREN_BENCH_RUN_GROUP_MS").is_some()
    {
        let default = warren::store::GroupBounds::default();
        builder = builder.run_groups(warren::store::GroupBounds {
            max_runs: env_count("WARREN_BENCH_RUN_GROUP_SIZE", default.max_runs)?.max(1),
            max_age_ms: env_count("WARREN_BENCH_RUN_GROUP_MS", default.max_age_ms as usize)? as i64,
        });
    }
    let (node, broken) = builder
        .database(url)
        .modules_dir(modules(runners)?)
        .node_name(format!("bench-{runners}"))
        .engine(EngineConfig {
            cache_dir: Some(repo().join("target/warren-bench-cache")),
            js: Some(js_toolkit()?),
            perf_map: std::env::var_os("WARREN_BENCH_PERF_MAP").is_some(),
            ..EngineConfig::default()
        })
        .probe_run_starts(probe)
        .start()
        .await?;
    if !broken.is_empty() {
        return Err(format!("{broken:?}").into());
    }
    Ok((node, starts))
}

fn ping(n: usize) -> NewTask {
    task(PING, n)
}

/// Managed no-op task type.
const PING: &str = "bench:ping";
/// Managed task type inserting one row.
const INSERT: &str = "bench:insert";
/// Managed task type that logs one line (each run recorded in the history).
const LOG: &str = "bench:log";

fn task(task_type: &str, n: usize) -> NewTask {
    NewTask::new(task_type.parse().expect("valid type"), json!({ "ping": n }))
}

/// Waits until every task in `ids` completed, woken by the store's notifications: the
/// last one scheduled is about the last to run, so wait for it, then for whichever
/// are still unfinished (one listing), then check that all completed (one count).
async fn wait_all(store: &Store, ids: &[TaskId], task_type: &str) -> BenchResult<()> {
    let Some(&last) = ids.last() else {
        return Ok(());
    };
    store
        .wait(last, Duration::from_secs(600), WaitFor::Finished)
        .await?;
    let unfinished = TaskFilter {
        type_mask: Some(task_type.into()),
        state: StateFilter::Unfinished,
        limit: 10_000,
        ..TaskFilter::default()
    };
    for task in store.list(&unfinished).await? {
        store
            .wait(task.id, Duration::from_secs(600), WaitFor::Finished)
            .await?;
    }
    let not_completed: i64 = store
        .queue_counts()
        .await?
        .iter()
        .filter(|c| c.task_type == task_type)
        .map(|c| c.failed + c.cancelled + c.pending + c.future + c.running)
        .sum();
    if not_completed > 0 {
        return Err(format!("{not_completed} {task_type} tasks did not complete").into());
    }
    Ok(())
}

/// One printed figure.
struct Row {
    backend: &'static str,
    name: String,
    value: f64,
    unit: &'static str,
}

fn record(
    rows: &mut Vec<Row>,
    backend: &'static str,
    name: String,
    value: f64,
    unit: &'static str,
) {
    println!(
        "{}",
        json!({"backend": backend, "measurement": name, "value": value, "unit": unit})
    );
    rows.push(Row {
        backend,
        name,
        value,
        unit,
    });
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn managed_throughput(
    store: &Store,
    backend: &'static str,
    runners: usize,
    tasks: usize,
    rows: &mut Vec<Row>,
) -> BenchResult<()> {
    // Warm every runner's VM first.
    let warm: Vec<NewTask> = (0..runners * 4).map(ping).collect();
    wait_all(store, &store.schedule_batch(&warm).await?, PING).await?;
    let batch: Vec<NewTask> = (0..tasks).map(ping).collect();
    let started = Instant::now();
    let ids = store.schedule_batch(&batch).await?;
    wait_all(store, &ids, PING).await?;

    let seconds = started.elapsed().as_secs_f64();
    record(
        rows,
        backend,
        format!("managed, {runners} runner(s), {tasks} tasks"),
        tasks as f64 / seconds,
        "tasks/s",
    );
    Ok(())
}

/// Drains a backlog of `tasks` tasks of `task_type` on a warm node the way the peer
/// drains its jobs (`runtime/graphile.rs`): the queue table is vacuumed and analyzed
/// (PostgreSQL), the backlog is scheduled in one commit while the type is paused, and
/// the drain is timed from its resume until the last task completed. (The peer enqueues
/// with no worker running and times from the worker's start.) For [`INSERT`], checks
/// that every task's row exists exactly once.
async fn drain(
    store: &Store,
    backend: &'static str,
    runners: usize,
    tasks: usize,
    task_type: &str,
    rows: &mut Vec<Row>,
) -> BenchResult<f64> {
    let warm: Vec<NewTask> = (0..runners * 4).map(|n| task(task_type, n)).collect();
    wait_all(store, &store.schedule_batch(&warm).await?, task_type).await?;
    let before = effects(store).await?;
    let paused = PauseTarget::TaskType(task_type.to_string());
    store.pause(&paused).await?;
    vacuum_queue_table(store).await?;
    let batch: Vec<NewTask> = (0..tasks).map(|n| task(task_type, n)).collect();
    let ids = store.schedule_batch(&batch).await?;
    let started = Instant::now();
    store.resume(&paused).await?;
    wait_all(store, &ids, task_type).await?;
    let per_second = tasks as f64 / started.elapsed().as_secs_f64();

    if task_type == INSERT {
        let after = effects(store).await?;
        let (rows_added, distinct_added) = (after.0 - before.0, after.1 - before.1);
        if rows_added != tasks as i64 || distinct_added != tasks as i64 {
            return Err(format!(
                "{tasks} insert tasks completed but left {rows_added} rows for \
                 {distinct_added} tasks: not exactly once"
            )
            .into());
        }
    }
    if task_type == LOG {
        // Each run logged a line, so each is in its task's history.
        let last = *ids.last().ok_or("no tasks")?;
        let runs = store.task_runs(last).await?;
        if runs.len() != 1 || runs[0].log.is_empty() {
            return Err(
                format!("task {last}'s run was not recorded with its log: {runs:?}").into(),
            );
        }
    }
    let what = match task_type {
        INSERT => "insert one row",
        LOG => "log-one-line (each run recorded)",
        _ => "no-op",
    };
    record(
        rows,
        backend,
        format!("drain {tasks} {what} tasks, {runners} runners"),
        per_second,
        "tasks/s",
    );
    Ok(per_second)
}

/// `VACUUM ANALYZE` of the queue table on PostgreSQL, as the peer does to its jobs
/// table before each of its runs: earlier parts of the bench leave dead row versions.
async fn vacuum_queue_table(store: &Store) -> BenchResult<()> {
    use diesel_async::SimpleAsyncConnection;
    let mut conn = store.connection().await?;
    if let AnyConn::Postgres(c) = conn.as_any() {
        c.batch_execute("VACUUM ANALYZE warren_tasks").await?;
    }
    Ok(())
}

/// The table `bench:insert` writes to, created on the node's database.
async fn create_effects_table(store: &Store) -> BenchResult<()> {
    use diesel_async::SimpleAsyncConnection;
    const SQL: &str = "CREATE TABLE IF NOT EXISTS bench_effects (task_id BIGINT NOT NULL)";
    let mut conn = store.connection().await?;
    match conn.as_any() {
        AnyConn::Postgres(c) => c.batch_execute(SQL).await?,
        AnyConn::Sqlite(c) => c.batch_execute(SQL).await?,
    }
    Ok(())
}

/// Rows in `bench_effects`, and distinct task ids among them.
async fn effects(store: &Store) -> BenchResult<(i64, i64)> {
    use diesel::sql_types::BigInt;
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Counts {
        #[diesel(sql_type = BigInt)]
        n: i64,
        #[diesel(sql_type = BigInt)]
        d: i64,
    }
    let query =
        diesel::sql_query("SELECT count(*) AS n, count(DISTINCT task_id) AS d FROM bench_effects");
    let mut conn = store.connection().await?;
    let counts: Counts = match conn.as_any() {
        AnyConn::Postgres(c) => query.get_result(c).await?,
        AnyConn::Sqlite(c) => query.get_result(c).await?,
    };
    Ok((counts.n, counts.d))
}

async fn commit_to_start(
    store: &Store,
    starts: &mut Starts,
    backend: &'static str,
    samples: usize,
    rows: &mut Vec<Row>,
) -> BenchResult<()> {
    // Two kinds of task, taken in turn: one scheduled for its waiter (`waited`, as
    // `warren schedule --wait` does), and one the wait must mark first. On PostgreSQL
    // that mark locks the task's row for a moment, and a claim running just then skips
    // the task and claims again (`docs/state-machine.md`, "Waiting").
    let kinds = [
        ("task scheduled for its waiter", true),
        ("the wait marks the task", false),
    ];
    let mut to_start = [Vec::with_capacity(samples), Vec::with_capacity(samples)];
    let mut to_outcome = [Vec::with_capacity(samples), Vec::with_capacity(samples)];
    // Starts of the runs before this measurement.
    while starts.try_recv().is_ok() {}
    for i in 0..samples * kinds.len() {
        let k = i % kinds.len();
        let task = ping(i).with_options(ScheduleOptions {
            waited: kinds[k].1,
            ..ScheduleOptions::default()
        });
        let mut conn = store.connection().await?;
        conn.begin().await?;
        let id = conn.schedule(task).await?;
        conn.commit().await?;
        // From when the caller learns that its commit is done. The node may hear of
        // the task a little earlier (the NOTIFY travels with the commit): such a
        // start counts as 0.
        let committed = Instant::now();
        drop(conn);
        store
            .wait(id, Duration::from_secs(60), WaitFor::Finished)
            .await?;
        to_outcome[k].push(committed.elapsed().as_secs_f64() * 1e6);
        let started = loop {
            match starts.try_recv() {
                Ok((started_id, at)) if started_id == id => break at,
                Ok(_) => continue,
                Err(_) => return Err(format!("task {id} finished without a reported start").into()),
            }
        };
        to_start[k].push(started.saturating_duration_since(committed).as_secs_f64() * 1e6);
    }
    for (k, (kind, _)) in kinds.iter().enumerate() {
        to_start[k].sort_by(f64::total_cmp);
        to_outcome[k].sort_by(f64::total_cmp);
        for (what, sorted) in [
            ("start", &to_start[k]),
            ("outcome seen by a waiter", &to_outcome[k]),
        ] {
            for p in [50.0, 99.0] {
                record(
                    rows,
                    backend,
                    format!("commit to {what} p{p}, {kind} ({samples} samples)"),
                    percentile(sorted, p),
                    "µs",
                );
            }
        }
    }
    Ok(())
}

async fn ephemeral(
    node: &actix::Addr<Supervisor>,
    backend: &'static str,
    samples: usize,
    rows: &mut Vec<Row>,
) -> BenchResult<()> {
    let call = |n: usize| async move {
        node.send(RunEphemeralTask::new("bench:echo", json!({ "ping": n })))
            .await?
            .await
            .map_err(|e| -> Box<dyn Error + Send + Sync> { e.into() })
    };
    for n in 0..100 {
        call(n).await?;
    }
    let mut latencies = Vec::with_capacity(samples);
    for n in 0..samples {
        let t = Instant::now();
        let answer = call(n).await?;
        latencies.push(t.elapsed().as_secs_f64() * 1e6);
        if answer != json!({ "pong": n }) {
            return Err(format!("unexpected answer {answer}").into());
        }
    }
    latencies.sort_by(f64::total_cmp);
    record(
        rows,
        backend,
        "ephemeral round trip p50".into(),
        percentile(&latencies, 50.0),
        "µs",
    );
    record(
        rows,
        backend,
        "ephemeral round trip p99".into(),
        percentile(&latencies, 99.0),
        "µs",
    );
    let callers = 4;
    let started = Instant::now();
    let per_caller = samples / callers;
    let runs = (0..callers).map(|c| async move {
        for n in 0..per_caller {
            call(c * per_caller + n).await?;
        }
        Ok::<_, Box<dyn Error + Send + Sync>>(())
    });
    for result in futures_util::future::join_all(runs).await {
        result?;
    }
    record(
        rows,
        backend,
        format!("ephemeral, {callers} callers"),
        (per_caller * callers) as f64 / started.elapsed().as_secs_f64(),
        "tasks/s",
    );
    Ok(())
}

/// Which parts of the bench run: by default all of them. `WARREN_BENCH_NODES=1,4,16`
/// picks the nodes (1 and 4 runners: throughput and latencies; 16: the drains) and
/// `WARREN_BENCH_DRAINS=ping,insert,log` the drains, so that a profile can run one
/// part alone.
struct Parts {
    nodes: Vec<usize>,
    drains: Vec<&'static str>,
}

impl Parts {
    fn from_env() -> BenchResult<Parts> {
        let nodes = match std::env::var("WARREN_BENCH_NODES") {
            Ok(list) => list
                .split(',')
                .map(|n| match n.trim().parse() {
                    Ok(r @ (1 | 4 | 16)) => Ok(r),
                    _ => Err(format!("WARREN_BENCH_NODES: {n:?} is not 1, 4 or 16")),
                })
                .collect::<Result<_, _>>()?,
            Err(_) => vec![1, 4, 16],
        };
        let drains = match std::env::var("WARREN_BENCH_DRAINS") {
            Ok(list) => list
                .split(',')
                .map(|d| match d.trim() {
                    "ping" => Ok(PING),
                    "insert" => Ok(INSERT),
                    "log" => Ok(LOG),
                    other => Err(format!(
                        "WARREN_BENCH_DRAINS: {other:?} is not ping, insert or log"
                    )),
                })
                .collect::<Result<_, _>>()?,
            Err(_) => vec![PING, INSERT, LOG],
        };
        Ok(Parts { nodes, drains })
    }
}

/// Drain rates of the 16-runner node, for the ratios to the peer.
#[derive(Debug, Default, Clone, Copy)]
struct Drained {
    no_op: f64,
    insert: f64,
}

async fn bench_backend(
    url: &str,
    backend: &'static str,
    rows: &mut Vec<Row>,
) -> BenchResult<Drained> {
    let default_tasks = if backend == "sqlite" { 2_000 } else { 4_000 };
    let tasks = env_count("WARREN_BENCH_TASKS", default_tasks)?;
    let samples = env_count("WARREN_BENCH_SAMPLES", 300)?;
    let drain_tasks = env_count("WARREN_BENCH_DRAIN_TASKS", 10_000)?;
    let parts = Parts::from_env()?;
    let mut drained = Drained::default();
    for runners in [1, 4, 16] {
        if !parts.nodes.contains(&runners) {
            continue;
        }
        let (node, mut starts) = start(url, runners).await?;
        let store = node.send(GetNodeContext).await?.store;
        if runners == 16 {
            create_effects_table(&store).await?;
            if parts.drains.contains(&PING) {
                drained.no_op = drain(&store, backend, runners, drain_tasks, PING, rows).await?;
            }
            if parts.drains.contains(&INSERT) {
                drained.insert = drain(&store, backend, runners, drain_tasks, INSERT, rows).await?;
            }
            if parts.drains.contains(&LOG) {
                drain(&store, backend, runners, drain_tasks, LOG, rows).await?;
            }
        } else {
            managed_throughput(&store, backend, runners, tasks, rows).await?;
        }
        if runners == 4 {
            commit_to_start(&store, &mut starts, backend, samples, rows).await?;
            ephemeral(&node, backend, samples * 10, rows).await?;
        }
        node.send(Shutdown {
            grace: Duration::from_secs(30),
        })
        .await?;
        let left = store
            .list(&TaskFilter {
                state: StateFilter::Unfinished,
                limit: 10,
                ..TaskFilter::default()
            })
            .await?;
        if !left.is_empty() {
            return Err(format!("tasks left unfinished: {left:?}").into());
        }
    }
    Ok(drained)
}

async fn bench_postgres(server: &str, rows: &mut Vec<Row>) -> BenchResult<()> {
    let drained = {
        let db = warren_testkit::FreshDatabase::create(server, "warren_rt").await?;
        bench_backend(db.url(), "postgres", rows).await?
    };
    let peer = match graphile::locate() {
        Ok(peer) => peer,
        Err(why) => {
            println!("skipped graphile-worker: {why}");
            return Ok(());
        }
    };
    let work = graphile::prepare(&peer)?;
    let mut rates = Vec::new();
    for config in graphile::CONFIGS {
        let db = warren_testkit::FreshDatabase::create(server, "warren_gw").await?;
        let url = db.url().to_string();
        let work = work.clone();
        let (rate, line) =
            tokio::task::spawn_blocking(move || graphile::run(&work, config, &url)).await??;
        eprintln!("graphile-worker {config}: {line}");
        record(
            rows,
            "peer",
            format!("graphile-worker {config}, drain 20000 jobs, 16 workers"),
            rate,
            "jobs/s",
        );
        rates.push(rate);
    }
    // Warren's no-op drain against A and B, its exactly-once insert against C and D.
    let pairs = [
        ("no-op", drained.no_op, "A", rates[0]),
        ("no-op", drained.no_op, "B", rates[1]),
        ("insert one row", drained.insert, "C", rates[2]),
        ("insert one row", drained.insert, "D", rates[3]),
    ];
    for (what, ours, config, theirs) in pairs {
        if ours == 0.0 {
            continue; // that drain did not run (`WARREN_BENCH_DRAINS`)
        }
        record(
            rows,
            "ratio",
            format!("Warren {what} / graphile-worker {config}"),
            ours / theirs,
            "x",
        );
    }
    Ok(())
}

fn print_table(rows: &[Row]) {
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(10);
    println!();
    println!(
        "{:<8}  {:<width$}  {:>10}",
        "backend", "measurement", "value"
    );
    println!("{}", "-".repeat(8 + 2 + width + 2 + 16));
    for r in rows {
        println!(
            "{:<8}  {:<width$}  {:>10.1} {}",
            r.backend, r.name, r.value, r.unit
        );
    }
}

fn sqlite_file(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("bench.db").display())
}

fn main() -> BenchResult<()> {
    let only = std::env::var("WARREN_BENCH_BACKENDS").unwrap_or_default();
    let wants = |b: &str| only.is_empty() || only.split(',').any(|o| o.trim() == b);
    let mut rows = Vec::new();
    actix_rt::System::new().block_on(async {
        if wants("sqlite") {
            let dir = std::env::temp_dir().join(format!("warren-bench-rt-db-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir)?;
            let result = bench_backend(&sqlite_file(&dir), "sqlite", &mut rows).await;
            let _ = std::fs::remove_dir_all(&dir);
            result?;
        }
        if wants("postgres") {
            let server = ["WARREN_BENCH_DATABASE_URL", "WARREN_TEST_DATABASE_URL"]
                .iter()
                .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()));
            match server {
                Some(server) => bench_postgres(&server, &mut rows).await?,
                None => println!(
                    "skipped PostgreSQL: set WARREN_BENCH_DATABASE_URL (or WARREN_TEST_DATABASE_URL) \
                     to a server URL such as postgres://postgres@127.0.0.1/postgres"
                ),
            }
        }
        Ok::<_, Box<dyn Error + Send + Sync>>(())
    })?;
    print_table(&rows);
    Ok(())
}
