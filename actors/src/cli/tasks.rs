//! `warren schedule` and `warren wait`: schedule a managed task and wait for its
//! outcome, against the database directly (a service may or may not be running).

use super::Failure;
use clap::Args;
use std::time::Duration;
use warren::store::{NewTask, ScheduleOptions, Store, StoreError, WaitFor};
use warren::task::{Priority, TaskType};

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
    /// Run time limit in milliseconds.
    #[arg(long)]
    pub timeout: Option<i64>,
    /// Aux data, a JSON object.
    #[arg(long)]
    pub aux: Option<String>,
    /// Also wait this many seconds for the outcome and print it.
    #[arg(long)]
    pub wait: Option<u64>,
}

/// Arguments of `warren wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// The task id.
    pub id: i64,
    /// Seconds to wait.
    #[arg(long, default_value_t = 60)]
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
    let task = NewTask::new(task_type, data).with_options(ScheduleOptions {
        not_before,
        priority,
        timeout_ms: args.timeout,
        aux_data,
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

async fn print_outcome(store: &Store, id: i64, seconds: u64) -> Result<(), Failure> {
    match store
        .wait(id, Duration::from_secs(seconds), WaitFor::Finished)
        .await
    {
        Ok(outcome) => {
            println!("{}", serde_json::to_string(&outcome).unwrap_or_default());
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
