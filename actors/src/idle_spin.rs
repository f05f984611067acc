//! Keeping a thread awake for a moment before it sleeps, so that the wake-up it is
//! about to get is cheap.
//!
//! Waking a thread that sleeps on another core makes the kernel interrupt that core,
//! and on virtual machines that interrupt is slow: two threads handing a message back
//! and forth across cores measured 61–85 µs per round trip here, against 10–16 µs on
//! one core. An ephemeral call takes two such wake-ups (the queue wakes a runner, the
//! runner wakes the queue with the answer), and they were most of its time
//! (`scripts/thread-placement.sh`). A thread that is still polling its event loop
//! when the wake-up comes needs no interrupt: it sees the message at its next poll.
//!
//! So, for at most [`IdleSpin`]'s budget:
//! - a runners' thread whose last run ended keeps polling, until a run starts on it
//!   or the budget is spent ([`run_started`], [`run_ended`]);
//! - the queue's thread keeps polling while an ephemeral run it dispatched is out, so
//!   the answer finds it awake ([`Spinner`]).
//!
//! Polling yields to every other task of the thread, so it delays nothing on it; what
//! it costs is the core's time, at most the budget per spin. With one core there is
//! no other core to interrupt, so the default is off there.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How long a thread about to sleep keeps polling for work instead; zero: never.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct IdleSpin(Duration);

impl IdleSpin {
    /// The default budget on a machine with two or more cores: longer than a short
    /// ephemeral run, so its answer finds the queue awake.
    pub(crate) const DEFAULT: Duration = Duration::from_micros(250);

    /// The budget `chosen`, or by default [`IdleSpin::DEFAULT`] when the process may
    /// use two or more cores and none with one (`cores`).
    pub(crate) fn new(chosen: Option<Duration>, cores: usize) -> IdleSpin {
        match chosen {
            Some(budget) => IdleSpin(budget),
            None if cores >= 2 => IdleSpin(Self::DEFAULT),
            None => IdleSpin(Duration::ZERO),
        }
    }

    /// The budget.
    pub(crate) fn budget(self) -> Duration {
        self.0
    }
}

/// Keeps one thread awake while a condition holds, with at most one spinning task on
/// the thread at a time: a new reason to spin only moves its deadline.
#[derive(Clone, Default)]
pub(crate) struct Spinner {
    /// The deadline of the spinning task; `None`: none is spinning.
    until: Rc<Cell<Option<Instant>>>,
}

impl Spinner {
    /// Keeps this thread polling while `keep()` holds, for at most `spin` from now.
    /// Call on the thread to keep awake, inside its actix runtime.
    pub(crate) fn spin(&self, spin: IdleSpin, keep: impl Fn() -> bool + 'static) {
        if spin.budget().is_zero() {
            return;
        }
        if self
            .until
            .replace(Some(Instant::now() + spin.budget()))
            .is_some()
        {
            return; // the spinning task reads the new deadline
        }
        let until = self.until.clone();
        actix::spawn(async move {
            while keep() && until.get().is_some_and(|d| Instant::now() < d) {
                // Another thread ready to run on this core goes first.
                std::thread::yield_now();
                // Deferred until the thread has polled its event loop without
                // sleeping: a message sent to the thread meanwhile is seen there.
                tokio::task::yield_now().await;
            }
            until.set(None);
        });
    }

    /// Whether a task is spinning.
    #[cfg(test)]
    fn spinning(&self) -> bool {
        self.until.get().is_some()
    }
}

/// The runs under way on this runners' thread, and its spinner.
#[derive(Default)]
struct RunnerThread {
    runs: Rc<Cell<usize>>,
    spinner: Spinner,
}

thread_local! {
    static RUNNER_THREAD: RunnerThread = RunnerThread::default();
}

/// Notes that a run started on this runners' thread (which ends its spinning).
pub(crate) fn run_started() {
    RUNNER_THREAD.with(|t| t.runs.set(t.runs.get() + 1));
}

/// Notes that a run on this runners' thread ended; when it was the thread's last, the
/// thread keeps polling for the next one, for at most `spin`.
pub(crate) fn run_ended(spin: IdleSpin) {
    RUNNER_THREAD.with(|t| {
        let left = t.runs.get().saturating_sub(1);
        t.runs.set(left);
        if left == 0 {
            let runs = t.runs.clone();
            t.spinner.spin(spin, move || runs.get() == 0);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_spins_only_with_another_core_to_spare() {
        assert_eq!(IdleSpin::new(None, 1).budget(), Duration::ZERO);
        assert_eq!(IdleSpin::new(None, 2).budget(), IdleSpin::DEFAULT);
        let chosen = Duration::from_micros(40);
        assert_eq!(IdleSpin::new(Some(chosen), 1).budget(), chosen);
        assert_eq!(
            IdleSpin::new(Some(Duration::ZERO), 8).budget(),
            Duration::ZERO
        );
    }

    /// Yields until `spinner` stops spinning (it always does: its deadline is near).
    async fn until_stopped(spinner: &Spinner) {
        while spinner.spinning() {
            tokio::task::yield_now().await;
        }
    }

    #[actix_rt::test]
    async fn a_spin_ends_when_its_condition_no_longer_holds() {
        let spinner = Spinner::default();
        let waiting = Rc::new(Cell::new(true));
        let keep = waiting.clone();
        // A budget far beyond the test: only the condition can end it.
        spinner.spin(IdleSpin(Duration::from_secs(3600)), move || keep.get());
        tokio::task::yield_now().await;
        assert!(spinner.spinning());
        waiting.set(false);
        until_stopped(&spinner).await;
    }

    #[actix_rt::test]
    async fn a_spin_ends_at_its_budget_and_a_new_reason_moves_the_deadline_of_the_one_spinning() {
        let spinner = Spinner::default();
        let polls = Rc::new(Cell::new(0u32));
        let counted = polls.clone();
        let budget = IdleSpin(Duration::from_millis(5));
        spinner.spin(budget, move || {
            counted.set(counted.get() + 1);
            true
        });
        let first_deadline = spinner.until.get().expect("spinning");
        // A second reason while the first spins starts no second task: its condition
        // is never asked.
        spinner.spin(budget, || panic!("a second spinning task"));
        assert!(spinner.until.get().expect("spinning") >= first_deadline);
        until_stopped(&spinner).await;
        assert!(polls.get() > 0);
        assert!(Instant::now() >= first_deadline);
    }

    /// The README's promise: a spin delays no other task of its thread. The other task
    /// runs while the spin goes on; a spin that held the thread would let it run only
    /// after its end.
    #[actix_rt::test]
    async fn other_tasks_of_the_thread_run_while_it_spins() {
        let spinner = Spinner::default();
        let waiting = Rc::new(Cell::new(true));
        let keep = waiting.clone();
        spinner.spin(IdleSpin(Duration::from_secs(2)), move || keep.get());
        let watched = spinner.clone();
        let ran_during_spin = tokio::task::spawn_local(async move { watched.spinning() })
            .await
            .unwrap();
        assert!(ran_during_spin, "the other task waited for the spin's end");
        waiting.set(false);
        until_stopped(&spinner).await;
    }

    #[actix_rt::test]
    async fn no_budget_spins_nothing() {
        let spinner = Spinner::default();
        spinner.spin(IdleSpin::default(), || panic!("spun without a budget"));
        assert!(!spinner.spinning());
    }

    #[actix_rt::test]
    async fn a_runners_thread_spins_once_its_last_run_ended() {
        let spin = IdleSpin(Duration::from_secs(3600));
        run_started();
        run_started();
        run_ended(spin);
        assert!(
            !RUNNER_THREAD.with(|t| t.spinner.spinning()),
            "a run is still under way"
        );
        run_ended(spin);
        assert!(RUNNER_THREAD.with(|t| t.spinner.spinning()));
        // A run that starts ends the spinning.
        run_started();
        let spinner = RUNNER_THREAD.with(|t| t.spinner.clone());
        until_stopped(&spinner).await;
        run_ended(IdleSpin::default());
    }
}
