//! SQL sent by task code: checked by the statement policy, run on the run's own
//! transaction, bounded in what it hands back, and stoppable by a kill or a timeout.
//!
//! The policy (see `pg_policy.rs` and `sqlite_guard.rs`): one statement per call; no
//! transaction control, session state, file or server access, or code that issues SQL
//! of its own; no access to Warren's own tables. A statement that ends the run's
//! transaction anyway is caught after it ran: the run then fails for good ("task code
//! ended its transaction": its effects may have committed, so it is never retried) and
//! its connection is closed.

use super::conn::on_conn;
use super::dialect::Dialect;
use super::dynamic::{self, SqlParam};
use super::pg_policy::PgStatementPolicy;
use super::sqlite_guard::SqliteGuard;
use super::AnyConn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The largest JSON text of rows a query hands to task code, by default (16 MiB).
pub const DEFAULT_MAX_ROWS_BYTES: usize = 16 << 20;

/// One statement from task code.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskStatement {
    /// The SQL text, with `$1`, `$2` … placeholders.
    pub sql: String,
    /// The bound parameters.
    pub params: Vec<SqlParam>,
    /// What to hand back.
    pub want: TaskSqlWant,
}

/// What a task statement hands back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskSqlWant {
    /// The number of rows changed (`execute`).
    Changes,
    /// The rows as JSON text of at most this many bytes (`query`).
    Rows {
        /// The cap on the JSON text.
        max_bytes: usize,
    },
}

/// What a task statement handed back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskSqlOutput {
    /// Rows changed.
    Changes(u64),
    /// Rows as a JSON array of objects keyed by column name.
    Rows(String),
}

/// Why a task statement failed. The message is what task code sees.
#[derive(Debug, thiserror::Error)]
pub enum TaskSqlError {
    /// The policy refused the statement before anything ran.
    #[error("{0}")]
    Refused(String),
    /// The text holds no statement.
    #[error("the statement is empty")]
    Empty,
    /// The text holds more than one statement.
    #[error("more than one statement is not allowed in task SQL: send one statement per call")]
    MoreThanOne,
    /// The rows' JSON text would pass the cap.
    #[error(
        "the query's rows are larger than {limit} bytes of JSON: select fewer rows or columns"
    )]
    TooLarge {
        /// The cap in bytes.
        limit: usize,
    },
    /// The statement was stopped because the run was killed or timed out.
    #[error("the statement was stopped: the task was killed or ran out of time")]
    Interrupted,
    /// The run's transaction ended under the task.
    #[error("task code ended its transaction; its effects may have committed, so the task is not retried")]
    TransactionEnded,
    /// The parameters are not a JSON array of values.
    #[error(transparent)]
    Params(Box<super::StoreError>),
    /// SQLite refused or failed the statement.
    #[error("{message}")]
    Sqlite {
        /// SQLite's extended result code.
        code: i32,
        /// SQLite's message.
        message: String,
    },
    /// The database failed the statement.
    #[error("{0}")]
    Database(#[source] diesel::result::Error),
}

impl From<diesel::result::Error> for TaskSqlError {
    fn from(e: diesel::result::Error) -> TaskSqlError {
        TaskSqlError::Database(e)
    }
}

impl TaskStatement {
    /// A statement whose changed-row count is wanted, parameters given as JSON text.
    pub fn execute(
        sql: impl Into<String>,
        params_json: &str,
    ) -> Result<TaskStatement, TaskSqlError> {
        Ok(TaskStatement {
            sql: sql.into(),
            params: dynamic::parse_params(params_json)
                .map_err(|e| TaskSqlError::Params(Box::new(e)))?,
            want: TaskSqlWant::Changes,
        })
    }

    /// A query whose rows are wanted (at most `max_bytes` of JSON), parameters given
    /// as JSON text.
    pub fn query(
        sql: impl Into<String>,
        params_json: &str,
        max_bytes: usize,
    ) -> Result<TaskStatement, TaskSqlError> {
        Ok(TaskStatement {
            sql: sql.into(),
            params: dynamic::parse_params(params_json)
                .map_err(|e| TaskSqlError::Params(Box::new(e)))?,
            want: TaskSqlWant::Rows { max_bytes },
        })
    }
}

/// Stops the task statement running on one transaction's connection, from any thread.
/// Cheap to clone.
#[derive(Clone)]
pub struct SqlCanceller {
    target: CancelTarget,
    /// Set once a cancel was sent: the connection is then closed after the run, since
    /// a cancel request may still be in flight.
    sent: Arc<AtomicBool>,
}

#[derive(Clone)]
enum CancelTarget {
    Postgres(tokio_postgres::CancelToken),
    Sqlite(Arc<SqliteGuard>),
    Nothing,
}

impl std::fmt::Debug for SqlCanceller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlCanceller")
            .field("sent", &self.was_sent())
            .finish()
    }
}

impl SqlCanceller {
    pub(super) fn postgres(token: tokio_postgres::CancelToken) -> SqlCanceller {
        SqlCanceller::with(CancelTarget::Postgres(token))
    }

    pub(super) fn sqlite(guard: Option<Arc<SqliteGuard>>) -> SqlCanceller {
        SqlCanceller::with(guard.map_or(CancelTarget::Nothing, CancelTarget::Sqlite))
    }

    fn with(target: CancelTarget) -> SqlCanceller {
        SqlCanceller {
            target,
            sent: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Stops whatever task statement runs on the connection now. Safe to call again
    /// while the statement has not stopped yet (a cancel that arrived between two
    /// statements has no effect on the next).
    pub fn cancel(&self) {
        self.sent.store(true, Ordering::SeqCst);
        match &self.target {
            CancelTarget::Postgres(token) => {
                let token = token.clone();
                super::postgres::io_runtime().spawn(async move {
                    if let Err(e) = token.cancel_query(tokio_postgres::NoTls).await {
                        tracing::warn!("could not cancel a task's statement: {e}");
                    }
                });
            }
            CancelTarget::Sqlite(guard) => guard.cancel(),
            CancelTarget::Nothing => {}
        }
    }

    /// Whether [`SqlCanceller::cancel`] was called.
    pub fn was_sent(&self) -> bool {
        self.sent.load(Ordering::SeqCst)
    }
}

/// What running a task statement did besides its output.
#[derive(Debug)]
pub(super) struct Ran {
    pub(super) output: TaskSqlOutput,
    /// The statement left state on the connection beyond the transaction.
    pub(super) taints_session: bool,
    /// The statement left state in the transaction that a later run sharing it would
    /// see (see `run_group.rs`).
    pub(super) binds_transaction: bool,
}

/// Runs `statement` on `conn`, inside its open transaction (see
/// [`Dialect::run_task_statement`]).
pub(super) async fn run(
    conn: &mut AnyConn<'_>,
    policy: &PgStatementPolicy,
    statement: &TaskStatement,
    canceller: Option<&SqlCanceller>,
) -> Result<Ran, TaskSqlError> {
    on_conn!(conn, c => Dialect::run_task_statement(c, policy, statement, canceller).await)
}
