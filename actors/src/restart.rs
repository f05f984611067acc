//! Crash supervision: how a dead child actor is noticed, what a crash says, and the
//! restart window that decides when restarting stops making sense.
//!
//! A child (QueueActor, SchedulerActor) is started with [`start_supervised`]: when the
//! child's task ends for any reason — a panic in a handler included — the Supervisor
//! hears of it and restarts the child unless the node is shutting down. Runners catch
//! their own panics (`catch_unwind` around each run) and report them. Neither installs
//! a panic hook: the panic's payload is the message.

use actix::prelude::*;
use std::collections::VecDeque;
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

/// A child actor stopped (sent by [`start_supervised`]'s watch), with the panic that
/// stopped it when there was one.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct ChildStopped {
    /// Which child.
    pub child: Child,
    /// The panic's message, if it panicked.
    pub panic: Option<String>,
}

/// Something crashed and was dealt with (a runner replaced); counts in the window.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct Crashed {
    /// What crashed (`runner default#2`).
    pub what: String,
    /// Why: the panic message.
    pub reason: String,
}

/// Starts `actor` as the supervised `child`: when its task ends, for any reason,
/// `supervisor` hears of it, with the panic's message when a handler panicked. The
/// actor's task is awaited like any task: a panic in it is the task's failure, so no
/// process-wide panic hook is needed to learn what happened.
pub(crate) fn start_supervised<A>(
    child: Child,
    actor: A,
    supervisor: Recipient<ChildStopped>,
) -> Addr<A>
where
    A: Actor<Context = Context<A>>,
{
    let ctx = Context::<A>::new();
    let addr = ctx.address();
    let task = actix_rt::spawn(ctx.into_future(actor));
    actix_rt::spawn(async move {
        let panic = match task.await {
            Ok(()) => None,
            Err(e) if e.is_panic() => Some(payload_text(e.into_panic().as_ref())),
            Err(_) => None,
        };
        supervisor.do_send(ChildStopped { child, panic });
    });
    addr
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
pub(crate) struct RestartWindow {
    policy: RestartPolicy,
    crashes: VecDeque<Instant>,
}

impl RestartWindow {
    /// An empty window.
    pub(crate) fn new(policy: RestartPolicy) -> RestartWindow {
        RestartWindow {
            policy,
            crashes: VecDeque::new(),
        }
    }

    /// Records a crash at `at`; false when it is one too many and the node should give up.
    pub(crate) fn record(&mut self, at: Instant) -> bool {
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
    pub(crate) fn count(&self) -> usize {
        self.crashes.len()
    }
}

/// The text of a panic payload (`panic!` gives `&str` or `String`).
pub(crate) fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
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
