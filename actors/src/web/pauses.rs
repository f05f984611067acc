//! `/api/clusters…` and `/api/types…`: the clusters and the paused types, and pausing or
//! resuming a cluster or a task type (see `warren::store::Store::pause`). The store
//! announces the change, so every node (this one too) reads the pauses again at once.

use super::error::ApiError;
use super::input;
use super::WebState;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use warren::store::PauseTarget;

/// `GET /api/clusters`: every known cluster with its pause, types and live nodes; every
/// task type and scheduled tag with its pause; and every pause.
pub async fn list(state: web::Data<WebState>) -> Result<HttpResponse, ApiError> {
    let clusters = state.store.clusters().await?;
    let types = state.store.types().await?;
    let pauses = state.store.pauses().await?;
    Ok(HttpResponse::Ok().json(json!({ "clusters": clusters, "types": types, "pauses": pauses })))
}

/// The body of a pause or resume: `{}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// `POST /api/clusters/{name}/pause`.
pub async fn pause_cluster(
    state: web::Data<WebState>,
    name: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    change(state, PauseTarget::Cluster(name.into_inner()), body, true).await
}

/// `POST /api/clusters/{name}/resume`.
pub async fn resume_cluster(
    state: web::Data<WebState>,
    name: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    change(state, PauseTarget::Cluster(name.into_inner()), body, false).await
}

/// `POST /api/types/{name}/pause`: a task type or a scheduled tag.
pub async fn pause_type(
    state: web::Data<WebState>,
    name: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    change(state, PauseTarget::TaskType(name.into_inner()), body, true).await
}

/// `POST /api/types/{name}/resume`.
pub async fn resume_type(
    state: web::Data<WebState>,
    name: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    change(state, PauseTarget::TaskType(name.into_inner()), body, false).await
}

/// Pauses or resumes `target`; answers with whether that changed anything.
async fn change(
    state: web::Data<WebState>,
    target: PauseTarget,
    body: web::Json<Value>,
    pause: bool,
) -> Result<HttpResponse, ApiError> {
    let Empty {} = input::body(body.into_inner())?;
    let changed = match pause {
        true => state.store.pause(&target).await?,
        false => state.store.resume(&target).await?,
    };
    Ok(HttpResponse::Ok().json(json!({
        "kind": target.kind(),
        "name": target.name(),
        "paused": pause,
        "changed": changed,
    })))
}
