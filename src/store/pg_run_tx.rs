//! A task's transaction on PostgreSQL in as few round trips as the protocol allows.
//!
//! Each statement of task code runs in a savepoint, so a failing one is undone alone
//! and task code may catch the error and go on; a savepoint that cannot be set or
//! released means task code ended the transaction. Sent one at a time, that costs four
//! round trips for a run's first statement (BEGIN, SAVEPOINT, the statement, RELEASE),
//! three for each next one, and two to complete and commit: six for a task that
//! inserts one row. Here:
//! - what goes before a statement (BEGIN for the first, which needs no savepoint as the
//!   transaction holds nothing else; then the RELEASE of the previous statement's
//!   savepoint and a new SAVEPOINT) is one message, pipelined with the statement: one
//!   round trip per statement once its text is prepared on the connection (the first
//!   use of a text adds one to prepare it, see `pg_statement_cache.rs`);
//! - the message that completes the run and commits ([`complete_and_commit`]) is one
//!   round trip. Its checks raise errors, so the COMMIT at its end never runs when the
//!   run lost its lease or task code ended its transaction; COMMIT ends the last
//!   savepoint with the transaction.
//!
//! In a run group (`run_group.rs`) the transaction carries earlier runs' completed
//! work: a run's first statement (or other work) sets the run's own savepoint
//! ([`MEMBER_SAVEPOINT`]) in place of `BEGIN`, its statements nest theirs in it, and its
//! completion ([`complete_in_group`]) releases it instead of committing; undoing the
//! run ([`undo_member`]) rolls back to it, leaving the earlier runs' work.
//!
//! So a task that inserts one row takes two round trips. The rules stay those of
//! `task_sql.rs`: a statement that ended the transaction is found by the next thing
//! sent after it (the next statement's RELEASE, or the completion's check), and the run
//! then fails for good, as its effects may have committed.

use super::dynamic::run_postgres_bare;
use super::pg_policy::PgStatementPolicy;
use super::pg_statement_cache::may_prepare;
use super::task_sql::{Ran, SqlCanceller, TaskSqlError, TaskStatement};
use crate::task::{LeaseToken, Millis, TaskId};
use diesel::connection::TransactionDepthChange;
use diesel_async::{
    AnsiTransactionManager, AsyncPgConnection, SimpleAsyncConnection, TransactionManager,
};

/// The savepoint each task statement runs in.
const SAVEPOINT: &str = "warren_task_sql";

/// The savepoint a run's work is held in when its transaction carries earlier runs'
/// completions (a run group, see `run_group.rs`): undoing the run undoes it alone.
const MEMBER_SAVEPOINT: &str = "warren_task";

/// What opens a run's transaction. `warren.run` marks it as the run's own for this
/// transaction only, so that the checks before its end (`warren_run_open` in the
/// migrations) can tell whether task code ended it.
const BEGIN: &str = "BEGIN; SET LOCAL warren.run = '1'";

/// Where a run's transaction stands on its connection.
///
/// diesel's own transaction manager is told of the transaction before its BEGIN goes
/// out and of its end only once COMMIT or ROLLBACK succeeded ([`mark_open`],
/// [`mark_closed`]): so an application's `transaction()` on the run's connection nests
/// as a savepoint, and a connection whose transaction may still be open (a message
/// that failed or was abandoned midway) is never reused: the pool drops it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct RunTx {
    /// The transaction is open (its BEGIN succeeded; it goes out with the run's first
    /// statement).
    pub begun: bool,
    /// A BEGIN was sent and no COMMIT or ROLLBACK has succeeded since: the
    /// transaction may be open, whatever `begun` says.
    pub maybe_open: bool,
    /// The last statement's savepoint is still set (released by whatever comes next).
    pub savepoint_set: bool,
    /// A statement prepared for reuse failed: close the connection after the run.
    pub prepared_failed: bool,
    /// The transaction carries earlier runs' completed work (a run group): this run's
    /// work goes in [`MEMBER_SAVEPOINT`], so that it can be undone alone.
    pub in_group: bool,
    /// This run's [`MEMBER_SAVEPOINT`] is set (it has done work in the group).
    pub member_set: bool,
}

/// What goes before a task statement, in its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Before {
    /// BEGIN: the run's first statement on a transaction of its own.
    Begin,
    /// The run's member savepoint: its first statement in a group's transaction.
    Member,
    /// A statement savepoint (after releasing the previous one, when set).
    Statement,
}

impl RunTx {
    /// What goes before the next task statement.
    fn before(self) -> Before {
        if !self.begun {
            Before::Begin
        } else if self.in_group && !self.member_set {
            Before::Member
        } else {
            Before::Statement
        }
    }

    /// What to send before the next task statement, in the same message.
    fn before_statement(self) -> String {
        if self.before() == Before::Begin {
            // The first statement needs no savepoint: the transaction holds nothing
            // else, so when it fails the whole transaction is rolled back instead.
            // (A savepoint costs a subtransaction, and writing in one a second id.)
            BEGIN.to_string()
        } else if self.before() == Before::Member {
            // Likewise in a group: the member's savepoint undoes its first statement.
            format!("SAVEPOINT {MEMBER_SAVEPOINT}")
        } else if self.savepoint_set {
            format!("RELEASE SAVEPOINT {SAVEPOINT}; SAVEPOINT {SAVEPOINT}")
        } else {
            format!("SAVEPOINT {SAVEPOINT}")
        }
    }

    /// Opens the transaction now, for work that is not a task statement (scheduling,
    /// metadata, a resolution other than completion): one round trip, once.
    pub async fn begin(&mut self, c: &mut AsyncPgConnection) -> diesel::QueryResult<()> {
        if !self.begun {
            self.opening(c);
            c.batch_execute(BEGIN).await?;
            self.begun = true;
        } else if self.in_group && !self.member_set {
            c.batch_execute(&format!("SAVEPOINT {MEMBER_SAVEPOINT}"))
                .await?;
            self.member_set = true;
        }
        Ok(())
    }

    /// Whether the transaction holds work of the current run: on a transaction of its
    /// own, once it is open; in a group, once the run's savepoint is set.
    pub fn holds_run_work(&self) -> bool {
        if self.in_group {
            self.member_set
        } else {
            self.begun
        }
    }

    /// Makes the open transaction carry the next run of its group: that run's work
    /// goes in a savepoint of its own, set with its first work.
    pub fn join_group(&mut self) {
        debug_assert!(self.begun, "a group's transaction is open");
        self.in_group = true;
        self.member_set = false;
        self.savepoint_set = false;
    }

    /// Notes, before a BEGIN goes out, that the transaction may be open from now on.
    fn opening(&mut self, c: &mut AsyncPgConnection) {
        if !self.maybe_open {
            mark_open(c);
            self.maybe_open = true;
        }
    }

    /// Notes that COMMIT or ROLLBACK succeeded: no transaction is open.
    pub fn closed(&mut self, c: &mut AsyncPgConnection) {
        if self.maybe_open {
            mark_closed(c);
        }
        *self = RunTx {
            prepared_failed: self.prepared_failed,
            ..RunTx::default()
        };
    }

    /// Checks that the run's transaction is still open (the check of
    /// `warren_run_open`), before work that must not run outside it. Fails with
    /// [`TaskSqlError::TransactionEnded`] only when task code ended it; a transaction
    /// that is open but in error (a cancel that landed between two statements) fails
    /// with the database's error instead, and rolls back as usual.
    pub async fn check_open(&self, c: &mut AsyncPgConnection) -> Result<(), TaskSqlError> {
        use diesel::result::Error::DatabaseError;
        match c.batch_execute("SELECT warren_run_open()").await {
            Ok(()) => Ok(()),
            Err(DatabaseError(_, info)) if info.message().starts_with(ENDED) => {
                Err(TaskSqlError::TransactionEnded)
            }
            Err(e) => Err(TaskSqlError::Database(e)),
        }
    }
}

/// Runs one statement of task code, in a savepoint of its own set in the same round
/// trip (after BEGIN, for the run's first statement).
pub(super) async fn run_statement(
    c: &mut AsyncPgConnection,
    tx: &mut RunTx,
    policy: &PgStatementPolicy,
    statement: &TaskStatement,
    canceller: &SqlCanceller,
) -> Result<Ran, TaskSqlError> {
    let admitted = policy.admit(&statement.sql)?;
    let sql = admitted.sql;
    let before = tx.before_statement();
    let step = tx.before();
    let prepare = may_prepare(c, sql);
    let first = step == Before::Begin;
    if first {
        tx.opening(c);
    }
    let shared: &AsyncPgConnection = c;
    // `join` polls the first future first, and each sends its message when first
    // polled: what goes before is on the wire ahead of the statement (ahead of its
    // Parse, too, when the statement is prepared first).
    let (set, ran) = futures_util::future::join(
        async {
            let mut shared = shared;
            shared.batch_execute(&before).await
        },
        run_postgres_bare(
            shared,
            sql,
            statement.params.clone(),
            statement.want,
            prepare,
        ),
    )
    .await;
    let result = match set {
        // The run's first statement ran although its BEGIN failed: on its own, so it
        // committed; the run is over.
        Err(_) if first && ran.is_ok() => Err(TaskSqlError::TransactionEnded),
        // Nothing was open before; what failed is no transaction of the run's.
        Err(e) if first => Err(TaskSqlError::Database(e)),
        // The previous statement ended the transaction (this RELEASE or SAVEPOINT
        // failed outside it; the statement may then have run on its own and
        // committed), or the transaction is in error, or the connection failed: the
        // run's mark tells the first apart.
        Err(e) => match tx.check_open(c).await {
            Err(TaskSqlError::TransactionEnded) => Err(TaskSqlError::TransactionEnded),
            _ => Err(TaskSqlError::Database(e)),
        },
        Ok(()) => {
            tx.begun = true;
            tx.member_set |= step == Before::Member;
            tx.savepoint_set = step == Before::Statement;
            match ran {
                Err(TaskSqlError::Database(e)) => {
                    // A prepared statement can fail for good on its connection (a table
                    // it reads changed shape: "cached plan must not change result
                    // type", which diesel reports as an unknown kind): the connection
                    // is then closed after the run, so that the retry prepares it
                    // afresh. Data errors (constraints) leave it be.
                    let unknown = matches!(
                        e,
                        diesel::result::Error::DatabaseError(
                            diesel::result::DatabaseErrorKind::Unknown,
                            _
                        )
                    );
                    tx.prepared_failed |= prepare && unknown;
                    undo_statement(c, tx)
                        .await
                        .and(Err(TaskSqlError::Database(e)))
                }
                Err(e) => Err(e),
                Ok(output) => Ok(Ran {
                    output,
                    taints_session: admitted.taints_session,
                    binds_transaction: admitted.binds_transaction,
                }),
            }
        }
    };
    match result {
        // A statement stopped by a kill or a timeout says so, unless the transaction
        // ended: that must reach the run, which then fails for good.
        Err(e) if canceller.was_sent() && !matches!(e, TaskSqlError::TransactionEnded) => {
            Err(TaskSqlError::Interrupted)
        }
        other => other,
    }
}

/// Undoes a statement that failed, leaving the run able to go on: rolls back to its
/// savepoint, or, for the run's first statement, rolls back the transaction it opened
/// (the next statement opens another).
async fn undo_statement(c: &mut AsyncPgConnection, tx: &mut RunTx) -> Result<(), TaskSqlError> {
    if !tx.savepoint_set && tx.in_group {
        // The run's first statement in a group: its savepoint undoes it.
        return undo_member(c, tx).await;
    }
    if !tx.savepoint_set {
        return match rollback(c).await {
            Ok(()) => {
                tx.closed(c);
                Ok(())
            }
            Err(e) => Err(TaskSqlError::Database(e)),
        };
    }
    roll_back_to(c, tx, SAVEPOINT).await?;
    tx.savepoint_set = false;
    Ok(())
}

/// Rolls back to savepoint `name` and releases it. Fails with
/// [`TaskSqlError::TransactionEnded`] when task SQL had ended the transaction (the
/// savepoint is gone with it), with the database's error otherwise.
async fn roll_back_to(
    c: &mut AsyncPgConnection,
    tx: &RunTx,
    name: &str,
) -> Result<(), TaskSqlError> {
    let undo = format!("ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}");
    match c.batch_execute(&undo).await {
        Ok(()) => Ok(()),
        // A statement ended the transaction, or the connection failed.
        Err(e) => match tx.check_open(c).await {
            Err(TaskSqlError::TransactionEnded) => Err(TaskSqlError::TransactionEnded),
            _ => Err(TaskSqlError::Database(e)),
        },
    }
}

/// Undoes everything the current run of a group did (rolls back to its savepoint,
/// which goes), leaving the group's earlier runs as they were. Nothing to undo when
/// the run has not worked in the group yet.
pub(super) async fn undo_member(
    c: &mut AsyncPgConnection,
    tx: &mut RunTx,
) -> Result<(), TaskSqlError> {
    if !tx.member_set {
        return Ok(());
    }
    roll_back_to(c, tx, MEMBER_SAVEPOINT).await?;
    tx.member_set = false;
    tx.savepoint_set = false;
    Ok(())
}

/// Keeps the current run's work in its group's transaction (releases its savepoints):
/// the group's commit now commits it with the earlier runs'.
pub(super) async fn keep_member(
    c: &mut AsyncPgConnection,
    tx: &mut RunTx,
) -> diesel::QueryResult<()> {
    if let Some(release) = tx.release_run_savepoints() {
        c.batch_execute(&release).await?;
    }
    tx.join_group();
    Ok(())
}

/// Tells diesel's transaction manager that a transaction is open on `c` (see
/// [`RunTx`]).
fn mark_open(c: &mut AsyncPgConnection) {
    let _ = transaction_depth(c, TransactionDepthChange::IncreaseDepth);
}

/// Tells diesel's transaction manager that the transaction on `c` ended.
fn mark_closed(c: &mut AsyncPgConnection) {
    let _ = transaction_depth(c, TransactionDepthChange::DecreaseDepth);
}

fn transaction_depth(
    c: &mut AsyncPgConnection,
    change: TransactionDepthChange,
) -> diesel::QueryResult<()> {
    <AnsiTransactionManager as TransactionManager<AsyncPgConnection>>::transaction_manager_status_mut(c)
        .transaction_state()?
        .change_transaction_depth(change)
}

/// The completion of a run whose transaction is open: what [`complete_and_commit`]
/// writes.
#[derive(Debug, Clone, Copy)]
pub(super) struct RunCompletion<'a> {
    /// The task.
    pub id: TaskId,
    /// The run's fencing token.
    pub token: LeaseToken,
    /// The result (JSON text, already checked).
    pub result: &'a str,
    /// When the run started.
    pub started_at: Millis,
    /// When it finished.
    pub finished_at: Millis,
}

/// How [`complete_and_commit`] or [`commit`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CommitEnd {
    /// Completed and committed with the run's work.
    Committed,
    /// The run no longer holds the task; nothing committed.
    LeaseLost,
    /// Task code ended the run's transaction earlier: what it did may have committed,
    /// and what this message would have written did not.
    TransactionEnded,
}

/// Raised when the run's transaction is not the one open.
const ENDED: &str = "warren: the run's transaction ended";
/// Raised when the fenced completion changed no row.
const LEASE_LOST: &str = "warren: task ";

/// Completes the run (fenced by its token), sends the outcome's NOTIFY if someone
/// waits, and commits, in one message: `warren_complete_run` (the check that the run's
/// transaction is still open, the fenced UPDATE, the check that it changed the task)
/// then COMMIT. The message is sent with the simple protocol, which runs its
/// statements in order and stops at the first error, so the COMMIT runs only when
/// everything before it succeeded. After any error the connection must be closed, not
/// reused.
pub(super) async fn complete_and_commit(
    c: &mut AsyncPgConnection,
    completion: RunCompletion<'_>,
) -> diesel::QueryResult<CommitEnd> {
    // The last savepoint needs no RELEASE: COMMIT ends it with the transaction.
    let sql = format!("{}; COMMIT", completion.statement());
    send_commit(c, &sql).await
}

impl RunCompletion<'_> {
    /// The statement that writes the completion (fenced, with its checks).
    fn statement(&self) -> String {
        let RunCompletion {
            id,
            token,
            result,
            started_at,
            finished_at,
        } = *self;
        format!(
            "SELECT warren_complete_run({id}, {token}, {result}, {started_at}, {finished_at})",
            result = text_literal(result),
        )
    }
}

/// Completes the run (fenced by its token) in its transaction without committing, in
/// one message: `warren_complete_run`, then the release of the run's savepoints. The
/// transaction stays open for the next run of its group (see `run_group.rs`), which
/// commits it. In a group the completion runs in the run's savepoint, so that a lost
/// lease undoes this run alone ([`undo_member`]); a run on a transaction of its own
/// rolls it all back then. Answers [`CommitEnd::Committed`] when the completion was
/// written (it commits later, with the group).
pub(super) async fn complete_in_group(
    c: &mut AsyncPgConnection,
    tx: &mut RunTx,
    completion: RunCompletion<'_>,
) -> diesel::QueryResult<CommitEnd> {
    let mut sql = String::new();
    if tx.in_group && !tx.member_set {
        sql.push_str(&format!("SAVEPOINT {MEMBER_SAVEPOINT}; "));
        tx.member_set = true;
    }
    sql.push_str(&completion.statement());
    if let Some(release) = tx.release_run_savepoints() {
        sql.push_str("; ");
        sql.push_str(&release);
    }
    let end = send_commit(c, &sql).await?;
    if end == CommitEnd::Committed {
        tx.join_group();
    }
    Ok(end)
}

impl RunTx {
    /// What releases the current run's savepoints (a group's member savepoint holds the
    /// statement savepoint within it), if any is set.
    fn release_run_savepoints(&self) -> Option<String> {
        if self.in_group && self.member_set {
            Some(format!("RELEASE SAVEPOINT {MEMBER_SAVEPOINT}"))
        } else if self.savepoint_set {
            Some(format!("RELEASE SAVEPOINT {SAVEPOINT}"))
        } else {
            None
        }
    }
}

/// Commits the run's transaction with nothing more to write, in one message: the check
/// that it is still open, then COMMIT (which ends the last savepoint with it).
pub(super) async fn commit(c: &mut AsyncPgConnection) -> diesel::QueryResult<CommitEnd> {
    send_commit(c, "SELECT warren_run_open(); COMMIT").await
}

/// Rolls back the run's transaction.
pub(super) async fn rollback(c: &mut AsyncPgConnection) -> diesel::QueryResult<()> {
    c.batch_execute("ROLLBACK").await
}

/// Sends a message that ends in COMMIT, telling its checks' errors apart.
async fn send_commit(c: &mut AsyncPgConnection, sql: &str) -> diesel::QueryResult<CommitEnd> {
    use diesel::result::Error::DatabaseError;
    match c.batch_execute(sql).await {
        Ok(()) => Ok(CommitEnd::Committed),
        Err(DatabaseError(_, info)) if info.message().starts_with(ENDED) => {
            Ok(CommitEnd::TransactionEnded)
        }
        Err(DatabaseError(_, info)) if info.message().starts_with(LEASE_LOST) => {
            Ok(CommitEnd::LeaseLost)
        }
        Err(e) => Err(e),
    }
}

/// `text` as a PostgreSQL string literal: `E'…'` with quotes and backslashes doubled,
/// which reads back as `text` whatever `standard_conforming_strings` says (the rule
/// libpq's `PQescapeLiteral` follows). Text holds no NUL (PostgreSQL's text cannot).
fn text_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 3);
    out.push_str("E'");
    for ch in text.chars() {
        match ch {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            other => out.push(other),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_literal_doubles_quotes_and_backslashes() {
        assert_eq!(
            text_literal(r#"{"a":"it's \"x\" \\n"}"#),
            r#"E'{"a":"it''s \\"x\\" \\\\n"}'"#
        );
        assert_eq!(text_literal(""), "E''");
        assert_eq!(text_literal("ünï ✓"), "E'ünï ✓'");
    }

    #[test]
    fn the_first_statement_begins_and_the_next_release_the_previous_savepoint() {
        let mut tx = RunTx::default();
        assert_eq!(tx.before_statement(), BEGIN);
        tx.begun = true;
        assert_eq!(tx.before_statement(), "SAVEPOINT warren_task_sql");
        tx.savepoint_set = true;
        assert_eq!(
            tx.before_statement(),
            "RELEASE SAVEPOINT warren_task_sql; SAVEPOINT warren_task_sql"
        );
    }
}
