//! Lease recovery: a task whose runner (or node) died is returned to the queue. The
//! store reads the expired leases and takes one back with a conditional write; what
//! is recorded is decided here: a failure under the task type's retry policy, due
//! again at once.

use super::failure::{record_failure_on, RunFailure};
use crate::store::claim::take_expired_lease;
use crate::store::{ExpiredLease, RunOutcome, RunRecord, Store, StoreError, StoreResult};
use crate::task::{Millis, RetryPolicy, TaskId, TaskType};

/// The failure recorded for a task whose lease expired: it names the runner, and the
/// task is due again at once (the crash was not the task's choice of delay).
fn expired_lease_failure(lease: &ExpiredLease, now: Millis) -> RunFailure {
    RunFailure {
        next_retry: Some(now),
        ..RunFailure::new(
            lease.id,
            lease.token,
            format!(
                "the lease of runner '{}' expired before the task was resolved (the runner or its node stopped)",
                lease.owner.as_deref().unwrap_or_default()
            ),
        )
    }
}

/// The history record of a run whose lease expired: lost (nothing it did committed),
/// on the node that held the lease, from its start until its recovery.
fn lost_run(lease: &ExpiredLease, error: &str, now: Millis) -> RunRecord {
    RunRecord {
        task_id: lease.id,
        lease_token: lease.token,
        node: lease.owner.clone().unwrap_or_default(),
        started_at: lease.started_at.unwrap_or(now),
        finished_at: now,
        outcome: RunOutcome::Lost,
        error: Some(error.to_string()),
        log: Vec::new(),
    }
}

/// The retry policy that applies to a recovered task: its type's, or the default when
/// the stored type name is unreadable.
fn policy_for(
    lease: &ExpiredLease,
    policies: &(dyn Fn(&TaskType) -> RetryPolicy + Sync),
) -> RetryPolicy {
    lease.task_type.as_ref().map(policies).unwrap_or_default()
}

impl Store {
    /// Returns tasks whose lease expired (their runner or node died) to the queue. Each
    /// counts as a failure under its type's retry policy (`policy`), but is due again at
    /// once. Returns the recovered ids.
    ///
    /// It reads the expired leases ([`Store::expired_leases`]), then recovers each with
    /// [`Store::recover_lease`], whose write checks the lease again: a runner that renewed
    /// its lease in between keeps its task.
    pub async fn recover_expired_leases(
        &self,
        policy: &(dyn Fn(&TaskType) -> RetryPolicy + Sync),
    ) -> StoreResult<Vec<TaskId>> {
        let mut recovered = Vec::new();
        for lease in self.expired_leases().await? {
            if self
                .recover_lease(&lease, policy_for(&lease, policy))
                .await?
            {
                recovered.push(lease.id);
            }
        }
        Ok(recovered)
    }

    /// Recovers one task read by [`Store::expired_leases`]: records the failure "the
    /// lease of runner X expired" under `policy`, due again at once. Returns false, and
    /// changes nothing, unless the task still runs under the same token with a lease
    /// that has expired *now*: a renewal, a cancellation or another recovery that landed
    /// after the read wins.
    ///
    /// The decision is the recovery's first write, a conditional update carrying the
    /// token and `lease_until < now`; on PostgreSQL it also locks the row, so no renewal
    /// can land between it and the failure written after it in the same transaction.
    pub async fn recover_lease(
        &self,
        lease: &ExpiredLease,
        policy: RetryPolicy,
    ) -> StoreResult<bool> {
        let now = self.now();
        let failure = expired_lease_failure(lease, now);
        let recovered = self
            .in_transaction(async |conn, pending| {
                if !take_expired_lease(conn, lease, now).await? {
                    return Ok(false);
                }
                record_failure_on(conn, pending, &failure, policy, now).await?;
                Ok(true)
            })
            .await;
        let recovered = match recovered {
            // Taken over in the meantime (cannot happen under the row lock; kept safe).
            Err(StoreError::LeaseLost { .. }) => Ok(false),
            other => other,
        }?;
        if recovered {
            // The run no node ended, in the task's history: the failure is committed
            // already, so a record that cannot be written loses only itself.
            let record = lost_run(lease, &failure.error, now);
            if let Err(e) = self.record_run(record).await {
                tracing::warn!(task = %lease.id, "the recovered run's history was not recorded: {e}");
            }
        }
        Ok(recovered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::LeaseToken;

    fn lease(task_type: Option<&str>) -> ExpiredLease {
        ExpiredLease {
            id: TaskId(4),
            task_type: task_type.map(|t| t.parse().unwrap()),
            token: LeaseToken(9),
            owner: Some("node-a".into()),
            started_at: Some(1_000),
        }
    }

    #[test]
    fn the_failure_names_the_runner_and_is_due_at_once() {
        let failure = expired_lease_failure(&lease(Some("demo:ping")), 1234);
        assert_eq!((failure.id, failure.token), (TaskId(4), LeaseToken(9)));
        assert_eq!(failure.next_retry, Some(1234));
        assert!(failure.error.contains("runner 'node-a' expired"));
        assert_eq!(failure.stack, None);
    }

    #[test]
    fn a_recovered_run_is_recorded_as_lost_on_the_node_that_held_it() {
        let failure = expired_lease_failure(&lease(None), 5_000);
        let record = lost_run(&lease(None), &failure.error, 5_000);
        assert_eq!(
            (record.task_id, record.lease_token),
            (TaskId(4), LeaseToken(9))
        );
        assert_eq!(record.node, "node-a");
        assert_eq!((record.started_at, record.finished_at), (1_000, 5_000));
        assert_eq!(record.outcome, RunOutcome::Lost);
        assert_eq!(record.error.as_deref(), Some(failure.error.as_str()));
    }

    #[test]
    fn the_types_policy_applies_else_the_default() {
        let strict = RetryPolicy::reference(1, 0);
        let policies = move |_: &TaskType| strict;
        assert_eq!(policy_for(&lease(Some("demo:ping")), &policies), strict);
        assert_eq!(policy_for(&lease(None), &policies), RetryPolicy::default());
    }
}
