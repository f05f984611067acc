//! The conformance suite's test kit: what every area of `tests/conformance/` shares
//! (the imports its bodies use, task builders, one-task claims, resolutions). Test
//! bodies are `async fn NAME(b: Backend)`, listed in `crate::conformance!` so that each
//! runs once on SQLite and once on PostgreSQL.

// Every area imports this module whole; not every area uses every name.
#[allow(unused_imports)]
pub use crate::support::{count, exec, numbers, Backend, TestDb, MIN, T0};
#[allow(unused_imports)]
pub use serde_json::json;
#[allow(unused_imports)]
pub use std::collections::HashSet;
#[allow(unused_imports)]
pub use std::time::{Duration, Instant};
#[allow(unused_imports)]
pub use warren::executor::RunFailure;
#[allow(unused_imports)]
pub use warren::flow::ConcurrencyLimit;
#[allow(unused_imports)]
pub use warren::rate_limit::{RateLimit, RatePeriod};
#[allow(unused_imports)]
pub use warren::store::{
    NewTask, ResolveOutcome, ScheduleOptions, ScheduledEnd, ScheduledOutcome, StateFilter, Store,
    StoreError, TaskFilter, TaskSqlOutput, TaskStatement, TypeRegistration, WaitFor,
};
#[allow(unused_imports)]
pub use warren::task::{
    LeaseToken, Priority, Resolution, RetryPolicy, TaskId, TaskState, TaskType,
};

/// The task type every test schedules.
pub fn ping() -> TaskType {
    "demo:ping".parse().unwrap()
}

/// A task of [`ping`] with `data` and default options.
pub fn task(data: serde_json::Value) -> NewTask {
    NewTask::new(ping(), data)
}

/// A task of [`ping`] with `data` and `options`.
pub fn task_with(data: serde_json::Value, options: ScheduleOptions) -> NewTask {
    task(data).with_options(options)
}

/// The end of a scheduled run.
pub fn end(outcome: ScheduledOutcome, output: &str) -> ScheduledEnd {
    ScheduledEnd {
        outcome,
        output: output.into(),
    }
}

/// The clusters the tests claim from.
pub fn clusters() -> Vec<String> {
    vec!["default".to_string()]
}

/// The lease of the tests' claims (ms).
pub const LEASE: i64 = 30_000;

/// Claims exactly one task (the next due one) and opens its run.
pub async fn claim_one(store: &Store) -> warren::store::TaskRun {
    let mut claimed = store.claim("node-a", &clusters(), 1, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 1, "expected one due task");
    store.begin_run(claimed.remove(0)).await.unwrap()
}

/// A completion with `result`.
pub fn complete(result: serde_json::Value) -> Resolution {
    Resolution::Completion {
        result: result.to_string(),
    }
}

/// A temporary failure with `error` and a stack.
pub fn temporary(error: &str) -> Resolution {
    Resolution::TemporaryFailure {
        error: error.into(),
        stack: Some("at runTask (task.js:3)".into()),
        next_retry: None,
    }
}

/// Moves the clock to the only unfinished task's next attempt, fails it once (claim +
/// temporary failure) and returns the outcome.
pub async fn fail_once(db: &TestDb, policy: RetryPolicy) -> ResolveOutcome {
    let s = &db.store;
    let next = s
        .list(&TaskFilter {
            state: StateFilter::Unfinished,
            ..Default::default()
        })
        .await
        .unwrap();
    db.clock.set(next[0].next_attempt.max(s.now()));
    claim_one(s)
        .await
        .resolve(temporary("boom"), policy)
        .await
        .unwrap()
}

/// Creates the table `effects (task_id)` that tests' task work inserts into.
pub async fn setup_effects_table(s: &Store) {
    let mut conn = s.connection().await.unwrap();
    exec(
        &mut conn.as_any(),
        "CREATE TABLE effects (task_id BIGINT NOT NULL)",
    )
    .await;
}
