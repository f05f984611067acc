//! The Supervisor: the node's root actor. It owns the node's children (the queue and
//! the scheduler, restarted within the restart window when they crash), answers the
//! public messages, and runs the node's maintenance. One concern per file:
//!
//! - `lifecycle.rs`: starting and restarting children, giving up, shutting down;
//! - `maintenance.rs`: heartbeats, pruning, lease recovery;
//! - `tasks.rs`: scheduling, running, cancelling, retrying and killing tasks;
//! - `scheduled.rs`: running scheduled tasks now;
//! - `status.rs`: what the dashboard and the application read.
//!
//! The node is built and started by [`crate::WarrenBuilder`].

mod lifecycle;
mod maintenance;
mod scheduled;
mod status;
mod tasks;

pub(crate) use lifecycle::Children;

use crate::metrics::Metrics;
use crate::queue::QueueActor;
use crate::restart::{RestartPolicy, RestartWindow};
use crate::scheduler::SchedulerActor;
use actix::prelude::*;
use maintenance::Maintenance;
use std::sync::Arc;
use warren::store::Store;

/// What the Supervisor does when crashes exceed its restart window, given the reason.
pub(crate) type GiveUp = Arc<dyn Fn(&str) + Send + Sync>;

/// The node's root actor: send it the public messages ([`crate::ScheduleTask`],
/// [`crate::RunEphemeralTask`], [`crate::Shutdown`], …).
pub struct Supervisor {
    store: Store,
    node: String,
    children: Children,
    queue: Addr<QueueActor>,
    scheduler: Addr<SchedulerActor>,
    window: RestartWindow,
    on_give_up: GiveUp,
    stopping: bool,
    metrics: Arc<Metrics>,
    maintenance: Maintenance,
}

impl Supervisor {
    /// Starts the Supervisor and its children.
    pub(crate) fn start_node(
        children: Children,
        info: serde_json::Value,
        retention_ms: i64,
        restart: RestartPolicy,
        on_give_up: GiveUp,
        metrics: Arc<Metrics>,
    ) -> Addr<Supervisor> {
        Supervisor::create(move |ctx| {
            let me = ctx.address();
            let maintenance = Maintenance::new(&children, info, retention_ms);
            Supervisor {
                queue: children.start_queue(&me),
                scheduler: children.start_scheduler(&me),
                store: children.store.clone(),
                node: children.node.clone(),
                children,
                window: RestartWindow::new(restart),
                on_give_up,
                stopping: false,
                metrics,
                maintenance,
            }
        })
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.start_maintenance(ctx);
    }
}
