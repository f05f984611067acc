//! The runners of a node, owned apart from the actors that hand them work, so that a
//! restarted QueueActor or SchedulerActor takes over the same runners (and whatever
//! they are running), and a crashed runner is replaced in place.

use crate::runner::{CurrentRun, RunnerEnv, TaskRunner};
use actix::prelude::*;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Which actor hands a group of runners its work.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Group {
    /// The runners of a task cluster (managed and ephemeral tasks), fed by the queue.
    Cluster(String),
    /// The runners of scheduled tasks, fed by the scheduler.
    Scheduled,
}

impl std::fmt::Display for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Group::Cluster(c) => write!(f, "cluster {c}"),
            Group::Scheduled => f.write_str("scheduled tasks"),
        }
    }
}

/// One runner: its address, its current run, and the thread it lives on.
#[derive(Clone)]
pub(crate) struct RunnerHandle {
    /// The runner.
    pub addr: Addr<TaskRunner>,
    /// Its current run, shared with the runner.
    pub current: CurrentRun,
    arbiter: ArbiterHandle,
}

impl RunnerHandle {
    /// Starts a runner on an arbiter (a thread) of its own, so guest code never stalls
    /// the other actors.
    fn start(env: &RunnerEnv) -> RunnerHandle {
        let current = CurrentRun::default();
        let arbiter = Arbiter::new().handle();
        let (env, shared) = (env.clone(), current.clone());
        let addr = TaskRunner::start_in_arbiter(&arbiter, move |_| TaskRunner::new(env, shared));
        RunnerHandle {
            addr,
            current,
            arbiter,
        }
    }

    /// What the runner is running now, if anything.
    pub(crate) fn running(&self) -> Option<crate::runner::Running> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Every runner of a node, by group.
#[derive(Clone)]
pub(crate) struct RunnerPool {
    env: RunnerEnv,
    groups: Arc<Mutex<BTreeMap<Group, Vec<RunnerHandle>>>>,
}

impl RunnerPool {
    /// An empty pool whose runners get `env`.
    pub(crate) fn new(env: RunnerEnv) -> RunnerPool {
        RunnerPool {
            env,
            groups: Arc::default(),
        }
    }

    fn groups(&self) -> std::sync::MutexGuard<'_, BTreeMap<Group, Vec<RunnerHandle>>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts `count` runners for `group`.
    pub(crate) fn add(&self, group: Group, count: usize) {
        let runners = (0..count).map(|_| RunnerHandle::start(&self.env)).collect();
        self.groups().insert(group, runners);
    }

    /// The runners of `group` (empty when it has none).
    pub(crate) fn runners(&self, group: &Group) -> Vec<RunnerHandle> {
        self.groups().get(group).cloned().unwrap_or_default()
    }

    /// Replaces runner `index` of `group` (after it crashed) with a fresh one on a
    /// fresh thread, stopping the old thread; returns the new runner.
    pub(crate) fn replace(&self, group: &Group, index: usize) -> RunnerHandle {
        let fresh = RunnerHandle::start(&self.env);
        let old = {
            let mut groups = self.groups();
            let runners = groups.entry(group.clone()).or_default();
            if index < runners.len() {
                Some(std::mem::replace(&mut runners[index], fresh.clone()))
            } else {
                runners.push(fresh.clone());
                None
            }
        };
        if let Some(old) = old {
            old.arbiter.stop();
        }
        fresh
    }
}
