//! `warren migrate`: brings the database schema up to date.

use super::Failure;
use warren::store::{redact_url, Store};

/// Applies pending migrations and says which (`json`: `{"database", "applied"}`, the
/// database's URL without its password and the versions applied, in order).
pub async fn run(database: &str, json: bool) -> Result<(), Failure> {
    let applied = Store::migrate(database).await?;
    if json {
        let done = serde_json::json!({
            "database": redact_url(database),
            "applied": applied.iter().map(ToString::to_string).collect::<Vec<_>>(),
        });
        println!("{done}");
    } else if applied.is_empty() {
        println!("{}: schema is up to date", redact_url(database));
    } else {
        for version in &applied {
            println!("{}: applied migration {version}", redact_url(database));
        }
    }
    Ok(())
}
