//! The threads a node's runners live on.
//!
//! Runners share a few threads instead of having one each. A guest runs as an async
//! wasmtime call that yields to its thread at every epoch tick (`warren::wasm::TICK`)
//! and at every host call that waits (its SQL, a schedule, a log write), so the runners
//! of one thread take turns as the tasks of one executor do: a guest that computes
//! forever still lets the others run between two ticks. Fewer threads than runners
//! saves the kernel's work of waking a sleeping thread for each database answer and
//! preempting it for the next: on a machine with fewer cores than runners that work
//! cost more CPU per task than the task itself (issue 13's measurements).
//!
//! On PostgreSQL each thread also has connections of its own, which its runtime
//! drives, for its runs' transactions ([`ThreadConnections`]): a run's statements then
//! go out and come back on its own thread, with no hand-off to the I/O thread.

use actix::prelude::*;
use std::sync::{Arc, Mutex};
use warren::store::{PoolUse, Store, ThreadConnections};

/// How many threads a node gives its runners when the builder does not say: one per
/// core the process may use, and never more than there are runners.
pub(crate) fn default_count(runners: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.min(runners).max(1)
}

/// A fixed number of threads (actix arbiters) that the runners of a node share.
#[derive(Clone)]
pub(crate) struct RunnerThreads {
    inner: Arc<Mutex<Threads>>,
}

struct Threads {
    count: usize,
    started: Vec<Placement>,
    next: usize,
    /// The store whose connections each thread gets (none in unit tests).
    store: Option<Store>,
}

/// Where a runner goes: a thread, and the connections its runs take there.
#[derive(Clone)]
pub(crate) struct Placement {
    /// The thread.
    pub arbiter: ArbiterHandle,
    /// The thread's own connections (PostgreSQL), bounded by the runners placed on it.
    pub connections: Option<ThreadConnections>,
}

impl RunnerThreads {
    /// At most `count` threads (at least one), started as runners need them, each with
    /// connections of its own to `store` when it is PostgreSQL.
    pub(crate) fn new(count: usize, store: Option<Store>) -> RunnerThreads {
        RunnerThreads {
            inner: Arc::new(Mutex::new(Threads {
                count: count.max(1),
                started: Vec::new(),
                next: 0,
                store,
            })),
        }
    }

    /// The number of threads the runners share.
    pub(crate) fn count(&self) -> usize {
        self.lock().count
    }

    /// The thread the next runner goes on: each in turn, so runners spread evenly. A
    /// thread that has stopped (its arbiter gone) is replaced by a fresh one, with
    /// fresh connections (the old ones' sockets were driven by the stopped thread), so
    /// a runner is never placed where it cannot start.
    pub(crate) fn next(&self) -> Placement {
        let mut threads = self.lock();
        let slot = threads.next % threads.count;
        threads.next = threads.next.wrapping_add(1);
        let placement = match threads.started.get(slot) {
            // `spawn` answers whether the arbiter still takes work.
            Some(placement) if placement.arbiter.spawn(async {}) => placement.clone(),
            Some(_) => {
                let fresh = threads.fresh();
                threads.started[slot] = fresh.clone();
                fresh
            }
            None => {
                let fresh = threads.fresh();
                threads.started.push(fresh.clone());
                fresh
            }
        };
        if let Some(connections) = &placement.connections {
            connections.add_user();
        }
        placement
    }

    /// The connections of every thread together (none on SQLite).
    pub(crate) fn connections_use(&self) -> PoolUse {
        self.lock()
            .started
            .iter()
            .filter_map(|placement| placement.connections.as_ref())
            .map(ThreadConnections::usage)
            .fold(PoolUse::default(), |sum, one| sum + one)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Threads> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Threads {
    /// A new thread with no runner yet, and its connections. A pool that cannot be
    /// made leaves the thread's runs on the store's pool.
    fn fresh(&self) -> Placement {
        let connections = match self.store.as_ref().map(Store::thread_connections) {
            Some(Ok(connections)) => connections,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "runners' thread without connections of its own");
                None
            }
            None => None,
        };
        Placement {
            arbiter: Arbiter::new().handle(),
            connections,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_one_thread_per_core_and_never_more_than_the_runners() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(default_count(1), 1);
        assert_eq!(default_count(0), 1);
        assert_eq!(default_count(10_000), cores);
    }

    #[actix_rt::test]
    async fn runners_are_spread_over_the_threads_in_turn() {
        let threads = RunnerThreads::new(3, None);
        let ids: Vec<_> = (0..7)
            .map(|_| {
                let arbiter = threads.next().arbiter;
                let (tx, rx) = std::sync::mpsc::channel();
                assert!(arbiter.spawn_fn(move || tx.send(std::thread::current().id()).unwrap()));
                rx.recv().unwrap()
            })
            .collect();
        assert_eq!(ids[0], ids[3]);
        assert_eq!(ids[1], ids[4]);
        assert_eq!(ids[0], ids[6]);
        assert_ne!(ids[0], ids[1]);
        assert_ne!(ids[1], ids[2]);
        assert_ne!(ids[0], ids[2]);
    }

    #[actix_rt::test]
    async fn a_stopped_thread_is_replaced() {
        let threads = RunnerThreads::new(1, None);
        let first = threads.next().arbiter;
        assert!(first.stop());
        // The arbiter stops asynchronously: wait until it no longer takes work.
        while first.spawn(async {}) {
            actix_rt::task::yield_now().await;
        }
        let second = threads.next().arbiter;
        assert!(second.spawn(async {}), "a stopped thread was handed out");
    }
}
