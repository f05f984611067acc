//! The task model shared by every layer: task type names, priorities, states,
//! resolutions, and the retry rule as pure functions.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Identifier of a managed task (a row in the queue). Serialized as a plain JSON
/// number; a type of its own so that it cannot be mixed up with a [`LeaseToken`] or
/// any other integer.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    diesel::expression::AsExpression,
    diesel::deserialize::FromSqlRow,
)]
#[serde(transparent)]
#[diesel(sql_type = diesel::sql_types::BigInt)]
pub struct TaskId(pub i64);

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for TaskId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<TaskId, Self::Err> {
        s.parse().map(TaskId)
    }
}

impl From<i64> for TaskId {
    fn from(id: i64) -> TaskId {
        TaskId(id)
    }
}

/// The fencing token of one claim of a task (or of a scheduled tag's run): every write
/// about that run must present it, and is refused once a later claim or a cancellation
/// has moved it on (see `docs/state-machine.md`). A type of its own so that a call such
/// as `renew_lease(id, token, …)` cannot compile with its arguments swapped.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    diesel::expression::AsExpression,
    diesel::deserialize::FromSqlRow,
)]
#[serde(transparent)]
#[diesel(sql_type = diesel::sql_types::BigInt)]
pub struct LeaseToken(pub i64);

impl LeaseToken {
    /// The token the next claim takes.
    pub fn next(self) -> LeaseToken {
        LeaseToken(self.0 + 1)
    }
}

impl fmt::Display for LeaseToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Milliseconds since the Unix epoch (UTC). Every instant in the store is kept this way,
/// so both backends compare times as plain integers and tests can inject any clock.
pub type Millis = i64;

/// Default delay before the first retry: 15 minutes, as the reference does.
pub const DEFAULT_FAIL_RESCHEDULE_MS: i64 = 15 * 60 * 1000;

/// Default number of failures before a task is given up: -1, retry forever.
pub const DEFAULT_MAX_FAILURES: i32 = -1;

/// Name of the cluster a task type belongs to when its definition names none; it
/// always exists, with one worker unless declared otherwise.
pub const DEFAULT_CLUSTER: &str = "default";

/// Longest task type name accepted (`module:type`), as the reference limits it.
pub const MAX_TASK_TYPE_LEN: usize = 400;

/// A task type's full name, `module:type`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TaskType(String);

impl TaskType {
    /// Builds a full name from a module name and a type name.
    pub fn new(module: &str, name: &str) -> Result<TaskType, TaskTypeError> {
        format!("{module}:{name}").parse()
    }

    /// The module part (before the colon).
    pub fn module(&self) -> &str {
        self.0.split_once(':').map(|(m, _)| m).unwrap_or("")
    }

    /// The type part (after the colon).
    pub fn name(&self) -> &str {
        self.0.split_once(':').map(|(_, n)| n).unwrap_or("")
    }

    /// The full `module:type` text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a text is not a valid task type name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskTypeError {
    /// No colon separating module and type.
    #[error("task type '{0}' must be written as module:type")]
    MissingModule(String),
    /// A part is empty or holds characters other than letters, digits, `_`, `-` and `.`.
    #[error("task type '{0}' may only use letters, digits, '_', '-' and '.' in its module and type names")]
    BadCharacters(String),
    /// Longer than [`MAX_TASK_TYPE_LEN`].
    #[error("task type '{0}…' is longer than {MAX_TASK_TYPE_LEN} characters")]
    TooLong(String),
}

/// Whether `part` is a valid module or type name.
pub fn is_valid_name_part(part: &str) -> bool {
    !part.is_empty()
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl FromStr for TaskType {
    type Err = TaskTypeError;
    fn from_str(s: &str) -> Result<TaskType, TaskTypeError> {
        if s.len() > MAX_TASK_TYPE_LEN {
            return Err(TaskTypeError::TooLong(s.chars().take(40).collect()));
        }
        let Some((module, name)) = s.split_once(':') else {
            return Err(TaskTypeError::MissingModule(s.to_string()));
        };
        if !is_valid_name_part(module) || !is_valid_name_part(name) {
            return Err(TaskTypeError::BadCharacters(s.to_string()));
        }
        Ok(TaskType(s.to_string()))
    }
}

impl TryFrom<String> for TaskType {
    type Error = TaskTypeError;
    fn try_from(s: String) -> Result<TaskType, TaskTypeError> {
        s.parse()
    }
}

impl From<TaskType> for String {
    fn from(t: TaskType) -> String {
        t.0
    }
}

impl fmt::Display for TaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A task's priority: lower runs first. Named levels are those of the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Priority(pub i32);

impl Priority {
    /// Runs after everything else.
    pub const BACKGROUND: Priority = Priority(100);
    /// The default.
    pub const NORMAL: Priority = Priority(0);
    /// Someone is waiting for it.
    pub const INTERACTIVE: Priority = Priority(-100);
    /// Updates that must go before ordinary work.
    pub const UPDATE: Priority = Priority(-200);
    /// Updates someone is waiting for.
    pub const UPDATE_INTERACTIVE: Priority = Priority(-300);

    /// The named levels, in the order they are documented.
    pub const NAMED: [(&'static str, Priority); 5] = [
        ("background", Priority::BACKGROUND),
        ("normal", Priority::NORMAL),
        ("interactive", Priority::INTERACTIVE),
        ("update", Priority::UPDATE),
        ("updateinteractive", Priority::UPDATE_INTERACTIVE),
    ];
}

impl Default for Priority {
    fn default() -> Priority {
        Priority::NORMAL
    }
}

/// A priority that is neither a known name nor an integer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown priority '{0}': use a number or one of background, normal, interactive, update, updateinteractive")]
pub struct PriorityError(pub String);

impl FromStr for Priority {
    type Err = PriorityError;
    /// Accepts a name (case-insensitive) or an integer such as `-150`.
    fn from_str(s: &str) -> Result<Priority, PriorityError> {
        let t = s.trim();
        if let Some((_, p)) = Priority::NAMED
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(t))
        {
            return Ok(*p);
        }
        t.parse::<i32>()
            .map(Priority)
            .map_err(|_| PriorityError(s.to_string()))
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Priority::NAMED.iter().find(|(_, p)| p == self) {
            Some((name, _)) => f.write_str(name),
            None => write!(f, "{}", self.0),
        }
    }
}

/// Where a managed task is in its lifecycle (see `docs/state-machine.md`). The store
/// writes and reads it as its lower-case name in a text column (see
/// `store/sql_types.rs`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    diesel::expression::AsExpression,
    diesel::deserialize::FromSqlRow,
)]
#[serde(rename_all = "lowercase")]
#[diesel(sql_type = diesel::sql_types::Text)]
pub enum TaskState {
    /// Waiting for its next attempt (due now, or in the future).
    Pending,
    /// Claimed by a runner under a lease.
    Running,
    /// Finished by a completion.
    Completed,
    /// Finished by a permanent failure, or by running out of retries.
    Failed,
    /// Finished by a cancellation (by the task itself or by an operator).
    Cancelled,
}

impl TaskState {
    /// Every state, in lifecycle order.
    pub const ALL: [TaskState; 5] = [
        TaskState::Pending,
        TaskState::Running,
        TaskState::Completed,
        TaskState::Failed,
        TaskState::Cancelled,
    ];

    /// The name stored in the database and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::Completed => "completed",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
        }
    }

    /// Whether the task will never run again on its own.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TaskState::Completed | TaskState::Failed | TaskState::Cancelled
        )
    }
}

/// A text that names no task state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown task state '{0}': use pending, running, completed, failed or cancelled")]
pub struct TaskStateError(pub String);

impl FromStr for TaskState {
    type Err = TaskStateError;
    fn from_str(s: &str) -> Result<TaskState, TaskStateError> {
        TaskState::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| TaskStateError(s.to_string()))
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The one outcome a task run selects. JSON values travel as JSON text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "resolution", rename_all = "kebab-case")]
pub enum Resolution {
    /// Done: the result is stored and the task's own database work commits with it.
    Completion {
        /// Result as JSON text.
        result: String,
    },
    /// Failed for good: never retried; the error and optional result are kept.
    PermanentFailure {
        /// What went wrong.
        error: String,
        /// Optional result as JSON text.
        result: Option<String>,
    },
    /// Stopped on purpose: like a permanent failure, but the task reads as cancelled.
    Cancellation {
        /// Why it was cancelled.
        error: String,
    },
    /// Try again later: the task's database work is rolled back, then the retry rule runs.
    TemporaryFailure {
        /// What went wrong.
        error: String,
        /// A stack trace, when the failure came from an exception or trap.
        stack: Option<String>,
        /// Explicit time of the next attempt; wins over the retry schedule.
        next_retry: Option<Millis>,
    },
    /// Run again at `at` (or now, if earlier) as a fresh iteration, optionally with new data.
    Restart {
        /// Earliest time of the next run.
        at: Millis,
        /// Replacement task data (JSON text).
        new_data: Option<String>,
        /// Replacement aux data (JSON text).
        new_aux_data: Option<String>,
    },
    /// Not now: run again no earlier than `at`, with the failure count kept as it is
    /// (a restart resets it, a temporary failure adds one). The run's database work
    /// commits, as with a restart.
    Snooze {
        /// Earliest time of the next run.
        at: Millis,
    },
}

impl Resolution {
    /// A short name for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Resolution::Completion { .. } => "completion",
            Resolution::PermanentFailure { .. } => "permanent failure",
            Resolution::Cancellation { .. } => "cancellation",
            Resolution::TemporaryFailure { .. } => "temporary failure",
            Resolution::Restart { .. } => "restart",
            Resolution::Snooze { .. } => "snooze",
        }
    }
}

pub use crate::retry::{
    decide_failure, retry_delay_ms, Backoff, FailureDecision, RetryPolicy, RETRY_CAP_MS,
    RETRY_DOUBLINGS,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse() {
        assert_eq!("Interactive".parse(), Ok(Priority::INTERACTIVE));
        assert_eq!("-150".parse(), Ok(Priority(-150)));
        assert!("urgent".parse::<Priority>().is_err());
        assert_eq!(Priority::UPDATE.to_string(), "update");
        assert!("mod:task".parse::<TaskType>().is_ok());
        assert!("task".parse::<TaskType>().is_err());
        assert!("mod:ta sk".parse::<TaskType>().is_err());
        assert_eq!("Failed".parse(), Ok(TaskState::Failed));
    }
}
