//! `warren tasks logs ID [--follow] [--json]`: a task's recorded runs, read from the
//! database: when and where each ran, how it ended, its error and what its code
//! logged. With `--follow`, runs are printed as they are recorded until the task has
//! finished (a run is recorded just after its outcome commits, so it looks for a
//! second more).

use super::task_admin::store_failure;
use super::{table, terminal, Failure};
use std::time::Duration;
use warren::store::{RunRecord, Store, KEPT_RUNS_PER_TASK};
use warren::task::{LeaseToken, TaskId};

/// How often `--follow` looks for new runs.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

/// How many looks `--follow` makes once the task has finished (the first included).
const FINISHED_LOOKS: u32 = 3;

/// Prints the runs of task `id`.
pub async fn run(database: &str, id: TaskId, follow: bool, json: bool) -> Result<(), Failure> {
    let store = Store::open(database).await?;
    let mut printed: Option<LeaseToken> = None;
    // Looks left once the task has finished: its last run is recorded just after its
    // outcome commits, so `--follow` looks a little longer before it stops.
    let mut last_looks = FINISHED_LOOKS;
    loop {
        // The task first: a run recorded after this look is printed on the next one.
        let task = store.describe(id).await.map_err(store_failure)?;
        let runs = store.task_runs(id).await.map_err(store_failure)?;
        let after = printed;
        for run in runs
            .iter()
            .filter(|r| after.is_none_or(|p| r.lease_token > p))
        {
            print_run(run, json)?;
            printed = Some(run.lease_token);
        }
        if task.state.is_finished() {
            last_looks -= 1;
        }
        if !follow || last_looks == 0 {
            if !json {
                let quiet = task.state == warren::task::TaskState::Completed
                    && runs
                        .last()
                        .is_none_or(|r| r.lease_token != task.lease_token);
                if quiet {
                    println!(
                        "task {id} completed at {} (that run logged nothing)",
                        table::maybe_time(task.finished_at)
                    );
                } else if runs.is_empty() {
                    println!(
                        "task {id} is {} and has no recorded runs (a run is recorded when it ends, unless it completed without logging)",
                        task.state
                    );
                }
                if runs.len() == KEPT_RUNS_PER_TASK {
                    println!("(a task keeps its newest {KEPT_RUNS_PER_TASK} runs)");
                }
            }
            return Ok(());
        }
        tokio::time::sleep(FOLLOW_EVERY).await;
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
            line.level,
            terminal::printable(&line.message, terminal::Layout::Line)
        );
    }
    Ok(())
}
