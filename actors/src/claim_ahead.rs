//! How many managed tasks a cluster claims at once: one per idle runner, and — while
//! the cluster's runs are short — a few more per runner, so each claim fetches several
//! tasks instead of one round trip and commit per finished run. Pure: no actor, no
//! store; the queue feeds it what it sees.

use std::time::Duration;

/// Tasks claimed ahead per runner, while a cluster's runs are short.
pub(crate) const PER_RUNNER: usize = 4;

/// Runs shorter than this on average (recent runs weigh most) count as short. Long
/// runs are never claimed ahead: a task waiting behind one here could have run on an
/// idle node.
pub(crate) const SHORT_RUN: Duration = Duration::from_millis(100);

/// What a cluster looks like when it decides whether to claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClusterView {
    /// Its runners, busy or not.
    pub runners: usize,
    /// Runners with nothing to do (not reserved by a claim either).
    pub idle: usize,
    /// Tasks claimed ahead and waiting for a runner.
    pub ready: usize,
    /// Claims out now.
    pub claims_out: usize,
    /// Whether due work may be there (false after a claim came back short).
    pub maybe_work: bool,
}

/// A cluster's recent run times, and the claiming rule that follows from them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ClaimAhead {
    /// Moving average of the run time (recent runs weigh most); `None` until a run
    /// finished, which counts as long.
    average: Option<Duration>,
}

impl ClaimAhead {
    /// No runs seen yet (so: no claiming ahead).
    pub(crate) fn new() -> ClaimAhead {
        ClaimAhead::default()
    }

    /// Folds a finished run's duration into the average.
    pub(crate) fn ran(&mut self, took: Duration) {
        self.average = Some(match self.average {
            None => took,
            Some(before) => before.mul_f64(0.8) + took.mul_f64(0.2),
        });
    }

    /// Whether recent runs were short enough to claim ahead for.
    pub(crate) fn runs_are_short(&self) -> bool {
        self.average.is_some_and(|t| t < SHORT_RUN)
    }

    /// Tasks to claim beyond the idle runners: while runs are short and no claim is
    /// out (one claim ahead at a time), until [`PER_RUNNER`] tasks per runner wait,
    /// in whole rounds (one task per runner): 16 runners claim ahead 16, 32, 48 or 64
    /// tasks, never 1 to 15 as each run ends.
    ///
    /// Why rounds: each claim is a round trip and a commit, so fewer and larger claims
    /// cost less per task; and each claim size is a statement of its own on each
    /// connection (`src/store/claim.rs`), which PostgreSQL plans afresh for its first
    /// five calls before it keeps a generic plan, so a few sizes settle sooner than
    /// sixty-four.
    pub(crate) fn ahead(&self, view: &ClusterView) -> usize {
        if view.claims_out == 0 && self.runs_are_short() {
            let room = (PER_RUNNER * view.runners).saturating_sub(view.ready);
            room - room % view.runners.max(1)
        } else {
            0
        }
    }

    /// How many tasks to claim now (0: no claim): one per idle runner plus
    /// [`ClaimAhead::ahead`], when the cluster may have work.
    ///
    /// While runs are short, one claim is out at a time: runners that go idle while
    /// it is out wait for it (it claims ahead, and what it brings beyond its own
    /// runners is handed to them when it is back). Otherwise runners that finish
    /// faster than a claim returns would each send a claim of one or two tasks, and
    /// a claim out holds back the next claim ahead: the queue would then run on many
    /// small claims, each a commit, which cost the database several times the work
    /// of a few large ones. Long runs claim for each idle runner at once, as they
    /// end seldom and a runner should not wait for another's claim.
    pub(crate) fn claim_count(&self, view: &ClusterView) -> usize {
        if view.claims_out > 0 && self.runs_are_short() {
            return 0;
        }
        let want = view.idle + self.ahead(view);
        if want == 0 || !view.maybe_work {
            0
        } else {
            want
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(idle: usize) -> ClusterView {
        ClusterView {
            runners: 2,
            idle,
            ready: 0,
            claims_out: 0,
            maybe_work: true,
        }
    }

    fn short() -> ClaimAhead {
        let mut pace = ClaimAhead::new();
        pace.ran(Duration::from_millis(5));
        pace
    }

    #[test]
    fn without_runs_it_claims_only_for_idle_runners() {
        let pace = ClaimAhead::new();
        assert!(!pace.runs_are_short());
        assert_eq!(pace.claim_count(&view(2)), 2);
        assert_eq!(pace.claim_count(&view(0)), 0);
    }

    #[test]
    fn short_runs_claim_ahead_up_to_four_per_runner() {
        let pace = short();
        assert!(pace.runs_are_short());
        assert_eq!(pace.claim_count(&view(1)), 1 + 8);
        // Tasks already waiting count against the four per runner.
        let waiting = ClusterView {
            ready: 6,
            ..view(0)
        };
        assert_eq!(pace.claim_count(&waiting), 2);
        let full = ClusterView {
            ready: 9,
            ..view(0)
        };
        assert_eq!(pace.claim_count(&full), 0);
    }

    #[test]
    fn claims_ahead_come_in_whole_rounds_of_one_task_per_runner() {
        let pace = short();
        let sixteen = |ready: usize, idle: usize| ClusterView {
            runners: 16,
            idle,
            ready,
            claims_out: 0,
            maybe_work: true,
        };
        assert_eq!(pace.claim_count(&sixteen(0, 16)), 16 + 64);
        assert_eq!(pace.claim_count(&sixteen(60, 0)), 0);
        assert_eq!(pace.claim_count(&sixteen(48, 0)), 16);
        assert_eq!(pace.claim_count(&sixteen(47, 0)), 16);
        assert_eq!(pace.claim_count(&sixteen(31, 1)), 1 + 32);
        // One runner: a round is one task, as before.
        let one = ClusterView {
            runners: 1,
            ..sixteen(1, 0)
        };
        assert_eq!(pace.claim_count(&one), 3);
    }

    #[test]
    fn while_runs_are_short_idle_runners_wait_for_the_claim_out() {
        let out = ClusterView {
            claims_out: 1,
            ..view(1)
        };
        assert_eq!(short().claim_count(&out), 0);
        assert_eq!(short().claim_count(&ClusterView { idle: 2, ..out }), 0);
        // Long runs: each idle runner claims at once, without claiming ahead.
        let mut long = ClaimAhead::new();
        long.ran(Duration::from_secs(1));
        assert_eq!(long.claim_count(&out), 1);
        assert_eq!(long.claim_count(&ClusterView { idle: 0, ..out }), 0);
        // No run seen yet counts as long.
        assert_eq!(ClaimAhead::new().claim_count(&out), 1);
    }

    #[test]
    fn no_claim_when_no_work_is_expected() {
        let quiet = ClusterView {
            maybe_work: false,
            ..view(2)
        };
        assert_eq!(short().claim_count(&quiet), 0);
    }

    #[test]
    fn long_runs_stop_claiming_ahead_and_recent_runs_weigh_most() {
        let mut pace = short();
        pace.ran(Duration::from_secs(1));
        // 0.8 × 5 ms + 0.2 × 1 s = 204 ms: long.
        assert!(!pace.runs_are_short());
        assert_eq!(pace.claim_count(&view(1)), 1);
        for _ in 0..20 {
            pace.ran(Duration::from_millis(5));
        }
        assert!(pace.runs_are_short());
    }
}
