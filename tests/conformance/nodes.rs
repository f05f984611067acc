//! The node registry, settings and task type checks.

use crate::support::conformance::*;
use warren::store::PauseTarget;

crate::conformance!(
    nodes_heartbeat_and_settings,
    nodes_publish_their_runners,
    task_type_checks_see_registrations_and_live_nodes,
);

async fn nodes_heartbeat_and_settings(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    s.register_node("alpha", &json!({"pid": 1})).await.unwrap();
    db.clock.advance(MIN);
    s.register_node("beta", &json!({"pid": 2})).await.unwrap();
    assert!(s.heartbeat("beta").await.unwrap());
    assert!(!s.heartbeat("gamma").await.unwrap());
    let nodes = s.list_nodes().await.unwrap();
    assert_eq!(
        nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
        vec!["alpha", "beta"]
    );
    assert_eq!(nodes[1].info, json!({"pid": 2}));
    assert_eq!(
        s.prune_nodes(MIN / 2).await.unwrap(),
        vec!["alpha".to_string()]
    );
    s.remove_node("beta").await.unwrap();
    assert!(s.list_nodes().await.unwrap().is_empty());
    // The maintenance offset: a valid setting wins; otherwise one random value is
    // chosen once and every node sees it.
    assert_eq!(s.maintenance_offset(Some("90")).await.unwrap(), 90);
    let first = s.maintenance_offset(None).await.unwrap();
    assert!(first < 1440);
    let other = db.another_node().await;
    assert_eq!(other.maintenance_offset(Some("1440")).await.unwrap(), first);
    assert_eq!(other.maintenance_offset(Some("-5")).await.unwrap(), first);
}

async fn nodes_publish_their_runners(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    s.register_node("alpha", &json!({"pid": 1})).await.unwrap();
    assert_eq!(s.list_nodes().await.unwrap()[0].runners, json!([]));
    let runners = json!([{"cluster": "default", "index": 0, "task_id": 7}]);
    assert!(s.set_node_runners("alpha", &runners).await.unwrap());
    assert!(!s.set_node_runners("gamma", &runners).await.unwrap());
    let other = db.another_node().await;
    assert_eq!(other.list_nodes().await.unwrap()[0].runners, runners);
    // Starting again forgets the runners of the previous start.
    s.register_node("alpha", &json!({"pid": 2})).await.unwrap();
    assert_eq!(s.list_nodes().await.unwrap()[0].runners, json!([]));
}

async fn task_type_checks_see_registrations_and_live_nodes(b: Backend) {
    let Some(db) = TestDb::new(b).await else {
        return;
    };
    let s = &db.store;
    let mail: TaskType = "demo:mail".parse().unwrap();
    // Nothing registered, no node: the default cluster, unserved.
    let check = s.check_task_type(&mail, None).await.unwrap();
    assert!(!check.is_registered());
    assert_eq!((check.cluster.as_str(), check.served), ("default", false));
    assert_eq!(check.warnings().len(), 1);
    assert!(check.warnings()[0].contains("cluster 'default'"));
    // Registered by a node started after this store opened: seen.
    let other = db.another_node().await;
    other
        .register_task_types(&[TypeRegistration::new("demo:mail", "mail")])
        .await
        .unwrap();
    let check = s.check_task_type(&mail, None).await.unwrap();
    assert_eq!(check.registered_cluster.as_deref(), Some("mail"));
    assert_eq!((check.cluster.as_str(), check.served), ("mail", false));
    // A live node serving the cluster; an explicit cluster wins over the registered one.
    other
        .register_node("mailer", &json!({"clusters": {"default": 1, "mail": 2}}))
        .await
        .unwrap();
    let check = s.check_task_type(&mail, None).await.unwrap();
    assert!(check.served && check.warnings().is_empty());
    let check = s.check_task_type(&mail, Some("parked")).await.unwrap();
    assert_eq!((check.cluster.as_str(), check.served), ("parked", false));
    // Silent for longer than the liveness window: no longer live.
    db.clock.advance(warren::store::NODE_LIVENESS_MS);
    assert!(s.cluster_is_served("mail").await.unwrap());
    assert!(s.check_task_type(&mail, None).await.unwrap().served);
    db.clock.advance(1);
    assert!(!s.cluster_is_served("mail").await.unwrap());
    assert!(!s.check_task_type(&mail, None).await.unwrap().served);
    assert!(other.heartbeat("mailer").await.unwrap());
    assert!(s.cluster_is_served("mail").await.unwrap());
    // A pause of the task's cluster holds it back before one of its type; another
    // cluster's pause does not.
    let pause = |target: PauseTarget| async move { s.pause(&target).await.unwrap() };
    pause(PauseTarget::TaskType("demo:mail".into())).await;
    let check = s.check_task_type(&mail, None).await.unwrap();
    assert_eq!(
        check.paused,
        Some(PauseTarget::TaskType("demo:mail".into()))
    );
    pause(PauseTarget::Cluster("mail".into())).await;
    let check = s.check_task_type(&mail, None).await.unwrap();
    assert_eq!(check.paused, Some(PauseTarget::Cluster("mail".into())));
    assert!(check.served, "a paused cluster is still served");
    assert_eq!(check.warnings().len(), 1, "{:?}", check.warnings());
    let check = s.check_task_type(&mail, Some("default")).await.unwrap();
    assert_eq!(
        check.paused,
        Some(PauseTarget::TaskType("demo:mail".into()))
    );
}
