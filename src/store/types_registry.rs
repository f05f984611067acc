//! What the command line and the API check before they create a task: whether some
//! node has registered its type (a type no loaded module declares fails or waits
//! forever), and whether a live node serves the cluster it would run in.
//!
//! The Rust API ([`Store::schedule`]) does not check: an application may schedule work
//! for nodes that start later.

use super::conn::on_conn;
use super::schema::warren_task_types::dsl as tt;
use super::{PauseTarget, Store, StoreResult};
use crate::task::{TaskType, DEFAULT_CLUSTER};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::Value;

/// How long a node may go without a heartbeat and still count as live. Nodes beat every
/// 5 s, and a node silent for this long is pruned as dead.
pub const NODE_LIVENESS_MS: i64 = 60_000;

/// What the registry says about a task about to be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskTypeCheck {
    /// The task's type.
    pub task_type: TaskType,
    /// The cluster a node registered for the type; `None` when no node ever did.
    pub registered_cluster: Option<String>,
    /// The cluster the task runs in: the one asked for, else the registered one, else
    /// `default`.
    pub cluster: String,
    /// Whether a live node (a heartbeat within [`NODE_LIVENESS_MS`]) serves `cluster`.
    pub served: bool,
    /// The pause holding the task back (its cluster's, else its type's), if any.
    pub paused: Option<PauseTarget>,
}

impl TaskTypeCheck {
    /// Whether some node has registered the type (a module it loaded declares it).
    pub fn is_registered(&self) -> bool {
        self.registered_cluster.is_some()
    }

    /// What the person creating the task should know (empty when all is well): no live
    /// node serves its cluster, or its cluster or type is paused, so it waits.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if !self.served {
            warnings.push(format!(
                "no live node serves cluster '{}' (none has sent a heartbeat in the last {} s): \
                 the {} task waits until a node that runs it starts",
                self.cluster,
                NODE_LIVENESS_MS / 1000,
                self.task_type
            ));
        }
        if let Some(pause) = &self.paused {
            warnings.push(format!(
                "{pause} is paused: the {} task waits until it is resumed",
                self.task_type
            ));
        }
        warnings
    }
}

impl Store {
    /// Checks a task of `task_type` about to be created in `cluster` (or, without one,
    /// its type's registered cluster, else `default`). The registration is read from
    /// the database, so a type registered by a node that started after this store
    /// opened counts.
    pub async fn check_task_type(
        &self,
        task_type: &TaskType,
        cluster: Option<&str>,
    ) -> StoreResult<TaskTypeCheck> {
        let registered_cluster: Option<String> = {
            let mut pooled = self.conn().await?;
            let mut conn = pooled.any();
            on_conn!(&mut conn, c => {
                tt::warren_task_types
                    .select(tt::cluster)
                    .find(task_type.as_str())
                    .first(c)
                    .await
                    .optional()?
            })
        };
        let cluster = cluster
            .map(str::to_string)
            .or_else(|| registered_cluster.clone())
            .unwrap_or_else(|| DEFAULT_CLUSTER.to_string());
        let served = self.cluster_is_served(&cluster).await?;
        let paused = self.pause_holding(&cluster, task_type.as_str()).await?;
        Ok(TaskTypeCheck {
            task_type: task_type.clone(),
            registered_cluster,
            cluster,
            served,
            paused,
        })
    }

    /// Whether a live node (a heartbeat within [`NODE_LIVENESS_MS`]) runs `cluster`, as
    /// its registration says (`info.clusters`, `{"name": workers}`).
    pub async fn cluster_is_served(&self, cluster: &str) -> StoreResult<bool> {
        let since = self.now() - NODE_LIVENESS_MS;
        Ok(self.list_nodes().await?.iter().any(|node| {
            node.heartbeat_at >= since && node_clusters(&node.info).any(|c| c == cluster)
        }))
    }
}

/// The clusters a node's info names (`clusters`: a map of cluster to workers, or a list
/// of names).
pub(super) fn node_clusters(info: &Value) -> impl Iterator<Item = &str> {
    let (map, list) = match info.get("clusters") {
        Some(Value::Object(map)) => (Some(map.keys().map(String::as_str)), None),
        Some(Value::Array(list)) => (None, Some(list.iter().filter_map(Value::as_str))),
        _ => (None, None),
    };
    map.into_iter().flatten().chain(list.into_iter().flatten())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn clusters_are_read_from_a_map_or_a_list() {
        let names = |info| {
            let mut names: Vec<String> = node_clusters(&info).map(String::from).collect();
            names.sort();
            names
        };
        assert_eq!(
            names(json!({"clusters": {"mail": 4, "a": 1}})),
            ["a", "mail"]
        );
        assert_eq!(names(json!({"clusters": ["mail", 3]})), ["mail"]);
        assert!(names(json!({"pid": 1})).is_empty());
    }
}
