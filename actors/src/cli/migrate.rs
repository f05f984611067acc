//! `warren migrate`: brings the database schema up to date.

use super::Failure;
use warren::store::{redact_url, Store};

/// Applies pending migrations and says which.
pub async fn run(database: &str) -> Result<(), Failure> {
    let applied = Store::migrate(database).await?;
    if applied.is_empty() {
        println!("{}: schema is up to date", redact_url(database));
    } else {
        for version in &applied {
            println!("{}: applied migration {version}", redact_url(database));
        }
    }
    Ok(())
}
