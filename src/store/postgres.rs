//! PostgreSQL: the connection pool and the embedded migrations.

use super::error::MigrationError;
use super::{redact_url, StoreConfig, StoreError, StoreResult};
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::AsyncPgConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Builds the connection pool (connections are opened lazily, on [`io_runtime`]).
pub(super) fn pool(config: &StoreConfig) -> StoreResult<Pool<AsyncPgConnection>> {
    pool_driven_by(
        config.url.clone(),
        config.max_connections,
        Driver::IoRuntime,
    )
}

/// Which runtime drives the sockets of a pool's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Driver {
    /// The process's I/O runtime ([`io_runtime`]): any thread may use the connections.
    IoRuntime,
    /// The runtime of the task that opens each connection (see
    /// `thread_connections.rs`).
    Opener,
}

/// A pool of at most `max` connections to `url`, driven by `driver`.
pub(super) fn pool_driven_by(
    url: String,
    max: usize,
    driver: Driver,
) -> StoreResult<Pool<AsyncPgConnection>> {
    let mut manager_config = ManagerConfig::<AsyncPgConnection>::default();
    // Reusing a connection checks that it holds no broken transaction and that its
    // socket is still open, but sends no test query: that query would add a round trip
    // to every claim and every run. A connection whose server went away fails its next
    // statement; its socket is closed by then, so the pool drops it on return.
    manager_config.recycling_method = RecyclingMethod::Fast;
    manager_config.custom_setup = Box::new(move |url| {
        let url = url.to_string();
        Box::pin(async move {
            let open = async move {
                use diesel_async::AsyncConnection;
                let mut conn = AsyncPgConnection::establish(&url).await?;
                super::pg_statement_cache::count_prepared(&mut conn);
                Ok(conn)
            };
            match driver {
                Driver::IoRuntime => io_runtime()
                    .spawn(open)
                    .await
                    .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?,
                // The connection's background task is spawned on the current runtime.
                Driver::Opener => open.await,
            }
        })
    });
    let redacted = redact_url(&url);
    let manager =
        AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, manager_config);
    Pool::builder(manager)
        .max_size(max)
        .build()
        .map_err(|e| StoreError::Pool {
            url: redacted,
            source: e.into(),
        })
}

/// Applies pending migrations. Runs on a blocking thread, since diesel's migration
/// harness is synchronous.
pub(super) async fn migrate(url: &str) -> StoreResult<Vec<String>> {
    let owned = url.to_string();
    let failed = |source: MigrationError| StoreError::Migration {
        url: redact_url(url),
        source,
    };
    tokio::task::spawn_blocking(move || {
        use diesel::Connection;
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(&owned)?;
        conn.run_pending_migrations(MIGRATIONS)
            .map(|versions| versions.iter().map(|v| v.to_string()).collect())
            .map_err(MigrationError::Migrate)
    })
    .await
    .map_err(|e| failed(e.into()))?
    .map_err(failed)
}

/// Opens a connection outside the pool (for LISTEN), driven by [`io_runtime`].
pub(super) async fn dedicated(url: &str) -> diesel::ConnectionResult<AsyncPgConnection> {
    let url = url.to_string();
    io_runtime()
        .spawn(async move {
            use diesel_async::AsyncConnection;
            AsyncPgConnection::establish(&url).await
        })
        .await
        .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?
}

/// The runtime that drives every PostgreSQL connection's socket (each connection runs
/// a background task on the runtime that opened it). A node uses its connections from
/// many runtimes — one per runner thread, busy running guest code for long stretches —
/// so a connection opened on one of those would stall the others' queries whenever
/// that thread is busy. Opening every connection here keeps their I/O independent of
/// whoever uses them.
///
/// Why one per process rather than one per [`super::Store`]: a runtime cannot be
/// dropped from async code (where stores are dropped) without being shut down in the
/// background, which would kill the sockets of connections, grouped completions and
/// listeners still finishing their work for a store's last users; and one thread
/// serves every store's sockets as well as one per store would. It is created on first
/// use and holds no state of any store. Grouped writes (`group_write.rs`) run here on
/// both backends, for the same reason: a caller that goes away must not strand them.
pub(super) fn io_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("warren-io")
            .enable_all()
            .build()
            .expect("the PostgreSQL I/O runtime starts (a thread and an epoll instance)")
    })
}
