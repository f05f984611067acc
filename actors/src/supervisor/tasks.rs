//! The Supervisor's task messages: scheduling managed tasks (one, or a batch in one
//! transaction), running ephemeral ones, cancelling, retrying and killing.

use super::Supervisor;
use crate::error::Error;
use crate::messages::{
    BulkTasks, CancelTask, EphemeralTask, Kill, RetryTask, RunEphemeralTask, ScheduleTask,
    ScheduleTasks, ScheduleTasksReporting,
};
use crate::metrics::Metrics;
use crate::queue::{Cancelled, EphemeralRequest, KillRun};
use actix::prelude::*;
use std::collections::BTreeMap;
use warren::store::{BulkReport, NewTask, Scheduled, Store, StoreError};
use warren::task::{Millis, TaskId, TaskState};
use warren::wasm::KillSwitch;

impl Handler<ScheduleTask> for Supervisor {
    type Result = ResponseFuture<Result<TaskId, StoreError>>;
    fn handle(&mut self, msg: ScheduleTask, _: &mut Context<Self>) -> Self::Result {
        let (store, metrics) = (self.store.clone(), self.metrics.clone());
        Box::pin(async move {
            let scheduled = schedule_counted(&store, &metrics, vec![msg.0]).await?;
            Ok(scheduled[0].id)
        })
    }
}

impl Handler<ScheduleTasks> for Supervisor {
    type Result = ResponseFuture<Result<Vec<TaskId>, StoreError>>;
    fn handle(&mut self, msg: ScheduleTasks, _: &mut Context<Self>) -> Self::Result {
        let (store, metrics) = (self.store.clone(), self.metrics.clone());
        Box::pin(async move {
            let scheduled = schedule_counted(&store, &metrics, msg.0).await?;
            Ok(scheduled.into_iter().map(|s| s.id).collect())
        })
    }
}

impl Handler<ScheduleTasksReporting> for Supervisor {
    type Result = ResponseFuture<Result<Vec<Scheduled>, StoreError>>;
    fn handle(&mut self, msg: ScheduleTasksReporting, _: &mut Context<Self>) -> Self::Result {
        let (store, metrics) = (self.store.clone(), self.metrics.clone());
        Box::pin(async move { schedule_counted(&store, &metrics, msg.0).await })
    }
}

/// Schedules `tasks` in one transaction and counts the tasks created (not the
/// duplicates found in their place) in the metrics, per type.
async fn schedule_counted(
    store: &Store,
    metrics: &Metrics,
    tasks: Vec<NewTask>,
) -> Result<Vec<Scheduled>, StoreError> {
    let scheduled = store.schedule_batch_reporting(&tasks).await?;
    let mut per_type: BTreeMap<&str, u64> = BTreeMap::new();
    for (task, s) in tasks.iter().zip(&scheduled) {
        if s.created {
            *per_type.entry(task.task_type.as_str()).or_default() += 1;
        }
    }
    for (task_type, count) in per_type {
        metrics.tasks_scheduled(task_type, count);
    }
    Ok(scheduled)
}

impl Handler<RunEphemeralTask> for Supervisor {
    type Result = MessageResult<RunEphemeralTask>;
    fn handle(&mut self, msg: RunEphemeralTask, _: &mut Context<Self>) -> Self::Result {
        let (reply, result) = tokio::sync::oneshot::channel();
        let kill = KillSwitch::new();
        let request = EphemeralRequest {
            task_type: msg.task_type,
            data: msg.data.to_string(),
            timeout: msg.timeout,
            kill: kill.clone(),
            reply,
        };
        match msg.after_commit {
            None => self.queue.do_send(request),
            Some(committed) => {
                // Starts once the caller's transaction committed; never if it did not.
                let queue = self.queue.clone();
                actix_rt::spawn(async move {
                    if committed.await {
                        queue.do_send(request);
                    } else {
                        let _ = request.reply.send(Err(Error::NotCommitted));
                    }
                });
            }
        }
        MessageResult(EphemeralTask::new(result, kill))
    }
}

impl Handler<CancelTask> for Supervisor {
    type Result = ResponseFuture<Result<TaskState, StoreError>>;
    fn handle(&mut self, msg: CancelTask, _: &mut Context<Self>) -> Self::Result {
        let (store, queue) = (self.store.clone(), self.queue.clone());
        Box::pin(async move {
            let was = store.cancel(msg.0, "cancelled by an operator").await?;
            if was == TaskState::Running {
                let _ = queue.send(Cancelled(msg.0)).await;
            }
            Ok(was)
        })
    }
}

impl Handler<BulkTasks> for Supervisor {
    type Result = ResponseFuture<Result<BulkReport, StoreError>>;
    fn handle(&mut self, msg: BulkTasks, _: &mut Context<Self>) -> Self::Result {
        let (store, queue, metrics) =
            (self.store.clone(), self.queue.clone(), self.metrics.clone());
        Box::pin(async move {
            let report = store.bulk(msg.action, &msg.filter, &msg.options).await?;
            metrics.bulk_changed(report.action.verb(), report.changed);
            for id in &report.cancelled_running {
                let _ = queue.send(Cancelled(*id)).await;
            }
            Ok(report)
        })
    }
}

impl Handler<RetryTask> for Supervisor {
    type Result = ResponseFuture<Result<Millis, StoreError>>;
    fn handle(&mut self, msg: RetryTask, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move { store.retry_now(msg.0).await })
    }
}

impl Handler<Kill> for Supervisor {
    type Result = ResponseFuture<bool>;
    fn handle(&mut self, msg: Kill, _: &mut Context<Self>) -> Self::Result {
        let queue = self.queue.clone();
        Box::pin(async move { queue.send(KillRun(msg.0)).await.unwrap_or(false) })
    }
}
