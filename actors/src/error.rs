//! The actors' one error type: why a node could not start, an ephemeral task gave no
//! result, or a run could not be resolved. Each variant keeps its cause (the store's,
//! the engine's, the mailbox's) as its source; the web layer maps variants to HTTP
//! statuses (`web/error.rs`).

use std::path::PathBuf;
use warren::store::StoreError;
use warren::wasm::WasmError;

/// What went wrong in the actor system.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database failed (opening, migrating, or a statement).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The WebAssembly engine could not be set up, or task code not loaded.
    #[error(transparent)]
    Wasm(#[from] WasmError),
    /// The modules folder given to the builder is not a folder.
    #[error("modules folder {}: not a folder", .0.display())]
    ModulesNotAFolder(PathBuf),
    /// No loaded module declares this ephemeral task type (or its cluster has no
    /// runners here).
    #[error("unknown ephemeral task type {0} (not declared by any loaded module)")]
    UnknownEphemeralType(String),
    /// A runner was handed a task type its catalog does not know.
    #[error("unknown task type {0}")]
    UnknownTaskType(String),
    /// A claimed managed task whose type no module loaded on this node declares.
    #[error("task type {0} is not declared by any module loaded on this node")]
    NotDeclaredHere(String),
    /// A runner was handed a scheduled tag its catalog does not know.
    #[error("unknown scheduled task {0}")]
    UnknownScheduled(String),
    /// The ephemeral task's cluster or type is paused (`warren clusters|types pause`).
    #[error("{0} is paused: its ephemeral tasks are refused until it is resumed")]
    Paused(warren::store::PauseTarget),
    /// The node is shutting down and takes no new work.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The caller dropped the task before it started.
    #[error("the caller went away before the task started")]
    CallerGone,
    /// The transaction the task was scheduled in rolled back.
    #[error("the task did not run: the transaction that scheduled it did not commit")]
    NotCommitted,
    /// The node stopped before the task finished.
    #[error("the node stopped before the task finished")]
    NodeStopped,
    /// A node actor (the queue) did not answer: it is stopping or restarting.
    #[error("the node did not answer: {0}")]
    NodeGone(#[source] actix::MailboxError),
    /// The task resolved with a failure; its own message.
    #[error("{0}")]
    TaskFailed(String),
    /// The task asked to run again later (a restart or a snooze, named), which only
    /// managed tasks can.
    #[error("{0} is not supported for this kind of task: only managed tasks run again later")]
    RestartUnsupported(&'static str),
    /// The task completed with a result that is not JSON.
    #[error("the task's result is not valid JSON: {0}")]
    BadResult(#[source] serde_json::Error),
    /// The runner's host code panicked during the run; the runner was replaced.
    #[error(transparent)]
    Crashed(#[from] RunnerCrash),
    /// The runner stopped before it answered.
    #[error("the runner is gone: {0}")]
    RunnerGone(#[source] actix::MailboxError),
    /// A managed run's transaction did not come back from the VM.
    #[error("the run's transaction was lost")]
    TransactionLost,
}

/// A runner's host code panicked during a run (the panic's message); the runner
/// stops, and whoever handed it the run replaces it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the runner crashed: {0}")]
pub struct RunnerCrash(pub String);
