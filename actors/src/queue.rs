//! QueueActor: claims due managed tasks for the clusters' idle runners, hands them
//! out, renews their leases, and serves ephemeral tasks. Each cluster's state is a
//! [`ClusterQueue`]; how much to claim is [`crate::claim_ahead`]'s rule.
//!
//! It sleeps until a wake-up (a notification of new work, a finished run, recovered
//! leases, the earliest next attempt) with a safety poll once a second; it never
//! busy-polls. It keeps a copy of the pauses (`warren::store::Pauses`), and starts
//! nothing until it has read them once; it reads them again whenever every cluster is
//! woken (which pausing and resuming do) and every [`PAUSES_REFRESH`]. The claim itself
//! skips paused work; the copy lets the queue refuse ephemeral tasks of a paused
//! cluster or type, leave a paused cluster unclaimed, and give back tasks it claimed
//! ahead before the pause. New work reaches it from every process that writes the database:
//! `NOTIFY` on PostgreSQL, the file's wake-up socket on SQLite (see
//! `warren::store::signals`); the safety poll covers a wake-up that was lost, or a
//! SQLite file whose socket could not be bound.

pub(crate) use crate::cluster_queue::EphemeralRequest;
use crate::cluster_queue::{Busy, ClusterQueue};
use crate::error::Error;
use crate::idle_spin::Spinner;
use crate::pool::{Group, RunnerPool};
use crate::restart::{Child, ChildStopped, Crashed};
use crate::runner::{
    CurrentRun, FlushGroup, ManagedOutcome, RunEphemeral, RunManaged, Running, Settle,
};
use actix::prelude::*;
use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warren::catalog::Catalog;
use warren::executor::RunFailure;
use warren::store::{ClaimedTask, PauseTarget, Pauses, Store};
use warren::task::{LeaseToken, Millis, TaskId};

/// How often the queue looks for work without being woken, unless told otherwise
/// ([`QueueActor::with_poll`]).
pub(crate) const SAFETY_POLL: Duration = Duration::from_secs(1);

/// How often the queue reads the pauses without being woken (a wake-up lost, or a
/// SQLite file whose socket could not be bound).
pub(crate) const PAUSES_REFRESH: Duration = Duration::from_secs(5);

/// Index of a cluster in [`QueueActor::clusters`].
type ClusterIndex = usize;

/// The queue of one node.
pub(crate) struct QueueActor {
    store: Store,
    catalog: Arc<Catalog>,
    node: String,
    lease_ms: i64,
    pool: RunnerPool,
    crashes: Recipient<Crashed>,
    /// One queue per cluster of the catalog, in the catalog's order.
    clusters: Vec<ClusterQueue>,
    draining: bool,
    /// The safety poll: the longest it sleeps without being woken.
    poll: Duration,
    timer: Option<SpawnHandle>,
    timer_generation: u64,
    completed: u64,
    /// The pauses as last read; `None` until the first read came back (the queue
    /// starts nothing before it knows them).
    pauses: Option<Pauses>,
    /// Reads of the pauses started, numbered.
    pauses_started: u64,
    /// The number of the newest read applied: an older answer that arrives later is
    /// dropped, a newer one is applied even while others are still out.
    pauses_applied: u64,
    /// Bumped whenever the pauses as read change: a claim sent before a change is
    /// checked against them when it returns.
    pauses_version: u64,
    /// Ephemeral runs dispatched and not answered yet: while there are some, the
    /// queue's thread keeps polling (at most the pool's idle spin each time), so an
    /// answer finds it awake.
    ephemeral_out: Rc<Cell<usize>>,
    /// Keeps the queue's thread polling while `ephemeral_out` is above zero.
    spinner: Spinner,
    /// Connections this thread drives, for the claims (one per cluster; PostgreSQL):
    /// a claim's statement and answer then cross no thread.
    claim_connections: Option<warren::store::ThreadConnections>,
}

impl QueueActor {
    /// A queue feeding the runners of every cluster in `pool`, taking over whatever
    /// they are running (after a restart); it reports runner crashes to `crashes`.
    pub(crate) fn new(
        store: Store,
        catalog: Arc<Catalog>,
        node: String,
        lease_ms: i64,
        pool: RunnerPool,
        crashes: Recipient<Crashed>,
    ) -> QueueActor {
        let clusters = catalog
            .clusters()
            .keys()
            .map(|name| {
                let runners = pool.runners(&Group::Cluster(name.clone()));
                ClusterQueue::new(name.clone(), runners)
            })
            .collect();
        QueueActor {
            store,
            catalog,
            node,
            lease_ms,
            pool,
            crashes,
            clusters,
            draining: false,
            poll: SAFETY_POLL,
            timer: None,
            timer_generation: 0,
            completed: 0,
            pauses: None,
            pauses_started: 0,
            pauses_applied: 0,
            pauses_version: 0,
            ephemeral_out: Rc::default(),
            spinner: Spinner::default(),
            claim_connections: None,
        }
    }

    /// Looks for work without being woken every `poll` (default [`SAFETY_POLL`]; at
    /// least 10 ms). A test sets it long to show that a wake-up, not the poll, started
    /// a task.
    pub(crate) fn with_poll(mut self, poll: Duration) -> QueueActor {
        self.poll = poll.max(Duration::from_millis(10));
        self
    }

    /// Starts the queue, supervised: its end (a panic included) is reported to
    /// `supervisor` as [`Child::Queue`].
    pub(crate) fn start_supervised(self, supervisor: Recipient<ChildStopped>) -> Addr<Self> {
        crate::restart::start_supervised(Child::Queue, self, supervisor)
    }

    /// Serves waiting ephemeral tasks, then claims managed tasks for idle runners, in
    /// every cluster.
    fn dispatch(&mut self, ctx: &mut Context<Self>) {
        if self.draining || self.pauses.is_none() {
            return;
        }
        for c in 0..self.clusters.len() {
            self.dispatch_cluster(c, ctx);
        }
    }

    /// Dispatches in one cluster: ephemeral tasks first, then tasks claimed ahead,
    /// then a claim for the runners still idle (and ahead, while runs are short).
    fn dispatch_cluster(&mut self, c: ClusterIndex, ctx: &mut Context<Self>) {
        let cluster = &mut self.clusters[c];
        cluster.forget_ended_inherited();
        let (mut ephemeral, mut managed, mut idle) = (Vec::new(), Vec::new(), Vec::new());
        for slot in cluster.idle() {
            if let Some(req) = cluster.ephemeral.pop_front() {
                ephemeral.push((slot, req));
            } else if let Some(claimed) = cluster.ready.pop_front() {
                managed.push((slot, claimed));
            } else {
                idle.push(slot);
            }
        }
        for (slot, req) in ephemeral {
            self.start_ephemeral(c, slot, req, ctx);
        }
        for (slot, claimed) in managed {
            self.start_managed(c, slot, claimed, ctx);
        }
        // A cluster paused as this queue last read saves its claims (which would find
        // nothing): a resume wakes every cluster, and the pauses are read again then.
        let paused = self
            .pauses
            .as_ref()
            .is_some_and(|p| p.clusters.contains(&self.clusters[c].name));
        let want = self.clusters[c].claim_count(idle.len());
        if want > 0 && !paused {
            // The runners' run groups stay open for what the claim brings them.
            self.claim(c, idle, want, ctx);
        } else {
            self.flush_groups(c, &idle);
        }
    }

    /// Has the runners `slots` of cluster `c`, which get no next task now, commit
    /// their open run groups: no run's outcome waits for work that is not coming.
    fn flush_groups(&self, c: ClusterIndex, slots: &[usize]) {
        for &slot in slots {
            let runner = &self.clusters[c].slots[slot].runner;
            if runner.open_group.is_open() {
                runner.addr.do_send(FlushGroup);
            }
        }
    }

    /// Claims `want` tasks of cluster `c` for the runners `idle` (reserved meanwhile);
    /// the rest wait as claimed ahead. While runs are long, several claims may be out
    /// at once, each for the runners it reserved: a runner that finishes claims its
    /// next task without waiting for the others' claims. While they are short, one
    /// is out at a time (see [`crate::claim_ahead::ClaimAhead::claim_count`]).
    fn claim(&mut self, c: ClusterIndex, idle: Vec<usize>, want: usize, ctx: &mut Context<Self>) {
        let cluster = &mut self.clusters[c];
        cluster.claim_sent(&idle);
        let (store, node, lease) = (self.store.clone(), self.node.clone(), self.lease_ms);
        let names = vec![cluster.name.clone()];
        let version = self.pauses_version;
        // Rate-limit tokens that come back after this instant may be for tasks this
        // claim leaves waiting (see `arm_timer`).
        cluster.rate_mark = self.store.now();
        let thread = self.claim_connections.clone();
        let claim = async move {
            let claimed = store.claim_on(&node, &names, want, lease, thread.as_ref());
            claimed.await
        };
        ctx.spawn(claim.into_actor(self).map(move |result, act, ctx| {
            let woken = act.clusters[c].claim_back(&idle);
            match result {
                Ok(tasks) if act.draining => {
                    act.flush_groups(c, &idle);
                    act.release(tasks, ctx)
                }
                Ok(mut tasks) => {
                    let drained = tasks.len() < want;
                    if version != act.pauses_version {
                        // The claim read the pauses itself; a pause this queue learnt
                        // of while it was out may be newer: what it holds goes back.
                        let (held, kept): (Vec<_>, Vec<_>) =
                            tasks.into_iter().partition(|t| act.is_held(t));
                        act.release(held, ctx);
                        tasks = kept;
                    }
                    let mut tasks = tasks.into_iter();
                    // Slots first: zip stops at the last slot without taking a task
                    // it would then drop.
                    let mut served = 0;
                    for (&slot, claimed) in idle.iter().zip(tasks.by_ref()) {
                        act.start_managed(c, slot, claimed, ctx);
                        served += 1;
                    }
                    act.flush_groups(c, &idle[served..]);
                    act.clusters[c].ready.extend(tasks);
                    if drained && !woken {
                        // Nothing more is due now: sleep until the next attempt.
                        act.clusters[c].drained();
                        act.arm_timer(ctx);
                    }
                    if !drained || woken || !act.clusters[c].ready.is_empty() {
                        // Runners that went idle, or work that arrived, while this
                        // claim was out are served now, not at the next wake-up.
                        act.dispatch(ctx);
                    }
                }
                Err(e) => {
                    tracing::warn!(cluster = %act.clusters[c].name, error = %e, "claiming failed");
                    act.flush_groups(c, &idle);
                    act.arm_timer(ctx);
                }
            }
        }));
    }

    fn start_managed(
        &mut self,
        c: ClusterIndex,
        slot: usize,
        claimed: ClaimedTask,
        ctx: &mut Context<Self>,
    ) {
        let s = &mut self.clusters[c].slots[slot];
        let (id, token) = (claimed.task.id, claimed.token);
        s.busy = Some(Busy::Managed(id, token));
        let task_type = claimed.task.task_type.clone();
        // A task with a concurrency key frees a slot of its key when it ends: a claim
        // that found the key full may find work now.
        let keyed = claimed.task.flow_key.is_some();
        let started = Instant::now();
        ctx.spawn(s.runner.addr.send(RunManaged(claimed)).into_actor(self).map(
            move |result, act, ctx| {
                let cluster = &mut act.clusters[c];
                cluster.slots[slot].busy = None;
                cluster.ran(started.elapsed());
                act.completed += 1;
                match result {
                    Ok(Ok(ManagedOutcome::Resolved(outcome))) => {
                        tracing::debug!(task = id.0, %task_type, ?outcome, "task resolved")
                    }
                    Ok(Ok(ManagedOutcome::Committing)) => {
                        tracing::debug!(task = id.0, %task_type, "task completed; its commit is under way")
                    }
                    Ok(Ok(ManagedOutcome::LeaseLost)) => {
                        tracing::info!(task = id.0, %task_type, "task lost its lease (cancelled or taken over)")
                    }
                    Ok(Ok(ManagedOutcome::Unresolved(e))) => {
                        tracing::warn!(task = id.0, %task_type, error = %e, "task could not be resolved; its lease will expire")
                    }
                    Ok(Err(crash)) => {
                        let reason = Error::Crashed(crash).to_string();
                        act.runner_crashed(c, slot, reason.clone());
                        act.fail_crashed(id, token, &task_type, reason, ctx);
                    }
                    Err(e) => {
                        let reason = Error::RunnerGone(e).to_string();
                        act.runner_crashed(c, slot, reason.clone());
                        act.fail_crashed(id, token, &task_type, reason, ctx);
                    }
                }
                if keyed {
                    act.clusters[c].expect_work();
                }
                act.dispatch(ctx);
            },
        ));
    }

    fn start_ephemeral(
        &mut self,
        c: ClusterIndex,
        slot: usize,
        req: EphemeralRequest,
        ctx: &mut Context<Self>,
    ) {
        let EphemeralRequest {
            task_type,
            data,
            timeout,
            kill,
            reply,
        } = req;
        if kill.is_killed() {
            let _ = reply.send(Err(Error::CallerGone));
            return;
        }
        let out = self.ephemeral_out.clone();
        out.set(out.get() + 1);
        let waiting = out.clone();
        self.spinner
            .spin(self.pool.idle_spin(), move || waiting.get() > 0);
        let s = &mut self.clusters[c].slots[slot];
        s.busy = Some(Busy::Ephemeral);
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
                    out.set(out.get() - 1);
                    act.clusters[c].slots[slot].busy = None;
                    let answer = match result {
                        Ok(Ok(answer)) => answer,
                        Ok(Err(crash)) => {
                            let crash = Error::Crashed(crash);
                            act.runner_crashed(c, slot, crash.to_string());
                            Err(crash)
                        }
                        Err(e) => {
                            let gone = Error::RunnerGone(e);
                            act.runner_crashed(c, slot, gone.to_string());
                            Err(gone)
                        }
                    };
                    let _ = reply.send(answer);
                    act.dispatch(ctx);
                }),
        );
    }

    /// Gives claimed tasks that will not start here back to the queue.
    fn release(&mut self, tasks: Vec<ClaimedTask>, ctx: &mut Context<Self>) {
        if tasks.is_empty() {
            return;
        }
        let claims: Vec<(TaskId, LeaseToken)> =
            tasks.iter().map(|c| (c.task.id, c.token)).collect();
        ctx.spawn(give_back(self.store.clone(), claims).into_actor(self));
    }

    /// The pause that holds back a task of `task_type` in `cluster`, as last read.
    fn pause_holding(&self, cluster: &str, task_type: &str) -> Option<PauseTarget> {
        self.pauses.as_ref()?.holding(cluster, task_type)
    }

    /// Whether a pause holds this claimed task back.
    fn is_held(&self, claimed: &ClaimedTask) -> bool {
        let task = &claimed.task;
        self.pause_holding(&task.cluster, task.task_type.as_str())
            .is_some()
    }

    /// Reads the pauses; then refuses the waiting ephemeral tasks and gives back the
    /// tasks claimed ahead that a pause now holds.
    fn read_pauses(&mut self, ctx: &mut Context<Self>) {
        self.pauses_started += 1;
        let number = self.pauses_started;
        let store = self.store.clone();
        let read = async move { store.pauses().await };
        ctx.spawn(read.into_actor(self).map(move |read, act, ctx| {
            if number <= act.pauses_applied {
                return;
            }
            match read {
                Ok(list) => {
                    act.pauses_applied = number;
                    act.apply_pauses(Pauses::from_list(&list), ctx);
                }
                Err(e) => tracing::warn!(error = %e, "reading the pauses failed"),
            }
        }));
    }

    fn apply_pauses(&mut self, pauses: Pauses, ctx: &mut Context<Self>) {
        if self.pauses.as_ref() == Some(&pauses) {
            return;
        }
        self.pauses = Some(pauses);
        self.pauses_version += 1;
        let mut held = Vec::new();
        for c in 0..self.clusters.len() {
            let ready = std::mem::take(&mut self.clusters[c].ready);
            let (gone, kept): (Vec<_>, Vec<_>) = ready.into_iter().partition(|t| self.is_held(t));
            held.extend(gone);
            self.clusters[c].ready = kept.into();
            let name = self.clusters[c].name.clone();
            let waiting = std::mem::take(&mut self.clusters[c].ephemeral);
            for req in waiting {
                match self.pause_holding(&name, &req.task_type) {
                    Some(pause) => {
                        let _ = req.reply.send(Err(Error::Paused(pause)));
                    }
                    None => self.clusters[c].ephemeral.push_back(req),
                }
            }
        }
        self.release(held, ctx);
        // A resume: what waited is claimed now.
        self.expect_work(None);
        self.dispatch(ctx);
    }

    /// Notes that `cluster` (every cluster when `None`) may have due work.
    fn expect_work(&mut self, cluster: Option<&str>) {
        for queue in &mut self.clusters {
            if cluster.is_none_or(|name| name == queue.name) {
                queue.expect_work();
            }
        }
    }

    /// Replaces a crashed runner and reports the crash to the Supervisor.
    fn runner_crashed(&mut self, c: ClusterIndex, slot: usize, reason: String) {
        let cluster = &mut self.clusters[c];
        let fresh = self
            .pool
            .replace(&Group::Cluster(cluster.name.clone()), slot);
        cluster.slots[slot].runner = fresh;
        cluster.slots[slot].busy = None;
        self.crashes.do_send(Crashed {
            what: format!("runner {}#{slot}", cluster.name),
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
                match store.record_failure(&RunFailure::new(id, token, reason.clone()), policy).await {
                    Ok(outcome) => tracing::warn!(task = id.0, ?outcome, "crashed run recorded as a failure"),
                    Err(warren::store::StoreError::LeaseLost { .. }) => {}
                    Err(e) => tracing::warn!(task = id.0, error = %e, "recording a crashed run failed; its lease will expire"),
                }
            }
            .into_actor(self),
        );
    }

    /// Sleeps until the earliest next attempt, or until a rate limit lets a waiting task
    /// start (at most the safety poll). A token that came back since a cluster last
    /// claimed or was woken wakes the queue at once; one that was back already then
    /// does not (the rate did not hold those tasks back, so claiming again would find
    /// nothing). Only the latest arming counts; a store lookup in flight is never
    /// cancelled, just ignored.
    fn arm_timer(&mut self, ctx: &mut Context<Self>) {
        self.timer_generation += 1;
        let generation = self.timer_generation;
        let store = self.store.clone();
        let clusters: Vec<String> = self.clusters.iter().map(|c| c.name.clone()).collect();
        let marks: Vec<(String, Millis)> = self
            .clusters
            .iter()
            .map(|c| (c.name.clone(), c.rate_mark))
            .collect();
        let lookup = async move {
            let due = store.next_due(&clusters).await?;
            let rate = store.next_rate_start(&marks).await?;
            Ok::<_, warren::store::StoreError>((due, rate))
        };
        ctx.spawn(lookup.into_actor(self).map(move |next, act, ctx| {
            if generation != act.timer_generation {
                return;
            }
            let now = act.store.now();
            // Work due already is not a reason to wake: it is claimed when a runner
            // frees up (each finished run dispatches), or it is held by another
            // node's claim; the safety poll covers the rest. Waking for it would spin
            // while every runner is busy.
            let next = match next {
                // A token already back (after `after`) wakes the queue now.
                Ok((due, rate)) => due
                    .filter(|&at| at > now)
                    .into_iter()
                    .chain(rate.map(|at| at.max(now)))
                    .min(),
                Err(_) => None,
            };
            let wait = match next {
                Some(at) => Duration::from_millis((at - now) as u64).min(act.poll),
                None => act.poll,
            };
            if let Some(handle) = act.timer.take() {
                ctx.cancel_future(handle);
            }
            act.timer = Some(ctx.run_later(wait, move |act, ctx| {
                if generation != act.timer_generation {
                    return;
                }
                act.timer = None;
                // Every cluster is woken: tokens back by now are its claims' to find.
                let now = act.store.now();
                for cluster in &mut act.clusters {
                    cluster.rate_mark = now;
                }
                if act.pauses.is_none() {
                    // The first read failed: the queue starts nothing until one works.
                    act.read_pauses(ctx);
                }
                act.expect_work(None);
                act.dispatch(ctx);
                act.arm_timer(ctx);
            }));
        }));
    }

    /// Kills every current run that `which` selects; says whether there was one.
    fn kill_runs(&self, which: impl Fn(&Running) -> bool) -> bool {
        let mut found = false;
        for slot in self.clusters.iter().flat_map(|c| &c.slots) {
            if let Some(r) = slot.runner.running() {
                if which(&r) {
                    r.kill.kill();
                    found = true;
                }
            }
        }
        found
    }

    /// Renews the leases of the tasks claimed ahead and of the runs on this node's
    /// runners; a run whose lease is gone (cancelled, taken over) is killed.
    fn renew_leases(&mut self, ctx: &mut Context<Self>) {
        for claimed in self.clusters.iter().flat_map(|c| &c.ready) {
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
        for (slot, id, token) in self.clusters.iter().flat_map(ClusterQueue::leased) {
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
}

/// Gives claims back to the queue (a stopping node, or a claim that came back while
/// draining); their leases would otherwise have to expire.
async fn give_back(store: Store, claims: Vec<(TaskId, LeaseToken)>) {
    if claims.is_empty() {
        return;
    }
    if let Err(e) = store.release_claims(&claims).await {
        tracing::warn!(error = %e, "could not give back claimed tasks; their leases will expire");
    }
}

impl Actor for QueueActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Opened by the claims, which run on this thread: its runtime drives them.
        self.claim_connections = match self.store.thread_connections() {
            Ok(connections) => connections,
            Err(e) => {
                tracing::warn!(error = %e, "the queue claims on the store's pool");
                None
            }
        };
        if let Some(connections) = &self.claim_connections {
            for _ in &self.clusters {
                connections.add_user();
            }
        }
        let addr = ctx.address();
        let store = self.store.clone();
        // New work anywhere (NOTIFY on PostgreSQL; on SQLite a signal from this
        // process, or from another through the file's wake-up socket) wakes us.
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
        ctx.run_interval(PAUSES_REFRESH, |act, ctx| act.read_pauses(ctx));
        self.read_pauses(ctx);
        self.dispatch(ctx);
        self.arm_timer(ctx);
    }
}

/// New work in a cluster (every cluster when `None`): look for it now.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Wake(pub Option<String>);

impl Handler<Wake> for QueueActor {
    type Result = ();
    fn handle(&mut self, msg: Wake, ctx: &mut Context<Self>) {
        if msg.0.is_none() {
            // Pausing and resuming wake every cluster.
            self.read_pauses(ctx);
        }
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
            .and_then(|t| self.clusters.iter().position(|c| c.name == t.def.cluster));
        let pause =
            cluster.and_then(|c| self.pause_holding(&self.clusters[c].name, &req.task_type));
        match cluster {
            Some(_) if pause.is_some() => {
                let _ = req.reply.send(Err(Error::Paused(pause.expect("checked"))));
            }
            Some(c) if !self.draining => {
                let cluster = &mut self.clusters[c];
                cluster.ephemeral.push_back(req);
                // A runner reserved by a claim that is out is served once the claim
                // is back: have it dispatch then, not at the next safety poll.
                cluster.mark_woken();
                self.dispatch(ctx);
            }
            Some(_) => {
                let _ = req.reply.send(Err(Error::ShuttingDown));
            }
            None => {
                let _ = req
                    .reply
                    .send(Err(Error::UnknownEphemeralType(req.task_type)));
            }
        }
    }
}

/// Tells the queue that a task was cancelled, so it kills the run if it has it.
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub(crate) struct Cancelled(pub TaskId);

impl Handler<Cancelled> for QueueActor {
    type Result = bool;
    /// Kills the run of a task that was just cancelled, if it runs here.
    fn handle(&mut self, msg: Cancelled, _: &mut Context<Self>) -> bool {
        let mut found = false;
        for cluster in &mut self.clusters {
            cluster.ready.retain(|c| {
                let cancelled = c.task.id == msg.0;
                found |= cancelled;
                !cancelled
            });
        }
        found | self.kill_runs(|r| r.task_id == Some(msg.0))
    }
}

impl Handler<crate::messages::QueueStatus> for QueueActor {
    type Result = MessageResult<crate::messages::QueueStatus>;
    fn handle(&mut self, _: crate::messages::QueueStatus, _: &mut Context<Self>) -> Self::Result {
        let runners = self
            .clusters
            .iter()
            .flat_map(|cluster| {
                cluster.slots.iter().enumerate().map(move |(i, s)| {
                    let current = s.runner.running();
                    crate::messages::RunnerStatus {
                        cluster: cluster.name.clone(),
                        index: i,
                        task_id: current.as_ref().and_then(|r| r.task_id),
                        task_type: current.as_ref().map(|r| r.task_type.clone()),
                        transaction_ms: current
                            .as_ref()
                            .and_then(|r| r.kill.transaction_open_for())
                            .map(|d| d.as_millis() as u64),
                        running_ms: current.map(|r| r.started.elapsed().as_millis() as u64),
                    }
                })
            })
            .collect();
        MessageResult(crate::messages::QueueState {
            runners,
            completed: self.completed,
            draining: self.draining,
            connections: crate::messages::ConnectionUse {
                store: self.store.pool_use(),
                queue: self
                    .claim_connections
                    .as_ref()
                    .map(warren::store::ThreadConnections::usage)
                    .unwrap_or_default(),
                runner_threads: self.pool.thread_connections_use(),
            },
        })
    }
}

/// Stop claiming; answer once every running task has finished.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Drain;

impl Handler<Drain> for QueueActor {
    type Result = ResponseActFuture<Self, ()>;
    fn handle(&mut self, _: Drain, _: &mut Context<Self>) -> Self::Result {
        self.draining = true;
        let claimed: Vec<(TaskId, LeaseToken)> = self
            .clusters
            .iter_mut()
            .flat_map(|c| c.ready.drain(..))
            .map(|c| (c.task.id, c.token))
            .collect();
        for cluster in &mut self.clusters {
            for req in cluster.ephemeral.drain(..) {
                let _ = req.reply.send(Err(Error::ShuttingDown));
            }
        }
        let store = self.store.clone();
        Box::pin(
            give_back(store, claimed)
                .into_actor(self)
                .then(|_, act, _| {
                    let currents = act
                        .clusters
                        .iter()
                        .flat_map(|c| &c.slots)
                        .map(|s| s.runner.current.clone())
                        .collect();
                    wait_idle(currents).into_actor(act)
                })
                .then(|_, act, _| {
                    // Then what the runs that ended left under way: quiet completions
                    // committing, history records being written.
                    let settled: Vec<_> = act
                        .clusters
                        .iter()
                        .flat_map(|c| &c.slots)
                        .map(|s| s.runner.addr.send(Settle))
                        .collect();
                    async move {
                        futures_util::future::join_all(settled).await;
                    }
                    .into_actor(act)
                }),
        )
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
pub(crate) struct KillAll;

impl Handler<KillAll> for QueueActor {
    type Result = ();
    fn handle(&mut self, _: KillAll, _: &mut Context<Self>) {
        self.kill_runs(|_| true);
    }
}

/// Kills a managed task's run on this node (it counts as a failed attempt); a task
/// only claimed ahead is left to run later. Answers whether it ran here.
#[derive(Message)]
#[rtype(result = "bool")]
pub(crate) struct KillRun(pub TaskId);

impl Handler<KillRun> for QueueActor {
    type Result = bool;
    fn handle(&mut self, msg: KillRun, _: &mut Context<Self>) -> bool {
        self.kill_runs(|r| r.task_id == Some(msg.0))
    }
}

/// Fault injection for tests of crash supervision: the queue panics in its handler.
#[cfg(feature = "test-hooks")]
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct PanicNow;

#[cfg(feature = "test-hooks")]
impl Handler<PanicNow> for QueueActor {
    type Result = ();
    fn handle(&mut self, _: PanicNow, _: &mut Context<Self>) {
        panic!("injected fault: the queue panics");
    }
}
