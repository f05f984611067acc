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
//! ([`MEMBER_SAVEPOINT`]) in place of `BEGIN`, its statements nest theirs in it, and
//! undoing the run ([`undo_member`]) rolls back to it, leaving the earlier runs' work.
//! A completed run sends nothing: its completion is held ([`DeferredCompletion`]) and
//! its savepoint released in the message that sets the next run's; the group's
//! commit writes all its held completions with one statement before its COMMIT
//! ([`complete_runs`]), so a run that writes costs one round trip, its statement's. A
//! run that must not be followed ([`super::Transaction::fit_for_next_run`]) writes its
//! completion at once ([`complete_in_group`]).
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
    /// The savepoint the previous run of the group left set when its completion was
    /// held: released in the message that sets this run's own.
    pub release_first: Option<&'static str>,
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
            self.member_savepoint()
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
            let set = self.member_savepoint();
            self.release_first = None;
            c.batch_execute(&set).await?;
            self.member_set = true;
        }
        Ok(())
    }

    /// What sets the current run's savepoint in a group: after the release of the
    /// previous run's, when its completion was held.
    fn member_savepoint(self) -> String {
        match self.release_first {
            Some(previous) => {
                format!("RELEASE SAVEPOINT {previous}; SAVEPOINT {MEMBER_SAVEPOINT}")
            }
            None => format!("SAVEPOINT {MEMBER_SAVEPOINT}"),
        }
    }

    /// Notes that the current run's completion is held until the group commits: its
    /// savepoint stays set until the next run's first message releases it, and the
    /// transaction is ready for that run.
    pub fn hold_completion(&mut self) {
        self.release_first = self.run_savepoint().or(self.release_first);
        self.join_group();
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
    if step == Before::Member {
        // Released by this message, or the transaction is in error and the group
        // cannot commit: either way, nothing is left to release.
        tx.release_first = None;
    }
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
        sql.push_str(&tx.member_savepoint());
        sql.push_str("; ");
        tx.release_first = None;
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
    /// The current run's outermost savepoint (a group's member savepoint holds the
    /// statement savepoint within it), if any is set.
    fn run_savepoint(&self) -> Option<&'static str> {
        if self.in_group && self.member_set {
            Some(MEMBER_SAVEPOINT)
        } else if self.savepoint_set {
            Some(SAVEPOINT)
        } else {
            None
        }
    }

    /// What releases the current run's savepoints, if any is set.
    fn release_run_savepoints(&self) -> Option<String> {
        self.run_savepoint()
            .map(|name| format!("RELEASE SAVEPOINT {name}"))
    }
}

/// A completed run of a group whose completion is held until the group commits
/// ([`complete_runs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DeferredCompletion {
    /// The task.
    pub id: TaskId,
    /// The run's fencing token.
    pub token: LeaseToken,
    /// The result (JSON text, already checked).
    pub result: String,
    /// When the run started.
    pub started_at: Millis,
    /// When it finished.
    pub finished_at: Millis,
}

impl From<RunCompletion<'_>> for DeferredCompletion {
    fn from(c: RunCompletion<'_>) -> DeferredCompletion {
        DeferredCompletion {
            id: c.id,
            token: c.token,
            result: c.result.to_string(),
            started_at: c.started_at,
            finished_at: c.finished_at,
        }
    }
}

/// How writing held completions ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HeldEnd {
    /// Written (and committed, when asked).
    Written,
    /// This task's run no longer holds it: nothing was written, and the transaction
    /// is in error.
    LeaseLost(TaskId),
    /// Task code ended the transaction earlier: nothing was written.
    TransactionEnded,
}

/// The statement that writes held completions: `warren_complete_runs` with one
/// array per column, in task id order (so the statement's text does not depend on the
/// order the runs ended in; the order its UPDATE locks rows in is the planner's).
fn complete_runs_statement(runs: &[DeferredCompletion]) -> String {
    let mut runs: Vec<&DeferredCompletion> = runs.iter().collect();
    runs.sort_by_key(|r| r.id);
    let numbers = |f: &dyn Fn(&DeferredCompletion) -> i64| {
        let items: Vec<String> = runs.iter().map(|r| f(r).to_string()).collect();
        format!("ARRAY[{}]::bigint[]", items.join(","))
    };
    let results: Vec<String> = runs.iter().map(|r| text_literal(&r.result)).collect();
    format!(
        "SELECT warren_complete_runs({}, {}, ARRAY[{}]::text[], {}, {})",
        numbers(&|r| r.id.0),
        numbers(&|r| r.token.0),
        results.join(","),
        numbers(&|r| r.started_at),
        numbers(&|r| r.finished_at),
    )
}

/// Writes held completions (fenced, with the check that the transaction is the run's
/// own) and, with `commit`, commits, in one message. Without `commit` the transaction
/// stays open: for work that could end it (task code's own connection), so that what
/// it commits holds each run's completion with its work.
pub(super) async fn complete_runs(
    c: &mut AsyncPgConnection,
    runs: &[DeferredCompletion],
    commit: bool,
) -> diesel::QueryResult<HeldEnd> {
    let mut sql = complete_runs_statement(runs);
    if commit {
        sql.push_str("; COMMIT");
    }
    use diesel::result::Error::DatabaseError;
    match c.batch_execute(&sql).await {
        Ok(()) => Ok(HeldEnd::Written),
        Err(DatabaseError(_, info)) if info.message().starts_with(ENDED) => {
            Ok(HeldEnd::TransactionEnded)
        }
        Err(DatabaseError(kind, info)) if info.message().starts_with(LEASE_LOST) => {
            match lost_task(info.message()) {
                Some(id) => Ok(HeldEnd::LeaseLost(id)),
                None => Err(DatabaseError(kind, info)),
            }
        }
        Err(e) => Err(e),
    }
}

/// The task a lost-lease error names (`warren: task 42 is no longer leased …`).
fn lost_task(message: &str) -> Option<TaskId> {
    let rest = message.strip_prefix(LEASE_LOST)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().map(TaskId)
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
    fn held_completions_go_in_one_statement_in_task_id_order() {
        let run = |id: i64, result: &str| DeferredCompletion {
            id: TaskId(id),
            token: LeaseToken(id * 10),
            result: result.into(),
            started_at: id + 100,
            finished_at: id + 200,
        };
        assert_eq!(
            complete_runs_statement(&[run(9, "{}"), run(3, r#"{"a":"it's"}"#)]),
            "SELECT warren_complete_runs(ARRAY[3,9]::bigint[], ARRAY[30,90]::bigint[], \
             ARRAY[E'{\"a\":\"it''s\"}',E'{}']::text[], ARRAY[103,109]::bigint[], \
             ARRAY[203,209]::bigint[])"
        );
    }

    #[test]
    fn a_lost_lease_names_its_task() {
        assert_eq!(
            lost_task("warren: task 42 is no longer leased to this run"),
            Some(TaskId(42))
        );
        assert_eq!(lost_task("warren: the run's transaction ended"), None);
    }

    #[test]
    fn a_held_completion_leaves_its_savepoint_for_the_next_run_to_release() {
        let mut tx = RunTx {
            begun: true,
            savepoint_set: true,
            ..RunTx::default()
        };
        tx.hold_completion();
        assert_eq!(
            tx.before_statement(),
            "RELEASE SAVEPOINT warren_task_sql; SAVEPOINT warren_task"
        );
        // A run that worked in the group leaves its member savepoint instead.
        tx.release_first = None;
        tx.member_set = true;
        tx.hold_completion();
        assert_eq!(
            tx.before_statement(),
            "RELEASE SAVEPOINT warren_task; SAVEPOINT warren_task"
        );
        // A run that did nothing leaves the earlier one to release.
        tx.hold_completion();
        assert_eq!(tx.release_first, Some(MEMBER_SAVEPOINT));
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
