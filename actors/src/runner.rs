//! TaskRunner: runs one task at a time on a thread of its own, keeping idle VMs (at most
//! one per task type, at most [`RunnerEnv::idle_vms`] in all, least recently used
//! dropped first) and reusing them for the next task of their type.

use crate::code::CodeCache;
use crate::metrics::{outcome_label, Metrics};
use actix::prelude::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use warren::catalog::{Catalog, CatalogType};
use warren::clock::SharedClock;
use warren::executor::RunFailure;
use warren::store::{
    ClaimedTask, ResolveOutcome, ScheduledEnd, ScheduledOutcome, Store, StoreError, Transaction,
};
use warren::task::{LeaseToken, Resolution, TaskId};
use warren::wasm::{
    FailureCause, KillSwitch, RunEnd, TaskDb, TaskInput, TaskVm, VmCache, VmLimits,
};

/// What a runner is doing right now, readable (and killable) from other threads while
/// the runner is busy.
#[derive(Debug, Clone)]
pub struct Running {
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
pub type CurrentRun = Arc<Mutex<Option<Running>>>;

/// Everything a runner needs; cheap to clone into each run.
#[derive(Clone)]
pub struct RunnerEnv {
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
}

/// Runs tasks one at a time.
pub struct TaskRunner {
    env: RunnerEnv,
    /// The idle VMs; lent to the run in progress, which hands them back.
    vms: VmCache<TaskVm>,
    current: CurrentRun,
}

impl TaskRunner {
    /// A runner publishing its current run in `current`.
    pub fn new(env: RunnerEnv, current: CurrentRun) -> TaskRunner {
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
        task_type: &str,
        kill: &KillSwitch,
    ) -> VmCache<TaskVm> {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(Running {
            task_id: task.map(|t| t.0),
            token: task.map(|t| t.1),
            task_type: task_type.to_string(),
            kill: kill.clone(),
            started: Instant::now(),
        });
        std::mem::replace(&mut self.vms, VmCache::new(self.env.idle_vms))
    }

    /// Takes the idle VMs back and clears the current run.
    fn end(&mut self, task_type: String, vms: VmCache<TaskVm>) {
        self.vms = vms;
        let run = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(run) = run {
            self.env
                .metrics
                .run_duration(&task_type, run.started.elapsed());
        }
    }
}

impl Actor for TaskRunner {
    type Context = Context<Self>;
}

/// A runner crashed (its host code panicked) during a run; it stops, and whoever
/// handed it the run replaces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerCrash(pub String);

impl std::fmt::Display for RunnerCrash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the runner crashed: {}", self.0)
    }
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
                let reason = crate::restart::take_last_panic()
                    .unwrap_or_else(|| crate::restart::payload_text(payload.as_ref()));
                tracing::error!(run = %name, %reason, "the runner crashed; it will be replaced");
                act.vms.clear();
                *act.current.lock().unwrap_or_else(|p| p.into_inner()) = None;
                ctx.stop();
                Err(RunnerCrash(reason))
            }
        },
    )))
}

/// Runs a claimed managed task in its own transaction and resolves it.
#[derive(Message)]
#[rtype(result = "Result<ManagedOutcome, RunnerCrash>")]
pub struct RunManaged(pub ClaimedTask);

/// How a managed run ended, for the queue's bookkeeping and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManagedOutcome {
    /// Resolved and committed (or the failure recorded).
    Resolved(ResolveOutcome),
    /// The lease was lost (cancelled, or claimed elsewhere): nothing committed.
    LeaseLost,
    /// The store failed; the lease will expire and the task run again.
    StoreError(String),
}

/// Runs an ephemeral task: its SQL goes to a transaction of its own, committed when it
/// completes. Answers with the result (JSON text) or the failure.
#[derive(Message)]
#[rtype(result = "Result<Result<String, String>, RunnerCrash>")]
pub struct RunEphemeral {
    /// Task type.
    pub task_type: String,
    /// Data, JSON text.
    pub data: String,
    /// Timeout from the call; the task type's applies when `None`.
    pub timeout: Option<Duration>,
    /// Throwing it kills the run (the caller went away).
    pub kill: KillSwitch,
}

/// Runs a scheduled task; answers with how it ended, for the scheduled state.
#[derive(Message)]
#[rtype(result = "Result<ScheduledEnd, RunnerCrash>")]
pub struct RunScheduled {
    /// Full tag.
    pub tag: String,
    /// Kill switch (shutdown, or the claim was lost).
    pub kill: KillSwitch,
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
}

impl<'a> From<&'a CatalogType> for CodeRef<'a> {
    fn from(ct: &'a CatalogType) -> CodeRef<'a> {
        CodeRef {
            name: ct.def.task_type.as_str(),
            code: &ct.def.code,
            module_dir: &ct.module_dir,
            memory_limit_mb: ct.def.memory_limit_mb,
        }
    }
}

/// A VM for `code`: its idle one, or a new instance (idle VMs of other types are
/// dropped when the pool needs room for it).
async fn vm_for(
    env: &RunnerEnv,
    code: CodeRef<'_>,
    vms: &mut VmCache<TaskVm>,
) -> Result<TaskVm, String> {
    if let Some(vm) = vms.take_reusable(code.name) {
        env.metrics.vm_reused();
        return Ok(vm);
    }
    let limits = VmLimits {
        memory_bytes: (code.memory_limit_mb as usize) << 20,
        ..env.vm_limits
    };
    let code = env
        .code
        .get(code.name, code.code, code.module_dir)
        .map_err(|e| e.to_string())?;
    let vm = vms
        .instantiate(env.code.engine(), code, limits, env.clock.clone())
        .await
        .map_err(|e| e.to_string())?;
    env.metrics.vm_instantiated();
    Ok(vm)
}

async fn run_managed(
    env: RunnerEnv,
    claimed: ClaimedTask,
    mut vms: VmCache<TaskVm>,
    kill: KillSwitch,
) -> (VmCache<TaskVm>, ManagedOutcome) {
    let task = claimed.task.clone();
    let (id, token) = (task.id, claimed.token);
    let policy = env.catalog.retry_policy(&task.task_type);
    let fail = |error: String| {
        let (store, metrics) = (env.store.clone(), env.metrics.clone());
        let task_type = task.task_type.clone();
        async move {
            let outcome = match store
                .record_failure(&RunFailure::new(id, token, error), policy)
                .await
            {
                Ok(o) => ManagedOutcome::Resolved(o),
                Err(StoreError::LeaseLost { .. }) => ManagedOutcome::LeaseLost,
                Err(e) => ManagedOutcome::StoreError(e.to_string()),
            };
            metrics.run_finished(task_type.as_str(), outcome_label(&outcome, false));
            outcome
        }
    };
    let Some(ct) = env.catalog.task_type(task.task_type.as_str()) else {
        let error = format!(
            "task type {} is not declared by any module loaded on this node",
            task.task_type
        );
        return (vms, fail(error).await);
    };
    let mut vm = match vm_for(&env, ct.into(), &mut vms).await {
        Ok(vm) => vm,
        Err(error) => return (vms, fail(error).await),
    };
    let run = match env.store.begin_run(claimed).await {
        Ok(run) => run,
        Err(e) => {
            env.metrics.run_finished(task.task_type.as_str(), "lost");
            vms.check_in(vm);
            return (vms, ManagedOutcome::StoreError(e.to_string()));
        }
    };
    let input = TaskInput {
        id,
        task_type: task.task_type.to_string(),
        data: task.data.to_string(),
        aux_data: task.aux_data.as_ref().map(|v| v.to_string()),
        failures: task.failures.max(0) as u32,
        iteration: task.iterations.max(0) as u32,
    };
    let timeout = timeout_of(task.timeout_ms, ct.def.timeout_ms);
    let report = vm.run(input, TaskDb::Managed(run), timeout, kill).await;
    vms.check_in(vm);
    let TaskDb::Managed(run) = report.db else {
        env.metrics.run_finished(task.task_type.as_str(), "lost");
        return (
            vms,
            ManagedOutcome::StoreError("the run's transaction was lost".into()),
        );
    };
    let resolution = report.end.into_resolution();
    let restarted = matches!(resolution, Resolution::Restart { .. });
    let outcome = match run.resolve(resolution, policy).await {
        Ok(o) => ManagedOutcome::Resolved(o),
        Err(StoreError::LeaseLost { .. }) => ManagedOutcome::LeaseLost,
        Err(e) => ManagedOutcome::StoreError(e.to_string()),
    };
    env.metrics
        .run_finished(task.task_type.as_str(), outcome_label(&outcome, restarted));
    (vms, outcome)
}

impl Handler<RunManaged> for TaskRunner {
    type Result = AtomicResponse<Self, Result<ManagedOutcome, RunnerCrash>>;

    fn handle(&mut self, msg: RunManaged, _: &mut Context<Self>) -> Self::Result {
        let task_type = msg.0.task.task_type.to_string();
        let kill = KillSwitch::new();
        let vms = self.begin(Some((msg.0.task.id, msg.0.token)), &task_type, &kill);
        let env = self.env.clone();
        guarded(self, task_type, run_managed(env, msg.0, vms, kill))
    }
}

async fn run_ephemeral(
    env: RunnerEnv,
    msg: RunEphemeral,
    mut vms: VmCache<TaskVm>,
) -> (VmCache<TaskVm>, Result<String, String>) {
    let Some(ct) = env.catalog.task_type(&msg.task_type) else {
        return (vms, Err(format!("unknown task type {}", msg.task_type)));
    };
    let mut vm = match vm_for(&env, ct.into(), &mut vms).await {
        Ok(vm) => vm,
        Err(e) => return (vms, Err(e)),
    };
    let input = TaskInput {
        id: TaskId(0),
        task_type: msg.task_type.clone(),
        data: msg.data,
        aux_data: None,
        failures: 0,
        iteration: 0,
    };
    let timeout = msg.timeout.or_else(|| timeout_of(0, ct.def.timeout_ms));
    let report = vm
        .run(
            input,
            TaskDb::Deferred(env.store.clone()),
            timeout,
            msg.kill,
        )
        .await;
    vms.check_in(vm);
    let tx = match report.db {
        TaskDb::Ephemeral(tx) => Some(tx),
        _ => None,
    };
    let result = finish_transaction(tx, report.end).await;
    (vms, result)
}

/// Commits an ephemeral or scheduled run's transaction when it completed, rolls it
/// back otherwise, and says how the run ended.
async fn finish_transaction(tx: Option<Transaction>, end: RunEnd) -> Result<String, String> {
    let outcome = match end {
        RunEnd::Resolved(Resolution::Completion { result }) => Ok(result),
        RunEnd::Resolved(Resolution::PermanentFailure { error, .. })
        | RunEnd::Resolved(Resolution::Cancellation { error })
        | RunEnd::Resolved(Resolution::TemporaryFailure { error, .. })
        | RunEnd::Failed { error, .. } => Err(error),
        RunEnd::Resolved(Resolution::Restart { .. }) => {
            Err("restart is not supported for this kind of task".to_string())
        }
    };
    match (tx, &outcome) {
        (Some(tx), Ok(_)) => tx.commit().await.map_err(|e| e.to_string())?,
        (Some(tx), Err(_)) => {
            let _ = tx.rollback().await;
        }
        (None, _) => {}
    }
    outcome
}

impl Handler<RunEphemeral> for TaskRunner {
    type Result = AtomicResponse<Self, Result<Result<String, String>, RunnerCrash>>;

    fn handle(&mut self, msg: RunEphemeral, _: &mut Context<Self>) -> Self::Result {
        let task_type = msg.task_type.clone();
        let vms = self.begin(None, &task_type, &msg.kill);
        let env = self.env.clone();
        guarded(self, task_type, run_ephemeral(env, msg, vms))
    }
}

async fn run_scheduled(
    env: RunnerEnv,
    msg: RunScheduled,
    mut vms: VmCache<TaskVm>,
) -> (VmCache<TaskVm>, ScheduledEnd) {
    let Some(s) = env.catalog.scheduled(&msg.tag) else {
        return (
            vms,
            ScheduledEnd::failed(format!("unknown scheduled task {}", msg.tag)),
        );
    };
    let code = CodeRef {
        name: &s.def.tag,
        code: &s.def.code,
        module_dir: &s.module_dir,
        memory_limit_mb: s.def.memory_limit_mb,
    };
    let mut vm = match vm_for(&env, code, &mut vms).await {
        Ok(vm) => vm,
        Err(e) => return (vms, ScheduledEnd::failed(e)),
    };
    let input = TaskInput {
        id: TaskId(0),
        task_type: msg.tag.clone(),
        data: serde_json::json!({ "args": s.def.args }).to_string(),
        aux_data: None,
        failures: 0,
        iteration: 0,
    };
    let timeout = timeout_of(0, s.def.timeout_ms);
    let report = vm
        .run(
            input,
            TaskDb::Deferred(env.store.clone()),
            timeout,
            msg.kill,
        )
        .await;
    vms.check_in(vm);
    let mut output = String::new();
    for line in &report.logs {
        output.push_str(&line.message);
        output.push('\n');
    }
    output.push_str(&report.stdout);
    output.push_str(&report.stderr);
    let timed_out = matches!(
        report.end,
        RunEnd::Failed {
            cause: FailureCause::TimedOut,
            ..
        }
    );
    let tx = match report.db {
        TaskDb::Ephemeral(tx) => Some(tx),
        _ => None,
    };
    let outcome = match finish_transaction(tx, report.end).await {
        Ok(result) => {
            output.push_str(&result);
            ScheduledOutcome::Completed
        }
        Err(error) => {
            output.push_str(&error);
            if timed_out {
                ScheduledOutcome::TimedOut
            } else {
                ScheduledOutcome::Failed
            }
        }
    };
    (vms, ScheduledEnd { outcome, output })
}

impl Handler<RunScheduled> for TaskRunner {
    type Result = AtomicResponse<Self, Result<ScheduledEnd, RunnerCrash>>;

    fn handle(&mut self, msg: RunScheduled, _: &mut Context<Self>) -> Self::Result {
        let tag = msg.tag.clone();
        let vms = self.begin(None, &tag, &msg.kill);
        let env = self.env.clone();
        guarded(self, tag, run_scheduled(env, msg, vms))
    }
}
