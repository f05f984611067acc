//! The Supervisor's scheduled-task messages: run one now, or run what is due now.

use super::Supervisor;
use crate::messages::{RunDueScheduled, RunScheduledNow};
use crate::scheduler::{RunDue, TickNow};
use actix::prelude::*;
use warren::store::StoreError;

impl Handler<RunScheduledNow> for Supervisor {
    type Result = ResponseFuture<Result<(), StoreError>>;
    fn handle(&mut self, msg: RunScheduledNow, _: &mut Context<Self>) -> Self::Result {
        let (store, scheduler) = (self.store.clone(), self.scheduler.clone());
        Box::pin(async move {
            store.request_scheduled_run(&msg.0).await?;
            scheduler.do_send(TickNow);
            Ok(())
        })
    }
}

impl Handler<RunDueScheduled> for Supervisor {
    type Result = ResponseFuture<Vec<String>>;
    fn handle(&mut self, _: RunDueScheduled, _: &mut Context<Self>) -> Self::Result {
        let scheduler = self.scheduler.clone();
        Box::pin(async move { scheduler.send(RunDue).await.unwrap_or_default() })
    }
}
