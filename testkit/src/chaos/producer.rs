//! The steady offered load of a scenario: tasks scheduled at a set rate, in small
//! batches each committed on its own, whatever the database is going through. Ids of
//! committed batches are kept (those tasks must all complete exactly once); a batch
//! whose commit failed or whose outcome is unknown is counted apart.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use warren::store::{NewTask, Store};
use warren::task::TaskType;

/// Largest batch one commit carries: a producer that fell behind catches up in
/// batches this size.
const MAX_BATCH: u64 = 200;
/// How often the producer schedules what it owes.
const TICK: Duration = Duration::from_millis(20);

/// What a producer did.
#[derive(Debug, Default)]
pub struct ProducerTally {
    /// Ids of the tasks whose batch committed.
    pub confirmed: Vec<i64>,
    /// Tasks in batches that failed (rolled back, or the commit's outcome unknown).
    pub unconfirmed: u64,
    /// The first scheduling error, for the report.
    pub first_error: Option<String>,
}

/// A running producer; [`Producer::finish`] stops it and returns its tally.
pub struct Producer {
    rate: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: JoinHandle<ProducerTally>,
}

impl Producer {
    /// Starts scheduling `task_type` tasks at `rate` per second through `store`.
    pub fn start(store: Store, task_type: &str, rate: u64) -> Producer {
        let rate = Arc::new(AtomicU64::new(rate));
        let stop = Arc::new(AtomicBool::new(false));
        let handle = tokio::spawn(produce(
            store,
            task_type.to_string(),
            rate.clone(),
            stop.clone(),
        ));
        Producer { rate, stop, handle }
    }

    /// Changes the offered rate from now on.
    pub fn set_rate(&self, rate: u64) {
        self.rate.store(rate, Ordering::SeqCst);
    }

    /// Stops scheduling and returns what was scheduled.
    pub async fn finish(mut self) -> ProducerTally {
        self.stop.store(true, Ordering::SeqCst);
        (&mut self.handle)
            .await
            .expect("the producer task panicked")
    }
}

impl Drop for Producer {
    /// A scenario that ended early (an error) stops its producer too.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.abort();
    }
}

async fn produce(
    store: Store,
    task_type: String,
    rate: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> ProducerTally {
    let task_type: TaskType = task_type.parse().expect("a valid task type");
    let mut tally = ProducerTally::default();
    let mut owed = 0.0_f64;
    let mut last = Instant::now();
    let mut serial = 0_u64;
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(TICK).await;
        let now = Instant::now();
        owed += rate.load(Ordering::SeqCst) as f64 * (now - last).as_secs_f64();
        last = now;
        let count = (owed.floor() as u64).min(MAX_BATCH);
        if count == 0 {
            continue;
        }
        let batch: Vec<NewTask> = (0..count)
            .map(|_| {
                serial += 1;
                NewTask::new(task_type.clone(), serde_json::json!({ "serial": serial }))
            })
            .collect();
        match store.schedule_batch(&batch).await {
            Ok(ids) => {
                tally.confirmed.extend(ids.iter().map(|id| id.0));
                owed -= count as f64;
            }
            Err(e) => {
                tally.unconfirmed += count;
                owed -= count as f64;
                tally.first_error.get_or_insert_with(|| e.to_string());
                // The database is away: try again a little later, still owing the
                // rate (the offered load does not pause for an outage).
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    tally
}
