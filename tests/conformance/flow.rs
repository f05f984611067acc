//! Per-key concurrency: at most `limit` running tasks of a type per key across every
//! store, a full key holding up no other key, keys computed by the database for a
//! scheduler that does not know the rule, waiting tasks keyed again when the rule
//! changes, and three stores racing for the last slot.

use crate::support::conformance::*;

crate::conformance!(
    a_limit_without_a_key_holds_for_the_type_across_stores,
    a_full_key_holds_up_no_other_key,
    a_scheduler_that_does_not_know_the_rule_still_keys_its_tasks,
    a_changed_rule_keys_the_waiting_tasks_again,
    new_data_from_a_restart_moves_the_task_to_its_new_key,
    three_stores_racing_never_exceed_a_key_s_limit,
    every_store_holds_the_limit_in_force_not_its_own_copy,
    a_lowered_limit_takes_nothing_until_the_running_tasks_are_under_it,
    keyed_and_plain_tasks_are_taken_in_queue_order,
    a_finished_task_put_back_is_keyed_by_the_rule_in_force,
    data_a_key_cannot_be_read_from_still_schedules,
    a_claim_over_several_clusters_holds_each_type_s_limit_per_key,
);

/// Registers `demo:ping` in `default` with `limit` running per value of `key`.
async fn limit_ping(s: &Store, limit: u32, key: Option<&str>) {
    s.register_task_types(&[TypeRegistration {
        concurrency: Some(ConcurrencyLimit {
            limit,
            key: key.map(String::from),
        }),
        ..TypeRegistration::new("demo:ping", "default")
    }])
    .await
    .unwrap();
}

/// Schedules `n` tasks of `tenant`, numbered `n` from 0 in queue order.
async fn schedule_tenant(s: &Store, tenant: &str, n: i64) {
    for i in 0..n {
        s.schedule(task(json!({ "tenant": tenant, "n": i })))
            .await
            .unwrap();
    }
}

async fn claim_data(s: &Store, limit: usize) -> Vec<(TaskId, LeaseToken, serde_json::Value)> {
    s.claim("node-x", &clusters(), limit, LEASE)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.task.id, c.token, c.task.data))
        .collect()
}

async fn finish(s: &Store, id: TaskId, token: LeaseToken) {
    let claimed = s.describe(id).await.unwrap();
    assert_eq!(claimed.state, TaskState::Running);
    let run = s
        .begin_run(warren::store::ClaimedTask {
            task: claimed,
            token,
        })
        .await
        .unwrap();
    run.resolve(complete(json!(null)), RetryPolicy::default())
        .await
        .unwrap();
}

async fn a_limit_without_a_key_holds_for_the_type_across_stores(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    limit_ping(s, 2, None).await;
    let other = db.another_node().await;
    for n in 0..5 {
        s.schedule(task(json!({ "n": n }))).await.unwrap();
    }
    let first = claim_data(s, 10).await;
    assert_eq!(first.len(), 2, "the limit is 2 running tasks of the type");
    assert!(
        claim_data(&other, 10).await.is_empty(),
        "another store is held too"
    );
    finish(s, first[0].0, first[0].1).await;
    let next = claim_data(&other, 10).await;
    assert_eq!(next.len(), 1, "a finished task frees one slot");
    // Queue order is kept: the tasks came out n = 0, 1, 2.
    let ns: Vec<i64> = first
        .iter()
        .chain(&next)
        .map(|(_, _, d)| d["n"].as_i64().unwrap())
        .collect();
    assert_eq!(ns, [0, 1, 2]);
}

async fn a_full_key_holds_up_no_other_key(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    limit_ping(s, 1, Some("tenant")).await;
    // Tenant a's backlog is at the head of the queue.
    schedule_tenant(s, "a", 4).await;
    s.schedule(task(json!({ "tenant": "b" }))).await.unwrap();
    // A number and the string of its digits are one key; a missing field is the key ''.
    s.schedule(task(json!({ "tenant": 7 }))).await.unwrap();
    s.schedule(task(json!({ "tenant": "7" }))).await.unwrap();
    s.schedule(task(json!({ "other": 1 }))).await.unwrap();
    s.schedule(task(json!({ "tenant": null }))).await.unwrap();
    let taken = claim_data(s, 10).await;
    let tenants: HashSet<String> = taken
        .iter()
        .map(|(_, _, d)| d.get("tenant").map_or("<none>".into(), |t| t.to_string()))
        .collect();
    assert_eq!(
        taken.len(),
        4,
        "one per key: a, b, 7 and the empty key: {taken:?}"
    );
    assert!(tenants.contains("\"a\"") && tenants.contains("\"b\""));
    let a = taken.iter().find(|(_, _, d)| d["tenant"] == "a").unwrap();
    assert_eq!(a.2["n"], 0, "a key's tasks run in queue order");
    assert!(claim_data(s, 10).await.is_empty(), "every key is full");
    // What the dashboard shows: the busiest keys first.
    let loads = s.key_loads().await.unwrap();
    let shown: Vec<(String, i64, i64)> = loads["demo:ping"]
        .iter()
        .map(|l| (l.key.clone(), l.running, l.waiting))
        .collect();
    assert_eq!(
        shown,
        [
            ("a".to_string(), 1, 3),
            ("".to_string(), 1, 1),
            ("7".to_string(), 1, 1),
            ("b".to_string(), 1, 0)
        ]
    );
    assert_eq!(
        count(
            s,
            "SELECT count(*) AS n FROM warren_tasks WHERE state = 'pending'"
        )
        .await,
        5,
        "the waiting tasks stay pending, holding no runner"
    );
    finish(s, a.0, a.1).await;
    let next = claim_data(s, 10).await;
    assert_eq!(next.len(), 1);
    assert_eq!(
        (next[0].2["tenant"].clone(), next[0].2["n"].clone()),
        (json!("a"), json!(1))
    );
}

async fn a_scheduler_that_does_not_know_the_rule_still_keys_its_tasks(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    // Opened before any node registered the rule: its copy of the registry has none.
    let stale = db.another_node().await;
    limit_ping(&db.store, 1, Some("tenant")).await;
    let node = db.another_node().await;
    stale
        .schedule_batch(&[
            task(json!({ "tenant": "a" })),
            task(json!({ "tenant": "a" })),
            task(json!({ "tenant": "b" })),
        ])
        .await
        .unwrap();
    stale
        .schedule(task_with(
            json!({ "tenant": "a" }),
            ScheduleOptions {
                unique: Some(warren::store::Unique::key("u1")),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    assert_eq!(
        count(
            &node,
            "SELECT count(*) AS n FROM warren_tasks WHERE flow_key = 'a'"
        )
        .await,
        3
    );
    // The stale store's claim knows no rule: it takes none of the keyed tasks.
    assert!(claim_data(&stale, 10).await.is_empty());
    assert_eq!(claim_data(&node, 10).await.len(), 2, "one of a, one of b");
}

async fn a_changed_rule_keys_the_waiting_tasks_again(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    s.register_task_types(&[TypeRegistration::new("demo:ping", "default")])
        .await
        .unwrap();
    schedule_tenant(s, "a", 4).await;
    // One finished before the rule came: it keeps the key it ran under (none).
    let done = claim_data(s, 1).await;
    finish(s, done[0].0, done[0].1).await;
    let running = claim_data(s, 1).await;
    assert_eq!(running.len(), 1);
    // The rule comes with a new module definition: what waits and what runs is keyed.
    limit_ping(s, 1, Some("tenant")).await;
    assert_eq!(
        count(
            s,
            "SELECT count(*) AS n FROM warren_tasks WHERE flow_key = 'a'"
        )
        .await,
        3
    );
    assert_eq!(
        count(
            s,
            "SELECT count(*) AS n FROM warren_tasks WHERE flow_key IS NULL AND state = 'completed'"
        )
        .await,
        1
    );
    assert!(
        claim_data(s, 10).await.is_empty(),
        "the running task fills key a"
    );
    finish(s, running[0].0, running[0].1).await;
    assert_eq!(claim_data(s, 10).await.len(), 1);
    // And without the rule again, the waiting and running tasks are plain once more
    // (finished ones keep the key they ran under).
    s.register_task_types(&[TypeRegistration::new("demo:ping", "default")])
        .await
        .unwrap();
    assert_eq!(
        count(
            s,
            "SELECT count(*) AS n FROM warren_tasks WHERE flow_key IS NOT NULL \
             AND state IN ('pending', 'running')"
        )
        .await,
        0
    );
    assert_eq!(claim_data(s, 10).await.len(), 1);
}

async fn new_data_from_a_restart_moves_the_task_to_its_new_key(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    limit_ping(s, 1, Some("tenant")).await;
    s.schedule(task(json!({ "tenant": "a" }))).await.unwrap();
    let run = claim_one(s).await;
    let id = run.claimed().task.id;
    let restart = Resolution::Restart {
        at: T0,
        new_data: Some(json!({ "tenant": "b" }).to_string()),
        new_aux_data: None,
    };
    run.resolve(restart, RetryPolicy::default()).await.unwrap();
    assert_eq!(
        count(
            s,
            &format!("SELECT count(*) AS n FROM warren_tasks WHERE id = {id} AND flow_key = 'b'")
        )
        .await,
        1
    );
}

async fn three_stores_racing_never_exceed_a_key_s_limit(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    limit_ping(&db.store, 2, Some("tenant")).await;
    let stores = [
        db.another_node().await,
        db.another_node().await,
        db.another_node().await,
    ];
    for n in 0..40 {
        let tenant = ["a", "b"][n % 2];
        db.store
            .schedule(task(json!({ "tenant": tenant, "n": n })))
            .await
            .unwrap();
    }
    let mut finished = 0;
    while finished < 40 {
        // Three claims at once, each asking for more than the limit allows.
        let (x, y, z) = tokio::join!(
            claim_data(&stores[0], 5),
            claim_data(&stores[1], 5),
            claim_data(&stores[2], 5)
        );
        let running = count(
            &db.store,
            "SELECT coalesce(max(k), 0) AS n FROM (SELECT count(*) AS k FROM warren_tasks \
             WHERE state = 'running' GROUP BY flow_key) AS per_key",
        )
        .await;
        assert!(
            running <= 2,
            "a key ran {running} tasks at once; the limit is 2"
        );
        let taken: Vec<_> = x.into_iter().chain(y).chain(z).collect();
        assert!(
            !taken.is_empty(),
            "each round frees every slot, so something is taken"
        );
        for (id, token, _) in taken {
            finish(&db.store, id, token).await;
            finished += 1;
        }
    }
}

async fn every_store_holds_the_limit_in_force_not_its_own_copy(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    // This store registered 10; a node that started later registered 2.
    let s = &db.store;
    limit_ping(s, 10, Some("tenant")).await;
    let later = db.another_node().await;
    limit_ping(&later, 2, Some("tenant")).await;
    schedule_tenant(s, "a", 5).await;
    assert_eq!(
        claim_data(s, 10).await.len(),
        2,
        "the registered limit is 2"
    );
}

async fn keyed_and_plain_tasks_are_taken_in_queue_order(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    s.register_task_types(&[
        TypeRegistration {
            concurrency: Some(ConcurrencyLimit {
                limit: 5,
                key: Some("tenant".into()),
            }),
            ..TypeRegistration::new("demo:ping", "default")
        },
        TypeRegistration::new("demo:mail", "default"),
    ])
    .await
    .unwrap();
    let with_priority = |task_type: &str, priority: Priority, n: i64| {
        NewTask::new(task_type.parse().unwrap(), json!({ "tenant": "a", "n": n })).with_options(
            ScheduleOptions {
                priority: Some(priority),
                ..Default::default()
            },
        )
    };
    // A keyed background task first, then an interactive plain one, then a keyed
    // interactive one: one runner's claim takes them in priority order.
    s.schedule(with_priority("demo:ping", Priority::BACKGROUND, 1))
        .await
        .unwrap();
    s.schedule(with_priority("demo:mail", Priority::INTERACTIVE, 2))
        .await
        .unwrap();
    s.schedule(with_priority("demo:ping", Priority::INTERACTIVE, 3))
        .await
        .unwrap();
    let order: Vec<i64> = [
        claim_data(s, 1).await,
        claim_data(s, 1).await,
        claim_data(s, 1).await,
    ]
    .iter()
    .map(|claimed| claimed[0].2["n"].as_i64().unwrap())
    .collect();
    assert_eq!(order, [2, 3, 1]);
}

async fn a_finished_task_put_back_is_keyed_by_the_rule_in_force(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    s.register_task_types(&[TypeRegistration::new("demo:ping", "default")])
        .await
        .unwrap();
    let id = s.schedule(task(json!({ "tenant": "a" }))).await.unwrap();
    s.schedule(task(json!({ "tenant": "a" }))).await.unwrap();
    s.cancel(id, "not now").await.unwrap();
    // The rule comes after the task finished; retried, it is held to it.
    limit_ping(s, 1, Some("tenant")).await;
    s.retry_now(id).await.unwrap();
    assert_eq!(
        count(
            s,
            &format!("SELECT count(*) AS n FROM warren_tasks WHERE id = {id} AND flow_key = 'a'")
        )
        .await,
        1
    );
    assert_eq!(
        claim_data(s, 10).await.len(),
        1,
        "one of the two tasks of key a"
    );
}

async fn data_a_key_cannot_be_read_from_still_schedules(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    limit_ping(s, 1, Some("tenant")).await;
    // A NUL in the key's value: PostgreSQL's text cannot hold it.
    let id = s
        .schedule(task(json!({ "tenant": "a\u{0}b" })))
        .await
        .unwrap();
    let claimed = claim_data(s, 10).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].0, id);
}

async fn a_lowered_limit_takes_nothing_until_the_running_tasks_are_under_it(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    limit_ping(s, 3, Some("tenant")).await;
    schedule_tenant(s, "a", 5).await;
    s.schedule(task(json!({ "tenant": "b" }))).await.unwrap();
    let running = claim_data(s, 3).await;
    assert_eq!(running.len(), 3);
    // Three run where one is allowed now: key a takes nothing, key b still runs.
    limit_ping(s, 1, Some("tenant")).await;
    let next = claim_data(s, 10).await;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].2["tenant"], "b");
    for (id, token, _) in &running[..2] {
        finish(s, *id, *token).await;
    }
    assert!(claim_data(s, 10).await.is_empty(), "one of a still runs");
    finish(s, running[2].0, running[2].1).await;
    assert_eq!(claim_data(s, 10).await.len(), 1);
}

async fn a_claim_over_several_clusters_holds_each_type_s_limit_per_key(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let one_per_tenant = || {
        Some(ConcurrencyLimit {
            limit: 1,
            key: Some("tenant".into()),
        })
    };
    s.register_task_types(&[
        TypeRegistration {
            concurrency: one_per_tenant(),
            ..TypeRegistration::new("demo:ping", "default")
        },
        TypeRegistration {
            concurrency: one_per_tenant(),
            ..TypeRegistration::new("demo:mail", "mail")
        },
    ])
    .await
    .unwrap();
    for tenant in ["a", "a", "b", "b"] {
        s.schedule(task(json!({ "tenant": tenant }))).await.unwrap();
    }
    for _ in 0..3 {
        let mail = NewTask::new("demo:mail".parse().unwrap(), json!({ "tenant": "a" }));
        s.schedule(mail).await.unwrap();
    }
    // Several clusters (a name given twice too) are the array form of the claim.
    let clusters = ["default", "mail", "default"].map(String::from);
    let first = s.claim("node-x", &clusters, 10, LEASE).await.unwrap();
    let mut taken: Vec<(String, String)> = first
        .iter()
        .map(|c| {
            let tenant = c.task.data["tenant"].as_str().unwrap().to_string();
            (c.task.task_type.to_string(), tenant)
        })
        .collect();
    taken.sort();
    let expected = [("demo:mail", "a"), ("demo:ping", "a"), ("demo:ping", "b")]
        .map(|(t, k)| (t.to_string(), k.to_string()));
    assert_eq!(taken, expected, "one running task per type and tenant");
    let second = s.claim("node-x", &clusters, 10, LEASE).await.unwrap();
    assert!(second.is_empty(), "every key is full: {second:?}");
}
