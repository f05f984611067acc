//! `/api/counts` and `/api/throughput`: how many tasks are in each state, and how many
//! finished per minute over the last hour.

use super::error::ApiError;
use super::WebState;
use actix_web::{web, HttpResponse};
use serde_json::json;
use warren::store::QueueCounts;

/// Width of a throughput point.
const BUCKET_MS: i64 = 60_000;
/// Points in the throughput answer: one hour of minutes.
const POINTS: i64 = 60;

/// The sums of `counts` over every task type (`task_type` left empty).
pub fn totals(counts: &[QueueCounts]) -> QueueCounts {
    counts.iter().fold(QueueCounts::default(), |mut t, c| {
        t.pending += c.pending;
        t.future += c.future;
        t.running += c.running;
        t.completed += c.completed;
        t.failed += c.failed;
        t.cancelled += c.cancelled;
        t
    })
}

/// Counts as the API shows totals: the numbers only.
pub fn totals_json(counts: &[QueueCounts]) -> serde_json::Value {
    let t = totals(counts);
    json!({
        "pending": t.pending,
        "future": t.future,
        "running": t.running,
        "completed": t.completed,
        "failed": t.failed,
        "cancelled": t.cancelled,
    })
}

/// `GET /api/counts`: tasks per type and state, and the totals.
pub async fn counts(state: web::Data<WebState>) -> Result<HttpResponse, ApiError> {
    let counts = state.store.queue_counts().await?;
    Ok(HttpResponse::Ok().json(json!({ "types": counts, "totals": totals_json(&counts) })))
}

/// `GET /api/throughput`: finished tasks per minute by outcome, the last 60 minutes
/// (the current one last), oldest first.
pub async fn throughput(state: web::Data<WebState>) -> Result<HttpResponse, ApiError> {
    let now = state.store.now();
    let until = (now.div_euclid(BUCKET_MS) + 1) * BUCKET_MS;
    let since = until - POINTS * BUCKET_MS;
    let points = state.store.throughput(since, until, BUCKET_MS).await?;
    Ok(HttpResponse::Ok().json(json!({ "bucket_ms": BUCKET_MS, "points": points })))
}
