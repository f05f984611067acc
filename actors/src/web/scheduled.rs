//! `/api/scheduled…`: the scheduled (`<task>`) tags, run one now, enable or disable one.
//! "Run now" goes through the Supervisor, which wakes this node's scheduler.

use super::error::ApiError;
use super::input;
use super::WebState;
use crate::messages::RunScheduledNow;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

/// `GET /api/scheduled`: every tag's state, by tag.
pub async fn list(state: web::Data<WebState>) -> Result<HttpResponse, ApiError> {
    let scheduled: Vec<Value> = state
        .store
        .list_scheduled()
        .await?
        .into_iter()
        .map(|s| {
            json!({
                "tag": s.tag,
                "mask": s.mask,
                "zone": s.zone,
                "enabled": s.enabled,
                "next_run": s.next_run,
                "run_requested": s.run_requested,
                "running": s.running,
                "run_owner": s.run_owner,
                "last_start": s.last_start,
                "last_finish": s.last_finish,
                "last_outcome": s.last_outcome,
                "last_output": s.last_output,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "scheduled": scheduled })))
}

/// The body of the scheduled actions: `{}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// `POST /api/scheduled/{tag}/run`: runs the tag once, now, on some node.
pub async fn run(
    state: web::Data<WebState>,
    tag: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let Empty {} = input::body(body.into_inner())?;
    let tag = tag.into_inner();
    state
        .supervisor
        .send(RunScheduledNow(tag.clone()))
        .await??;
    Ok(HttpResponse::Ok().json(json!({ "tag": tag })))
}

/// `POST /api/scheduled/{tag}/enable`.
pub async fn enable(
    state: web::Data<WebState>,
    tag: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    set_enabled(state, tag.into_inner(), body.into_inner(), true).await
}

/// `POST /api/scheduled/{tag}/disable`: the tag then runs only when run by hand.
pub async fn disable(
    state: web::Data<WebState>,
    tag: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    set_enabled(state, tag.into_inner(), body.into_inner(), false).await
}

async fn set_enabled(
    state: web::Data<WebState>,
    tag: String,
    body: Value,
    enabled: bool,
) -> Result<HttpResponse, ApiError> {
    let Empty {} = input::body(body)?;
    state
        .store
        .set_scheduled_enabled(&tag, enabled, state.maintenance_offset)
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "tag": tag, "enabled": enabled })))
}
