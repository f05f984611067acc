//! `/api/tasks…`: list, show, schedule, retry, reschedule, cancel, delete and duplicate
//! managed tasks. Cancelling and retrying go through the Supervisor (a cancelled task
//! that runs on this node is killed); the rest through the store.

use super::error::ApiError;
use super::input;
use super::WebState;
use crate::messages::{CancelTask, RetryTask, ScheduleTask};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use warren::store::{NewTask, ScheduleOptions, StateFilter, Task, TaskFilter, TaskTypeCheck};
use warren::task::{Priority, TaskType};

/// Largest page of a listing.
const MAX_LIMIT: i64 = 1000;
/// Page size when none is asked for.
const DEFAULT_LIMIT: i64 = 50;
/// Fields left out of listed tasks (they can be large); `GET /api/tasks/{id}` has them.
const HEAVY_FIELDS: [&str; 5] = ["data", "aux_data", "result", "last_stack", "metadata"];

/// `GET /api/tasks`: a page of tasks, newest first.
pub async fn list(state: web::Data<WebState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let q = input::query(&req)?;
    let limit = match q.get("limit") {
        None => DEFAULT_LIMIT,
        Some(text) => text
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::bad_field(
                    "limit",
                    format!("invalid limit '{text}': use 1 to {MAX_LIMIT}"),
                )
            })?,
    };
    let filter = TaskFilter {
        type_mask: q
            .get("type")
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty()),
        state: q
            .get("state")
            .map(|s| s.parse::<StateFilter>())
            .transpose()?
            .unwrap_or_default(),
        created_from: q
            .get("from")
            .map(|t| input::instant("from", t))
            .transpose()?,
        created_until: q
            .get("until")
            .map(|t| input::instant("until", t))
            .transpose()?,
        before_id: q
            .get("before")
            .map(|t| input::task_id("before", t))
            .transpose()?,
        // One more than asked for tells whether another page follows.
        limit: limit + 1,
    };
    let mut tasks = state.store.list(&filter).await?;
    let more = tasks.len() as i64 > limit;
    tasks.truncate(limit as usize);
    let next_before = if more {
        tasks.last().map(|t| t.id)
    } else {
        None
    };
    let tasks: Vec<Value> = tasks.iter().map(summary).collect();
    Ok(HttpResponse::Ok().json(json!({ "tasks": tasks, "next_before": next_before })))
}

/// A task without its large fields.
fn summary(task: &Task) -> Value {
    let mut value = serde_json::to_value(task).unwrap_or_else(|_| json!({}));
    if let Some(fields) = value.as_object_mut() {
        for heavy in HEAVY_FIELDS {
            fields.remove(heavy);
        }
    }
    value
}

/// `GET /api/tasks/{id}`: every field of one task.
pub async fn show(
    state: web::Data<WebState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = input::task_id("id", &id)?;
    Ok(HttpResponse::Ok().json(state.store.describe(id).await?))
}

/// The body of `POST /api/tasks`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTaskBody {
    #[serde(rename = "type")]
    task_type: String,
    data: Option<Value>,
    priority: Option<Value>,
    not_before: Option<Value>,
    timeout_ms: Option<i64>,
    aux_data: Option<Value>,
    metadata: Option<BTreeMap<String, String>>,
    cluster: Option<String>,
    /// Schedule it even if no node has registered the type.
    #[serde(default)]
    allow_unknown_type: bool,
}

/// A priority given as a name (`interactive`) or a number.
fn priority(value: &Value) -> Result<Priority, ApiError> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    };
    text.parse::<Priority>()
        .map_err(|e| ApiError::bad_field("priority", e.to_string()))
}

/// Checks a task about to be created: its type must be one some node has registered
/// (a module it loaded declares it), unless the caller allows an unknown one — else 400
/// naming `type`. The check gives the cluster the task runs in and the warnings for
/// the answer (no live node serves that cluster).
async fn check_new_task(
    state: &WebState,
    task_type: &TaskType,
    cluster: Option<&str>,
    allow_unknown_type: bool,
) -> Result<TaskTypeCheck, ApiError> {
    let check = state.store.check_task_type(task_type, cluster).await?;
    if !check.is_registered() && !allow_unknown_type {
        return Err(ApiError::bad_field(
            "type",
            format!(
                "unknown task type '{task_type}': no node has registered it (no module a \
                 node has loaded declares it); send \"allow_unknown_type\": true to \
                 schedule it anyway"
            ),
        ));
    }
    Ok(check)
}

/// `POST /api/tasks`: schedules a managed task; 201 `{"id", "warnings"}`.
pub async fn schedule(
    state: web::Data<WebState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let body: NewTaskBody = input::body(body.into_inner())?;
    let task_type: TaskType = body
        .task_type
        .parse()
        .map_err(|e: warren::task::TaskTypeError| ApiError::bad_field("type", e.to_string()))?;
    let options = ScheduleOptions {
        not_before: body
            .not_before
            .as_ref()
            .map(|v| input::json_instant("not_before", v))
            .transpose()?,
        priority: body.priority.as_ref().map(priority).transpose()?,
        timeout_ms: body.timeout_ms,
        aux_data: body.aux_data,
        metadata: body.metadata.unwrap_or_default().into_iter().collect(),
        cluster: body.cluster,
    };
    let check = check_new_task(
        &state,
        &task_type,
        options.cluster.as_deref(),
        body.allow_unknown_type,
    )
    .await?;
    let options = ScheduleOptions {
        // The cluster the check looked at (the registration as the database has it now).
        cluster: Some(check.cluster.clone()),
        ..options
    };
    let task =
        NewTask::new(task_type, body.data.unwrap_or_else(|| json!({}))).with_options(options);
    let id = state
        .supervisor
        .send(ScheduleTask(task))
        .await?
        .map_err(|e| body_field(e.into()))?;
    Ok(HttpResponse::Created().json(json!({ "id": id, "warnings": check.warnings() })))
}

/// The error with the field named as in the body (the store says `task data` for
/// `data`, `aux data` for `aux_data`, `timeout` for `timeout_ms`).
fn body_field(mut error: ApiError) -> ApiError {
    error.field = error.field.map(|f| {
        match f.as_str() {
            "task data" => "data",
            "aux data" => "aux_data",
            "timeout" => "timeout_ms",
            other => other,
        }
        .to_string()
    });
    error
}

/// The body of actions that take nothing: `{}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// `POST /api/tasks/{id}/retry`: runs the task now.
pub async fn retry(
    state: web::Data<WebState>,
    id: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let id = input::task_id("id", &id)?;
    let Empty {} = input::body(body.into_inner())?;
    let next_attempt = state.supervisor.send(RetryTask(id)).await??;
    Ok(HttpResponse::Ok().json(json!({ "id": id, "next_attempt": next_attempt })))
}

/// The body of `POST /api/tasks/{id}/reschedule`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RescheduleBody {
    at: Value,
}

/// `POST /api/tasks/{id}/reschedule`: runs the task at the given instant instead.
pub async fn reschedule(
    state: web::Data<WebState>,
    id: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let id = input::task_id("id", &id)?;
    let body: RescheduleBody = input::body(body.into_inner())?;
    let at = input::json_instant("at", &body.at)?;
    let next_attempt = state.store.reschedule(id, at).await?;
    Ok(HttpResponse::Ok().json(json!({ "id": id, "next_attempt": next_attempt })))
}

/// `POST /api/tasks/{id}/cancel`: cancels the task (killing it if it runs here).
pub async fn cancel(
    state: web::Data<WebState>,
    id: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let id = input::task_id("id", &id)?;
    let Empty {} = input::body(body.into_inner())?;
    let was = state.supervisor.send(CancelTask(id)).await??;
    Ok(HttpResponse::Ok().json(json!({ "id": id, "was": was })))
}

/// `POST /api/tasks/{id}/delete`: deletes a task that is not running.
pub async fn delete(
    state: web::Data<WebState>,
    id: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let id = input::task_id("id", &id)?;
    let Empty {} = input::body(body.into_inner())?;
    state.store.delete(id).await?;
    Ok(HttpResponse::Ok().json(json!({ "id": id })))
}

/// The body of `POST /api/tasks/{id}/duplicate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DuplicateBody {
    /// Schedule the copy even if no node has registered the type (any more).
    #[serde(default)]
    allow_unknown_type: bool,
}

/// `POST /api/tasks/{id}/duplicate`: schedules a copy of a finished task; 201
/// `{"id", "warnings"}`.
pub async fn duplicate(
    state: web::Data<WebState>,
    id: web::Path<String>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let id = input::task_id("id", &id)?;
    let body: DuplicateBody = input::body(body.into_inner())?;
    let original = state.store.describe(id).await?;
    let check = check_new_task(
        &state,
        &original.task_type,
        Some(&original.cluster),
        body.allow_unknown_type,
    )
    .await?;
    let copy = state.store.duplicate(id).await?;
    state.metrics.task_scheduled(original.task_type.as_str());
    Ok(HttpResponse::Created().json(json!({ "id": copy, "warnings": check.warnings() })))
}
