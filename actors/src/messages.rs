//! The public messages of a Warren node: what an embedding application sends to the
//! [`crate::Supervisor`], and what it gets back.

use crate::error::Error;
use actix::prelude::*;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use warren::store::{
    CommitSignal, NewTask, NodeInfo, PoolUse, QueueCounts, ScheduleOptions, Scheduled,
    ScheduledState, Store, StoreError,
};
use warren::task::{Millis, TaskId, TaskType};
use warren::wasm::KillSwitch;

/// Schedules a managed task (answers with its id) — see [`ScheduleTask::managed`].
#[derive(Debug, Message)]
#[rtype(result = "Result<TaskId, StoreError>")]
pub struct ScheduleTask(pub NewTask);

impl ScheduleTask {
    /// A managed task of `task_type` with `data` and default options.
    pub fn managed(task_type: TaskType, data: serde_json::Value) -> ScheduleTask {
        ScheduleTask(NewTask::new(task_type, data))
    }

    /// The same task with scheduling options.
    pub fn with_options(self, options: ScheduleOptions) -> ScheduleTask {
        ScheduleTask(self.0.with_options(options))
    }
}

/// Schedules managed tasks in one transaction, all or none, and answers with their
/// ids in the same order. The Rust API does not check task types against the registry
/// (see [`crate::task_spec::check_task_types`] for that).
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<TaskId>, StoreError>")]
pub struct ScheduleTasks(pub Vec<NewTask>);

/// As [`ScheduleTasks`], answering for each task whether it was created or a duplicate
/// with the same unique key was found in its place (see [`warren::store::Unique`]).
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<Scheduled>, StoreError>")]
pub struct ScheduleTasksReporting(pub Vec<NewTask>);

/// Runs an ephemeral task and answers with an [`EphemeralTask`]: a future of its
/// result that kills the task when dropped before it finishes.
#[derive(Debug, Message)]
#[rtype(result = "EphemeralTask")]
pub struct RunEphemeralTask {
    /// Task type (`module:type`, declared with `<ephemeraltask>`).
    pub task_type: String,
    /// Data, any JSON.
    pub data: serde_json::Value,
    /// Timeout; the task type's when `None`.
    pub timeout: Option<Duration>,
    /// Start only once this transaction committed; fail with "did not commit" if it
    /// rolls back. See [`RunEphemeralTask::after_commit`].
    pub after_commit: Option<CommitSignal>,
}

impl RunEphemeralTask {
    /// An ephemeral task of `task_type` with `data`.
    pub fn new(task_type: &str, data: serde_json::Value) -> RunEphemeralTask {
        RunEphemeralTask {
            task_type: task_type.to_string(),
            data,
            timeout: None,
            after_commit: None,
        }
    }

    /// The same task with a timeout of its own.
    pub fn with_timeout(mut self, timeout: Duration) -> RunEphemeralTask {
        self.timeout = Some(timeout);
        self
    }

    /// The same task, scheduled inside the caller's open transaction: it starts when
    /// that transaction commits, and fails with "did not commit" when it rolls back.
    /// Take the signal with `PooledConnection::after_commit` on the transaction's
    /// connection.
    pub fn after_commit(mut self, committed: CommitSignal) -> RunEphemeralTask {
        self.after_commit = Some(committed);
        self
    }
}

/// A running ephemeral task: await it for the result (JSON), or drop it to kill the
/// task. Binding it to an actor's lifetime (keeping it in the actor) kills the task
/// when the actor stops.
#[derive(Debug)]
pub struct EphemeralTask {
    result: tokio::sync::oneshot::Receiver<Result<String, Error>>,
    kill: KillSwitch,
    done: bool,
}

impl EphemeralTask {
    /// The task whose answer (JSON text) comes through `result`, killed with `kill`.
    pub(crate) fn new(
        result: tokio::sync::oneshot::Receiver<Result<String, Error>>,
        kill: KillSwitch,
    ) -> EphemeralTask {
        EphemeralTask {
            result,
            kill,
            done: false,
        }
    }
}

impl std::future::Future for EphemeralTask {
    type Output = Result<serde_json::Value, Error>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match std::pin::Pin::new(&mut self.result).poll(cx) {
            std::task::Poll::Pending => std::task::Poll::Pending,
            std::task::Poll::Ready(answer) => {
                self.done = true;
                let answer = answer
                    .map_err(|_| Error::NodeStopped)
                    .and_then(|r| r)
                    .and_then(|text| serde_json::from_str(&text).map_err(Error::BadResult));
                std::task::Poll::Ready(answer)
            }
        }
    }
}

impl Drop for EphemeralTask {
    fn drop(&mut self) {
        if !self.done {
            self.kill.kill();
        }
    }
}

/// Cancels a managed task (killing it if it runs on this node); answers with the state
/// it was in.
#[derive(Debug, Message)]
#[rtype(result = "Result<warren::task::TaskState, StoreError>")]
pub struct CancelTask(pub TaskId);

/// Kills a managed task's run on this node without cancelling the task: the run
/// counts as a failed attempt and is retried by the usual rule. Answers whether it ran
/// here.
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct Kill(pub TaskId);

/// Runs the scheduled tasks due now (by the node's clock) on this node and answers with
/// their tags once they finished — for applications and tests that drive time
/// themselves (see `WarrenBuilder::scheduler_poll`).
#[derive(Debug, Message)]
#[rtype(result = "Vec<String>")]
pub struct RunDueScheduled;

/// Applies a bulk action to every task a filter matches (see `Store::bulk`); running
/// tasks it cancels that run on this node are killed.
#[derive(Debug, Message)]
#[rtype(result = "Result<warren::store::BulkReport, StoreError>")]
pub struct BulkTasks {
    /// Retry, cancel or delete.
    pub action: warren::store::BulkAction,
    /// The tasks to act on.
    pub filter: warren::store::TaskFilter,
    /// Batch size and cancel reason.
    pub options: warren::store::BulkOptions,
}

/// Retries a task now (see `Store::retry_now`).
#[derive(Debug, Message)]
#[rtype(result = "Result<warren::task::Millis, StoreError>")]
pub struct RetryTask(pub TaskId);

/// Runs a scheduled task now, whatever its schedule.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), StoreError>")]
pub struct RunScheduledNow(pub String);

/// Stops the node gracefully: stop claiming, let running tasks finish within the
/// grace period (then kill them, so they are retried), and unregister the node. The
/// application's actix system keeps running.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Shutdown {
    /// How long running tasks may take to finish.
    pub grace: Duration,
}

/// Asks the queue for its runners.
#[derive(Debug, Message)]
#[rtype(result = "QueueState")]
pub struct QueueStatus;

/// One runner's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunnerStatus {
    /// Its cluster.
    pub cluster: String,
    /// Its number in the cluster.
    pub index: usize,
    /// The managed task it runs.
    pub task_id: Option<TaskId>,
    /// The task type (or tag) it runs.
    pub task_type: Option<String>,
    /// For how long.
    pub running_ms: Option<u64>,
    /// For how long the run's database transaction has been open (from its first
    /// database call), if it has used the database.
    pub transaction_ms: Option<u64>,
}

impl RunnerStatus {
    /// Runners as a node publishes them with its heartbeat (see
    /// `Store::set_node_runners`): a JSON array of `{cluster, index, task_id, task_type,
    /// started_at, transaction_since}`, where the instants (ms) replace `running_ms` and
    /// `transaction_ms` so a reader can tell how long a run has gone on whenever it
    /// reads.
    pub fn publish(runners: &[RunnerStatus], now: Millis) -> serde_json::Value {
        runners
            .iter()
            .map(|r| {
                serde_json::json!({
                    "cluster": r.cluster,
                    "index": r.index,
                    "task_id": r.task_id,
                    "task_type": r.task_type,
                    "started_at": r.running_ms.map(|ms| now - ms as Millis),
                    "transaction_since": r.transaction_ms.map(|ms| now - ms as Millis),
                })
            })
            .collect()
    }

    /// Reads runners published by [`RunnerStatus::publish`] as of `now`; entries that
    /// do not have that shape are skipped.
    pub fn read_published(published: &serde_json::Value, now: Millis) -> Vec<RunnerStatus> {
        let Some(entries) = published.as_array() else {
            return Vec::new();
        };
        entries
            .iter()
            .filter_map(|e| {
                Some(RunnerStatus {
                    cluster: e.get("cluster")?.as_str()?.to_string(),
                    index: usize::try_from(e.get("index")?.as_u64()?).ok()?,
                    task_id: e
                        .get("task_id")
                        .and_then(serde_json::Value::as_i64)
                        .map(TaskId),
                    task_type: e
                        .get("task_type")
                        .and_then(serde_json::Value::as_str)
                        .map(str::to_string),
                    running_ms: e
                        .get("started_at")
                        .and_then(serde_json::Value::as_i64)
                        .map(|at| (now - at).max(0) as u64),
                    transaction_ms: e
                        .get("transaction_since")
                        .and_then(serde_json::Value::as_i64)
                        .map(|at| (now - at).max(0) as u64),
                })
            })
            .collect()
    }
}

/// The queue's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueState {
    /// Every runner.
    pub runners: Vec<RunnerStatus>,
    /// Runs finished since start.
    pub completed: u64,
    /// Whether it stopped claiming (shutting down).
    pub draining: bool,
    /// The database connections the node holds.
    pub connections: ConnectionUse,
}

/// The database connections a node holds, by pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ConnectionUse {
    /// The store's own pool (completions, maintenance, the API: all but claims and
    /// runs' transactions).
    pub store: PoolUse,
    /// The queue's thread's pool, for its claims (PostgreSQL; none on SQLite).
    pub queue: PoolUse,
    /// The runners' threads' pools, for their runs' transactions, together
    /// (PostgreSQL; none on SQLite).
    pub runner_threads: PoolUse,
}

/// Asks the Supervisor for what a dashboard serving its node needs
/// ([`NodeContext`]).
#[derive(Debug, Message)]
#[rtype(result = "NodeContext")]
pub struct GetNodeContext;

/// The answer to [`GetNodeContext`]: the node's name, store, metrics and maintenance
/// offset.
#[derive(Clone)]
pub struct NodeContext {
    /// This node's name.
    pub node: String,
    /// The node's store.
    pub store: Store,
    /// The node's metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The maintenance zone's offset in minutes, as the node computed it at start.
    pub maintenance_offset: u32,
}

/// Everything the dashboard shows of a node.
#[derive(Debug, Message)]
#[rtype(result = "Result<NodeStatus, Error>")]
pub struct Status;

/// The answer to [`Status`].
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// This node's name.
    pub node: String,
    /// Task counts per type and state.
    pub counts: Vec<QueueCounts>,
    /// Runners of this node.
    pub queue: QueueState,
    /// Scheduled tasks.
    pub scheduled: Vec<ScheduledState>,
    /// Every node sharing the database.
    pub nodes: Vec<NodeInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_runners_read_back_with_their_run_and_transaction_ages() {
        let runners = [
            RunnerStatus {
                cluster: "mail".into(),
                index: 0,
                task_id: Some(TaskId(7)),
                task_type: Some("m:send".into()),
                running_ms: Some(5_000),
                transaction_ms: Some(4_000),
            },
            RunnerStatus {
                cluster: "mail".into(),
                index: 1,
                task_id: None,
                task_type: None,
                running_ms: None,
                transaction_ms: None,
            },
        ];
        let published = RunnerStatus::publish(&runners, 100_000);
        let read = RunnerStatus::read_published(&published, 101_000);
        assert_eq!(
            read.iter()
                .map(|r| (r.index, r.running_ms, r.transaction_ms))
                .collect::<Vec<_>>(),
            [(0, Some(6_000), Some(5_000)), (1, None, None)]
        );
    }
}
