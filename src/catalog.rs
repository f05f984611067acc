//! The catalog of a node: every loaded module's task types, clusters and scheduled
//! tasks, looked up by name. It is what the runtime consults to run a task: where its
//! code is, its retry policy, timeout and memory limit, and how many runners each
//! cluster has.

use crate::moduledef::{ModuleDefinition, ScheduledTaskDef, TaskTypeDef};
use crate::store::ScheduledSpec;
use crate::task::{RetryPolicy, TaskType, DEFAULT_CLUSTER};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A task type as the runtime needs it: its definition and its module's folder.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogType {
    /// The definition from `moduledefinition.xml`.
    pub def: TaskTypeDef,
    /// The module folder (the root for resolving the code's imports).
    pub module_dir: PathBuf,
}

/// A scheduled task as the runtime needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogScheduled {
    /// The definition.
    pub def: ScheduledTaskDef,
    /// The module folder.
    pub module_dir: PathBuf,
}

/// Every task type, cluster and scheduled task of the loaded modules.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    types: BTreeMap<String, CatalogType>,
    scheduled: BTreeMap<String, CatalogScheduled>,
    clusters: BTreeMap<String, u32>,
}

impl Catalog {
    /// Builds the catalog of `modules`. A cluster declared by several modules gets the
    /// largest worker count any of them asks for.
    pub fn new(modules: &[ModuleDefinition]) -> Catalog {
        let mut catalog = Catalog::default();
        catalog.clusters.insert(DEFAULT_CLUSTER.to_string(), 1);
        for m in modules {
            for c in &m.clusters {
                let workers = catalog.clusters.entry(c.tag.clone()).or_insert(0);
                *workers = (*workers).max(c.workers);
            }
            for t in m.managed.iter().chain(&m.ephemeral) {
                catalog.types.insert(
                    t.task_type.to_string(),
                    CatalogType {
                        def: t.clone(),
                        module_dir: m.dir.clone(),
                    },
                );
            }
            for s in &m.scheduled {
                catalog.scheduled.insert(
                    s.tag.clone(),
                    CatalogScheduled {
                        def: s.clone(),
                        module_dir: m.dir.clone(),
                    },
                );
            }
        }
        catalog
    }

    /// A task type by full name.
    pub fn task_type(&self, name: &str) -> Option<&CatalogType> {
        self.types.get(name)
    }

    /// Every task type, by name.
    pub fn task_types(&self) -> impl Iterator<Item = &CatalogType> {
        self.types.values()
    }

    /// The retry policy of a task type (the defaults for a type no module declares).
    pub fn retry_policy(&self, task_type: &TaskType) -> RetryPolicy {
        match self.types.get(task_type.as_str()) {
            Some(t) => t.def.retry,
            None => RetryPolicy::default(),
        }
    }

    /// Clusters and their runner counts, by name (`default` always among them).
    pub fn clusters(&self) -> &BTreeMap<String, u32> {
        &self.clusters
    }

    /// A scheduled task by full tag.
    pub fn scheduled(&self, tag: &str) -> Option<&CatalogScheduled> {
        self.scheduled.get(tag)
    }

    /// Every scheduled task, by tag.
    pub fn scheduled_tasks(&self) -> impl Iterator<Item = &CatalogScheduled> {
        self.scheduled.values()
    }

    /// Every scheduled tag.
    pub fn scheduled_tags(&self) -> Vec<String> {
        self.scheduled.keys().cloned().collect()
    }

    /// The scheduled tasks in the form the store keeps their state.
    pub fn scheduled_specs(&self) -> Vec<ScheduledSpec> {
        self.scheduled
            .values()
            .map(|s| ScheduledSpec {
                tag: s.def.tag.clone(),
                mask: s.def.runat.clone(),
                zone: s.def.runtz,
            })
            .collect()
    }
}
