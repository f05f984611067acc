//! `/api/openapi.json`: a hand-written OpenAPI 3.1 description of the API
//! (`openapi.json` beside this file; keep it in step with `docs/api.md`).

use actix_web::HttpResponse;

/// The document.
const OPENAPI: &str = include_str!("openapi.json");

/// `GET /api/openapi.json`.
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_is_json_with_every_path() {
        let doc: serde_json::Value = serde_json::from_str(super::OPENAPI).expect("valid JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().expect("paths");
        assert_eq!(paths.len(), 17, "{:?}", paths.keys().collect::<Vec<_>>());
    }
}
