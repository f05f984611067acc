//! A bounded wait for states nothing announces (a task starting to run, a process
//! writing a line), for tests where no signal exists to wait on.

use std::future::Future;
use std::time::{Duration, Instant};

/// Looks at `check` every 20 ms, up to `limit`, until it holds. Panics naming `what`
/// when time runs out.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
