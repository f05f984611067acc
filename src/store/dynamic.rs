//! SQL written by task code: parameterised statements run on the task's own
//! transaction. Parameters are always bound, never spliced into the text.
//!
//! Task SQL numbers its parameters `$1`, `$2` … on both backends (for SQLite they are
//! rewritten to `?1`, `?2` …). Parameters arrive as a JSON array: `null`, booleans,
//! integers, floats and strings bind as such; arrays and objects bind as JSON text
//! (on PostgreSQL, cast it for a `jsonb` column: `$1::jsonb`). A `null` fits a column
//! of any type.
//! Query results come back as a JSON array of row objects keyed by column name.

use super::{AnyConn, StoreError, StoreResult};
use diesel::pg::Pg;
use diesel::query_builder::{BoxedSqlQuery, SqlQuery};
use diesel::sql_types::{BigInt, Bool, Double, Nullable, Text};
use diesel::sqlite::Sqlite;
use diesel_async::RunQueryDsl;
use serde_json::{Map, Number, Value};

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

/// How each backend binds a NULL of unknown type.
trait BindNull: diesel::backend::Backend + Sized {
    fn bind_null<'f>(query: BoxedSqlQuery<'f, Self, SqlQuery>)
        -> BoxedSqlQuery<'f, Self, SqlQuery>;
}

impl BindNull for Pg {
    fn bind_null<'f>(query: BoxedSqlQuery<'f, Pg, SqlQuery>) -> BoxedSqlQuery<'f, Pg, SqlQuery> {
        query.bind::<Untyped, _>(UntypedNull)
    }
}

impl BindNull for Sqlite {
    // SQLite's columns take any type: a text-typed NULL is just NULL.
    fn bind_null<'f>(
        query: BoxedSqlQuery<'f, Sqlite, SqlQuery>,
    ) -> BoxedSqlQuery<'f, Sqlite, SqlQuery> {
        query.bind::<Nullable<Text>, _>(None::<String>)
    }
}

/// Binds every parameter onto a boxed query of backend `DB`.
fn bind_params<'f, DB>(
    mut query: BoxedSqlQuery<'f, DB, SqlQuery>,
    params: Vec<SqlParam>,
) -> BoxedSqlQuery<'f, DB, SqlQuery>
where
    DB: BindNull
        + diesel::sql_types::HasSqlType<Bool>
        + diesel::sql_types::HasSqlType<BigInt>
        + diesel::sql_types::HasSqlType<Double>
        + diesel::sql_types::HasSqlType<Text>,
    bool: diesel::serialize::ToSql<Bool, DB>,
    i64: diesel::serialize::ToSql<BigInt, DB>,
    f64: diesel::serialize::ToSql<Double, DB>,
    String: diesel::serialize::ToSql<Text, DB>,
{
    for p in params {
        query = match p {
            SqlParam::Null => DB::bind_null(query),
            SqlParam::Bool(b) => query.bind::<Bool, _>(b),
            SqlParam::Int(i) => query.bind::<BigInt, _>(i),
            SqlParam::Float(f) => query.bind::<Double, _>(f),
            SqlParam::Text(s) => query.bind::<Text, _>(s),
        };
    }
    query
}

fn single_statement(sql: &str) -> StoreResult<&str> {
    let trimmed = sql.trim().trim_end_matches(';').trim_end();
    if trimmed.is_empty() {
        return Err(StoreError::Invalid {
            field: "SQL",
            message: "the statement is empty".into(),
        });
    }
    Ok(trimmed)
}

/// Runs `body` inside a savepoint on PostgreSQL, so a failing statement is undone
/// alone and the transaction stays usable (as it does on SQLite): task code may catch
/// the error and go on.
async fn in_savepoint<T>(
    c: &mut diesel_async::AsyncPgConnection,
    body: impl AsyncFnOnce(&mut diesel_async::AsyncPgConnection) -> diesel::QueryResult<T>,
) -> diesel::QueryResult<T> {
    use diesel_async::SimpleAsyncConnection;
    c.batch_execute("SAVEPOINT warren_task_sql").await?;
    match body(c).await {
        Ok(value) => {
            c.batch_execute("RELEASE SAVEPOINT warren_task_sql").await?;
            Ok(value)
        }
        Err(e) => {
            c.batch_execute(
                "ROLLBACK TO SAVEPOINT warren_task_sql; RELEASE SAVEPOINT warren_task_sql",
            )
            .await?;
            Err(e)
        }
    }
}

/// Runs a statement on `conn` (inside a transaction) and returns the number of rows it
/// changed. A failing statement leaves the transaction usable.
pub async fn execute(conn: &mut AnyConn<'_>, sql: &str, params: Vec<SqlParam>) -> StoreResult<u64> {
    let sql = single_statement(sql)?;
    let n = match conn {
        AnyConn::Postgres(c) => {
            let query = bind_params(diesel::sql_query(sql).into_boxed::<Pg>(), params);
            in_savepoint(c, async |c| query.execute(c).await).await?
        }
        AnyConn::Sqlite(c) => {
            let sql = sqlite_placeholders(sql);
            c.spawn_blocking(move |inner| {
                let query = bind_params(diesel::sql_query(sql).into_boxed::<Sqlite>(), params);
                diesel::RunQueryDsl::execute(query, inner)
            })
            .await?
        }
    };
    Ok(n as u64)
}

#[derive(diesel::QueryableByName)]
struct JsonRows {
    #[diesel(sql_type = Text)]
    rows: String,
}

/// Runs a query (or a statement with `RETURNING`) on `conn` (inside a transaction) and
/// returns its rows as a JSON array of objects keyed by column name.
pub async fn query_json(
    conn: &mut AnyConn<'_>,
    sql: &str,
    params: Vec<SqlParam>,
) -> StoreResult<String> {
    let sql = single_statement(sql)?;
    match conn {
        AnyConn::Postgres(c) => {
            // PostgreSQL builds the JSON itself; a CTE also accepts INSERT … RETURNING.
            let wrapped = format!(
                "WITH warren_q AS ({sql}) SELECT coalesce(json_agg(warren_q), '[]'::json)::text AS rows FROM warren_q"
            );
            let query = bind_params(diesel::sql_query(wrapped).into_boxed::<Pg>(), params);
            let mut rows: Vec<JsonRows> = in_savepoint(c, async |c| query.load(c).await).await?;
            Ok(rows.pop().map(|r| r.rows).unwrap_or_else(|| "[]".into()))
        }
        AnyConn::Sqlite(c) => {
            let sql = sqlite_placeholders(sql);
            Ok(
                c.spawn_blocking(move |inner| sqlite_rows_json(inner, sql, params))
                    .await?,
            )
        }
    }
}

/// Reads every row of a SQLite query into JSON, column by column, by the values'
/// stored types.
fn sqlite_rows_json(
    conn: &mut diesel::SqliteConnection,
    sql: String,
    params: Vec<SqlParam>,
) -> diesel::QueryResult<String> {
    use diesel::connection::LoadConnection;
    use diesel::row::{Field, Row};
    use diesel::sqlite::SqliteType;

    let query = bind_params(diesel::sql_query(sql).into_boxed::<Sqlite>(), params);
    let mut out = Vec::new();
    for row in LoadConnection::load(conn, query)? {
        let row = row?;
        let mut object = Map::new();
        for i in 0..row.field_count() {
            let Some(field) = row.get(i) else { continue };
            let name = field.field_name().unwrap_or("?column?").to_string();
            let value = match field.value() {
                None => Value::Null,
                Some(mut v) => match v.value_type() {
                    Some(SqliteType::Long) | Some(SqliteType::Integer) => {
                        Value::from(v.read_long())
                    }
                    Some(SqliteType::Double) | Some(SqliteType::Float) => {
                        Number::from_f64(v.read_double()).map_or(Value::Null, Value::Number)
                    }
                    Some(SqliteType::Binary) => {
                        Value::Array(v.read_blob().iter().map(|b| Value::from(*b)).collect())
                    }
                    _ => Value::String(v.read_text().to_string()),
                },
            };
            object.insert(name, value);
        }
        out.push(Value::Object(object));
    }
    Ok(Value::Array(out).to_string())
}
