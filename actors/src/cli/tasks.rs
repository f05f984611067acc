//! `warren schedule` and `warren wait`: schedule a managed task (or, with `--batch`, the
//! tasks of a file: see `batch.rs`) and wait for its outcome, against the database
//! directly (a service may or may not be running).

use super::{batch, durations, terminal, Failure};
use clap::Args;
use std::time::Duration;
use warren::store::{
    NewTask, ScheduleOptions, Scheduled, Store, StoreError, UniquePart, UniqueParts, UniqueStates,
    WaitFor,
};
use warren::task::TaskId;
use warren::trace::{add_trace, TraceParent};
use warren_actors::task_spec::{self, BatchError, SpecError, TaskSpec};

/// How the command line schedules a task of a type no node has registered anyway.
pub(super) const HOW_TO_ALLOW: &str = "start a node with its module first, or pass \
     --allow-unknown-type to schedule it anyway";

/// Arguments of `warren schedule`.
#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// Task type, `module:type` (not with --batch).
    #[arg(required_unless_present = "batch")]
    pub task_type: Option<String>,
    /// Task data, a JSON object [default: {}].
    pub data: Option<String>,
    /// Priority: a number (lower runs first) or background, normal, interactive, update,
    /// updateinteractive.
    #[arg(long)]
    pub priority: Option<String>,
    /// Do not run before this instant (RFC 3339, or milliseconds since the Unix epoch).
    #[arg(long)]
    pub not_before: Option<String>,
    /// Run time limit in milliseconds (0: the task type's; at most one year).
    #[arg(long, value_name = "MS", value_parser = durations::millis)]
    pub timeout: Option<i64>,
    /// Aux data, a JSON object.
    #[arg(long)]
    pub aux: Option<String>,
    /// A unique key: while a task of this type holds this key (it is pending or
    /// running, or in a state it was scheduled to keep the key in), print that task's
    /// id and schedule nothing.
    #[arg(long, value_name = "KEY")]
    pub unique_key: Option<String>,
    /// With --unique-key: finished states in which this task keeps holding its key
    /// (comma-separated: completed, failed, cancelled); pending and running always do.
    #[arg(long, value_name = "STATES")]
    pub unique_states: Option<String>,
    /// With --unique-key: the key holds within periods of this many milliseconds
    /// (counted from the Unix epoch); the next period's task is a new one.
    #[arg(long, value_name = "MS", value_parser = durations::millis)]
    pub unique_period: Option<i64>,
    /// With --unique-key: start the task this many milliseconds from now; a pending
    /// duplicate takes the new data and its start moves to this long from now.
    #[arg(long, value_name = "MS", value_parser = durations::millis)]
    pub debounce: Option<i64>,
    /// With --debounce: never start later than this many milliseconds after the task
    /// was first scheduled [default: ten times --debounce].
    #[arg(long, value_name = "MS", value_parser = durations::millis)]
    pub debounce_max: Option<i64>,
    /// The W3C trace context to link the task's runs to (`00-<trace id>-<span id>-<flags>`),
    /// kept as its `traceparent` metadata; with --batch, of the lines that name none.
    /// Without it, the TRACEPARENT environment variable's (ignored, with a warning, when
    /// it is not one).
    #[arg(long, value_name = "TRACEPARENT", value_parser = traceparent)]
    pub traceparent: Option<TraceParent>,
    /// Also wait this many seconds (at most one year) for the outcome and print it.
    #[arg(long, value_name = "SECONDS", value_parser = durations::seconds)]
    pub wait: Option<u64>,
    /// Schedule it even if no node has registered the task type (no module a node
    /// loaded declares it); with --batch, every line's.
    #[arg(long)]
    pub allow_unknown_type: bool,
    /// Schedule the tasks of a file of JSON lines (`-`: standard input), one task per
    /// line as the API takes it: {"type": …, "data"?: …, "priority"?: …,
    /// "not_before"?: …, …}; blank lines are skipped. Every line is checked first: if
    /// any is bad, each is reported as FILE:LINE and nothing is scheduled. Prints the
    /// ids, one per line.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = [
            "task_type", "data", "priority", "not_before", "timeout", "aux", "wait",
            "unique_key", "unique_states", "unique_period", "debounce", "debounce_max",
        ]
    )]
    pub batch: Option<String>,
    /// Print JSON: `{"id", "created", "warnings"}` (warnings then go there, not to
    /// standard error), then with --wait the outcome on a line of its own; with
    /// --batch, the ids as one array.
    #[arg(long)]
    pub json: bool,
}

/// Reads `--traceparent`.
fn traceparent(text: &str) -> Result<TraceParent, String> {
    text.parse()
        .map_err(|e: warren::trace::TraceParentError| e.to_string())
}

/// Arguments of `warren wait`.
#[derive(Debug, Args)]
pub struct WaitArgs {
    /// The task id.
    pub id: TaskId,
    /// Seconds to wait (at most one year).
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = durations::seconds)]
    pub timeout: u64,
    /// Print JSON (what `wait` always prints: accepted like every command's --json).
    #[arg(long)]
    pub json: bool,
}

fn json_arg(what: &str, text: &str) -> Result<serde_json::Value, Failure> {
    serde_json::from_str(text)
        .map_err(|e| Failure::Invalid(format!("{what} is not valid JSON: {e}")))
}

fn invalid(e: StoreError) -> Failure {
    match e {
        StoreError::Invalid { .. }
        | StoreError::NotFound(_)
        | StoreError::UniqueConflict { .. } => Failure::Invalid(e.to_string()),
        other => Failure::Error(other.to_string()),
    }
}

fn spec_failure(e: SpecError) -> Failure {
    Failure::Invalid(e.message)
}

/// The command-line flag of a unique-task option.
fn unique_flag(part: UniquePart) -> &'static str {
    match part {
        UniquePart::Key => "--unique-key",
        UniquePart::States => "--unique-states",
        UniquePart::Period => "--unique-period",
        UniquePart::Debounce => "--debounce",
        UniquePart::DebounceMax => "--debounce-max",
    }
}

/// The trace context of `--traceparent`, else of the TRACEPARENT variable (a value
/// that is not one is ignored with a warning: another tool set it, not the user).
fn trace_context(args: &ScheduleArgs) -> Option<TraceParent> {
    if args.traceparent.is_some() {
        return args.traceparent;
    }
    let text = std::env::var("TRACEPARENT").ok()?;
    match text.parse() {
        Ok(parent) => Some(parent),
        Err(e) => {
            eprintln!("warren: TRACEPARENT ignored: {e}");
            None
        }
    }
}

/// Schedules the task and prints its id (and, with --wait, its outcome); with --batch,
/// the tasks of a file.
pub async fn schedule(database: &str, args: ScheduleArgs) -> Result<(), Failure> {
    if let Some(source) = &args.batch {
        return batch::schedule(
            database,
            source,
            args.allow_unknown_type,
            trace_context(&args),
            args.json,
        )
        .await;
    }
    let Some(task_type) = &args.task_type else {
        return Err(Failure::Invalid(
            "give a task type (or --batch FILE)".to_string(),
        ));
    };
    let task_type = task_spec::task_type(task_type).map_err(spec_failure)?;
    let data = json_arg("the task data", args.data.as_deref().unwrap_or("{}"))?;
    let priority = args
        .priority
        .as_deref()
        .map(task_spec::priority_text)
        .transpose()
        .map_err(spec_failure)?;
    let not_before = args
        .not_before
        .as_deref()
        .map(|t| task_spec::instant("--not-before", t))
        .transpose()
        .map_err(spec_failure)?;
    let aux_data = args
        .aux
        .as_deref()
        .map(|a| json_arg("--aux", a))
        .transpose()?;
    let unique = UniqueParts {
        key: args.unique_key.clone(),
        states: args
            .unique_states
            .as_deref()
            .map(UniqueStates::parse_list)
            .transpose()
            .map_err(|e| Failure::Invalid(format!("invalid --unique-states: {e}")))?,
        period_ms: args.unique_period,
        debounce_ms: args.debounce,
        debounce_max_ms: args.debounce_max,
    }
    .build()
    .map_err(|e| Failure::Invalid(format!("invalid {}: {}", unique_flag(e.part), e.message)))?;
    let mut metadata = Vec::new();
    if let Some(parent) = trace_context(&args) {
        add_trace(&mut metadata, parent);
    }
    let task = NewTask::new(task_type, data).with_options(ScheduleOptions {
        not_before,
        priority,
        timeout_ms: args.timeout,
        aux_data,
        unique,
        metadata,
        // `--wait` waits for the outcome: stored as waited for, the task's wait sets
        // nothing (see `ScheduleOptions::waited`).
        waited: args.wait.is_some(),
        ..ScheduleOptions::default()
    });
    task.validate().map_err(invalid)?;
    let spec = TaskSpec {
        task,
        allow_unknown_type: args.allow_unknown_type,
    };
    let store = Store::open(database).await?;
    let checked = match task_spec::check_task_types(&store, vec![spec], false, HOW_TO_ALLOW).await {
        Ok(checked) => checked,
        Err(BatchError::Refused(mut refused)) => {
            return Err(refused.pop().map_or_else(
                || Failure::Error("the task was refused".into()),
                |(_, e)| spec_failure(e),
            ))
        }
        Err(BatchError::Store(e)) => return Err(e.into()),
    };
    if !args.json {
        for warning in &checked.warnings {
            eprintln!("warren: warning: {warning}");
        }
    }
    let Some(task) = checked.tasks.into_iter().next() else {
        return Err(Failure::Error("the checked task went missing".into()));
    };
    let key = task.options.unique.as_ref().map(|u| u.key.clone());
    let scheduled = store
        .schedule_batch_reporting(std::slice::from_ref(&task))
        .await
        .map_err(invalid)?;
    let Some(&Scheduled { id, created }) = scheduled.first() else {
        return Err(Failure::Error("the store returned no id".into()));
    };
    if args.json {
        let answer =
            serde_json::json!({"id": id, "created": created, "warnings": checked.warnings});
        println!("{}", terminal::compact_json(&answer).unwrap_or_default());
    } else {
        println!("{id}");
    }
    if !created && !args.json {
        eprintln!(
            "warren: task {id} already has unique key '{}': nothing new was scheduled",
            key.unwrap_or_default()
        );
    }
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
