//! Embedding Warren in an actix application: start a node on a SQLite file with the
//! demo module, schedule a managed task and wait for it, run an ephemeral task, and
//! shut down.
//!
//! Run from the repository root (the JavaScript toolkit installs itself on first use):
//! `cargo run -p warren-actors --example embed`

use serde_json::json;
use std::time::Duration;
use warren::store::{Store, WaitFor};
use warren_actors::{RunEphemeralTask, ScheduleTask, Shutdown, Warren};

#[actix_rt::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let database = format!(
        "sqlite://{}",
        std::env::temp_dir().join("warren-embed.db").display()
    );
    let (node, skipped) = Warren::builder()
        .database(&database)
        .modules_dir("examples/modules")
        .start()
        .await?;
    for errors in skipped {
        for e in errors {
            eprintln!("skipped: {e}");
        }
    }

    // A managed task: durable, retried on failure; its id comes back at once.
    let id = node
        .send(ScheduleTask::managed(
            "demo:ping".parse()?,
            json!({ "ping": 42 }),
        ))
        .await??;
    let store = Store::open(&database).await?;
    let outcome = store
        .wait(id, Duration::from_secs(60), WaitFor::Finished)
        .await?;
    println!(
        "managed task {id}: {:?} {:?}",
        outcome.state, outcome.result
    );

    // An ephemeral task: the caller waits for the result (dropping it kills the task).
    let stats = node
        .send(RunEphemeralTask::new(
            "demo:compile",
            json!({ "numbers": [3, 1, 2] }),
        ))
        .await?
        .await?;
    println!("ephemeral result: {stats}");

    node.send(Shutdown {
        grace: Duration::from_secs(10),
    })
    .await?;
    Ok(())
}
