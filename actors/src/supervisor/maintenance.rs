//! The node's maintenance, all of it in one place: the heartbeat that keeps the node
//! registered (publishing its runners for the other nodes' dashboards, forgetting
//! nodes gone silent), pruning finished tasks past their retention, and recovering
//! tasks whose lease expired (a node died, or a queue crashed).

use super::lifecycle::Children;
use super::Supervisor;
use crate::messages::{QueueStatus, RunnerStatus};
use crate::queue::Wake;
use actix::prelude::*;
use std::sync::Arc;
use std::time::Duration;
use warren::catalog::Catalog;
use warren::store::Store;

/// How often the node beats (and publishes its runners).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// Nodes silent for this long (ms) are gone.
const SILENT_NODE_MS: i64 = 60_000;
/// How often finished tasks past their retention are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// Finished tasks deleted per transaction while pruning: small enough that each
/// transaction is short, large enough that a big backlog goes in few of them.
const PRUNE_BATCH: i64 = 1_000;

/// What maintenance works with.
pub(super) struct Maintenance {
    store: Store,
    catalog: Arc<Catalog>,
    node: String,
    /// The node's registration (pid, version, clusters, modules).
    info: serde_json::Value,
    /// How long finished tasks are kept (ms).
    retention_ms: i64,
    /// How often expired leases are looked for: half a lease, within 0.5–10 s.
    recover_every: Duration,
}

impl Maintenance {
    /// The maintenance of the node `children` serve, registered with `info`.
    pub(super) fn new(children: &Children, info: serde_json::Value, retention_ms: i64) -> Self {
        Maintenance {
            store: children.store.clone(),
            catalog: children.catalog.clone(),
            node: children.node.clone(),
            info,
            retention_ms,
            recover_every: Duration::from_millis((children.lease_ms / 2).clamp(500, 10_000) as u64),
        }
    }
}

impl Supervisor {
    /// Arms the maintenance timers, and recovers expired leases right away.
    pub(super) fn start_maintenance(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(HEARTBEAT_EVERY, |act, ctx| act.heartbeat(ctx));
        ctx.run_interval(PRUNE_EVERY, |act, ctx| act.prune_finished(ctx));
        ctx.run_interval(self.maintenance.recover_every, |act, ctx| {
            act.recover_leases(ctx)
        });
        self.recover_leases(ctx);
    }

    /// Keeps the node registered (registering it again if it was pruned), publishes
    /// its runners, and prunes nodes gone silent.
    fn heartbeat(&mut self, ctx: &mut Context<Self>) {
        let m = &self.maintenance;
        let (store, node, info) = (m.store.clone(), m.node.clone(), m.info.clone());
        let queue = self.queue.clone();
        ctx.spawn(
            async move {
                match store.heartbeat(&node).await {
                    Ok(true) => {}
                    Ok(false) => {
                        let _ = store.register_node(&node, &info).await;
                    }
                    Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                }
                // The runners, for the dashboards of the other nodes.
                if let Ok(state) = queue.send(QueueStatus).await {
                    let runners = RunnerStatus::publish(&state.runners, store.now());
                    let _ = store.set_node_runners(&node, &runners).await;
                }
                let _ = store.prune_nodes(SILENT_NODE_MS).await;
            }
            .into_actor(self),
        );
    }

    /// Deletes finished tasks older than the retention period, and the rate-limit
    /// buckets that are full again.
    fn prune_finished(&mut self, ctx: &mut Context<Self>) {
        let (store, retention) = (
            self.maintenance.store.clone(),
            self.maintenance.retention_ms,
        );
        ctx.spawn(
            async move {
                // One cutoff for the round: tasks that finish meanwhile wait for the
                // next one, so the round ends however fast tasks finish.
                let cutoff = store.now() - retention;
                let mut pruned = 0;
                loop {
                    match store.prune_finished(cutoff, PRUNE_BATCH).await {
                        Ok(n) => {
                            pruned += n;
                            if (n as i64) < PRUNE_BATCH {
                                break;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, pruned, "pruning failed");
                            break;
                        }
                    }
                }
                if pruned > 0 {
                    tracing::info!(pruned, "pruned finished tasks");
                }
                // Rate-limit buckets that are full again read the same as none.
                if let Err(e) = store.prune_rate_buckets().await {
                    tracing::warn!(error = %e, "pruning rate-limit buckets failed");
                }
            }
            .into_actor(self),
        );
    }

    /// Puts tasks whose lease expired back in the queue (the retry rule decides how),
    /// and wakes the queue when there were any.
    pub(super) fn recover_leases(&mut self, ctx: &mut Context<Self>) {
        let (store, catalog) = (
            self.maintenance.store.clone(),
            self.maintenance.catalog.clone(),
        );
        let work = async move {
            store
                .recover_expired_leases(&|t| catalog.retry_policy(t))
                .await
        };
        ctx.spawn(work.into_actor(self).map(|result, act, _| match result {
            Ok(ids) if !ids.is_empty() => {
                tracing::info!(tasks = ?ids, "recovered tasks whose lease expired");
                act.queue.do_send(Wake(None));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "lease recovery failed"),
        }));
    }
}
