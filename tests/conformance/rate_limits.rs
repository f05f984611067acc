//! Rate limits: at most a bucket's tokens start per (type, key) across every store, a
//! bucket refilled at the rate up to its burst, keys with buckets of their own, a rate
//! and a concurrency limit together, three stores racing for one bucket, the instant a
//! queue should wake for the next token, and rules that appear or go away.

use crate::support::conformance::*;

crate::conformance!(
    a_bucket_allows_its_burst_then_one_start_per_interval,
    each_key_has_a_bucket_of_its_own,
    a_rate_and_a_concurrency_limit_together_allow_the_fewer,
    three_stores_racing_spend_each_token_once,
    the_next_start_is_when_the_first_waiting_bucket_has_a_token,
    a_rate_limit_registered_or_removed_applies_to_waiting_tasks,
    full_buckets_are_pruned,
    rules_keyed_by_different_fields_are_refused,
);

/// A limit of `count` starts per second with bursts of `burst`, per value of `key`.
fn per_second(count: u32, burst: u32, key: Option<&str>) -> RateLimit {
    RateLimit {
        count,
        period: RatePeriod::Second,
        burst,
        key: key.map(String::from),
    }
}

/// Registers `demo:ping` in `default` with `rate` (and `concurrency`).
async fn rate_ping(s: &Store, rate: Option<RateLimit>, concurrency: Option<ConcurrencyLimit>) {
    s.register_task_types(&[TypeRegistration {
        rate_limit: rate,
        concurrency,
        ..TypeRegistration::new("demo:ping", "default")
    }])
    .await
    .unwrap();
}

async fn schedule_n(s: &Store, n: i64, data: impl Fn(i64) -> serde_json::Value) {
    for i in 0..n {
        s.schedule(task(data(i))).await.unwrap();
    }
}

async fn claim_n(s: &Store, limit: usize) -> Vec<warren::store::ClaimedTask> {
    s.claim("node-x", &clusters(), limit, LEASE).await.unwrap()
}

async fn a_bucket_allows_its_burst_then_one_start_per_interval(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    // 10/s: one token per 100 ms, at most 3 at once.
    rate_ping(s, Some(per_second(10, 3, None)), None).await;
    let other = db.another_node().await;
    schedule_n(s, 20, |i| json!({ "n": i })).await;
    let first = claim_n(s, 10).await;
    assert_eq!(first.len(), 3, "a full bucket allows its burst");
    assert!(
        claim_n(&other, 10).await.is_empty(),
        "another store shares the bucket"
    );
    db.clock.advance(99);
    assert!(claim_n(s, 10).await.is_empty(), "no token before 100 ms");
    db.clock.advance(1);
    assert_eq!(claim_n(&other, 10).await.len(), 1, "one token per 100 ms");
    db.clock.advance(250);
    assert_eq!(claim_n(s, 10).await.len(), 2, "two more in 250 ms");
    db.clock.advance(60_000);
    assert_eq!(
        claim_n(s, 10).await.len(),
        3,
        "a quiet minute fills the bucket up to its burst, not beyond"
    );
    // Queue order is kept: the tasks came out n = 0, 1, 2, ...
    let ns: Vec<i64> = first
        .iter()
        .map(|c| c.task.data["n"].as_i64().unwrap())
        .collect();
    assert_eq!(ns, [0, 1, 2]);
    assert_eq!(first[0].task.flow_key.as_deref(), Some(""));
}

async fn each_key_has_a_bucket_of_its_own(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    rate_ping(s, Some(per_second(1, 1, Some("tenant"))), None).await;
    // Tenant a's backlog is at the head of the queue.
    schedule_n(s, 3, |i| json!({ "tenant": "a", "n": i })).await;
    schedule_n(s, 2, |i| json!({ "tenant": "b", "n": i })).await;
    let tenants = |claimed: &[warren::store::ClaimedTask]| -> Vec<String> {
        claimed
            .iter()
            .map(|c| c.task.data["tenant"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        tenants(&claim_n(s, 10).await),
        ["a", "b"],
        "one per key: a's empty bucket holds up no other key"
    );
    assert!(claim_n(s, 10).await.is_empty());
    db.clock.advance(1_000);
    assert_eq!(tenants(&claim_n(s, 10).await), ["a", "b"]);
    db.clock.advance(1_000);
    assert_eq!(tenants(&claim_n(s, 10).await), ["a"]);
}

async fn a_rate_and_a_concurrency_limit_together_allow_the_fewer(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let concurrency = ConcurrencyLimit {
        limit: 2,
        key: Some("tenant".into()),
    };
    rate_ping(s, Some(per_second(1, 3, Some("tenant"))), Some(concurrency)).await;
    schedule_n(s, 6, |i| json!({ "tenant": "a", "n": i })).await;
    let first = claim_n(s, 10).await;
    assert_eq!(first.len(), 2, "the concurrency limit is the fewer");
    let run = s
        .begin_run(first.into_iter().next().unwrap())
        .await
        .unwrap();
    run.resolve(complete(json!(null)), RetryPolicy::default())
        .await
        .unwrap();
    assert_eq!(
        claim_n(s, 10).await.len(),
        1,
        "a freed slot, and the bucket's last token"
    );
    let run = s.begin_run(claim_one_running(s).await).await.unwrap();
    run.resolve(complete(json!(null)), RetryPolicy::default())
        .await
        .unwrap();
    assert!(
        claim_n(s, 10).await.is_empty(),
        "a free slot, but the bucket is empty"
    );
    db.clock.advance(1_000);
    assert_eq!(claim_n(s, 10).await.len(), 1, "a token came back");
}

/// One of the running tasks, as the claim gave it (its token read back).
async fn claim_one_running(s: &Store) -> warren::store::ClaimedTask {
    let running = s
        .list(&TaskFilter {
            state: StateFilter::Running,
            ..TaskFilter::default()
        })
        .await
        .unwrap();
    let task = running.into_iter().next().expect("a running task");
    let token = task.lease_token;
    warren::store::ClaimedTask { task, token }
}

async fn three_stores_racing_spend_each_token_once(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    rate_ping(s, Some(per_second(10, 3, None)), None).await;
    let (two, three) = (db.another_node().await, db.another_node().await);
    schedule_n(s, 60, |i| json!({ "n": i })).await;
    let mut taken = 0;
    for step in 0..20 {
        if step > 0 {
            db.clock.advance(100);
        }
        let (a, b2, c) = tokio::join!(claim_n(s, 5), claim_n(&two, 5), claim_n(&three, 5));
        let now = a.len() + b2.len() + c.len();
        assert_eq!(
            now,
            if step == 0 { 3 } else { 1 },
            "step {step}: the burst first, then one token per 100 ms, whoever claims it"
        );
        taken += now;
    }
    assert_eq!(taken, 3 + 19);
}

async fn the_next_start_is_when_the_first_waiting_bucket_has_a_token(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    rate_ping(s, Some(per_second(10, 2, Some("tenant"))), None).await;
    let next = |after: i64| async move {
        s.next_rate_start(&[("default".to_string(), after)])
            .await
            .unwrap()
    };
    assert_eq!(next(s.now()).await, None);
    schedule_n(s, 3, |i| json!({ "tenant": "a", "n": i })).await;
    schedule_n(s, 2, |i| json!({ "tenant": "b", "n": i })).await;
    let claimed_at = s.now();
    assert_eq!(claim_n(s, 10).await.len(), 4);
    // Tenant a waits for its next token, 100 ms on; b's bucket is empty too, but
    // nothing of b waits.
    assert_eq!(next(claimed_at).await, Some(claimed_at + 100));
    let loads = s.key_loads().await.unwrap();
    let a = loads["demo:ping"].iter().find(|k| k.key == "a").unwrap();
    assert_eq!((a.waiting, a.rate_wait_until), (1, Some(claimed_at + 100)));
    let b_load = loads["demo:ping"].iter().find(|k| k.key == "b").unwrap();
    assert_eq!(b_load.rate_wait_until, None, "nothing of b waits");
    db.clock.advance(130);
    // A token came back since the claim: the queue claims at once.
    assert_eq!(next(claimed_at).await, Some(claimed_at + 100));
    // One that was back before a claim was sent held nothing back.
    assert_eq!(next(s.now()).await, None);
    assert_eq!(claim_n(s, 10).await.len(), 1);
    assert_eq!(next(s.now()).await, None, "nothing waits for a token");
    assert_eq!(
        s.next_rate_start(&[("elsewhere".to_string(), claimed_at)])
            .await
            .unwrap(),
        None
    );
}

async fn a_rate_limit_registered_or_removed_applies_to_waiting_tasks(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    s.register_task_types(&[TypeRegistration::new("demo:ping", "default")])
        .await
        .unwrap();
    schedule_n(s, 6, |i| json!({ "n": i })).await;
    rate_ping(s, Some(per_second(1, 2, None)), None).await;
    assert_eq!(
        claim_n(s, 10).await.len(),
        2,
        "tasks scheduled before the rule are held to it"
    );
    assert!(claim_n(s, 10).await.is_empty());
    s.register_task_types(&[TypeRegistration::new("demo:ping", "default")])
        .await
        .unwrap();
    assert_eq!(
        claim_n(s, 10).await.len(),
        4,
        "without the rule the rest start at once"
    );
}

async fn full_buckets_are_pruned(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    rate_ping(s, Some(per_second(2, 1, Some("tenant"))), None).await;
    schedule_n(s, 2, |i| json!({ "tenant": format!("t{i}") })).await;
    assert_eq!(claim_n(s, 10).await.len(), 2);
    assert_eq!(s.prune_rate_buckets().await.unwrap(), 0, "both are empty");
    db.clock.advance(500);
    assert_eq!(
        s.prune_rate_buckets().await.unwrap(),
        0,
        "both are full again, but only just"
    );
    db.clock.advance(warren::store::PRUNE_BUCKETS_AFTER_MS);
    assert_eq!(s.prune_rate_buckets().await.unwrap(), 2);
    assert_eq!(s.prune_rate_buckets().await.unwrap(), 0);
}

async fn rules_keyed_by_different_fields_are_refused(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let refused = s
        .register_task_types(&[TypeRegistration {
            rate_limit: Some(per_second(5, 5, None)),
            concurrency: Some(ConcurrencyLimit {
                limit: 1,
                key: Some("tenant".into()),
            }),
            ..TypeRegistration::new("demo:ping", "default")
        }])
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, StoreError::Invalid { field: "rate_limit", message }
            if message.contains("demo:ping") && message.contains("one field")),
        "{refused}"
    );
    let refused = s
        .register_task_types(&[TypeRegistration {
            rate_limit: Some(per_second(5, 0, None)),
            ..TypeRegistration::new("demo:ping", "default")
        }])
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("a burst of 0 is outside 1 to 1000000"),
        "{refused}"
    );
    assert!(
        s.types().await.unwrap().is_empty(),
        "nothing was registered"
    );
}
