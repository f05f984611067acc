//! Which cluster each task type runs in, and its concurrency rule. The module
//! definitions say it; nodes register it here, so that a task scheduled without a
//! cluster — from the command line, the API, or a process that has not loaded the
//! module — still lands in its type's cluster instead of the default one, and is keyed
//! for its rule (`flow.rs`). A store reads the registrations when it opens (and keeps
//! those it makes itself): a type registered by another process later is seen by stores
//! opened after that.

use super::conn::on_conn;
use super::schema::warren_task_types::dsl as tt;
use super::{Store, StoreError, StoreResult};
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

/// How long a registration on PostgreSQL waits for its table locks.
const REGISTRATION_LOCK_TIMEOUT: &str = "10s";

/// How old (ms) the store's copy of the registry may be when a claim consults it.
pub const REGISTRY_REFRESH_MS: i64 = 5_000;

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

/// Refuses a registration whose rule the claim could not hold: a limit out of range,
/// or a key field that is not a plain top-level name.
fn check_registration(reg: &TypeRegistration) -> StoreResult<()> {
    let Some(rule) = &reg.concurrency else {
        return Ok(());
    };
    let invalid = |message: String| StoreError::Invalid {
        field: "concurrency",
        message: format!("task type {}: {message}", reg.task_type),
    };
    if rule.limit == 0 || rule.limit > crate::flow::MAX_CONCURRENCY {
        return Err(invalid(format!(
            "a limit of {} running tasks is outside 1 to {}",
            rule.limit,
            crate::flow::MAX_CONCURRENCY
        )));
    }
    if let Some(key) = &rule.key {
        crate::flow::check_key_field(key)
            .map_err(|e| invalid(format!("key field '{key}': {e}")))?;
    }
    Ok(())
}

impl Store {
    /// Records the cluster and concurrency rule of each type; a type registered before
    /// gets the new ones (the latest module definition wins). When what keys a type's
    /// tasks changes (whether it has a rule, its key field, its cluster), its pending
    /// and running tasks are keyed again (`flow.rs`), in the same transaction.
    ///
    /// Registrations are serialised (on PostgreSQL by a lock on the registry, on
    /// SQLite by the write lock), and a re-keying first waits for every write of tasks
    /// in progress and holds new ones until it commits: a task scheduled meanwhile is
    /// keyed by either the old rule and then re-keyed, or by the new one.
    pub async fn register_task_types(&self, types: &[TypeRegistration]) -> StoreResult<()> {
        for reg in types {
            check_registration(reg)?;
        }
        // In name order, so that nodes registering at once lock the rows alike.
        let mut sorted: Vec<&TypeRegistration> = types.iter().collect();
        sorted.sort_by(|a, b| a.task_type.cmp(&b.task_type));
        self.in_transaction(async |conn, _| {
            let postgres = matches!(conn, super::AnyConn::Postgres(_));
            if postgres {
                // Waiting for a table lock longer than this fails the registration
                // (and the node's start) with the database's error, rather than
                // stalling every write queued behind the wait.
                super::flow::lock_timeout(conn, REGISTRATION_LOCK_TIMEOUT).await?;
                super::flow::lock_table(conn, "warren_task_types").await?;
            }
            let mut tasks_locked = false;
            for reg in &sorted {
                let limit = reg.concurrency.as_ref().map(|c| c.limit as i32);
                let key = reg.concurrency.as_ref().and_then(|c| c.key.clone());
                let before: Option<(String, Option<i32>, Option<String>)> = on_conn!(conn, c => {
                    tt::warren_task_types
                        .select((tt::cluster, tt::concurrency, tt::concurrency_key))
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
                // What keys the tasks: whether there is a rule, its field, the cluster
                // (only tasks in the type's own cluster are keyed). The limit alone
                // changes no key.
                let keying = (limit.is_some(), key.as_deref(), reg.cluster.as_str());
                // A type without a rule before and after has no keyed tasks to change.
                let changed = match &before {
                    Some((cluster, old, key)) => {
                        (old.is_some() || limit.is_some())
                            && keying != (old.is_some(), key.as_deref(), cluster.as_str())
                    }
                    None => limit.is_some(),
                };
                if changed {
                    if postgres && !tasks_locked {
                        super::flow::lock_table(conn, "warren_tasks").await?;
                        tasks_locked = true;
                    }
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
        self.inner
            .task_types_read_at
            .store(self.now(), std::sync::atomic::Ordering::Relaxed);
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

    /// Whether a type with a concurrency rule is registered in one of `clusters`, as
    /// this store knows it: then the claim takes keyed tasks too (`flow.rs`). The copy
    /// is read again when it is older than [`REGISTRY_REFRESH_MS`], so a rule another
    /// node registered reaches this store's claims within that time.
    pub(super) async fn rules_in(&self, clusters: &[String]) -> StoreResult<bool> {
        let now = self.now();
        let read_at = std::sync::atomic::AtomicI64::load(
            &self.inner.task_types_read_at,
            std::sync::atomic::Ordering::Relaxed,
        );
        if now.saturating_sub(read_at) >= REGISTRY_REFRESH_MS {
            self.load_task_types().await?;
        }
        Ok(self
            .registered_types()
            .values()
            .any(|t| t.concurrency.is_some() && clusters.contains(&t.cluster)))
    }
}
