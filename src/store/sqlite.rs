//! SQLite: the file, its pragmas, the connection pool and the embedded migrations.

use super::conn::{wait_for_abandoned_work, DetachedBlocking, SqliteConn};
use super::error::MigrationError;
use super::sqlite_guard::{self, SqliteGuard};
use super::{StoreConfig, StoreError, StoreResult};
use deadpool::managed::QueueMode;
use diesel::connection::SimpleConnection;
use diesel::{Connection, SqliteConnection};
use diesel_async::pooled_connection::deadpool::{Hook, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use futures_util::FutureExt;
use std::path::{Path, PathBuf};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// The file path in a SQLite URL: `sqlite://PATH`, `sqlite:PATH`, or a plain path.
pub(super) fn path_from_url(url: &str) -> StoreResult<PathBuf> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    if path.is_empty() || path.contains("://") || path == ":memory:" {
        // An in-memory database would be a different, empty database per connection.
        return Err(StoreError::BadUrl(url.to_string()));
    }
    Ok(PathBuf::from(path))
}

/// Opens one connection with Warren's settings: WAL journal, a busy timeout, foreign
/// keys, and the guard that keeps task SQL in its lane (see `sqlite_guard.rs`).
fn establish(
    path: &str,
    busy_timeout_ms: u64,
) -> diesel::ConnectionResult<(SqliteConnection, std::sync::Arc<SqliteGuard>)> {
    let (mut conn, guard) = sqlite_guard::open(path)?;
    configure(&mut conn, busy_timeout_ms)?;
    guard.install_busy_handler(&mut conn, std::time::Duration::from_millis(busy_timeout_ms));
    Ok((conn, guard))
}

/// The pragmas every connection runs with.
fn configure(conn: &mut SqliteConnection, busy_timeout_ms: u64) -> diesel::ConnectionResult<()> {
    conn.batch_execute(&format!(
        "PRAGMA busy_timeout = {busy_timeout_ms}; PRAGMA journal_mode = WAL; \
         PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;"
    ))
    .map_err(diesel::ConnectionError::CouldntSetupConfiguration)
}

/// Builds the connection pool.
pub(super) fn pool(path: &Path, config: &StoreConfig) -> StoreResult<Pool<SqliteConn>> {
    let busy = config.sqlite_busy_timeout_ms;
    let mut manager_config = ManagerConfig::<SqliteConn>::default();
    // A file connection does not go away: reusing one checks for a leftover transaction
    // but runs no test query (a trip through the blocking pool per checkout).
    manager_config.recycling_method = RecyclingMethod::Fast;
    manager_config.custom_setup = Box::new(move |url| {
        let url = url.to_string();
        async move {
            tokio::task::spawn_blocking(move || establish(&url, busy))
                .await
                .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?
                .map(|(c, guard)| {
                    SyncConnectionWrapper::with_runtime(c, DetachedBlocking::guarded(guard))
                })
        }
        .boxed()
    });
    let manager = AsyncDieselConnectionManager::<SqliteConn>::new_with_config(
        path.to_string_lossy(),
        manager_config,
    );
    Pool::builder(manager)
        .max_size(config.max_connections)
        // The connection used last comes out first. A SQLite connection keeps its own
        // page cache, valid while no other connection has written since its last use;
        // handing out the least recently used one (the pool's default) meant each
        // checkout started cold and read its pages again: ten page reads per task in the
        // store bench's claim loop, 7% more instructions per task.
        .queue_mode(QueueMode::Lifo)
        // Work a dropped caller left running must end before the connection is reused.
        .pre_recycle(Hook::async_fn(|conn: &mut SqliteConn, _| {
            Box::pin(async move {
                wait_for_abandoned_work(conn).await;
                Ok(())
            })
        }))
        .build()
        .map_err(|e| StoreError::Pool {
            url: path.display().to_string(),
            source: e.into(),
        })
}

/// Creates the file if needed and applies pending migrations.
pub(super) async fn migrate(path: &Path) -> StoreResult<Vec<String>> {
    let path_text = path.to_string_lossy().to_string();
    let failed = |source: MigrationError| StoreError::Migration {
        url: format!("sqlite://{}", path.display()),
        source,
    };
    tokio::task::spawn_blocking(move || {
        let mut conn = SqliteConnection::establish(&path_text)?;
        configure(&mut conn, 30_000)?;
        conn.run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(|v| v.to_string()).collect())
            .map_err(MigrationError::Migrate)
    })
    .await
    .map_err(|e| failed(e.into()))?
    .map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::super::{AnyConn, Store, StoreConfig};
    use crate::clock::SystemClock;
    use diesel::sql_types::BigInt;
    use diesel::QueryableByName;
    use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
    use std::sync::Arc;

    #[derive(QueryableByName)]
    struct Changes {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }

    async fn run(conn: &mut AnyConn<'_>, sql: &str) {
        let AnyConn::Sqlite(c) = conn else {
            unreachable!("a SQLite store")
        };
        c.batch_execute(sql).await.unwrap();
    }

    /// Rows this connection has changed since it was opened: tells connections apart.
    async fn changes(conn: &mut AnyConn<'_>) -> i64 {
        let AnyConn::Sqlite(c) = conn else {
            unreachable!("a SQLite store")
        };
        let rows: Vec<Changes> = diesel::sql_query("SELECT total_changes() AS n")
            .load(c)
            .await
            .unwrap();
        rows[0].n
    }

    /// The pool hands out the connection returned last, whose page cache is still
    /// valid, not the one idle longest.
    #[tokio::test]
    async fn the_connection_returned_last_comes_out_first() {
        let scratch = warren_testkit::Scratch::new("sqlite-pool");
        let url = format!("sqlite://{}", scratch.join("pool.db").display());
        let store = Store::open_with(StoreConfig::new(url), Arc::new(SystemClock))
            .await
            .unwrap();
        let mut first = store.connection().await.unwrap();
        let mut second = store.connection().await.unwrap();
        run(&mut first.as_any(), "CREATE TABLE t (n INTEGER)").await;
        run(&mut first.as_any(), "INSERT INTO t VALUES (1)").await;
        run(&mut second.as_any(), "INSERT INTO t VALUES (2), (3)").await;
        assert_eq!(changes(&mut first.as_any()).await, 1);
        assert_eq!(changes(&mut second.as_any()).await, 2);
        drop(second);
        drop(first);
        let mut again = store.connection().await.unwrap();
        assert_eq!(
            changes(&mut again.as_any()).await,
            1,
            "the one returned last"
        );
    }
}
