//! The harness's own read access to a scenario's database, on either backend: queue
//! counts, dead tuples, start latencies, effect counts and integrity checks. On
//! PostgreSQL it is one session of its own that reconnects after a fault; on SQLite a
//! Warren store (reads run beside the node's writer in WAL mode).

use crate::Error;
use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use warren::store::{AnyConn, Store};

/// Where a probe reads.
pub enum Probe {
    /// A PostgreSQL database, read through a session of its own.
    Postgres {
        /// The database URL (the harness's superuser).
        url: String,
        /// The session, when connected.
        conn: Option<Box<AsyncPgConnection>>,
    },
    /// A SQLite database, read through a Warren store.
    Sqlite(Store),
}

/// Tasks by state, as one sample of the queue.
#[derive(Debug, Clone, Copy, Default, QueryableByName)]
pub struct QueueCounts {
    /// Completed tasks.
    #[diesel(sql_type = BigInt)]
    pub completed: i64,
    /// Pending and running tasks.
    #[diesel(sql_type = BigInt)]
    pub backlog: i64,
    /// Failed and cancelled tasks.
    #[diesel(sql_type = BigInt)]
    pub failed: i64,
}

#[derive(QueryableByName)]
struct Value {
    #[diesel(sql_type = BigInt)]
    v: i64,
}

#[derive(QueryableByName)]
struct Pair {
    #[diesel(sql_type = BigInt)]
    a: i64,
    #[diesel(sql_type = BigInt)]
    b: i64,
}

#[derive(QueryableByName)]
struct Line {
    #[diesel(sql_type = Text)]
    line: String,
}

const COUNTS: &str = "SELECT \
     COUNT(*) FILTER (WHERE state = 'completed') AS completed, \
     COUNT(*) FILTER (WHERE state IN ('pending', 'running')) AS backlog, \
     COUNT(*) FILTER (WHERE state IN ('failed', 'cancelled')) AS failed \
     FROM warren_tasks";

impl Probe {
    /// The queue's counts now.
    pub async fn counts(&mut self) -> Result<QueueCounts, Error> {
        let rows: Vec<QueueCounts> = self.load(COUNTS).await?;
        Ok(rows.into_iter().next().unwrap_or_default())
    }

    /// Dead tuples of `warren_tasks` as the statistics collector last saw them
    /// (PostgreSQL only).
    pub async fn dead_tuples(&mut self) -> Result<Option<i64>, Error> {
        if matches!(self, Probe::Sqlite(_)) {
            return Ok(None);
        }
        self.scalar(
            "SELECT COALESCE(MAX(n_dead_tup), 0) AS v FROM pg_stat_user_tables \
             WHERE relname = 'warren_tasks'",
        )
        .await
        .map(Some)
    }

    /// One BIGINT value (a column named `v`).
    pub async fn scalar(&mut self, sql: &str) -> Result<i64, Error> {
        let rows: Vec<Value> = self.load(sql).await?;
        rows.into_iter()
            .next()
            .map(|r| r.v)
            .ok_or_else(|| format!("no row from {sql}").into())
    }

    /// Pairs of BIGINT values (columns `a` and `b`).
    pub async fn pairs(&mut self, sql: &str) -> Result<Vec<(i64, i64)>, Error> {
        let rows: Vec<Pair> = self.load(sql).await?;
        Ok(rows.into_iter().map(|r| (r.a, r.b)).collect())
    }

    /// Text lines (a column named `line`).
    pub async fn lines(&mut self, sql: &str) -> Result<Vec<String>, Error> {
        let rows: Vec<Line> = self.load(sql).await?;
        Ok(rows.into_iter().map(|r| r.line).collect())
    }

    /// Runs statements that return nothing.
    pub async fn execute(&mut self, sql: &str) -> Result<(), Error> {
        match self {
            Probe::Postgres { .. } => {
                let result = self.pg().await?.batch_execute(sql).await;
                if result.is_err() {
                    // The session may be gone: reconnect next time.
                    if let Probe::Postgres { conn, .. } = self {
                        *conn = None;
                    }
                }
                Ok(result?)
            }
            Probe::Sqlite(store) => {
                let mut conn = store.connection().await?;
                let AnyConn::Sqlite(c) = conn.as_any() else {
                    unreachable!("a SQLite store")
                };
                Ok(c.batch_execute(sql).await?)
            }
        }
    }

    async fn load<T>(&mut self, sql: &str) -> Result<Vec<T>, Error>
    where
        T: QueryableByName<diesel::pg::Pg>
            + QueryableByName<diesel::sqlite::Sqlite>
            + Send
            + 'static,
    {
        match self {
            Probe::Postgres { .. } => {
                let conn = self.pg().await?;
                match diesel::sql_query(sql).load(conn).await {
                    Ok(rows) => Ok(rows),
                    Err(e) => {
                        // The session may be gone (a restart, a kill): reconnect next time.
                        if let Probe::Postgres { conn, .. } = self {
                            *conn = None;
                        }
                        Err(e.into())
                    }
                }
            }
            Probe::Sqlite(store) => {
                let mut conn = store.connection().await?;
                let AnyConn::Sqlite(c) = conn.as_any() else {
                    unreachable!("a SQLite store")
                };
                Ok(diesel::sql_query(sql).load(c).await?)
            }
        }
    }

    async fn pg(&mut self) -> Result<&mut AsyncPgConnection, Error> {
        let Probe::Postgres { url, conn } = self else {
            unreachable!("a PostgreSQL probe")
        };
        if conn.is_none() {
            *conn = Some(Box::new(AsyncPgConnection::establish(url).await?));
        }
        Ok(conn.as_mut().expect("just connected"))
    }
}
