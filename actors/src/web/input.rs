//! Reading the API's input: query strings, JSON bodies, instants and ids (a task to
//! schedule is read by [`crate::task_spec`]).

use super::error::ApiError;
use actix_web::HttpRequest;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use warren::task::TaskId;

/// Instants in query parameters and bodies: the task spec's, so the API reads them one
/// way everywhere.
pub use crate::task_spec::json_instant;

/// The query string's parameters (the last value wins when one repeats).
pub fn query(req: &HttpRequest) -> Result<HashMap<String, String>, ApiError> {
    let pairs = actix_web::web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))?;
    Ok(pairs.into_inner().into_iter().collect())
}

/// A JSON body as `T`; unknown fields and wrong types are refused (400).
pub fn body<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the body must be a JSON object ({} when there is nothing to send)",
        ));
    }
    serde_json::from_value(value).map_err(|e| ApiError::bad_request(format!("bad body: {e}")))
}

/// A task id from the path or the query.
pub fn task_id(field: &str, text: &str) -> Result<TaskId, ApiError> {
    text.trim()
        .parse()
        .map_err(|_| ApiError::bad_field(field, format!("invalid {field} '{text}': not a task id")))
}
