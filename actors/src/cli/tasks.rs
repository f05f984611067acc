//! `warren schedule` and `warren wait`: schedule a managed task and wait for its
//! outcome, against the database directly (a service may or may not be running).

use super::{durations, terminal, Failure};
use clap::Args;
use std::time::Duration;
use warren::store::{NewTask, ScheduleOptions, Store, StoreError, WaitFor};
use warren::task::{Priority, TaskId, TaskType};

/// Arguments of `warren schedule`.
#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// Task type, `module:type`.
    pub task_type: String,
    /// Task data, a JSON object.
    #[arg(default_value = "{}")]
    pub data: String,
    /// Priority: a number (lower runs first) or background, normal, interactive, update,
    /// updateinteractive.
    #[arg(long)]
    pub priority: Option<String>,
    /// Do not run before this instant (RFC 3339).
    #[arg(long)]
    pub not_before: Option<String>,
    /// Run time limit in milliseconds (0: the task type's; at most one year).
    #[arg(long, value_name = "MS", value_parser = durations::millis)]
    pub timeout: Option<i64>,
    /// Aux data, a JSON object.
    #[arg(long)]
    pub aux: Option<String>,
    /// Also wait this many seconds (at most one year) for the outcome and print it.
    #[arg(long, value_name = "SECONDS", value_parser = durations::seconds)]
    pub wait: Option<u64>,
    /// Schedule it even if no node has registered the task type (no module a node
    /// loaded declares it).
    #[arg(long)]
    pub allow_unknown_type: bool,
}

/// Arguments of `warren wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// The task id.
    pub id: TaskId,
    /// Seconds to wait (at most one year).
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = durations::seconds)]
    pub timeout: u64,
}

fn json_arg(what: &str, text: &str) -> Result<serde_json::Value, Failure> {
    serde_json::from_str(text)
        .map_err(|e| Failure::Invalid(format!("{what} is not valid JSON: {e}")))
}

fn invalid(e: StoreError) -> Failure {
    match e {
        StoreError::Invalid { .. } | StoreError::NotFound(_) => Failure::Invalid(e.to_string()),
        other => Failure::Error(other.to_string()),
    }
}

/// Schedules the task and prints its id (and, with --wait, its outcome).
pub async fn schedule(database: &str, args: ScheduleArgs) -> Result<(), Failure> {
    let task_type: TaskType = args
        .task_type
        .parse()
        .map_err(|e: warren::task::TaskTypeError| Failure::Invalid(e.to_string()))?;
    let data = json_arg("the task data", &args.data)?;
    let priority = args
        .priority
        .as_deref()
        .map(|p| {
            p.parse::<Priority>()
                .map_err(|e| Failure::Invalid(e.to_string()))
        })
        .transpose()?;
    let not_before = args
        .not_before
        .as_deref()
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|d| d.timestamp_millis())
                .map_err(|e| Failure::Invalid(format!("invalid --not-before '{t}': {e}")))
        })
        .transpose()?;
    let aux_data = args
        .aux
        .as_deref()
        .map(|a| json_arg("--aux", a))
        .transpose()?;
    let store = Store::open(database).await?;
    let check = store.check_task_type(&task_type, None).await?;
    if !check.is_registered() && !args.allow_unknown_type {
        return Err(Failure::Invalid(format!(
            "unknown task type '{task_type}': no node has registered it (no module a node \
             has loaded declares it); start a node with its module first, or pass \
             --allow-unknown-type to schedule it anyway"
        )));
    }
    for warning in check.warnings() {
        eprintln!("warren: warning: {warning}");
    }
    let task = NewTask::new(task_type, data).with_options(ScheduleOptions {
        not_before,
        priority,
        timeout_ms: args.timeout,
        aux_data,
        // The cluster the check looked at (the registration as the database has it now).
        cluster: Some(check.cluster),
        ..ScheduleOptions::default()
    });
    let id = store.schedule(task).await.map_err(invalid)?;
    println!("{id}");
    if let Some(seconds) = args.wait {
        print_outcome(&store, id, seconds).await?;
    }
    Ok(())
}

/// Waits for a task's outcome and prints it as JSON.
pub async fn wait(database: &str, args: WaitArgs) -> Result<(), Failure> {
    let store = Store::open(database).await?;
    print_outcome(&store, args.id, args.timeout).await
}

async fn print_outcome(store: &Store, id: TaskId, seconds: u64) -> Result<(), Failure> {
    match store
        .wait(id, Duration::from_secs(seconds), WaitFor::Finished)
        .await
    {
        Ok(outcome) => {
            // Task-provided text (result, error) as JSON a terminal cannot act on.
            println!("{}", terminal::compact_json(&outcome).unwrap_or_default());
            if outcome.state == warren::task::TaskState::Completed {
                Ok(())
            } else {
                Err(Failure::Error(format!("task {id} ended {}", outcome.state)))
            }
        }
        Err(e @ StoreError::WaitTimeout { .. }) => Err(Failure::Error(e.to_string())),
        Err(e) => Err(invalid(e)),
    }
}
