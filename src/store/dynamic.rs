//! SQL written by task code: parameterised statements run on the task's own
//! transaction. Parameters are always bound, never spliced into the text.
//!
//! Task SQL numbers its parameters `$1`, `$2` … on both backends (for SQLite they are
//! rewritten to `?1`, `?2` …). Parameters arrive as a JSON array: `null`, booleans,
//! integers, floats and strings bind as such; arrays and objects bind as JSON text
//! (on PostgreSQL, cast it for a `jsonb` column: `$1::jsonb`). A `null` fits a column
//! of any type.
//! Query results come back as a JSON array of row objects keyed by column name; binary
//! values (`bytea`, SQLite blobs) as text: `\\x` followed by hex digits, PostgreSQL's
//! own notation, on both backends.

use super::pg_policy::PgStatementPolicy;
use super::task_sql::{Ran, TaskSqlError, TaskSqlOutput, TaskSqlWant, TaskStatement};
use super::{AnyConn, StoreError, StoreResult};
use diesel::pg::Pg;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::sql_types::{BigInt, Bool, Double, Nullable, Text};
use diesel_async::RunQueryDsl;
use serde_json::Value;

/// One bound parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlParam {
    /// SQL NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// A 64-bit integer.
    Int(i64),
    /// A double.
    Float(f64),
    /// Text (also JSON arrays and objects, as their JSON text).
    Text(String),
}

/// Parses a JSON array of parameters; an empty text or `null` means none.
pub fn parse_params(json: &str) -> StoreResult<Vec<SqlParam>> {
    let invalid = |message: String| StoreError::Invalid {
        field: "SQL parameters",
        message,
    };
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    let value: Value =
        serde_json::from_str(json).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
    let items = match value {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        _ => {
            return Err(invalid(
                "must be a JSON array such as [1, \"text\", null]".into(),
            ))
        }
    };
    Ok(items
        .into_iter()
        .map(|v| match v {
            Value::Null => SqlParam::Null,
            Value::Bool(b) => SqlParam::Bool(b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => SqlParam::Int(i),
                None => SqlParam::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => SqlParam::Text(s),
            other => SqlParam::Text(other.to_string()),
        })
        .collect())
}

/// Rewrites `$N` placeholders to SQLite's `?N`, leaving quoted text and comments alone.
pub fn sqlite_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' | '`' => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == c {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            '$' if chars.peek().is_some_and(|d| d.is_ascii_digit()) => out.push('?'),
            _ => out.push(c),
        }
    }
    out
}

/// A PostgreSQL parameter type left for the server to infer (OID 0), so a NULL
/// parameter fits a column of any type.
#[derive(diesel::sql_types::SqlType, diesel::query_builder::QueryId)]
#[diesel(postgres_type(oid = 0, array_oid = 0))]
struct Untyped;

/// The NULL value bound as [`Untyped`].
#[derive(Debug, Clone, Copy, diesel::expression::AsExpression)]
#[diesel(sql_type = Untyped)]
struct UntypedNull;

impl diesel::serialize::ToSql<Untyped, Pg> for UntypedNull {
    fn to_sql<'b>(
        &'b self,
        _out: &mut diesel::serialize::Output<'b, '_, Pg>,
    ) -> diesel::serialize::Result {
        Ok(diesel::serialize::IsNull::Yes)
    }
}

/// Runs `body` inside a savepoint, so a failing statement is undone alone and the
/// transaction stays usable (as it does on SQLite): task code may catch the error and
/// go on. A savepoint that cannot be set or released means the transaction is gone.
async fn in_savepoint<T>(
    c: &mut diesel_async::AsyncPgConnection,
    body: impl AsyncFnOnce(&diesel_async::AsyncPgConnection) -> Result<T, TaskSqlError>,
) -> Result<T, TaskSqlError> {
    use diesel_async::SimpleAsyncConnection;
    c.batch_execute("SAVEPOINT warren_task_sql")
        .await
        .map_err(transaction_gone)?;
    match body(c).await {
        Err(TaskSqlError::Database(e)) => {
            c.batch_execute(
                "ROLLBACK TO SAVEPOINT warren_task_sql; RELEASE SAVEPOINT warren_task_sql",
            )
            .await
            .map_err(transaction_gone)?;
            Err(TaskSqlError::Database(e))
        }
        result => {
            c.batch_execute("RELEASE SAVEPOINT warren_task_sql")
                .await
                .map_err(transaction_gone)?;
            result
        }
    }
}

/// The error for a savepoint the server refused: the run's transaction is no longer
/// there (unless the connection itself failed, which is an ordinary error).
fn transaction_gone(e: diesel::result::Error) -> TaskSqlError {
    use diesel::result::{DatabaseErrorKind, Error};
    match e {
        Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _,
        ) => TaskSqlError::Database(e),
        Error::DatabaseError(..) => TaskSqlError::TransactionEnded,
        other => TaskSqlError::Database(other),
    }
}

#[derive(diesel::QueryableByName)]
struct JsonRows {
    #[diesel(sql_type = Nullable<Text>)]
    rows: Option<String>,
}

/// Runs one statement of task code (already checked by the policy) on a PostgreSQL
/// connection inside its transaction, in a savepoint of its own. Rows are built into
/// JSON by PostgreSQL itself, which also enforces the cap, so an oversized result never
/// crosses the wire.
pub(super) async fn run_postgres(
    c: &mut diesel_async::AsyncPgConnection,
    sql: &str,
    params: Vec<SqlParam>,
    want: TaskSqlWant,
) -> Result<TaskSqlOutput, TaskSqlError> {
    in_savepoint(c, async |c| {
        run_postgres_bare(c, sql, params, want, false).await
    })
    .await
}

/// Runs one statement of task code on `c` as it is, with no savepoint: through a
/// shared reference, so that it can be pipelined behind the statements that set its
/// savepoint (see `pg_run_tx.rs`). With `prepare`, the text is prepared once on this
/// connection and reused by later runs (see `pg_statement_cache.rs`); otherwise it is
/// prepared for this use alone. A failure of the statement itself is
/// [`TaskSqlError::Database`].
pub(super) async fn run_postgres_bare(
    mut c: &diesel_async::AsyncPgConnection,
    sql: &str,
    params: Vec<SqlParam>,
    want: TaskSqlWant,
    prepare: bool,
) -> Result<TaskSqlOutput, TaskSqlError> {
    match want {
        TaskSqlWant::Changes => {
            let query = PgTaskQuery::new(sql, params, prepare);
            let n = query.execute(&mut c).await?;
            Ok(TaskSqlOutput::Changes(n as u64))
        }
        TaskSqlWant::Rows { max_bytes } => {
            // A CTE also accepts INSERT … RETURNING; the line breaks keep a trailing
            // comment from swallowing the wrapper.
            let wrapped = format!(
                "WITH warren_q AS (\n{sql}\n) SELECT CASE WHEN octet_length(t) > {max_bytes} THEN NULL ELSE t END AS rows \
                 FROM (SELECT coalesce(json_agg(warren_q), '[]'::json)::text AS t FROM warren_q) AS warren_r"
            );
            let query = PgTaskQuery::new(&wrapped, params, prepare);
            let mut rows: Vec<JsonRows> = query.load(&mut c).await?;
            match rows.pop() {
                Some(JsonRows { rows: Some(json) }) => Ok(TaskSqlOutput::Rows(json)),
                Some(JsonRows { rows: None }) => Err(TaskSqlError::TooLarge { limit: max_bytes }),
                None => Ok(TaskSqlOutput::Rows("[]".into())),
            }
        }
    }
}

/// A statement of task code with its parameters bound. diesel prepares it once per
/// connection, keyed by its text and parameter types, when `prepare` is on: the query
/// `sql_query` builds says it never may (diesel cannot tell a fixed text from a made-up
/// one), and this wrapper answers that question itself.
struct PgTaskQuery<'a> {
    query: BoxedSqlQuery<'a, Pg, SqlQuery>,
    prepare: bool,
}

impl<'a> PgTaskQuery<'a> {
    fn new(sql: &'a str, params: Vec<SqlParam>, prepare: bool) -> PgTaskQuery<'a> {
        let mut query = diesel::sql_query(sql).into_boxed::<Pg>();
        for param in params {
            query = match param {
                SqlParam::Null => query.bind::<Untyped, _>(UntypedNull),
                SqlParam::Bool(b) => query.bind::<Bool, _>(b),
                SqlParam::Int(i) => query.bind::<BigInt, _>(i),
                SqlParam::Float(f) => query.bind::<Double, _>(f),
                SqlParam::Text(t) => query.bind::<Text, _>(t),
            };
        }
        PgTaskQuery { query, prepare }
    }
}

super::pg_statement!(PgTaskQuery<'_>);

impl diesel::query_builder::QueryFragment<Pg> for PgTaskQuery<'_> {
    fn walk_ast<'b>(
        &'b self,
        out: diesel::query_builder::AstPass<'_, 'b, Pg>,
    ) -> diesel::QueryResult<()> {
        self.query.walk_ast(out)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> diesel::QueryResult<bool> {
        Ok(self.prepare)
    }
}

/// Runs a statement as task code would (the statement policy applies) on `conn`,
/// inside its open transaction, and returns the number of rows it changed. A failing
/// statement leaves the transaction usable.
pub async fn execute(conn: &mut AnyConn<'_>, sql: &str, params: Vec<SqlParam>) -> StoreResult<u64> {
    let statement = TaskStatement {
        sql: sql.to_string(),
        params,
        want: TaskSqlWant::Changes,
    };
    let policy = PgStatementPolicy::default();
    match super::task_sql::run(conn, &policy, &statement, None).await {
        Ok(Ran {
            output: TaskSqlOutput::Changes(n),
            ..
        }) => Ok(n),
        Ok(_) => Ok(0),
        Err(e) => Err(StoreError::TaskSql(e)),
    }
}

/// Runs a query (or a statement with `RETURNING`) as task code would (the statement
/// policy applies) on `conn`, inside its open transaction, and returns its rows as a
/// JSON array of objects keyed by column name (at most
/// [`super::task_sql::DEFAULT_MAX_ROWS_BYTES`] of it).
pub async fn query_json(
    conn: &mut AnyConn<'_>,
    sql: &str,
    params: Vec<SqlParam>,
) -> StoreResult<String> {
    let statement = TaskStatement {
        sql: sql.to_string(),
        params,
        want: TaskSqlWant::Rows {
            max_bytes: super::task_sql::DEFAULT_MAX_ROWS_BYTES,
        },
    };
    let policy = PgStatementPolicy::default();
    match super::task_sql::run(conn, &policy, &statement, None).await {
        Ok(Ran {
            output: TaskSqlOutput::Rows(rows),
            ..
        }) => Ok(rows),
        Ok(_) => Ok("[]".into()),
        Err(e) => Err(StoreError::TaskSql(e)),
    }
}
