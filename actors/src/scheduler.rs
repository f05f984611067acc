//! SchedulerActor: runs each `<task>` of the loaded modules at its cron times, once per
//! tick across every node sharing the database, never overlapping itself.

use crate::error::Error;
use crate::pool::{Group, RunnerHandle, RunnerPool};
use crate::restart::{Child, ChildStopped, Crashed};
use crate::runner::RunScheduled;
use actix::prelude::*;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use warren::catalog::Catalog;
use warren::store::{ScheduledEnd, ScheduledRun, Store};
use warren::wasm::KillSwitch;

/// How often the scheduler looks at the shared schedule (ticks are whole minutes; this
/// also picks up "run now" requests made on other nodes).
const POLL: Duration = Duration::from_secs(1);
/// The claim a node holds on a running scheduled task, renewed while it runs.
const RUN_LEASE_MS: i64 = 60_000;

/// The scheduler of one node.
pub(crate) struct SchedulerActor {
    store: Store,
    catalog: Arc<Catalog>,
    node: String,
    maintenance_offset: u32,
    pool: RunnerPool,
    crashes: Recipient<Crashed>,
    runners: Vec<RunnerHandle>,
    busy: Vec<Option<ScheduledRun>>,
    waiting: VecDeque<ScheduledRun>,
    draining: bool,
    claiming: bool,
    poll: Option<Duration>,
    idle_waiters: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl SchedulerActor {
    /// A scheduler running scheduled tasks on the pool's scheduled-task runners (at
    /// most that many at once); it reports runner crashes to `crashes`.
    pub(crate) fn new(
        store: Store,
        catalog: Arc<Catalog>,
        node: String,
        maintenance_offset: u32,
        pool: RunnerPool,
        crashes: Recipient<Crashed>,
    ) -> SchedulerActor {
        let runners = pool.runners(&Group::Scheduled);
        SchedulerActor {
            busy: runners.iter().map(|_| None).collect(),
            store,
            catalog,
            node,
            maintenance_offset,
            pool,
            crashes,
            runners,
            waiting: VecDeque::new(),
            draining: false,
            claiming: false,
            poll: Some(POLL),
            idle_waiters: Vec::new(),
        }
    }

    /// Polls the shared schedule every `poll`, or only when told to ([`RunDue`],
    /// [`TickNow`]) when `None` — for tests and applications that drive time.
    pub(crate) fn with_poll(mut self, poll: Option<Duration>) -> SchedulerActor {
        self.poll = poll;
        self
    }

    /// Starts the scheduler, supervised: its end (a panic included) is reported to
    /// `supervisor` as [`Child::Scheduler`].
    pub(crate) fn start_supervised(self, supervisor: Recipient<ChildStopped>) -> Addr<Self> {
        crate::restart::start_supervised(Child::Scheduler, self, supervisor)
    }

    /// Answers the [`RunDue`] callers once nothing runs or waits.
    fn notify_idle(&mut self) {
        if self.waiting.is_empty() && self.busy.iter().all(Option::is_none) {
            for waiter in self.idle_waiters.drain(..) {
                let _ = waiter.send(());
            }
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

    /// A runner free for a run: not busy with ours, nor with one a crashed scheduler
    /// handed it.
    fn free_runner(&self) -> Option<usize> {
        (0..self.runners.len())
            .find(|&i| self.busy[i].is_none() && self.runners[i].running().is_none())
    }

    fn start_waiting(&mut self, ctx: &mut Context<Self>) {
        while let Some(slot) = self.free_runner() {
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
                    let (crash, end) = match finish.await {
                        Ok(Ok(end)) => (None, end),
                        Ok(Err(crash)) => {
                            let reason = Error::Crashed(crash).to_string();
                            (Some(reason.clone()), ScheduledEnd::failed(reason))
                        }
                        Err(e) => {
                            let reason = Error::RunnerGone(e).to_string();
                            (Some(reason.clone()), ScheduledEnd::failed(reason))
                        }
                    };
                    let recorded = store.finish_scheduled(&run.tag, run.token, &end).await;
                    (run, end.outcome, recorded, crash)
                }
                .into_actor(self)
                .map(move |(run, outcome, recorded, crash), act, ctx| {
                    act.busy[slot] = None;
                    if let Some(reason) = crash {
                        act.runners[slot] = act.pool.replace(&Group::Scheduled, slot);
                        act.crashes.do_send(Crashed {
                            what: format!("scheduled-task runner #{slot}"),
                            reason,
                        });
                    }
                    match recorded {
                        Ok(true) => tracing::info!(tag = %run.tag, %outcome, "scheduled task finished"),
                        Ok(false) => tracing::warn!(tag = %run.tag, "scheduled task finished after its claim was taken over"),
                        Err(e) => tracing::warn!(tag = %run.tag, error = %e, "recording a scheduled run failed"),
                    }
                    act.start_waiting(ctx);
                    act.notify_idle();
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
        if let Some(poll) = self.poll {
            ctx.run_interval(poll, |act, ctx| act.tick(ctx));
        }
        ctx.run_interval(
            Duration::from_millis(RUN_LEASE_MS as u64 / 3),
            |act, ctx| act.renew(ctx),
        );
    }
}

/// Look at the schedule now (after a "run now").
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct TickNow;

impl Handler<TickNow> for SchedulerActor {
    type Result = ();
    fn handle(&mut self, _: TickNow, ctx: &mut Context<Self>) {
        self.tick(ctx);
    }
}

/// Claims the scheduled runs due now and answers with their tags once they (and any
/// other run of this scheduler) finished.
#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub(crate) struct RunDue;

impl Handler<RunDue> for SchedulerActor {
    type Result = ResponseActFuture<Self, Vec<String>>;
    fn handle(&mut self, _: RunDue, _: &mut Context<Self>) -> Self::Result {
        let (store, node, offset, tags) = (
            self.store.clone(),
            self.node.clone(),
            self.maintenance_offset,
            self.catalog.scheduled_tags(),
        );
        let draining = self.draining || self.runners.is_empty();
        let claim = async move {
            if draining || tags.is_empty() {
                return Ok(Vec::new());
            }
            store
                .claim_due_scheduled(&node, &tags, RUN_LEASE_MS, offset)
                .await
        };
        Box::pin(claim.into_actor(self).then(|result, act, ctx| {
            let tags: Vec<String> = match result {
                Ok(runs) => {
                    let tags = runs.iter().map(|r| r.tag.clone()).collect();
                    act.waiting.extend(runs);
                    act.start_waiting(ctx);
                    tags
                }
                Err(e) => {
                    tracing::warn!(error = %e, "claiming scheduled tasks failed");
                    Vec::new()
                }
            };
            let (idle, wait) = tokio::sync::oneshot::channel();
            act.idle_waiters.push(idle);
            act.notify_idle();
            async move {
                let _ = wait.await;
                tags
            }
            .into_actor(act)
        }))
    }
}

/// Stop starting scheduled tasks; answer when none runs.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct StopScheduling;

impl Handler<StopScheduling> for SchedulerActor {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: StopScheduling, _: &mut Context<Self>) -> Self::Result {
        self.draining = true;
        let currents: Vec<_> = self.runners.iter().map(|r| r.current.clone()).collect();
        Box::pin(crate::queue::wait_idle(currents).into_actor(self))
    }
}

/// Fault injection for tests of crash supervision: the scheduler panics in its handler.
#[cfg(feature = "test-hooks")]
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct PanicNow;

#[cfg(feature = "test-hooks")]
impl Handler<PanicNow> for SchedulerActor {
    type Result = ();
    fn handle(&mut self, _: PanicNow, _: &mut Context<Self>) {
        panic!("injected fault: the scheduler panics");
    }
}
