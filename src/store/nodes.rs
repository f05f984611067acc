//! The node registry (every `warren serve` process sharing the database, with a
//! heartbeat) and small persistent settings.

use super::conn::on_conn;
use super::schema::warren_nodes::dsl as n;
use super::schema::warren_settings::dsl as s;
use super::{Store, StoreResult};
use crate::task::Millis;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;
use serde_json::Value;

/// A node as registered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeInfo {
    /// Unique node name.
    pub name: String,
    /// When it (last) started.
    pub started_at: Millis,
    /// Its latest heartbeat.
    pub heartbeat_at: Millis,
    /// What the node says of itself (version, pid, clusters …).
    pub info: Value,
    /// Its runners as it last published them with [`Store::set_node_runners`] (a JSON
    /// array; empty until it does).
    pub runners: Value,
}

impl Store {
    /// Registers (or re-registers) a node as started now, with no runners published yet.
    pub async fn register_node(&self, name: &str, info: &Value) -> StoreResult<()> {
        let now = self.now();
        let info = info.to_string();
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        on_conn!(&mut conn, c => {
            diesel::insert_into(n::warren_nodes)
                .values((
                    n::name.eq(name),
                    n::started_at.eq(now),
                    n::heartbeat_at.eq(now),
                    n::info.eq(&info),
                ))
                .on_conflict(n::name)
                .do_update()
                .set((
                    n::started_at.eq(now),
                    n::heartbeat_at.eq(now),
                    n::info.eq(&info),
                    n::runners.eq("[]"),
                ))
                .execute(c)
                .await?
        });
        Ok(())
    }

    /// Records a heartbeat. Returns false when the node is not registered (it was
    /// pruned as dead), so the caller can register again.
    pub async fn heartbeat(&self, name: &str) -> StoreResult<bool> {
        let now = self.now();
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        let updated = on_conn!(&mut conn, c => {
            diesel::update(n::warren_nodes.find(name))
                .set(n::heartbeat_at.eq(now))
                .execute(c)
                .await?
        });
        Ok(updated == 1)
    }

    /// Publishes what a node's runners are doing (a JSON array, which the node shapes),
    /// for the other nodes' dashboards. Returns false when the node is not registered.
    pub async fn set_node_runners(&self, name: &str, runners: &Value) -> StoreResult<bool> {
        let runners = runners.to_string();
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        let updated = on_conn!(&mut conn, c => {
            diesel::update(n::warren_nodes.find(name))
                .set(n::runners.eq(&runners))
                .execute(c)
                .await?
        });
        Ok(updated == 1)
    }

    /// Every registered node, by name.
    pub async fn list_nodes(&self) -> StoreResult<Vec<NodeInfo>> {
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        let rows: Vec<(String, i64, i64, String, String)> = on_conn!(&mut conn, c => {
            n::warren_nodes
                .select((n::name, n::started_at, n::heartbeat_at, n::info, n::runners))
                .order(n::name)
                .load(c)
                .await?
        });
        Ok(rows
            .into_iter()
            .map(|(name, started_at, heartbeat_at, info, runners)| NodeInfo {
                name,
                started_at,
                heartbeat_at,
                info: node_info_value(info),
                runners: serde_json::from_str(&runners).unwrap_or(Value::Array(Vec::new())),
            })
            .collect())
    }

    /// Removes a node (on clean shutdown).
    pub async fn remove_node(&self, name: &str) -> StoreResult<()> {
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        on_conn!(&mut conn, c => {
            diesel::delete(n::warren_nodes.find(name)).execute(c).await?
        });
        Ok(())
    }

    /// Removes nodes whose last heartbeat is older than `silence_ms`; returns their names.
    pub async fn prune_nodes(&self, silence_ms: i64) -> StoreResult<Vec<String>> {
        let cutoff = self.now() - silence_ms;
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        Ok(on_conn!(&mut conn, c => {
            diesel::delete(n::warren_nodes.filter(n::heartbeat_at.lt(cutoff)))
                .returning(n::name)
                .get_results(c)
                .await?
        }))
    }

    /// Reads a setting, storing `init` first if it is not set yet (the first writer
    /// wins, so every node sees the same value).
    pub async fn setting_or_init(&self, key: &str, init: &str) -> StoreResult<String> {
        let mut pooled = self.conn().await?;
        let mut conn = pooled.any();
        Ok(on_conn!(&mut conn, c => {
            diesel::insert_into(s::warren_settings)
                .values((s::key.eq(key), s::value.eq(init)))
                .on_conflict(s::key)
                .do_nothing()
                .execute(c)
                .await?;
            s::warren_settings.select(s::value).find(key).first(c).await?
        }))
    }
}

/// A node's stored info as JSON (kept as a string when it is not JSON).
pub(super) fn node_info_value(info: String) -> Value {
    serde_json::from_str(&info).unwrap_or(Value::String(info))
}
