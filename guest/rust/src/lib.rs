//! `demo:ping` written in Rust: data `{"ping": 42}` completes with `{"pong": 42}`.
//!
//! The bindings come from the Warren world in `../../wit`: `wit_bindgen::generate!`
//! reads it at compile time and produces
//! - the `Guest` trait, whose `run_task` this crate implements (the world's export);
//! - the types of `warren:task/types` (`Task`, `Resolution`, `Failure`, `Restart`);
//! - the host functions of `warren:task/host` as plain Rust functions (`log`,
//!   `execute`, `query`, …), whose `result<T, string>` is a `Result<T, String>`.
//!
//! Unlike a JavaScript task there is no kit in between: the task picks its resolution
//! by returning it, and merges aux data itself if it wants it. A panic is a trap: the
//! host records an opaque failure and discards the instance, so errors worth reading
//! are returned as `Resolution::TemporaryFailure` instead.

// The generated export glue takes the flattened task record as many arguments.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    world: "task-world",
    path: "../../wit",
});

use serde_json::{json, Value};
use warren::task::host;
use warren::task::types::Failure;

/// Log levels of `host::log`.
const INFO: u8 = 2;

struct Ping;

impl Guest for Ping {
    fn run_task(t: Task) -> Resolution {
        match ping(&t) {
            Ok(resolution) => resolution,
            Err(error) => Resolution::TemporaryFailure(Failure {
                error,
                stack: None,
                next_retry_ms: None,
            }),
        }
    }
}

fn ping(t: &Task) -> Result<Resolution, String> {
    let data: Value = serde_json::from_str(&t.data).map_err(|e| format!("task data is not JSON: {e}"))?;
    let Some(ping) = data.get("ping") else {
        // Retrying cannot add the field: fail for good.
        return Ok(Resolution::PermanentFailure(("data.ping is missing".to_string(), None)));
    };
    host::log(INFO, &format!("task {} ({}) got ping {ping}", t.id, t.task_type));
    Ok(Resolution::Completion(json!({ "pong": ping }).to_string()))
}

export!(Ping);
