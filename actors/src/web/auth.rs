//! The checks in front of `/api/…` and `/metrics`: the bearer token (401), and for
//! actions (`POST`) a same-origin request (403) with a JSON body (415). A refused
//! request never reaches its handler, so it changes nothing.

use super::error::ApiError;
use super::WebState;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, ResponseError};

/// The middleware: passes a request on only when it passes every check.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let refusal = match req.app_data::<web::Data<WebState>>() {
        Some(state) => check(&req, &state.token),
        None => Some(ApiError::internal("the dashboard is not configured")),
    };
    match refusal {
        Some(error) => Ok(req
            .into_response(error.error_response())
            .map_into_right_body()),
        None => Ok(next.call(req).await?.map_into_left_body()),
    }
}

/// Why `req` is refused, if it is.
fn check(req: &ServiceRequest, token: &str) -> Option<ApiError> {
    let headers = req.headers();
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    match presented {
        None => {
            return Some(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing token: send Authorization: Bearer TOKEN",
            ))
        }
        Some(p) if !same_secret(p, token) => {
            return Some(ApiError::new(StatusCode::UNAUTHORIZED, "wrong token"))
        }
        Some(_) => {}
    }
    if req.method() != Method::POST {
        return None;
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if let Some(origin) = headers.get(header::ORIGIN) {
        let same = origin
            .to_str()
            .ok()
            .zip(host)
            .is_some_and(|(origin, host)| same_origin(origin, host));
        if !same {
            return Some(ApiError::new(
                StatusCode::FORBIDDEN,
                "cross-origin request refused: the Origin header names another host",
            ));
        }
    }
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_json);
    if !json {
        return Some(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "actions need Content-Type: application/json",
        ));
    }
    None
}

/// The token of an `Authorization: Bearer TOKEN` header value.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Compares two secrets in time that does not depend on where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether an `Origin` (`http://host:port`) names the host the request was sent to
/// (its `Host` header); default ports are ignored.
fn same_origin(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false; // "null" and other opaque origins
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return false,
    };
    let normal = |a: &str| {
        let a = a.trim().to_ascii_lowercase();
        a.strip_suffix(default_port)
            .map(str::to_string)
            .unwrap_or(a)
    };
    normal(authority) == normal(host)
}

/// Whether a `Content-Type` value is JSON (`application/json`, parameters allowed).
fn is_json(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
    }

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }

    #[test]
    fn origins_match_the_host_with_default_ports_ignored() {
        assert!(same_origin("http://127.0.0.1:4900", "127.0.0.1:4900"));
        assert!(same_origin("http://Example.org", "example.org:80"));
        assert!(same_origin("https://example.org:443", "example.org"));
        assert!(!same_origin("http://evil.example", "127.0.0.1:4900"));
        assert!(!same_origin("http://127.0.0.1:4901", "127.0.0.1:4900"));
        assert!(!same_origin("null", "127.0.0.1:4900"));
    }

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/jsonx"));
    }
}
