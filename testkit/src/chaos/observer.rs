//! Samples of the queue taken every quarter second through a scenario: completed
//! tasks, backlog and dead tuples, each stamped with the time since the scenario
//! began. A sample the database cannot answer (it is down) is simply missing.

use super::probe::Probe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

const INTERVAL: Duration = Duration::from_millis(250);

/// One look at the queue.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Seconds since the scenario began.
    pub at: f64,
    /// Completed tasks so far.
    pub completed: i64,
    /// Pending and running tasks.
    pub backlog: i64,
    /// Dead tuples of `warren_tasks` (PostgreSQL).
    pub dead_tuples: Option<i64>,
}

/// A running observer; [`Observer::finish`] returns its samples.
pub struct Observer {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<Sample>>,
}

impl Observer {
    /// Starts sampling through `probe`; times count from `origin`.
    pub fn start(mut probe: Probe, origin: Instant) -> Observer {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let handle = tokio::spawn(async move {
            let mut samples = Vec::new();
            while !stopped.load(Ordering::SeqCst) {
                if let Ok(counts) = probe.counts().await {
                    let dead_tuples = probe.dead_tuples().await.ok().flatten();
                    samples.push(Sample {
                        at: origin.elapsed().as_secs_f64(),
                        completed: counts.completed,
                        backlog: counts.backlog,
                        dead_tuples,
                    });
                }
                tokio::time::sleep(INTERVAL).await;
            }
            samples
        });
        Observer { stop, handle }
    }

    /// Stops sampling and returns the samples.
    pub async fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::SeqCst);
        (&mut self.handle)
            .await
            .expect("the observer task panicked")
    }
}

impl Drop for Observer {
    /// A scenario that ended early (an error) stops its observer too.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.abort();
    }
}
