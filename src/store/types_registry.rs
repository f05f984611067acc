//! What the command line and the API check before they create a task: whether some
//! node has registered its type (a type no loaded module declares fails or waits
//! forever), and whether a live node serves the cluster it would run in.
//!
//! The Rust API ([`Store::schedule`]) does not check: an application may schedule work
//! for nodes that start later.

use super::conn::on_conn;
use super::nodes::node_info_value;
use super::pauses::{pauses_from_rows, Pause, Pauses};
use super::schema::warren_nodes::dsl as n;
use super::schema::warren_paused::dsl as p;
use super::schema::warren_task_types::dsl as tt;
use super::{AnyConn, BackendKind, PauseTarget, Store, StoreResult};
use crate::task::{Millis, TaskType, DEFAULT_CLUSTER};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
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

/// What [`Store::check_task_type`] reads: the type's registered cluster, each node's
/// heartbeat and info, and the pauses.
struct RegistryReads {
    registered_cluster: Option<String>,
    nodes: Vec<(Millis, Value)>,
    pauses: Vec<Pause>,
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
        let reads = match self.backend() {
            BackendKind::Postgres => self.registry_reads_pipelined(task_type).await?,
            BackendKind::Sqlite => RegistryReads {
                registered_cluster: self.registered_cluster(task_type).await?,
                nodes: (self.list_nodes().await?)
                    .into_iter()
                    .map(|node| (node.heartbeat_at, node.info))
                    .collect(),
                pauses: self.pauses().await?,
            },
        };
        let registered_cluster = reads.registered_cluster;
        let cluster = cluster
            .map(str::to_string)
            .or_else(|| registered_cluster.clone())
            .unwrap_or_else(|| DEFAULT_CLUSTER.to_string());
        let since = self.now() - NODE_LIVENESS_MS;
        let served = any_live_node_runs(
            reads.nodes.iter().map(|(at, info)| (*at, info)),
            &cluster,
            since,
        );
        let paused = Pauses::from_list(&reads.pauses).holding(&cluster, task_type.as_str());
        Ok(TaskTypeCheck {
            task_type: task_type.clone(),
            registered_cluster,
            cluster,
            served,
            paused,
        })
    }

    /// The cluster a node registered for `task_type`, if any.
    async fn registered_cluster(&self, task_type: &TaskType) -> StoreResult<Option<String>> {
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        Ok(on_conn!(&mut conn, c => {
            tt::warren_task_types
                .select(tt::cluster)
                .find(task_type.as_str())
                .first(c)
                .await
                .optional()?
        }))
    }

    /// The three reads of [`Store::check_task_type`] on PostgreSQL, sent together on one
    /// connection: they are independent, so pipelined they cost one round trip and one
    /// pool checkout where one after another they cost three of each (`POST
    /// /api/tasks` makes them for every task it creates).
    async fn registry_reads_pipelined(&self, task_type: &TaskType) -> StoreResult<RegistryReads> {
        let mut pooled = self.conn().await?;
        let AnyConn::Postgres(c) = pooled.any() else {
            unreachable!("pipelined reads run on PostgreSQL only");
        };
        let conn: &AsyncPgConnection = c;
        let registered = tt::warren_task_types
            .select(tt::cluster)
            .find(task_type.as_str())
            .first::<String>(&mut &*conn);
        let nodes = n::warren_nodes
            .select((n::heartbeat_at, n::info))
            .load::<(Millis, String)>(&mut &*conn);
        let pauses = p::warren_paused
            .select((p::kind, p::name, p::paused_at))
            .load::<(String, String, Millis)>(&mut &*conn);
        // All three are awaited to the end, even when one fails, so that no answer is
        // left unread on the connection.
        let (registered, nodes, pauses) = futures_util::join!(registered, nodes, pauses);
        Ok(RegistryReads {
            registered_cluster: registered.optional()?,
            nodes: nodes?
                .into_iter()
                .map(|(heartbeat_at, info)| (heartbeat_at, node_info_value(info)))
                .collect(),
            pauses: pauses_from_rows(pauses?),
        })
    }

    /// Whether a live node (a heartbeat within [`NODE_LIVENESS_MS`]) runs `cluster`, as
    /// its registration says (`info.clusters`, `{"name": workers}`).
    pub async fn cluster_is_served(&self, cluster: &str) -> StoreResult<bool> {
        let since = self.now() - NODE_LIVENESS_MS;
        let nodes = self.list_nodes().await?;
        let nodes = nodes.iter().map(|node| (node.heartbeat_at, &node.info));
        Ok(any_live_node_runs(nodes, cluster, since))
    }
}

/// Whether one of `nodes` (heartbeat, info) beat at `since` or later and runs `cluster`.
fn any_live_node_runs<'a>(
    mut nodes: impl Iterator<Item = (Millis, &'a Value)>,
    cluster: &str,
    since: Millis,
) -> bool {
    nodes.any(|(heartbeat_at, info)| {
        heartbeat_at >= since && node_clusters(info).any(|c| c == cluster)
    })
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
