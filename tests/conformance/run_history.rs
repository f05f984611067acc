//! The history of a task's runs: what is recorded, what is kept, and what goes with
//! the task.

use crate::support::conformance::*;
use warren::store::{RunLogLine, RunOutcome, RunRecord, KEPT_RUNS_PER_TASK};

crate::conformance!(
    runs_are_recorded_oldest_first_and_only_the_newest_are_kept,
    a_quiet_completion_is_not_recorded_and_a_deleted_task_records_nothing,
    a_resolution_the_store_replaces_is_reported_as_stored,
    a_run_whose_lease_expired_is_recorded_as_lost_when_it_is_recovered,
    records_of_runs_that_end_together_share_one_commit,
    a_queued_record_nobody_waits_for_is_written_and_flushed,
);

/// A runner queues its run's record and goes on without waiting for it: the record
/// is written all the same, and a flush returns once it is.
async fn a_queued_record_nobody_waits_for_is_written_and_flushed(b: Backend) {
    let Some(db) = TestDb::with_config(b, |c| c.max_connections = 1).await else {
        return;
    };
    let s = &db.store;
    let id = s.schedule(task(json!({}))).await.unwrap();
    // The writer waits for the pool's only connection, so the record is still queued
    // when its answer is dropped and when the flush starts.
    let held = s.connection().await.unwrap();
    let queued = record(id, 1, RunOutcome::Retry, &["not waited for"]);
    drop(s.queue_run_record(queued.clone()));
    let mut flush = Box::pin(s.flush_run_records());
    assert!(futures_util::poll!(&mut flush).is_pending());
    drop(held);
    flush.await;
    assert_eq!(s.task_runs(id).await.unwrap(), vec![queued]);
    // With nothing queued, a flush returns at once.
    s.flush_run_records().await;
}

/// Records that arrive while an earlier write waits are written as one group, in one
/// commit: two runs of one task in one group both land in order and the trim still
/// keeps the newest, and a deleted task's record is dropped without failing the rest.
async fn records_of_runs_that_end_together_share_one_commit(b: Backend) {
    let Some(db) = TestDb::with_config(b, |c| c.max_connections = 1).await else {
        return;
    };
    let s = &db.store;
    let twice = s.schedule(task(json!({}))).await.unwrap();
    let once = s.schedule(task(json!({}))).await.unwrap();
    let full = s.schedule(task(json!({}))).await.unwrap();
    let gone = s.schedule(task(json!({}))).await.unwrap();
    let kept = KEPT_RUNS_PER_TASK as i64;
    for token in 1..=kept {
        s.record_run(record(full, token, RunOutcome::Retry, &[]))
            .await
            .unwrap();
    }
    s.delete(gone).await.unwrap();
    let before = s.run_record_stats();

    let group = [
        record(twice, 1, RunOutcome::Retry, &["first"]),
        record(once, 1, RunOutcome::Failed, &[]),
        record(full, kept + 1, RunOutcome::Retry, &[]),
        record(gone, 1, RunOutcome::Failed, &[]),
        record(twice, 2, RunOutcome::Completed, &["second"]),
        record(full, kept + 2, RunOutcome::Completed, &["last"]),
    ];
    // With the pool's only connection held, the writer waits for it and every record
    // queues behind it.
    let held = s.connection().await.unwrap();
    let mut recording = Box::pin(futures_util::future::join_all(
        group.iter().cloned().map(|r| s.record_run(r)),
    ));
    assert!(futures_util::poll!(&mut recording).is_pending());
    drop(held);
    for (n, recorded) in recording.await.into_iter().enumerate() {
        recorded.unwrap_or_else(|e| panic!("record {n}: {e}"));
    }

    let after = s.run_record_stats();
    assert_eq!(
        (after.groups - before.groups, after.items - before.items),
        (1, group.len() as u64)
    );
    assert_eq!(
        s.task_runs(twice).await.unwrap(),
        vec![group[0].clone(), group[4].clone()]
    );
    assert_eq!(s.task_runs(once).await.unwrap(), vec![group[1].clone()]);
    assert!(s.task_runs(gone).await.unwrap().is_empty());
    let tokens: Vec<i64> = s
        .task_runs(full)
        .await
        .unwrap()
        .iter()
        .map(|r| r.lease_token.0)
        .collect();
    assert_eq!(tokens, (3..=kept + 2).collect::<Vec<_>>());
}

async fn a_run_whose_lease_expired_is_recorded_as_lost_when_it_is_recovered(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let id = s.schedule(task(json!({}))).await.unwrap();
    let claimed = s.claim("node-gone", &clusters(), 1, LEASE).await.unwrap();
    let started = s.now();
    db.clock.advance(LEASE + 1);
    let recovered = s
        .recover_expired_leases(&|_| RetryPolicy::default())
        .await
        .unwrap();
    assert_eq!(recovered, vec![id]);
    let runs = s.task_runs(id).await.unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = &runs[0];
    assert_eq!(
        (run.lease_token, run.node.as_str(), run.outcome),
        (claimed[0].token, "node-gone", RunOutcome::Lost)
    );
    assert_eq!((run.started_at, run.finished_at), (started, s.now()));
    assert!(
        run.error
            .as_deref()
            .unwrap()
            .contains("runner 'node-gone' expired"),
        "{run:?}"
    );
    // Recovering again finds nothing and records nothing.
    assert!(s
        .recover_expired_leases(&|_| RetryPolicy::default())
        .await
        .unwrap()
        .is_empty());
    assert_eq!(s.task_runs(id).await.unwrap().len(), 1);
}

/// What a run's history records is what the store wrote: a completion whose result is
/// too large was stored as a temporary failure saying so, a restart as a restart.
async fn a_resolution_the_store_replaces_is_reported_as_stored(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    s.schedule(task(json!({}))).await.unwrap();
    let huge = format!("\"{}\"", "x".repeat(warren::store::MAX_RESULT_BYTES));
    let (stored, applied) = claim_one(s)
        .await
        .resolve_applied(
            Resolution::Completion { result: huge },
            RetryPolicy::default(),
        )
        .await;
    assert!(
        matches!(stored, Ok(ResolveOutcome::Pending { .. })),
        "{stored:?}"
    );
    let error = applied.error.unwrap();
    assert!(error.contains("bytes of JSON"), "{error}");
    assert_eq!(applied.requeued, None);
    let task = s.list(&TaskFilter::default()).await.unwrap().remove(0);
    assert_eq!(task.last_error.as_deref(), Some(error.as_str()));
    db.clock.set(task.next_attempt.max(s.now()));
    let (stored, applied) = claim_one(s)
        .await
        .resolve_applied(
            Resolution::Restart {
                at: 0,
                new_data: None,
                new_aux_data: None,
            },
            RetryPolicy::default(),
        )
        .await;
    assert!(
        matches!(stored, Ok(ResolveOutcome::Pending { .. })),
        "{stored:?}"
    );
    assert_eq!(applied.requeued, Some(RunOutcome::Restarted));
    assert_eq!(applied.error, None);
}

fn record(id: TaskId, token: i64, outcome: RunOutcome, log: &[&str]) -> RunRecord {
    RunRecord {
        task_id: id,
        lease_token: LeaseToken(token),
        node: "node-a".into(),
        started_at: T0 + token * 1000,
        finished_at: T0 + token * 1000 + 250,
        outcome,
        error: (outcome != RunOutcome::Completed).then(|| format!("attempt {token} failed")),
        log: log
            .iter()
            .map(|m| RunLogLine {
                level: "info".into(),
                message: m.to_string(),
            })
            .collect(),
    }
}

async fn runs_are_recorded_oldest_first_and_only_the_newest_are_kept(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let id = s.schedule(task(json!({}))).await.unwrap();
    let other = s.schedule(task(json!({}))).await.unwrap();
    s.record_run(record(other, 1, RunOutcome::Failed, &[]))
        .await
        .unwrap();
    let first = record(id, 1, RunOutcome::Retry, &["hello", "it's \"quoted\""]);
    s.record_run(first.clone()).await.unwrap();
    // The same run reported twice is kept once.
    s.record_run(first.clone()).await.unwrap();
    assert_eq!(s.task_runs(id).await.unwrap(), vec![first.clone()]);
    let total = KEPT_RUNS_PER_TASK as i64 + 3;
    for token in 2..=total {
        s.record_run(record(id, token, RunOutcome::Retry, &["again"]))
            .await
            .unwrap();
    }
    let runs = s.task_runs(id).await.unwrap();
    let tokens: Vec<i64> = runs.iter().map(|r| r.lease_token.0).collect();
    let newest: Vec<i64> = (total - KEPT_RUNS_PER_TASK as i64 + 1..=total).collect();
    assert_eq!(tokens, newest);
    assert_eq!(runs[0].error.as_deref(), Some("attempt 4 failed"));
    assert_eq!(runs[0].log[0].message, "again");
    // Another task's history is its own.
    assert_eq!(s.task_runs(other).await.unwrap().len(), 1);
    // Its runs go with the task.
    s.cancel(id, "done").await.unwrap();
    s.delete(id).await.unwrap();
    assert!(s.task_runs(id).await.unwrap().is_empty());
    assert_eq!(s.task_runs(other).await.unwrap().len(), 1);
}

async fn a_quiet_completion_is_not_recorded_and_a_deleted_task_records_nothing(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let id = s.schedule(task(json!({}))).await.unwrap();
    s.record_run(record(id, 1, RunOutcome::Completed, &[]))
        .await
        .unwrap();
    assert!(s.task_runs(id).await.unwrap().is_empty());
    let logged = record(id, 2, RunOutcome::Completed, &["done"]);
    s.record_run(logged.clone()).await.unwrap();
    assert_eq!(s.task_runs(id).await.unwrap(), vec![logged]);
    // A task deleted while it ran: its run has nothing to be recorded under.
    s.delete(id).await.unwrap();
    s.record_run(record(id, 3, RunOutcome::Failed, &[]))
        .await
        .unwrap();
    assert!(s.task_runs(id).await.unwrap().is_empty());
}
