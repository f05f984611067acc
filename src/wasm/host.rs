//! The state a task VM's store carries, and the host functions task code imports.

use super::bindings::warren::task::{host, types};
use crate::clock::SharedClock;
use crate::store::{
    NewTask, ScheduleOptions, SqlCanceller, TaskRun, TaskSqlError, TaskSqlOutput, TaskStatement,
    Transaction, UniquePart, UniqueParts, UniqueStates, DEFAULT_MAX_ROWS_BYTES,
};
use crate::task::{Priority, TaskType};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The database side of a run: where the task's SQL goes.
#[derive(Debug, Default)]
// Moved a few times per run; boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum TaskDb {
    /// No database (scheduled tasks run without one).
    #[default]
    None,
    /// A managed task's run: its SQL, scheduling and metadata use the run's transaction.
    Managed(TaskRun),
    /// An ephemeral task: a transaction of its own, committed when the task completes.
    Ephemeral(Transaction),
    /// An ephemeral or scheduled task whose transaction is opened by its first SQL
    /// statement or scheduled task (then it becomes [`TaskDb::Ephemeral`]), so that a
    /// task that does not use the database costs no round trip to it.
    Deferred {
        /// The store the transaction opens on.
        store: crate::store::Store,
        /// The connections of the runner's thread, which the transaction takes when
        /// given (see [`crate::store::ThreadConnections`]).
        thread: Option<crate::store::ThreadConnections>,
    },
}

impl TaskDb {
    /// Opens the deferred transaction, if this is the first use.
    async fn open(&mut self) -> Result<(), String> {
        if let TaskDb::Deferred { store, thread } = self {
            let tx = store.begin_transaction_on(thread.as_ref());
            let tx = tx.await.map_err(|e| e.to_string())?;
            *self = TaskDb::Ephemeral(tx);
        }
        Ok(())
    }

    /// The transaction task SQL runs on, opened now if this is the first use.
    async fn transaction(&mut self) -> Result<&mut Transaction, String> {
        self.open().await?;
        match self {
            TaskDb::Managed(run) => run.transaction().await.map_err(|e| e.to_string()),
            TaskDb::Ephemeral(tx) => Ok(tx),
            TaskDb::None | TaskDb::Deferred { .. } => {
                Err("this task runs without a database transaction".into())
            }
        }
    }
}

/// The most log text a run keeps (256 KiB); later lines are counted, not kept.
pub const MAX_RUN_LOG_BYTES: usize = 256 << 10;

/// The most log lines a run keeps.
pub const MAX_RUN_LOG_LINES: usize = 10_000;

/// The longest log line written to the node's own log (8 KiB); longer ones are cut.
pub const MAX_LOGGED_LINE_BYTES: usize = 8 << 10;

/// The most bytes of a statement's text a trace span carries.
const SPAN_SQL_BYTES: usize = 2048;

/// The first `max` bytes of `text`, cut at a character boundary.
fn text_head(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The span of one host call of task code that reaches the database (a child of its
/// run's span; see `crate::trace`).
fn host_call_span(call: &'static str) -> tracing::Span {
    tracing::info_span!(target: crate::trace::TARGET, "warren.host", otel.name = call)
}

/// How often a statement blocked in the database checks for a kill or a timeout.
const SQL_STOP_CHECK: std::time::Duration = std::time::Duration::from_millis(5);

/// How often a cancel is sent again while the statement has not stopped (a cancel
/// that reaches the server between two statements stops nothing of the run's, or the
/// message after it; the connection is closed after the run either way).
const SQL_CANCEL_REPEAT: std::time::Duration = std::time::Duration::from_millis(250);

/// Runs `work` (a task statement) until it ends; once `stopped` says the run was
/// killed or ran out of time, cancels the statement through `canceller` and waits for
/// it to give up. The statement's future is never dropped midway.
async fn until_stopped<T>(
    work: impl std::future::Future<Output = Result<T, TaskSqlError>>,
    stopped: impl Fn() -> bool,
    canceller: &SqlCanceller,
) -> Result<T, TaskSqlError> {
    if stopped() {
        return Err(TaskSqlError::Interrupted);
    }
    let mut work = std::pin::pin!(work);
    let mut cancelled_at: Option<Instant> = None;
    loop {
        tokio::select! {
            biased;
            out = &mut work => return out,
            _ = tokio::time::sleep(SQL_STOP_CHECK) => {
                if stopped() && cancelled_at.is_none_or(|at| at.elapsed() >= SQL_CANCEL_REPEAT) {
                    canceller.cancel();
                    cancelled_at = Some(Instant::now());
                }
            }
        }
    }
}

/// One line a task logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// 0 error, 1 warn, 2 info, 3 debug, 4 trace.
    pub level: u8,
    /// The text.
    pub message: String,
}

/// Why a run was interrupted by the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interruption {
    Killed,
    TimedOut,
    /// The run's transaction outlived `maxtransaction`.
    TransactionTooLong,
}

/// Stops a running guest from any thread; checked every epoch tick. One per run, and
/// its clones share it: whoever started the run can also read since when the run's
/// database transaction is open (the dashboard warns of long ones).
#[derive(Debug, Clone, Default)]
pub struct KillSwitch {
    killed: Arc<AtomicBool>,
    transaction_since: Arc<std::sync::OnceLock<Instant>>,
}

impl KillSwitch {
    /// A switch that has not been thrown.
    pub fn new() -> KillSwitch {
        KillSwitch::default()
    }

    /// Interrupts the run this switch was given to (within two ticks).
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
    }

    /// Whether [`KillSwitch::kill`] was called.
    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }

    /// How long the run's database transaction has been open (from the run's first
    /// database call); `None` while the run has not used the database.
    pub fn transaction_open_for(&self) -> Option<std::time::Duration> {
        self.transaction_since.get().map(Instant::elapsed)
    }

    /// Notes a database call of the run: the first one's instant is kept.
    fn transaction_opened(&self) {
        let _ = self.transaction_since.set(Instant::now());
    }
}

/// Caps a VM's linear memory; exceeding the cap traps the guest, not the process.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    pub(crate) limit: usize,
    pub(crate) exceeded: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            wasmtime::bail!("memory limit of {} MiB exceeded", self.limit >> 20);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// Everything a task VM's store holds.
pub struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) kill: KillSwitch,
    pub(crate) deadline: Option<Instant>,
    /// See `VmLimits::max_transaction`.
    pub(crate) max_transaction: Option<std::time::Duration>,
    /// When the run's transaction must be over: set at the run's first database call.
    pub(crate) transaction_deadline: Option<Instant>,
    pub(crate) interrupted: Option<Interruption>,
    pub(crate) db: TaskDb,
    pub(crate) logs: Vec<LogLine>,
    /// Bytes of log kept so far in this run.
    pub(crate) log_bytes: usize,
    /// Lines and bytes of log dropped past the caps in this run.
    pub(crate) logs_dropped: (u64, u64),
    pub(crate) clock: SharedClock,
    pub(crate) task_type: String,
    /// See `VmLimits::panic_on_log`.
    #[cfg(feature = "test-hooks")]
    pub(crate) panic_on_log: Option<&'static str>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

/// Reads the options object of `schedule-task`.
fn schedule_options(json: &str) -> Result<ScheduleOptions, String> {
    let value: Value = if json.trim().is_empty() {
        Value::Object(Default::default())
    } else {
        serde_json::from_str(json).map_err(|e| format!("options are not valid JSON: {e}"))?
    };
    let Value::Object(map) = value else {
        return Err("options must be a JSON object".into());
    };
    let mut o = ScheduleOptions::default();
    let mut unique = UniqueParts::default();
    let ms = |name: &str, v: &Value| {
        v.as_i64()
            .ok_or_else(|| format!("{name} must be a number of milliseconds"))
    };
    for (key, v) in map {
        match key.as_str() {
            "notBefore" => o.not_before = Some(v.as_i64().ok_or("notBefore must be milliseconds since the epoch")?),
            "timeout" => o.timeout_ms = Some(v.as_i64().ok_or("timeout must be a number of milliseconds")?),
            "auxData" => o.aux_data = Some(v),
            "cluster" => o.cluster = Some(v.as_str().ok_or("cluster must be a string")?.to_string()),
            "priority" => {
                o.priority = Some(match v {
                    Value::Number(n) => Priority(n.as_i64().and_then(|p| i32::try_from(p).ok()).ok_or("priority is out of range")?),
                    Value::String(s) => s.parse().map_err(|e: crate::task::PriorityError| e.to_string())?,
                    _ => return Err("priority must be a number or a name".into()),
                })
            }
            "metadata" => {
                let Value::Object(entries) = v else {
                    return Err("metadata must be an object of strings".into());
                };
                for (k, val) in entries {
                    let text = match val {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    o.metadata.push((k, text));
                }
            }
            "uniqueKey" => unique.key = Some(v.as_str().ok_or("uniqueKey must be a string")?.to_string()),
            "uniqueStates" => {
                let names: Vec<&str> = match &v {
                    Value::Array(items) => items.iter().map(|i| i.as_str().ok_or("uniqueStates must be an array of state names")).collect::<Result<_, _>>()?,
                    _ => return Err("uniqueStates must be an array of state names".into()),
                };
                unique.states = Some(UniqueStates::parse_list(&names.join(",")).map_err(|e| format!("uniqueStates: {e}"))?);
            }
            "uniquePeriod" => unique.period_ms = Some(ms("uniquePeriod", &v)?),
            "debounce" => unique.debounce_ms = Some(ms("debounce", &v)?),
            "debounceMax" => unique.debounce_max_ms = Some(ms("debounceMax", &v)?),
            other => return Err(format!("unknown option '{other}' (known: notBefore, timeout, auxData, cluster, priority, metadata, uniqueKey, uniqueStates, uniquePeriod, debounce, debounceMax)")),
        }
    }
    o.unique = unique.build().map_err(|e| {
        let name = match e.part {
            UniquePart::Key => "uniqueKey",
            UniquePart::States => "uniqueStates",
            UniquePart::Period => "uniquePeriod",
            UniquePart::Debounce => "debounce",
            UniquePart::DebounceMax => "debounceMax",
        };
        format!("{name}: {}", e.message)
    })?;
    Ok(o)
}

impl host::Host for HostState {
    async fn execute(&mut self, sql: String, params_json: String) -> Result<u64, String> {
        let statement = TaskStatement::execute(sql, &params_json).map_err(|e| e.to_string())?;
        match self.task_sql(statement).await? {
            TaskSqlOutput::Changes(n) => Ok(n),
            TaskSqlOutput::Rows(_) => Ok(0),
        }
    }

    async fn query(&mut self, sql: String, params_json: String) -> Result<String, String> {
        let statement = TaskStatement::query(sql, &params_json, DEFAULT_MAX_ROWS_BYTES)
            .map_err(|e| e.to_string())?;
        match self.task_sql(statement).await? {
            TaskSqlOutput::Rows(rows) => Ok(rows),
            TaskSqlOutput::Changes(_) => Ok("[]".into()),
        }
    }

    async fn schedule_task(
        &mut self,
        task_type: String,
        data_json: String,
        options_json: String,
    ) -> Result<u64, String> {
        let task_type: TaskType = task_type
            .parse()
            .map_err(|e: crate::task::TaskTypeError| e.to_string())?;
        let data: Value = serde_json::from_str(&data_json)
            .map_err(|e| format!("task data is not valid JSON: {e}"))?;
        let task = NewTask::new(task_type, data).with_options(schedule_options(&options_json)?);
        async {
            self.db.open().await?;
            if matches!(self.db, TaskDb::Managed(_) | TaskDb::Ephemeral(_)) {
                self.transaction_in_use();
            }
            let id = match &mut self.db {
                TaskDb::Managed(run) => run.schedule(task).await,
                TaskDb::Ephemeral(tx) => tx.schedule(task).await,
                TaskDb::None | TaskDb::Deferred { .. } => {
                    return Err("this task runs without a database transaction".into())
                }
            }
            .map_err(|e| e.to_string())?;
            Ok(id.0 as u64)
        }
        .instrument(host_call_span("schedule-task"))
        .await
    }

    async fn get_metadata(&mut self, key: String) -> Option<String> {
        if matches!(self.db, TaskDb::Managed(_)) {
            // A managed run reads its metadata in its transaction.
            self.transaction_in_use();
        }
        match &mut self.db {
            TaskDb::Managed(run) => match run
                .metadata(&key)
                .instrument(host_call_span("get-metadata"))
                .await
            {
                Ok(value) => value,
                Err(e) => {
                    self.log_line(1, format!("get-metadata('{key}') failed: {e}"));
                    None
                }
            },
            _ => None,
        }
    }

    async fn set_metadata(&mut self, key: String, value: String) -> Result<(), String> {
        if matches!(self.db, TaskDb::Managed(_)) {
            self.transaction_in_use();
        }
        match &mut self.db {
            TaskDb::Managed(run) => run
                .set_metadata(&key, &value)
                .instrument(host_call_span("set-metadata"))
                .await
                .map_err(|e| e.to_string()),
            _ => Err("only managed tasks have metadata".into()),
        }
    }

    async fn log(&mut self, level: u8, message: String) {
        self.log_line(level, message);
    }

    async fn set_progress(&mut self, fraction: f64, message: Option<String>) -> Result<(), String> {
        match &mut self.db {
            TaskDb::Managed(run) => run
                .report_progress(fraction, message)
                .map_err(|e| e.to_string()),
            // Nobody watches the progress of an ephemeral or scheduled run: it is
            // checked, then let go, so that code shared with managed tasks works.
            _ => crate::store::Progress::new(fraction, message, 0)
                .map(drop)
                .map_err(|e| e.to_string()),
        }
    }

    async fn now_ms(&mut self) -> u64 {
        self.clock.now().max(0) as u64
    }
}

impl HostState {
    /// Why the run must stop now, if it must: a kill, its timeout, or its transaction
    /// open too long.
    pub(crate) fn past_a_deadline(&self, now: Instant) -> Option<Interruption> {
        if self.kill.is_killed() {
            Some(Interruption::Killed)
        } else if self.deadline.is_some_and(|d| now >= d) {
            Some(Interruption::TimedOut)
        } else if self.transaction_deadline.is_some_and(|d| now >= d) {
            Some(Interruption::TransactionTooLong)
        } else {
            None
        }
    }

    /// Notes that the run has its transaction (the first time: it holds a pooled
    /// session from now on): from the first such call the transaction's time limit
    /// runs.
    fn transaction_in_use(&mut self) {
        // The switch keeps the first call's instant (later calls change nothing).
        self.kill.transaction_opened();
        if self.transaction_deadline.is_none() {
            self.transaction_deadline = self.max_transaction.map(|max| Instant::now() + max);
        }
    }

    /// Runs one task statement on the run's transaction; a kill, the timeout or the
    /// transaction's time limit stops it.
    async fn task_sql(&mut self, statement: TaskStatement) -> Result<TaskSqlOutput, String> {
        let span = tracing::info_span!(
            target: crate::trace::TARGET,
            "warren.sql",
            otel.name = "task sql",
            otel.kind = "client",
            db.query.text = tracing::field::Empty,
            otel.status_description = tracing::field::Empty,
        );
        // The text only for a trace that records it (a log that wants the span does
        // not get the statement).
        if crate::trace::TraceParent::of_span(&span).is_some_and(|s| s.is_sampled()) {
            span.record("db.query.text", text_head(&statement.sql, SPAN_SQL_BYTES));
        }
        let ran = self.task_sql_in(statement).instrument(span.clone()).await;
        if let Err(e) = &ran {
            span.record("otel.status_description", e.as_str());
        }
        ran
    }

    async fn task_sql_in(&mut self, statement: TaskStatement) -> Result<TaskSqlOutput, String> {
        self.db.transaction().await?;
        self.transaction_in_use();
        let (kill, deadline, transaction_deadline) =
            (self.kill.clone(), self.deadline, self.transaction_deadline);
        let stopped = move || {
            let now = Instant::now();
            kill.is_killed()
                || deadline.is_some_and(|d| now >= d)
                || transaction_deadline.is_some_and(|d| now >= d)
        };
        let tx = self.db.transaction().await?;
        let canceller = tx.canceller();
        until_stopped(tx.task_sql(&statement), stopped, &canceller)
            .await
            .map_err(|e| e.to_string())
    }

    fn log_line(&mut self, level: u8, message: String) {
        #[cfg(feature = "test-hooks")]
        if self.panic_on_log == Some(message.as_str()) {
            panic!("injected host fault: the guest logged {message:?}");
        }
        let level = level.min(4);
        let shown = crate::store::bounded_text(message.clone(), MAX_LOGGED_LINE_BYTES);
        match level {
            0 => tracing::error!(task_type = %self.task_type, "{shown}"),
            1 => tracing::warn!(task_type = %self.task_type, "{shown}"),
            2 => tracing::info!(task_type = %self.task_type, "{shown}"),
            3 => tracing::debug!(task_type = %self.task_type, "{shown}"),
            _ => tracing::trace!(task_type = %self.task_type, "{shown}"),
        }
        let fits = self.logs.len() < MAX_RUN_LOG_LINES
            && self.log_bytes + message.len() <= MAX_RUN_LOG_BYTES;
        if fits && self.logs_dropped.0 == 0 {
            self.log_bytes += message.len();
            self.logs.push(LogLine { level, message });
        } else {
            self.logs_dropped.0 += 1;
            self.logs_dropped.1 += message.len() as u64;
        }
    }

    /// The run's log lines, with a last line saying how many were dropped past the
    /// caps; resets the count for the next run.
    pub(crate) fn take_logs(&mut self) -> Vec<LogLine> {
        let mut logs = std::mem::take(&mut self.logs);
        let (lines, bytes) = std::mem::take(&mut self.logs_dropped);
        if lines > 0 {
            logs.push(LogLine {
                level: 1,
                message: format!(
                    "{lines} more log line(s) ({bytes} bytes) dropped: a run keeps at most {MAX_RUN_LOG_LINES} lines and {MAX_RUN_LOG_BYTES} bytes of log"
                ),
            });
        }
        self.log_bytes = 0;
        logs
    }
}
