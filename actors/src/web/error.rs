//! The API's errors: every one is JSON, `{"error": {"status", "message", "field"?}}`,
//! with the status code that says what went wrong (see `docs/api.md`).

use crate::task_spec::SpecError;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use std::fmt;
use warren::store::StoreError;

/// An error answered by the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for a person.
    pub message: String,
    /// The input field at fault, when there is one.
    pub field: Option<String>,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            field: None,
        }
    }

    /// 400: bad input in `field`.
    pub fn bad_field(field: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            field: Some(field.to_string()),
            ..ApiError::new(StatusCode::BAD_REQUEST, message)
        }
    }

    /// 400: bad input not tied to one field (such as a body that is not JSON).
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: no such route or thing.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 500: the node failed (its database, or one of its actors).
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut error = serde_json::json!({
            "status": self.status.as_u16(),
            "message": self.message,
        });
        if let Some(field) = &self.field {
            error["field"] = serde_json::Value::String(field.clone());
        }
        HttpResponse::build(self.status).json(serde_json::json!({ "error": error }))
    }
}

impl From<StoreError> for ApiError {
    /// Unknown task or tag → 404, invalid input → 400 naming the field, an operation
    /// the task's state does not allow → 409, anything else (the database) → 500.
    fn from(e: StoreError) -> ApiError {
        let message = e.to_string();
        match e {
            StoreError::NotFound(_) | StoreError::UnknownScheduled(_) => {
                ApiError::not_found(message)
            }
            StoreError::Invalid { field, .. } => ApiError::bad_field(field, message),
            StoreError::WrongState { .. }
            | StoreError::LeaseLost { .. }
            | StoreError::UniqueConflict { .. }
            | StoreError::Contended { .. } => ApiError::new(StatusCode::CONFLICT, message),
            _ => {
                tracing::warn!(error = %message, "API request failed");
                ApiError::internal(message)
            }
        }
    }
}

impl From<SpecError> for ApiError {
    /// A task spec's error: 400 naming its field, when it has one.
    fn from(e: SpecError) -> ApiError {
        match e.field {
            Some(field) => ApiError::bad_field(field, e.message),
            None => ApiError::bad_request(e.message),
        }
    }
}

impl From<crate::Error> for ApiError {
    /// The store's errors as [`From<StoreError>`] maps them; an unknown task type →
    /// 404; a paused cluster or type → 409; a node shutting down or not answering →
    /// 503; anything else → 500.
    fn from(e: crate::Error) -> ApiError {
        use crate::Error as E;
        match e {
            E::Store(e) => e.into(),
            E::UnknownEphemeralType(_) | E::UnknownTaskType(_) | E::UnknownScheduled(_) => {
                ApiError::not_found(e.to_string())
            }
            E::ShuttingDown | E::NodeGone(_) | E::NodeStopped => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            E::Paused(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            _ => {
                tracing::warn!(error = %e, "API request failed");
                ApiError::internal(e.to_string())
            }
        }
    }
}

impl From<actix::MailboxError> for ApiError {
    /// The node's Supervisor did not answer (it is stopping or stopped).
    fn from(e: actix::MailboxError) -> ApiError {
        ApiError::internal(format!("the node did not answer: {e}"))
    }
}

impl From<actix_web::error::JsonPayloadError> for ApiError {
    /// A request body that could not be read as JSON.
    fn from(e: actix_web::error::JsonPayloadError) -> ApiError {
        use actix_web::error::JsonPayloadError as J;
        match e {
            J::Overflow { .. } | J::OverflowKnownLength { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
            }
            J::ContentType => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the body must be JSON (Content-Type: application/json)",
            ),
            other => ApiError::bad_request(format!("the body is not valid JSON: {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren::task::{TaskId, TaskState};

    #[test]
    fn store_errors_map_to_statuses() {
        let status = |e: StoreError| ApiError::from(e).status.as_u16();
        assert_eq!(status(StoreError::NotFound(TaskId(4))), 404);
        assert_eq!(status(StoreError::UnknownScheduled("a:b".into())), 404);
        assert_eq!(
            status(StoreError::WrongState {
                id: TaskId(1),
                state: TaskState::Running,
                action: "delete it",
            }),
            409
        );
        let invalid = ApiError::from(StoreError::Invalid {
            field: "state",
            message: "no".into(),
        });
        assert_eq!(
            (invalid.status.as_u16(), invalid.field.as_deref()),
            (400, Some("state"))
        );
        assert_eq!(status(StoreError::BadUrl("x".into())), 500);
    }

    #[test]
    fn spec_errors_are_400_naming_their_field() {
        let e = ApiError::from(SpecError::in_field("priority", "invalid priority"));
        assert_eq!(
            (e.status.as_u16(), e.field.as_deref(), e.message.as_str()),
            (400, Some("priority"), "invalid priority")
        );
        let e = ApiError::from(SpecError::whole("not an object"));
        assert_eq!((e.status.as_u16(), e.field), (400, None));
    }

    #[test]
    fn node_errors_map_to_statuses_by_variant() {
        let status = |e: crate::Error| ApiError::from(e).status.as_u16();
        assert_eq!(
            status(StoreError::UnknownScheduled("a:b".into()).into()),
            404
        );
        assert_eq!(
            status(crate::Error::UnknownEphemeralType("a:b".into())),
            404
        );
        assert_eq!(status(crate::Error::ShuttingDown), 503);
        let paused = warren::store::PauseTarget::Cluster("mail".into());
        assert_eq!(status(crate::Error::Paused(paused)), 409);
        assert_eq!(status(crate::Error::TransactionLost), 500);
        let message = ApiError::from(crate::Error::ShuttingDown).message;
        assert_eq!(message, "the node is shutting down");
    }
}
