//! QueueActor: claims due managed tasks for the clusters' idle runners, hands them
//! out, renews their leases, recovers expired leases, and serves ephemeral tasks.
//!
//! It sleeps until a wake-up (a notification of new work, a finished run, the earliest
//! next attempt) with a safety poll once a second; it never busy-polls.

use crate::messages::{Cancelled, EphemeralRequest, QueueStatus, RunnerStatus};
use crate::pool::{Group, RunnerHandle, RunnerPool};
use crate::restart::{Child, ChildGuard, ChildStopped, Crashed};
use crate::runner::{CurrentRun, ManagedOutcome, RunEphemeral, RunManaged};
use actix::prelude::*;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use warren::catalog::Catalog;
use warren::executor::RunFailure;
use warren::store::Store;
use warren::task::{LeaseToken, TaskId};

/// Tasks claimed ahead per runner, while a cluster's runs are short: each claim then
/// fetches several tasks, instead of one round trip and commit per finished run.
const CLAIM_AHEAD_PER_RUNNER: usize = 4;
/// Runs shorter than this on average (recent runs weigh most) count as short. Long
/// runs are never claimed ahead: a task waiting behind one here could have run on an
/// idle node.
const SHORT_RUN: Duration = Duration::from_millis(100);

/// How often the queue looks for work without being woken.
const SAFETY_POLL: Duration = Duration::from_secs(1);

/// What a runner is busy with, as the queue sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Busy {
    /// A managed task this queue handed it: (id, lease token).
    Managed(TaskId, LeaseToken),
    /// An ephemeral task this queue handed it.
    Ephemeral,
    /// Reserved for a claim that is out.
    Claiming,
    /// A run handed to it before this queue started (by a queue that crashed); the
    /// runner finishes and resolves it by itself, the queue only renews its lease
    /// and waits for the runner to be idle.
    Inherited(Option<(TaskId, LeaseToken)>),
}

/// One runner as the queue sees it.
struct Slot {
    runner: RunnerHandle,
    busy: Option<Busy>,
}

/// The queue of one node.
pub struct QueueActor {
    store: Store,
    catalog: Arc<Catalog>,
    node: String,
    lease_ms: i64,
    pool: RunnerPool,
    crashes: Recipient<Crashed>,
    _guard: ChildGuard,
    clusters: BTreeMap<String, Vec<Slot>>,
    /// Claims out per cluster (each for runners it reserved; several may be out).
    claims_out: BTreeMap<String, usize>,
    /// Clusters woken while their claim was out: that claim may have missed the new
    /// work, so they claim again when it returns.
    woken_while_claiming: BTreeMap<String, bool>,
    /// Clusters that may have due work: false after a claim found less than it asked
    /// for, true again on a wake-up for the cluster, the timer, or recovered leases.
    /// A runner finishing in one cluster then claims nothing for the others.
    maybe_work: BTreeMap<String, bool>,
    /// Tasks claimed ahead of need (see [`CLAIM_AHEAD_PER_RUNNER`]), started the moment
    /// a runner frees up. Their leases are renewed like running ones; a stopping
    /// queue gives them back.
    ready: BTreeMap<String, VecDeque<warren::store::ClaimedTask>>,
    /// Average run time per cluster (moving, recent runs weigh most); `None` until a
    /// run finished, which counts as long.
    run_time: BTreeMap<String, Option<Duration>>,
    ephemeral: BTreeMap<String, VecDeque<EphemeralRequest>>,
    draining: bool,
    timer: Option<SpawnHandle>,
    timer_generation: u64,
    completed: u64,
}

impl QueueActor {
    /// A queue feeding the runners of every cluster in `pool`, taking over whatever
    /// they are running (after a restart); it reports runner crashes and its own end
    /// to `supervisor`.
    pub fn new<S>(
        store: Store,
        catalog: Arc<Catalog>,
        node: String,
        lease_ms: i64,
        pool: RunnerPool,
        supervisor: Addr<S>,
    ) -> QueueActor
    where
        S: Actor<Context = Context<S>> + Handler<Crashed> + Handler<ChildStopped>,
    {
        let clusters: BTreeMap<String, Vec<Slot>> = catalog
            .clusters()
            .keys()
            .map(|cluster| {
                let slots = pool
                    .runners(&Group::Cluster(cluster.clone()))
                    .into_iter()
                    .map(|runner| {
                        let busy = runner
                            .running()
                            .map(|r| Busy::Inherited(r.task_id.zip(r.token)));
                        Slot { runner, busy }
                    })
                    .collect();
                (cluster.clone(), slots)
            })
            .collect();
        QueueActor {
            store,
            catalog,
            node,
            lease_ms,
            pool,
            crashes: supervisor.clone().recipient(),
            _guard: ChildGuard::new(Child::Queue, supervisor.recipient()),
            claims_out: clusters.keys().map(|c| (c.clone(), 0)).collect(),
            woken_while_claiming: clusters.keys().map(|c| (c.clone(), false)).collect(),
            maybe_work: clusters.keys().map(|c| (c.clone(), true)).collect(),
            ready: clusters
                .keys()
                .map(|c| (c.clone(), VecDeque::new()))
                .collect(),
            run_time: clusters.keys().map(|c| (c.clone(), None)).collect(),
            ephemeral: clusters
                .keys()
                .map(|c| (c.clone(), VecDeque::new()))
                .collect(),
            clusters,
            draining: false,
            timer: None,
            timer_generation: 0,
            completed: 0,
        }
    }

    fn idle(&self, cluster: &str) -> Vec<usize> {
        self.clusters[cluster]
            .iter()
            .enumerate()
            .filter(|(_, s)| s.busy.is_none())
            .map(|(i, _)| i)
            .collect()
    }

    /// Serves waiting ephemeral tasks, then claims managed tasks for idle runners.
    fn dispatch(&mut self, ctx: &mut Context<Self>) {
        if self.draining {
            return;
        }
        // Runs inherited from a crashed queue end without telling us.
        for slot in self.clusters.values_mut().flatten() {
            if matches!(slot.busy, Some(Busy::Inherited(_))) && slot.runner.running().is_none() {
                slot.busy = None;
            }
        }
        let clusters: Vec<String> = self.clusters.keys().cloned().collect();
        for cluster in clusters {
            let mut idle = self.idle(&cluster);
            while let Some(&slot) = idle.first() {
                let Some(req) = self
                    .ephemeral
                    .get_mut(&cluster)
                    .and_then(VecDeque::pop_front)
                else {
                    break;
                };
                idle.remove(0);
                self.start_ephemeral(&cluster, slot, req, ctx);
            }
            while let Some(&slot) = idle.first() {
                let Some(claimed) = self.ready.get_mut(&cluster).and_then(VecDeque::pop_front)
                else {
                    break;
                };
                idle.remove(0);
                self.start_managed(&cluster, slot, claimed, ctx);
            }
            // Claim ahead (one claim at a time) until one task per runner waits.
            let ahead = if self.claims_out[&cluster] == 0 && self.runs_are_short(&cluster) {
                (CLAIM_AHEAD_PER_RUNNER * self.clusters[&cluster].len())
                    .saturating_sub(self.ready[&cluster].len())
            } else {
                0
            };
            if (idle.is_empty() && ahead == 0) || !self.maybe_work[&cluster] {
                continue;
            }
            // Several claims may be out at once, each for the runners it reserved: a
            // runner that finishes claims its next task without waiting for the
            // others' claims.
            for &slot in &idle {
                self.clusters.get_mut(&cluster).expect("known cluster")[slot].busy =
                    Some(Busy::Claiming);
            }
            *self.claims_out.get_mut(&cluster).expect("known cluster") += 1;
            let (store, node, lease) = (self.store.clone(), self.node.clone(), self.lease_ms);
            let want = idle.len() + ahead;
            let names = vec![cluster.clone()];
            let claim = async move { store.claim(&node, &names, want, lease).await };
            ctx.spawn(claim.into_actor(self).map(move |result, act, ctx| {
                *act.claims_out.get_mut(&cluster).expect("known cluster") -= 1;
                for &slot in &idle {
                    act.clusters.get_mut(&cluster).expect("known cluster")[slot].busy = None;
                }
                let woken = act
                    .woken_while_claiming
                    .insert(cluster.clone(), false)
                    .unwrap_or(false);
                match result {
                    Ok(tasks) if act.draining => act.release(tasks, ctx),
                    Ok(tasks) => {
                        let drained = tasks.len() < want;
                        let mut tasks = tasks.into_iter();
                        // Slots first: zip stops at the last slot without taking a
                        // task it would then drop.
                        for (&slot, claimed) in idle.iter().zip(tasks.by_ref()) {
                            act.start_managed(&cluster, slot, claimed, ctx);
                        }
                        act.ready
                            .get_mut(&cluster)
                            .expect("known cluster")
                            .extend(tasks);
                        if drained && !woken {
                            // Nothing more is due now: sleep until the next attempt.
                            act.maybe_work.insert(cluster.clone(), false);
                            act.arm_timer(ctx);
                        }
                        if !drained || woken {
                            // Runners that went idle, or work that arrived, while this
                            // claim was out are served now, not at the next wake-up.
                            act.dispatch(ctx);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(cluster = %cluster, error = %e, "claiming failed");
                        act.arm_timer(ctx);
                    }
                }
            }));
        }
    }

    fn start_managed(
        &mut self,
        cluster: &str,
        slot: usize,
        claimed: warren::store::ClaimedTask,
        ctx: &mut Context<Self>,
    ) {
        let s = &mut self.clusters.get_mut(cluster).expect("known cluster")[slot];
        let (id, token) = (claimed.task.id, claimed.token);
        s.busy = Some(Busy::Managed(id, token));
        let task_type = claimed.task.task_type.clone();
        let cluster = cluster.to_string();
        let started = std::time::Instant::now();
        ctx.spawn(s.runner.addr.send(RunManaged(claimed)).into_actor(self).map(
            move |result, act, ctx| {
                act.clusters.get_mut(&cluster).expect("known cluster")[slot].busy = None;
                act.completed += 1;
                act.ran(&cluster, started.elapsed());
                match result {
                    Ok(Ok(ManagedOutcome::Resolved(outcome))) => {
                        tracing::debug!(task = id.0, %task_type, ?outcome, "task resolved")
                    }
                    Ok(Ok(ManagedOutcome::LeaseLost)) => {
                        tracing::info!(task = id.0, %task_type, "task lost its lease (cancelled or taken over)")
                    }
                    Ok(Ok(ManagedOutcome::StoreError(e))) => {
                        tracing::warn!(task = id.0, %task_type, error = %e, "task could not be resolved; its lease will expire")
                    }
                    Ok(Err(crash)) => {
                        act.runner_crashed(&cluster, slot, crash.to_string(), ctx);
                        act.fail_crashed(id, token, &task_type, crash.to_string(), ctx);
                    }
                    Err(e) => {
                        let reason = format!("the runner is gone: {e}");
                        act.runner_crashed(&cluster, slot, reason.clone(), ctx);
                        act.fail_crashed(id, token, &task_type, reason, ctx);
                    }
                }
                act.dispatch(ctx);
            },
        ));
    }

    fn start_ephemeral(
        &mut self,
        cluster: &str,
        slot: usize,
        req: EphemeralRequest,
        ctx: &mut Context<Self>,
    ) {
        let s = &mut self.clusters.get_mut(cluster).expect("known cluster")[slot];
        s.busy = Some(Busy::Ephemeral);
        let cluster = cluster.to_string();
        let EphemeralRequest {
            task_type,
            data,
            timeout,
            kill,
            reply,
        } = req;
        if kill.is_killed() {
            s.busy = None;
            let _ = reply.send(Err("the caller went away before the task started".into()));
            return;
        }
        let msg = RunEphemeral {
            task_type,
            data,
            timeout,
            kill,
        };
        ctx.spawn(
            s.runner
                .addr
                .send(msg)
                .into_actor(self)
                .map(move |result, act, ctx| {
                    act.clusters.get_mut(&cluster).expect("known cluster")[slot].busy = None;
                    let answer = match result {
                        Ok(Ok(answer)) => answer,
                        Ok(Err(crash)) => {
                            act.runner_crashed(&cluster, slot, crash.to_string(), ctx);
                            Err(crash.to_string())
                        }
                        Err(e) => {
                            let reason = format!("the runner is gone: {e}");
                            act.runner_crashed(&cluster, slot, reason.clone(), ctx);
                            Err(reason)
                        }
                    };
                    let _ = reply.send(answer);
                    act.dispatch(ctx);
                }),
        );
    }

    /// Whether the cluster's recent runs were short enough to claim ahead for.
    fn runs_are_short(&self, cluster: &str) -> bool {
        self.run_time[cluster].is_some_and(|t| t < SHORT_RUN)
    }

    /// Folds a finished run's duration into the cluster's average.
    fn ran(&mut self, cluster: &str, took: Duration) {
        let average = self.run_time.get_mut(cluster).expect("known cluster");
        *average = Some(match *average {
            None => took,
            Some(before) => before.mul_f64(0.8) + took.mul_f64(0.2),
        });
    }

    /// Gives claimed tasks that will not start here back to the queue.
    fn release(&mut self, tasks: Vec<warren::store::ClaimedTask>, ctx: &mut Context<Self>) {
        if tasks.is_empty() {
            return;
        }
        let claims: Vec<(TaskId, LeaseToken)> =
            tasks.iter().map(|c| (c.task.id, c.token)).collect();
        let store = self.store.clone();
        ctx.spawn(
            async move {
                if let Err(e) = store.release_claims(&claims).await {
                    tracing::warn!(error = %e, "could not give back claimed tasks; their leases will expire");
                }
            }
            .into_actor(self),
        );
    }

    /// Notes that `cluster` (every cluster when `None`) may have due work; a claim
    /// that is out may have looked before it arrived, so it does not count as drained.
    fn expect_work(&mut self, cluster: Option<&str>) {
        for (name, maybe) in self.maybe_work.iter_mut() {
            if cluster.is_none_or(|c| c == name) {
                *maybe = true;
                if self.claims_out[name] > 0 {
                    self.woken_while_claiming.insert(name.clone(), true);
                }
            }
        }
    }

    /// Replaces a crashed runner and reports the crash to the Supervisor.
    fn runner_crashed(
        &mut self,
        cluster: &str,
        slot: usize,
        reason: String,
        _: &mut Context<Self>,
    ) {
        let group = Group::Cluster(cluster.to_string());
        let fresh = self.pool.replace(&group, slot);
        self.clusters.get_mut(cluster).expect("known cluster")[slot] = Slot {
            runner: fresh,
            busy: None,
        };
        self.crashes.do_send(Crashed {
            what: format!("runner {cluster}#{slot}"),
            reason,
        });
    }

    /// Records a crashed run as a failed attempt (fenced: a no-op when the runner got to
    /// resolve it), so the task is retried by the usual rule instead of waiting for its
    /// lease to expire.
    fn fail_crashed(
        &mut self,
        id: TaskId,
        token: LeaseToken,
        task_type: &warren::task::TaskType,
        reason: String,
        ctx: &mut Context<Self>,
    ) {
        let (store, policy) = (self.store.clone(), self.catalog.retry_policy(task_type));
        ctx.spawn(
            async move {
                match store.record_failure(&RunFailure::new(id, token, reason), policy).await {
                    Ok(outcome) => tracing::warn!(task = id.0, ?outcome, "crashed run recorded as a failure"),
                    Err(warren::store::StoreError::LeaseLost { .. }) => {}
                    Err(e) => tracing::warn!(task = id.0, error = %e, "recording a crashed run failed; its lease will expire"),
                }
            }
            .into_actor(self),
        );
    }

    /// Sleeps until the earliest next attempt (at most [`SAFETY_POLL`]). Only the
    /// latest arming counts; a store lookup in flight is never cancelled, just ignored.
    fn arm_timer(&mut self, ctx: &mut Context<Self>) {
        self.timer_generation += 1;
        let generation = self.timer_generation;
        let (store, clusters) = (
            self.store.clone(),
            self.clusters.keys().cloned().collect::<Vec<_>>(),
        );
        let lookup = async move { store.next_due(&clusters).await };
        ctx.spawn(lookup.into_actor(self).map(move |next, act, ctx| {
            if generation != act.timer_generation {
                return;
            }
            let now = act.store.now();
            // Work due already is not a reason to wake: it is claimed when a runner
            // frees up (each finished run dispatches), or it is held by another
            // node's claim; the safety poll covers the rest. Waking for it would spin
            // while every runner is busy.
            let wait = match next {
                Ok(Some(at)) if at > now => {
                    Duration::from_millis((at - now) as u64).min(SAFETY_POLL)
                }
                _ => SAFETY_POLL,
            };
            if let Some(handle) = act.timer.take() {
                ctx.cancel_future(handle);
            }
            act.timer = Some(ctx.run_later(wait, move |act, ctx| {
                if generation != act.timer_generation {
                    return;
                }
                act.timer = None;
                act.expect_work(None);
                act.dispatch(ctx);
                act.arm_timer(ctx);
            }));
        }));
    }

    /// Kills every current run that `which` selects; says whether there was one.
    fn kill_runs(&self, which: impl Fn(&crate::runner::Running) -> bool) -> bool {
        let mut found = false;
        for slot in self.clusters.values().flatten() {
            if let Some(r) = slot.runner.running() {
                if which(&r) {
                    r.kill.kill();
                    found = true;
                }
            }
        }
        found
    }

    fn renew_leases(&mut self, ctx: &mut Context<Self>) {
        for claimed in self.ready.values().flatten() {
            let (store, node, lease) = (self.store.clone(), self.node.clone(), self.lease_ms);
            let (id, token) = (claimed.task.id, claimed.token);
            ctx.spawn(
                async move {
                    // A task cancelled meanwhile fails its fenced resolution later.
                    if let Err(e) = store.renew_lease(id, token, &node, lease).await {
                        tracing::warn!(task = id.0, error = %e, "lease renewal failed");
                    }
                }
                .into_actor(self),
            );
        }
        for slot in self.clusters.values().flatten() {
            let (Some(Busy::Managed(id, token)) | Some(Busy::Inherited(Some((id, token))))) =
                slot.busy
            else {
                continue;
            };
            let (store, node, lease, current) = (
                self.store.clone(),
                self.node.clone(),
                self.lease_ms,
                slot.runner.current.clone(),
            );
            ctx.spawn(
                async move {
                    match store.renew_lease(id, token, &node, lease).await {
                        Ok(true) => {}
                        Ok(false) => {
                            // Cancelled or taken over: stop the guest.
                            if let Some(r) =
                                current.lock().unwrap_or_else(|p| p.into_inner()).as_ref()
                            {
                                if r.task_id == Some(id) {
                                    r.kill.kill();
                                }
                            }
                        }
                        Err(e) => tracing::warn!(task = id.0, error = %e, "lease renewal failed"),
                    }
                }
                .into_actor(self),
            );
        }
    }

    fn recover(&mut self, ctx: &mut Context<Self>) {
        let (store, catalog) = (self.store.clone(), self.catalog.clone());
        let work = async move {
            store
                .recover_expired_leases(&|t| catalog.retry_policy(t))
                .await
        };
        ctx.spawn(work.into_actor(self).map(|result, act, ctx| match result {
            Ok(ids) if !ids.is_empty() => {
                tracing::info!(tasks = ?ids, "recovered tasks whose lease expired");
                act.expect_work(None);
                act.dispatch(ctx);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "lease recovery failed"),
        }));
    }
}

impl Actor for QueueActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let addr = ctx.address();
        let store = self.store.clone();
        // New work anywhere (NOTIFY on PostgreSQL, in-process on SQLite) wakes us.
        actix::spawn(async move {
            let Ok(mut rx) = store.subscribe_work().await else {
                return;
            };
            loop {
                let cluster = match rx.recv().await {
                    Ok(cluster) if cluster != warren::store::signals::ANY_CLUSTER => Some(cluster),
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => None,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                if addr.send(Wake(cluster)).await.is_err() {
                    return;
                }
            }
        });
        let renew_every = Duration::from_millis((self.lease_ms / 3).max(100) as u64);
        ctx.run_interval(renew_every, |act, ctx| act.renew_leases(ctx));
        let recover_every = Duration::from_millis((self.lease_ms / 2).clamp(500, 10_000) as u64);
        ctx.run_interval(recover_every, |act, ctx| act.recover(ctx));
        self.recover(ctx);
        self.dispatch(ctx);
        self.arm_timer(ctx);
    }
}

/// New work in a cluster (every cluster when `None`): look for it now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wake(pub Option<String>);

impl Handler<Wake> for QueueActor {
    type Result = ();
    fn handle(&mut self, msg: Wake, ctx: &mut Context<Self>) {
        self.expect_work(msg.0.as_deref());
        self.dispatch(ctx);
    }
}

impl Handler<EphemeralRequest> for QueueActor {
    type Result = ();
    fn handle(&mut self, req: EphemeralRequest, ctx: &mut Context<Self>) {
        let cluster = self
            .catalog
            .task_type(&req.task_type)
            .map(|t| t.def.cluster.clone())
            .filter(|c| self.clusters.contains_key(c));
        match cluster {
            Some(cluster) if !self.draining => {
                self.ephemeral
                    .get_mut(&cluster)
                    .expect("known cluster")
                    .push_back(req);
                // A runner reserved by a claim that is out is served once the claim
                // is back: have it dispatch then, not at the next safety poll.
                if self.claims_out[&cluster] > 0 {
                    self.woken_while_claiming.insert(cluster.clone(), true);
                }
                self.dispatch(ctx);
            }
            Some(_) => {
                let _ = req.reply.send(Err("the node is shutting down".into()));
            }
            None => {
                let _ = req.reply.send(Err(format!(
                    "unknown ephemeral task type {} (not declared by any loaded module)",
                    req.task_type
                )));
            }
        }
    }
}

impl Handler<Cancelled> for QueueActor {
    type Result = bool;
    /// Kills the run of a task that was just cancelled, if it runs here.
    fn handle(&mut self, msg: Cancelled, _: &mut Context<Self>) -> bool {
        let mut found = false;
        for queue in self.ready.values_mut() {
            queue.retain(|c| {
                let cancelled = c.task.id == msg.0;
                found |= cancelled;
                !cancelled
            });
        }
        found | self.kill_runs(|r| r.task_id == Some(msg.0))
    }
}

impl Handler<QueueStatus> for QueueActor {
    type Result = MessageResult<QueueStatus>;
    fn handle(&mut self, _: QueueStatus, _: &mut Context<Self>) -> Self::Result {
        let runners = self
            .clusters
            .iter()
            .flat_map(|(cluster, slots)| {
                slots.iter().enumerate().map(move |(i, s)| {
                    let current = s.runner.running();
                    RunnerStatus {
                        cluster: cluster.clone(),
                        index: i,
                        task_id: current.as_ref().and_then(|r| r.task_id),
                        task_type: current.as_ref().map(|r| r.task_type.clone()),
                        running_ms: current.map(|r| r.started.elapsed().as_millis() as u64),
                    }
                })
            })
            .collect();
        MessageResult(crate::messages::QueueState {
            runners,
            completed: self.completed,
            draining: self.draining,
        })
    }
}

/// Stop claiming; answer once every running task has finished.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain;

impl Handler<Drain> for QueueActor {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: Drain, _: &mut Context<Self>) -> Self::Result {
        self.draining = true;
        let claimed: Vec<(TaskId, LeaseToken)> = self
            .ready
            .values_mut()
            .flat_map(|q| q.drain(..))
            .map(|c| (c.task.id, c.token))
            .collect();
        let store = self.store.clone();
        let give_back = async move {
            if !claimed.is_empty() {
                if let Err(e) = store.release_claims(&claimed).await {
                    tracing::warn!(error = %e, "could not give back claimed tasks; their leases will expire");
                }
            }
        };
        for queue in self.ephemeral.values_mut() {
            for req in queue.drain(..) {
                let _ = req.reply.send(Err("the node is shutting down".into()));
            }
        }
        Box::pin(give_back.into_actor(self).then(|_, act, _| {
            let currents = act
                .clusters
                .values()
                .flatten()
                .map(|s| s.runner.current.clone())
                .collect();
            wait_idle(currents).into_actor(act)
        }))
    }
}

/// Resolves when none of the runners behind `currents` is running anything (checked
/// every 20 ms while draining for a shutdown).
pub(crate) async fn wait_idle(currents: Vec<CurrentRun>) {
    loop {
        let busy = currents
            .iter()
            .any(|c| c.lock().unwrap_or_else(|p| p.into_inner()).is_some());
        if !busy {
            return;
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Kills every running guest (after the grace period of a shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct KillAll;

impl Handler<KillAll> for QueueActor {
    type Result = ();
    fn handle(&mut self, _: KillAll, _: &mut Context<Self>) {
        self.kill_runs(|_| true);
    }
}

/// Fault injection for tests of crash supervision: the queue panics in its handler.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PanicNow;

impl Handler<PanicNow> for QueueActor {
    type Result = ();
    fn handle(&mut self, _: PanicNow, _: &mut Context<Self>) {
        panic!("injected fault: the queue panics");
    }
}

/// Kills a managed task's run on this node (it counts as a failed attempt); a task
/// only claimed ahead is left to run later. Answers whether it ran here.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct KillRun(pub TaskId);

impl Handler<KillRun> for QueueActor {
    type Result = bool;
    fn handle(&mut self, msg: KillRun, _: &mut Context<Self>) -> bool {
        self.kill_runs(|r| r.task_id == Some(msg.0))
    }
}
