//! Which cluster each task type runs in. The module definitions say it; nodes register
//! it here, so that a task scheduled without a cluster — from the command line, the
//! API, or a process that has not loaded the module — still lands in its type's
//! cluster instead of the default one.

use super::conn::on_conn;
use super::schema::warren_task_types::dsl as tt;
use super::{AnyConn, Store, StoreResult};
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

/// The registered cluster of each of `types` that has one.
pub(super) async fn registered_clusters(
    conn: &mut AnyConn<'_>,
    types: &[String],
) -> StoreResult<HashMap<String, String>> {
    if types.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(String, String)> = on_conn!(conn, c => {
        tt::warren_task_types
            .filter(tt::task_type.eq_any(types))
            .select((tt::task_type, tt::cluster))
            .load(c)
            .await?
    });
    Ok(rows.into_iter().collect())
}
