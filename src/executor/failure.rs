//! The retry rule applied to a failed run: read the task's failure count and
//! not-before time under its fence, decide with [`decide_failure`], write the failure.

use crate::store::run::{failure_state, write_failure, FailureEnd, FailureState, FailureWrite};
use crate::store::signals::{announce_outcome, announce_work, Pending};
use crate::store::{
    bounded_text, AnyConn, ResolveOutcome, Store, StoreError, StoreResult, MAX_ERROR_BYTES,
};
use crate::task::{decide_failure, FailureDecision, LeaseToken, Millis, RetryPolicy, TaskId};

/// A failed run, as it is recorded: a temporary failure, trap, timeout, missing
/// resolution or expired lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunFailure {
    /// The task.
    pub id: TaskId,
    /// The fencing token of the run that failed.
    pub token: LeaseToken,
    /// What went wrong (cut to [`MAX_ERROR_BYTES`] when stored).
    pub error: String,
    /// A stack trace, when there is one (cut likewise).
    pub stack: Option<String>,
    /// An explicit time for the next attempt, which wins over the retry schedule.
    pub next_retry: Option<Millis>,
    /// When the failed run started, if it did ([`crate::store::Store::begin_run`]); the
    /// claim's estimate stays otherwise.
    pub started_at: Option<Millis>,
}

impl RunFailure {
    /// A failure of the run of `id` under `token` with `error`, no stack and no
    /// explicit retry time.
    pub fn new(id: TaskId, token: LeaseToken, error: impl Into<String>) -> RunFailure {
        RunFailure {
            id,
            token,
            error: error.into(),
            stack: None,
            next_retry: None,
            started_at: None,
        }
    }
}

/// What recording a failure writes, decided from the task's state.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FailurePlan {
    /// The error to store, bounded.
    error: String,
    /// The stack to store, bounded.
    stack: Option<String>,
    /// Failed for good, or pending again.
    end: FailureEnd,
    /// Whether the task is due again at once, so its cluster's queue is woken.
    wake: bool,
}

/// Decides what a failure writes: the retry rule on the task's failure count and
/// not-before time, the texts bounded.
fn plan_failure(
    policy: RetryPolicy,
    state: &FailureState,
    failure: &RunFailure,
    now: Millis,
) -> FailurePlan {
    let decision = decide_failure(
        policy,
        failure.id,
        state.failures,
        now,
        failure.next_retry,
        state.not_before,
    );
    let (end, wake) = match decision {
        FailureDecision::GiveUp => (FailureEnd::Failed { finished_at: now }, false),
        FailureDecision::Retry { next_attempt } => {
            (FailureEnd::Pending { next_attempt }, next_attempt <= now)
        }
    };
    FailurePlan {
        error: bounded_text(failure.error.clone(), MAX_ERROR_BYTES),
        stack: failure
            .stack
            .clone()
            .map(|s| bounded_text(s, MAX_ERROR_BYTES)),
        end,
        wake,
    }
}

/// Records `failure` on `conn`, inside a transaction the caller opened: the read, the
/// decision and the write of the retry rule. Fails with [`StoreError::LeaseLost`]
/// when the run no longer holds its task.
pub(crate) async fn record_failure_on(
    conn: &mut AnyConn<'_>,
    pending: &mut Pending,
    failure: &RunFailure,
    policy: RetryPolicy,
    now: Millis,
) -> StoreResult<ResolveOutcome> {
    let (id, token) = (failure.id, failure.token);
    let Some(state) = failure_state(conn, id, token).await? else {
        return Err(StoreError::LeaseLost { id, token });
    };
    let plan = plan_failure(policy, &state, failure, now);
    let write = FailureWrite {
        id,
        token,
        error: &plan.error,
        stack: plan.stack.as_deref(),
        started_at: failure.started_at.or(state.started_at),
        end: plan.end,
    };
    write_failure(conn, &write).await?;
    if plan.wake {
        announce_work(conn, pending, &state.cluster).await?;
    }
    announce_outcome(conn, pending, id).await?;
    Ok(match plan.end {
        FailureEnd::Failed { .. } => ResolveOutcome::Failed,
        FailureEnd::Pending { next_attempt } => ResolveOutcome::Pending { next_attempt },
    })
}

impl Store {
    /// Records a failure of a run outside its transaction (a temporary failure, trap,
    /// timeout or missing resolution), fenced by its token, and applies the retry rule
    /// of `policy`, in a transaction of its own.
    pub async fn record_failure(
        &self,
        failure: &RunFailure,
        policy: RetryPolicy,
    ) -> StoreResult<ResolveOutcome> {
        let now = self.now();
        self.in_transaction(async |conn, pending| {
            record_failure_on(conn, pending, failure, policy, now).await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn policy(max_failures: i32) -> RetryPolicy {
        RetryPolicy::reference(MIN, max_failures)
    }

    fn state(failures: i32, not_before: Option<Millis>) -> FailureState {
        FailureState {
            failures,
            not_before,
            cluster: "default".into(),
            started_at: None,
        }
    }

    fn failure(next_retry: Option<Millis>) -> RunFailure {
        RunFailure {
            next_retry,
            ..RunFailure::new(TaskId(7), LeaseToken(3), "boom")
        }
    }

    #[test]
    fn a_retry_in_the_future_stays_quiet() {
        let plan = plan_failure(policy(-1), &state(1, None), &failure(None), 1000);
        assert_eq!(
            plan.end,
            FailureEnd::Pending {
                next_attempt: 1000 + 2 * MIN
            }
        );
        assert!(!plan.wake);
        assert_eq!(plan.error, "boom");
    }

    #[test]
    fn a_retry_due_now_wakes_the_queue() {
        let plan = plan_failure(policy(-1), &state(0, None), &failure(Some(500)), 1000);
        assert_eq!(plan.end, FailureEnd::Pending { next_attempt: 1000 });
        assert!(plan.wake);
    }

    #[test]
    fn out_of_retries_fails_at_now() {
        let plan = plan_failure(policy(2), &state(2, None), &failure(None), 1000);
        assert_eq!(plan.end, FailureEnd::Failed { finished_at: 1000 });
        assert!(!plan.wake);
    }

    #[test]
    fn not_before_holds_and_texts_are_bounded() {
        let mut long = failure(Some(0));
        long.error = "x".repeat(MAX_ERROR_BYTES + 10);
        long.stack = Some("y".repeat(MAX_ERROR_BYTES * 2));
        let plan = plan_failure(policy(-1), &state(0, Some(5 * MIN)), &long, 1000);
        assert_eq!(
            plan.end,
            FailureEnd::Pending {
                next_attempt: 5 * MIN
            }
        );
        assert!(!plan.wake);
        assert!(plan.error.len() <= MAX_ERROR_BYTES);
        assert!(plan.stack.unwrap().len() <= MAX_ERROR_BYTES);
    }
}
