//! `warren tasks list|show|retry|cancel|delete`: operate on managed tasks through the
//! database directly, whether or not a node runs. A node notices a cancelled task it
//! runs at its next lease renewal and stops it.

use super::filter_args::FilterArgs;
use super::{table, terminal, Failure};
use clap::{Args, Subcommand};
use warren::store::{BulkAction, PauseTarget, Progress, Store, StoreError, Task, TaskFilter};
use warren::task::{TaskId, TaskState};

/// Task commands.
#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// List tasks, newest first.
    List(ListArgs),
    /// Show every field of a task.
    Show {
        /// The task id.
        id: TaskId,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show a task's recorded runs (each run but a completion that logged nothing):
    /// when and where each ran, how it ended, and what its code logged.
    Logs {
        /// The task id.
        id: TaskId,
        /// Keep printing runs as they are recorded, until the task has finished.
        #[arg(long)]
        follow: bool,
        /// Print each run as a JSON line instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run a pending, failed or cancelled task now; or, given filter options instead
    /// of an id, every task they match (`--state failed --type 'mail:*'`).
    Retry(ActionArgs),
    /// Cancel a pending or running task (a running one is stopped by its node); or
    /// every task the filter options match.
    Cancel(ActionArgs),
    /// Delete a task that is not running; or every task the filter options match.
    Delete(ActionArgs),
}

/// Arguments of `warren tasks retry|cancel|delete`: one task by id, or every task a
/// filter matches.
#[derive(Debug, Args)]
pub struct ActionArgs {
    /// The task id; leave it out and give filter options to act on every task they
    /// match.
    pub id: Option<TaskId>,
    /// Which tasks, when no id is given.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Act on every matching task without asking first (needed when not on a
    /// terminal).
    #[arg(long)]
    pub yes: bool,
    /// Print JSON instead of text: for one task `{"id", "state", …}`, for a filter the
    /// bulk report (`{"action", "matched", "changed", "skipped", …}`).
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `warren tasks list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Which tasks.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// How many tasks to show (1-10000).
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    /// Only tasks with an id below this one (the next page after it).
    #[arg(long)]
    pub before: Option<TaskId>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A store error as the command's failure: the user's mistake (unknown task, invalid
/// input, not possible in the task's state) exits 2, the database's 1.
pub(super) fn store_failure(e: StoreError) -> Failure {
    match e {
        StoreError::NotFound(_)
        | StoreError::UnknownScheduled(_)
        | StoreError::Invalid { .. }
        | StoreError::WrongState { .. }
        | StoreError::UniqueConflict { .. } => Failure::Invalid(e.to_string()),
        other => Failure::Error(other.to_string()),
    }
}

/// Runs a task command.
pub async fn run(database: &str, cmd: TasksCommand) -> Result<(), Failure> {
    let (action, args) = match cmd {
        TasksCommand::List(args) => return list(database, args).await,
        TasksCommand::Show { id, json } => return show(database, id, json).await,
        TasksCommand::Logs { id, follow, json } => {
            return super::run_logs::run(database, id, follow, json).await
        }
        TasksCommand::Retry(args) => (BulkAction::Retry, args),
        TasksCommand::Cancel(args) => (BulkAction::Cancel, args),
        TasksCommand::Delete(args) => (BulkAction::Delete, args),
    };
    match args.id {
        None => super::bulk_action::run(database, action, &args.filter, args.yes, args.json).await,
        Some(_) if !args.filter.text().is_empty() => Err(Failure::Invalid(format!(
            "give a task id or filter options, not both: `warren tasks {action} ID` acts on one task, `warren tasks {action} --state failed …` on every task that matches"
        ))),
        Some(id) => act_on_one(database, action, id, args.json).await,
    }
}

/// `retry`, `cancel` or `delete` of one task.
async fn act_on_one(
    database: &str,
    action: BulkAction,
    id: TaskId,
    json: bool,
) -> Result<(), Failure> {
    let store = Store::open(database).await?;
    match action {
        BulkAction::Retry => {
            let at = store.retry_now(id).await.map_err(store_failure)?;
            if json {
                let done =
                    serde_json::json!({"id": id, "state": TaskState::Pending, "next_attempt": at});
                println!("{}", to_json(&done)?);
            } else if at <= store.now() {
                println!("task {id} is pending and runs now");
            } else {
                println!("task {id} is pending and runs at {}", table::time(at));
            }
        }
        BulkAction::Cancel => {
            let was = store
                .cancel(id, "cancelled from the command line")
                .await
                .map_err(store_failure)?;
            if json {
                let done = serde_json::json!({"id": id, "state": TaskState::Cancelled, "was": was});
                println!("{}", to_json(&done)?);
                return Ok(());
            }
            match was {
                TaskState::Running => {
                    println!("task {id} cancelled (it was running: its node stops it)")
                }
                _ => println!("task {id} cancelled (it was {was})"),
            }
        }
        BulkAction::Delete => {
            store.delete(id).await.map_err(store_failure)?;
            match json {
                true => println!(
                    "{}",
                    to_json(&serde_json::json!({"id": id, "deleted": true}))?
                ),
                false => println!("task {id} deleted"),
            }
        }
    }
    Ok(())
}

async fn list(database: &str, args: ListArgs) -> Result<(), Failure> {
    let filter = TaskFilter {
        before_id: args.before,
        limit: args.limit,
        ..args.filter.filter()?
    };
    if !(1..=10_000).contains(&filter.limit) {
        return Err(Failure::Invalid(format!(
            "invalid --limit {}: use 1 to 10000",
            filter.limit
        )));
    }
    let store = Store::open(database).await?;
    let tasks = store.list(&filter).await.map_err(store_failure)?;
    if args.json {
        println!("{}", to_json(&tasks)?);
        return Ok(());
    }
    if tasks.is_empty() {
        eprintln!("warren: no tasks match");
        return Ok(());
    }
    let now = store.now();
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            let when = match (t.state, t.finished_at) {
                (TaskState::Pending, _) if t.next_attempt > now => {
                    format!("next {}", table::time(t.next_attempt))
                }
                (TaskState::Running, _) => format!("started {}", table::maybe_time(t.started_at)),
                (_, Some(at)) => format!("finished {}", table::time(at)),
                _ => "due now".to_string(),
            };
            vec![
                t.id.to_string(),
                t.task_type.to_string(),
                t.state.to_string(),
                table::time(t.created_at),
                when,
                t.failures.to_string(),
                t.last_error
                    .as_deref()
                    .map_or(String::new(), |e| table::short(e, 60)),
            ]
        })
        .collect();
    table::print(
        &[
            "ID",
            "TYPE",
            "STATE",
            "CREATED",
            "WHEN",
            "FAILURES",
            "LAST ERROR",
        ],
        &rows,
    );
    Ok(())
}

/// Pretty JSON, safe to show in a terminal (see [`terminal::json`]).
pub(super) fn to_json(value: &impl serde::Serialize) -> Result<String, Failure> {
    terminal::json(value).map_err(|e| Failure::Error(e.to_string()))
}

async fn show(database: &str, id: TaskId, json: bool) -> Result<(), Failure> {
    let store = Store::open(database).await?;
    let task = store.describe(id).await.map_err(store_failure)?;
    let held_by = store.pause_holding_task(&task).await?;
    if json {
        let mut shown = serde_json::to_value(&task).map_err(|e| Failure::Error(e.to_string()))?;
        shown["held_by"] =
            serde_json::to_value(&held_by).map_err(|e| Failure::Error(e.to_string()))?;
        println!("{}", to_json(&shown)?);
        return Ok(());
    }
    print_task(&task, held_by.as_ref());
    Ok(())
}

/// `42.5% copying files (reported 2026-12-06 12:00:01)`.
fn progress_line(progress: &Progress, state: TaskState) -> String {
    let percent = (progress.fraction * 1000.0).round() / 10.0;
    let message = progress
        .message
        .as_deref()
        .map(|m| format!(" {m}"))
        .unwrap_or_default();
    let when = if state == TaskState::Running {
        "reported"
    } else {
        "last reported"
    };
    format!("{percent}%{message} ({when} {})", table::time(progress.at))
}

fn print_task(t: &Task, held_by: Option<&PauseTarget>) {
    let json = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    // Every value goes through `terminal::printable` below: errors, stacks, data and
    // metadata are whatever the task wrote.
    let mut fields: Vec<(&str, String)> = vec![
        ("id", t.id.to_string()),
        ("type", t.task_type.to_string()),
        ("state", t.state.to_string()),
        ("cluster", t.cluster.clone()),
        ("priority", format!("{} ({})", t.priority, t.priority.0)),
        ("created", table::time(t.created_at)),
        ("not before", table::maybe_time(t.not_before)),
        ("next attempt", table::time(t.next_attempt)),
        ("started", table::maybe_time(t.started_at)),
        ("finished", table::maybe_time(t.finished_at)),
        ("failures", t.failures.to_string()),
        ("iterations", t.iterations.to_string()),
        (
            "timeout",
            match t.timeout_ms {
                0 => "the task type's".to_string(),
                ms => format!("{ms} ms"),
            },
        ),
    ];
    if let Some(pause) = held_by {
        fields.push((
            "held",
            format!("{pause} is paused: the task starts once it is resumed"),
        ));
    }
    if let Some(progress) = &t.progress {
        fields.push(("progress", progress_line(progress, t.state)));
    }
    if let Some(owner) = &t.lease_owner {
        fields.push((
            "lease",
            format!("{owner} until {}", table::maybe_time(t.lease_until)),
        ));
    }
    if let Some(unique) = &t.unique {
        let states: Vec<&str> = unique.states.states().iter().map(|s| s.as_str()).collect();
        let period = unique
            .period_start
            .map(|start| format!(", in the period from {}", table::time(start)))
            .unwrap_or_default();
        fields.push((
            "unique key",
            format!("{} (while {}{period})", unique.key, states.join(", ")),
        ));
    }
    fields.push(("data", json(&t.data)));
    if let Some(aux) = &t.aux_data {
        fields.push(("aux data", json(aux)));
    }
    if let Some(result) = &t.result {
        fields.push(("result", json(result)));
    }
    if let Some(error) = &t.last_error {
        fields.push(("last error", error.clone()));
    }
    if let Some(stack) = &t.last_stack {
        fields.push(("last stack", stack.clone()));
    }
    for (key, value) in &t.metadata {
        fields.push(("metadata", format!("{key} = {value}")));
    }
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in fields {
        let indent = " ".repeat(width + 2);
        let value = terminal::printable(&value, terminal::Layout::Block)
            .replace('\n', &format!("\n{indent}"));
        println!("{key:<width$}  {value}");
    }
}
