//! Which cluster each task type runs in, and its concurrency rule. The module
//! definitions say it; nodes register it here, so that a task scheduled without a
//! cluster — from the command line, the API, or a process that has not loaded the
//! module — still lands in its type's cluster instead of the default one, and is keyed
//! for its rule (`flow.rs`). A store reads the registrations when it opens (and keeps
//! those it makes itself): a type registered by another process later is seen by stores
//! opened after that.

use super::conn::on_conn;
use super::schema::warren_task_types::dsl as tt;
use super::{Store, StoreResult};
use crate::flow::ConcurrencyLimit;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use std::collections::HashMap;

/// What a node registers of a task type it loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeRegistration {
    /// The task type's full name.
    pub task_type: String,
    /// The cluster its module definition gives it.
    pub cluster: String,
    /// Its concurrency rule, if it has one.
    pub concurrency: Option<ConcurrencyLimit>,
}

impl TypeRegistration {
    /// A type in `cluster` with no concurrency rule.
    pub fn new(task_type: impl Into<String>, cluster: impl Into<String>) -> TypeRegistration {
        TypeRegistration {
            task_type: task_type.into(),
            cluster: cluster.into(),
            concurrency: None,
        }
    }
}

/// A registered type as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RegisteredType {
    pub cluster: String,
    pub concurrency: Option<ConcurrencyLimit>,
}

/// A registration row: type, cluster, limit, key field.
type Row = (String, String, Option<i32>, Option<String>);

pub(super) fn rule_of(limit: Option<i32>, key: Option<String>) -> Option<ConcurrencyLimit> {
    limit.map(|limit| ConcurrencyLimit {
        limit: limit.max(1) as u32,
        key,
    })
}

impl Store {
    /// Records the cluster and concurrency rule of each type; a type registered before
    /// gets the new ones (the latest module definition wins). When a type's rule
    /// changes, its pending and running tasks are keyed again (`flow.rs`), in the same
    /// transaction.
    pub async fn register_task_types(&self, types: &[TypeRegistration]) -> StoreResult<()> {
        // In name order, so that nodes registering at once lock the rows alike.
        let mut sorted: Vec<&TypeRegistration> = types.iter().collect();
        sorted.sort_by(|a, b| a.task_type.cmp(&b.task_type));
        self.in_transaction(async |conn, _| {
            for reg in &sorted {
                let limit = reg.concurrency.as_ref().map(|c| c.limit as i32);
                let key = reg.concurrency.as_ref().and_then(|c| c.key.clone());
                let before: Option<(Option<i32>, Option<String>)> = on_conn!(conn, c => {
                    tt::warren_task_types
                        .select((tt::concurrency, tt::concurrency_key))
                        .find(&reg.task_type)
                        .first(c)
                        .await
                        .optional()?
                });
                on_conn!(conn, c => {
                    diesel::insert_into(tt::warren_task_types)
                        .values((
                            tt::task_type.eq(&reg.task_type),
                            tt::cluster.eq(&reg.cluster),
                            tt::concurrency.eq(limit),
                            tt::concurrency_key.eq(&key),
                        ))
                        .on_conflict(tt::task_type)
                        .do_update()
                        .set((
                            tt::cluster.eq(&reg.cluster),
                            tt::concurrency.eq(limit),
                            tt::concurrency_key.eq(&key),
                        ))
                        .execute(c)
                        .await?
                });
                let changed = match before {
                    Some(before) => before != (limit, key.clone()),
                    None => limit.is_some(),
                };
                if changed {
                    super::flow::rekey_type(conn, &reg.task_type).await?;
                }
            }
            Ok(())
        })
        .await?;
        let mut known = self
            .inner
            .task_types
            .write()
            .unwrap_or_else(|p| p.into_inner());
        for reg in types {
            known.insert(
                reg.task_type.clone(),
                RegisteredType {
                    cluster: reg.cluster.clone(),
                    concurrency: reg.concurrency.clone(),
                },
            );
        }
        Ok(())
    }

    /// Reads every registered type into the store's copy.
    pub(super) async fn load_task_types(&self) -> StoreResult<()> {
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        let rows: Vec<Row> = on_conn!(&mut conn, c => {
            tt::warren_task_types
                .select((tt::task_type, tt::cluster, tt::concurrency, tt::concurrency_key))
                .load(c)
                .await?
        });
        *self
            .inner
            .task_types
            .write()
            .unwrap_or_else(|p| p.into_inner()) = rows
            .into_iter()
            .map(|(task_type, cluster, limit, key)| {
                let concurrency = rule_of(limit, key);
                (
                    task_type,
                    RegisteredType {
                        cluster,
                        concurrency,
                    },
                )
            })
            .collect::<HashMap<_, _>>();
        Ok(())
    }

    /// The registered types, as this store knows them.
    pub(super) fn registered_types(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, HashMap<String, RegisteredType>> {
        self.inner
            .task_types
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The types with a concurrency rule this store knows, and their limits (same
    /// order, sorted by type): what the claim enforces.
    pub(super) fn flow_limits(&self) -> (Vec<String>, Vec<i32>) {
        let types = self.registered_types();
        let mut rules: Vec<(String, i32)> = types
            .iter()
            .filter_map(|(name, t)| {
                t.concurrency
                    .as_ref()
                    .map(|c| (name.clone(), c.limit as i32))
            })
            .collect();
        rules.sort();
        rules.into_iter().unzip()
    }
}
