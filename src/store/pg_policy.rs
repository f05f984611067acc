//! The statement policy for task SQL on PostgreSQL, decided by PostgreSQL's own parser
//! (libpg_query through the `pg_query` crate), never by matching text.
//!
//! Task SQL runs on the run's own transaction, which commits with the task's
//! resolution. A statement that could end that transaction, change the session beyond
//! the run, reach files or the server, create code that issues SQL of its own, or touch
//! Warren's own tables would break exactly-once or the sandbox, so it is refused before
//! anything runs, with an error naming the kind of statement. Verdicts are cached by
//! statement text, so a statement a task runs again costs a hash lookup.
//!
//! What the check does not see: code that already exists in the database (a function,
//! a procedure or a trigger the application created) runs with the rights of the role
//! Warren logs in as. A production deployment should log in as a role that is not a
//! superuser (a superuser can switch roles through functions and read server files).

use std::collections::HashMap;
use std::sync::Mutex;

/// Why a statement was refused, shown to task code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The kind of statement, as a person names it (`COMMIT`, `SET`, `COPY` …).
    pub kind: String,
    /// Why that kind is not allowed, and what to do instead.
    pub reason: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is not allowed in task SQL: {}",
            self.kind, self.reason
        )
    }
}

/// Where the one statement of a text begins and ends, as PostgreSQL's parser saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatementSpan {
    start: usize,
    /// Zero: to the end of the text.
    len: usize,
}

impl StatementSpan {
    /// The statement's text within `sql` (the text the span was found in).
    pub fn of<'a>(&self, sql: &'a str) -> &'a str {
        let end = if self.len == 0 {
            sql.len()
        } else {
            self.start + self.len
        };
        sql.get(self.start..end).unwrap_or(sql)
    }
}

/// A statement the policy lets run: its own text, and what it leaves behind (see
/// [`Verdict::Allowed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Admitted<'a> {
    /// The statement's text, without a trailing `;` or comment.
    pub sql: &'a str,
    /// It leaves state on the session beyond the transaction.
    pub taints_session: bool,
    /// It leaves state in the transaction that a later run sharing it would see.
    pub binds_transaction: bool,
}

/// The verdict on one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The statement may run. `taints_session` is set when it leaves state on the
    /// connection beyond the transaction (a temporary object, a session-level setting
    /// or advisory lock through a function): the connection is then closed after the
    /// run instead of going back to the pool.
    Allowed {
        /// Where the statement is in the text (without a trailing `;` or comment).
        span: StatementSpan,
        /// Whether the connection must be closed after the run.
        taints_session: bool,
        /// Whether the statement leaves state in the transaction that a later run
        /// sharing it would inherit or wait for (SET LOCAL, SET CONSTRAINTS, a table
        /// lock of LOCK, TRUNCATE or a schema change, a transaction-level advisory
        /// lock): such a run's group commits after it (see `run_group.rs`).
        binds_transaction: bool,
    },
    /// The statement must not run.
    Refused(Refusal),
}

const TRANSACTION: &str = "the run's transaction commits together with the task's resolution; end the task with a resolution instead";
const SESSION: &str = "session state would outlive the run on a pooled connection (SET LOCAL, which ends with the transaction, is allowed)";
const FILES: &str = "task code has no access to files, programs or the server";
const CODE: &str = "it creates or runs code that issues SQL of its own, outside the task's checks";
const WARREN_TABLES: &str =
    "Warren's own tables are off limits to task SQL; use the host API (scheduleTask, metadata)";
const ROLES: &str = "roles, databases and server settings are not task code's to change";
const ONE_STATEMENT: &str = "send one statement per call";
const NAMES: &str = "Warren's own statements run in the same transaction and must find their tables; qualify names with their schema instead";

const WARREN_SETTINGS: &str = "Warren's own statements in the run's transaction depend on search_path, the role and the settings under `warren.`";

const SET_CONFIG_NAME: &str = "write the setting's name out as text, so that it can be checked";

/// Functions that reach files, other sessions or the server, or run SQL text of
/// their own (which the parser cannot see into).
const REFUSED_FUNCTIONS: &[&str] = &[
    "lo_import",
    "lo_export",
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_stat_file",
    "pg_ls_logdir",
    "pg_ls_waldir",
    "pg_ls_tmpdir",
    "pg_ls_archive_statusdir",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_promote",
    "pg_switch_wal",
    "pg_create_restore_point",
    "pg_logical_emit_message",
    "pg_notify_warren",
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    "cursor_to_xml",
    "cursor_to_xmlschema",
    "table_to_xml",
    "table_to_xmlschema",
    "table_to_xml_and_xmlschema",
    "schema_to_xml",
    "schema_to_xmlschema",
    "schema_to_xml_and_xmlschema",
    "database_to_xml",
    "database_to_xmlschema",
    "database_to_xml_and_xmlschema",
    "dblink",
    "dblink_exec",
    "dblink_connect",
    "dblink_connect_u",
    "dblink_send_query",
    "dblink_open",
];

/// Functions that change the session beyond the transaction: allowed, but the
/// connection is closed after the run.
const SESSION_FUNCTIONS: &[&str] = &[
    "set_config",
    "pg_advisory_lock",
    "pg_advisory_lock_shared",
    "pg_try_advisory_lock",
    "pg_try_advisory_lock_shared",
];

/// Decides whether task SQL may run on PostgreSQL, caching the verdict by text.
#[derive(Debug, Default)]
pub struct PgStatementPolicy {
    verdicts: Mutex<HashMap<String, Verdict>>,
}

/// At most this many verdicts are kept; the cache starts afresh past it, so a task
/// that builds statement texts on the fly cannot grow it without bound.
const CACHE_LIMIT: usize = 4096;

impl PgStatementPolicy {
    /// Admits `sql` for running, or refuses it with the error task code sees: the
    /// statement's own text within `sql`, and what it leaves behind.
    pub(super) fn admit<'a>(
        &self,
        sql: &'a str,
    ) -> Result<Admitted<'a>, super::task_sql::TaskSqlError> {
        match self.check(sql) {
            Verdict::Refused(refusal) => {
                Err(super::task_sql::TaskSqlError::Refused(refusal.to_string()))
            }
            Verdict::Allowed {
                span,
                taints_session,
                binds_transaction,
            } => Ok(Admitted {
                sql: span.of(sql),
                taints_session,
                binds_transaction,
            }),
        }
    }

    /// The verdict on `sql` (one statement, `$N` parameters).
    pub fn check(&self, sql: &str) -> Verdict {
        if let Some(verdict) = self.lock().get(sql) {
            return verdict.clone();
        }
        let verdict = classify(sql);
        let mut verdicts = self.lock();
        if verdicts.len() >= CACHE_LIMIT {
            verdicts.clear();
        }
        verdicts.insert(sql.to_string(), verdict.clone());
        verdict
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Verdict>> {
        // A panic while holding the lock leaves a map that is still consistent.
        self.verdicts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn refused(kind: impl Into<String>, reason: &'static str) -> Verdict {
    Verdict::Refused(Refusal {
        kind: kind.into(),
        reason: reason.to_string(),
    })
}

/// Classifies one statement text with PostgreSQL's parser.
pub fn classify(sql: &str) -> Verdict {
    use pg_query::NodeEnum as N;
    let parsed = match pg_query::parse(sql, 0) {
        Ok(parsed) => parsed,
        // Fail closed: what PostgreSQL's parser cannot read is not sent to the server.
        Err(e) => {
            return Verdict::Refused(Refusal {
                kind: "a statement PostgreSQL's parser cannot read".into(),
                reason: e.to_string(),
            })
        }
    };
    let statements = &parsed.protobuf.stmts;
    if statements.len() > 1 {
        return refused("more than one statement", ONE_STATEMENT);
    }
    let Some(raw) = statements.first() else {
        return refused("an empty statement", ONE_STATEMENT);
    };
    let Some(node) = raw.stmt.as_ref().and_then(|s| s.node.as_ref()) else {
        return refused("an empty statement", ONE_STATEMENT);
    };
    let span = StatementSpan {
        start: usize::try_from(raw.stmt_location).unwrap_or(0),
        len: usize::try_from(raw.stmt_len).unwrap_or(0),
    };
    // SET LOCAL and SET CONSTRAINTS hold until the transaction ends, and so do the
    // table locks of LOCK, TRUNCATE and schema changes (ACCESS EXCLUSIVE or SHARE).
    let binds_transaction = matches!(
        node,
        N::VariableSetStmt(_)
            | N::ConstraintsSetStmt(_)
            | N::LockStmt(_)
            | N::TruncateStmt(_)
            | N::AlterTableStmt(_)
            | N::DropStmt(_)
            | N::IndexStmt(_)
            | N::RenameStmt(_)
            | N::RefreshMatViewStmt(_)
            | N::ClusterStmt(_)
            | N::ReindexStmt(_)
            | N::CreateTrigStmt(_)
            | N::AlterTableMoveAllStmt(_)
    );
    let kind = match node {
        N::TransactionStmt(t) => return refused(transaction_kind(t.kind), TRANSACTION),
        N::VariableSetStmt(s) => {
            // Warren's own statements share the transaction: the role they run as and
            // how their names resolve stay as they are.
            let changes_role = matches!(s.name.as_str(), "role" | "session_authorization");
            if s.name == "search_path" {
                return refused("SET search_path", NAMES);
            } else if s.name.to_ascii_lowercase().starts_with("warren.") {
                return refused(format!("SET {}", s.name), WARREN_SETTINGS);
            } else if s.is_local && !changes_role {
                None
            } else if changes_role {
                return refused(format!("SET {}", s.name.to_uppercase()), ROLES);
            } else {
                return refused(
                    if s.kind == pg_query::protobuf::VariableSetKind::VarReset as i32
                        || s.kind == pg_query::protobuf::VariableSetKind::VarResetAll as i32
                    {
                        "RESET"
                    } else {
                        "SET"
                    },
                    SESSION,
                );
            }
        }
        N::DiscardStmt(_) => Some(("DISCARD", SESSION)),
        N::ListenStmt(_) => Some(("LISTEN", SESSION)),
        N::UnlistenStmt(_) => Some(("UNLISTEN", SESSION)),
        N::LoadStmt(_) => Some(("LOAD", FILES)),
        N::PrepareStmt(_) => Some(("PREPARE", SESSION)),
        N::ExecuteStmt(_) => Some(("EXECUTE", SESSION)),
        N::DeallocateStmt(_) => Some(("DEALLOCATE", SESSION)),
        N::DeclareCursorStmt(_) => Some(("DECLARE CURSOR", SESSION)),
        N::FetchStmt(_) => Some(("FETCH", SESSION)),
        N::ClosePortalStmt(_) => Some(("CLOSE", SESSION)),
        N::CopyStmt(_) => Some(("COPY", FILES)),
        N::DoStmt(_) => Some(("DO", CODE)),
        N::CallStmt(_) => Some(("CALL", CODE)),
        N::CreateFunctionStmt(_) => Some(("CREATE FUNCTION/PROCEDURE", CODE)),
        N::AlterFunctionStmt(_) => Some(("ALTER FUNCTION", CODE)),
        N::CreateTrigStmt(_) => Some(("CREATE TRIGGER", CODE)),
        N::RuleStmt(_) => Some(("CREATE RULE", CODE)),
        N::CreateEventTrigStmt(_) => Some(("CREATE EVENT TRIGGER", CODE)),
        N::AlterEventTrigStmt(_) => Some(("ALTER EVENT TRIGGER", CODE)),
        N::CreatePlangStmt(_) => Some(("CREATE LANGUAGE", CODE)),
        N::CreateExtensionStmt(_) => Some(("CREATE EXTENSION", CODE)),
        N::AlterExtensionStmt(_) | N::AlterExtensionContentsStmt(_) => {
            Some(("ALTER EXTENSION", CODE))
        }
        N::CreateCastStmt(_) => Some(("CREATE CAST", CODE)),
        N::CreateTransformStmt(_) => Some(("CREATE TRANSFORM", CODE)),
        N::DefineStmt(_) => Some(("CREATE AGGREGATE/OPERATOR/TYPE", CODE)),
        N::CreateOpClassStmt(_) | N::CreateOpFamilyStmt(_) | N::AlterOpFamilyStmt(_) => {
            Some(("CREATE OPERATOR CLASS", CODE))
        }
        N::CreateConversionStmt(_) => Some(("CREATE CONVERSION", CODE)),
        N::CreateFdwStmt(_) | N::AlterFdwStmt(_) => Some(("FOREIGN DATA WRAPPER", FILES)),
        N::CreateForeignServerStmt(_) | N::AlterForeignServerStmt(_) => {
            Some(("FOREIGN SERVER", FILES))
        }
        N::CreateForeignTableStmt(_) => Some(("CREATE FOREIGN TABLE", FILES)),
        N::ImportForeignSchemaStmt(_) => Some(("IMPORT FOREIGN SCHEMA", FILES)),
        N::CreateUserMappingStmt(_) | N::AlterUserMappingStmt(_) | N::DropUserMappingStmt(_) => {
            Some(("USER MAPPING", FILES))
        }
        N::VacuumStmt(_) => Some(("VACUUM/ANALYZE", TRANSACTION)),
        N::CheckPointStmt(_) => Some(("CHECKPOINT", ROLES)),
        N::AlterSystemStmt(_) => Some(("ALTER SYSTEM", ROLES)),
        N::CreateRoleStmt(_) | N::AlterRoleStmt(_) | N::DropRoleStmt(_) => Some(("ROLE", ROLES)),
        N::AlterRoleSetStmt(_) => Some(("ALTER ROLE SET", ROLES)),
        N::GrantRoleStmt(_) => Some(("GRANT ROLE", ROLES)),
        N::ReassignOwnedStmt(_) | N::DropOwnedStmt(_) => Some(("REASSIGN/DROP OWNED", ROLES)),
        N::CreatedbStmt(_) | N::DropdbStmt(_) | N::AlterDatabaseStmt(_) => {
            Some(("DATABASE", ROLES))
        }
        N::AlterDatabaseSetStmt(_) | N::AlterDatabaseRefreshCollStmt(_) => {
            Some(("ALTER DATABASE", ROLES))
        }
        N::CreateTableSpaceStmt(_)
        | N::DropTableSpaceStmt(_)
        | N::AlterTableSpaceOptionsStmt(_) => Some(("TABLESPACE", FILES)),
        N::CreateSubscriptionStmt(_)
        | N::AlterSubscriptionStmt(_)
        | N::DropSubscriptionStmt(_)
        | N::CreatePublicationStmt(_)
        | N::AlterPublicationStmt(_) => Some(("PUBLICATION/SUBSCRIPTION", ROLES)),
        N::SecLabelStmt(_) => Some(("SECURITY LABEL", ROLES)),
        N::ConstraintsSetStmt(_) => None,
        _ => None,
    };
    if let Some((kind, reason)) = kind {
        return refused(kind, reason);
    }
    walk(&parsed.protobuf, span, binds_transaction)
}

fn transaction_kind(kind: i32) -> &'static str {
    use pg_query::protobuf::TransactionStmtKind as K;
    match K::try_from(kind) {
        Ok(K::TransStmtBegin) => "BEGIN",
        Ok(K::TransStmtStart) => "START TRANSACTION",
        Ok(K::TransStmtCommit) => "COMMIT",
        Ok(K::TransStmtRollback) => "ROLLBACK",
        Ok(K::TransStmtSavepoint) => "SAVEPOINT",
        Ok(K::TransStmtRelease) => "RELEASE SAVEPOINT",
        Ok(K::TransStmtRollbackTo) => "ROLLBACK TO SAVEPOINT",
        Ok(K::TransStmtPrepare) => "PREPARE TRANSACTION",
        Ok(K::TransStmtCommitPrepared) => "COMMIT PREPARED",
        Ok(K::TransStmtRollbackPrepared) => "ROLLBACK PREPARED",
        _ => "transaction control",
    }
}

/// Looks at every node of the tree (CTEs, subqueries and expressions included) for
/// tables and functions the policy cares about. The tree is walked through its
/// serialized form, so no kind of node is left out.
fn walk(
    tree: &pg_query::protobuf::ParseResult,
    span: StatementSpan,
    mut binds_transaction: bool,
) -> Verdict {
    let Ok(value) = serde_json::to_value(tree) else {
        return refused("a statement Warren cannot inspect", CODE);
    };
    let mut taints_session = false;
    let mut stack = vec![&value];
    while let Some(value) = stack.pop() {
        match value {
            serde_json::Value::Object(map) => {
                // A relation (`RangeVar`): wrapped as a node, or a typed field such as
                // an UPDATE's target; its `relname` tells it apart.
                let range = map
                    .get("RangeVar")
                    .or_else(|| map.contains_key("relname").then_some(value));
                if let Some(range) = range {
                    let name = range.get("relname").and_then(|v| v.as_str()).unwrap_or("");
                    if is_warren_name(name) {
                        return refused(format!("a statement on {name}"), WARREN_TABLES);
                    }
                    if range.get("relpersistence").and_then(|v| v.as_str()) == Some("t") {
                        taints_session = true;
                    }
                }
                if let Some(drop) = map.get("DropStmt") {
                    // Dropped objects are named by lists of identifiers, not relations.
                    if let Some(name) = first_warren_identifier(drop) {
                        return refused(format!("a statement on {name}"), WARREN_TABLES);
                    }
                }
                if let Some(call) = map.get("FuncCall") {
                    let name = function_name(call);
                    if is_warren_name(&name) {
                        return refused(format!("calling {name}"), WARREN_TABLES);
                    }
                    if REFUSED_FUNCTIONS.contains(&name.as_str()) || name.starts_with("dblink") {
                        return refused(format!("calling {name}"), FILES);
                    }
                    if name == "set_config" {
                        if let Some(refusal) = set_config_refusal(call) {
                            return refusal;
                        }
                    }
                    if SESSION_FUNCTIONS.contains(&name.as_str()) {
                        taints_session = true;
                    }
                    if name.starts_with("pg_advisory_xact_lock")
                        || name.starts_with("pg_try_advisory_xact_lock")
                    {
                        binds_transaction = true;
                    }
                }
                stack.extend(map.values());
            }
            serde_json::Value::Array(items) => stack.extend(items.iter()),
            _ => {}
        }
    }
    Verdict::Allowed {
        span,
        taints_session,
        binds_transaction,
    }
}

/// The first identifier under `value` that names a Warren object.
fn first_warren_identifier(value: &serde_json::Value) -> Option<String> {
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(name) = map.get("String").and_then(|s| s.get("sval")) {
                    if let Some(name) = name.as_str().filter(|n| is_warren_name(n)) {
                        return Some(name.to_string());
                    }
                }
                stack.extend(map.values());
            }
            serde_json::Value::Array(items) => stack.extend(items.iter()),
            _ => {}
        }
    }
    None
}

/// Why a `set_config` call is refused, if it is: one whose setting's name is not
/// written out (a parameter, an expression), or names a setting Warren's own
/// statements in the run's transaction depend on (`search_path`, roles, `warren.*`).
fn set_config_refusal(call: &serde_json::Value) -> Option<Verdict> {
    let first = call.get("args").and_then(|a| a.as_array())?.first()?;
    let mut names = Vec::new();
    let mut stack = vec![first];
    while let Some(value) = stack.pop() {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(name) = map.get("sval").and_then(|v| v.as_str()) {
                    names.push(name.to_ascii_lowercase());
                }
                stack.extend(map.values());
            }
            serde_json::Value::Array(items) => stack.extend(items.iter()),
            _ => {}
        }
    }
    let [name] = names.as_slice() else {
        return Some(refused("set_config of a computed setting", SET_CONFIG_NAME));
    };
    let guarded = name.starts_with("warren.")
        || matches!(
            name.as_str(),
            "search_path" | "role" | "session_authorization"
        );
    guarded.then(|| refused(format!("set_config of {name}"), WARREN_SETTINGS))
}

/// The unqualified, lower-case name of a called function.
fn function_name(call: &serde_json::Value) -> String {
    call.get("funcname")
        .and_then(|v| v.as_array())
        .and_then(|parts| parts.last())
        .and_then(|last| last.pointer("/node/String/sval"))
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

fn is_warren_name(name: &str) -> bool {
    name.len() >= 7 && name[..7].eq_ignore_ascii_case("warren_")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(sql: &str) -> Option<String> {
        match classify(sql) {
            Verdict::Refused(r) => Some(r.kind),
            Verdict::Allowed { .. } => None,
        }
    }

    #[test]
    fn ordinary_work_is_allowed() {
        for sql in [
            "SELECT 1",
            "INSERT INTO t (a) VALUES ($1)",
            "UPDATE t SET a = a + 1 WHERE id = $1 RETURNING a",
            "DELETE FROM t WHERE id IN (SELECT id FROM u)",
            "CREATE TABLE IF NOT EXISTS records (id bigserial primary key, value text)",
            "CREATE INDEX ON records (value)",
            "ALTER TABLE records ADD COLUMN x int",
            "WITH x AS (SELECT 1 AS a) SELECT * FROM x",
            "SET LOCAL statement_timeout = '1s'",
            "SELECT set_config('a.b', 'c', true)",
            "SHOW search_path",
            "LOCK TABLE records IN SHARE MODE",
            "TRUNCATE records",
        ] {
            assert_eq!(kind(sql), None, "{sql}");
        }
    }

    #[test]
    fn transaction_control_is_refused_by_kind() {
        assert_eq!(kind("COMMIT").as_deref(), Some("COMMIT"));
        assert_eq!(kind("end").as_deref(), Some("COMMIT"));
        assert_eq!(kind("BEGIN").as_deref(), Some("BEGIN"));
        assert_eq!(kind("ROLLBACK").as_deref(), Some("ROLLBACK"));
        assert_eq!(kind("savepoint a").as_deref(), Some("SAVEPOINT"));
        assert_eq!(kind("RELEASE a").as_deref(), Some("RELEASE SAVEPOINT"));
        assert_eq!(
            kind("PREPARE TRANSACTION 'x'").as_deref(),
            Some("PREPARE TRANSACTION")
        );
    }

    #[test]
    fn session_files_and_code_are_refused() {
        assert_eq!(
            kind("SET default_transaction_read_only = on").as_deref(),
            Some("SET")
        );
        assert_eq!(kind("RESET ALL").as_deref(), Some("RESET"));
        assert_eq!(kind("SET LOCAL ROLE postgres").as_deref(), Some("SET ROLE"));
        assert_eq!(
            kind("SET LOCAL search_path = evil").as_deref(),
            Some("SET search_path")
        );
        assert_eq!(
            kind("SET LOCAL warren.run = ''").as_deref(),
            Some("SET warren.run")
        );
        for (sql, refused) in [
            (
                "SELECT set_config('warren.run', '1', false)",
                Some("set_config of warren.run"),
            ),
            (
                "SELECT set_config('Search_Path', 'x', true)",
                Some("set_config of search_path"),
            ),
            (
                "SELECT set_config($1, '1', false)",
                Some("set_config of a computed setting"),
            ),
            (
                "SELECT set_config('myapp.' || 'x', '1', true)",
                Some("set_config of a computed setting"),
            ),
            ("SELECT set_config('myapp.tenant', $1, true) AS v", None),
        ] {
            assert_eq!(kind(sql).as_deref(), refused, "{sql}");
        }
        assert_eq!(kind("DISCARD ALL").as_deref(), Some("DISCARD"));
        assert_eq!(kind("LISTEN x").as_deref(), Some("LISTEN"));
        assert_eq!(kind("COPY t TO '/tmp/x'").as_deref(), Some("COPY"));
        assert_eq!(kind("COPY t FROM PROGRAM 'id'").as_deref(), Some("COPY"));
        assert_eq!(kind("DO $$ BEGIN COMMIT; END $$").as_deref(), Some("DO"));
        assert_eq!(kind("CALL p()").as_deref(), Some("CALL"));
        assert_eq!(
            kind("CREATE FUNCTION f() RETURNS int AS 'select 1' LANGUAGE sql").as_deref(),
            Some("CREATE FUNCTION/PROCEDURE")
        );
        assert_eq!(
            kind("CREATE TRIGGER t AFTER INSERT ON x FOR EACH ROW EXECUTE FUNCTION f()").as_deref(),
            Some("CREATE TRIGGER")
        );
        assert_eq!(
            kind("SELECT lo_import('/etc/passwd')").as_deref(),
            Some("calling lo_import")
        );
        assert_eq!(
            kind("SELECT query_to_xml('select * from warren_tasks', true, true, '')").as_deref(),
            Some("calling query_to_xml")
        );
        assert_eq!(kind("VACUUM").as_deref(), Some("VACUUM/ANALYZE"));
    }

    #[test]
    fn state_that_lasts_until_the_transaction_ends_is_told_apart() {
        let binds = |sql: &str| match classify(sql) {
            Verdict::Allowed {
                binds_transaction, ..
            } => binds_transaction,
            Verdict::Refused(r) => panic!("{sql}: refused: {r}"),
        };
        for sql in [
            "SET LOCAL statement_timeout = '1s'",
            "SET LOCAL app.tenant = 'a'",
            "SET CONSTRAINTS ALL IMMEDIATE",
            "LOCK TABLE t IN EXCLUSIVE MODE",
            "TRUNCATE t",
            "ALTER TABLE t ADD COLUMN b INT",
            "CREATE INDEX ON t (a)",
            "DROP TABLE t",
            "SELECT pg_advisory_xact_lock(1)",
            "SELECT pg_try_advisory_xact_lock_shared(1, 2)",
            "WITH l AS (SELECT pg_advisory_xact_lock(7)) INSERT INTO t SELECT 1 FROM l",
        ] {
            assert!(binds(sql), "{sql}");
        }
        for sql in [
            "INSERT INTO t VALUES (1)",
            "SELECT * FROM t FOR UPDATE",
            "UPDATE t SET a = a + 1 WHERE id = $1 RETURNING a",
        ] {
            assert!(!binds(sql), "{sql}");
        }
    }

    #[test]
    fn more_than_one_statement_is_refused() {
        assert_eq!(
            kind("INSERT INTO t VALUES (1); COMMIT").as_deref(),
            Some("more than one statement")
        );
        assert_eq!(
            kind("SELECT 1; SELECT 2;").as_deref(),
            Some("more than one statement")
        );
        assert_eq!(kind("SELECT 1;").as_deref(), None);
    }

    #[test]
    fn warren_tables_are_refused_wherever_they_appear() {
        for sql in [
            "UPDATE warren_tasks SET state = 'completed'",
            "SELECT * FROM public.warren_tasks",
            "WITH x AS (SELECT id FROM warren_tasks) SELECT * FROM x",
            "SELECT (SELECT count(*) FROM WARREN_TASK_METADATA)",
            "SELECT 1 WHERE EXISTS (SELECT 1 FROM t JOIN warren_nodes n ON true)",
            "CREATE VIEW v AS SELECT * FROM warren_tasks",
            "DROP TABLE warren_settings",
            "DROP INDEX warren_tasks_claim",
            "SELECT CASE WHEN true THEN (SELECT 1 FROM warren_settings) END",
            "SELECT warren_schedule('a:b', '{}')",
        ] {
            let k = kind(sql).unwrap_or_else(|| panic!("allowed: {sql}"));
            assert!(k.contains("warren_"), "{sql}: {k}");
        }
    }

    #[test]
    fn session_changes_through_functions_and_temporary_tables_taint_the_connection() {
        let taints = |sql: &str| match classify(sql) {
            Verdict::Allowed { taints_session, .. } => taints_session,
            Verdict::Refused(r) => panic!("{sql}: {r}"),
        };
        for sql in [
            "SELECT set_config('default_transaction_read_only', 'on', false)",
            "SELECT pg_advisory_lock(1)",
            "CREATE TEMP TABLE x (a int)",
            "SELECT 1 AS a INTO TEMP y",
        ] {
            assert!(taints(sql), "{sql}");
        }
        assert!(!taints("SELECT pg_advisory_xact_lock(1)"));
    }

    #[test]
    fn the_span_leaves_out_a_trailing_semicolon_and_comment() {
        let sql = "  SELECT 1 ; -- done";
        let Verdict::Allowed { span, .. } = classify(sql) else {
            panic!("refused")
        };
        assert_eq!(span.of(sql).trim(), "SELECT 1");
    }

    #[test]
    fn verdicts_are_cached_by_text() {
        let policy = PgStatementPolicy::default();
        assert!(matches!(policy.check("COMMIT"), Verdict::Refused(_)));
        assert!(matches!(policy.check("COMMIT"), Verdict::Refused(_)));
        assert_eq!(policy.lock().len(), 1);
    }
}
