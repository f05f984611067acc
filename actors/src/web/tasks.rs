//! `/api/tasks…`: list, show, schedule, retry, reschedule, cancel, delete and duplicate
//! managed tasks. Cancelling and retrying go through the Supervisor (a cancelled task
//! that runs on this node is killed); the rest through the store.

use super::error::ApiError;
use super::input;
use super::WebState;
use crate::messages::{BulkTasks, CancelTask, RetryTask, ScheduleTasksReporting};
use crate::task_filter::{empty_filter_error, FilterText};
use crate::task_spec::{self, check_task_types, BatchError, TaskSpec, MAX_BATCH};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use warren::store::{BulkAction, BulkOptions, Scheduled, Task, TaskFilter, TaskTypeCheck};
use warren::task::TaskType;
use warren::trace::TraceParent;

/// Largest page of a listing.
const MAX_LIMIT: i64 = 1000;
/// Page size when none is asked for.
const DEFAULT_LIMIT: i64 = 50;
/// Fields left out of listed tasks (they can be large, or are read for one task only);
/// `GET /api/tasks/{id}` has them.
const HEAVY_FIELDS: [&str; 6] = [
    "data",
    "aux_data",
    "result",
    "last_stack",
    "metadata",
    "progress",
];

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
        before_id: q
            .get("before")
            .map(|t| input::task_id("before", t))
            .transpose()?,
        // One more than asked for tells whether another page follows.
        limit: limit + 1,
        ..FilterText::from_query(&q).to_filter()?
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

/// `GET /api/tasks/count`: `{"count", "newest_id"}`, the number of tasks the filter (the
/// listing's query parameters) matches and the newest of them; the dashboard shows the
/// count before a bulk action and passes `newest_id` on as its `up_to`.
pub async fn count(state: web::Data<WebState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let filter = FilterText::from_query(&input::query(&req)?).to_filter()?;
    let count = state.store.count(&filter).await?;
    let newest = state.store.newest_matching(&filter).await?;
    Ok(HttpResponse::Ok().json(json!({ "count": count, "newest_id": newest })))
}

/// The body of `POST /api/tasks/bulk`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkBody {
    action: String,
    filter: Value,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    up_to: Option<i64>,
}

/// `POST /api/tasks/bulk`: `{"action": "retry" | "cancel" | "delete", "filter": {…},
/// "reason"?, "up_to"?}` (`up_to`: act on no task newer than this id, the count's
/// `newest_id`) retries, cancels or deletes every task the filter (the listing's fields)
/// matches, in batches of short transactions; answers with the report (matched,
/// changed, skipped by state, …). A filter with no field is refused: `"state": "all"`
/// acts on every task.
pub async fn bulk(
    state: web::Data<WebState>,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let body: BulkBody = input::body(body.into_inner())?;
    let action = body.action.parse::<BulkAction>()?;
    let text = FilterText::from_json(&body.filter)?;
    if text.is_empty() {
        return Err(empty_filter_error().into());
    }
    let mut filter = text.to_filter()?;
    if let Some(up_to) = body.up_to {
        filter.before_id = Some(warren::task::TaskId(up_to.saturating_add(1)));
    }
    let mut options = BulkOptions {
        reason: "cancelled in bulk by an operator".to_string(),
        ..BulkOptions::default()
    };
    if let Some(reason) = body.reason.filter(|r| !r.trim().is_empty()) {
        if action != BulkAction::Cancel {
            return Err(ApiError::bad_field(
                "reason",
                "only a cancel takes a reason",
            ));
        }
        options.reason = reason;
    }
    let report = state
        .supervisor
        .send(BulkTasks {
            action,
            filter,
            options,
        })
        .await??;
    Ok(HttpResponse::Ok().json(report))
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

/// `GET /api/tasks/{id}`: every field of one task, and `held_by`: the pause a pending
/// task waits for (`{"kind": "cluster" | "type", "name"}`), else null.
pub async fn show(
    state: web::Data<WebState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = input::task_id("id", &id)?;
    let task = state.store.describe(id).await?;
    let held_by = state.store.pause_holding_task(&task).await?;
    let mut shown = serde_json::to_value(&task).map_err(|e| ApiError::internal(e.to_string()))?;
    shown["held_by"] =
        serde_json::to_value(held_by).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(HttpResponse::Ok().json(shown))
}

/// `GET /api/tasks/{id}/runs`: `{"runs": [run…]}`, oldest first: the task's recorded
/// runs (every run but a completion that logged nothing; the newest ten), each with
/// its node, times, outcome, error and what its code logged.
pub async fn runs(
    state: web::Data<WebState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = input::task_id("id", &id)?;
    // An unknown task is a 404, not an empty history.
    state.store.describe(id).await?;
    let runs = state.store.task_runs(id).await?;
    Ok(HttpResponse::Ok().json(json!({ "runs": runs })))
}

/// How the API's caller schedules a task of a type no node has registered anyway.
const HOW_TO_ALLOW: &str = "send \"allow_unknown_type\": true to schedule it anyway";

/// Checks a task about to be duplicated: its type must be one some node has registered
/// (a module it loaded declares it), unless the caller allows an unknown one — else 400
/// naming `type`. The check gives the warnings for the answer (no live node serves
/// that cluster).
async fn check_new_task(
    state: &WebState,
    task_type: &TaskType,
    cluster: Option<&str>,
    allow_unknown_type: bool,
) -> Result<TaskTypeCheck, ApiError> {
    let check = state.store.check_task_type(task_type, cluster).await?;
    if !check.is_registered() && !allow_unknown_type {
        return Err(task_spec::unknown_type(task_type, HOW_TO_ALLOW).into());
    }
    Ok(check)
}

/// `POST /api/tasks`: schedules a managed task (a JSON object; 201 `{"id", "created",
/// "warnings"}`, or 200 with `"created": false` and the id of the task that already has
/// its unique key) or several in one transaction (an array of them, at most
/// [`MAX_BATCH`]; 201 `{"ids", "created", "warnings"}`, in the array's order). A bad task in an array is
/// refused naming its position and field (`[3].priority`), and nothing is scheduled.
pub async fn schedule(
    state: web::Data<WebState>,
    req: HttpRequest,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    let parent = trace_header(&req);
    match body.into_inner() {
        one @ Value::Object(_) => schedule_one(&state, one, parent).await,
        Value::Array(items) => schedule_many(&state, items, parent).await,
        _ => Err(ApiError::bad_request(
            "the body must be a task (a JSON object) or an array of tasks",
        )),
    }
}

/// The request's W3C `traceparent` header: the trace context of the tasks it
/// schedules that name none themselves. One that does not parse is ignored, as the W3C
/// recommendation asks of a receiver (a `traceparent` field is refused instead).
fn trace_header(req: &HttpRequest) -> Option<TraceParent> {
    let value = req.headers().get("traceparent")?;
    match value.to_str().map(str::parse::<TraceParent>) {
        Ok(Ok(parent)) => Some(parent),
        Ok(Err(e)) => {
            tracing::debug!("traceparent header ignored: {e}");
            None
        }
        Err(_) => {
            tracing::debug!("traceparent header ignored: it is not text");
            None
        }
    }
}

async fn schedule_one(
    state: &WebState,
    body: Value,
    parent: Option<TraceParent>,
) -> Result<HttpResponse, ApiError> {
    let mut spec = TaskSpec::from_json(body)?;
    if let Some(parent) = parent {
        spec.trace_from(parent);
    }
    let checked = check_task_types(&state.store, vec![spec], false, HOW_TO_ALLOW)
        .await
        .map_err(|e| batch_error(e, false))?;
    let Some(task) = checked.tasks.into_iter().next() else {
        return Err(ApiError::internal("the checked task went missing"));
    };
    let scheduled = state
        .supervisor
        .send(ScheduleTasksReporting(vec![task]))
        .await??;
    let Some(Scheduled { id, created }) = scheduled.first().copied() else {
        return Err(ApiError::internal("the store returned no id"));
    };
    // 201 for a new task; 200 with the id of the duplicate that has its unique key.
    let mut response = if created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    Ok(response.json(json!({ "id": id, "created": created, "warnings": checked.warnings })))
}

async fn schedule_many(
    state: &WebState,
    items: Vec<Value>,
    parent: Option<TraceParent>,
) -> Result<HttpResponse, ApiError> {
    if items.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "too many tasks: {} in one request, at most {MAX_BATCH}; send them in several",
            items.len()
        )));
    }
    let mut specs = Vec::with_capacity(items.len());
    let mut refused = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        match TaskSpec::from_json(item) {
            Ok(mut spec) => {
                if let Some(parent) = parent {
                    spec.trace_from(parent);
                }
                specs.push(spec)
            }
            Err(e) => refused.push((index, e)),
        }
    }
    if !refused.is_empty() {
        return Err(batch_error(BatchError::Refused(refused), true));
    }
    let checked = check_task_types(&state.store, specs, false, HOW_TO_ALLOW)
        .await
        .map_err(|e| batch_error(e, true))?;
    let scheduled = if checked.tasks.is_empty() {
        Vec::new()
    } else {
        state
            .supervisor
            .send(ScheduleTasksReporting(checked.tasks))
            .await??
    };
    let ids: Vec<_> = scheduled.iter().map(|s| s.id).collect();
    let created: Vec<bool> = scheduled.iter().map(|s| s.created).collect();
    Ok(HttpResponse::Created()
        .json(json!({ "ids": ids, "created": created, "warnings": checked.warnings })))
}

/// A refused batch as the API answers it: the first refused task, named by its
/// position in the array (`[3].priority: …`) when the body was one, with how many more
/// were refused.
fn batch_error(e: BatchError, in_array: bool) -> ApiError {
    let refused = match e {
        BatchError::Store(e) => return e.into(),
        BatchError::Refused(refused) => refused,
    };
    let Some((index, first)) = refused.first() else {
        return ApiError::internal("a batch was refused without a reason");
    };
    if !in_array {
        return first.clone().into();
    }
    let place = match first.field {
        Some(field) => format!("[{index}].{field}"),
        None => format!("[{index}]"),
    };
    let mut message = format!("{place}: {}", first.message);
    if refused.len() > 1 {
        message.push_str(&format!(
            " (and {} more refused tasks; nothing was scheduled)",
            refused.len() - 1
        ));
    }
    ApiError::bad_field(&place, message)
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
