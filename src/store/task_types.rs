//! Which cluster each task type runs in. The module definitions say it; nodes register
//! it here, so that a task scheduled without a cluster — from the command line, the
//! API, or a process that has not loaded the module — still lands in its type's
//! cluster instead of the default one. A store reads the registrations when it opens
//! (and keeps those it makes itself): a type registered by another process later is
//! seen by stores opened after that.

use super::conn::on_conn;
use super::schema::warren_task_types::dsl as tt;
use super::{Store, StoreResult};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use std::collections::HashMap;

impl Store {
    /// Records the cluster of each `(task type, cluster)`; a type registered before gets
    /// the new cluster (the latest module definition wins).
    pub async fn register_task_types(&self, types: &[(String, String)]) -> StoreResult<()> {
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        for (task_type, cluster) in types {
            self.inner
                .task_clusters
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(task_type.clone(), cluster.clone());
            on_conn!(&mut conn, c => {
                diesel::insert_into(tt::warren_task_types)
                    .values((tt::task_type.eq(task_type), tt::cluster.eq(cluster)))
                    .on_conflict(tt::task_type)
                    .do_update()
                    .set(tt::cluster.eq(cluster))
                    .execute(c)
                    .await?
            });
        }
        Ok(())
    }
}

impl Store {
    /// Reads every registered type's cluster into the store's copy.
    pub(super) async fn load_task_clusters(&self) -> StoreResult<()> {
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        let rows: Vec<(String, String)> = on_conn!(&mut conn, c => {
            tt::warren_task_types
                .select((tt::task_type, tt::cluster))
                .load(c)
                .await?
        });
        *self
            .inner
            .task_clusters
            .write()
            .unwrap_or_else(|p| p.into_inner()) = rows.into_iter().collect::<HashMap<_, _>>();
        Ok(())
    }

    /// The registered clusters of task types, as this store knows them.
    pub(super) fn task_clusters(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, String>> {
        self.inner
            .task_clusters
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }
}
