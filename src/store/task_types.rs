//! Which cluster each task type runs in, and its flow rules (concurrency and rate
//! limits). The module definitions say it; nodes register it here, so that a task
//! scheduled without a cluster — from the command line, the API, or a process that has
//! not loaded the module — still lands in its type's cluster instead of the default
//! one, and is keyed for its rules (`flow.rs`). A store reads the registrations when it
//! opens (and keeps those it makes itself): a type registered by another process later
//! is seen by stores opened after that.

use super::conn::on_conn;
use super::schema::warren_task_types::dsl as tt;
use super::{Store, StoreError, StoreResult};
use crate::flow::ConcurrencyLimit;
use crate::rate_limit::{RateLimit, RatePeriod};
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
    /// Its rate limit, if it has one (keyed by the same field as the concurrency rule
    /// when it has both).
    pub rate_limit: Option<RateLimit>,
}

impl TypeRegistration {
    /// A type in `cluster` with no flow rule.
    pub fn new(task_type: impl Into<String>, cluster: impl Into<String>) -> TypeRegistration {
        TypeRegistration {
            task_type: task_type.into(),
            cluster: cluster.into(),
            concurrency: None,
            rate_limit: None,
        }
    }

    /// The data field its rules key tasks by.
    fn key_field(&self) -> Option<&String> {
        let concurrency = self.concurrency.as_ref().and_then(|c| c.key.as_ref());
        concurrency.or(self.rate_limit.as_ref().and_then(|r| r.key.as_ref()))
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
    pub rate_limit: Option<RateLimit>,
}

impl RegisteredType {
    /// Whether its tasks are keyed: it has a flow rule.
    pub fn has_rule(&self) -> bool {
        self.concurrency.is_some() || self.rate_limit.is_some()
    }
}

/// A row of the registry as stored (read with `RegistryRow::as_select()`).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = super::schema::warren_task_types)]
pub(super) struct RegistryRow {
    pub task_type: String,
    pub cluster: String,
    concurrency: Option<i32>,
    /// The key field of both rules (the column `concurrency_key`, named before rate
    /// limits came).
    #[diesel(column_name = concurrency_key)]
    key_field: Option<String>,
    rate_count: Option<i32>,
    rate_period_ms: Option<i64>,
    rate_burst: Option<i32>,
}

impl RegistryRow {
    /// The concurrency rule it holds.
    pub fn concurrency(&self) -> Option<ConcurrencyLimit> {
        self.concurrency.map(|limit| ConcurrencyLimit {
            limit: limit.max(1) as u32,
            key: self.key_field.clone(),
        })
    }

    /// The rate limit it holds (none when the period is not one a rule can name).
    pub fn rate_limit(&self) -> Option<RateLimit> {
        let (count, period, burst) = (self.rate_count?, self.rate_period_ms?, self.rate_burst?);
        Some(RateLimit {
            count: count.max(1) as u32,
            period: RatePeriod::from_ms(period)?,
            burst: burst.max(1) as u32,
            key: self.key_field.clone(),
        })
    }

    /// Whether its tasks are keyed: it has a flow rule.
    fn has_rule(&self) -> bool {
        self.concurrency.is_some() || self.rate_count.is_some()
    }

    /// The type as the store keeps it.
    pub fn registered(&self) -> RegisteredType {
        RegisteredType {
            cluster: self.cluster.clone(),
            concurrency: self.concurrency(),
            rate_limit: self.rate_limit(),
        }
    }
}

/// Refuses a registration whose rules the claim could not hold: a limit out of range,
/// a key field that is not a plain top-level name, or two rules keyed by different
/// fields.
fn check_registration(reg: &TypeRegistration) -> StoreResult<()> {
    let invalid = |field: &'static str, message: String| StoreError::Invalid {
        field,
        message: format!("task type {}: {message}", reg.task_type),
    };
    let check_key = |field: &'static str, key: &Option<String>| match key {
        Some(key) => crate::flow::check_key_field(key)
            .map_err(|e| invalid(field, format!("key field '{key}': {e}"))),
        None => Ok(()),
    };
    // `what` of `value` must lie in 1 to `max`.
    let check_range = |field: &'static str, what: &str, value: u32, max: u32| {
        if value == 0 || value > max {
            return Err(invalid(
                field,
                format!("{what} of {value} is outside 1 to {max}"),
            ));
        }
        Ok(())
    };
    if let Some(rule) = &reg.concurrency {
        let max = crate::flow::MAX_CONCURRENCY;
        check_range("concurrency", "a limit of running tasks", rule.limit, max)?;
        check_key("concurrency", &rule.key)?;
    }
    if let Some(rate) = &reg.rate_limit {
        let max = crate::rate_limit::MAX_RATE_COUNT;
        check_range("rate_limit", "a rate of starts per period", rate.count, max)?;
        let max = crate::rate_limit::MAX_BURST;
        check_range("rate_limit", "a burst", rate.burst, max)?;
        check_key("rate_limit", &rate.key)?;
        if let Some(rule) = &reg.concurrency {
            if rule.key != rate.key {
                return Err(invalid(
                    "rate_limit",
                    format!(
                        "the rate limit is keyed by {:?} and the concurrency limit by {:?}: \
                         a type with both keys them by one field",
                        rate.key, rule.key
                    ),
                ));
            }
        }
    }
    Ok(())
}

impl Store {
    /// Records the cluster and flow rules of each type; a type registered before gets
    /// the new ones (the latest module definition wins). When what keys a type's tasks
    /// changes (whether it has a rule, its key field, its cluster), its pending
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
                let key = reg.key_field();
                let rate = reg.rate_limit.as_ref();
                let rate_count = rate.map(|r| r.count as i32);
                let rate_period_ms = rate.map(|r| r.period.ms());
                let rate_burst = rate.map(|r| r.burst as i32);
                let before: Option<RegistryRow> = on_conn!(conn, c => {
                    tt::warren_task_types
                        .select(RegistryRow::as_select())
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
                            tt::concurrency_key.eq(key),
                            tt::rate_count.eq(rate_count),
                            tt::rate_period_ms.eq(rate_period_ms),
                            tt::rate_burst.eq(rate_burst),
                        ))
                        .on_conflict(tt::task_type)
                        .do_update()
                        .set((
                            tt::cluster.eq(&reg.cluster),
                            tt::concurrency.eq(limit),
                            tt::concurrency_key.eq(key),
                            tt::rate_count.eq(rate_count),
                            tt::rate_period_ms.eq(rate_period_ms),
                            tt::rate_burst.eq(rate_burst),
                        ))
                        .execute(c)
                        .await?
                });
                // What keys the tasks: whether there is a rule, its field, the cluster
                // (only tasks in the type's own cluster are keyed). The limits alone
                // change no key.
                let has_rule = reg.concurrency.is_some() || rate.is_some();
                let keying = (has_rule, key, &reg.cluster);
                // A type without a rule before and after has no keyed tasks to change.
                let changed = match &before {
                    Some(old) => {
                        (old.has_rule() || has_rule)
                            && keying != (old.has_rule(), old.key_field.as_ref(), &old.cluster)
                    }
                    None => has_rule,
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
                    rate_limit: reg.rate_limit.clone(),
                },
            );
        }
        Ok(())
    }

    /// Reads every registered type into the store's copy.
    pub(super) async fn load_task_types(&self) -> StoreResult<()> {
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        let rows: Vec<RegistryRow> = on_conn!(&mut conn, c => {
            tt::warren_task_types
                .select(RegistryRow::as_select())
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
            .map(|row| (row.task_type.clone(), row.registered()))
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

    /// Whether a type with a flow rule is registered in one of `clusters`, as
    /// this store knows it: then the claim takes keyed tasks too (`flow.rs`). The copy
    /// is read again when it is older than [`REGISTRY_REFRESH_MS`], so a rule another
    /// node registered reaches this store's claims within that time.
    pub(super) async fn rules_in(&self, clusters: &[String]) -> StoreResult<bool> {
        self.refresh_registry().await?;
        Ok(self
            .registered_types()
            .values()
            .any(|t| t.has_rule() && clusters.contains(&t.cluster)))
    }

    /// The rate limits of the types registered in `clusters`, by type, as this store
    /// knows them (read again like [`Store::rules_in`]'s).
    pub(super) async fn rate_limits_in(
        &self,
        clusters: &[String],
    ) -> StoreResult<HashMap<String, RateLimit>> {
        self.refresh_registry().await?;
        Ok(self
            .registered_types()
            .iter()
            .filter(|(_, t)| clusters.contains(&t.cluster))
            .filter_map(|(name, t)| Some((name.clone(), t.rate_limit.clone()?)))
            .collect())
    }

    /// Reads the registry again when the store's copy is older than
    /// [`REGISTRY_REFRESH_MS`].
    pub(super) async fn refresh_registry(&self) -> StoreResult<()> {
        let read_at = std::sync::atomic::AtomicI64::load(
            &self.inner.task_types_read_at,
            std::sync::atomic::Ordering::Relaxed,
        );
        if self.now().saturating_sub(read_at) >= REGISTRY_REFRESH_MS {
            self.load_task_types().await?;
        }
        Ok(())
    }
}
