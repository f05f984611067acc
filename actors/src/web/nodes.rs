//! `/api/nodes` and `/api/overview`: the nodes sharing the database with their runners,
//! and the summary the overview page shows.

use super::error::ApiError;
use super::queue::totals_json;
use super::WebState;
use crate::messages::{QueueStatus, RunnerStatus};
use actix_web::{web, HttpResponse};
use serde_json::{json, Value};
use warren::store::{BackendKind, NodeInfo};

/// Every registered node, and the runners of all of them: this node's as its queue
/// sees them now, the others' as they last published them with their heartbeat.
async fn nodes_and_runners(
    state: &WebState,
) -> Result<(Vec<NodeInfo>, Vec<(String, RunnerStatus)>), ApiError> {
    let nodes = state.store.list_nodes().await?;
    let now = state.store.now();
    let mut runners: Vec<(String, RunnerStatus)> = Vec::new();
    for node in nodes.iter().filter(|n| n.name != state.node) {
        for r in RunnerStatus::read_published(&node.runners, now) {
            runners.push((node.name.clone(), r));
        }
    }
    let own = state.supervisor.send(QueueStatus).await?;
    runners.extend(own.runners.into_iter().map(|r| (state.node.clone(), r)));
    runners.sort_by(|(na, a), (nb, b)| (na, &a.cluster, a.index).cmp(&(nb, &b.cluster, b.index)));
    Ok((nodes, runners))
}

/// `GET /api/nodes`.
pub async fn nodes(state: web::Data<WebState>) -> Result<HttpResponse, ApiError> {
    let (nodes, runners) = nodes_and_runners(&state).await?;
    let nodes: Vec<Value> = nodes
        .into_iter()
        .map(|n| {
            json!({
                "name": n.name,
                "started_at": n.started_at,
                "heartbeat_at": n.heartbeat_at,
                "info": n.info,
            })
        })
        .collect();
    let runners: Vec<Value> = runners
        .into_iter()
        .map(|(node, r)| {
            json!({
                "node": node,
                "cluster": r.cluster,
                "index": r.index,
                "task_id": r.task_id,
                "task_type": r.task_type,
                "running_ms": r.running_ms,
                "transaction_ms": r.transaction_ms,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "node": state.node, "nodes": nodes, "runners": runners })))
}

/// A task transaction open longer than this (ms) is reported as long: it holds its
/// locks and, on PostgreSQL, keeps vacuum from cleaning up behind every writer.
pub const LONG_TRANSACTION_MS: u64 = 60_000;

/// `GET /api/overview`.
pub async fn overview(state: web::Data<WebState>) -> Result<HttpResponse, ApiError> {
    let counts = state.store.queue_counts().await?;
    let scheduled = state.store.list_scheduled().await?.len();
    let (nodes, runners) = nodes_and_runners(&state).await?;
    let busy = runners
        .iter()
        .filter(|(_, r)| r.task_type.is_some())
        .count();
    let long_transactions = runners
        .iter()
        .filter(|(_, r)| r.transaction_ms.is_some_and(|ms| ms > LONG_TRANSACTION_MS))
        .count();
    let backend = match state.store.backend() {
        BackendKind::Sqlite => "sqlite",
        BackendKind::Postgres => "postgres",
    };
    Ok(HttpResponse::Ok().json(json!({
        "node": state.node,
        "version": env!("CARGO_PKG_VERSION"),
        "backend": backend,
        "totals": totals_json(&counts),
        "nodes": nodes.len(),
        "runners": runners.len(),
        "busy_runners": busy,
        "long_transactions": long_transactions,
        "scheduled": scheduled,
    })))
}
