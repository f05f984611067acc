//! Pausing: an operator stops a cluster's queue, or a task type, during an incident.
//!
//! A pause is a row of `warren_paused`, shared by every node. The claim reads it in the
//! same statement that takes tasks (`claim.rs`, `sqlite_dialect.rs`), and so does the
//! look for due scheduled tags (`scheduled.rs`): no claim that starts after a pause
//! commits takes paused work, whichever node makes it. Running tasks finish; scheduling
//! still works (the tasks wait). Pausing and resuming announce work in every cluster
//! ([`ANY_CLUSTER`]): nodes then read the pauses again (to refuse ephemeral tasks and to
//! give back tasks they claimed ahead) and, after a resume, claim what waited.

use super::conn::on_conn;
use super::schema::warren_paused::dsl as p;
use super::schema::warren_scheduled::dsl as s;
use super::schema::warren_task_types::dsl as tt;
use super::signals::{announce_work, ANY_CLUSTER};
use super::task_types::{RegisteredType, RegistryRow};
use super::types_registry::node_clusters;
use super::{Store, StoreError, StoreResult};
use crate::task::{Millis, DEFAULT_CLUSTER};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The longest name a pause accepts, in bytes (longer names are never valid cluster or
/// type names).
const MAX_NAME_BYTES: usize = 200;

/// What can be paused.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
// Serialized as `{"kind": "cluster" | "type", "name": …}`, as [`PauseTarget::kind`] says.
pub enum PauseTarget {
    /// A cluster: none of its managed or ephemeral tasks start.
    Cluster(String),
    /// A task type (managed or ephemeral) or a scheduled tag: none of its runs start.
    #[serde(rename = "type")]
    TaskType(String),
}

impl PauseTarget {
    /// The `kind` column's value.
    pub fn kind(&self) -> &'static str {
        match self {
            PauseTarget::Cluster(_) => "cluster",
            PauseTarget::TaskType(_) => "type",
        }
    }

    /// The cluster's or the type's name.
    pub fn name(&self) -> &str {
        match self {
            PauseTarget::Cluster(name) | PauseTarget::TaskType(name) => name,
        }
    }

    fn from_row(kind: &str, name: String) -> Option<PauseTarget> {
        match kind {
            "cluster" => Some(PauseTarget::Cluster(name)),
            "type" => Some(PauseTarget::TaskType(name)),
            _ => None,
        }
    }
}

impl fmt::Display for PauseTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PauseTarget::Cluster(name) => write!(f, "cluster '{name}'"),
            PauseTarget::TaskType(name) => write!(f, "task type '{name}'"),
        }
    }
}

/// A paused cluster or type, and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pause {
    /// What is paused.
    #[serde(flatten)]
    pub target: PauseTarget,
    /// When it was paused.
    pub since: Millis,
}

/// A cluster as `warren clusters list`, the API and the dashboard show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterInfo {
    /// Its name.
    pub name: String,
    /// When it was paused; `None` when it runs.
    pub paused_since: Option<Millis>,
    /// The task types nodes registered in it, by name.
    pub task_types: Vec<String>,
    /// The nodes with a recent heartbeat that run it.
    pub live_nodes: usize,
}

/// What a name in `warren types list` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TypeKind {
    /// A managed or ephemeral task type a node registered.
    Task,
    /// A scheduled (`<task>`) tag.
    Scheduled,
    /// A paused name no node registers any more.
    Unregistered,
}

/// A task type or scheduled tag as `warren types list`, the API and the dashboard show
/// it, with whether it can run now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TypeInfo {
    /// The full name, `module:name`.
    pub name: String,
    /// What it is.
    pub kind: TypeKind,
    /// The cluster it runs in (task types only).
    pub cluster: Option<String>,
    /// When the type itself was paused; `None` when it is not.
    pub paused_since: Option<Millis>,
    /// Whether its cluster is paused (which holds it back as well).
    pub cluster_paused: bool,
    /// Its concurrency rule (task types with one only).
    pub concurrency: Option<crate::flow::ConcurrencyLimit>,
    /// Its rate limit (task types with one only).
    pub rate_limit: Option<crate::rate_limit::RateLimit>,
    /// Its busiest keys of its flow rules: what runs and waits under each (at most
    /// [`super::flow::KEYS_SHOWN`], those with the most running first).
    pub keys: Vec<super::flow::KeyLoad>,
}

/// The paused clusters and types at one moment: what a node checks work against before
/// it starts it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pauses {
    /// Paused clusters.
    pub clusters: BTreeSet<String>,
    /// Paused task types and scheduled tags.
    pub types: BTreeSet<String>,
}

impl Pauses {
    /// The pauses in `list`.
    pub fn from_list(list: &[Pause]) -> Pauses {
        let mut pauses = Pauses::default();
        for pause in list {
            match &pause.target {
                PauseTarget::Cluster(name) => pauses.clusters.insert(name.clone()),
                PauseTarget::TaskType(name) => pauses.types.insert(name.clone()),
            };
        }
        pauses
    }

    /// The pause that holds a task of `task_type` in `cluster` back, if any (the
    /// cluster's first).
    pub fn holding(&self, cluster: &str, task_type: &str) -> Option<PauseTarget> {
        if self.clusters.contains(cluster) {
            Some(PauseTarget::Cluster(cluster.to_string()))
        } else if self.types.contains(task_type) {
            Some(PauseTarget::TaskType(task_type.to_string()))
        } else {
            None
        }
    }
}

impl Store {
    /// Pauses `target`: once this returns, no claim that starts, on any node, takes its
    /// tasks or claims a scheduled run of it; tasks running now finish. Returns false
    /// when it was paused already (the first pause's time stays). A name that no node
    /// has registered (as a type's cluster, a cluster it runs, a task type or a
    /// scheduled tag) is refused: a typo would otherwise pause nothing.
    pub async fn pause(&self, target: &PauseTarget) -> StoreResult<bool> {
        check_name(target)?;
        self.require_known(target).await?;
        let now = self.now();
        self.in_transaction(async |conn, pending| {
            let inserted = on_conn!(conn, c => {
                diesel::insert_into(p::warren_paused)
                    .values((
                        p::kind.eq(target.kind()),
                        p::name.eq(target.name()),
                        p::paused_at.eq(now),
                    ))
                    .on_conflict((p::kind, p::name))
                    .do_nothing()
                    .execute(c)
                    .await?
            });
            announce_work(conn, pending, ANY_CLUSTER).await?;
            Ok(inserted == 1)
        })
        .await
    }

    /// Resumes `target`: its waiting tasks are claimed again, and a scheduled tag whose
    /// runs were missed meanwhile runs once (the missed ticks coalesce). Returns false
    /// when it was not paused.
    pub async fn resume(&self, target: &PauseTarget) -> StoreResult<bool> {
        check_name(target)?;
        self.in_transaction(async |conn, pending| {
            let deleted = on_conn!(conn, c => {
                diesel::delete(
                    p::warren_paused
                        .filter(p::kind.eq(target.kind()))
                        .filter(p::name.eq(target.name())),
                )
                .execute(c)
                .await?
            });
            announce_work(conn, pending, ANY_CLUSTER).await?;
            Ok(deleted == 1)
        })
        .await
    }

    /// The pause holding back a task of `task_type` in `cluster` now (the cluster's,
    /// else the type's), if any: what a pending task that does not start is waiting for.
    pub async fn pause_holding(
        &self,
        cluster: &str,
        task_type: &str,
    ) -> StoreResult<Option<PauseTarget>> {
        Ok(Pauses::from_list(&self.pauses().await?).holding(cluster, task_type))
    }

    /// The pause a task waits for: a pending task's [`Store::pause_holding`], else `None`
    /// (a task in any other state waits for no pause).
    pub async fn pause_holding_task(&self, task: &super::Task) -> StoreResult<Option<PauseTarget>> {
        match task.state {
            crate::task::TaskState::Pending => {
                self.pause_holding(&task.cluster, task.task_type.as_str())
                    .await
            }
            _ => Ok(None),
        }
    }

    /// Every pause, clusters first, by name.
    pub async fn pauses(&self) -> StoreResult<Vec<Pause>> {
        let mut pooled = self.conn().await?;
        let rows: Vec<(String, String, Millis)> = on_conn!(&mut pooled.any(), c => {
            p::warren_paused
                .select((p::kind, p::name, p::paused_at))
                .order((p::kind, p::name))
                .load(c)
                .await?
        });
        Ok(pauses_from_rows(rows))
    }

    /// The clusters nodes know of: `default`, every registered type's cluster and every
    /// cluster a registered node runs, by name.
    pub async fn known_clusters(&self) -> StoreResult<BTreeSet<String>> {
        Ok(self.clusters().await?.into_iter().map(|c| c.name).collect())
    }

    /// Every cluster nodes know of (see [`Store::known_clusters`]) or that is paused,
    /// by name, with its pause, its registered types and the live nodes that run it.
    pub async fn clusters(&self) -> StoreResult<Vec<ClusterInfo>> {
        let types: Vec<(String, String)> = {
            let mut pooled = self.conn().await?;
            on_conn!(&mut pooled.any(), c => {
                tt::warren_task_types
                    .select((tt::cluster, tt::task_type))
                    .order((tt::cluster, tt::task_type))
                    .load(c)
                    .await?
            })
        };
        let mut clusters: BTreeMap<String, ClusterInfo> = BTreeMap::new();
        fn entry<'m>(
            clusters: &'m mut BTreeMap<String, ClusterInfo>,
            name: &str,
        ) -> &'m mut ClusterInfo {
            clusters
                .entry(name.to_string())
                .or_insert_with(|| ClusterInfo {
                    name: name.to_string(),
                    paused_since: None,
                    task_types: Vec::new(),
                    live_nodes: 0,
                })
        }
        entry(&mut clusters, DEFAULT_CLUSTER);
        for (cluster, task_type) in types {
            entry(&mut clusters, &cluster).task_types.push(task_type);
        }
        let live_since = self.now() - super::NODE_LIVENESS_MS;
        for node in self.list_nodes().await? {
            for name in node_clusters(&node.info) {
                let info = entry(&mut clusters, name);
                if node.heartbeat_at >= live_since {
                    info.live_nodes += 1;
                }
            }
        }
        for pause in self.pauses().await? {
            if let PauseTarget::Cluster(name) = &pause.target {
                entry(&mut clusters, name).paused_since = Some(pause.since);
            }
        }
        Ok(clusters.into_values().collect())
    }

    /// Every registered task type and scheduled tag, and every paused name that is
    /// neither, by name, with its pause and its cluster's.
    pub async fn types(&self) -> StoreResult<Vec<TypeInfo>> {
        let (types, tags) = {
            let mut pooled = self.conn().await?;
            let mut conn = pooled.any();
            let types: Vec<RegistryRow> = on_conn!(&mut conn, c => {
                tt::warren_task_types
                    .select(RegistryRow::as_select())
                    .load(c)
                    .await?
            });
            let tags: Vec<String> = on_conn!(&mut conn, c => {
                s::warren_scheduled.select(s::tag).load(c).await?
            });
            (types, tags)
        };
        let pauses = self.pauses().await?;
        let paused_since = |name: &str| {
            pauses.iter().find_map(|p| match &p.target {
                PauseTarget::TaskType(t) if t == name => Some(p.since),
                _ => None,
            })
        };
        let book = Pauses::from_list(&pauses);
        let registered: Vec<(RegistryRow, RegisteredType)> = types
            .into_iter()
            .map(|row| {
                let registered = row.registered();
                (row, registered)
            })
            .collect();
        let mut loads = if registered.iter().any(|(_, t)| t.has_rule()) {
            self.key_loads().await?
        } else {
            Default::default()
        };
        let mut list: Vec<TypeInfo> = registered
            .into_iter()
            .map(|(row, registered)| TypeInfo {
                paused_since: paused_since(&row.task_type),
                cluster_paused: book.clusters.contains(&row.cluster),
                keys: loads.remove(&row.task_type).unwrap_or_default(),
                concurrency: registered.concurrency,
                rate_limit: registered.rate_limit,
                name: row.task_type,
                kind: TypeKind::Task,
                cluster: Some(row.cluster),
            })
            .collect();
        for tag in tags {
            list.push(TypeInfo {
                paused_since: paused_since(&tag),
                name: tag,
                kind: TypeKind::Scheduled,
                cluster: None,
                cluster_paused: false,
                concurrency: None,
                rate_limit: None,
                keys: Vec::new(),
            });
        }
        for name in &book.types {
            if !list.iter().any(|t| &t.name == name) {
                list.push(TypeInfo {
                    name: name.clone(),
                    kind: TypeKind::Unregistered,
                    cluster: None,
                    paused_since: paused_since(name),
                    cluster_paused: false,
                    concurrency: None,
                    rate_limit: None,
                    keys: Vec::new(),
                });
            }
        }
        list.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(list)
    }

    /// Refuses a pause of a cluster or type no node has registered.
    async fn require_known(&self, target: &PauseTarget) -> StoreResult<()> {
        let known = match target {
            PauseTarget::Cluster(name) => self.known_clusters().await?.contains(name),
            PauseTarget::TaskType(name) => {
                let mut pooled = self.conn().await?;
                let mut conn = pooled.any();
                let types: i64 = on_conn!(&mut conn, c => {
                    tt::warren_task_types
                        .filter(tt::task_type.eq(name))
                        .count()
                        .get_result(c)
                        .await?
                });
                let tags: i64 = on_conn!(&mut conn, c => {
                    s::warren_scheduled
                        .filter(s::tag.eq(name))
                        .count()
                        .get_result(c)
                        .await?
                });
                types + tags > 0
            }
        };
        if known {
            return Ok(());
        }
        Err(StoreError::Invalid {
            field: target.kind(),
            message: match target {
                PauseTarget::Cluster(name) => format!(
                    "no node knows cluster '{name}' (known: {})",
                    self.known_clusters()
                        .await?
                        .into_iter()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                PauseTarget::TaskType(name) => format!(
                    "no node has registered task type or scheduled tag '{name}' \
                     (a node registers the types of the modules it loads when it starts)"
                ),
            },
        })
    }
}

/// Refuses an empty or overlong name.
fn check_name(target: &PauseTarget) -> StoreResult<()> {
    let name = target.name();
    if name.trim().is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(StoreError::Invalid {
            field: target.kind(),
            message: format!("a name of 1–{MAX_NAME_BYTES} bytes is needed, got '{name}'"),
        });
    }
    Ok(())
}

/// The pauses of `warren_paused`'s rows (kind, name, since); a row of a kind this
/// version does not know is left out.
pub(super) fn pauses_from_rows(rows: Vec<(String, String, Millis)>) -> Vec<Pause> {
    rows.into_iter()
        .filter_map(|(kind, name, since)| {
            PauseTarget::from_row(&kind, name).map(|target| Pause { target, since })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_pause_holds_before_a_type_pause() {
        let pauses = Pauses::from_list(&[
            Pause {
                target: PauseTarget::TaskType("m:mail".into()),
                since: 1,
            },
            Pause {
                target: PauseTarget::Cluster("slow".into()),
                since: 2,
            },
        ]);
        assert_eq!(
            pauses.holding("slow", "m:mail"),
            Some(PauseTarget::Cluster("slow".into()))
        );
        assert_eq!(
            pauses.holding("default", "m:mail"),
            Some(PauseTarget::TaskType("m:mail".into()))
        );
        assert_eq!(pauses.holding("default", "m:other"), None);
    }

    #[test]
    fn names_must_be_present_and_bounded() {
        assert!(check_name(&PauseTarget::Cluster(" ".into())).is_err());
        assert!(check_name(&PauseTarget::TaskType("x".repeat(201))).is_err());
        assert!(check_name(&PauseTarget::TaskType("m:t".into())).is_ok());
    }
}
