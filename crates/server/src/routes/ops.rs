//! Health, metrics, the JWT public key, and answers for unknown routes.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{ApiError, ApiResult};

pub async fn healthz(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    state
        .store
        .ping()
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "database_unavailable", e.to_string()))?;
    Ok(Json(json!({"status": "ok"})))
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}

/// What operators install in NeuronEX's `etc/` folder for `auth: jwt` edges.
pub async fn jwt_public_key(State(state): State<AppState>) -> Json<Value> {
    let (file_name, pem) = state.jwt_public.as_ref();
    Json(
        json!({"file_name": file_name, "pem": pem, "install": format!("copy it to NeuronEX's etc/ folder as {file_name}, e.g. docker cp {file_name} neuronex:/opt/neuronex/etc/{file_name}")}),
    )
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "route_not_found", format!("no route {}", uri.path()))
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route does not take that method")
}

/// An OpenAPI 3.1 document of every route, generated from the route table (paths, methods, path
/// parameters, who may call it, and the shared error shape).
pub async fn openapi() -> Json<Value> {
    let mut paths = serde_json::Map::new();
    for route in crate::routes::catalog() {
        let parameters: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let operation = json!({
            "summary": format!("{} {}", route.method, route.path),
            "x-access": format!("{:?}", route.access),
            "parameters": parameters,
            "security": if matches!(route.access, crate::routes::Access::Public | crate::routes::Access::SignedLink) { json!([]) } else { json!([{"bearer": []}, {"session": []}]) },
            "responses": {
                "2XX": {"description": "success; list answers are {items, total}"},
                "default": {"description": "an error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
        });
        let entry = paths.entry(route.path.to_owned()).or_insert_with(|| json!({}));
        entry[route.method.to_lowercase()] = operation;
    }
    Json(json!({
        "openapi": "3.1.0",
        "info": {"title": "edgefleet", "version": env!("CARGO_PKG_VERSION"), "description": "Configuration templates and plugins for fleets of NeuronEX edge services"},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "POST /api/v1/auth/login or an API token (efp_...)"},
                "session": {"type": "apiKey", "in": "cookie", "name": "edgefleet_session"}
            },
            "schemas": {"Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "string", "description": "stable snake_case code"},
                "message": {"type": "string"},
                "details": {"type": "object"}
            }}}}}
        }
    }))
}
