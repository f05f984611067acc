//! The Supervisor: starts a node (store, modules, engine, runners, queue, scheduler),
//! answers the public messages, keeps the node registered, prunes old tasks, and shuts
//! the node down gracefully.

use crate::code::CodeCache;
use crate::messages::*;
use crate::metrics::Metrics;
use crate::queue::{Drain, KillAll, QueueActor, Slot};
use crate::runner::{CurrentRun, RunnerEnv, TaskRunner};
use crate::scheduler::{SchedulerActor, StopScheduling, TickNow};
use actix::prelude::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use warren::catalog::Catalog;
use warren::clock::{SharedClock, SystemClock};
use warren::moduledef::{load_modules_dir, DefinitionError, LoadOptions, ModuleDefinition};
use warren::store::{Store, StoreConfig, StoreError, DEFAULT_DATABASE_URL, DEFAULT_RETENTION_MS};
use warren::task::TaskState;
use warren::wasm::{EngineConfig, VmLimits, WasmEngine};

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
#[derive(Debug, Clone)]
pub struct WarrenBuilder {
    database: String,
    modules_dir: Option<PathBuf>,
    node: String,
    lease_ms: i64,
    retention_ms: i64,
    engine: EngineConfig,
    vm_limits: VmLimits,
    clock: SharedClock,
    metrics: Arc<Metrics>,
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
        let engine = Arc::new(WasmEngine::new(self.engine.clone())?);
        let env = RunnerEnv {
            store: store.clone(),
            code: CodeCache::new(engine),
            catalog: catalog.clone(),
            clock: self.clock.clone(),
            vm_limits: self.vm_limits,
            metrics: self.metrics.clone(),
        };
        let mut clusters = BTreeMap::new();
        for (cluster, workers) in catalog.clusters() {
            let slots = (0..*workers).map(|_| start_runner(&env)).collect();
            clusters.insert(cluster.clone(), slots);
        }
        let queue = QueueActor::new(
            store.clone(),
            catalog.clone(),
            self.node.clone(),
            self.lease_ms,
            clusters,
        )
        .start();
        let scheduled_slots = if catalog.scheduled_tasks().next().is_some() {
            (0..SCHEDULED_RUNNERS).map(|_| start_runner(&env)).collect()
        } else {
            Vec::new()
        };
        let scheduler = SchedulerActor::new(
            store.clone(),
            catalog.clone(),
            self.node.clone(),
            offset,
            scheduled_slots,
        )
        .start();
        let info = serde_json::json!({
            "pid": std::process::id(),
            "version": env!("CARGO_PKG_VERSION"),
            "clusters": catalog.clusters(),
            "modules": modules.iter().map(|m| m.name.clone()).collect::<Vec<_>>(),
        });
        store.register_node(&self.node, &info).await?;
        tracing::info!(node = %self.node, modules = modules.len(), skipped = broken.len(), "node started");
        let supervisor = Supervisor {
            store,
            node: self.node,
            info,
            retention_ms: self.retention_ms,
            queue,
            scheduler,
            metrics: self.metrics,
        }
        .start();
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

/// Starts a runner on an arbiter (a thread) of its own, so guest code never stalls
/// the other actors.
fn start_runner(env: &RunnerEnv) -> Slot {
    let current = CurrentRun::default();
    let arbiter = Arbiter::new();
    let (env, shared) = (env.clone(), current.clone());
    let addr =
        TaskRunner::start_in_arbiter(&arbiter.handle(), move |_| TaskRunner::new(env, shared));
    Slot::new(addr, current)
}

/// The node's root actor.
pub struct Supervisor {
    store: Store,
    node: String,
    info: serde_json::Value,
    retention_ms: i64,
    queue: Addr<QueueActor>,
    scheduler: Addr<SchedulerActor>,
    metrics: Arc<Metrics>,
}

impl Supervisor {
    /// The store, for direct queries.
    pub fn store(&self) -> &Store {
        &self.store
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
        self.queue.do_send(EphemeralRequest {
            task_type: msg.task_type,
            data: msg.data.to_string(),
            timeout: msg.timeout,
            kill: kill.clone(),
            reply,
        });
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
