//! A fresh PostgreSQL database per test or benchmark, on the server the environment
//! names, dropped again afterwards.

use crate::{unique_name, Error};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

/// The PostgreSQL server URL for tests (`$WARREN_TEST_DATABASE_URL`, such as
/// `postgres://postgres@127.0.0.1/postgres`), or `None` after saying loudly that `what`
/// is skipped. Under `CI=true` a missing URL fails the run instead.
pub fn admin_url(what: &str) -> Option<String> {
    match std::env::var("WARREN_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("CI=true but WARREN_TEST_DATABASE_URL is not set: {what} cannot run");
            }
            eprintln!(
                "SKIPPED: {what} — set WARREN_TEST_DATABASE_URL \
                 (e.g. postgres://postgres@127.0.0.1/postgres) to run it"
            );
            None
        }
    }
}

/// `server_url` with its database name replaced by `db` (a query string is kept).
pub fn database_url(server_url: &str, db: &str) -> Result<String, Error> {
    let scheme_end = server_url
        .find("://")
        .ok_or_else(|| format!("not a PostgreSQL URL: {server_url}"))?
        + 3;
    let (without_query, query) = match server_url.split_once('?') {
        Some((base, q)) => (base, format!("?{q}")),
        None => (server_url, String::new()),
    };
    let host = match without_query[scheme_end..].find('/') {
        Some(slash) => &without_query[..scheme_end + slash],
        None => without_query,
    };
    Ok(format!("{host}/{db}{query}"))
}

/// A database created for one test on a server, dropped (with `FORCE`, whoever is
/// still connected) when this is dropped.
#[derive(Debug)]
pub struct FreshDatabase {
    url: String,
    server_url: String,
    name: String,
}

impl FreshDatabase {
    /// Creates a database named `{prefix}_{pid}_{n}` on the server at `server_url`.
    pub async fn create(server_url: &str, prefix: &str) -> Result<FreshDatabase, Error> {
        let name = unique_name(prefix);
        let mut admin = AsyncPgConnection::establish(server_url).await?;
        // A leftover of a killed run with the same pid goes first. Two statements:
        // neither may run inside the transaction block a multi-statement text makes.
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
        Ok(FreshDatabase {
            url: database_url(server_url, &name)?,
            server_url: server_url.to_string(),
            name,
        })
    }

    /// The URL of the new database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let (server_url, name) = (self.server_url.clone(), self.name.clone());
        // Dropped inside or outside a runtime: use a small one of its own, on a thread
        // of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop the test database");
            runtime.block_on(async {
                if let Ok(mut admin) = AsyncPgConnection::establish(&server_url).await {
                    let _ = admin
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_replaces_only_the_database() {
        let url = |s, db| database_url(s, db).unwrap();
        assert_eq!(
            url("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            url("postgres://u@h/p?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(url("postgres://u@h", "x"), "postgres://u@h/x");
        assert!(database_url("h/p", "x").is_err());
    }
}
