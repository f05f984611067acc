//! Scheduled tags: one run per tick across nodes, no overlap, run now, enable.

use crate::support::conformance::*;

crate::conformance!(
    scheduled_ticks_run_once_across_nodes,
    scheduled_runs_never_overlap_and_missed_ticks_coalesce,
    scheduled_run_now_and_enable,
);

fn spec(tag: &str, mask: Option<&str>) -> warren::store::ScheduledSpec {
    warren::store::ScheduledSpec {
        tag: tag.into(),
        mask: mask.map(|m| m.parse().unwrap()),
        zone: warren::cron::ZoneSpec::Utc,
    }
}

async fn scheduled_ticks_run_once_across_nodes(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let nodes = [
        db.store.clone(),
        db.another_node().await,
        db.another_node().await,
    ];
    let tags = vec!["demo:every5".to_string()];
    for n in &nodes {
        n.sync_scheduled(&[spec("demo:every5", Some("*/5 * * * *"))], 0)
            .await
            .unwrap();
    }
    let st = &db.store.list_scheduled().await.unwrap()[0];
    assert_eq!(st.next_run, Some(T0 + 5 * MIN));
    let mut runs = 0;
    for tick in 1..=6 {
        db.clock.set(T0 + tick * 5 * MIN);
        let claims = futures_claims(&nodes, &tags).await;
        assert_eq!(claims.len(), 1, "tick {tick} ran {} times", claims.len());
        let (node, run) = &claims[0];
        assert!(nodes[*node]
            .finish_scheduled(&run.tag, run.token, &end(ScheduledOutcome::Completed, "ok"))
            .await
            .unwrap());
        runs += 1;
    }
    assert_eq!(runs, 6);
    assert_eq!(
        nodes[0].next_scheduled_wakeup(&tags).await.unwrap(),
        Some(T0 + 35 * MIN)
    );
}

/// Every node tries to claim at the same moment; returns (node index, run) for each win.
async fn futures_claims(
    nodes: &[Store],
    tags: &[String],
) -> Vec<(usize, warren::store::ScheduledRun)> {
    let mut handles = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let (n, tags) = (n.clone(), tags.to_vec());
        handles.push(tokio::spawn(async move {
            n.claim_due_scheduled(&format!("node-{i}"), &tags, 60 * MIN, 0)
                .await
                .unwrap()
        }));
    }
    let mut won = Vec::new();
    for (i, h) in handles.into_iter().enumerate() {
        won.extend(h.await.unwrap().into_iter().map(|r| (i, r)));
    }
    won
}

async fn scheduled_runs_never_overlap_and_missed_ticks_coalesce(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let tags = vec!["demo:minutely".to_string()];
    s.sync_scheduled(&[spec("demo:minutely", Some("* * * * *"))], 0)
        .await
        .unwrap();
    db.clock.set(T0 + MIN);
    let run = s
        .claim_due_scheduled("a", &tags, 10 * MIN, 0)
        .await
        .unwrap()
        .remove(0);
    assert!(!run.requested);
    // Three ticks pass while it runs: none starts.
    for _ in 0..3 {
        db.clock.advance(MIN);
        assert!(s
            .claim_due_scheduled("b", &tags, 10 * MIN, 0)
            .await
            .unwrap()
            .is_empty());
    }
    assert!(s
        .finish_scheduled(
            &run.tag,
            run.token,
            &end(ScheduledOutcome::Completed, "done")
        )
        .await
        .unwrap());
    // The missed ticks run once, right after.
    assert_eq!(
        s.claim_due_scheduled("b", &tags, 10 * MIN, 0)
            .await
            .unwrap()
            .len(),
        1
    );
    let st = s.list_scheduled().await.unwrap().remove(0);
    assert_eq!(st.next_run, Some(T0 + 5 * MIN));
    assert_eq!(st.last_outcome.as_deref(), Some("completed"));
    assert!(st.running);
    // The node running it dies; once its claim expires the tag runs again, and a week
    // of ticks missed while everything was down is one run.
    db.clock.advance(7 * 24 * 60 * MIN);
    let runs = s
        .claim_due_scheduled("c", &tags, 10 * MIN, 0)
        .await
        .unwrap();
    assert_eq!(runs.len(), 1);
    assert!(s
        .claim_due_scheduled("c", &tags, 10 * MIN, 0)
        .await
        .unwrap()
        .is_empty());
    // The dead node's late finish is refused.
    assert!(!s
        .finish_scheduled(
            &run.tag,
            run.token.next(),
            &end(ScheduledOutcome::Completed, "late")
        )
        .await
        .unwrap());
    assert!(s
        .finish_scheduled(
            &runs[0].tag,
            runs[0].token,
            &end(ScheduledOutcome::Failed, "boom")
        )
        .await
        .unwrap());
}

async fn scheduled_run_now_and_enable(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let tags = vec!["demo:manual".to_string(), "demo:daily".to_string()];
    s.sync_scheduled(
        &[
            spec("demo:manual", None),
            spec("demo:daily", Some("0 3 * * *")),
        ],
        0,
    )
    .await
    .unwrap();
    assert!(s
        .claim_due_scheduled("a", &tags, MIN, 0)
        .await
        .unwrap()
        .is_empty());
    s.request_scheduled_run("demo:manual").await.unwrap();
    assert_eq!(s.next_scheduled_wakeup(&tags).await.unwrap(), Some(T0));
    let runs = s.claim_due_scheduled("a", &tags, MIN, 0).await.unwrap();
    assert_eq!(
        (runs.len(), runs[0].tag.as_str(), runs[0].requested),
        (1, "demo:manual", true)
    );
    assert!(matches!(
        s.request_scheduled_run("demo:nope").await,
        Err(StoreError::UnknownScheduled(_))
    ));
    // Disabled: the mask no longer fires, but run-now still works.
    s.set_scheduled_enabled("demo:daily", false, 0)
        .await
        .unwrap();
    db.clock.set(T0 + 2 * 24 * 60 * MIN);
    assert!(s
        .claim_due_scheduled("a", &tags, MIN, 0)
        .await
        .unwrap()
        .is_empty());
    // Re-enabled: the next run is computed from now, nothing is made up.
    s.set_scheduled_enabled("demo:daily", true, 0)
        .await
        .unwrap();
    assert!(s
        .claim_due_scheduled("a", &tags, MIN, 0)
        .await
        .unwrap()
        .is_empty());
    let daily = s
        .list_scheduled()
        .await
        .unwrap()
        .into_iter()
        .find(|x| x.tag == "demo:daily")
        .unwrap();
    assert_eq!(daily.next_run, Some(T0 + 2 * 24 * 60 * MIN + 3 * 60 * MIN));
    // A changed mask moves the next run.
    s.sync_scheduled(&[spec("demo:daily", Some("30 1 * * *"))], 0)
        .await
        .unwrap();
    let daily = s
        .list_scheduled()
        .await
        .unwrap()
        .into_iter()
        .find(|x| x.tag == "demo:daily")
        .unwrap();
    assert_eq!(
        (daily.mask.as_deref(), daily.next_run),
        (Some("30 1 * * *"), Some(T0 + 2 * 24 * 60 * MIN + 90 * MIN))
    );
}
