//! Run groups: consecutive runs of one runner sharing one transaction and one commit
//! (`src/store/run_group.rs`). PostgreSQL groups them; SQLite resolves each run alone,
//! and every body checks that both end with the same rows.

use crate::support::conformance::*;
use warren::store::{GroupBounds, GroupSlot, Grouped, MemberOutcome, RunGroup, TaskRun, Unique};

crate::conformance!(
    runs_of_a_group_commit_together_and_learn_their_outcome_only_then,
    a_run_of_a_group_that_fails_is_undone_alone,
    a_run_of_a_group_that_lost_its_lease_fails_the_group_and_the_others_run_again,
    a_run_that_leaves_state_in_the_transaction_or_was_cancelled_takes_no_one_after_it,
    a_group_whose_commit_fails_gives_its_runs_back_and_runs_them_alone,
    sql_that_ends_the_shared_transaction_settles_the_earlier_runs,
    a_group_past_its_age_takes_no_late_run_and_its_runner_commits_it,
    runs_group_only_where_transactions_default_to_read_committed,
    a_run_undone_after_using_its_own_connection_leaves_the_earlier_runs_whole,
    a_later_run_schedules_against_the_earlier_runs_as_completed,
);

const BOUNDS: GroupBounds = GroupBounds {
    max_runs: 8,
    max_age_ms: 20,
};

/// A database with the `effects` table and `n` tasks, claimed (in id order).
async fn claimed_tasks(b: Backend, n: usize) -> Option<(TestDb, Vec<warren::store::ClaimedTask>)> {
    let db = TestDb::new(b).await?;
    setup_effects_table(&db.store).await;
    for i in 0..n {
        db.store.schedule(task(json!({ "n": i }))).await.unwrap();
    }
    let mut claimed = db
        .store
        .claim("node-a", &clusters(), n, LEASE)
        .await
        .unwrap();
    claimed.sort_by_key(|c| c.task.id);
    assert_eq!(claimed.len(), n);
    Some((db, claimed))
}

/// Begins the run of `claimed`, offered `group`, and inserts its id into `effects`
/// as task SQL.
async fn run_with_effect(
    s: &Store,
    claimed: &warren::store::ClaimedTask,
    group: Option<RunGroup>,
) -> TaskRun {
    let mut run = begin_in(s, claimed, group).await;
    insert_effect(&mut run).await;
    run
}

/// Begins the run of `claimed` as a runner does, with `group` open in its runner's
/// slot.
async fn begin_in(
    s: &Store,
    claimed: &warren::store::ClaimedTask,
    group: Option<RunGroup>,
) -> TaskRun {
    let slot = GroupSlot::default();
    if let Some(group) = group {
        slot.keep(group);
    }
    s.begin_run_in_group(claimed.clone(), None, Some(slot), BOUNDS)
        .await
        .unwrap()
}

/// Runs `statement` as the run's task SQL.
async fn task_sql(
    run: &mut TaskRun,
    statement: &TaskStatement,
) -> Result<TaskSqlOutput, warren::store::TaskSqlError> {
    run.transaction().await.unwrap().task_sql(statement).await
}

/// Inserts the run's task id into `effects`, as task SQL.
async fn insert_effect(run: &mut TaskRun) {
    let id = run.claimed().task.id;
    let insert =
        TaskStatement::execute(format!("INSERT INTO effects VALUES ({id})"), "[]").unwrap();
    task_sql(run, &insert).await.unwrap();
}

/// The ids in `effects`, in order.
async fn effects(s: &Store) -> Vec<i64> {
    crate::support::numbers(s, "SELECT task_id AS n FROM effects ORDER BY task_id").await
}

/// What a run that asked to keep its group open got: on PostgreSQL the open group and
/// the run's outcome to come; on SQLite (which never groups) the outcome at once.
enum Kept {
    Open(Box<RunGroup>, MemberOutcome),
    Resolved(Result<ResolveOutcome, StoreError>),
}

/// The outcome of a run that must not have kept its group open (`why` says which).
fn resolved_alone(kept: Kept, why: &str) -> Result<ResolveOutcome, StoreError> {
    match kept {
        Kept::Resolved(stored) => stored,
        Kept::Open(..) => panic!("{why}"),
    }
}

async fn resolve_keeping(run: TaskRun, resolution: Resolution) -> Kept {
    match run
        .resolve_grouping(resolution, RetryPolicy::default(), true)
        .await
    {
        Grouped::Open { group, outcome, .. } => Kept::Open(group, outcome),
        Grouped::Resolved { stored, .. } => Kept::Resolved(stored),
    }
}

/// The group a run kept open (PostgreSQL), or none after a run resolved alone
/// (SQLite, which must then have completed it).
fn open_or_completed(b: Backend, kept: Kept) -> Option<(RunGroup, MemberOutcome)> {
    match (b, kept) {
        (Backend::Postgres, Kept::Open(group, outcome)) => Some((*group, outcome)),
        (Backend::Sqlite, Kept::Resolved(Ok(ResolveOutcome::Completed))) => None,
        (b, Kept::Open(..)) => panic!("{b:?}: a group stayed open"),
        (b, Kept::Resolved(r)) => panic!("{b:?}: expected an open group, the run resolved: {r:?}"),
    }
}

async fn runs_of_a_group_commit_together_and_learn_their_outcome_only_then(b: Backend) {
    let Some((db, claimed)) = claimed_tasks(b, 3).await else {
        return;
    };
    let s = &db.store;
    let ids: Vec<i64> = claimed.iter().map(|c| c.task.id.0).collect();

    let run = run_with_effect(s, &claimed[0], None).await;
    let first = open_or_completed(b, resolve_keeping(run, complete(json!({"n": 0}))).await);
    let (group, first_outcome) = first.map_or((None, None), |(g, o)| (Some(g), Some(o)));
    if b == Backend::Postgres {
        // Written, not committed: nothing is visible, and the run has no outcome yet.
        assert_eq!(effects(s).await, Vec::<i64>::new());
        assert_eq!(
            s.describe(claimed[0].task.id).await.unwrap().state,
            TaskState::Running
        );
        assert_eq!(group.as_ref().map(RunGroup::len), Some(1));
    } else {
        assert_eq!(effects(s).await, vec![ids[0]]);
    }
    let mut first_outcome = first_outcome.map(|o| Box::pin(o.committed()));
    if let Some(outcome) = first_outcome.as_mut() {
        assert!(futures_util::poll!(outcome).is_pending());
    }

    let run = run_with_effect(s, &claimed[1], group).await;
    let second = open_or_completed(b, resolve_keeping(run, complete(json!({"n": 1}))).await);
    let (group, second_outcome) = second.map_or((None, None), |(g, o)| (Some(g), Some(o)));
    assert_eq!(
        group.as_ref().map(RunGroup::len),
        (b == Backend::Postgres).then_some(2)
    );

    // The last run does not keep the group open: it commits the three.
    let run = run_with_effect(s, &claimed[2], group).await;
    let (stored, _) = run
        .resolve_applied(complete(json!({"n": 2})), RetryPolicy::default())
        .await;
    assert_eq!(stored.unwrap(), ResolveOutcome::Completed);
    assert_eq!(effects(s).await, ids);
    if let (Some(first), Some(second)) = (first_outcome, second_outcome) {
        assert_eq!(first.await.unwrap(), ResolveOutcome::Completed);
        assert_eq!(second.committed().await.unwrap(), ResolveOutcome::Completed);
    }
    for (n, c) in claimed.iter().enumerate() {
        let t = s.describe(c.task.id).await.unwrap();
        assert_eq!(t.state, TaskState::Completed, "task {n}");
        assert_eq!(t.result, Some(json!({ "n": n })));
        assert_eq!((t.lease_owner, t.lease_until), (None, None));
    }
}

async fn a_run_of_a_group_that_fails_is_undone_alone(b: Backend) {
    let Some((db, claimed)) = claimed_tasks(b, 2).await else {
        return;
    };
    let s = &db.store;
    let run = run_with_effect(s, &claimed[0], None).await;
    let first = open_or_completed(b, resolve_keeping(run, complete(json!({}))).await);
    let (group, first_outcome) = first.map_or((None, None), |(g, o)| (Some(g), Some(o)));

    let run = run_with_effect(s, &claimed[1], group).await;
    let kept = resolve_keeping(run, temporary("smtp down")).await;
    assert_eq!(
        resolved_alone(kept, "a failed run kept its group open").unwrap(),
        ResolveOutcome::Pending {
            next_attempt: T0 + 15 * MIN
        }
    );
    // The first run committed with the group; the failed one left nothing.
    assert_eq!(effects(s).await, vec![claimed[0].task.id.0]);
    if let Some(outcome) = first_outcome {
        assert_eq!(
            outcome.committed().await.unwrap(),
            ResolveOutcome::Completed
        );
    }
    assert_eq!(
        s.describe(claimed[0].task.id).await.unwrap().state,
        TaskState::Completed
    );
    let failed = s.describe(claimed[1].task.id).await.unwrap();
    assert_eq!(failed.state, TaskState::Pending);
    assert_eq!(
        (failed.failures, failed.last_error.as_deref()),
        (1, Some("smtp down"))
    );
}

async fn a_run_of_a_group_that_lost_its_lease_fails_the_group_and_the_others_run_again(b: Backend) {
    let Some((db, claimed)) = claimed_tasks(b, 2).await else {
        return;
    };
    let s = &db.store;
    let run = run_with_effect(s, &claimed[0], None).await;
    let first = open_or_completed(b, resolve_keeping(run, complete(json!({}))).await);
    let (group, first_outcome) = first.map_or((None, None), |(g, o)| (Some(g), Some(o)));

    let mut run = begin_in(s, &claimed[1], group).await;
    // Cancelled while it runs (before its write, which on SQLite holds the only write
    // lock): its completion is refused.
    s.cancel(claimed[1].task.id, "not wanted").await.unwrap();
    insert_effect(&mut run).await;
    let kept = resolve_keeping(run, complete(json!({}))).await;
    let (second, first_state) = match (b, kept) {
        (Backend::Sqlite, Kept::Resolved(stored)) => (stored, TaskState::Completed),
        (Backend::Postgres, Kept::Open(group, second)) => {
            // Its completion is held: the loss shows only when the group commits,
            // and then nothing of the group commits.
            assert_eq!(group.commit().await, 0, "the group committed");
            (second.committed().await, TaskState::Pending)
        }
        (b, kept) => panic!("{b:?}: unexpected {}", describe_kept(&kept)),
    };
    match second {
        Err(StoreError::LeaseLost { id, .. }) => assert_eq!(id, claimed[1].task.id),
        other => panic!("expected a lost lease, got {other:?}"),
    }
    assert_eq!(
        s.describe(claimed[1].task.id).await.unwrap().state,
        TaskState::Cancelled
    );
    let first_task = s.describe(claimed[0].task.id).await.unwrap();
    assert_eq!(first_task.state, first_state);
    if let Some(outcome) = first_outcome {
        // PostgreSQL: the first run's work went with the group; its task is given back
        // to the queue with no failure counted, and runs again.
        match outcome.committed().await {
            Err(StoreError::GroupNotCommitted { id, .. }) => assert_eq!(id, claimed[0].task.id),
            other => panic!("expected the group not to commit, got {other:?}"),
        }
        assert_eq!(effects(s).await, Vec::<i64>::new());
        assert_eq!((first_task.failures, first_task.lease_owner), (0, None));
        let again = s.claim("node-a", &clusters(), 1, LEASE).await.unwrap();
        assert_eq!(again.len(), 1);
        let run = run_with_effect(s, &again[0], None).await;
        let (stored, _) = run
            .resolve_applied(complete(json!({})), RetryPolicy::default())
            .await;
        assert_eq!(stored.unwrap(), ResolveOutcome::Completed);
    }
    // Both backends end alike: the first task's work done once, the cancelled one's not.
    assert_eq!(effects(s).await, vec![claimed[0].task.id.0]);
    assert_eq!(
        s.describe(claimed[0].task.id).await.unwrap().state,
        TaskState::Completed
    );
}

fn describe_kept(kept: &Kept) -> String {
    match kept {
        Kept::Open(group, _) => format!("an open group of {}", group.len()),
        Kept::Resolved(stored) => format!("a resolved run: {stored:?}"),
    }
}

async fn a_run_that_leaves_state_in_the_transaction_or_was_cancelled_takes_no_one_after_it(
    b: Backend,
) {
    let Some((db, claimed)) = claimed_tasks(b, 3).await else {
        return;
    };
    let s = &db.store;
    // A setting for the rest of the transaction would reach the next run's SQL.
    let mut run = run_with_effect(s, &claimed[0], None).await;
    if b == Backend::Postgres {
        let set = TaskStatement::execute("SET LOCAL lock_timeout = '5s'", "[]").unwrap();
        task_sql(&mut run, &set).await.unwrap();
    }
    assert_eq!(
        resolved_alone(
            resolve_keeping(run, complete(json!({}))).await,
            "a run that set LOCAL state kept its group open"
        )
        .unwrap(),
        ResolveOutcome::Completed
    );
    // A run whose statement failed (a deadlock, say) is not followed either.
    let mut run = run_with_effect(s, &claimed[1], None).await;
    let bad = TaskStatement::execute("INSERT INTO no_such_table VALUES (1)", "[]").unwrap();
    task_sql(&mut run, &bad).await.unwrap_err();
    assert_eq!(
        resolved_alone(
            resolve_keeping(run, complete(json!({}))).await,
            "a run with a failed statement kept its group open"
        )
        .unwrap(),
        ResolveOutcome::Completed
    );
    let ids: Vec<i64> = claimed[..2].iter().map(|c| c.task.id.0).collect();
    assert_eq!(effects(s).await, ids);
    // A kill or timeout sent a cancel, which can land on a later statement: here it
    // may stop the completion itself (as alone), and must not reach another run.
    let mut run = run_with_effect(s, &claimed[2], None).await;
    run.transaction().await.unwrap().canceller().cancel();
    if let Kept::Open(..) = resolve_keeping(run, complete(json!({}))).await {
        panic!("a run whose statement was cancelled kept its group open");
    }
}

/// A commit that fails for one run's work (a deferred foreign key) fails its whole
/// group: the runs go back to the queue with no failure counted, and the node runs
/// alone for a while, so only the run at fault fails after that. Only PostgreSQL
/// groups runs (SQLite checks its foreign keys only when told to per connection).
async fn a_group_whose_commit_fails_gives_its_runs_back_and_runs_them_alone(b: Backend) {
    if b != Backend::Postgres {
        return;
    }
    let Some((db, claimed)) = claimed_tasks(b, 2).await else {
        return;
    };
    let s = &db.store;
    let mut conn = s.connection().await.unwrap();
    exec(
        &mut conn.as_any(),
        "CREATE TABLE parents (id BIGINT PRIMARY KEY); \
         CREATE TABLE children (parent BIGINT REFERENCES parents DEFERRABLE INITIALLY DEFERRED)",
    )
    .await;
    drop(conn);
    let orphan = TaskStatement::execute("INSERT INTO children VALUES (404)", "[]").unwrap();

    let run = run_with_effect(s, &claimed[0], None).await;
    let Kept::Open(group, first) = resolve_keeping(run, complete(json!({}))).await else {
        panic!("the first run did not open a group");
    };
    let mut run = run_with_effect(s, &claimed[1], Some(*group)).await;
    task_sql(&mut run, &orphan).await.unwrap();
    let Kept::Open(group, second) = resolve_keeping(run, complete(json!({}))).await else {
        panic!("the second run did not stay in the group");
    };
    assert_eq!(group.commit().await, 0);
    for outcome in [first, second] {
        let err = outcome.committed().await.unwrap_err();
        assert!(
            matches!(err, StoreError::GroupNotCommitted { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("children"), "{err}");
    }
    assert_eq!(effects(s).await, Vec::<i64>::new());
    for c in &claimed {
        let t = s.describe(c.task.id).await.unwrap();
        assert_eq!(
            (t.state, t.failures),
            (TaskState::Pending, 0),
            "given back uncounted"
        );
    }

    // Claimed again: the node does not group now, so each run commits alone, and
    // only the one at fault fails.
    let mut again = s.claim("node-a", &clusters(), 2, LEASE).await.unwrap();
    again.sort_by_key(|c| c.task.id);
    let run = run_with_effect(s, &again[0], None).await;
    assert_eq!(
        resolved_alone(
            resolve_keeping(run, complete(json!({}))).await,
            "grouped again right after a group failed"
        )
        .unwrap(),
        ResolveOutcome::Completed
    );
    let mut run = run_with_effect(s, &again[1], None).await;
    task_sql(&mut run, &orphan).await.unwrap();
    match resolve_keeping(run, complete(json!({}))).await {
        Kept::Resolved(Err(e)) => assert!(e.to_string().contains("children"), "{e}"),
        Kept::Resolved(Ok(o)) => panic!("the run at fault completed: {o:?}"),
        Kept::Open(..) => panic!("grouped again right after a group failed"),
    }
    assert_eq!(effects(s).await, vec![again[0].task.id.0]);
    assert_eq!(
        s.describe(again[0].task.id).await.unwrap().state,
        TaskState::Completed
    );
    // The run at fault still holds its lease: it expires, and the retry rule counts it.
    assert_eq!(
        s.describe(again[1].task.id).await.unwrap().state,
        TaskState::Running
    );
}

/// Task SQL that ends the transaction (which the statement policy refuses; this is
/// what one it failed to stop would do) settles the runs before it by what it did:
/// rolled back, they go back to the queue; committed, they stay completed. The run
/// itself fails for good, as alone. PostgreSQL only: SQLite never groups, and its
/// guard finds such an end within the statement (`hostile_sql.rs`).
async fn sql_that_ends_the_shared_transaction_settles_the_earlier_runs(b: Backend) {
    if b != Backend::Postgres {
        return;
    }
    let Some((db, claimed)) = claimed_tasks(b, 4).await else {
        return;
    };
    let s = &db.store;
    for (pair, end) in [(0, "ROLLBACK"), (2, "COMMIT")] {
        let run = run_with_effect(s, &claimed[pair], None).await;
        let Kept::Open(group, first) = resolve_keeping(run, complete(json!({}))).await else {
            panic!("the first run did not open a group");
        };
        let mut run = run_with_effect(s, &claimed[pair + 1], Some(*group)).await;
        exec(&mut run.conn().await.unwrap(), end).await;
        let (stored, applied) = run
            .resolve_applied(complete(json!({})), RetryPolicy::default())
            .await;
        assert_eq!(stored.unwrap(), ResolveOutcome::Failed, "{end}");
        assert!(applied.error.unwrap().contains("ended"), "{end}");
        let ended = s.describe(claimed[pair + 1].task.id).await.unwrap();
        assert_eq!(ended.state, TaskState::Failed, "{end}");
        let earlier = s.describe(claimed[pair].task.id).await.unwrap();
        let err = first.committed().await.unwrap_err();
        if end == "ROLLBACK" {
            assert!(
                matches!(err, StoreError::GroupNotCommitted { .. }),
                "{err:?}"
            );
            assert_eq!((earlier.state, earlier.failures), (TaskState::Pending, 0));
        } else {
            assert!(matches!(err, StoreError::GroupInDoubt { .. }), "{err:?}");
            assert_eq!(earlier.state, TaskState::Completed);
        }
    }
    // What committed: the pair that ended with COMMIT, both of its inserts.
    let committed: Vec<i64> = claimed[2..].iter().map(|c| c.task.id.0).collect();
    assert_eq!(effects(s).await, committed);
}

/// A run joins a group only while the group is young: a later one commits it first and
/// opens its own. And a group left open while its runner runs something else is
/// committed once it is as old as its bounds allow (the runner's timer calls
/// `commit_if_older`), not before.
async fn a_group_past_its_age_takes_no_late_run_and_its_runner_commits_it(b: Backend) {
    let Some((db, claimed)) = claimed_tasks(b, 2).await else {
        return;
    };
    let s = &db.store;
    let run = run_with_effect(s, &claimed[0], None).await;
    let first = open_or_completed(b, resolve_keeping(run, complete(json!({}))).await);
    let (group, first_outcome) = first.map_or((None, None), |(g, o)| (Some(g), Some(o)));

    // Past the group's age, the next run's first work commits the group alone.
    db.clock.advance(BOUNDS.max_age_ms + 1);
    let run = run_with_effect(s, &claimed[1], group).await;
    assert_eq!(effects(s).await, vec![claimed[0].task.id.0]);
    if let Some(outcome) = first_outcome {
        assert_eq!(
            outcome.committed().await.unwrap(),
            ResolveOutcome::Completed
        );
    }
    let second = open_or_completed(b, resolve_keeping(run, complete(json!({}))).await);
    let Some((group, second_outcome)) = second else {
        // SQLite: it completed alone.
        assert_eq!(effects(s).await.len(), 2);
        return;
    };
    assert_eq!(group.len(), 1, "the late run opened a group of its own");

    // Left in its runner's slot: not committed while young, committed once old.
    let slot = GroupSlot::default();
    slot.keep(group);
    let (first, age) = (claimed[1].task.id, BOUNDS.max_age_ms);
    assert!(
        slot.commit_if_older(first, age, s.now()).await,
        "young: look again"
    );
    assert!(slot.is_open());
    assert_eq!(effects(s).await.len(), 1);
    db.clock.advance(age);
    // Another group's timer leaves it alone.
    assert!(!slot.commit_if_older(claimed[0].task.id, age, s.now()).await);
    assert!(slot.is_open());
    assert!(
        !slot.commit_if_older(first, age, s.now()).await,
        "committed"
    );
    assert!(!slot.is_open());
    assert_eq!(
        second_outcome.committed().await.unwrap(),
        ResolveOutcome::Completed
    );
    let ids: Vec<i64> = claimed.iter().map(|c| c.task.id.0).collect();
    assert_eq!(effects(s).await, ids);
}

/// Under REPEATABLE READ a later run of a group would see the group's first snapshot:
/// a store on a database whose transactions default to it never groups.
async fn runs_group_only_where_transactions_default_to_read_committed(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    setup_effects_table(&db.store).await;
    if b == Backend::Postgres {
        let mut conn = db.store.connection().await.unwrap();
        exec(
            &mut conn.as_any(),
            "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET \
             default_transaction_isolation = ''repeatable read''', current_database()); END $$",
        )
        .await;
    }
    // A store opened now reads the default, as a node starting would.
    let s = &db.another_node().await;
    s.schedule(task(json!({}))).await.unwrap();
    let claimed = s.claim("node-a", &clusters(), 1, LEASE).await.unwrap();
    let run = run_with_effect(s, &claimed[0], None).await;
    let kept = resolve_keeping(run, complete(json!({}))).await;
    let why = "a group opened under repeatable read";
    assert_eq!(
        resolved_alone(kept, why).unwrap(),
        ResolveOutcome::Completed
    );
    assert_eq!(effects(s).await, vec![claimed[0].task.id.0]);
}

/// A run that used its own connection (which writes the group's held completions into
/// its savepoint) and is then undone: the earlier run's completion, undone with that
/// savepoint, is held again, so the group still commits the earlier run whole.
async fn a_run_undone_after_using_its_own_connection_leaves_the_earlier_runs_whole(b: Backend) {
    let Some((db, claimed)) = claimed_tasks(b, 2).await else {
        return;
    };
    let s = &db.store;
    let run = run_with_effect(s, &claimed[0], None).await;
    let first = open_or_completed(b, resolve_keeping(run, complete(json!({"n": 0}))).await);
    let (group, first_outcome) = first.map_or((None, None), |(g, o)| (Some(g), Some(o)));

    let mut run = run_with_effect(s, &claimed[1], group).await;
    exec(&mut run.conn().await.unwrap(), "SELECT 1").await;
    let kept = resolve_keeping(run, temporary("smtp down")).await;
    assert_eq!(
        resolved_alone(kept, "a failed run kept its group open").unwrap(),
        ResolveOutcome::Pending {
            next_attempt: T0 + 15 * MIN
        }
    );
    if let Some(outcome) = first_outcome {
        assert_eq!(
            outcome.committed().await.unwrap(),
            ResolveOutcome::Completed
        );
    }
    assert_eq!(effects(s).await, vec![claimed[0].task.id.0]);
    let t = s.describe(claimed[0].task.id).await.unwrap();
    assert_eq!(
        (t.state, t.result, t.lease_owner),
        (TaskState::Completed, Some(json!({"n": 0})), None)
    );
    let failed = s.describe(claimed[1].task.id).await.unwrap();
    assert_eq!((failed.state, failed.failures), (TaskState::Pending, 1));
}

/// A run scheduling a unique task sees the group's earlier runs as completed, as it
/// would after their own commits: a key that counts only unfinished tasks makes a new
/// task rather than returning the earlier run's.
async fn a_later_run_schedules_against_the_earlier_runs_as_completed(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    setup_effects_table(s).await;
    let keyed = |n: i64| {
        task_with(
            json!({ "n": n }),
            ScheduleOptions {
                unique: Some(Unique::key("report")),
                ..Default::default()
            },
        )
    };
    let first_id = s.schedule(keyed(0)).await.unwrap();
    let other_id = s.schedule(task(json!({ "n": 1 }))).await.unwrap();
    let mut claimed = s.claim("node-a", &clusters(), 2, LEASE).await.unwrap();
    claimed.sort_by_key(|c| c.task.id);
    assert_eq!(
        claimed.iter().map(|c| c.task.id).collect::<Vec<_>>(),
        vec![first_id, other_id]
    );

    let run = run_with_effect(s, &claimed[0], None).await;
    let first = open_or_completed(b, resolve_keeping(run, complete(json!({}))).await);
    let (group, first_outcome) = first.map_or((None, None), |(g, o)| (Some(g), Some(o)));

    let mut run = run_with_effect(s, &claimed[1], group).await;
    let scheduled = run.schedule(keyed(2)).await.unwrap();
    assert_ne!(
        scheduled, first_id,
        "the key still counted the completed run's task"
    );
    let (stored, _) = run
        .resolve_applied(complete(json!({})), RetryPolicy::default())
        .await;
    assert_eq!(stored.unwrap(), ResolveOutcome::Completed);
    if let Some(outcome) = first_outcome {
        assert_eq!(
            outcome.committed().await.unwrap(),
            ResolveOutcome::Completed
        );
    }
    assert_eq!(
        s.describe(first_id).await.unwrap().state,
        TaskState::Completed
    );
    assert_eq!(
        s.describe(scheduled).await.unwrap().state,
        TaskState::Pending
    );
}
