//! The Supervisor's children and the node's lifecycle: (re)starting the queue and the
//! scheduler, counting crashes in the restart window, giving up on a crash loop, and
//! shutting down gracefully.

use super::Supervisor;
use crate::messages::Shutdown;
use crate::pool::RunnerPool;
use crate::queue::{Drain, KillAll, QueueActor};
use crate::restart::{Child, ChildStopped, Crashed};
use crate::scheduler::{SchedulerActor, StopScheduling};
use actix::prelude::*;
use std::sync::Arc;
use std::time::Duration;
use warren::catalog::Catalog;
use warren::store::Store;

/// What the Supervisor needs to (re)start its children.
pub(crate) struct Children {
    /// The node's store.
    pub store: Store,
    /// The loaded modules.
    pub catalog: Arc<Catalog>,
    /// The node's name.
    pub node: String,
    /// Lease of a claimed task (ms).
    pub lease_ms: i64,
    /// The maintenance zone's offset (minutes), computed once at start.
    pub maintenance_offset: u32,
    /// How often the scheduler polls; `None`: only when told.
    pub scheduler_poll: Option<Duration>,
    /// The queue's safety poll.
    pub queue_poll: Duration,
    /// The node's runners.
    pub pool: RunnerPool,
}

impl Children {
    /// Starts a queue reporting to `supervisor`.
    pub(super) fn start_queue(&self, supervisor: &Addr<Supervisor>) -> Addr<QueueActor> {
        QueueActor::new(
            self.store.clone(),
            self.catalog.clone(),
            self.node.clone(),
            self.lease_ms,
            self.pool.clone(),
            supervisor.clone().recipient(),
        )
        .with_poll(self.queue_poll)
        .start_supervised(supervisor.clone().recipient())
    }

    /// Starts a scheduler reporting to `supervisor`.
    pub(super) fn start_scheduler(&self, supervisor: &Addr<Supervisor>) -> Addr<SchedulerActor> {
        SchedulerActor::new(
            self.store.clone(),
            self.catalog.clone(),
            self.node.clone(),
            self.maintenance_offset,
            self.pool.clone(),
            supervisor.clone().recipient(),
        )
        .with_poll(self.scheduler_poll)
        .start_supervised(supervisor.clone().recipient())
    }
}

impl Supervisor {
    /// Counts a crash; gives up (stops the node, then calls the give-up action) when
    /// there were too many within the restart window. Says whether to go on.
    fn crashed(&mut self, what: &str, reason: &str, ctx: &mut Context<Self>) -> bool {
        if self.window.record(std::time::Instant::now()) {
            tracing::error!(%what, %reason, crashes_in_window = self.window.count(), "crashed; restarting it");
            return true;
        }
        let why = format!(
            "giving up: {} crashes within the restart window; the last: {what} ({reason})",
            self.window.count()
        );
        tracing::error!("{why}");
        self.stopping = true;
        self.queue.do_send(KillAll);
        let give_up = self.on_give_up.clone();
        let (queue, scheduler, store, node) = (
            self.queue.clone(),
            self.scheduler.clone(),
            self.store.clone(),
            self.node.clone(),
        );
        ctx.spawn(
            async move {
                let stop = async {
                    let _ = futures_util::join!(queue.send(Drain), scheduler.send(StopScheduling));
                };
                let _ = actix_rt::time::timeout(Duration::from_secs(5), stop).await;
                let _ = store.remove_node(&node).await;
                give_up(&why);
            }
            .into_actor(self)
            .map(|_, _, ctx| ctx.stop()),
        );
        false
    }
}

impl Handler<ChildStopped> for Supervisor {
    type Result = ();
    /// Restarts the child that stopped (unless the node is stopping or gives up).
    fn handle(&mut self, msg: ChildStopped, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        let reason = msg
            .panic
            .unwrap_or_else(|| "it stopped unexpectedly".to_string());
        if !self.crashed(&msg.child.to_string(), &reason, ctx) {
            return;
        }
        let me = ctx.address();
        match msg.child {
            Child::Queue => {
                self.queue = self.children.start_queue(&me);
                // Leases its predecessor let expire are the new queue's to recover.
                self.recover_leases(ctx);
            }
            Child::Scheduler => self.scheduler = self.children.start_scheduler(&me),
        }
    }
}

impl Handler<Crashed> for Supervisor {
    type Result = ();
    /// Counts a crash dealt with elsewhere (a runner replaced).
    fn handle(&mut self, msg: Crashed, ctx: &mut Context<Self>) {
        if !self.stopping {
            self.crashed(&msg.what, &msg.reason, ctx);
        }
    }
}

impl Handler<Shutdown> for Supervisor {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, msg: Shutdown, _: &mut Context<Self>) -> Self::Result {
        self.stopping = true;
        let (queue, scheduler, store, node) = (
            self.queue.clone(),
            self.scheduler.clone(),
            self.store.clone(),
            self.node.clone(),
        );
        Box::pin(
            async move {
                tracing::info!(
                    grace_ms = msg.grace.as_millis() as u64,
                    "shutting down: no new work is taken"
                );
                let drained = async {
                    let _ = futures_util::join!(queue.send(Drain), scheduler.send(StopScheduling));
                };
                if actix_rt::time::timeout(msg.grace, drained).await.is_err() {
                    tracing::warn!(
                        "grace period over: killing running tasks (they will be retried)"
                    );
                    let _ = queue.send(KillAll).await;
                    let _ =
                        actix_rt::time::timeout(Duration::from_secs(5), queue.send(Drain)).await;
                }
                // The runs' history records the runners queued without waiting, and
                // the last progress of the runs that ended.
                let flushed = async {
                    futures_util::join!(store.flush_run_records(), store.flush_progress());
                };
                if actix_rt::time::timeout(Duration::from_secs(5), flushed)
                    .await
                    .is_err()
                {
                    tracing::warn!(
                        "run history records or progress still unwritten after 5 s: some may be lost"
                    );
                }
                if let Err(e) = store.remove_node(&node).await {
                    tracing::warn!(error = %e, "could not unregister the node");
                }
                // The process may exit before the store's last handle goes.
                store.close_wakeups();
                tracing::info!("stopped");
            }
            .into_actor(self)
            .map(|_, _, ctx| ctx.stop()),
        )
    }
}

#[cfg(feature = "test-hooks")]
impl Handler<crate::test_hooks::InjectFault> for Supervisor {
    type Result = ();
    fn handle(&mut self, msg: crate::test_hooks::InjectFault, _: &mut Context<Self>) {
        match msg.0 {
            Child::Queue => self.queue.do_send(crate::queue::PanicNow),
            Child::Scheduler => self.scheduler.do_send(crate::scheduler::PanicNow),
        }
    }
}
