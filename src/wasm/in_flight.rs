//! One piece of work per key at a time: callers asking for a key whose work is in
//! progress wait for it and share its result, so however many runners ask for one
//! component at once, it is built and compiled once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Work in progress, by key.
pub(crate) struct InFlight<V> {
    calls: Mutex<HashMap<String, Arc<OnceLock<V>>>>,
}

impl<V> Default for InFlight<V> {
    fn default() -> Self {
        InFlight {
            calls: Mutex::default(),
        }
    }
}

impl<V: Clone> InFlight<V> {
    /// The result of `work` for `key`: this caller's, or, when another caller's work for
    /// `key` is in progress, that one's once it is done. A finished key is forgotten, so
    /// `work` should first look for what an earlier call left behind (a cache entry).
    /// When `work` panics the panic reaches its caller and a waiting caller runs its own.
    pub(crate) fn run(&self, key: &str, work: impl FnOnce() -> V) -> V {
        let call = self.lock().entry(key.to_string()).or_default().clone();
        let value = call.get_or_init(work).clone();
        let mut calls = self.lock();
        if calls.get(key).is_some_and(|c| Arc::ptr_eq(c, &call)) {
            calls.remove(key);
        }
        value
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<OnceLock<V>>>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Callers inside [`InFlight::run`] for `key` right now (for tests).
    #[cfg(test)]
    fn callers(&self, key: &str) -> usize {
        self.lock().get(key).map_or(0, |c| Arc::strong_count(c) - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::mpsc;

    #[test]
    fn callers_of_a_key_in_progress_share_its_result() {
        let flight = Arc::new(InFlight::<u32>::default());
        let runs = Arc::new(AtomicU32::new(0));
        let (started_tx, started) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let first = {
            let (flight, runs) = (flight.clone(), runs.clone());
            std::thread::spawn(move || {
                flight.run("k", || {
                    started_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                    runs.fetch_add(1, Ordering::SeqCst) + 10
                })
            })
        };
        started.recv().unwrap();
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let (flight, runs) = (flight.clone(), runs.clone());
                std::thread::spawn(move || {
                    flight.run("k", || runs.fetch_add(1, Ordering::SeqCst) + 100)
                })
            })
            .collect();
        // Every waiter has joined the call before the work may finish.
        while flight.callers("k") < 5 {
            std::thread::yield_now();
        }
        release.send(()).unwrap();
        assert_eq!(first.join().unwrap(), 10);
        for w in waiters {
            assert_eq!(w.join().unwrap(), 10);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(flight.callers("k"), 0);
        // A finished key runs again, and other keys never wait for it.
        assert_eq!(flight.run("k", || 7), 7);
        assert_eq!(flight.run("other", || 8), 8);
    }

    #[test]
    fn a_panicking_call_lets_the_next_caller_run() {
        let flight = InFlight::<u32>::default();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            flight.run("k", || panic!("deliberate"))
        }));
        assert!(panicked.is_err());
        assert_eq!(flight.run("k", || 3), 3);
    }
}
