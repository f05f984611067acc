//! Test support: a fresh store per test on either backend, with a manual clock.
//!
//! PostgreSQL tests need `WARREN_TEST_DATABASE_URL` (a server URL such as
//! `postgres://postgres@127.0.0.1/postgres`); each test creates a database of its own
//! and drops it afterwards. Without the variable they are skipped loudly, except under
//! `CI=true`, where a missing database fails the run.

#![allow(dead_code)]

pub mod conformance;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use warren::clock::ManualClock;
use warren::store::{AnyConn, Store, StoreConfig};

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
    Database { admin_url: String, name: String },
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique_name() -> String {
    format!(
        "warren_t_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// The PostgreSQL server URL for tests, or `None` (after saying so loudly) when the
/// tests should be skipped. Panics under `CI=true` without one.
pub fn postgres_admin_url() -> Option<String> {
    match std::env::var("WARREN_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("CI=true but WARREN_TEST_DATABASE_URL is not set: the PostgreSQL conformance tests cannot run");
            }
            eprintln!("SKIPPED: PostgreSQL test — set WARREN_TEST_DATABASE_URL (e.g. postgres://postgres@127.0.0.1/postgres) to run it");
            None
        }
    }
}

fn with_database(server_url: &str, db: &str) -> String {
    let (base, _) = server_url
        .rsplit_once('/')
        .filter(|(b, _)| b.contains("://") && b.len() > b.find("://").unwrap() + 3)
        .unwrap_or((server_url, ""));
    format!("{base}/{db}")
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
        let name = unique_name();
        let (url, cleanup) = match backend {
            Backend::Sqlite => {
                let path = std::env::temp_dir().join(format!("{name}.db"));
                remove_sqlite_files(&path);
                (format!("sqlite://{}", path.display()), Cleanup::File(path))
            }
            Backend::Postgres => {
                let admin_url = postgres_admin_url()?;
                let mut admin = AsyncPgConnection::establish(&admin_url)
                    .await
                    .expect("connect to WARREN_TEST_DATABASE_URL");
                diesel::sql_query(format!("CREATE DATABASE {name}"))
                    .execute(&mut admin)
                    .await
                    .expect("create the test database");
                (
                    with_database(&admin_url, &name),
                    Cleanup::Database { admin_url, name },
                )
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

/// Removes a SQLite database: the file, its journal, and its wake-up sockets' folder.
fn remove_sqlite_files(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let _ = std::fs::remove_dir_all(format!("{}-wake", path.display()));
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::File(path) => remove_sqlite_files(path),
            Cleanup::Database { admin_url, name } => {
                let (admin_url, name) = (admin_url.clone(), name.clone());
                // Dropping happens outside any runtime: use a small one of our own.
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime");
                    rt.block_on(async {
                        if let Ok(mut admin) = AsyncPgConnection::establish(&admin_url).await {
                            let _ = admin
                                .batch_execute(&format!(
                                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                                ))
                                .await;
                        }
                    });
                })
                .join();
            }
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

/// The cache folder the tests share, under `target/`: compiled components, and the
/// JavaScript toolkit embedded in warren, installed there on first use.
pub fn test_cache_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/warren-test-cache")
}

/// Engine settings of the tests: the shared cache folder and the embedded JavaScript
/// toolkit (QuickJS) installed under it — never a `$WARREN_JS_KIT` of the environment —
/// so the tests need nothing prepared by hand, only Node.js and npm.
pub fn engine_config() -> warren::wasm::EngineConfig {
    warren::wasm::EngineConfig {
        cache_dir: Some(test_cache_dir()),
        js: Some(warren::wasm::JsToolkit::embedded(
            &test_cache_dir(),
            warren::wasm::JsEngine::QuickJs,
        )),
        ..warren::wasm::EngineConfig::default()
    }
}
