//! Reading the API's input: query strings, JSON bodies, instants and ids.

use super::error::ApiError;
use actix_web::HttpRequest;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use warren::task::{Millis, TaskId};

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

/// An instant: milliseconds since the Unix epoch, or RFC 3339 text.
pub fn instant(field: &str, text: &str) -> Result<Millis, ApiError> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<Millis>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            ApiError::bad_field(
                field,
                format!(
                    "invalid {field} '{text}': use milliseconds since the Unix epoch or RFC 3339 (2026-11-28T10:00:00Z)"
                ),
            )
        })
}

/// An instant given in a JSON body: a number of milliseconds or RFC 3339 text.
pub fn json_instant(field: &str, value: &serde_json::Value) -> Result<Millis, ApiError> {
    match value {
        serde_json::Value::Number(n) => n.as_i64().ok_or_else(|| {
            ApiError::bad_field(
                field,
                format!("invalid {field} {n}: not whole milliseconds"),
            )
        }),
        serde_json::Value::String(text) => instant(field, text),
        other => Err(ApiError::bad_field(
            field,
            format!("invalid {field} {other}: use milliseconds or RFC 3339 text"),
        )),
    }
}

/// A task id from the path or the query.
pub fn task_id(field: &str, text: &str) -> Result<TaskId, ApiError> {
    text.trim()
        .parse()
        .map_err(|_| ApiError::bad_field(field, format!("invalid {field} '{text}': not a task id")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_milliseconds_or_rfc3339() {
        assert_eq!(instant("from", "1764324000000"), Ok(1_764_324_000_000));
        assert_eq!(
            instant("from", "2025-11-28T10:00:00Z"),
            Ok(1_764_324_000_000)
        );
        assert_eq!(
            instant("from", "yesterday").unwrap_err().field.as_deref(),
            Some("from")
        );
        assert_eq!(json_instant("at", &serde_json::json!(5)), Ok(5));
        assert!(json_instant("at", &serde_json::json!(1.5)).is_err());
        assert!(json_instant("at", &serde_json::json!(true)).is_err());
    }
}
