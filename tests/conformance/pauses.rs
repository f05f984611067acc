//! Pausing and resuming a cluster or a task type: paused work is not claimed by any
//! store, other work is not held up behind it, scheduling still works, a paused
//! scheduled tag's missed ticks become one run after the resume, and unknown names are
//! refused.

use crate::support::conformance::*;
use warren::store::{PauseTarget, Pauses, TypeRegistration};

crate::conformance!(
    a_paused_cluster_is_claimed_by_no_store_until_resumed,
    a_paused_type_is_skipped_without_holding_up_the_types_behind_it,
    pausing_twice_and_resuming_what_runs_change_nothing,
    unknown_names_are_refused_and_pause_nothing,
    a_paused_scheduled_tag_waits_and_its_missed_ticks_run_once,
    pausing_and_resuming_wake_every_cluster,
);

fn mail() -> TaskType {
    "demo:mail".parse().unwrap()
}

/// Registers `demo:ping` in `default` and `demo:mail` in `slow`, as a node would.
async fn register(s: &Store) {
    s.register_task_types(&[
        TypeRegistration::new("demo:ping", "default"),
        TypeRegistration::new("demo:mail", "slow"),
    ])
    .await
    .unwrap();
}

fn in_cluster(task_type: TaskType, cluster: &str, data: serde_json::Value) -> NewTask {
    NewTask::new(task_type, data).with_options(ScheduleOptions {
        cluster: Some(cluster.into()),
        ..Default::default()
    })
}

async fn claim_ids(s: &Store, clusters: &[&str], limit: usize) -> Vec<TaskId> {
    let clusters: Vec<String> = clusters.iter().map(|c| c.to_string()).collect();
    s.claim("node-x", &clusters, limit, LEASE)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.task.id)
        .collect()
}

async fn a_paused_cluster_is_claimed_by_no_store_until_resumed(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    register(s).await;
    let (other1, other2) = (db.another_node().await, db.another_node().await);
    let slow = PauseTarget::Cluster("slow".into());
    assert!(s.pause(&slow).await.unwrap());
    // Scheduling still works while paused.
    let held = s
        .schedule(in_cluster(mail(), "slow", json!({"n": 1})))
        .await
        .unwrap();
    let free = s.schedule(task(json!({"n": 2}))).await.unwrap();
    for store in [s, &other1, &other2] {
        assert!(
            claim_ids(store, &["slow"], 10).await.is_empty(),
            "a paused cluster was claimed"
        );
    }
    // The claim of several clusters skips the paused one only.
    assert_eq!(
        claim_ids(&other1, &["slow", "default", "slow"], 10).await,
        vec![free]
    );
    assert_eq!(
        s.describe(held).await.unwrap().state,
        TaskState::Pending,
        "the paused task waits"
    );
    assert!(s.resume(&slow).await.unwrap());
    assert_eq!(claim_ids(&other2, &["slow"], 10).await, vec![held]);
}

async fn a_paused_type_is_skipped_without_holding_up_the_types_behind_it(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    register(s).await;
    // Ten paused tasks at the head of the queue (more urgent), one other behind them.
    let mut paused_ids = Vec::new();
    for n in 0..10 {
        let urgent = NewTask::new(mail(), json!({ "n": n })).with_options(ScheduleOptions {
            cluster: Some("default".into()),
            priority: Some(Priority::INTERACTIVE),
            ..Default::default()
        });
        paused_ids.push(s.schedule(urgent).await.unwrap());
    }
    let behind = s.schedule(task(json!({"behind": true}))).await.unwrap();
    let mail_type = PauseTarget::TaskType("demo:mail".into());
    assert!(s.pause(&mail_type).await.unwrap());
    let other = db.another_node().await;
    assert_eq!(claim_ids(&other, &["default"], 3).await, vec![behind]);
    assert!(claim_ids(&other, &["default"], 3).await.is_empty());
    let listed = s.pauses().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].target, mail_type);
    assert_eq!(listed[0].since, T0);
    assert_eq!(
        Pauses::from_list(&listed).holding("default", "demo:mail"),
        Some(mail_type.clone())
    );
    assert!(s.resume(&mail_type).await.unwrap());
    let mut claimed = claim_ids(&other, &["default"], 20).await;
    claimed.sort();
    assert_eq!(claimed, paused_ids);
}

async fn pausing_twice_and_resuming_what_runs_change_nothing(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    register(s).await;
    let slow = PauseTarget::Cluster("slow".into());
    assert!(!s.resume(&slow).await.unwrap(), "it was not paused");
    assert!(s.pause(&slow).await.unwrap());
    db.clock.advance(MIN);
    assert!(!s.pause(&slow).await.unwrap(), "paused already");
    let listed = s.pauses().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].since, T0, "the first pause's time stays");
    let clusters = s.clusters().await.unwrap();
    let names: Vec<&str> = clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["default", "slow"]);
    assert_eq!(clusters[1].paused_since, Some(T0));
    assert_eq!(clusters[1].task_types, ["demo:mail"]);
    assert_eq!(clusters[0].paused_since, None);
    assert!(s.resume(&slow).await.unwrap());
    assert!(s.pauses().await.unwrap().is_empty());
}

async fn unknown_names_are_refused_and_pause_nothing(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    register(s).await;
    for (target, field, words) in [
        (
            PauseTarget::Cluster("slwo".into()),
            "cluster",
            "cluster 'slwo'",
        ),
        (
            PauseTarget::TaskType("demo:mial".into()),
            "type",
            "'demo:mial'",
        ),
        (PauseTarget::Cluster("".into()), "cluster", "a name of"),
    ] {
        match s.pause(&target).await {
            Err(StoreError::Invalid {
                field: got,
                message,
            }) => {
                assert_eq!(got, field);
                assert!(message.contains(words), "{message}");
            }
            other => panic!("{target}: {other:?}"),
        }
    }
    let known = s.pause(&PauseTarget::Cluster("slwo".into())).await;
    assert!(known.unwrap_err().to_string().contains("default, slow"));
    assert!(s.pauses().await.unwrap().is_empty());
}

async fn a_paused_scheduled_tag_waits_and_its_missed_ticks_run_once(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let tags = vec!["demo:minutely".to_string(), "demo:hourly".to_string()];
    let specs = [
        warren::store::ScheduledSpec {
            tag: "demo:minutely".into(),
            mask: Some("* * * * *".parse().unwrap()),
            zone: warren::cron::ZoneSpec::Utc,
        },
        warren::store::ScheduledSpec {
            tag: "demo:hourly".into(),
            mask: Some("0 * * * *".parse().unwrap()),
            zone: warren::cron::ZoneSpec::Utc,
        },
    ];
    s.sync_scheduled(&specs, 0).await.unwrap();
    let minutely = PauseTarget::TaskType("demo:minutely".into());
    assert!(s.pause(&minutely).await.unwrap());
    // An hour of ticks pass: the paused tag does not run, the other one does.
    for _ in 0..60 {
        db.clock.advance(MIN);
        for run in s
            .claim_due_scheduled("a", &tags, 10 * MIN, 0)
            .await
            .unwrap()
        {
            assert_eq!(run.tag, "demo:hourly", "a paused tag ran");
            assert!(s
                .finish_scheduled(&run.tag, run.token, &end(ScheduledOutcome::Completed, ""))
                .await
                .unwrap());
        }
    }
    // A run asked for by hand waits too.
    s.request_scheduled_run("demo:minutely").await.unwrap();
    assert!(s
        .claim_due_scheduled("a", &tags, 10 * MIN, 0)
        .await
        .unwrap()
        .is_empty());
    assert!(s.resume(&minutely).await.unwrap());
    let runs = s
        .claim_due_scheduled("a", &tags, 10 * MIN, 0)
        .await
        .unwrap();
    assert_eq!(runs.len(), 1, "the missed ticks run once");
    assert!(s
        .finish_scheduled(
            &runs[0].tag,
            runs[0].token,
            &end(ScheduledOutcome::Completed, "")
        )
        .await
        .unwrap());
    assert!(s
        .claim_due_scheduled("a", &tags, 10 * MIN, 0)
        .await
        .unwrap()
        .is_empty());
    let st = s.list_scheduled().await.unwrap();
    let minutely = st.iter().find(|t| t.tag == "demo:minutely").unwrap();
    assert_eq!(minutely.next_run, Some(T0 + 61 * MIN));
}

async fn pausing_and_resuming_wake_every_cluster(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    register(s).await;
    let other = db.another_node().await;
    let mut woken = other.subscribe_work().await.unwrap();
    let slow = PauseTarget::Cluster("slow".into());
    s.pause(&slow).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), woken.recv()).await;
    assert_eq!(first.expect("woken").unwrap(), "*");
    s.resume(&slow).await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(10), woken.recv()).await;
    assert_eq!(second.expect("woken").unwrap(), "*");
}
