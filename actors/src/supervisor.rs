//! The Supervisor: starts a node (store, modules, engine, runners, queue, scheduler),
//! restarts a crashed child within its restart window, answers the public messages,
//! keeps the node registered, prunes old tasks, and shuts the node down gracefully.

use crate::code::CodeCache;
use crate::messages::*;
use crate::metrics::Metrics;
use crate::pool::{Group, RunnerPool};
use crate::queue::{Drain, KillAll, QueueActor};
use crate::restart::{
    install_panic_hook, Child, ChildStopped, Crashed, RestartPolicy, RestartWindow,
};
use crate::runner::RunnerEnv;
use crate::scheduler::{RunDue, SchedulerActor, StopScheduling, TickNow};
use actix::prelude::*;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use warren::catalog::Catalog;
use warren::clock::{SharedClock, SystemClock};
use warren::moduledef::{load_modules_dir, DefinitionError, LoadOptions, ModuleDefinition};
use warren::store::{Store, StoreConfig, StoreError, DEFAULT_DATABASE_URL, DEFAULT_RETENTION_MS};
use warren::task::TaskState;
use warren::wasm::{idle_vms_per_runner, EngineConfig, VmLimits, WasmEngine};

/// Scheduled tasks that may run at once on a node (as the reference allows).
pub const SCHEDULED_RUNNERS: usize = 4;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened or migrated.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The WebAssembly engine could not be set up.
    #[error("{0}")]
    Wasm(#[from] warren::wasm::WasmError),
    /// The modules folder could not be read.
    #[error("modules folder {0}: {1}")]
    Modules(String, String),
}

/// Settings of a node; build one with [`Warren::builder`].
#[derive(Clone)]
pub struct WarrenBuilder {
    database: String,
    modules_dir: Option<PathBuf>,
    node: String,
    lease_ms: i64,
    retention_ms: i64,
    engine: EngineConfig,
    vm_limits: VmLimits,
    clock: SharedClock,
    restart: RestartPolicy,
    scheduler_poll: Option<Duration>,
    on_give_up: GiveUp,
    metrics: Arc<Metrics>,
}

/// What the Supervisor does when crashes exceed its restart window, given the reason.
pub type GiveUp = Arc<dyn Fn(&str) + Send + Sync>;

impl std::fmt::Debug for WarrenBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarrenBuilder")
            .field("database", &warren::store::redact_url(&self.database))
            .field("modules_dir", &self.modules_dir)
            .field("node", &self.node)
            .field("lease_ms", &self.lease_ms)
            .field("retention_ms", &self.retention_ms)
            .field("restart", &self.restart)
            .finish_non_exhaustive()
    }
}

/// Entry point of the actor system.
pub struct Warren;

impl Warren {
    /// A builder with the defaults: the SQLite file `warren.db`, no modules, a node
    /// named after the host and process, 30 s leases, 3 days of retention.
    pub fn builder() -> WarrenBuilder {
        WarrenBuilder {
            database: DEFAULT_DATABASE_URL.to_string(),
            modules_dir: None,
            node: default_node_name(),
            lease_ms: 30_000,
            retention_ms: DEFAULT_RETENTION_MS,
            engine: EngineConfig::default(),
            vm_limits: VmLimits::default(),
            clock: Arc::new(SystemClock),
            restart: RestartPolicy::default(),
            scheduler_poll: Some(Duration::from_secs(1)),
            on_give_up: Arc::new(|_| System::current().stop_with_code(1)),
            metrics: Arc::new(Metrics::new()),
        }
    }
}

/// `HOSTNAME-PID`: unique per process on a machine.
pub fn default_node_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    format!("{host}-{}", std::process::id())
}

impl WarrenBuilder {
    /// The database URL (`sqlite://PATH` or `postgres://…`).
    pub fn database(mut self, url: impl Into<String>) -> Self {
        self.database = url.into();
        self
    }
    /// The folder holding module folders.
    pub fn modules_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.modules_dir = Some(dir.into());
        self
    }
    /// This node's name (unique among the nodes sharing the database).
    pub fn node_name(mut self, name: impl Into<String>) -> Self {
        self.node = name.into();
        self
    }
    /// How long a claimed task's lease lasts without renewal (ms).
    pub fn lease_ms(mut self, ms: i64) -> Self {
        self.lease_ms = ms.max(1_000);
        self
    }
    /// How long finished tasks are kept (ms).
    pub fn retention_ms(mut self, ms: i64) -> Self {
        self.retention_ms = ms;
        self
    }
    /// WebAssembly engine settings.
    pub fn engine(mut self, config: EngineConfig) -> Self {
        self.engine = config;
        self
    }
    /// The clock (tests inject one).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }
    /// VM recycling bounds.
    pub fn vm_limits(mut self, limits: VmLimits) -> Self {
        self.vm_limits = limits;
        self
    }
    /// How many crashes (of the queue, the scheduler or a runner) the Supervisor
    /// restarts within `within` before it gives up; default 10 in 60 s.
    pub fn restart_policy(mut self, max_restarts: usize, within: Duration) -> Self {
        self.restart = RestartPolicy {
            max_restarts,
            within,
        };
        self
    }
    /// What to do on giving up (the reason is logged too); default: stop the actix
    /// system with exit code 1.
    pub fn on_give_up(mut self, give_up: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.on_give_up = Arc::new(give_up);
        self
    }
    /// How often the scheduler looks at the shared schedule; `None`: only when sent
    /// [`RunDueScheduled`] (for tests and applications driving an injected clock).
    pub fn scheduler_poll(mut self, every: Option<Duration>) -> Self {
        self.scheduler_poll = every;
        self
    }

    /// The metrics registry the node counts into (a fresh one by default); the
    /// dashboard gets it through [`GetNodeContext`].
    pub fn metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Opens the database (migrating it), loads the modules — a module with errors is
    /// reported and skipped —, and starts the node. Call inside a running actix
    /// `System`. Returns the Supervisor and the modules' errors.
    pub async fn start(self) -> Result<(Addr<Supervisor>, Vec<Vec<DefinitionError>>), StartError> {
        let store = Store::open_with(StoreConfig::new(&self.database), self.clock.clone()).await?;
        let (modules, broken) = match &self.modules_dir {
            Some(dir) => {
                if !dir.is_dir() {
                    return Err(StartError::Modules(
                        dir.display().to_string(),
                        "not a folder".into(),
                    ));
                }
                split(load_modules_dir(dir, &LoadOptions::from_process_env()))
            }
            None => (Vec::new(), Vec::new()),
        };
        for errors in &broken {
            for e in errors {
                tracing::error!("{e}");
            }
        }
        let catalog = Arc::new(Catalog::new(&modules));
        let offset = store
            .maintenance_offset(std::env::var("WARREN_MAINTENANCE_OFFSET").ok().as_deref())
            .await?;
        // Every runner (of the clusters, and of scheduled tasks) keeps its idle VMs
        // within its share of the engine's pool, so the VMs of all of them always fit.
        let scheduled_runners = match catalog.scheduled_tasks().next() {
            Some(_) => SCHEDULED_RUNNERS,
            None => 0,
        };
        let runners = catalog
            .clusters()
            .values()
            .map(|&workers| workers as usize)
            .sum::<usize>()
            + scheduled_runners;
        let engine = Arc::new(WasmEngine::new(
            self.engine.clone().sized_for_runners(runners),
        )?);
        let idle_vms = idle_vms_per_runner(engine.vm_slots(), runners);
        tracing::debug!(
            runners,
            vm_slots = engine.vm_slots(),
            idle_vms,
            "VM pool sized"
        );
        let code = CodeCache::new(engine);
        code.warm_up(&catalog);
        let env = RunnerEnv {
            store: store.clone(),
            code,
            catalog: catalog.clone(),
            clock: self.clock.clone(),
            vm_limits: self.vm_limits,
            metrics: self.metrics.clone(),
            idle_vms,
        };
        // Tasks scheduled without a cluster, from anywhere, go to their type's cluster.
        let clusters_of_types: Vec<(String, String)> = catalog
            .task_types()
            .map(|t| (t.def.task_type.to_string(), t.def.cluster.clone()))
            .collect();
        store.register_task_types(&clusters_of_types).await?;
        install_panic_hook();
        let pool = RunnerPool::new(env);
        for (cluster, workers) in catalog.clusters() {
            pool.add(Group::Cluster(cluster.clone()), *workers as usize);
        }
        if scheduled_runners > 0 {
            pool.add(Group::Scheduled, scheduled_runners);
        }
        let info = serde_json::json!({
            "pid": std::process::id(),
            "version": env!("CARGO_PKG_VERSION"),
            "clusters": catalog.clusters(),
            "modules": modules.iter().map(|m| m.name.clone()).collect::<Vec<_>>(),
        });
        store.register_node(&self.node, &info).await?;
        tracing::info!(node = %self.node, modules = modules.len(), skipped = broken.len(), "node started");
        let children = Children {
            store: store.clone(),
            catalog,
            node: self.node.clone(),
            lease_ms: self.lease_ms,
            maintenance_offset: offset,
            scheduler_poll: self.scheduler_poll,
            pool,
        };
        let supervisor = Supervisor::create(move |ctx| {
            let me = ctx.address();
            Supervisor {
                queue: children.start_queue(me.clone()),
                scheduler: children.start_scheduler(me),
                children,
                store,
                node: self.node,
                info,
                retention_ms: self.retention_ms,
                window: RestartWindow::new(self.restart),
                on_give_up: self.on_give_up,
                stopping: false,
                metrics: self.metrics,
            }
        });
        Ok((supervisor, broken))
    }
}

fn split(
    loaded: Vec<Result<ModuleDefinition, Vec<DefinitionError>>>,
) -> (Vec<ModuleDefinition>, Vec<Vec<DefinitionError>>) {
    let mut ok = Vec::new();
    let mut broken = Vec::new();
    for m in loaded {
        match m {
            Ok(m) => ok.push(m),
            Err(e) => broken.push(e),
        }
    }
    (ok, broken)
}

/// What the Supervisor needs to (re)start its children.
struct Children {
    store: Store,
    catalog: Arc<Catalog>,
    node: String,
    lease_ms: i64,
    maintenance_offset: u32,
    scheduler_poll: Option<Duration>,
    pool: RunnerPool,
}

impl Children {
    fn start_queue(&self, supervisor: Addr<Supervisor>) -> Addr<QueueActor> {
        QueueActor::new(
            self.store.clone(),
            self.catalog.clone(),
            self.node.clone(),
            self.lease_ms,
            self.pool.clone(),
            supervisor,
        )
        .start()
    }

    fn start_scheduler(&self, supervisor: Addr<Supervisor>) -> Addr<SchedulerActor> {
        SchedulerActor::new(
            self.store.clone(),
            self.catalog.clone(),
            self.node.clone(),
            self.maintenance_offset,
            self.pool.clone(),
            supervisor,
        )
        .with_poll(self.scheduler_poll)
        .start()
    }
}

/// The node's root actor.
pub struct Supervisor {
    store: Store,
    node: String,
    info: serde_json::Value,
    retention_ms: i64,
    children: Children,
    queue: Addr<QueueActor>,
    scheduler: Addr<SchedulerActor>,
    window: RestartWindow,
    on_give_up: GiveUp,
    stopping: bool,
    metrics: Arc<Metrics>,
}

impl Supervisor {
    /// The store, for direct queries.
    pub fn store(&self) -> &Store {
        &self.store
    }

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
            Child::Queue => self.queue = self.children.start_queue(me),
            Child::Scheduler => self.scheduler = self.children.start_scheduler(me),
        }
    }
}

impl Handler<Crashed> for Supervisor {
    type Result = ();
    fn handle(&mut self, msg: Crashed, ctx: &mut Context<Self>) {
        if !self.stopping {
            self.crashed(&msg.what, &msg.reason, ctx);
        }
    }
}

impl Handler<InjectFault> for Supervisor {
    type Result = ();
    fn handle(&mut self, msg: InjectFault, _: &mut Context<Self>) {
        match msg.0 {
            Child::Queue => self.queue.do_send(crate::queue::PanicNow),
            Child::Scheduler => self.scheduler.do_send(crate::scheduler::PanicNow),
        }
    }
}

impl Handler<RunDueScheduled> for Supervisor {
    type Result = ResponseFuture<Vec<String>>;
    fn handle(&mut self, _: RunDueScheduled, _: &mut Context<Self>) -> Self::Result {
        let scheduler = self.scheduler.clone();
        Box::pin(async move { scheduler.send(RunDue).await.unwrap_or_default() })
    }
}

impl Handler<Kill> for Supervisor {
    type Result = ResponseFuture<bool>;
    fn handle(&mut self, msg: Kill, _: &mut Context<Self>) -> Self::Result {
        let queue = self.queue.clone();
        Box::pin(async move {
            queue
                .send(crate::queue::KillRun(msg.0))
                .await
                .unwrap_or(false)
        })
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(Duration::from_secs(5), |act, ctx| {
            let (store, node, info) = (act.store.clone(), act.node.clone(), act.info.clone());
            let queue = act.queue.clone();
            ctx.spawn(
                async move {
                    match store.heartbeat(&node).await {
                        Ok(true) => {}
                        Ok(false) => {
                            let _ = store.register_node(&node, &info).await;
                        }
                        Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                    }
                    // The runners, for the dashboards of the other nodes.
                    if let Ok(state) = queue.send(QueueStatus).await {
                        let runners = RunnerStatus::publish(&state.runners, store.now());
                        let _ = store.set_node_runners(&node, &runners).await;
                    }
                    // Nodes silent for a minute are gone.
                    let _ = store.prune_nodes(60_000).await;
                }
                .into_actor(act),
            );
        });
        ctx.run_interval(Duration::from_secs(600), |act, ctx| {
            let (store, retention) = (act.store.clone(), act.retention_ms);
            ctx.spawn(
                async move {
                    match store.prune_finished(retention).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(pruned = n, "pruned finished tasks"),
                        Err(e) => tracing::warn!(error = %e, "pruning failed"),
                    }
                }
                .into_actor(act),
            );
        });
    }
}

impl Handler<ScheduleTask> for Supervisor {
    type Result = ResponseFuture<Result<warren::task::TaskId, StoreError>>;
    fn handle(&mut self, msg: ScheduleTask, _: &mut Context<Self>) -> Self::Result {
        let (store, metrics) = (self.store.clone(), self.metrics.clone());
        Box::pin(async move {
            let task_type = msg.0.task_type.to_string();
            let id = store.schedule(msg.0).await?;
            metrics.task_scheduled(&task_type);
            Ok(id)
        })
    }
}

impl Handler<RunEphemeralTask> for Supervisor {
    type Result = MessageResult<RunEphemeralTask>;
    fn handle(&mut self, msg: RunEphemeralTask, _: &mut Context<Self>) -> Self::Result {
        let (reply, result) = tokio::sync::oneshot::channel();
        let kill = warren::wasm::KillSwitch::new();
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
                        let _ = request.reply.send(Err(
                            "the task did not run: the transaction that scheduled it did not commit"
                                .into(),
                        ));
                    }
                });
            }
        }
        MessageResult(EphemeralTask {
            result,
            kill,
            done: false,
        })
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

impl Handler<RetryTask> for Supervisor {
    type Result = ResponseFuture<Result<warren::task::Millis, StoreError>>;
    fn handle(&mut self, msg: RetryTask, _: &mut Context<Self>) -> Self::Result {
        let store = self.store.clone();
        Box::pin(async move { store.retry_now(msg.0).await })
    }
}

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

impl Handler<Status> for Supervisor {
    type Result = ResponseFuture<Result<NodeStatus, StoreError>>;
    fn handle(&mut self, _: Status, _: &mut Context<Self>) -> Self::Result {
        let (store, queue, node) = (self.store.clone(), self.queue.clone(), self.node.clone());
        Box::pin(async move {
            let queue = queue
                .send(QueueStatus)
                .await
                .map_err(|e| StoreError::Invalid {
                    field: "queue",
                    message: e.to_string(),
                })?;
            Ok(NodeStatus {
                node,
                counts: store.queue_counts().await?,
                queue,
                scheduled: store.list_scheduled().await?,
                nodes: store.list_nodes().await?,
            })
        })
    }
}

impl Handler<QueueStatus> for Supervisor {
    type Result = ResponseFuture<QueueState>;
    /// This node's runners, as its queue sees them now.
    fn handle(&mut self, _: QueueStatus, _: &mut Context<Self>) -> Self::Result {
        let queue = self.queue.clone();
        Box::pin(async move {
            queue.send(QueueStatus).await.unwrap_or(QueueState {
                runners: Vec::new(),
                completed: 0,
                draining: true,
            })
        })
    }
}

impl Handler<GetNodeContext> for Supervisor {
    type Result = MessageResult<GetNodeContext>;
    fn handle(&mut self, _: GetNodeContext, _: &mut Context<Self>) -> Self::Result {
        MessageResult(NodeContext {
            node: self.node.clone(),
            store: self.store.clone(),
            metrics: self.metrics.clone(),
        })
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
                if let Err(e) = store.remove_node(&node).await {
                    tracing::warn!(error = %e, "could not unregister the node");
                }
                tracing::info!("stopped");
            }
            .into_actor(self)
            .map(|_, _, ctx| ctx.stop()),
        )
    }
}
