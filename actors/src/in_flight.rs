//! What a runner's last runs still have under way while the runner goes on with its
//! next tasks: quiet completions' shared commits (runs without database work, see
//! `TaskRun::complete_queued`) and a run's history record. A runner keeps at most
//! [`COMPLETIONS_IN_FLIGHT`] completions and one record in flight: it collects (waits
//! for) the oldest completion before it queues one past the bound, and the record in
//! flight before it queues the next; a node that drains for a shutdown collects all.
//!
//! Why more than one completion: a shared commit takes longer than a short run, so a
//! runner that waited for its previous completion before it queued the next would
//! run at the pace of commits, not of its tasks, and its thread would sleep on
//! every task.
//!
//! Both writes are queued when they are handed over, not when they are collected: a
//! runner that is never asked again still has them written.

use futures_util::future::BoxFuture;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Quiet completions a runner may have committing at once.
pub(crate) const COMPLETIONS_IN_FLIGHT: usize = 4;

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
    /// Oldest first.
    completions: VecDeque<CompletionWrite>,
    record: Option<RecordWrite>,
    /// Completions in run groups, each settling (and writing its record) once its
    /// group commits (see `warren::store::RunGroup`); the finished ones are dropped as more come.
    grouped: Vec<tokio::task::JoinHandle<()>>,
}

impl InFlight {
    fn slots(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Collects completions, oldest first, until at most `keep` are in flight; the
    /// record of each becomes the record in flight.
    async fn collect_completions_down_to(&self, keep: usize) {
        loop {
            let oldest = {
                let mut slots = self.slots();
                if slots.completions.len() <= keep {
                    return;
                }
                slots.completions.pop_front()
            };
            if let Some(record) = oldest.expect("more completions than kept").await {
                self.keep_record(record).await;
            }
        }
    }

    /// Makes room for one more completion: collects the oldest while
    /// [`COMPLETIONS_IN_FLIGHT`] are in flight.
    pub(crate) async fn make_room_for_completion(&self) {
        self.collect_completions_down_to(COMPLETIONS_IN_FLIGHT - 1)
            .await;
    }

    /// Keeps `completion` in flight; there must be room for it (see
    /// [`InFlight::make_room_for_completion`]).
    pub(crate) fn keep_completion(&self, completion: CompletionWrite) {
        let mut slots = self.slots();
        debug_assert!(
            slots.completions.len() < COMPLETIONS_IN_FLIGHT,
            "no room was made for a completion"
        );
        slots.completions.push_back(completion);
    }

    /// Waits for the record in flight, then keeps `record` in flight instead.
    pub(crate) async fn keep_record(&self, record: RecordWrite) {
        let previous = self.slots().record.take();
        if let Some(previous) = previous {
            previous.await;
        }
        self.slots().record = Some(record);
    }

    /// Keeps a completion of a run group in flight: it is not bounded like the
    /// others, as it commits only when the runner commits its group (at most a group's
    /// worth of them wait at once).
    pub(crate) fn keep_grouped(&self, settled: tokio::task::JoinHandle<()>) {
        let mut slots = self.slots();
        slots.grouped.retain(|h| !h.is_finished());
        slots.grouped.push(settled);
    }

    /// Waits until nothing is in flight.
    pub(crate) async fn collect_all(&self) {
        let grouped = std::mem::take(&mut self.slots().grouped);
        for settled in grouped {
            let _ = settled.await;
        }
        self.collect_completions_down_to(0).await;
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
        assert!(in_flight.slots().completions.is_empty());
        record_written.send(()).unwrap();
        drained.await;
        assert!(in_flight.slots().record.is_none());
    }

    #[tokio::test]
    async fn a_runner_waits_for_its_oldest_completion_only_when_the_bound_is_reached() {
        let in_flight = InFlight::default();
        let mut commits = Vec::new();
        for _ in 0..COMPLETIONS_IN_FLIGHT {
            // Room without waiting: none of these has committed.
            assert!(in_flight
                .make_room_for_completion()
                .now_or_never()
                .is_some());
            let (commit, committed) = oneshot::channel();
            in_flight.keep_completion(write(committed, None));
            commits.push(commit);
        }
        // Full: room is made once the oldest commits, and not before (a later one
        // committing does not make room: they are collected oldest first).
        let mut room = Box::pin(in_flight.make_room_for_completion());
        assert!(futures_util::poll!(&mut room).is_pending());
        commits.pop().unwrap().send(()).unwrap();
        assert!(futures_util::poll!(&mut room).is_pending());
        commits.remove(0).send(()).unwrap();
        assert!(room.now_or_never().is_some());
        assert_eq!(
            in_flight.slots().completions.len(),
            COMPLETIONS_IN_FLIGHT - 1
        );
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
