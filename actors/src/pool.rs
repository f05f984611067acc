//! The runners of a node, owned apart from the actors that hand them work, so that a
//! restarted QueueActor or SchedulerActor takes over the same runners (and whatever
//! they are running), and a crashed runner is replaced in place.

use crate::runner::{CurrentRun, RunnerEnv, TaskRunner};
use crate::runner_threads::RunnerThreads;
use actix::prelude::*;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use warren::store::GroupSlot;

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

/// One runner: its address and its current run.
#[derive(Clone)]
pub(crate) struct RunnerHandle {
    /// The runner.
    pub addr: Addr<TaskRunner>,
    /// Its current run, shared with the runner.
    pub current: CurrentRun,
    /// The run group it keeps open between runs, shared with the runner: the queue
    /// has it committed when it has no next task for the runner.
    pub open_group: GroupSlot,
}

impl RunnerHandle {
    /// Starts a runner on one of the runners' threads (never the thread of the other
    /// actors, so guest code never stalls them).
    fn start(env: &RunnerEnv, threads: &RunnerThreads) -> RunnerHandle {
        let current = CurrentRun::default();
        let open_group = GroupSlot::default();
        let placement = threads.next();
        let (mut env, shared) = (env.clone(), current.clone());
        env.thread_connections = placement.connections;
        env.open_group = open_group.clone();
        let addr =
            TaskRunner::start_in_arbiter(&placement.arbiter, move |_| TaskRunner::new(env, shared));
        RunnerHandle {
            addr,
            current,
            open_group,
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
    threads: RunnerThreads,
    groups: Arc<Mutex<BTreeMap<Group, Vec<RunnerHandle>>>>,
}

impl RunnerPool {
    /// An empty pool whose runners get `env` and live on `threads`.
    pub(crate) fn new(env: RunnerEnv, threads: RunnerThreads) -> RunnerPool {
        RunnerPool {
            env,
            threads,
            groups: Arc::default(),
        }
    }

    fn groups(&self) -> std::sync::MutexGuard<'_, BTreeMap<Group, Vec<RunnerHandle>>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts `count` runners for `group`.
    pub(crate) fn add(&self, group: Group, count: usize) {
        let runners = (0..count)
            .map(|_| RunnerHandle::start(&self.env, &self.threads))
            .collect();
        self.groups().insert(group, runners);
    }

    /// The runners of `group` (empty when it has none).
    pub(crate) fn runners(&self, group: &Group) -> Vec<RunnerHandle> {
        self.groups().get(group).cloned().unwrap_or_default()
    }

    /// The connections the runners' threads hold for their runs (PostgreSQL).
    pub(crate) fn thread_connections_use(&self) -> warren::store::PoolUse {
        self.threads.connections_use()
    }

    /// How long the runners' threads, and the queue waiting for an ephemeral answer,
    /// keep polling before they sleep (see `idle_spin.rs`).
    pub(crate) fn idle_spin(&self) -> crate::idle_spin::IdleSpin {
        self.env.idle_spin
    }

    /// Replaces runner `index` of `group` (after it crashed: a crashed runner stops
    /// itself, and its thread goes on serving the others) with a fresh one; returns
    /// the new runner.
    pub(crate) fn replace(&self, group: &Group, index: usize) -> RunnerHandle {
        let fresh = RunnerHandle::start(&self.env, &self.threads);
        let mut groups = self.groups();
        let runners = groups.entry(group.clone()).or_default();
        if index < runners.len() {
            runners[index] = fresh.clone();
        } else {
            runners.push(fresh.clone());
        }
        fresh
    }
}
