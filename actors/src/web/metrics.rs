//! `/metrics`: the node's metrics in Prometheus' text format, with the queue depth, the
//! runners and the database connections read at scrape time.

use super::error::ApiError;
use super::queue::totals;
use super::WebState;
use crate::messages::QueueStatus;
use crate::metrics::Gauges;
use actix_web::{web, HttpResponse};
use std::collections::BTreeMap;

/// The content type of Prometheus' text format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `GET /metrics`.
pub async fn metrics(state: web::Data<WebState>) -> Result<HttpResponse, ApiError> {
    let t = totals(&state.store.queue_counts().await?);
    let queue_depth = vec![
        ("pending", t.pending),
        ("future", t.future),
        ("running", t.running),
        ("completed", t.completed),
        ("failed", t.failed),
        ("cancelled", t.cancelled),
    ];
    let mut clusters: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let queue = state.supervisor.send(QueueStatus).await?;
    for r in queue.runners {
        let entry = clusters.entry(r.cluster).or_default();
        entry.0 += 1;
        if r.task_type.is_some() {
            entry.1 += 1;
        }
    }
    let gauges = Gauges {
        queue_depth,
        runners: clusters
            .into_iter()
            .map(|(cluster, (total, busy))| (cluster, total, busy))
            .collect(),
        connections: queue.connections,
    };
    Ok(HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(state.metrics.render(&gauges)))
}
