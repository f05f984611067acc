//! Starting a node: [`Warren::builder`] gathers the settings ([`WarrenBuilder`]), and
//! [`WarrenBuilder::start`] opens the store, loads the modules, sizes the engine and
//! the runners, registers the node and starts its [`Supervisor`].

use crate::code::CodeCache;
use crate::error::Error;
use crate::idle_spin::IdleSpin;
use crate::metrics::Metrics;
use crate::pool::{Group, RunnerPool};
use crate::restart::RestartPolicy;
use crate::runner::RunnerEnv;
use crate::runner_threads::RunnerThreads;
use crate::supervisor::{Children, GiveUp, Supervisor};
use actix::System;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use warren::catalog::Catalog;
use warren::clock::{SharedClock, SystemClock};
use warren::moduledef::{load_modules_dir, DefinitionError, LoadOptions, ModuleDefinition};
use warren::store::{
    GroupBounds, Store, StoreConfig, TypeRegistration, DEFAULT_DATABASE_URL, DEFAULT_RETENTION_MS,
};
use warren::wasm::{idle_vms_per_runner, EngineConfig, VmLimits, WasmEngine};

/// Scheduled tasks that may run at once on a node (as the reference allows).
const SCHEDULED_RUNNERS: usize = 4;

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
    queue_poll: Duration,
    maintenance_offset: Option<u32>,
    runner_threads: Option<NonZeroUsize>,
    idle_spin: Option<Duration>,
    run_groups: GroupBounds,
    on_give_up: GiveUp,
    metrics: Arc<Metrics>,
    #[cfg(feature = "test-hooks")]
    run_starts: Option<crate::test_hooks::RunStarts>,
}

impl std::fmt::Debug for WarrenBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarrenBuilder")
            .field("database", &warren::store::redact_url(&self.database))
            .field("modules_dir", &self.modules_dir)
            .field("node", &self.node)
            .field("lease_ms", &self.lease_ms)
            .field("retention_ms", &self.retention_ms)
            .field("restart", &self.restart)
            .field("maintenance_offset", &self.maintenance_offset)
            .field("runner_threads", &self.runner_threads)
            .field("idle_spin", &self.idle_spin)
            .field("run_groups", &self.run_groups)
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
            queue_poll: crate::queue::SAFETY_POLL,
            maintenance_offset: None,
            runner_threads: None,
            idle_spin: None,
            run_groups: GroupBounds::default(),
            on_give_up: Arc::new(|_| System::current().stop_with_code(1)),
            metrics: Arc::new(Metrics::new()),
            #[cfg(feature = "test-hooks")]
            run_starts: None,
        }
    }
}

/// `HOSTNAME-PID`: unique per process on a machine.
fn default_node_name() -> String {
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
    /// [`crate::RunDueScheduled`] (for tests and applications driving an injected
    /// clock).
    pub fn scheduler_poll(mut self, every: Option<Duration>) -> Self {
        self.scheduler_poll = every;
        self
    }
    /// How often the queue looks for due work without being woken (default 1 s, at
    /// least 10 ms): the safety net for a lost wake-up. New work wakes the queue at once
    /// from any process (PostgreSQL `NOTIFY`, the SQLite file's wake-up socket), and it
    /// wakes itself at each next attempt, so a longer poll only delays work whose
    /// wake-up was lost. Tests set it long to show that a wake-up started a task.
    pub fn queue_poll(mut self, every: Duration) -> Self {
        self.queue_poll = every;
        self
    }

    /// Reports each managed run's start to `probe` (tests and benchmarks only).
    #[cfg(feature = "test-hooks")]
    pub fn probe_run_starts(mut self, probe: crate::test_hooks::RunStarts) -> Self {
        self.run_starts = Some(probe);
        self
    }
    /// The maintenance zone's offset from UTC in minutes (0–1439; the `warren`
    /// command reads it from `--maintenance-offset` / `WARREN_MAINTENANCE_OFFSET`).
    /// `None` or a value out of range (the default): the offset stored in the
    /// database, chosen at random once per database. The node computes it once, at
    /// start, and hands it to everything that needs it (its scheduler, its dashboard).
    pub fn maintenance_offset(mut self, minutes: Option<u32>) -> Self {
        self.maintenance_offset = minutes.filter(|&m| m < 1440);
        self
    }

    /// How many threads the node's runners share (default: one per core, and never
    /// more than there are runners). Guests yield to their thread at every epoch tick
    /// and while they wait for the database, so a few threads serve many runners; more
    /// threads than cores only add the kernel's work of switching between them.
    pub fn runner_threads(mut self, threads: NonZeroUsize) -> Self {
        self.runner_threads = Some(threads);
        self
    }

    /// How long a thread of the node that is about to sleep keeps polling for work
    /// instead (default 250 µs when the process may use two or more cores, zero
    /// with one; zero turns it off): a runners' thread after its last run ended, and
    /// the queue's thread while an ephemeral run it dispatched is out. A thread that
    /// still polls needs no interrupt from another core to wake, which on virtual
    /// machines took most of an ephemeral call's time. It costs that core's time, at
    /// most this long per spin; it delays no other task of the thread.
    pub fn idle_spin(mut self, budget: Duration) -> Self {
        self.idle_spin = Some(budget);
        self
    }

    /// How a runner groups its consecutive runs that write on PostgreSQL (default:
    /// up to 8 runs, joined within 20 ms of the group's first completion;
    /// [`GroupBounds::OFF`] turns it off). A run group shares one transaction and one
    /// commit, each run in a savepoint of its own, and tells each run its outcome
    /// only once that commit landed; a run that fails is undone alone. See
    /// docs/state-machine.md.
    pub fn run_groups(mut self, bounds: GroupBounds) -> Self {
        self.run_groups = bounds;
        self
    }

    /// The metrics registry the node counts into (a fresh one by default); the
    /// dashboard gets it through [`crate::GetNodeContext`].
    pub fn metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Opens the database (migrating it), loads the modules — a module with errors is
    /// reported and skipped —, and starts the node. Call inside a running actix
    /// `System`. Returns the Supervisor and the modules' errors.
    pub async fn start(
        self,
    ) -> Result<(actix::Addr<Supervisor>, Vec<Vec<DefinitionError>>), Error> {
        let store = Store::open_with(StoreConfig::new(&self.database), self.clock.clone()).await?;
        let (modules, broken) = match &self.modules_dir {
            Some(dir) => {
                if !dir.is_dir() {
                    return Err(Error::ModulesNotAFolder(dir.clone()));
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
        let maintenance_offset = match self.maintenance_offset {
            Some(minutes) => minutes,
            None => store.maintenance_offset(None).await?,
        };
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
        let threads = RunnerThreads::new(
            match self.runner_threads {
                Some(threads) => threads.get().min(runners.max(1)),
                None => crate::runner_threads::default_count(runners),
            },
            Some(store.clone()),
        );
        tracing::debug!(
            runners,
            runner_threads = threads.count(),
            vm_slots = engine.vm_slots(),
            idle_vms,
            "VM pool and runner threads sized"
        );
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let idle_spin = IdleSpin::new(self.idle_spin, cores);
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
            in_flight: Default::default(),
            idle_spin,
            thread_connections: None,
            open_group: Default::default(),
            group_bounds: self.run_groups,
            run_times: Default::default(),
            #[cfg(feature = "test-hooks")]
            run_starts: self.run_starts.clone(),
        };
        // Tasks scheduled without a cluster, from anywhere, go to their type's cluster.
        // With its flow rules (concurrency, rate limit), which every node's claim then
        // enforces.
        let clusters_of_types: Vec<TypeRegistration> = catalog
            .task_types()
            .map(|t| TypeRegistration {
                task_type: t.def.task_type.to_string(),
                cluster: t.def.cluster.clone(),
                concurrency: t.def.concurrency.clone(),
                rate_limit: t.def.rate_limit.clone(),
            })
            .collect();
        store.register_task_types(&clusters_of_types).await?;
        let runner_threads = threads.count();
        let pool = RunnerPool::new(env, threads);
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
            "runner_threads": runner_threads,
            "idle_spin_us": idle_spin.budget().as_micros() as u64,
            "run_group_max_runs": self.run_groups.max_runs,
            "modules": modules.iter().map(|m| m.name.clone()).collect::<Vec<_>>(),
        });
        store.register_node(&self.node, &info).await?;
        tracing::info!(node = %self.node, modules = modules.len(), skipped = broken.len(), "node started");
        let children = Children {
            store,
            catalog,
            node: self.node,
            lease_ms: self.lease_ms,
            maintenance_offset,
            scheduler_poll: self.scheduler_poll,
            queue_poll: self.queue_poll,
            pool,
        };
        let supervisor = Supervisor::start_node(
            children,
            info,
            self.retention_ms,
            self.restart,
            self.on_give_up,
            self.metrics,
        );
        Ok((supervisor, broken))
    }
}

/// Splits loaded modules into the good ones and the errors of the others.
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
