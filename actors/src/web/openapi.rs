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
        assert_eq!(paths.len(), 25, "{:?}", paths.keys().collect::<Vec<_>>());
        // POST /api/tasks takes one task or an array of them, and answers either.
        let post = &doc["paths"]["/api/tasks"]["post"];
        let body = &post["requestBody"]["content"]["application/json"]["schema"]["oneOf"];
        assert_eq!(body[0]["$ref"], "#/components/schemas/NewTask");
        assert_eq!(body[1]["type"], "array");
        assert_eq!(body[1]["maxItems"], crate::task_spec::MAX_BATCH);
        let created = &post["responses"]["201"]["content"]["application/json"]["schema"]["oneOf"];
        assert_eq!(created[1]["$ref"], "#/components/schemas/CreatedBatch");
        assert!(doc["components"]["schemas"]["CreatedBatch"]["properties"]["ids"].is_object());
    }
}
