//! What a runner's last runs still have under way while the runner goes on with its
//! next task: a quiet completion's shared commit (a run without database work, see
//! `TaskRun::complete_queued`) and a run's history record. Each is collected, that is
//! waited for, before the runner queues the next of its kind, so a runner has at most
//! one of each in flight; a node that drains for a shutdown collects both.
//!
//! Both writes are queued when they are handed over, not when they are collected: a
//! runner that is never asked again still has them written.

use futures_util::future::BoxFuture;
use std::sync::{Arc, Mutex};

/// A history record being written: resolves once it is (it logs why when it was not).
pub(crate) type RecordWrite = BoxFuture<'static, ()>;

/// A quiet completion committing: resolves, once it has committed and the run's
/// outcome was counted, to the run's history record being written, if any.
pub(crate) type CompletionWrite = BoxFuture<'static, Option<RecordWrite>>;

/// A runner's writes in flight, shared between the runner's runs and the messages
/// that collect them.
#[derive(Clone, Default)]
pub(crate) struct InFlight(Arc<Mutex<Slots>>);

#[derive(Default)]
struct Slots {
    completion: Option<CompletionWrite>,
    record: Option<RecordWrite>,
}

impl InFlight {
    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for the last quiet completion to commit; its record becomes the record
    /// in flight.
    pub(crate) async fn collect_completion(&self) {
        let completion = self.slots().completion.take();
        if let Some(completion) = completion {
            if let Some(record) = completion.await {
                self.keep_record(record).await;
            }
        }
    }

    /// Keeps `completion` in flight; the previous one must have been collected.
    pub(crate) fn keep_completion(&self, completion: CompletionWrite) {
        let previous = self.slots().completion.replace(completion);
        debug_assert!(previous.is_none(), "a completion was not collected");
    }

    /// Waits for the record in flight, then keeps `record` in flight instead.
    pub(crate) async fn keep_record(&self, record: RecordWrite) {
        let previous = self.slots().record.take();
        if let Some(previous) = previous {
            previous.await;
        }
        self.slots().record = Some(record);
    }

    /// Waits until nothing is in flight.
    pub(crate) async fn collect_all(&self) {
        self.collect_completion().await;
        let record = self.slots().record.take();
        if let Some(record) = record {
            record.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use tokio::sync::oneshot;

    /// A write that resolves when `done` is sent, then answers `then`.
    fn write<T: Send + 'static>(done: oneshot::Receiver<()>, then: T) -> BoxFuture<'static, T> {
        Box::pin(async move {
            let _ = done.await;
            then
        })
    }

    #[tokio::test]
    async fn a_completion_collected_hands_its_record_on_and_a_drain_waits_for_both() {
        let in_flight = InFlight::default();
        let (commit, committed) = oneshot::channel();
        let (record_written, written) = oneshot::channel();
        let record = write(written, ());
        in_flight.keep_completion(write(committed, Some(record)));

        // Neither is collected before the commit.
        let drain = in_flight.clone();
        let mut drained = Box::pin(async move { drain.collect_all().await });
        assert!(futures_util::poll!(&mut drained).is_pending());
        commit.send(()).unwrap();
        // The commit landed and the completion is collected; its record is not written
        // yet, and the drain waits for it.
        assert!(futures_util::poll!(&mut drained).is_pending());
        assert!(in_flight.slots().completion.is_none());
        record_written.send(()).unwrap();
        drained.await;
        assert!(in_flight.slots().record.is_none());
    }

    #[tokio::test]
    async fn a_new_record_waits_for_the_one_in_flight() {
        let in_flight = InFlight::default();
        let (first_written, first) = oneshot::channel();
        in_flight.keep_record(write(first, ())).await;
        let (_second_written, second) = oneshot::channel::<()>();
        let mut kept = Box::pin(in_flight.keep_record(write(second, ())));
        assert!(futures_util::poll!(&mut kept).is_pending());
        first_written.send(()).unwrap();
        assert!(kept.now_or_never().is_some());
        assert!(in_flight.slots().record.is_some());
    }
}
