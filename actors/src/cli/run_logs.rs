//! `warren tasks logs ID [--follow] [--json]`: a task's recorded runs, read from the
//! database: when and where each ran, how it ended, its error and what its code
//! logged. With `--follow`, runs are printed as they are recorded until the task has
//! finished and its last run is printed (a run is recorded just after its outcome
//! commits; a completion that logged nothing is not, so `--follow` waits two seconds
//! for it, then says so).

use super::task_admin::store_failure;
use super::{table, terminal, Failure};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use warren::store::{RunRecord, Store, Task, KEPT_RUNS_PER_TASK};
use warren::task::{LeaseToken, TaskId, TaskState};

/// How often `--follow` looks for new runs.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

/// How long `--follow` waits, once the task has finished, for its last run's record
/// (written just after the outcome commits), before it takes the run as unrecorded.
const LAST_RECORD_WAIT: Duration = Duration::from_secs(2);

/// Prints the runs of task `id`.
pub async fn run(database: &str, id: TaskId, follow: bool, json: bool) -> Result<(), Failure> {
    let store = Store::open(database).await?;
    let mut printed: HashSet<LeaseToken> = HashSet::new();
    let mut finished_since: Option<Instant> = None;
    loop {
        // The task first: a run recorded after this look is printed on the next one.
        let task = store.describe(id).await.map_err(store_failure)?;
        let runs = store.task_runs(id).await.map_err(store_failure)?;
        for run in &runs {
            if printed.insert(run.lease_token) {
                print_run(run, json)?;
            }
        }
        // The run that finished the task is recorded (unless it was a completion that
        // logged nothing) under the task's last lease token.
        let last_recorded = runs.iter().any(|r| r.lease_token == task.lease_token);
        if task.state.is_finished() {
            let since = *finished_since.get_or_insert_with(Instant::now);
            let waited_enough = last_recorded
                || task.state != TaskState::Completed && !had_a_run(&task)
                || since.elapsed() >= LAST_RECORD_WAIT;
            if !follow || waited_enough {
                if !json {
                    print_end(&task, &runs, last_recorded);
                }
                return Ok(());
            }
        } else if !follow {
            if !json && runs.is_empty() {
                println!(
                    "task {id} is {} and has no recorded runs yet (a run is recorded when it ends, unless it completed without logging)",
                    task.state
                );
            }
            return Ok(());
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
    }
}

/// Whether a finished task's end came from a run (and not, say, from a cancel by an
/// operator while it was pending, which records nothing).
fn had_a_run(task: &Task) -> bool {
    task.started_at.is_some()
}

/// The closing lines for a finished task.
fn print_end(task: &Task, runs: &[RunRecord], last_recorded: bool) {
    if task.state == TaskState::Completed && !last_recorded {
        println!(
            "task {} completed at {}; that run has no record (it logged nothing, or its record was not written)",
            task.id,
            table::maybe_time(task.finished_at)
        );
    } else if runs.is_empty() {
        println!(
            "task {} is {} and has no recorded runs",
            task.id, task.state
        );
    }
    if runs.len() == KEPT_RUNS_PER_TASK {
        println!("(a task keeps its newest {KEPT_RUNS_PER_TASK} runs)");
    }
}

fn print_run(run: &RunRecord, json: bool) -> Result<(), Failure> {
    if json {
        let line = terminal::compact_json(run).map_err(|e| Failure::Error(e.to_string()))?;
        println!("{line}");
        return Ok(());
    }
    let took = run.finished_at.saturating_sub(run.started_at);
    println!(
        "run {} · {} · {} · started {} · {took} ms",
        run.lease_token.0,
        run.outcome,
        terminal::printable(&run.node, terminal::Layout::Line),
        table::time(run.started_at),
    );
    if let Some(error) = &run.error {
        println!(
            "  error: {}",
            terminal::printable(error, terminal::Layout::Line)
        );
    }
    for line in &run.log {
        println!(
            "  [{}] {}",
            terminal::printable(&line.level, terminal::Layout::Line),
            terminal::printable(&line.message, terminal::Layout::Line)
        );
    }
    Ok(())
}
