//! SchedulerActor: runs each `<task>` of the loaded modules at its cron times, once per
//! tick across every node sharing the database, never overlapping itself.

use crate::queue::Slot;
use crate::runner::RunScheduled;
use actix::prelude::*;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use warren::catalog::Catalog;
use warren::store::{ScheduledRun, Store};
use warren::wasm::KillSwitch;

/// How often the scheduler looks at the shared schedule (ticks are whole minutes; this
/// also picks up "run now" requests made on other nodes).
const POLL: Duration = Duration::from_secs(1);
/// The claim a node holds on a running scheduled task, renewed while it runs.
const RUN_LEASE_MS: i64 = 60_000;

/// The scheduler of one node.
pub struct SchedulerActor {
    store: Store,
    catalog: Arc<Catalog>,
    node: String,
    maintenance_offset: u32,
    runners: Vec<Slot>,
    busy: Vec<Option<ScheduledRun>>,
    waiting: VecDeque<ScheduledRun>,
    draining: bool,
    claiming: bool,
}

impl SchedulerActor {
    /// A scheduler running scheduled tasks on `runners` (at most that many at once).
    pub fn new(
        store: Store,
        catalog: Arc<Catalog>,
        node: String,
        maintenance_offset: u32,
        runners: Vec<Slot>,
    ) -> SchedulerActor {
        SchedulerActor {
            busy: runners.iter().map(|_| None).collect(),
            store,
            catalog,
            node,
            maintenance_offset,
            runners,
            waiting: VecDeque::new(),
            draining: false,
            claiming: false,
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.draining || self.claiming || self.runners.is_empty() {
            return;
        }
        let tags = self.catalog.scheduled_tags();
        if tags.is_empty() {
            return;
        }
        self.claiming = true;
        let (store, node, offset) = (
            self.store.clone(),
            self.node.clone(),
            self.maintenance_offset,
        );
        let claim = async move {
            store
                .claim_due_scheduled(&node, &tags, RUN_LEASE_MS, offset)
                .await
        };
        ctx.spawn(claim.into_actor(self).map(|result, act, ctx| {
            act.claiming = false;
            match result {
                Ok(runs) => act.waiting.extend(runs),
                Err(e) => tracing::warn!(error = %e, "claiming scheduled tasks failed"),
            }
            act.start_waiting(ctx);
        }));
    }

    fn start_waiting(&mut self, ctx: &mut Context<Self>) {
        while let Some(slot) = self.busy.iter().position(Option::is_none) {
            let Some(run) = self.waiting.pop_front() else {
                return;
            };
            let kill = KillSwitch::new();
            self.busy[slot] = Some(run.clone());
            tracing::info!(tag = %run.tag, requested = run.requested, "scheduled task starting");
            let msg = RunScheduled {
                tag: run.tag.clone(),
                kill,
            };
            let store = self.store.clone();
            let finish = self.runners[slot].addr.send(msg);
            ctx.spawn(
                async move {
                    let (outcome, output) = finish
                        .await
                        .unwrap_or_else(|e| ("failed".into(), format!("runner is gone: {e}")));
                    let recorded = store.finish_scheduled(&run.tag, run.token, &outcome, &output).await;
                    (run, outcome, recorded)
                }
                .into_actor(self)
                .map(move |(run, outcome, recorded), act, ctx| {
                    act.busy[slot] = None;
                    match recorded {
                        Ok(true) => tracing::info!(tag = %run.tag, %outcome, "scheduled task finished"),
                        Ok(false) => tracing::warn!(tag = %run.tag, "scheduled task finished after its claim was taken over"),
                        Err(e) => tracing::warn!(tag = %run.tag, error = %e, "recording a scheduled run failed"),
                    }
                    act.start_waiting(ctx);
                    act.tick(ctx);
                }),
            );
        }
    }

    fn renew(&mut self, ctx: &mut Context<Self>) {
        let runs: Vec<ScheduledRun> = self
            .busy
            .iter()
            .flatten()
            .chain(&self.waiting)
            .cloned()
            .collect();
        let store = self.store.clone();
        ctx.spawn(
            async move {
                for run in runs {
                    if let Err(e) = store.renew_scheduled(&run.tag, run.token, RUN_LEASE_MS).await {
                        tracing::warn!(tag = %run.tag, error = %e, "renewing a scheduled run failed");
                    }
                }
            }
            .into_actor(self),
        );
    }
}

impl Actor for SchedulerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let specs = self.catalog.scheduled_specs();
        let startup: Vec<String> = self
            .catalog
            .scheduled_tasks()
            .filter(|s| s.def.run_at_startup)
            .map(|s| s.def.tag.clone())
            .collect();
        let (store, offset) = (self.store.clone(), self.maintenance_offset);
        let setup = async move {
            store.sync_scheduled(&specs, offset).await?;
            for tag in startup {
                store.request_scheduled_run(&tag).await?;
            }
            Ok::<_, warren::store::StoreError>(())
        };
        ctx.wait(setup.into_actor(self).map(|result, _, _| {
            if let Err(e) = result {
                tracing::error!(error = %e, "cannot set up the scheduled tasks");
            }
        }));
        ctx.run_interval(POLL, |act, ctx| act.tick(ctx));
        ctx.run_interval(
            Duration::from_millis(RUN_LEASE_MS as u64 / 3),
            |act, ctx| act.renew(ctx),
        );
    }
}

/// Look at the schedule now (after a "run now").
#[derive(Message)]
#[rtype(result = "()")]
pub struct TickNow;

impl Handler<TickNow> for SchedulerActor {
    type Result = ();
    fn handle(&mut self, _: TickNow, ctx: &mut Context<Self>) {
        self.tick(ctx);
    }
}

/// Stop starting scheduled tasks; answer when none runs.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopScheduling;

impl Handler<StopScheduling> for SchedulerActor {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: StopScheduling, _: &mut Context<Self>) -> Self::Result {
        self.draining = true;
        let currents: Vec<_> = self.runners.iter().map(|s| s.current.clone()).collect();
        Box::pin(crate::queue::wait_idle(currents).into_actor(self))
    }
}
