//! The values that go in and out of the store.

use super::schema::warren_tasks;
use super::StoreError;
use crate::task::{LeaseToken, Millis, Priority, TaskId, TaskState, TaskType};
use diesel::prelude::*;
use serde::Serialize;
use serde_json::Value;

pub use crate::task::DEFAULT_CLUSTER;

/// A managed task to schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    /// Full type name, `module:type`.
    pub task_type: TaskType,
    /// Task data: a JSON object.
    pub data: Value,
    /// Scheduling options.
    pub options: ScheduleOptions,
}

impl NewTask {
    /// A task of `task_type` with `data` and default options.
    pub fn new(task_type: TaskType, data: Value) -> NewTask {
        NewTask {
            task_type,
            data,
            options: ScheduleOptions::default(),
        }
    }

    /// The same task with `options`.
    pub fn with_options(mut self, options: ScheduleOptions) -> NewTask {
        self.options = options;
        self
    }
}

/// Options for scheduling a managed task; every field is optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScheduleOptions {
    /// The task does not run before this instant, retries included.
    pub not_before: Option<Millis>,
    /// Lower runs first; defaults to normal (0).
    pub priority: Option<Priority>,
    /// Longest a run may take (ms); 0 or unset: the task type's timeout.
    pub timeout_ms: Option<i64>,
    /// Extra data kept apart from the task data and merged into it when the task runs.
    pub aux_data: Option<Value>,
    /// Key/value metadata; keys are unique per task, case-insensitively.
    pub metadata: Vec<(String, String)>,
    /// The cluster whose runners take the task; defaults to the cluster its module
    /// definition gives the type (as registered by the nodes that load it), else
    /// `default`.
    pub cluster: Option<String>,
    /// A unique key: while a task of the same type has it (and is in one of the
    /// states that count), scheduling returns that task instead of a new one.
    pub unique: Option<super::Unique>,
    /// The scheduler will wait for the task's outcome ([`super::Store::wait`]): the
    /// task is stored as waited for, so its outcome announces itself from the start.
    /// On PostgreSQL a wait otherwise marks the task first, a write that locks its row
    /// and can make a claim running at that moment skip the task (see the waiter's
    /// flag in `docs/state-machine.md`). A task found as a duplicate of a unique
    /// key is returned as it is (a wait marks it). SQLite announces every outcome
    /// anyway.
    pub waited: bool,
}

/// A managed task as stored, every field included.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Task {
    /// Task id.
    pub id: TaskId,
    /// Full type name.
    pub task_type: TaskType,
    /// Cluster whose runners take the task.
    pub cluster: String,
    /// Lifecycle state.
    pub state: TaskState,
    /// Task data.
    pub data: Value,
    /// Aux data, if any.
    pub aux_data: Option<Value>,
    /// Result of the last resolution that carried one.
    pub result: Option<Value>,
    /// Error of the last failure.
    pub last_error: Option<String>,
    /// Stack trace of the last failure.
    pub last_stack: Option<String>,
    /// Lower runs first.
    pub priority: Priority,
    /// Longest a run may take (ms); 0: the task type's timeout.
    pub timeout_ms: i64,
    /// When it was scheduled.
    pub created_at: Millis,
    /// Never runs before this.
    pub not_before: Option<Millis>,
    /// When it runs next (while pending).
    pub next_attempt: Millis,
    /// When its latest run started.
    pub started_at: Option<Millis>,
    /// When it finished.
    pub finished_at: Option<Millis>,
    /// Consecutive failures (reset by a restart).
    pub failures: i32,
    /// Runs so far, whatever their outcome.
    pub iterations: i32,
    /// The node holding its lease (while running).
    pub lease_owner: Option<String>,
    /// When that lease expires.
    pub lease_until: Option<Millis>,
    /// The fencing token of the latest claim.
    pub lease_token: LeaseToken,
    /// Metadata, in key order (filled by [`super::Store::describe`]).
    pub metadata: Vec<(String, String)>,
    /// Its unique key, if it was scheduled with one.
    pub unique: Option<super::TaskUnique>,
    /// The key its type's flow rules (concurrency and rate limits) count it under,
    /// when its type has one (`''` for rules without a key field); `None` for every
    /// other task.
    pub flow_key: Option<String>,
    /// How far its latest run said it had got (filled by [`super::Store::describe`];
    /// `None` when that run reported nothing).
    pub progress: Option<Progress>,
}

/// The most bytes of a progress message.
pub const MAX_PROGRESS_MESSAGE_BYTES: usize = 1024;

/// How far a run says it has got: what task code last passed to `set-progress`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    /// From 0.0 (nothing done) to 1.0 (all done).
    pub fraction: f64,
    /// What the run is doing, in a few words.
    pub message: Option<String>,
    /// When it was reported (the store's clock, ms since the epoch).
    pub at: Millis,
}

/// Why a progress report was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvalidProgress {
    /// The fraction is not a number from 0 to 1.
    #[error("progress must be a fraction from 0 to 1, not {0}")]
    Fraction(f64),
    /// The message is too long.
    #[error("the progress message is {0} bytes; at most {MAX_PROGRESS_MESSAGE_BYTES} are kept")]
    MessageTooLong(usize),
}

impl Progress {
    /// A progress report, checked: `fraction` from 0 to 1, `message` at most
    /// [`MAX_PROGRESS_MESSAGE_BYTES`] (an empty message counts as none).
    pub fn new(
        fraction: f64,
        message: Option<String>,
        at: Millis,
    ) -> Result<Progress, InvalidProgress> {
        if !(0.0..=1.0).contains(&fraction) {
            return Err(InvalidProgress::Fraction(fraction));
        }
        let message = message.filter(|m| !m.is_empty());
        if let Some(m) = &message {
            if m.len() > MAX_PROGRESS_MESSAGE_BYTES {
                return Err(InvalidProgress::MessageTooLong(m.len()));
            }
        }
        Ok(Progress {
            fraction,
            message,
            at,
        })
    }
}

impl Task {
    /// The data the task's code sees: the task data with the aux data's fields merged in.
    pub fn merged_data(&self) -> Value {
        match (&self.data, &self.aux_data) {
            (Value::Object(data), Some(Value::Object(aux))) => {
                let mut merged = data.clone();
                for (k, v) in aux {
                    merged.insert(k.clone(), v.clone());
                }
                Value::Object(merged)
            }
            _ => self.data.clone(),
        }
    }
}

/// A row of `warren_tasks` as diesel reads it.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = warren_tasks)]
pub(crate) struct TaskRow {
    pub id: TaskId,
    pub task_type: String,
    pub cluster: String,
    pub state: TaskState,
    pub data: String,
    pub aux_data: Option<String>,
    pub result: Option<String>,
    pub last_error: Option<String>,
    pub last_stack: Option<String>,
    pub priority: i32,
    pub timeout_ms: i64,
    pub created_at: i64,
    pub not_before: Option<i64>,
    pub next_attempt: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub failures: i32,
    pub iterations: i32,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub lease_token: LeaseToken,
    pub unique_key: Option<String>,
    pub unique_states: Option<i32>,
    pub flow_key: Option<String>,
}

fn parse_json(id: TaskId, field: &'static str, text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        id,
        field,
        message: e.to_string(),
    })
}

impl TryFrom<TaskRow> for Task {
    type Error = StoreError;
    fn try_from(r: TaskRow) -> Result<Task, StoreError> {
        let id = r.id;
        let corrupt = |field, message: String| StoreError::Corrupt { id, field, message };
        Ok(Task {
            id,
            task_type: r
                .task_type
                .parse()
                .map_err(|e: crate::task::TaskTypeError| corrupt("task_type", e.to_string()))?,
            cluster: r.cluster,
            state: r.state,
            data: parse_json(id, "data", &r.data)?,
            aux_data: r
                .aux_data
                .as_deref()
                .map(|t| parse_json(id, "aux_data", t))
                .transpose()?,
            result: r
                .result
                .as_deref()
                .map(|t| parse_json(id, "result", t))
                .transpose()?,
            last_error: r.last_error,
            last_stack: r.last_stack,
            priority: Priority(r.priority),
            timeout_ms: r.timeout_ms,
            created_at: r.created_at,
            not_before: r.not_before,
            next_attempt: r.next_attempt,
            started_at: r.started_at,
            finished_at: r.finished_at,
            failures: r.failures,
            iterations: r.iterations,
            lease_owner: r.lease_owner,
            lease_until: r.lease_until,
            lease_token: r.lease_token,
            metadata: Vec::new(),
            unique: super::TaskUnique::from_columns(r.unique_key.as_deref(), r.unique_states),
            flow_key: r.flow_key,
            progress: None,
        })
    }
}

/// A task handed to a runner by a claim: the task and the fencing token that every
/// later write about this run must present.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedTask {
    /// The task as it was claimed (state running).
    pub task: Task,
    /// Fencing token of this claim.
    pub token: LeaseToken,
}

/// Which tasks a listing shows, by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StateFilter {
    /// Every task.
    #[default]
    All,
    /// Pending and due now.
    Pending,
    /// Pending with a next attempt in the future (waiting for a retry or not-before).
    Future,
    /// Claimed by a runner.
    Running,
    /// Finished by completion.
    Completed,
    /// Finished by failure.
    Failed,
    /// Finished by cancellation.
    Cancelled,
    /// Not finished: pending (due or future) or running.
    Unfinished,
}

impl std::str::FromStr for StateFilter {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<StateFilter, StoreError> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "all" | "" => StateFilter::All,
            "pending" => StateFilter::Pending,
            "future" => StateFilter::Future,
            "running" => StateFilter::Running,
            "completed" => StateFilter::Completed,
            "failed" => StateFilter::Failed,
            "cancelled" => StateFilter::Cancelled,
            "unfinished" => StateFilter::Unfinished,
            _ => {
                return Err(StoreError::Invalid {
                    field: "state",
                    message: format!(
                        "'{s}' is not one of all, pending, future, running, completed, failed, cancelled, unfinished"
                    ),
                })
            }
        })
    }
}

/// What a task listing, count or bulk action selects (listings newest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFilter {
    /// Task type mask; `*` matches any run of characters (`mymodule:*`).
    pub type_mask: Option<String>,
    /// State selection.
    pub state: StateFilter,
    /// Only tasks created at or after this instant.
    pub created_from: Option<Millis>,
    /// Only tasks created before this instant.
    pub created_until: Option<Millis>,
    /// Only tasks whose data has this field with this value.
    pub data_equals: Option<super::DataEquals>,
    /// Only tasks whose data, as JSON text, contains this (case-insensitive for ASCII
    /// letters everywhere, for all letters on PostgreSQL).
    pub data_contains: Option<String>,
    /// Only tasks whose last error contains this (case as for `data_contains`).
    pub error_contains: Option<String>,
    /// Paging: only tasks with an id below this one (the last id of the previous page).
    pub before_id: Option<TaskId>,
    /// Page size (1–10,000).
    pub limit: i64,
}

impl Default for TaskFilter {
    fn default() -> TaskFilter {
        TaskFilter {
            type_mask: None,
            state: StateFilter::All,
            created_from: None,
            created_until: None,
            data_equals: None,
            data_contains: None,
            error_contains: None,
            before_id: None,
            limit: 100,
        }
    }
}

/// Number of tasks of one type in each state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueueCounts {
    /// Task type.
    pub task_type: String,
    /// Pending and due now.
    pub pending: i64,
    /// Pending with a future next attempt.
    pub future: i64,
    /// Running.
    pub running: i64,
    /// Completed.
    pub completed: i64,
    /// Failed.
    pub failed: i64,
    /// Cancelled.
    pub cancelled: i64,
}

/// The outcome of a task as a waiter sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskOutcome {
    /// Task id.
    pub id: TaskId,
    /// State when the wait ended.
    pub state: TaskState,
    /// The result, if the resolution carried one.
    pub result: Option<Value>,
    /// The last error, if any.
    pub error: Option<String>,
    /// Consecutive failures so far.
    pub failures: i32,
}
