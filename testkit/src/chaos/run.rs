//! One scenario from start to verdict: a fresh database (a private PostgreSQL server,
//! or a SQLite file), the nodes, steady load, the fault, the drain, and the checks
//! that every task scheduled completed with its effect exactly once.

use super::faults::{self, Fault};
use super::instance::PrivatePostgres;
use super::nodes::NodeSet;
use super::observer::{Observer, Sample};
use super::probe::Probe;
use super::producer::Producer;
use super::report::{self, Check, PhaseFigures, Report};
use super::small_disk::SmallDisk;
use super::{Backend, Plan, Scenario};
use crate::Error;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use warren::store::{NewTask, Store};

/// The role Warren's nodes log in as on PostgreSQL: it owns its database, and is no
/// superuser.
pub const NODE_ROLE: &str = "warren_app";
/// The `application_name` of the harness's own sessions, which fault scripts spare.
pub const HARNESS_APP: &str = "chaos-harness";
/// The task type the producer schedules: it inserts one row and completes.
const TASK_TYPE: &str = "chaos:write";
/// How long the queue may take to drain once the producer stops.
const DRAIN_LIMIT: Duration = Duration::from_secs(180);

/// How to run scenarios.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `warren` binary the nodes run.
    pub warren: PathBuf,
    /// Where each scenario's folder (modules, logs, database) goes.
    pub out: PathBuf,
    /// The short variant (CI) instead of the full one.
    pub short: bool,
    /// The soaks' length and rate.
    pub soak: super::Soak,
}

/// The URLs of a scenario's database.
pub struct Urls {
    /// What the nodes use.
    pub node: String,
    /// The harness's producer: the nodes' role, marked as the harness's.
    pub harness: String,
    /// The harness's superuser session (PostgreSQL), marked as the harness's.
    pub admin: String,
}

/// Runs `scenario` and returns its report (an error only when the harness itself
/// could not do its part: a verdict of lost work is in the report).
pub async fn run(scenario: Scenario, options: &Options) -> Result<Report, Error> {
    let plan = Plan::of(scenario, options.short, options.soak);
    let dir = options.out.join(scenario.name());
    if scenario == Scenario::SqliteDiskFull {
        // A killed run may have left its disk mounted there.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(dir.join("disk"))
            .output();
    }
    let _ = std::fs::remove_dir_all(&dir);
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let modules = dir.join("modules");
    write_module(&modules)?;

    let mut small_disk: Option<SmallDisk> = None;
    let (server, urls) = match scenario.backend() {
        Backend::Postgres => {
            let server = PrivatePostgres::start(plan.max_connections)?;
            let urls = prepare_postgres(&server).await?;
            (Some(server), urls)
        }
        Backend::Sqlite => {
            let folder = if scenario == Scenario::SqliteDiskFull {
                let disk = SmallDisk::mount(&dir.join("disk"), 64)?;
                let path = dir.join("disk");
                small_disk = Some(disk);
                path
            } else {
                dir.clone()
            };
            let url = format!("sqlite://{}", folder.join("chaos.db").display());
            let urls = Urls {
                node: url.clone(),
                harness: url.clone(),
                admin: url,
            };
            (None, urls)
        }
    };
    let store = Store::open(&urls.harness).await?;
    probe(&urls.harness, &store)
        .execute("CREATE TABLE chaos_effects (task_id BIGINT NOT NULL)")
        .await?;

    let mut nodes = NodeSet::start(
        options.warren.clone(),
        modules,
        urls.node.clone(),
        logs.clone(),
        plan.nodes,
    )?;
    let warm_up = serve_one_task(&store, &mut probe(&urls.admin, &store), plan.nodes).await?;
    let origin = Instant::now();
    let origin_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let observer = Observer::start(probe(&urls.admin, &store), origin);
    let producer = Producer::start(store.clone(), TASK_TYPE, plan.rate);
    tokio::time::sleep(plan.before).await;
    // The steady phase ends here, before the fault script does anything (the overload
    // script schedules its own backlog before its fault begins).
    let steady_end = origin.elapsed().as_secs_f64();

    let mut fault = Fault {
        plan,
        origin,
        server: server.as_ref(),
        small_disk: small_disk.as_ref(),
        urls: &urls,
        nodes: &mut nodes,
        producer: &producer,
        store: &store,
        admin: probe(&urls.admin, &store),
        extra_confirmed: Vec::new(),
        checks: Vec::new(),
    };
    let outcome = faults::inflict(scenario, &mut fault).await?;
    let extra_confirmed = std::mem::take(&mut fault.extra_confirmed);
    let mut checks = std::mem::take(&mut fault.checks);
    drop(fault);

    tokio::time::sleep(plan.after).await;
    let after_end = origin.elapsed().as_secs_f64();
    let tally = producer.finish().await;
    let mut admin = probe(&urls.admin, &store);
    let drained = drain(&mut admin).await;
    let samples = observer.finish().await;
    let unclean_shutdowns = nodes.shut_down(Duration::from_secs(15));

    let mut confirmed = tally.confirmed;
    confirmed.extend(extra_confirmed);
    confirmed.push(warm_up);
    let verdict = verify(&mut admin, &confirmed).await?;
    if !drained {
        checks.push(Check {
            name: "queue drained".into(),
            passed: false,
            detail: format!("backlog left after {} s", DRAIN_LIMIT.as_secs()),
        });
    }
    if scenario.backend() == Backend::Sqlite {
        let lines = admin
            .lines("SELECT integrity_check AS line FROM pragma_integrity_check()")
            .await?;
        checks.push(Check {
            name: "PRAGMA integrity_check".into(),
            passed: lines == ["ok"],
            detail: lines.join("; "),
        });
    }

    let before_peak = samples
        .iter()
        .filter(|s| s.at <= steady_end)
        .map(|s| s.backlog)
        .max()
        .unwrap_or(0);
    let recovery_s = report::recovery(&samples, outcome.end, (2 * before_peak).max(20));
    let latencies = admin
        .pairs(
            "SELECT created_at AS a, started_at AS b FROM warren_tasks WHERE state = 'completed'",
        )
        .await?;
    let phase = |from: f64, to: f64| PhaseFigures {
        tasks_per_s: report::throughput(&samples, from, to),
        p99_start_ms: p99_start(&latencies, origin_ms, from, to),
    };
    let (before, during, after) = (
        phase(0.0, outcome.start),
        phase(outcome.start, outcome.end),
        phase(outcome.end, after_end),
    );
    if let Some(clean) = outcome.clean_drain_per_s {
        checks.extend(faults::overload_checks(
            clean,
            during.tasks_per_s,
            recovery_s,
            outcome.end - outcome.start,
        ));
    }

    let report = Report {
        scenario: scenario.name().into(),
        backend: match scenario.backend() {
            Backend::Postgres => "postgres".into(),
            Backend::Sqlite => "sqlite".into(),
        },
        short: options.short,
        nodes: plan.nodes,
        offered_per_s: plan.rate,
        fault: outcome.description,
        scheduled: confirmed.len(),
        unconfirmed: tally.unconfirmed,
        completed: verdict.completed,
        lost: verdict.lost,
        duplicate_effects: verdict.duplicate_effects,
        effects_without_completion: verdict.effects_without_completion,
        failed: verdict.failed,
        recovery_s,
        before,
        during,
        after,
        max_dead_tuples: max_dead_tuples(&samples),
        end_dead_tuples: samples.last().and_then(|s| s.dead_tuples),
        checks,
        unclean_shutdowns,
        logs: logs.display().to_string(),
    };
    drop(store);
    drop(server);
    drop(small_disk);
    Ok(report)
}

/// The counts the verdict rests on.
struct Verdict {
    completed: i64,
    lost: i64,
    duplicate_effects: i64,
    effects_without_completion: i64,
    failed: i64,
}

async fn verify(admin: &mut Probe, confirmed: &[i64]) -> Result<Verdict, Error> {
    let states: HashMap<i64, i64> = admin
        .pairs(
            "SELECT id AS a, CAST(CASE WHEN state = 'completed' THEN 1 ELSE 0 END AS BIGINT) AS b \
             FROM warren_tasks",
        )
        .await?
        .into_iter()
        .collect();
    let not_completed = confirmed
        .iter()
        .filter(|id| states.get(id) != Some(&1))
        .count() as i64;
    let completed_without_effect = admin
        .scalar(
            "SELECT COUNT(*) AS v FROM warren_tasks t WHERE t.state = 'completed' \
             AND NOT EXISTS (SELECT 1 FROM chaos_effects e WHERE e.task_id = t.id)",
        )
        .await?;
    let counts = admin.counts().await?;
    Ok(Verdict {
        completed: counts.completed,
        lost: not_completed + completed_without_effect,
        duplicate_effects: admin
            .scalar("SELECT COUNT(*) - COUNT(DISTINCT task_id) AS v FROM chaos_effects")
            .await?,
        effects_without_completion: admin
            .scalar(
                "SELECT COUNT(*) AS v FROM chaos_effects e WHERE NOT EXISTS \
                 (SELECT 1 FROM warren_tasks t WHERE t.id = e.task_id AND t.state = 'completed')",
            )
            .await?,
        failed: counts.failed,
    })
}

/// Waits until every node has registered and one task has completed, so the steady
/// phase does not count the nodes' start; returns that task's id.
async fn serve_one_task(store: &Store, admin: &mut Probe, nodes: usize) -> Result<i64, Error> {
    let task = NewTask::new(TASK_TYPE.parse()?, serde_json::json!({ "warm_up": true }));
    let id = store.schedule(task).await?.0;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let registered = admin
            .scalar("SELECT COUNT(*) AS v FROM warren_nodes")
            .await?;
        let done = admin
            .scalar(&format!(
                "SELECT COUNT(*) AS v FROM warren_tasks WHERE id = {id} AND state = 'completed'"
            ))
            .await?;
        if registered >= nodes as i64 && done == 1 {
            return Ok(id);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the nodes did not start within 120 s ({registered} of {nodes} registered)"
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until nothing is pending or running; false when [`DRAIN_LIMIT`] passed first.
async fn drain(admin: &mut Probe) -> bool {
    let deadline = Instant::now() + DRAIN_LIMIT;
    while Instant::now() < deadline {
        if admin.counts().await.is_ok_and(|c| c.backlog == 0) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// The p99 start latency of the tasks created between `from` and `to` (seconds since
/// the start), from (created_at, started_at) pairs in epoch milliseconds.
fn p99_start(pairs: &[(i64, i64)], origin_ms: i64, from: f64, to: f64) -> Option<f64> {
    let (from, to) = (
        origin_ms + (from * 1000.0) as i64,
        origin_ms + (to * 1000.0) as i64,
    );
    let mut latencies: Vec<i64> = pairs
        .iter()
        .filter(|(created, _)| (from..to).contains(created))
        .map(|(created, started)| started - created)
        .collect();
    report::quantile(&mut latencies, 0.99)
}

fn max_dead_tuples(samples: &[Sample]) -> Option<i64> {
    samples.iter().filter_map(|s| s.dead_tuples).max()
}

/// A probe of `url`: its own session on PostgreSQL, `store` on SQLite.
fn probe(url: &str, store: &Store) -> Probe {
    if url.starts_with("postgres") {
        Probe::Postgres {
            url: url.to_string(),
            conn: None,
        }
    } else {
        Probe::Sqlite(store.clone())
    }
}

/// The nodes' role and database, and a role for the connection hog.
async fn prepare_postgres(server: &PrivatePostgres) -> Result<Urls, Error> {
    let mut admin = AsyncPgConnection::establish(&server.url("postgres", "postgres", None)).await?;
    admin
        .batch_execute(&format!(
            "CREATE ROLE {NODE_ROLE} LOGIN; CREATE ROLE {} LOGIN",
            faults::HOG_ROLE
        ))
        .await?;
    admin
        .batch_execute(&format!("CREATE DATABASE chaos OWNER {NODE_ROLE}"))
        .await?;
    Ok(Urls {
        node: server.url(NODE_ROLE, "chaos", None),
        harness: server.url(NODE_ROLE, "chaos", Some(HARNESS_APP)),
        admin: server.url("postgres", "chaos", Some(HARNESS_APP)),
    })
}

/// The module the nodes run: one task type that inserts a row in its own transaction
/// and completes; a failed run is retried after 100 ms (doubling), so faults show as
/// retries, not as long waits.
fn write_module(modules: &Path) -> Result<(), Error> {
    let module = modules.join("chaos");
    std::fs::create_dir_all(module.join("tasks"))?;
    std::fs::write(
        module.join("moduledefinition.xml"),
        r#"<module name="chaos"><servicemanager>
  <taskcluster tag="default" workers="4"/>
  <managedtask type="write" code="tasks/write.js" failreschedule="100"/>
</servicemanager></module>
"#,
    )?;
    std::fs::write(
        module.join("tasks/write.js"),
        r#"// Inserts one row for this task in the task's own transaction, then completes:
// the row must exist exactly once for every completed task.
import { defineTask } from 'warren';

export const runTask = defineTask((task, ctx) => {
  ctx.execute('INSERT INTO chaos_effects (task_id) VALUES ($1)', [task.id]);
  ctx.resolveByCompletion({});
});
"#,
    )?;
    Ok(())
}
