//! The fault scripts: what each scenario breaks, and for how long. Each returns when
//! its fault is over, saying when it began and ended (seconds since the start) so the
//! report can split its figures into before, during and after.

use super::instance::{PrivatePostgres, StopMode};
use super::nodes::NodeSet;
use super::probe::Probe;
use super::producer::Producer;
use super::report::Check;
use super::run::{Urls, HARNESS_APP, NODE_ROLE};
use super::small_disk::SmallDisk;
use super::{Plan, Scenario};
use crate::Error;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use serde_json::json;
use std::time::{Duration, Instant};
use warren::store::{NewTask, Store};

/// The role of the client that takes every free connection slot.
pub const HOG_ROLE: &str = "chaos_hog";

/// What a fault script may touch.
pub struct Fault<'a> {
    /// The scenario's plan.
    pub plan: Plan,
    /// When the scenario began.
    pub origin: Instant,
    /// The private server (PostgreSQL scenarios).
    pub server: Option<&'a PrivatePostgres>,
    /// The small disk the database is on (the disk-full scenario).
    pub small_disk: Option<&'a SmallDisk>,
    /// The database's URLs.
    pub urls: &'a Urls,
    /// The nodes.
    pub nodes: &'a mut NodeSet,
    /// The steady load.
    pub producer: &'a Producer,
    /// The harness's store (the nodes' role).
    pub store: &'a Store,
    /// A superuser session (PostgreSQL) or the store (SQLite).
    pub admin: Probe,
    /// Tasks the script scheduled itself, which must complete like the producer's.
    pub extra_confirmed: Vec<i64>,
    /// Checks the script adds to the report.
    pub checks: Vec<Check>,
}

/// When a fault began and ended, and what it was.
pub struct Outcome {
    /// Seconds since the start when the fault began.
    pub start: f64,
    /// Seconds since the start when it was over.
    pub end: f64,
    /// What was done, in words.
    pub description: String,
    /// The overload scenario's measured clean drain rate (tasks/s).
    pub clean_drain_per_s: Option<f64>,
}

impl Fault<'_> {
    fn now(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }

    fn server(&self) -> &PrivatePostgres {
        self.server.expect("a PostgreSQL scenario has its server")
    }
}

/// Runs the fault of `scenario`.
pub async fn inflict(scenario: Scenario, f: &mut Fault<'_>) -> Result<Outcome, Error> {
    match scenario {
        Scenario::PgRestart => pg_restart(f).await,
        Scenario::ConnectionKilling => connection_killing(f).await,
        Scenario::RepeatedCrashes | Scenario::SqliteKills => repeated_crashes(f).await,
        Scenario::PoolExhaustion => pool_exhaustion(f).await,
        Scenario::Overload => overload(f).await,
        Scenario::ActiveReaders => active_readers(f).await,
        Scenario::IdleHolder => idle_holder(f).await,
        Scenario::ReadOnly => read_only(f).await,
        Scenario::SqliteDiskFull => disk_full(f).await,
        Scenario::Soak => soak(f, false).await,
        Scenario::SoakStockVacuum => soak(f, true).await,
    }
}

async fn pg_restart(f: &mut Fault<'_>) -> Result<Outcome, Error> {
    let start = f.now();
    f.server().stop(StopMode::Immediate)?;
    tokio::time::sleep(f.plan.fault).await;
    f.server().resume()?;
    Ok(Outcome {
        start,
        end: f.now(),
        description: format!(
            "PostgreSQL stopped in immediate mode (a crash: no shutdown checkpoint, crash \
             recovery at the next start), started again {} s later",
            f.plan.fault.as_secs()
        ),
        clean_drain_per_s: None,
    })
}

/// Terminates the nodes' sessions (not the harness's); returns how many.
async fn terminate_node_sessions(admin: &mut Probe) -> Result<i64, Error> {
    admin
        .scalar(&format!(
            "SELECT COUNT(pg_terminate_backend(pid)) AS v FROM pg_stat_activity \
             WHERE usename = '{NODE_ROLE}' AND application_name <> '{HARNESS_APP}'"
        ))
        .await
}

async fn connection_killing(f: &mut Fault<'_>) -> Result<Outcome, Error> {
    let start = f.now();
    let until = Instant::now() + f.plan.fault;
    let (mut rounds, mut terminated) = (0, 0);
    while Instant::now() < until {
        terminated += terminate_node_sessions(&mut f.admin).await?;
        rounds += 1;
        tokio::time::sleep(f.plan.every).await;
    }
    Ok(Outcome {
        start,
        end: f.now(),
        description: format!(
            "pg_terminate_backend of every node session every {} ms for {} s: {rounds} \
             rounds, {terminated} sessions terminated",
            f.plan.every.as_millis(),
            f.plan.fault.as_secs()
        ),
        clean_drain_per_s: None,
    })
}

async fn repeated_crashes(f: &mut Fault<'_>) -> Result<Outcome, Error> {
    let start = f.now();
    let until = Instant::now() + f.plan.fault;
    let mut next = 0;
    while Instant::now() < until {
        tokio::time::sleep(f.plan.every).await;
        f.nodes.restart(next % f.nodes.len())?;
        next += 1;
    }
    Ok(Outcome {
        start,
        end: f.now(),
        description: format!(
            "SIGKILL of {} every {} s for {} s, started again at once each time: {} kills",
            if f.nodes.len() == 1 {
                "the node".to_string()
            } else {
                format!("one of the {} nodes in turn", f.nodes.len())
            },
            f.plan.every.as_secs(),
            f.plan.fault.as_secs(),
            f.nodes.kills
        ),
        clean_drain_per_s: None,
    })
}

async fn pool_exhaustion(f: &mut Fault<'_>) -> Result<Outcome, Error> {
    let start = f.now();
    let hog_url = f.server().url(HOG_ROLE, "chaos", None);
    // Every free slot first, so the nodes' reconnects find none; then the nodes'
    // sessions go, and the hog races them for each slot that frees.
    let mut held = grab_free_slots(&hog_url).await;
    let before = held.len();
    let terminated = terminate_node_sessions(&mut f.admin).await?;
    let until = Instant::now() + f.plan.fault;
    let mut node_sessions_seen = Vec::new();
    while Instant::now() < until {
        held.extend(grab_free_slots(&hog_url).await);
        node_sessions_seen.push(
            f.admin
                .scalar(&format!(
                    "SELECT COUNT(*) AS v FROM pg_stat_activity WHERE usename = '{NODE_ROLE}' \
                     AND application_name <> '{HARNESS_APP}'"
                ))
                .await?,
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let peak = held.len();
    drop(held);
    node_sessions_seen.sort_unstable();
    let median = node_sessions_seen
        .get(node_sessions_seen.len() / 2)
        .copied()
        .unwrap_or(0);
    Ok(Outcome {
        start,
        end: f.now(),
        description: format!(
            "another client took every free slot of max_connections = {} ({before} \
             sessions), then {terminated} node sessions were terminated and it raced the \
             nodes for the freed slots ({peak} sessions in the end) for {} s; the nodes \
             held {median} sessions (median of {} looks) meanwhile",
            f.plan.max_connections,
            f.plan.fault.as_secs(),
            node_sessions_seen.len()
        ),
        clean_drain_per_s: None,
    })
}

/// Opens sessions, eight at a time, until the server refuses them all.
async fn grab_free_slots(url: &str) -> Vec<AsyncPgConnection> {
    let mut held = Vec::new();
    loop {
        let attempts = (0..8).map(|_| AsyncPgConnection::establish(url));
        let results = futures_util::future::join_all(attempts).await;
        let refused = results.iter().filter(|r| r.is_err()).count();
        held.extend(results.into_iter().flatten());
        if refused > 0 {
            return held;
        }
    }
}

async fn active_readers(f: &mut Fault<'_>) -> Result<Outcome, Error> {
    let start = f.now();
    let until = Instant::now() + f.plan.fault;
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let url = f.urls.admin.clone();
            tokio::spawn(async move {
                let mut conn = AsyncPgConnection::establish(&url).await?;
                let mut scans = 0_u64;
                while Instant::now() < until {
                    // Each transaction keeps its snapshot for about two seconds of
                    // scans: the rows Warren updates meanwhile cannot be vacuumed.
                    conn.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
                        .await?;
                    let held = Instant::now();
                    while held.elapsed() < Duration::from_secs(2) && Instant::now() < until {
                        conn.batch_execute(
                            "SELECT COUNT(*), MAX(length(data)) FROM warren_tasks; \
                             SELECT COUNT(*) FROM warren_tasks WHERE state = 'pending'",
                        )
                        .await?;
                        scans += 1;
                    }
                    conn.batch_execute("COMMIT").await?;
                }
                Ok::<u64, Error>(scans)
            })
        })
        .collect();
    let mut scans = 0;
    for reader in readers {
        scans += reader.await.map_err(|e| e.to_string())??;
    }
    Ok(Outcome {
        start,
        end: f.now(),
        description: format!(
            "four REPEATABLE READ sessions scanning warren_tasks for {} s, each \
             transaction about 2 s long: {scans} scans",
            f.plan.fault.as_secs()
        ),
        clean_drain_per_s: None,
    })
}

async fn idle_holder(f: &mut Fault<'_>) -> Result<Outcome, Error> {
    let start = f.now();
    let mut holder = AsyncPgConnection::establish(&f.urls.admin).await?;
    // A write gives the transaction an id: from here on no dead row newer than it can
    // be vacuumed, in any table of the cluster.
    holder
        .batch_execute(
            "CREATE TABLE chaos_holder (x INT); BEGIN; INSERT INTO chaos_holder VALUES (1)",
        )
        .await?;
    tokio::time::sleep(f.plan.fault).await;
    holder.batch_execute("COMMIT").await?;
    Ok(Outcome {
        start,
        end: f.now(),
        description: format!(
            "another session held a writing transaction open, idle, for {} s",
            f.plan.fault.as_secs()
        ),
        clean_drain_per_s: None,
    })
}

async fn soak(f: &mut Fault<'_>, stock_vacuum: bool) -> Result<Outcome, Error> {
    if stock_vacuum {
        f.admin
            .execute(
                "ALTER TABLE warren_tasks RESET (autovacuum_vacuum_scale_factor, \
                 autovacuum_vacuum_threshold, autovacuum_analyze_scale_factor, \
                 autovacuum_vacuum_cost_limit)",
            )
            .await?;
    }
    let start = f.now();
    tokio::time::sleep(f.plan.fault).await;
    Ok(Outcome {
        start,
        end: f.now(),
        description: format!(
            "no fault: {} tasks/s offered for {} min, with {} autovacuum settings on \
             warren_tasks",
            f.plan.rate,
            f.plan.fault.as_secs() / 60,
            if stock_vacuum {
                "PostgreSQL's stock"
            } else {
                "Warren's"
            }
        ),
        clean_drain_per_s: None,
    })
}

async fn read_only(f: &mut Fault<'_>) -> Result<Outcome, Error> {
    let start = f.now();
    f.admin
        .execute("ALTER SYSTEM SET default_transaction_read_only = on")
        .await?;
    f.admin.execute("SELECT pg_reload_conf()").await?;
    tokio::time::sleep(f.plan.fault).await;
    // The harness's own session is read-only now too; a session may lift that for
    // itself. (ALTER SYSTEM refuses to run in a transaction block: one statement each.)
    f.admin
        .execute("SET default_transaction_read_only = off")
        .await?;
    f.admin
        .execute("ALTER SYSTEM RESET default_transaction_read_only")
        .await?;
    f.admin.execute("SELECT pg_reload_conf()").await?;
    Ok(Outcome {
        start,
        end: f.now(),
        description: format!(
            "default_transaction_read_only turned on for the whole server (every write \
             fails) for {} s, then off",
            f.plan.fault.as_secs()
        ),
        clean_drain_per_s: None,
    })
}

async fn disk_full(f: &mut Fault<'_>) -> Result<Outcome, Error> {
    let disk = f.small_disk.expect("the disk-full scenario has its disk");
    let start = f.now();
    // A little room is left, so the database fills it up itself mid-write.
    let filler = disk.fill(256 << 10)?;
    tokio::time::sleep(f.plan.fault).await;
    std::fs::remove_file(&filler)?;
    Ok(Outcome {
        start,
        end: f.now(),
        description: format!(
            "the 64 MiB tmpfs holding the database filled up to 256 KiB free (then full, \
             by the database's own writes) for {} s, then the filler was removed",
            f.plan.fault.as_secs()
        ),
        clean_drain_per_s: None,
    })
}

/// The backlog the overload scenario drains to measure the clean drain rate.
fn clean_backlog(plan: &Plan) -> usize {
    if plan.fault < Duration::from_secs(60) {
        3_000
    } else {
        10_000
    }
}

async fn overload(f: &mut Fault<'_>) -> Result<Outcome, Error> {
    // First the clean drain rate: the producer pauses, a backlog is scheduled at
    // once, and the nodes drain it.
    f.producer.set_rate(0);
    let idle_by = Instant::now() + Duration::from_secs(60);
    while f.admin.counts().await?.backlog > 0 {
        if Instant::now() > idle_by {
            return Err("the queue did not empty within 60 s of pausing the producer".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let count = clean_backlog(&f.plan);
    let tasks: Vec<NewTask> = (0..count)
        .map(|i| {
            NewTask::new(
                "chaos:write".parse().expect("a task type"),
                json!({ "backlog": i }),
            )
        })
        .collect();
    let before = f.admin.counts().await?.completed;
    let began = Instant::now();
    for chunk in tasks.chunks(1_000) {
        let ids = f.store.schedule_batch(chunk).await?;
        f.extra_confirmed.extend(ids.iter().map(|id| id.0));
    }
    let deadline = began + Duration::from_secs(300);
    while f.admin.counts().await?.completed < before + count as i64 {
        if Instant::now() > deadline {
            return Err("the clean backlog did not drain within 300 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let clean = count as f64 / began.elapsed().as_secs_f64();
    let offered = (clean * 1.5).round() as u64;

    let start = f.now();
    f.producer.set_rate(offered);
    tokio::time::sleep(f.plan.fault).await;
    f.producer.set_rate(f.plan.rate);
    Ok(Outcome {
        start,
        end: f.now(),
        description: format!(
            "clean drain of {count} tasks measured at {clean:.0}/s; then {offered}/s \
             offered (1.5×) for {} s, then the baseline of {}/s",
            f.plan.fault.as_secs(),
            f.plan.rate
        ),
        clean_drain_per_s: Some(clean),
    })
}

/// The overload scenario's criteria: throughput while overloaded at least 80% of the
/// clean drain rate, and the backlog gone within twice the overload's length.
pub fn overload_checks(
    clean: f64,
    during: Option<f64>,
    recovery_s: Option<f64>,
    overload_s: f64,
) -> Vec<Check> {
    let during = during.unwrap_or(0.0);
    vec![
        Check {
            name: "throughput under overload ≥ 80% of the clean drain".into(),
            passed: during >= 0.8 * clean,
            detail: format!(
                "{during:.0}/s against {clean:.0}/s ({:.0}%)",
                100.0 * during / clean
            ),
        },
        Check {
            name: "backlog gone within twice the overload's length".into(),
            passed: recovery_s.is_some_and(|r| r <= 2.0 * overload_s),
            detail: match recovery_s {
                Some(r) => format!("{r:.1} s after {overload_s:.0} s of overload"),
                None => "not within the run".into(),
            },
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overload_checks_hold_only_within_their_bounds() {
        let passed = |c: Vec<Check>| c.iter().map(|c| c.passed).collect::<Vec<_>>();
        assert_eq!(
            passed(overload_checks(100.0, Some(85.0), Some(41.0), 20.0)),
            [true, false]
        );
        assert_eq!(
            passed(overload_checks(100.0, Some(75.0), Some(40.0), 20.0)),
            [false, true]
        );
        assert_eq!(
            passed(overload_checks(100.0, None, None, 20.0)),
            [false, false]
        );
    }
}
