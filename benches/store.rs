//! Throughput of the task store on SQLite and PostgreSQL.
//!
//! Measures, per backend:
//! - single enqueue: one `Store::schedule` per task, each in its own transaction; on
//!   PostgreSQL also with a second store listening for wake-ups, as a running node does
//!   (each enqueue's `NOTIFY` then wakes that session);
//! - batch enqueue: `Store::schedule_batch` of 1,000 tasks per call;
//! - claim → complete with 1, 4 and 16 concurrent workers. Each worker loops
//!   `claim(.., 1, ..)` (one task per claim), `begin_run`, `resolve(Completion)` until
//!   the queue is empty. A second variant claims up to 10 tasks at a time (as a node's
//!   queue claims ahead for its runners) and still resolves each one by itself.
//!   A worker moves on only once its completion has committed. These tasks do no
//!   database work, so on PostgreSQL completions that finish at the same moment share
//!   a statement and a commit (the JSON line reports how many did, on average); each
//!   is still fenced by its own token.
//! - the same with task SQL: each run inserts a row in its own transaction, and the
//!   completion commits with it (no sharing: one commit per task).
//! - claim up to 10 + complete, 1 worker, with a paused task type whose
//!   `WARREN_BENCH_PAUSED_TASKS` (default 10,000; 0 leaves it out) due tasks sort before
//!   the work: what a large paused backlog at the head of a cluster costs each claim
//!   (`Store::pause`).
//! - bulk actions (`Store::bulk`) on `WARREN_BENCH_BULK_TASKS` (default 100,000; 0
//!   leaves them out) pending tasks: cancel them all, retry them all, delete them all;
//!   each row also gives the longest of the action's batch transactions.
//!
//! The queue is pre-filled with `schedule_batch` before each claim measurement, outside
//! the timed section, and emptied between measurements.
//!
//! Run: `cargo bench --bench store`. SQLite uses a temporary file. PostgreSQL runs when
//! `WARREN_BENCH_DATABASE_URL` (or `WARREN_TEST_DATABASE_URL`) names a server, e.g.
//! `postgres://postgres@127.0.0.1/postgres`; the bench creates the database
//! `warren_bench_<pid>` there and drops it at the end.
//!
//! Sizes: `WARREN_BENCH_TASKS=N` sets the task count of every measurement (for a quick
//! run); `WARREN_BENCH_SINGLE_TASKS`, `WARREN_BENCH_BATCH_TASKS` and
//! `WARREN_BENCH_CLAIM_TASKS` set one kind each. `WARREN_BENCH_WORKERS=16` (a
//! comma-separated list) replaces the worker counts 1, 4, 16. `WARREN_BENCH_BACKENDS=sqlite`
//! or `=postgres` runs one backend only. A run that is interrupted leaves its PostgreSQL
//! database behind (`DROP DATABASE warren_bench_<pid> WITH (FORCE)` removes it).
//!
//! Output: a table at the end, and one JSON line per measurement as it finishes.

use diesel::QueryableByName;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use serde_json::json;
use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warren::clock::SystemClock;
use warren::store::{
    AnyConn, BulkAction, BulkOptions, NewTask, PauseTarget, ResolveOutcome, ScheduleOptions,
    StateFilter, Store, StoreConfig, TaskFilter, TypeRegistration,
};
use warren::task::{Priority, Resolution, RetryPolicy, TaskType};

type BenchResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

const LEASE_MS: i64 = 60_000;
const BATCH: usize = 1_000;
const WORKER_COUNTS: [usize; 3] = [1, 4, 16];

/// Task counts of one backend's measurements.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    single: usize,
    batch: usize,
    claim: usize,
}

impl Sizes {
    /// Defaults for a backend (SQLite is slower per commit), then env overrides.
    fn for_backend(postgres: bool) -> BenchResult<Sizes> {
        let mut sizes = if postgres {
            Sizes {
                single: 5_000,
                batch: 100_000,
                claim: 20_000,
            }
        } else {
            Sizes {
                single: 5_000,
                batch: 100_000,
                claim: 10_000,
            }
        };
        if let Some(n) = env_count("WARREN_BENCH_TASKS")? {
            sizes = Sizes {
                single: n,
                batch: n,
                claim: n,
            };
        }
        sizes.single = env_count("WARREN_BENCH_SINGLE_TASKS")?.unwrap_or(sizes.single);
        sizes.batch = env_count("WARREN_BENCH_BATCH_TASKS")?.unwrap_or(sizes.batch);
        sizes.claim = env_count("WARREN_BENCH_CLAIM_TASKS")?.unwrap_or(sizes.claim);
        // Whole batches only.
        sizes.batch = sizes.batch.div_ceil(BATCH).max(1) * BATCH;
        Ok(sizes)
    }
}

/// A count from the environment where 0 is allowed (it leaves a measurement out).
fn env_count_or_zero(name: &str) -> BenchResult<Option<usize>> {
    match std::env::var(name) {
        Ok(v) if v.trim() == "0" => Ok(Some(0)),
        _ => env_count(name),
    }
}

fn env_count(name: &str) -> BenchResult<Option<usize>> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => {
            let n: usize = v
                .trim()
                .parse()
                .map_err(|_| format!("{name}={v} is not a whole number"))?;
            if n == 0 {
                return Err(format!("{name} must be at least 1").into());
            }
            Ok(Some(n))
        }
        _ => Ok(None),
    }
}

/// One row of the report.
struct Measurement {
    backend: &'static str,
    name: String,
    tasks: usize,
    seconds: f64,
    /// Mean completions per statement and commit, where completions were grouped.
    completions_per_commit: Option<f64>,
    /// The longest transaction of a bulk action, in ms.
    longest_tx_ms: Option<u64>,
}

impl Measurement {
    fn per_second(&self) -> f64 {
        self.tasks as f64 / self.seconds
    }

    fn json_line(&self) -> String {
        json!({
            "backend": self.backend,
            "measurement": self.name,
            "tasks": self.tasks,
            "seconds": (self.seconds * 1000.0).round() / 1000.0,
            "tasks_per_s": self.per_second().round(),
            "completions_per_commit": self.completions_per_commit,
            "longest_tx_ms": self.longest_tx_ms,
        })
        .to_string()
    }
}

fn bench_task(i: usize) -> NewTask {
    let task_type: TaskType = "bench:noop".parse().expect("valid task type");
    NewTask::new(task_type, json!({ "i": i }))
}

fn clusters() -> Vec<String> {
    vec!["default".to_string()]
}

/// Runs SQL text on a pooled connection of the store (bench housekeeping only).
async fn exec(store: &Store, sql: &str) -> BenchResult<()> {
    let mut conn = store.connection().await?;
    match conn.as_any() {
        AnyConn::Postgres(c) => c.batch_execute(sql).await?,
        AnyConn::Sqlite(c) => c.batch_execute(sql).await?,
    }
    Ok(())
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

async fn count(store: &Store, sql: &str) -> BenchResult<i64> {
    let mut conn = store.connection().await?;
    let rows: Vec<Count> = match conn.as_any() {
        AnyConn::Postgres(c) => diesel::sql_query(sql).load(c).await?,
        AnyConn::Sqlite(c) => diesel::sql_query(sql).load(c).await?,
    };
    Ok(rows[0].n)
}

/// Empties the queue so each measurement starts from the same state.
async fn reset(store: &Store, postgres: bool) -> BenchResult<()> {
    if postgres {
        exec(
            store,
            "CREATE TABLE IF NOT EXISTS bench_effects (task_id BIGINT NOT NULL); \
             TRUNCATE bench_effects, warren_task_runs, warren_task_metadata, \
             warren_task_progress, warren_tasks",
        )
        .await
    } else {
        exec(
            store,
            "CREATE TABLE IF NOT EXISTS bench_effects (task_id BIGINT NOT NULL); \
             DELETE FROM bench_effects; DELETE FROM warren_task_runs; \
             DELETE FROM warren_task_metadata; DELETE FROM warren_task_progress; \
             DELETE FROM warren_tasks",
        )
        .await
    }
}

/// Fills the queue with `n` due tasks in batches (not timed), then refreshes the
/// planner's statistics as autovacuum would on a live queue.
async fn prefill(store: &Store, postgres: bool, n: usize) -> BenchResult<()> {
    let mut next = 0;
    while next < n {
        let end = (next + BATCH).min(n);
        let tasks: Vec<NewTask> = (next..end).map(bench_task).collect();
        store.schedule_batch(&tasks).await?;
        next = end;
    }
    exec(
        store,
        if postgres {
            "ANALYZE warren_tasks"
        } else {
            "ANALYZE"
        },
    )
    .await
}

async fn single_enqueue(store: &Store, n: usize) -> BenchResult<Duration> {
    let start = Instant::now();
    for i in 0..n {
        store.schedule(bench_task(i)).await?;
    }
    Ok(start.elapsed())
}

/// Schedules `n` tasks one by one, each in a transaction the caller opens and commits
/// on a connection of the store's (begin, the insert that also sends the wake-up, commit).
async fn single_enqueue_in_callers_tx(store: &Store, n: usize) -> BenchResult<Duration> {
    let mut conn = store.connection().await?;
    let start = Instant::now();
    for i in 0..n {
        conn.begin().await?;
        conn.schedule(bench_task(i)).await?;
        conn.commit().await?;
    }
    Ok(start.elapsed())
}

/// A floor for single enqueues: `n` one-row INSERTs, each committing on its own, through
/// the same driver. diesel parses a `sql_query` anew on every call, so this is two
/// round trips per row; the database's one-client commit rate is pgbench's
/// (`pgbench -n -c 1 -M prepared` with a one-row INSERT script), quoted beside it.
async fn one_row_commits(store: &Store, n: usize) -> BenchResult<Duration> {
    exec(store, "DROP TABLE IF EXISTS bench_commits").await?;
    exec(store, "CREATE TABLE bench_commits (n BIGINT NOT NULL)").await?;
    let mut conn = store.connection().await?;
    let start = Instant::now();
    for i in 0..n {
        let insert = diesel::sql_query("INSERT INTO bench_commits (n) VALUES ($1)")
            .bind::<diesel::sql_types::BigInt, _>(i as i64);
        match conn.as_any() {
            AnyConn::Postgres(c) => insert.execute(c).await?,
            AnyConn::Sqlite(c) => {
                diesel::sql_query(format!("INSERT INTO bench_commits (n) VALUES ({i})"))
                    .execute(c)
                    .await?
            }
        };
    }
    let elapsed = start.elapsed();
    exec(store, "DROP TABLE bench_commits").await?;
    Ok(elapsed)
}

async fn batch_enqueue(store: &Store, n: usize) -> BenchResult<Duration> {
    // Build the tasks first: the bench measures the store, not JSON construction.
    let batches: Vec<Vec<NewTask>> = (0..n / BATCH)
        .map(|b| (b * BATCH..(b + 1) * BATCH).map(bench_task).collect())
        .collect();
    let start = Instant::now();
    for batch in &batches {
        store.schedule_batch(batch).await?;
    }
    Ok(start.elapsed())
}

/// What each run does before its completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Work {
    /// Nothing: the run is completed by one fenced statement.
    None,
    /// Inserts a row in the run's own transaction, which commits with the completion.
    Insert,
}

/// One worker: claims up to `per_claim` tasks, opens each one's run, does `work` and
/// resolves it by completion, until a claim comes back empty. Returns how many tasks
/// it completed.
async fn worker(store: Store, owner: String, per_claim: usize, work: Work) -> BenchResult<usize> {
    let clusters = clusters();
    let mut done = 0;
    loop {
        let claimed = store.claim(&owner, &clusters, per_claim, LEASE_MS).await?;
        if claimed.is_empty() {
            return Ok(done);
        }
        for task in claimed {
            let id = task.task.id;
            let mut run = store.begin_run(task).await?;
            if work == Work::Insert {
                let sql = format!("INSERT INTO bench_effects (task_id) VALUES ({id})");
                match run.conn().await? {
                    AnyConn::Postgres(c) => c.batch_execute(&sql).await?,
                    AnyConn::Sqlite(c) => c.batch_execute(&sql).await?,
                }
            }
            let outcome = run
                .resolve(
                    Resolution::Completion {
                        result: "{}".to_string(),
                    },
                    RetryPolicy::default(),
                )
                .await?;
            if outcome != ResolveOutcome::Completed {
                return Err(format!("unexpected outcome {outcome:?}").into());
            }
            done += 1;
        }
    }
}

async fn claim_complete(
    store: &Store,
    workers: usize,
    per_claim: usize,
    work: Work,
    n: usize,
) -> BenchResult<Duration> {
    let start = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            tokio::spawn(worker(
                store.clone(),
                format!("bench-worker-{w}"),
                per_claim,
                work,
            ))
        })
        .collect();
    let mut done = 0;
    for handle in handles {
        done += handle.await??;
    }
    let elapsed = start.elapsed();
    if done != n {
        return Err(format!("workers completed {done} tasks, expected {n}").into());
    }
    let completed = count(
        store,
        "SELECT COUNT(*) AS n FROM warren_tasks WHERE state = 'completed'",
    )
    .await?;
    if completed != n as i64 {
        return Err(format!("{completed} tasks completed in the database, expected {n}").into());
    }
    if work == Work::Insert {
        let effects = count(store, "SELECT COUNT(*) AS n FROM bench_effects").await?;
        if effects != n as i64 {
            return Err(format!("{effects} rows inserted by runs, expected {n}").into());
        }
    }
    Ok(elapsed)
}

/// The worker counts of the claim measurements: `WARREN_BENCH_WORKERS` or 1, 4, 16.
fn worker_counts() -> BenchResult<Vec<usize>> {
    match std::env::var("WARREN_BENCH_WORKERS") {
        Ok(list) if !list.trim().is_empty() => list
            .split(',')
            .map(|w| match w.trim().parse::<usize>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!("WARREN_BENCH_WORKERS: '{w}' is not a worker count").into()),
            })
            .collect(),
        _ => Ok(WORKER_COUNTS.to_vec()),
    }
}

/// Runs every measurement against an open store, printing a JSON line after each.
/// `listener_url` (PostgreSQL) is the database a second store opens to listen for
/// wake-ups while single enqueues are measured again.
async fn run_all(
    store: &Store,
    listener_url: Option<&str>,
    backend: &'static str,
    sizes: Sizes,
    out: &mut Vec<Measurement>,
) -> BenchResult<()> {
    let postgres = backend == "postgres";
    let workers_list = worker_counts()?;
    let mut record = |name: String, tasks: usize, elapsed: Duration, shared: Option<f64>| {
        let m = Measurement {
            backend,
            name,
            tasks,
            seconds: elapsed.as_secs_f64(),
            completions_per_commit: shared,
            longest_tx_ms: None,
        };
        println!("{}", m.json_line());
        out.push(m);
    };

    let elapsed = one_row_commits(store, sizes.single).await?;
    record(
        "floor: one-row INSERT (parsed each time) committing alone, 1 client".into(),
        sizes.single,
        elapsed,
        None,
    );

    reset(store, postgres).await?;
    let elapsed = single_enqueue(store, sizes.single).await?;
    let how = if postgres { "one statement" } else { "1 tx" };
    record(
        format!("single enqueue (schedule: {how} per task)"),
        sizes.single,
        elapsed,
        None,
    );

    reset(store, postgres).await?;
    let elapsed = single_enqueue_in_callers_tx(store, sizes.single).await?;
    record(
        "single enqueue in a caller's tx (begin, schedule, commit)".into(),
        sizes.single,
        elapsed,
        None,
    );

    if let Some(url) = listener_url {
        // A running node listens for wake-ups, and PostgreSQL signals every listening
        // session at each commit that notifies: what a single enqueue costs then.
        let node = Store::open_with(StoreConfig::new(url), Arc::new(SystemClock)).await?;
        let _wakeups = node.subscribe_work().await?;
        reset(store, postgres).await?;
        let elapsed = single_enqueue(store, sizes.single).await?;
        record(
            "single enqueue, another store listening for wake-ups".into(),
            sizes.single,
            elapsed,
            None,
        );
    }

    reset(store, postgres).await?;
    let elapsed = batch_enqueue(store, sizes.batch).await?;
    record(
        format!("batch enqueue (schedule_batch of {BATCH})"),
        sizes.batch,
        elapsed,
        None,
    );

    let variants = [(1, Work::None), (10, Work::None), (10, Work::Insert)];
    for (per_claim, work) in variants {
        for &workers in &workers_list {
            reset(store, postgres).await?;
            prefill(store, postgres, sizes.claim).await?;
            let before = store.completion_stats();
            let elapsed = claim_complete(store, workers, per_claim, work, sizes.claim).await?;
            let after = store.completion_stats();
            let claim = if per_claim == 1 {
                "claim 1".to_string()
            } else {
                format!("claim up to {per_claim}")
            };
            let work = match work {
                Work::None => "complete",
                Work::Insert => "insert + complete in the run's tx",
            };
            let plural = if workers == 1 { "" } else { "s" };
            let statements = after.groups - before.groups;
            let shared = if statements > 0 {
                let per = (after.items - before.items) as f64 / statements as f64;
                Some((per * 10.0).round() / 10.0)
            } else {
                None
            };
            record(
                format!("{claim} + {work}, {workers} worker{plural}"),
                sizes.claim,
                elapsed,
                shared,
            );
        }
    }
    // 0 leaves the measurement out (for instruction counts comparable with builds
    // that do not have it).
    let paused = env_count_or_zero("WARREN_BENCH_PAUSED_TASKS")?.unwrap_or(10_000);
    if paused > 0 {
        reset(store, postgres).await?;
        let elapsed = claim_past_paused(store, postgres, paused, sizes.claim).await?;
        record(
            format!("claim up to 10 + complete, 1 worker, past {paused} paused tasks"),
            sizes.claim,
            elapsed,
            None,
        );
    }
    let bulk = env_count_or_zero("WARREN_BENCH_BULK_TASKS")?.unwrap_or(100_000);
    if bulk > 0 {
        reset(store, postgres).await?;
        prefill(store, postgres, bulk).await?;
        for (action, state) in [
            (BulkAction::Cancel, StateFilter::Pending),
            (BulkAction::Retry, StateFilter::Cancelled),
            (BulkAction::Delete, StateFilter::All),
        ] {
            let filter = TaskFilter {
                type_mask: Some("bench:*".into()),
                state,
                ..TaskFilter::default()
            };
            let start = Instant::now();
            let report = store.bulk(action, &filter, &BulkOptions::default()).await?;
            let elapsed = start.elapsed();
            if report.changed != bulk as u64 {
                return Err(
                    format!("bulk {action} changed {} of {bulk} tasks", report.changed).into(),
                );
            }
            let m = Measurement {
                backend,
                name: format!("bulk {action} of every matching task ({state:?})"),
                tasks: bulk,
                seconds: elapsed.as_secs_f64(),
                completions_per_commit: None,
                longest_tx_ms: Some(report.longest_batch_ms),
            };
            println!("{}", m.json_line());
            out.push(m);
        }
    }
    Ok(())
}

/// Claims and completes `n` tasks (1 worker, up to 10 per claim) while `paused` more
/// urgent tasks of a paused type are due at the head of the same cluster; resumes the
/// type afterwards.
async fn claim_past_paused(
    store: &Store,
    postgres: bool,
    paused: usize,
    n: usize,
) -> BenchResult<Duration> {
    let held: TaskType = "bench:paused".parse().expect("valid task type");
    store
        .register_task_types(&[TypeRegistration::new(held.to_string(), "default")])
        .await?;
    let target = PauseTarget::TaskType(held.to_string());
    store.pause(&target).await?;
    let mut next = 0;
    while next < paused {
        let end = (next + BATCH).min(paused);
        let tasks: Vec<NewTask> = (next..end)
            .map(|i| {
                NewTask::new(held.clone(), json!({ "i": i })).with_options(ScheduleOptions {
                    priority: Some(Priority::INTERACTIVE),
                    ..Default::default()
                })
            })
            .collect();
        store.schedule_batch(&tasks).await?;
        next = end;
    }
    prefill(store, postgres, n).await?;
    let start = Instant::now();
    let done = worker(store.clone(), "bench-worker".into(), 10, Work::None).await;
    let elapsed = start.elapsed();
    // Resumed whatever happened: a reused database must not keep the pause.
    store.resume(&target).await?;
    let done = done?;
    if done != n {
        return Err(format!("the worker completed {done} tasks, expected {n}").into());
    }
    Ok(elapsed)
}

async fn bench_sqlite(out: &mut Vec<Measurement>) -> BenchResult<()> {
    let path = std::env::temp_dir().join(format!("warren_bench_{}.db", std::process::id()));
    let remove = || warren_testkit::remove_sqlite(&path);
    remove();
    let sizes = Sizes::for_backend(false)?;
    eprintln!("SQLite: {} ({sizes:?})", path.display());
    let url = format!("sqlite://{}", path.display());
    let result = async {
        let store = Store::open_with(StoreConfig::new(url), Arc::new(SystemClock)).await?;
        run_all(&store, None, "sqlite", sizes, out).await
    }
    .await;
    remove();
    result
}

async fn bench_postgres(server_url: &str, out: &mut Vec<Measurement>) -> BenchResult<()> {
    let sizes = Sizes::for_backend(true)?;
    let db = warren_testkit::FreshDatabase::create(server_url, "warren_bench").await?;
    eprintln!(
        "PostgreSQL: database {} on {} ({sizes:?})",
        db.name(),
        warren::store::redact_url(server_url)
    );
    let store = Store::open_with(StoreConfig::new(db.url()), Arc::new(SystemClock)).await?;
    run_all(&store, Some(db.url()), "postgres", sizes, out).await
    // The store (and its pool) is dropped here, before the database.
}

fn print_table(rows: &[Measurement]) {
    let width = rows
        .iter()
        .map(|m| m.name.len())
        .max()
        .unwrap_or(11)
        .max(11);
    println!();
    println!(
        "{:<8}  {:<width$}  {:>8}  {:>8}  {:>9}  {:>10}  {:>10}",
        "backend", "measurement", "tasks", "seconds", "tasks/s", "per commit", "longest tx"
    );
    println!(
        "{}",
        "-".repeat(8 + 2 + width + 2 + 8 + 2 + 8 + 2 + 9 + 2 + 10 + 2 + 10)
    );
    for m in rows {
        let shared = m
            .completions_per_commit
            .map(|c| format!("{c:.1}"))
            .unwrap_or_default();
        let longest = m
            .longest_tx_ms
            .map(|ms| format!("{ms} ms"))
            .unwrap_or_default();
        println!(
            "{:<8}  {:<width$}  {:>8}  {:>8.3}  {:>9.0}  {:>10}  {:>10}",
            m.backend,
            m.name,
            m.tasks,
            m.seconds,
            m.per_second(),
            shared,
            longest
        );
    }
    println!();
    println!("per commit: mean completions that shared one statement and commit (PostgreSQL)");
    println!("longest tx: the longest of a bulk action's batch transactions");
}

/// The cost of the task SQL policy on PostgreSQL: a verdict from the cache (what a
/// task pays for a statement it ran before) and a fresh parse by PostgreSQL's parser.
fn bench_statement_policy() {
    use warren::store::PgStatementPolicy;
    let sql = "INSERT INTO guest_effects (task_id, note) VALUES ($1, $2) ON CONFLICT DO NOTHING";
    let policy = PgStatementPolicy::default();
    policy.check(sql);
    let rounds = 200_000u32;
    let started = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(policy.check(std::hint::black_box(sql)));
    }
    let hit = started.elapsed() / rounds;
    let rounds = 2_000u32;
    let started = Instant::now();
    for i in 0..rounds {
        // A different text each time: every call parses.
        let text = format!("{sql} -- {i}");
        std::hint::black_box(PgStatementPolicy::default().check(&text));
    }
    let miss = started.elapsed() / rounds;
    println!(
        "task SQL policy (PostgreSQL): cached verdict {hit:?} per statement, fresh parse {miss:?}"
    );
}

fn main() -> BenchResult<()> {
    bench_statement_policy();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let only = std::env::var("WARREN_BENCH_BACKENDS").unwrap_or_default();
    let wants = |b: &str| only.is_empty() || only.split(',').any(|o| o.trim() == b);
    let mut rows = Vec::new();
    runtime.block_on(async {
        if wants("sqlite") {
            bench_sqlite(&mut rows).await?;
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
