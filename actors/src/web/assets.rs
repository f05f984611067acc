//! The dashboard's static files, compiled into the binary: `/` (the page) and
//! `/assets/…` (script, style sheet, icon). They hold no data and need no token; the
//! page asks the API for everything it shows.

use super::error::ApiError;
use actix_web::http::header;
use actix_web::{web, HttpResponse};

/// One static file: its path under `/assets/`, content type and bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

/// The page.
const INDEX: &[u8] = include_bytes!("assets/index.html");

/// Every file under `/assets/`.
const ASSETS: [Asset; 3] = [
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("assets/app.js"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("assets/app.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        bytes: include_bytes!("assets/favicon.svg"),
    },
];

/// A static file's answer: revalidated on every load (`no-cache`), so a new binary's
/// files are picked up at once.
fn file(content_type: &'static str, bytes: &'static [u8]) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(bytes)
}

/// `GET /`: the dashboard's page.
pub async fn index() -> HttpResponse {
    file("text/html; charset=utf-8", INDEX)
}

/// `GET /assets/{name}`.
pub async fn asset(name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    ASSETS
        .iter()
        .find(|a| a.name == name.as_str())
        .map(|a| file(a.content_type, a.bytes))
        .ok_or_else(|| ApiError::not_found(format!("no file /assets/{name}")))
}
