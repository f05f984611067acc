//! A task VM: a live instance of one task type's component, reused between tasks of
//! that type (its globals persist) until it is recycled or broken.

use super::bindings::{self, warren::task::types};
use super::engine::WasmEngine;
use super::host::{HostState, Interruption, MemoryLimiter, TaskDb};
use super::source_map::SourceMap;
use super::{LogLine, WasmError};
use crate::clock::SharedClock;
use crate::task::{Millis, Resolution, TaskId};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::WasiCtxBuilder;

pub use super::host::KillSwitch;

/// Bytes of guest stdout/stderr a VM keeps; a VM whose pipes fill up is recycled.
const PIPE_CAPACITY: usize = 1 << 20;

/// One task type's compiled component, ready to instantiate.
pub struct TaskCode {
    /// The task type (or scheduled tag) it implements.
    pub task_type: String,
    /// Whether the compiled component came from a cache (memory or disk) rather than
    /// from a compile made for this load.
    pub from_cache: bool,
    /// The source map a bundled task carries (TypeScript, npm packages), which puts
    /// its failure stacks back in the author's files and lines.
    pub source_map: Option<SourceMap>,
    pre: bindings::TaskWorldPre<HostState>,
}

impl std::fmt::Debug for TaskCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskCode")
            .field("task_type", &self.task_type)
            .field("from_cache", &self.from_cache)
            .finish()
    }
}

impl WasmEngine {
    /// Loads task code: a component (`.wasm`), component text (`.wat`), JavaScript or
    /// TypeScript (`.js`, `.mjs`, `.ts`, `.mts`, `.cts`, compiled with the JS toolkit,
    /// its imports resolved inside `module_dir`), or Python (`.py`, compiled with the
    /// Python toolkit).
    /// The code must really be inside `module_dir` (symbolic links resolved). Checks
    /// that it implements the task world, naming what is missing if not.
    pub fn load(
        &self,
        task_type: &str,
        code: &Path,
        module_dir: &Path,
    ) -> Result<Arc<TaskCode>, WasmError> {
        let unreadable = |message: String, source: Option<std::io::Error>| WasmError::Read {
            path: code.display().to_string(),
            message,
            source: source.map(|e| Arc::new(e) as super::WasmCause),
        };
        let real = std::fs::canonicalize(code).map_err(|e| unreadable(e.to_string(), Some(e)))?;
        let real_dir = std::fs::canonicalize(module_dir).map_err(|e| {
            let message = format!("its module folder {}: {e}", module_dir.display());
            unreadable(message, Some(e))
        })?;
        if !real.starts_with(&real_dir) {
            return Err(unreadable(
                format!(
                    "it leads outside its module folder {} (to {})",
                    module_dir.display(),
                    real.display()
                ),
                None,
            ));
        }
        let is_js = super::js::is_task_source(code);
        let bytes = if is_js {
            let js = self.js.as_ref().ok_or_else(|| WasmError::Compile {
                path: code.display().to_string(),
                message: "no JavaScript toolkit found: set WARREN_JS_KIT to the guest/js folder \
                          and run `npm ci` there"
                    .into(),
            })?;
            js.compile(code, module_dir, &self.cache)?
        } else if super::python::is_python_source(code) {
            let python = self.python.as_ref().ok_or_else(|| WasmError::Compile {
                path: code.display().to_string(),
                message: "no cache folder to install the Python toolkit in: set \
                          WARREN_CACHE_DIR to a folder of your own"
                    .into(),
            })?;
            python.compile(code, module_dir, &self.cache)?
        } else {
            std::fs::read(&real).map_err(|e| unreadable(e.to_string(), Some(e)))?
        };
        let (component, from_cache) = self.cache.load_or_compile(&self.engine, &bytes, code)?;
        let source_map = SourceMap::of_component(&bytes);
        let invalid = |message: String, e: wasmtime::Error| WasmError::Invalid {
            path: code.display().to_string(),
            message,
            source: super::wasmtime_cause(e),
        };
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| invalid(format!("{e:#}"), e))?;
        let pre = bindings::TaskWorldPre::new(instance_pre).map_err(|e| {
            invalid(
                format!("it does not implement warren:task/task-world: {e:#}"),
                e,
            )
        })?;
        Ok(Arc::new(TaskCode {
            task_type: task_type.to_string(),
            from_cache,
            source_map,
            pre,
        }))
    }
}

/// Bounds of a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmLimits {
    /// Linear memory cap (bytes); default 256 MiB.
    pub memory_bytes: usize,
    /// Runs before the VM is recycled.
    pub max_runs: u32,
    /// Age after which the VM is recycled (checked between runs).
    pub max_age: Duration,
    /// Longest a run's database transaction may stay open, counted from the run's
    /// first database call (`maxtransaction`); `None` = no limit. A run past it is
    /// stopped like a timeout and its transaction rolled back: an open transaction
    /// holds row locks and, on PostgreSQL, keeps vacuum from cleaning every table.
    pub max_transaction: Option<Duration>,
    /// Fault injection for tests of crash supervision: the host panics when the guest
    /// logs exactly this message, as a bug in host code would. Only with the
    /// `test-hooks` feature, which no release build turns on.
    #[cfg(feature = "test-hooks")]
    pub panic_on_log: Option<&'static str>,
}

/// The default [`VmLimits::max_transaction`]: ten minutes.
pub const DEFAULT_MAX_TRANSACTION: Duration = Duration::from_secs(10 * 60);

impl Default for VmLimits {
    fn default() -> VmLimits {
        VmLimits {
            memory_bytes: 256 << 20,
            max_runs: 10_000,
            max_age: Duration::from_secs(15 * 60),
            max_transaction: Some(DEFAULT_MAX_TRANSACTION),
            #[cfg(feature = "test-hooks")]
            panic_on_log: None,
        }
    }
}

/// What a run is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInput {
    /// Task id (ephemeral and scheduled runs get a synthetic one).
    pub id: TaskId,
    /// Full type name, or a scheduled task's full tag.
    pub task_type: String,
    /// Task data, JSON text.
    pub data: String,
    /// Aux data, JSON text.
    pub aux_data: Option<String>,
    /// Consecutive failures so far.
    pub failures: u32,
    /// Runs so far.
    pub iteration: u32,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// The guest returned its one resolution.
    Resolved(Resolution),
    /// The guest trapped, ran out of memory or time, or was killed. The VM is broken
    /// and must be dropped; the task's database work must be rolled back.
    Failed {
        /// What happened, for the task's last error.
        error: String,
        /// Guest backtrace and output, when there is any.
        stack: Option<String>,
        /// What stopped it.
        cause: FailureCause,
    },
}

/// What made a run fail without a resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureCause {
    /// The guest trapped (a JavaScript exception that escaped, `unreachable`, a bad
    /// memory access …).
    Trapped,
    /// It ran longer than its timeout.
    TimedOut,
    /// It was killed (its caller went away, or an operator cancelled it).
    Killed,
    /// It exceeded its memory limit.
    OutOfMemory,
    /// The VM had been retired and was asked to run anyway (an internal error).
    Retired,
}

impl RunEnd {
    /// The resolution a managed task's run stands for: the guest's own, or, when the
    /// run failed (trap, timeout, kill, memory), a temporary failure carrying the error
    /// and stack, so the retry rule applies.
    pub fn into_resolution(self) -> Resolution {
        match self {
            RunEnd::Resolved(r) => r,
            RunEnd::Failed { error, stack, .. } => Resolution::TemporaryFailure {
                error,
                stack,
                next_retry: None,
            },
        }
    }
}

/// Everything a run produced.
#[derive(Debug)]
pub struct RunReport {
    /// How it ended.
    pub end: RunEnd,
    /// The database side, handed back so the caller resolves or rolls it back.
    pub db: TaskDb,
    /// Lines logged through the host's `log`.
    pub logs: Vec<LogLine>,
    /// What the guest wrote to stdout during the run.
    pub stdout: String,
    /// What the guest wrote to stderr during the run.
    pub stderr: String,
    /// How long the call took.
    pub elapsed: Duration,
}

/// A live instance of a task component.
pub struct TaskVm {
    code: Arc<TaskCode>,
    store: Store<HostState>,
    world: bindings::TaskWorld,
    limits: VmLimits,
    runs: u32,
    born: Instant,
    broken: bool,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
    stdout_seen: usize,
    stderr_seen: usize,
}

impl std::fmt::Debug for TaskVm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskVm")
            .field("task_type", &self.code.task_type)
            .field("runs", &self.runs)
            .field("broken", &self.broken)
            .finish()
    }
}

fn to_millis(v: u64) -> Millis {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The host's resolution for the guest's; a temporary failure's stack is put back in
/// the author's lines when the code carries a source map.
fn from_wit(r: types::Resolution, source_map: Option<&SourceMap>) -> Resolution {
    match r {
        types::Resolution::Completion(result) => Resolution::Completion { result },
        types::Resolution::PermanentFailure((error, result)) => {
            Resolution::PermanentFailure { error, result }
        }
        types::Resolution::Cancellation(error) => Resolution::Cancellation { error },
        types::Resolution::TemporaryFailure(f) => Resolution::TemporaryFailure {
            error: f.error,
            stack: match (f.stack, source_map) {
                (Some(stack), Some(map)) => Some(map.rewrite(&stack)),
                (stack, _) => stack,
            },
            next_retry: f.next_retry_ms.map(to_millis),
        },
        types::Resolution::Restart(r) => Resolution::Restart {
            at: to_millis(r.at_ms),
            new_data: r.new_data,
            new_aux_data: r.new_aux_data,
        },
        types::Resolution::Snooze(at_ms) => Resolution::Snooze {
            at: to_millis(at_ms),
        },
    }
}

/// The new part of a pipe since `seen`, as text.
fn pipe_delta(pipe: &MemoryOutputPipe, seen: &mut usize) -> String {
    let all = pipe.contents();
    let new = all.get(*seen..).unwrap_or_default();
    *seen = all.len();
    String::from_utf8_lossy(new).into_owned()
}

impl TaskVm {
    /// Instantiates `code` in a fresh store with `limits`. The guest gets no
    /// filesystem, network, arguments or environment; its stdout and stderr are kept.
    pub async fn new(
        engine: &WasmEngine,
        code: Arc<TaskCode>,
        limits: VmLimits,
        clock: SharedClock,
    ) -> Result<TaskVm, WasmError> {
        let stdout = MemoryOutputPipe::new(PIPE_CAPACITY);
        let stderr = MemoryOutputPipe::new(PIPE_CAPACITY);
        let wasi = WasiCtxBuilder::new()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .build();
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                limit: limits.memory_bytes,
                exceeded: false,
            },
            kill: KillSwitch::new(),
            deadline: None,
            max_transaction: limits.max_transaction,
            transaction_deadline: None,
            interrupted: None,
            db: TaskDb::None,
            logs: Vec::new(),
            log_bytes: 0,
            logs_dropped: (0, 0),
            clock,
            task_type: code.task_type.clone(),
            #[cfg(feature = "test-hooks")]
            panic_on_log: limits.panic_on_log,
        };
        let mut store = Store::new(&engine.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            if state.kill.is_killed() {
                state.interrupted = Some(Interruption::Killed);
                return Ok(UpdateDeadline::Interrupt);
            }
            if let Some(why) = state.past_a_deadline(Instant::now()) {
                state.interrupted = Some(why);
                return Ok(UpdateDeadline::Interrupt);
            }
            Ok(UpdateDeadline::Yield(1))
        });
        let world = code.pre.instantiate_async(&mut store).await.map_err(|e| {
            let task_type = code.task_type.clone();
            let message = format!("{e:#}");
            let exhausted = e.is::<wasmtime::PoolConcurrencyLimitError>();
            let source = super::wasmtime_cause(e);
            if exhausted {
                WasmError::PoolExhausted {
                    task_type,
                    message,
                    source,
                }
            } else {
                WasmError::Instantiate {
                    task_type,
                    message,
                    source,
                }
            }
        })?;
        Ok(TaskVm {
            code,
            store,
            world,
            limits,
            runs: 0,
            born: Instant::now(),
            broken: false,
            stdout,
            stderr,
            stdout_seen: 0,
            stderr_seen: 0,
        })
    }

    /// The task code this VM runs.
    pub fn code(&self) -> &Arc<TaskCode> {
        &self.code
    }

    /// Runs completed on this VM.
    pub fn runs(&self) -> u32 {
        self.runs
    }

    /// Whether the next task of this type may run here: not broken, and within its run
    /// count and age. A VM that is not reusable must be dropped.
    pub fn is_reusable(&self) -> bool {
        !self.broken
            && self.runs < self.limits.max_runs
            && self.born.elapsed() < self.limits.max_age
            && self.stdout_seen < PIPE_CAPACITY / 2
            && self.stderr_seen < PIPE_CAPACITY / 2
    }

    /// Runs one task. `kill` interrupts it from any thread; `timeout` bounds the
    /// guest's running time. Exactly one outcome comes back: the guest's resolution, or
    /// a failure (after which the VM is broken).
    pub async fn run(
        &mut self,
        input: TaskInput,
        db: TaskDb,
        timeout: Option<Duration>,
        kill: KillSwitch,
    ) -> RunReport {
        let started = Instant::now();
        if !self.is_reusable() {
            return RunReport {
                end: RunEnd::Failed {
                    error: "internal error: a retired task VM was asked to run a task".into(),
                    stack: None,
                    cause: FailureCause::Retired,
                },
                db,
                logs: Vec::new(),
                stdout: String::new(),
                stderr: String::new(),
                elapsed: started.elapsed(),
            };
        }
        {
            let state = self.store.data_mut();
            state.db = db;
            state.kill = kill;
            state.deadline = timeout.map(|t| started + t);
            state.transaction_deadline = None;
            state.interrupted = None;
            state.limiter.exceeded = false;
            state.take_logs();
        }
        self.store.set_epoch_deadline(1);
        let task = types::Task {
            id: input.id.0.max(0) as u64,
            task_type: input.task_type,
            data: input.data,
            aux_data: input.aux_data,
            failures: input.failures,
            iteration: input.iteration,
        };
        let result = self.world.call_run_task(&mut self.store, &task).await;
        self.runs += 1;
        let elapsed = started.elapsed();
        let state = self.store.data_mut();
        let db = std::mem::take(&mut state.db);
        let logs = state.take_logs();
        state.deadline = None;
        state.transaction_deadline = None;
        let interrupted = state.interrupted.take();
        let memory_exceeded = state.limiter.exceeded;
        let memory_limit = state.limiter.limit;
        if memory_exceeded {
            // The guest may have caught its out-of-memory error and resolved, but its
            // heap is full: never run another task on it.
            self.broken = true;
        }
        let stdout = pipe_delta(&self.stdout, &mut self.stdout_seen);
        let stderr = pipe_delta(&self.stderr, &mut self.stderr_seen);
        let end = match result {
            Ok(resolution) => RunEnd::Resolved(from_wit(resolution, self.code.source_map.as_ref())),
            Err(trap) => {
                // A component store that trapped cannot be entered again.
                self.broken = true;
                let (error, cause) = match interrupted {
                    Some(Interruption::TimedOut) => (
                        format!(
                            "task has timed out after {} ms",
                            timeout.unwrap_or_default().as_millis()
                        ),
                        FailureCause::TimedOut,
                    ),
                    Some(Interruption::Killed) => {
                        ("task was killed".to_string(), FailureCause::Killed)
                    }
                    Some(Interruption::TransactionTooLong) => (
                        format!(
                            "task's database transaction was open longer than its limit of \
                             {} ms (maxtransaction): stopped and rolled back",
                            self.limits.max_transaction.unwrap_or_default().as_millis()
                        ),
                        FailureCause::TimedOut,
                    ),
                    None if memory_exceeded => (
                        format!(
                            "task exceeded its memory limit of {} MiB",
                            memory_limit >> 20
                        ),
                        FailureCause::OutOfMemory,
                    ),
                    None => (trap_message(&trap, &stderr), FailureCause::Trapped),
                };
                let mut stack = format!("{trap:?}");
                if !stderr.trim().is_empty() {
                    stack.push_str("\n--- guest stderr ---\n");
                    stack.push_str(stderr.trim_end());
                }
                // The guest's stderr holds its own stack, in the bundle's lines.
                if let Some(map) = &self.code.source_map {
                    stack = map.rewrite(&stack);
                }
                RunEnd::Failed {
                    error,
                    stack: Some(stack),
                    cause,
                }
            }
        };
        RunReport {
            end,
            db,
            logs,
            stdout,
            stderr,
            elapsed,
        }
    }
}

/// The message for a trap: the guest's last stderr line when it said something (a JS
/// exception's text goes there), else the trap itself.
fn trap_message(trap: &wasmtime::Error, stderr: &str) -> String {
    let said = stderr.lines().rev().find(|l| !l.trim().is_empty());
    match said {
        Some(line) => format!("task trapped: {}", line.trim()),
        None => format!("task trapped: {trap}"),
    }
}
