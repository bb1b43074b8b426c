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
