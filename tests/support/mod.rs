//! Test support: a fresh store per test on either backend, with a manual clock.
//!
//! PostgreSQL tests need `WARREN_TEST_DATABASE_URL` (a server URL such as
//! `postgres://postgres@127.0.0.1/postgres`); each test creates a database of its own
//! and drops it afterwards. Without the variable they are skipped loudly, except under
//! `CI=true`, where a missing database fails the run.

#![allow(dead_code, unused_imports)]

pub mod conformance;

use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use std::sync::Arc;
use warren::clock::ManualClock;
use warren::store::{AnyConn, Store, StoreConfig};
pub use warren_testkit::{engine_config, test_cache_dir};
use warren_testkit::{remove_sqlite, unique_name, FreshDatabase};

/// 2026-01-05T00:00:00Z, a Monday: where every test clock starts.
pub const T0: i64 = 1_767_571_200_000;
/// One minute in ms.
pub const MIN: i64 = 60_000;

/// Which backend a test body runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A store for one test, removed again when dropped.
pub struct TestDb {
    pub store: Store,
    pub clock: Arc<ManualClock>,
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    File(std::path::PathBuf),
    // Dropped with the test (after its stores): the database goes with it.
    Database(#[allow(dead_code)] FreshDatabase),
}

/// The PostgreSQL server URL for tests, or `None` (after saying so loudly) when the
/// tests should be skipped. Panics under `CI=true` without one.
pub fn postgres_admin_url() -> Option<String> {
    warren_testkit::admin_url("PostgreSQL test")
}

impl TestDb {
    /// A fresh, migrated store, or `None` when PostgreSQL tests are skipped.
    pub async fn new(backend: Backend) -> Option<TestDb> {
        Self::with_config(backend, |_| {}).await
    }

    /// Like [`TestDb::new`], adjusting the store settings first.
    pub async fn with_config(
        backend: Backend,
        adjust: impl FnOnce(&mut StoreConfig),
    ) -> Option<TestDb> {
        let clock = ManualClock::new(T0);
        let (url, cleanup) = match backend {
            Backend::Sqlite => {
                let path = std::env::temp_dir().join(format!("{}.db", unique_name("warren_t")));
                remove_sqlite(&path);
                (format!("sqlite://{}", path.display()), Cleanup::File(path))
            }
            Backend::Postgres => {
                let admin_url = postgres_admin_url()?;
                let db = FreshDatabase::create(&admin_url, "warren_t")
                    .await
                    .expect("create the test database");
                (db.url().to_string(), Cleanup::Database(db))
            }
        };
        let mut config = StoreConfig::new(&url);
        adjust(&mut config);
        let store = Store::open_with(config, clock.clone())
            .await
            .expect("open the test store");
        Some(TestDb {
            store,
            clock,
            url,
            cleanup,
        })
    }

    /// Another store on the same database (as a second node would have), sharing the clock.
    pub async fn another_node(&self) -> Store {
        Store::open_with(StoreConfig::new(&self.url), self.clock.clone())
            .await
            .expect("open a second store")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Cleanup::File(path) = &self.cleanup {
            remove_sqlite(path);
        }
    }
}
/// Runs SQL text on a connection of either backend.
pub async fn exec(conn: &mut AnyConn<'_>, sql: &str) {
    match conn {
        AnyConn::Postgres(c) => c.batch_execute(sql).await,
        AnyConn::Sqlite(c) => c.batch_execute(sql).await,
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Runs a `SELECT COUNT(*) AS n …` on either backend.
pub async fn count(store: &Store, sql: &str) -> i64 {
    let mut conn = store.connection().await.expect("connection");
    let rows: Vec<Count> = match conn.as_any() {
        AnyConn::Postgres(c) => diesel::sql_query(sql).load(c).await,
        AnyConn::Sqlite(c) => diesel::sql_query(sql).load(c).await,
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows[0].n
}

/// Runs a `SELECT … AS n …` of integers on either backend: the column, row by row.
pub async fn numbers(store: &Store, sql: &str) -> Vec<i64> {
    let mut conn = store.connection().await.expect("connection");
    let rows: Vec<Count> = match conn.as_any() {
        AnyConn::Postgres(c) => diesel::sql_query(sql).load(c).await,
        AnyConn::Sqlite(c) => diesel::sql_query(sql).load(c).await,
    }
    .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.into_iter().map(|r| r.n).collect()
}

/// Generates one `#[tokio::test]` per backend for each listed test body
/// (`async fn name(b: Backend)`), in modules `sqlite` and `postgres`.
#[macro_export]
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::support::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::support::Backend::Postgres).await;
                }
            )*
        }
    };
}

/// Claims the one due task of cluster `default`, runs it on `vm` with the run's own
/// transaction and a 30 s timeout, and applies the outcome as a runner does.
pub async fn run_managed_on(
    store: &Store,
    mut vm: warren::wasm::TaskVm,
) -> warren::store::ResolveOutcome {
    use warren::wasm::{KillSwitch, TaskDb, TaskInput};
    let claimed = store
        .claim("test-runner", &["default".to_string()], 1, 60_000)
        .await
        .unwrap()
        .remove(0);
    let task = &claimed.task;
    let input = TaskInput {
        id: task.id,
        task_type: task.task_type.to_string(),
        data: task.data.to_string(),
        aux_data: task.aux_data.as_ref().map(|v| v.to_string()),
        failures: task.failures as u32,
        iteration: task.iterations as u32,
    };
    let run = store.begin_run(claimed).await.unwrap();
    let report = vm
        .run(
            input,
            TaskDb::Managed(run),
            Some(std::time::Duration::from_secs(30)),
            KillSwitch::new(),
        )
        .await;
    let TaskDb::Managed(run) = report.db else {
        panic!("the run comes back")
    };
    run.resolve(
        report.end.into_resolution(),
        warren::task::RetryPolicy::default(),
    )
    .await
    .unwrap()
}
