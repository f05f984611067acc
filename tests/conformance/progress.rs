//! Progress: what a run reports is seen while it runs (by this node always, by others
//! on PostgreSQL), kept after it ends, shown only for the run that reported it, and
//! refused with a reason when it makes no sense.

use crate::support::conformance::*;
use warren::store::{InvalidProgress, StoreConfig, MAX_PROGRESS_MESSAGE_BYTES};

crate::conformance!(
    progress_is_seen_while_the_run_goes_on_and_kept_when_it_ends,
    a_run_that_lost_its_task_does_not_show_or_write_progress,
    a_later_run_does_not_show_an_earlier_runs_progress,
    progress_that_makes_no_sense_is_refused,
);

/// Another store on the same database: what another process (the CLI, another node)
/// sees, which is only what is written.
async fn elsewhere(db: &TestDb) -> Store {
    Store::open_with(StoreConfig::new(&db.url), db.clock.clone())
        .await
        .unwrap()
}

async fn progress_is_seen_while_the_run_goes_on_and_kept_when_it_ends(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let other = elsewhere(&db).await;
    let id = s.schedule(task(json!({}))).await.unwrap();
    let mut run = claim_one(s).await;
    // The run writes in its transaction (on SQLite it now holds the only write lock).
    run.set_metadata("step", "copying").await.unwrap();
    run.report_progress(0.25, Some("a quarter".into())).unwrap();
    run.report_progress(0.5, Some("half way".into())).unwrap();
    let seen = s.describe(id).await.unwrap().progress.unwrap();
    assert_eq!(
        (seen.fraction, seen.message.as_deref(), seen.at),
        (0.5, Some("half way"), T0),
        "the node sees its run's latest report"
    );
    s.flush_progress().await;
    let outside = other.describe(id).await.unwrap().progress;
    match b {
        Backend::Postgres => assert_eq!(
            outside.as_ref(),
            Some(&seen),
            "written outside the run's transaction while it goes on"
        ),
        Backend::Sqlite => assert_eq!(outside, None, "kept in the node's memory while it runs"),
    }
    db.clock.advance(1_000);
    run.report_progress(1.0, None).unwrap();
    run.resolve(complete(json!({})), RetryPolicy::default())
        .await
        .unwrap();
    s.flush_progress().await;
    let kept = other.describe(id).await.unwrap().progress.unwrap();
    assert_eq!(
        (kept.fraction, kept.message, kept.at),
        (1.0, None, T0 + 1_000),
        "the last report is kept after the run"
    );
    assert_eq!(
        s.describe(id).await.unwrap().progress.map(|p| p.fraction),
        Some(1.0)
    );
    // The progress goes with its task.
    s.delete(id).await.unwrap();
    assert_eq!(
        count(s, "SELECT COUNT(*) AS n FROM warren_task_progress").await,
        0
    );
}

/// A run whose lease expired and whose task was claimed again is a ghost: what it
/// reports is neither shown nor written over the task's new run.
async fn a_run_that_lost_its_task_does_not_show_or_write_progress(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let other = elsewhere(&db).await;
    let id = s.schedule(task(json!({}))).await.unwrap();
    let mut ghost = claim_one(s).await;
    db.clock.advance(LEASE + 1);
    s.recover_expired_leases(&|_| RetryPolicy::default())
        .await
        .unwrap();
    db.clock.set(s.describe(id).await.unwrap().next_attempt);
    let current = claim_one(s).await;
    ghost.report_progress(0.9, Some("ghost".into())).unwrap();
    drop(ghost);
    s.flush_progress().await;
    assert_eq!(s.describe(id).await.unwrap().progress, None);
    assert_eq!(other.describe(id).await.unwrap().progress, None);
    assert_eq!(
        count(s, "SELECT COUNT(*) AS n FROM warren_task_progress").await,
        0,
        "nothing written for a run that no longer holds its task"
    );
    drop(current);
}

/// A task retried after a run that reported progress shows that progress until its next
/// run starts, then only what the new run reports.
async fn a_later_run_does_not_show_an_earlier_runs_progress(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let id = s.schedule(task(json!({}))).await.unwrap();
    let mut first = claim_one(s).await;
    first.report_progress(0.75, Some("nearly".into())).unwrap();
    first
        .resolve(temporary("boom"), RetryPolicy::default())
        .await
        .unwrap();
    s.flush_progress().await;
    let after_failure = s.describe(id).await.unwrap();
    assert_eq!(after_failure.state, TaskState::Pending);
    assert_eq!(
        after_failure.progress.map(|p| p.fraction),
        Some(0.75),
        "a failed run's progress stays until the next run"
    );
    db.clock.set(after_failure.next_attempt);
    let mut second = claim_one(s).await;
    assert_eq!(s.describe(id).await.unwrap().progress, None);
    second.report_progress(0.1, None).unwrap();
    assert_eq!(
        s.describe(id).await.unwrap().progress.map(|p| p.fraction),
        Some(0.1)
    );
    second
        .resolve(complete(json!({})), RetryPolicy::default())
        .await
        .unwrap();
    s.flush_progress().await;
    assert_eq!(
        elsewhere(&db)
            .await
            .describe(id)
            .await
            .unwrap()
            .progress
            .map(|p| p.fraction),
        Some(0.1)
    );
}

async fn progress_that_makes_no_sense_is_refused(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let id = s.schedule(task(json!({}))).await.unwrap();
    let mut run = claim_one(s).await;
    for bad in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
        let refused = run.report_progress(bad, None).unwrap_err();
        assert!(matches!(refused, InvalidProgress::Fraction(_)), "{bad}");
        assert!(
            refused
                .to_string()
                .starts_with("progress must be a fraction from 0 to 1, not "),
            "{refused}"
        );
    }
    let long = "x".repeat(MAX_PROGRESS_MESSAGE_BYTES + 1);
    assert_eq!(
        run.report_progress(0.5, Some(long)).unwrap_err(),
        InvalidProgress::MessageTooLong(MAX_PROGRESS_MESSAGE_BYTES + 1)
    );
    // Nothing refused was kept; the bounds themselves are fine.
    assert_eq!(s.describe(id).await.unwrap().progress, None);
    run.report_progress(0.0, Some(String::new())).unwrap();
    let exact = "y".repeat(MAX_PROGRESS_MESSAGE_BYTES);
    run.report_progress(1.0, Some(exact.clone())).unwrap();
    let shown = s.describe(id).await.unwrap().progress.unwrap();
    assert_eq!((shown.fraction, shown.message), (1.0, Some(exact)));
}
