//! Crash supervision: how a dead child actor is noticed, what a crash says, and the
//! restart window that decides when restarting stops making sense.
//!
//! A child (QueueActor, SchedulerActor) carries a [`ChildGuard`]. When the child's task
//! ends for any reason — a panic in a handler included: the actor is dropped while its
//! task unwinds — the guard tells the Supervisor, which restarts the child unless the
//! node is shutting down. Runners catch their own panics and report them.

use actix::prelude::*;
use std::collections::VecDeque;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A supervised child of the Supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Child {
    /// The QueueActor.
    Queue,
    /// The SchedulerActor.
    Scheduler,
}

impl std::fmt::Display for Child {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Child::Queue => "queue",
            Child::Scheduler => "scheduler",
        })
    }
}

/// A child actor stopped (sent by its [`ChildGuard`]), with the panic that stopped
/// it when there was one.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ChildStopped {
    /// Which child.
    pub child: Child,
    /// The panic's message and place, if it panicked.
    pub panic: Option<String>,
}

/// Something crashed and was dealt with (a runner replaced); counts in the window.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Crashed {
    /// What crashed (`runner default#2`).
    pub what: String,
    /// Why: the panic message.
    pub reason: String,
}

/// Lives inside a child actor; tells the Supervisor when the actor is dropped.
pub struct ChildGuard {
    child: Child,
    supervisor: Recipient<ChildStopped>,
}

impl ChildGuard {
    /// A guard reporting `child` to `supervisor`.
    pub fn new(child: Child, supervisor: Recipient<ChildStopped>) -> ChildGuard {
        ChildGuard { child, supervisor }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // The actor is dropped on the thread it panicked on, right after the panic.
        self.supervisor.do_send(ChildStopped {
            child: self.child,
            panic: take_last_panic(),
        });
    }
}

/// At most `max_restarts` crashes within `within`; one more and the Supervisor gives
/// up (a crash loop is a bug that restarting will not fix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Crashes tolerated within the window.
    pub max_restarts: usize,
    /// The window.
    pub within: Duration,
}

impl Default for RestartPolicy {
    fn default() -> RestartPolicy {
        RestartPolicy {
            max_restarts: 10,
            within: Duration::from_secs(60),
        }
    }
}

/// The crashes seen within the policy's window.
#[derive(Debug)]
pub struct RestartWindow {
    policy: RestartPolicy,
    crashes: VecDeque<Instant>,
}

impl RestartWindow {
    /// An empty window.
    pub fn new(policy: RestartPolicy) -> RestartWindow {
        RestartWindow {
            policy,
            crashes: VecDeque::new(),
        }
    }

    /// Records a crash at `at`; false when it is one too many and the node should give up.
    pub fn record(&mut self, at: Instant) -> bool {
        while let Some(&first) = self.crashes.front() {
            if at.duration_since(first) > self.policy.within {
                self.crashes.pop_front();
            } else {
                break;
            }
        }
        self.crashes.push_back(at);
        self.crashes.len() <= self.policy.max_restarts
    }

    /// Crashes within the window so far.
    pub fn count(&self) -> usize {
        self.crashes.len()
    }
}

thread_local! {
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}
static HOOK: OnceLock<()> = OnceLock::new();

/// Remembers each thread's latest panic message and place (for the crash report),
/// then lets the previous hook print it as before. Installed once per process.
pub fn install_panic_hook() {
    HOOK.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let place = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let text = format!("{}{place}", payload_text(info.payload()));
            LAST_PANIC.with(|last| *last.borrow_mut() = Some(text));
            previous(info);
        }));
    });
}

/// This thread's latest panic message, taken (so it is reported once).
pub fn take_last_panic() -> Option<String> {
    LAST_PANIC.with(|last| last.borrow_mut().take())
}

/// The text of a panic payload (`panic!` gives `&str` or `String`).
pub fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_forgives_old_crashes_and_refuses_one_too_many() {
        let policy = RestartPolicy {
            max_restarts: 2,
            within: Duration::from_secs(10),
        };
        let mut window = RestartWindow::new(policy);
        let t0 = Instant::now();
        assert!(window.record(t0));
        assert!(window.record(t0 + Duration::from_secs(1)));
        // A third within 10 s is one too many …
        assert!(!RestartWindow {
            policy,
            crashes: window.crashes.clone()
        }
        .record(t0 + Duration::from_secs(2)));
        // … but after the first left the window it is fine.
        assert!(window.record(t0 + Duration::from_secs(11)));
        assert_eq!(window.count(), 2);
    }
}
