//! The queue's state for one task cluster: its runners and what each is busy with, the
//! claims out, the tasks claimed ahead and the ephemeral tasks waiting. The
//! [`crate::queue::QueueActor`] keeps one per cluster, so every cluster it touches is
//! one it knows.

use crate::claim_ahead::{ClaimAhead, ClusterView};
use crate::error::Error;
use crate::pool::RunnerHandle;
use actix::prelude::*;
use std::collections::VecDeque;
use std::time::Duration;
use warren::store::ClaimedTask;
use warren::task::{LeaseToken, Millis, TaskId};
use warren::wasm::KillSwitch;

/// What a runner is busy with, as the queue sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Busy {
    /// A managed task this queue handed it: (id, lease token).
    Managed(TaskId, LeaseToken),
    /// An ephemeral task this queue handed it.
    Ephemeral,
    /// Reserved for a claim that is out.
    Claiming,
    /// A run handed to it before this queue started (by a queue that crashed); the
    /// runner finishes and resolves it by itself, the queue only renews its lease
    /// and waits for the runner to be idle.
    Inherited(Option<(TaskId, LeaseToken)>),
}

/// One runner as the queue sees it.
pub(crate) struct Slot {
    /// The runner.
    pub runner: RunnerHandle,
    /// What it is busy with; `None` when idle.
    pub busy: Option<Busy>,
}

/// One cluster's queue.
pub(crate) struct ClusterQueue {
    /// The cluster's name.
    pub name: String,
    /// Its runners.
    pub slots: Vec<Slot>,
    /// Claims out (each for runners it reserved; several may be out).
    claims_out: usize,
    /// Woken while a claim was out: that claim may have missed the new work, so the
    /// cluster claims again when it returns.
    woken_while_claiming: bool,
    /// May have due work: false after a claim found less than it asked for, true
    /// again on a wake-up for the cluster, the timer, or recovered leases. A runner
    /// finishing in one cluster then claims nothing for the others.
    maybe_work: bool,
    /// Tasks claimed ahead of need (see [`ClaimAhead`]), started the moment a runner
    /// frees up. Their leases are renewed like running ones; a stopping queue gives
    /// them back.
    pub ready: VecDeque<ClaimedTask>,
    /// Recent run times: how many to claim.
    pace: ClaimAhead,
    /// Ephemeral tasks waiting for a runner.
    pub ephemeral: VecDeque<EphemeralRequest>,
    /// When it last claimed or was woken by the timer (the store's clock): a
    /// rate-limit token that came back since may be for tasks its claims left
    /// waiting, so it is a reason to wake (see `QueueActor::arm_timer`).
    pub rate_mark: Millis,
}

impl ClusterQueue {
    /// The queue of cluster `name` over `runners`, taking over what they run.
    pub(crate) fn new(name: String, runners: Vec<RunnerHandle>) -> ClusterQueue {
        let slots = runners
            .into_iter()
            .map(|runner| {
                let busy = runner
                    .running()
                    .map(|r| Busy::Inherited(r.task_id.zip(r.token)));
                Slot { runner, busy }
            })
            .collect();
        ClusterQueue {
            name,
            slots,
            claims_out: 0,
            woken_while_claiming: false,
            maybe_work: true,
            ready: VecDeque::new(),
            pace: ClaimAhead::new(),
            ephemeral: VecDeque::new(),
            rate_mark: 0,
        }
    }

    /// Frees the runners whose inherited run ended (such runs end without telling
    /// the queue).
    pub(crate) fn forget_ended_inherited(&mut self) {
        for slot in &mut self.slots {
            if matches!(slot.busy, Some(Busy::Inherited(_))) && slot.runner.running().is_none() {
                slot.busy = None;
            }
        }
    }

    /// The idle runners' indexes.
    pub(crate) fn idle(&self) -> Vec<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.busy.is_none())
            .map(|(i, _)| i)
            .collect()
    }

    /// How many tasks to claim now for `idle` runners (0: no claim).
    pub(crate) fn claim_count(&self, idle: usize) -> usize {
        self.pace.claim_count(&ClusterView {
            runners: self.slots.len(),
            idle,
            ready: self.ready.len(),
            claims_out: self.claims_out,
            maybe_work: self.maybe_work,
        })
    }

    /// A claim goes out for the runners `slots`: they are reserved until it is back.
    pub(crate) fn claim_sent(&mut self, slots: &[usize]) {
        for &slot in slots {
            self.slots[slot].busy = Some(Busy::Claiming);
        }
        self.claims_out += 1;
    }

    /// A claim for `slots` came back: frees them, and says whether the cluster was
    /// woken while it was out.
    pub(crate) fn claim_back(&mut self, slots: &[usize]) -> bool {
        self.claims_out -= 1;
        for &slot in slots {
            self.slots[slot].busy = None;
        }
        std::mem::take(&mut self.woken_while_claiming)
    }

    /// A claim came back with less than it asked for: nothing more is due now.
    pub(crate) fn drained(&mut self) {
        self.maybe_work = false;
    }

    /// Notes that the cluster may have due work; a claim that is out may have looked
    /// before it arrived, so it does not count as drained.
    pub(crate) fn expect_work(&mut self) {
        self.maybe_work = true;
        self.mark_woken();
    }

    /// Has a claim that is out dispatch again when it is back (new work or a waiting
    /// ephemeral task arrived meanwhile).
    pub(crate) fn mark_woken(&mut self) {
        if self.claims_out > 0 {
            self.woken_while_claiming = true;
        }
    }

    /// Folds a finished run's duration into the cluster's pace.
    pub(crate) fn ran(&mut self, took: Duration) {
        self.pace.ran(took);
    }

    /// The leases this cluster's runners hold: (id, token) of every managed run, its
    /// own or inherited.
    pub(crate) fn leased(&self) -> impl Iterator<Item = (&Slot, TaskId, LeaseToken)> {
        self.slots.iter().filter_map(|slot| match slot.busy {
            Some(Busy::Managed(id, token)) | Some(Busy::Inherited(Some((id, token)))) => {
                Some((slot, id, token))
            }
            _ => None,
        })
    }
}

/// The queue's side of an ephemeral task.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct EphemeralRequest {
    /// Task type.
    pub task_type: String,
    /// Data, JSON text.
    pub data: String,
    /// Timeout from the call; the task type's applies when `None`.
    pub timeout: Option<Duration>,
    /// Thrown when the caller goes away.
    pub kill: KillSwitch,
    /// Where the result (JSON text) goes.
    pub reply: tokio::sync::oneshot::Sender<Result<String, Error>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cluster without runners: its bookkeeping alone.
    fn cluster() -> ClusterQueue {
        ClusterQueue::new("c".into(), Vec::new())
    }

    #[test]
    fn a_short_claim_stops_claiming_until_work_is_expected() {
        let mut c = cluster();
        assert_eq!(c.claim_count(1), 1);
        c.claim_sent(&[]);
        assert!(!c.claim_back(&[]));
        c.drained();
        assert_eq!(c.claim_count(1), 0);
        c.expect_work();
        assert_eq!(c.claim_count(1), 1);
    }

    #[test]
    fn a_wake_up_while_a_claim_is_out_is_remembered_once() {
        let mut c = cluster();
        // Without a claim out there is nothing to remember.
        c.mark_woken();
        c.claim_sent(&[]);
        assert!(!c.claim_back(&[]));
        c.claim_sent(&[]);
        c.expect_work();
        assert!(c.claim_back(&[]));
        c.claim_sent(&[]);
        assert!(!c.claim_back(&[]));
    }
}
