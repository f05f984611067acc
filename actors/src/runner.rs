//! TaskRunner: runs one task at a time on a thread it shares with other runners (see
//! `runner_threads.rs`), keeping idle VMs (at most one per task type, at most
//! [`RunnerEnv::idle_vms`] in all, least recently used dropped first) and reusing them
//! for the next task of their type.
//!
//! Every run goes through one pipeline, [`run`]: plan (code, input, timeout) → a VM →
//! the task's database → the guest runs → the VM goes back → settle. The three kinds of
//! run — managed ([`RunManaged`]), ephemeral ([`RunEphemeral`]), scheduled
//! ([`RunScheduled`]) — differ only in the steps of [`RunKind`].

use crate::code::CodeCache;
use crate::error::{Error, RunnerCrash};
use crate::idle_spin::{self, IdleSpin};
use crate::in_flight::{InFlight, RecordWrite};
use crate::metrics::Metrics;
use crate::run_span;
use crate::run_times::TypeRunTimes;
use actix::prelude::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::Instrument;
use warren::catalog::{Catalog, CatalogScheduled, CatalogType};
use warren::clock::SharedClock;
use warren::executor::RunFailure;
use warren::store::{
    ClaimedTask, GroupBounds, GroupSlot, Grouped, MemberOutcome, ResolveOutcome, RunLogLine,
    RunOutcome, RunRecord, ScheduledEnd, ScheduledOutcome, Store, StoreError, TaskRun,
    ThreadConnections, Transaction,
};
use warren::task::{LeaseToken, Resolution, TaskId};
use warren::trace::{TraceParent, TRACEPARENT};
use warren::wasm::{
    FailureCause, KillSwitch, RunEnd, RunReport, TaskDb, TaskInput, TaskVm, VmCache, VmLimits,
};

/// What a runner is doing right now, readable (and killable) from other threads while
/// the runner is busy.
#[derive(Debug, Clone)]
pub(crate) struct Running {
    /// The managed task's id (`None` for ephemeral and scheduled runs).
    pub task_id: Option<TaskId>,
    /// The managed task's fencing token, so a restarted queue can renew its lease.
    pub token: Option<LeaseToken>,
    /// Task type or scheduled tag.
    pub task_type: String,
    /// Stops the guest.
    pub kill: KillSwitch,
    /// When the run started.
    pub started: Instant,
}

/// Shared view of a runner's current run.
pub(crate) type CurrentRun = Arc<Mutex<Option<Running>>>;

/// Everything a runner needs; cheap to clone into each run.
#[derive(Clone)]
pub(crate) struct RunnerEnv {
    /// The store.
    pub store: Store,
    /// Compiled task code, shared by all runners.
    pub code: CodeCache,
    /// The loaded modules.
    pub catalog: Arc<Catalog>,
    /// The clock guests see.
    pub clock: SharedClock,
    /// VM recycling bounds (the memory limit comes from each task type).
    pub vm_limits: VmLimits,
    /// The node's metrics: runs, durations, outcomes, VM instantiations and reuses.
    pub metrics: Arc<Metrics>,
    /// Idle VMs each runner keeps: its share of the engine's pool, less the VM it runs
    /// (see [`warren::wasm::idle_vms_per_runner`]).
    pub idle_vms: usize,
    /// What this runner's last run still has under way (each runner gets its own in
    /// [`TaskRunner::new`]).
    pub in_flight: InFlight,
    /// How long a runners' thread whose last run ended keeps polling for the next.
    pub idle_spin: IdleSpin,
    /// The connections of this runner's thread, which managed runs' transactions take
    /// (PostgreSQL; set when the runner is placed on its thread, see `pool.rs`).
    pub thread_connections: Option<ThreadConnections>,
    /// The run group this runner keeps open between its managed runs (each runner
    /// gets its own when it is placed, see `pool.rs`).
    pub open_group: GroupSlot,
    /// How large and old a run group may grow ([`GroupBounds::OFF`]: every run commits
    /// on its own).
    pub group_bounds: GroupBounds,
    /// How long each task type's runs take lately, shared by the node's runners: only
    /// types whose runs are short group.
    pub run_times: TypeRunTimes,
    /// Where managed runs report their start (tests and benchmarks).
    #[cfg(feature = "test-hooks")]
    pub run_starts: Option<crate::test_hooks::RunStarts>,
}

/// Runs tasks one at a time.
pub(crate) struct TaskRunner {
    env: RunnerEnv,
    /// The idle VMs; lent to the run in progress, which hands them back.
    vms: VmCache<TaskVm>,
    current: CurrentRun,
}

impl TaskRunner {
    /// A runner publishing its current run in `current`.
    pub(crate) fn new(mut env: RunnerEnv, current: CurrentRun) -> TaskRunner {
        env.in_flight = InFlight::default();
        TaskRunner {
            vms: VmCache::new(env.idle_vms),
            env,
            current,
        }
    }

    /// Publishes the run (so it can be killed) and lends it the idle VMs.
    fn begin(
        &mut self,
        task: Option<(TaskId, LeaseToken)>,
        name: &str,
        kill: &KillSwitch,
    ) -> VmCache<TaskVm> {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(Running {
            task_id: task.map(|t| t.0),
            token: task.map(|t| t.1),
            task_type: name.to_string(),
            kill: kill.clone(),
            started: Instant::now(),
        });
        idle_spin::run_started();
        std::mem::replace(&mut self.vms, VmCache::new(self.env.idle_vms))
    }

    /// Takes the idle VMs back and clears the current run.
    fn end(&mut self, name: String, vms: VmCache<TaskVm>) {
        self.vms = vms;
        idle_spin::run_ended(self.env.idle_spin);
        let run = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(run) = run {
            let took = run.started.elapsed();
            self.env.metrics.run_duration(&name, took);
            if run.task_id.is_some() {
                self.env.run_times.record(&name, took);
            }
        }
    }

    /// Runs `kind` through the pipeline on this runner, killable through `kill`.
    fn launch<K>(
        &mut self,
        kind: K,
        kill: KillSwitch,
    ) -> AtomicResponse<Self, Result<K::Answer, RunnerCrash>>
    where
        K: RunKind + 'static,
        K::Answer: 'static,
    {
        let name = kind.name().to_string();
        if !kind.joins_groups() {
            // The group's runs should not wait for this run: commit alongside it.
            if let Some(group) = self.env.open_group.take() {
                actix::spawn(async move {
                    group.commit().await;
                });
            }
        }
        let vms = self.begin(kind.task(), &name, &kill);
        let env = self.env.clone();
        // On the heap: each wrapper around it (panic guard, actor future, response)
        // would otherwise copy it. It is small (see `run`), so boxing copies little.
        guarded(self, name, Box::pin(run(env, kind, vms, kill)))
    }
}

impl Actor for TaskRunner {
    type Context = Context<Self>;
}

/// Runs `run` on the runner, catching a panic: the runner then forgets its VMs and
/// stops (its state can no longer be trusted) and the crash is the answer.
fn guarded<T: 'static>(
    runner: &mut TaskRunner,
    name: String,
    run: impl std::future::Future<Output = (VmCache<TaskVm>, T)> + 'static,
) -> AtomicResponse<TaskRunner, Result<T, RunnerCrash>> {
    use futures_util::FutureExt;
    let run = std::panic::AssertUnwindSafe(run).catch_unwind();
    AtomicResponse::new(Box::pin(run.into_actor(runner).map(
        move |result, act, ctx| match result {
            Ok((vms, answer)) => {
                act.end(name, vms);
                Ok(answer)
            }
            Err(payload) => {
                let reason = crate::restart::payload_text(payload.as_ref());
                tracing::error!(run = %name, %reason, "the runner crashed; it will be replaced");
                act.vms.clear();
                *act.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
                idle_spin::run_ended(act.env.idle_spin);
                ctx.stop();
                Err(RunnerCrash(reason))
            }
        },
    )))
}

/// What a run needs before it starts: the code, the guest's input and the timeout.
pub(crate) struct Plan<'e> {
    code: CodeRef<'e>,
    input: TaskInput,
    timeout: Option<Duration>,
}

/// One kind of run: the steps of the pipeline ([`run`]) that differ between managed,
/// ephemeral and scheduled runs.
pub(crate) trait RunKind: Sized {
    /// What the runner answers when the run is over.
    type Answer;
    /// The managed task (id, lease token) this run is, if it is one.
    fn task(&self) -> Option<(TaskId, LeaseToken)> {
        None
    }
    /// Whether the run may join the runner's open run group (a managed run); the
    /// group commits before any other run.
    fn joins_groups(&self) -> bool {
        false
    }
    /// Task type or scheduled tag: names the current run and its metrics.
    fn name(&self) -> &str;
    /// The run's trace span (see `run_span.rs`).
    fn span(&self) -> tracing::Span;
    /// Records on the run's span how the guest ended it. A managed run records what was
    /// stored instead, once it is (see `RunManaged::record`).
    fn end_span(&self, span: &tracing::Span, end: &RunEnd) {
        run_span::record_end(span, end);
    }
    /// Records on the run's span that it did not start, and why (a managed run records
    /// what was stored instead).
    fn span_not_started(&self, span: &tracing::Span, why: &Error) {
        run_span::record_not_started(span, why);
    }
    /// The trace context the run's span links to: a managed task's, kept with it.
    async fn trace_parent(&self, _env: &RunnerEnv) -> Option<TraceParent> {
        None
    }
    /// The code to run, the input and the timeout; an error ends the run unstarted
    /// (see [`RunKind::not_started`]). May take the run's data out of `self`.
    fn plan<'e>(&mut self, env: &'e RunnerEnv) -> Result<Plan<'e>, Error>;
    /// The database the task's SQL goes to, or the answer when it cannot be had.
    async fn database(&self, env: &RunnerEnv) -> Result<TaskDb, Self::Answer>;
    /// The answer for a run that did not start: no code, or no VM for it.
    async fn not_started(self, env: &RunnerEnv, why: Error) -> Self::Answer;
    /// Settles a run that ran (resolves it, commits or rolls back its transaction)
    /// and answers.
    async fn settle(self, env: &RunnerEnv, report: RunReport) -> Self::Answer;
}

/// The run pipeline, the same for every kind of run: plan, take a VM, open the task's
/// database, run the guest, hand the VM back, settle.
async fn run<K: RunKind>(
    env: RunnerEnv,
    kind: K,
    vms: VmCache<TaskVm>,
    kill: KillSwitch,
) -> (VmCache<TaskVm>, K::Answer) {
    let span = kind.span();
    // The task's trace context is read only when a tracing layer records the span.
    if run_span::is_traced(&span) {
        // Boxed: a database read's future, which the untraced run should not carry.
        if let Some(parent) = Box::pin(kind.trace_parent(&env)).await {
            run_span::link_to(&span, parent);
        }
    }
    // Boxed: the pipeline's future is 17 KiB (measured); inline, this future was twice
    // that (37 KiB), and each move of it (into its box, into the span's wrapper) a
    // copy of it all. With the boxes below, the node's memcpy fell from 2.8% of the
    // machine in the insert drain to under 0.4%.
    Box::pin(run_in_span(env, kind, vms, kill, &span))
        .instrument(span.clone())
        .await
}

/// [`run`], inside the run's span.
async fn run_in_span<K: RunKind>(
    env: RunnerEnv,
    mut kind: K,
    mut vms: VmCache<TaskVm>,
    kill: KillSwitch,
    span: &tracing::Span,
) -> (VmCache<TaskVm>, K::Answer) {
    let plan = match kind.plan(&env) {
        Ok(plan) => plan,
        Err(why) => {
            kind.span_not_started(span, &why);
            return (vms, Box::pin(kind.not_started(&env, why)).await);
        }
    };
    let mut vm = match vm_for(&env, plan.code, &mut vms).await {
        Ok(vm) => vm,
        Err(why) => {
            kind.span_not_started(span, &why);
            return (vms, Box::pin(kind.not_started(&env, why)).await);
        }
    };
    let db = match kind.database(&env).await {
        Ok(db) => db,
        Err(answer) => {
            run_span::record_not_started(span, &"its database work could not begin");
            vms.check_in(vm);
            return (vms, answer);
        }
    };
    #[cfg(feature = "test-hooks")]
    if let (Some(probe), Some((id, _))) = (&env.run_starts, kind.task()) {
        let _ = probe.send((id, std::time::Instant::now()));
    }
    let report = vm.run(plan.input, db, plan.timeout, kill).await;
    kind.end_span(span, &report.end);
    vms.check_in(vm);
    // Boxed: settling is a 6 KiB future that would otherwise sit in this one (and be
    // copied with it) for the whole run.
    let answer = Box::pin(kind.settle(&env, report)).await;
    (vms, answer)
}

fn timeout_of(task_ms: i64, type_ms: u64) -> Option<Duration> {
    match (task_ms, type_ms) {
        (t, _) if t > 0 => Some(Duration::from_millis(t as u64)),
        (_, 0) => None,
        (_, t) => Some(Duration::from_millis(t)),
    }
}

/// What a VM is made from: a task type's or a scheduled task's code.
struct CodeRef<'a> {
    name: &'a str,
    code: &'a std::path::Path,
    module_dir: &'a std::path::Path,
    memory_limit_mb: u32,
    max_transaction_ms: u64,
}

impl<'a> From<&'a CatalogType> for CodeRef<'a> {
    fn from(ct: &'a CatalogType) -> CodeRef<'a> {
        CodeRef {
            name: ct.def.task_type.as_str(),
            code: &ct.def.code,
            module_dir: &ct.module_dir,
            memory_limit_mb: ct.def.memory_limit_mb,
            max_transaction_ms: ct.def.max_transaction_ms,
        }
    }
}

impl<'a> From<&'a CatalogScheduled> for CodeRef<'a> {
    fn from(s: &'a CatalogScheduled) -> CodeRef<'a> {
        CodeRef {
            name: &s.def.tag,
            code: &s.def.code,
            module_dir: &s.module_dir,
            memory_limit_mb: s.def.memory_limit_mb,
            max_transaction_ms: s.def.max_transaction_ms,
        }
    }
}

/// A VM for `code`: its idle one, or a new instance (idle VMs of other types are
/// dropped when the pool needs room for it).
async fn vm_for(
    env: &RunnerEnv,
    code: CodeRef<'_>,
    vms: &mut VmCache<TaskVm>,
) -> Result<TaskVm, Error> {
    if let Some(vm) = vms.take_reusable(code.name) {
        env.metrics.vm_reused();
        return Ok(vm);
    }
    let limits = VmLimits {
        memory_bytes: (code.memory_limit_mb as usize) << 20,
        max_transaction: (code.max_transaction_ms > 0)
            .then(|| Duration::from_millis(code.max_transaction_ms)),
        ..env.vm_limits
    };
    let code = env.code.get(code.name, code.code, code.module_dir)?;
    let vm = vms
        .instantiate(env.code.engine(), code, limits, env.clock.clone())
        .await?;
    env.metrics.vm_instantiated();
    Ok(vm)
}

/// Commits an ephemeral or scheduled run's transaction when it completed, rolls it
/// back otherwise, and says how the run ended: the result, or why there is none.
async fn finish_transaction(tx: Option<Transaction>, end: RunEnd) -> Result<String, Error> {
    let outcome = match end {
        RunEnd::Resolved(Resolution::Completion { result }) => Ok(result),
        RunEnd::Resolved(Resolution::PermanentFailure { error, .. })
        | RunEnd::Resolved(Resolution::Cancellation { error })
        | RunEnd::Resolved(Resolution::TemporaryFailure { error, .. })
        | RunEnd::Failed { error, .. } => Err(Error::TaskFailed(error)),
        RunEnd::Resolved(r @ (Resolution::Restart { .. } | Resolution::Snooze { .. })) => {
            Err(Error::RestartUnsupported(r.kind()))
        }
    };
    match (tx, &outcome) {
        (Some(tx), Ok(_)) => tx.commit().await?,
        (Some(tx), Err(_)) => {
            let _ = tx.rollback().await;
        }
        (None, _) => {}
    }
    outcome
}

/// The transaction an ephemeral or scheduled run opened, if it used the database.
fn opened_transaction(db: TaskDb) -> Option<Transaction> {
    match db {
        TaskDb::Ephemeral(tx) => Some(tx),
        _ => None,
    }
}

/// Whether the run ended by its timeout.
fn timed_out(end: &RunEnd) -> bool {
    matches!(
        end,
        RunEnd::Failed {
            cause: FailureCause::TimedOut,
            ..
        }
    )
}

/// Runs a claimed managed task in its own transaction and resolves it.
#[derive(Message)]
#[rtype(result = "Result<ManagedOutcome, RunnerCrash>")]
pub(crate) struct RunManaged(pub ClaimedTask);

/// How a managed run ended, for the queue's bookkeeping and logs.
#[derive(Debug)]
pub(crate) enum ManagedOutcome {
    /// Resolved and committed (or the failure recorded).
    Resolved(ResolveOutcome),
    /// The lease was lost (cancelled, or claimed elsewhere): nothing committed.
    LeaseLost,
    /// Nothing could be recorded (the store failed); the lease will expire and the
    /// task run again.
    Unresolved(Error),
    /// Completed without database work: the completion is queued for the next shared
    /// commit and the runner is free; the runner logs and records what the commit
    /// answers (see [`TaskRun::complete_queued`]).
    ///
    /// [`TaskRun::complete_queued`]: warren::store::TaskRun::complete_queued
    Committing,
}

impl ManagedOutcome {
    /// The outcome of resolving or recording a run in the store.
    fn of(stored: Result<ResolveOutcome, StoreError>) -> ManagedOutcome {
        match stored {
            Ok(outcome) => ManagedOutcome::Resolved(outcome),
            Err(StoreError::LeaseLost { .. }) => ManagedOutcome::LeaseLost,
            Err(e) => ManagedOutcome::Unresolved(e.into()),
        }
    }

    /// How the run ended, as its history records it and as `warren_tasks_finished_total`
    /// labels it: `requeued` (restarted, snoozed) when its resolution asked to run again
    /// later, `lost` when nothing could be committed (the lease was lost, or the store
    /// failed).
    pub(crate) fn run_outcome(&self, requeued: Option<RunOutcome>) -> RunOutcome {
        match self {
            ManagedOutcome::Resolved(ResolveOutcome::Completed) => RunOutcome::Completed,
            ManagedOutcome::Resolved(ResolveOutcome::Failed) => RunOutcome::Failed,
            ManagedOutcome::Resolved(ResolveOutcome::Cancelled) => RunOutcome::Cancelled,
            ManagedOutcome::Resolved(ResolveOutcome::Pending { .. }) => {
                requeued.unwrap_or(RunOutcome::Retry)
            }
            ManagedOutcome::LeaseLost | ManagedOutcome::Unresolved(_) => RunOutcome::Lost,
            // Not an outcome yet: it is the commit's answer that is recorded.
            ManagedOutcome::Committing => RunOutcome::Completed,
        }
    }
}

impl RunManaged {
    /// Records this run in its task's history (`Store::queue_run_record`), with its
    /// start and end. The record shares a commit with other runs' records and the
    /// runner does not wait for it: it waits for its previous record, if still in
    /// flight, queues this one, and goes on (see [`InFlight`]). The history is for
    /// people: a run whose record cannot be written still ran, and says so in the
    /// node's log. A run whose outcome the store could not write is not recorded
    /// either: the database is failing, and the runner does not wait on it twice (the
    /// lease expires and the task runs again).
    async fn record(
        &self,
        env: &RunnerEnv,
        times: (warren::task::Millis, warren::task::Millis),
        ended: (&ManagedOutcome, RunOutcome),
        error: Option<String>,
        log: Vec<RunLogLine>,
    ) {
        if let Some(written) = self.queue_record(env, times, ended, error, log) {
            env.in_flight.keep_record(written).await;
        }
    }

    /// Queues the run's history record; the future answers once it is written (and
    /// logs why when it could not be). `None`: nothing to record.
    fn queue_record(
        &self,
        env: &RunnerEnv,
        (started_at, finished_at): (warren::task::Millis, warren::task::Millis),
        (outcome, run_outcome): (&ManagedOutcome, RunOutcome),
        error: Option<String>,
        log: Vec<RunLogLine>,
    ) -> Option<RecordWrite> {
        let error = run_error(outcome, error);
        // The run's span (current: the run is instrumented with it) says what was stored.
        run_span::record_settled(&tracing::Span::current(), run_outcome, error.as_deref());
        if matches!(outcome, ManagedOutcome::Unresolved(_)) {
            return None;
        }
        let task = &self.0.task;
        let record = RunRecord {
            task_id: task.id,
            lease_token: self.0.token,
            node: task.lease_owner.clone().unwrap_or_default(),
            started_at,
            finished_at,
            outcome: run_outcome,
            error,
            log,
        };
        let id = task.id;
        let written = env.store.queue_run_record(record);
        Some(Box::pin(async move {
            if let Err(e) = written.await {
                tracing::warn!(task = %id, "the run's history was not recorded: {e}");
            }
        }))
    }

    /// Resolves the run in its transaction and waits for the commit, then records it.
    /// With `may_group`, a completion that did database work may instead stay in the
    /// runner's open run group: it is then settled like a quiet completion, once the
    /// group commits ([`RunManaged::settle_committing`]).
    async fn resolve(
        self,
        env: &RunnerEnv,
        run: TaskRun,
        resolution: Resolution,
        times: (warren::task::Millis, warren::task::Millis),
        log: Vec<RunLogLine>,
        may_group: bool,
    ) -> ManagedOutcome {
        let policy = env.catalog.retry_policy(&self.0.task.task_type);
        let keep_open = may_group && env.group_bounds.enabled();
        // What was stored, which may differ from what task code sent (an oversized
        // result becomes a temporary failure, and so on).
        let (stored, applied) = match run.resolve_grouping(resolution, policy, keep_open).await {
            Grouped::Open {
                group,
                outcome,
                applied: _,
            } => {
                // A group this run opened is committed when too old (one timer a group).
                let opened_by = (group.len() == 1).then(|| group.first_task()).flatten();
                env.open_group.keep(*group);
                if let Some(first) = opened_by {
                    commit_when_too_old(env, first);
                }
                let committed = MemberOutcome::committed(outcome);
                return self.settle_committing(env, committed, times, log, true);
            }
            Grouped::Resolved { stored, applied } => (stored, applied),
        };
        let outcome = ManagedOutcome::of(stored);
        let run_outcome = outcome.run_outcome(applied.requeued);
        env.metrics.run_finished(self.name(), run_outcome.as_str());
        self.record(env, times, (&outcome, run_outcome), applied.error, log)
            .await;
        outcome
    }

    /// Settles a quiet completion whose commit is under way (`committed`): the runner
    /// answers at once, and a task of its own waits for the commit, counts the run's
    /// outcome, logs a lost lease, and queues the run's record. That task is one of the
    /// runner's completions in flight (see `in_flight.rs`). A completion in the
    /// runner's open run group (`grouped`) commits only when the runner commits the
    /// group, so the runner never waits for it before its next run: it is kept apart,
    /// and writes its record itself.
    fn settle_committing(
        self,
        env: &RunnerEnv,
        committed: impl std::future::Future<Output = Result<ResolveOutcome, StoreError>> + 'static,
        times: (warren::task::Millis, warren::task::Millis),
        log: Vec<RunLogLine>,
        grouped: bool,
    ) -> ManagedOutcome {
        let env_later = env.clone();
        let settled = async move {
            let env = env_later;
            let outcome = ManagedOutcome::of(committed.await);
            let run_outcome = outcome.run_outcome(None);
            env.metrics.run_finished(self.name(), run_outcome.as_str());
            let (id, task_type) = (self.0.task.id, self.name());
            match &outcome {
                ManagedOutcome::LeaseLost => tracing::info!(
                    task = id.0, %task_type, "task lost its lease (cancelled or taken over)"
                ),
                ManagedOutcome::Unresolved(e) => tracing::warn!(
                    task = id.0, %task_type, error = %e,
                    "task could not be resolved; its lease will expire"
                ),
                _ => {}
            }
            self.queue_record(&env, times, (&outcome, run_outcome), None, log)
        }
        .instrument(tracing::Span::current());
        // Boxed before it is spawned: the task then holds a pointer, not the 6 KiB
        // future that spawning, finishing and dropping the task would each copy.
        let settled = Box::pin(settled);
        if grouped {
            let handle = actix::spawn(async move {
                if let Some(record) = settled.await {
                    record.await;
                }
            });
            env.in_flight.keep_grouped(handle);
            return ManagedOutcome::Committing;
        }
        let handle = actix::spawn(settled);
        env.in_flight
            .keep_completion(Box::pin(async move { handle.await.ok().flatten() }));
        ManagedOutcome::Committing
    }
}

/// Commits the group that the run of task `first` opened once it is as old as its
/// bounds allow, unless it committed earlier or a run joined it by then (a run joins
/// with its first database work): a next run that computes first, or does no database
/// work, must not hold the group's runs back.
fn commit_when_too_old(env: &RunnerEnv, first: TaskId) {
    /// Looks this many times at most (a clock that does not move, in tests, or steps
    /// back); the queue's `FlushGroup` and the next runs still commit the group.
    const LOOKS: usize = 20;
    let (slot, store) = (env.open_group.clone(), env.store.clone());
    let max_age_ms = env.group_bounds.max_age_ms;
    actix::spawn(async move {
        let wait = Duration::from_millis(u64::try_from(max_age_ms).unwrap_or(0));
        for _ in 0..LOOKS {
            tokio::time::sleep(wait).await;
            if !slot.commit_if_older(first, max_age_ms, store.now()).await {
                return;
            }
        }
    });
}

/// The error a run's history shows: the resolution's, or why nothing committed.
fn run_error(outcome: &ManagedOutcome, resolution_error: Option<String>) -> Option<String> {
    match outcome {
        ManagedOutcome::LeaseLost => Some(
            "the lease was lost (the task was cancelled or taken over meanwhile): nothing committed"
                .to_string(),
        ),
        ManagedOutcome::Unresolved(e) => Some(format!("nothing committed: {e}")),
        ManagedOutcome::Resolved(_) | ManagedOutcome::Committing => resolution_error,
    }
}

impl RunKind for RunManaged {
    type Answer = ManagedOutcome;

    fn task(&self) -> Option<(TaskId, LeaseToken)> {
        Some((self.0.task.id, self.0.token))
    }

    fn joins_groups(&self) -> bool {
        true
    }

    fn name(&self) -> &str {
        self.0.task.task_type.as_str()
    }

    fn end_span(&self, _span: &tracing::Span, _end: &RunEnd) {}

    fn span_not_started(&self, _span: &tracing::Span, _why: &Error) {}

    fn span(&self) -> tracing::Span {
        let task = &self.0.task;
        let attempt = i64::from(task.iterations.max(0)) + 1;
        run_span::run_span("managed", self.name(), Some(task.id), Some(attempt))
    }

    async fn trace_parent(&self, env: &RunnerEnv) -> Option<TraceParent> {
        let id = self.0.task.id;
        match env.store.metadata(id, TRACEPARENT).await {
            Ok(text) => text?.parse().ok(),
            Err(e) => {
                tracing::debug!(task = %id, error = %e, "the task's trace context could not be read");
                None
            }
        }
    }

    fn plan<'e>(&mut self, env: &'e RunnerEnv) -> Result<Plan<'e>, Error> {
        let task = &self.0.task;
        let ct = env
            .catalog
            .task_type(task.task_type.as_str())
            .ok_or_else(|| Error::NotDeclaredHere(task.task_type.to_string()))?;
        Ok(Plan {
            code: ct.into(),
            input: TaskInput {
                id: task.id,
                task_type: task.task_type.to_string(),
                data: task.data.to_string(),
                aux_data: task.aux_data.as_ref().map(|v| v.to_string()),
                failures: task.failures.max(0) as u32,
                iteration: task.iterations.max(0) as u32,
            },
            timeout: timeout_of(task.timeout_ms, ct.def.timeout_ms),
        })
    }

    async fn database(&self, env: &RunnerEnv) -> Result<TaskDb, ManagedOutcome> {
        let thread = env.thread_connections.clone();
        let slot = Some(env.open_group.clone());
        // A type whose runs are long lately neither joins a group nor opens one.
        let bounds = if env.run_times.are_short(self.name()) {
            env.group_bounds
        } else {
            GroupBounds::OFF
        };
        let begun = env
            .store
            .begin_run_in_group(self.0.clone(), thread, slot, bounds);
        match begun.await {
            Ok(run) => Ok(TaskDb::Managed(run)),
            Err(e) => {
                env.metrics.run_finished(self.name(), "lost");
                Err(ManagedOutcome::Unresolved(e.into()))
            }
        }
    }

    /// Records the failure to start as a failed attempt (the retry rule applies).
    async fn not_started(self, env: &RunnerEnv, why: Error) -> ManagedOutcome {
        let task = &self.0.task;
        let policy = env.catalog.retry_policy(&task.task_type);
        let recorded = env
            .store
            .record_failure(
                &RunFailure::new(task.id, self.0.token, why.to_string()),
                policy,
            )
            .await;
        let outcome = ManagedOutcome::of(recorded);
        let run_outcome = outcome.run_outcome(None);
        env.metrics.run_finished(self.name(), run_outcome.as_str());
        let now = env.store.now();
        let ended = (&outcome, run_outcome);
        self.record(env, (now, now), ended, Some(why.to_string()), Vec::new())
            .await;
        outcome
    }

    /// Resolves the run in its transaction (fenced by the lease token), or in the
    /// runner's run group (see `warren::store::RunGroup`).
    async fn settle(self, env: &RunnerEnv, report: RunReport) -> ManagedOutcome {
        let log = run_log(&report);
        let TaskDb::Managed(run) = report.db else {
            env.metrics.run_finished(self.name(), "lost");
            return ManagedOutcome::Unresolved(Error::TransactionLost);
        };
        let started_at = run.started_at();
        // The run's end, before its resolution waits for a commit.
        let finished_at = env.store.now();
        let resolution = report.end.into_resolution();
        let times = (started_at, finished_at);
        // A quiet completion is not waited for, unless the task has a concurrency key:
        // the queue claims more of a key when one ends, which must see it ended. For
        // the same reason such a task's run group commits before it answers.
        let keyed = self.0.task.flow_key.is_some();
        let (run, resolution) = if !keyed {
            env.in_flight.make_room_for_completion().await;
            match run.complete_queued(resolution) {
                Ok(committed) => return self.settle_committing(env, committed, times, log, false),
                Err(back) => back,
            }
        } else {
            (run, resolution)
        };
        // On the heap: its database futures are large, and the quiet path above,
        // the common one, should not carry (and copy) them.
        Box::pin(self.resolve(env, run, resolution, times, log, !keyed)).await
    }
}

/// What a run's code logged, then what it wrote to stdout and stderr, as history lines.
fn run_log(report: &RunReport) -> Vec<RunLogLine> {
    const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];
    let mut log: Vec<RunLogLine> = report
        .logs
        .iter()
        .map(|line| RunLogLine {
            level: LEVELS[usize::from(line.level.min(4))].to_string(),
            message: line.message.clone(),
        })
        .collect();
    for (level, text) in [("stdout", &report.stdout), ("stderr", &report.stderr)] {
        log.extend(text.lines().map(|line| RunLogLine {
            level: level.to_string(),
            message: line.to_string(),
        }));
    }
    log
}

impl Handler<RunManaged> for TaskRunner {
    type Result = AtomicResponse<Self, Result<ManagedOutcome, RunnerCrash>>;

    fn handle(&mut self, msg: RunManaged, _: &mut Context<Self>) -> Self::Result {
        self.launch(msg, KillSwitch::new())
    }
}

/// Waits until the runner's last run has nothing under way (its completion committed,
/// its record written): a node that drains for a shutdown sends it to every runner.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Settle;

impl Handler<Settle> for TaskRunner {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: Settle, _: &mut Context<Self>) -> Self::Result {
        let (in_flight, group) = (self.env.in_flight.clone(), self.env.open_group.clone());
        AtomicResponse::new(Box::pin(
            async move {
                group.commit().await;
                in_flight.collect_all().await
            }
            .into_actor(self),
        ))
    }
}

/// Commits the runner's open run group, if any: the queue sends it when it has no
/// next task for the runner, so that no run's outcome waits for work that is not
/// coming.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct FlushGroup;

impl Handler<FlushGroup> for TaskRunner {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: FlushGroup, _: &mut Context<Self>) -> Self::Result {
        let group = self.env.open_group.clone();
        AtomicResponse::new(Box::pin(
            async move { group.commit().await }.into_actor(self),
        ))
    }
}

/// Runs an ephemeral task: its SQL goes to a transaction of its own, committed when it
/// completes. Answers with the result (JSON text) or why there is none.
#[derive(Message)]
#[rtype(result = "Result<Result<String, Error>, RunnerCrash>")]
pub(crate) struct RunEphemeral {
    /// Task type.
    pub task_type: String,
    /// Data, JSON text.
    pub data: String,
    /// Timeout from the call; the task type's applies when `None`.
    pub timeout: Option<Duration>,
    /// Throwing it kills the run (the caller went away).
    pub kill: KillSwitch,
}

impl RunKind for RunEphemeral {
    type Answer = Result<String, Error>;

    fn name(&self) -> &str {
        &self.task_type
    }

    fn span(&self) -> tracing::Span {
        run_span::run_span("ephemeral", self.name(), None, None)
    }

    fn plan<'e>(&mut self, env: &'e RunnerEnv) -> Result<Plan<'e>, Error> {
        let ct = env
            .catalog
            .task_type(&self.task_type)
            .ok_or_else(|| Error::UnknownTaskType(self.task_type.clone()))?;
        Ok(Plan {
            code: ct.into(),
            input: TaskInput {
                id: TaskId(0),
                task_type: self.task_type.clone(),
                data: std::mem::take(&mut self.data),
                aux_data: None,
                failures: 0,
                iteration: 0,
            },
            timeout: self.timeout.or_else(|| timeout_of(0, ct.def.timeout_ms)),
        })
    }

    async fn database(&self, env: &RunnerEnv) -> Result<TaskDb, Self::Answer> {
        Ok(TaskDb::Deferred {
            store: env.store.clone(),
            thread: env.thread_connections.clone(),
        })
    }

    async fn not_started(self, _: &RunnerEnv, why: Error) -> Self::Answer {
        Err(why)
    }

    /// Commits the task's transaction when it completed, rolls it back otherwise.
    async fn settle(self, _: &RunnerEnv, report: RunReport) -> Self::Answer {
        finish_transaction(opened_transaction(report.db), report.end).await
    }
}

impl Handler<RunEphemeral> for TaskRunner {
    type Result = AtomicResponse<Self, Result<Result<String, Error>, RunnerCrash>>;

    fn handle(&mut self, msg: RunEphemeral, _: &mut Context<Self>) -> Self::Result {
        let kill = msg.kill.clone();
        self.launch(msg, kill)
    }
}

/// Runs a scheduled task; answers with how it ended, for the scheduled state.
#[derive(Message)]
#[rtype(result = "Result<ScheduledEnd, RunnerCrash>")]
pub(crate) struct RunScheduled {
    /// Full tag.
    pub tag: String,
    /// Kill switch (shutdown, or the claim was lost).
    pub kill: KillSwitch,
}

impl RunKind for RunScheduled {
    type Answer = ScheduledEnd;

    fn name(&self) -> &str {
        &self.tag
    }

    fn span(&self) -> tracing::Span {
        run_span::run_span("scheduled", self.name(), None, None)
    }

    fn plan<'e>(&mut self, env: &'e RunnerEnv) -> Result<Plan<'e>, Error> {
        let s = env
            .catalog
            .scheduled(&self.tag)
            .ok_or_else(|| Error::UnknownScheduled(self.tag.clone()))?;
        Ok(Plan {
            code: s.into(),
            input: TaskInput {
                id: TaskId(0),
                task_type: self.tag.clone(),
                data: serde_json::json!({ "args": s.def.args }).to_string(),
                aux_data: None,
                failures: 0,
                iteration: 0,
            },
            timeout: timeout_of(0, s.def.timeout_ms),
        })
    }

    async fn database(&self, env: &RunnerEnv) -> Result<TaskDb, Self::Answer> {
        Ok(TaskDb::Deferred {
            store: env.store.clone(),
            thread: env.thread_connections.clone(),
        })
    }

    async fn not_started(self, _: &RunnerEnv, why: Error) -> ScheduledEnd {
        ScheduledEnd::failed(why.to_string())
    }

    /// Commits the task's transaction when it completed, rolls it back otherwise;
    /// the output is what it logged and wrote, then its result or error.
    async fn settle(self, _: &RunnerEnv, report: RunReport) -> ScheduledEnd {
        let mut output = String::new();
        for line in &report.logs {
            output.push_str(&line.message);
            output.push('\n');
        }
        output.push_str(&report.stdout);
        output.push_str(&report.stderr);
        let timed_out = timed_out(&report.end);
        let outcome = match finish_transaction(opened_transaction(report.db), report.end).await {
            Ok(result) => {
                output.push_str(&result);
                ScheduledOutcome::Completed
            }
            Err(error) => {
                output.push_str(&error.to_string());
                if timed_out {
                    ScheduledOutcome::TimedOut
                } else {
                    ScheduledOutcome::Failed
                }
            }
        };
        ScheduledEnd { outcome, output }
    }
}

impl Handler<RunScheduled> for TaskRunner {
    type Result = AtomicResponse<Self, Result<ScheduledEnd, RunnerCrash>>;

    fn handle(&mut self, msg: RunScheduled, _: &mut Context<Self>) -> Self::Result {
        let kill = msg.kill.clone();
        self.launch(msg, kill)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_outcomes_are_labelled_for_the_metrics() {
        let pending = ResolveOutcome::Pending { next_attempt: 0 };
        let label = |stored, requeued| ManagedOutcome::of(stored).run_outcome(requeued).as_str();
        assert_eq!(label(Ok(ResolveOutcome::Completed), None), "completed");
        assert_eq!(label(Ok(ResolveOutcome::Failed), None), "failed");
        assert_eq!(label(Ok(ResolveOutcome::Cancelled), None), "cancelled");
        assert_eq!(label(Ok(pending), None), "retry");
        assert_eq!(label(Ok(pending), Some(RunOutcome::Restarted)), "restarted");
        assert_eq!(label(Ok(pending), Some(RunOutcome::Snoozed)), "snoozed");
        let lost = ManagedOutcome::Unresolved(Error::TransactionLost);
        assert_eq!(lost.run_outcome(None), RunOutcome::Lost);
        assert_eq!(
            ManagedOutcome::LeaseLost.run_outcome(None),
            RunOutcome::Lost
        );
    }

    #[test]
    fn scheduled_outcomes_are_recorded_as_before() {
        let names = [
            ScheduledOutcome::Completed,
            ScheduledOutcome::Failed,
            ScheduledOutcome::TimedOut,
        ]
        .map(ScheduledOutcome::as_str);
        assert_eq!(names, ["completed", "failed", "timeout"]);
        let failed = ScheduledEnd::failed(Error::UnknownScheduled("m:t".into()).to_string());
        assert_eq!(failed.outcome, ScheduledOutcome::Failed);
        assert_eq!(failed.output, "unknown scheduled task m:t");
    }

    #[test]
    fn a_task_timeout_wins_over_its_type_s() {
        assert_eq!(timeout_of(5, 9), Some(Duration::from_millis(5)));
        assert_eq!(timeout_of(0, 9), Some(Duration::from_millis(9)));
        assert_eq!(timeout_of(0, 0), None);
    }
}
