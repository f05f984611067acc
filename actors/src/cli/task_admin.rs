//! `warren tasks list|show|retry|cancel|delete`: operate on managed tasks through the
//! database directly, whether or not a node runs. A node notices a cancelled task it
//! runs at its next lease renewal and stops it.

use super::{table, terminal, Failure};
use clap::{Args, Subcommand};
use warren::store::{PauseTarget, StateFilter, Store, StoreError, Task, TaskFilter};
use warren::task::{Millis, TaskId, TaskState};

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
    /// Run a pending, failed or cancelled task now.
    Retry {
        /// The task id.
        id: TaskId,
        /// Print JSON (`{"id", "state", "next_attempt"}`) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a pending or running task (a running one is stopped by its node).
    Cancel {
        /// The task id.
        id: TaskId,
        /// Print JSON (`{"id", "state", "was"}`) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Delete a task that is not running.
    Delete {
        /// The task id.
        id: TaskId,
        /// Print JSON (`{"id", "deleted"}`) instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Arguments of `warren tasks list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Task type mask; `*` matches any run of characters (`demo:*`).
    #[arg(long = "type", value_name = "MASK")]
    pub type_mask: Option<String>,
    /// all, pending (due now), future, running, completed, failed, cancelled or
    /// unfinished.
    #[arg(long, default_value = "all")]
    pub state: String,
    /// Only tasks created at or after this instant (RFC 3339 or milliseconds).
    #[arg(long)]
    pub from: Option<String>,
    /// Only tasks created before this instant (RFC 3339 or milliseconds).
    #[arg(long)]
    pub until: Option<String>,
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

/// An instant argument: RFC 3339 text or milliseconds since the Unix epoch (read as the
/// API and `warren schedule` read them).
fn instant(option: &'static str, text: &str) -> Result<Millis, Failure> {
    warren_actors::task_spec::instant(option, text).map_err(|e| Failure::Invalid(e.message))
}

/// Runs a task command.
pub async fn run(database: &str, cmd: TasksCommand) -> Result<(), Failure> {
    match cmd {
        TasksCommand::List(args) => list(database, args).await,
        TasksCommand::Show { id, json } => show(database, id, json).await,
        TasksCommand::Retry { id, json } => {
            let store = Store::open(database).await?;
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
            Ok(())
        }
        TasksCommand::Cancel { id, json } => {
            let store = Store::open(database).await?;
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
            Ok(())
        }
        TasksCommand::Delete { id, json } => {
            let store = Store::open(database).await?;
            store.delete(id).await.map_err(store_failure)?;
            match json {
                true => println!(
                    "{}",
                    to_json(&serde_json::json!({"id": id, "deleted": true}))?
                ),
                false => println!("task {id} deleted"),
            }
            Ok(())
        }
    }
}

async fn list(database: &str, args: ListArgs) -> Result<(), Failure> {
    let filter = TaskFilter {
        type_mask: args.type_mask,
        state: args.state.parse::<StateFilter>().map_err(store_failure)?,
        created_from: args
            .from
            .as_deref()
            .map(|t| instant("--from", t))
            .transpose()?,
        created_until: args
            .until
            .as_deref()
            .map(|t| instant("--until", t))
            .transpose()?,
        before_id: args.before,
        limit: args.limit,
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
