//! Health, metrics, the JWT public key, and answers for unknown routes.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::IntoResponse;
use domain::audit::AuditAction;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{CurrentUser, Project};
use crate::routes::audit_entry;

pub async fn healthz(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    state.store.ping().await.map_err(|e| ApiError::new(ErrorCode::DatabaseUnavailable, e.to_string()))?;
    Ok(Json(json!({"status": "ok"})))
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    // A store that cannot answer leaves the gauge out rather than failing the whole scrape.
    let fleet = crate::metrics::FleetGauges {
        drifted_edges: state.store.edges_in_config_state(domain::drift::ConfigState::Drifted).await.unwrap_or(-1),
        deliveries: state.store.deliveries_by_state().await.unwrap_or_default(),
        webhook_calls_pending: state.store.pending_webhook_calls().await.unwrap_or(-1),
    };
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&fleet, state.agents.link().map(|link| link.counters())),
    )
}

/// The first release's system key, kept for one release. It signs nothing now: every project
/// has its own keys (`GET P/jwt/public-key`).
pub async fn jwt_public_key(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let (file_name, pem) = crate::legacy_jwt_key(&state.store, &state.secrets).await.map_err(ApiError::internal)?;
    Ok(Json(json!({
        "file_name": file_name,
        "pem": pem,
        "deprecated": "this system key signs nothing; install your project's key from GET /api/v1/projects/{project_id}/jwt/public-key and remove this one from your edges",
    })))
}

/// What operators install in NeuronEX's `etc/` folder for the project's `auth: jwt` edges: the key
/// that signs now (or, after a rotation, the one that will), with every key of the project.
pub async fn project_jwt_public_key(
    State(state): State<AppState>,
    Path(project_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let keys = state.jwt_keys.public_keys(&project_id).await.map_err(ApiError::internal)?;
    let newest = keys.first().ok_or_else(|| ApiError::internal("a project without a key"))?;
    Ok(Json(json!({
        "file_name": newest.file_name,
        "pem": newest.pem,
        "signing": newest.signing,
        "signing_from": newest.signing_from,
        "install": format!("copy it to NeuronEX's etc/ folder as {0}, e.g. docker cp {0} neuronex:/opt/neuronex/etc/{0}", newest.file_name),
        "keys": keys,
    })))
}

/// A new project key; the current one keeps signing for `--jwt-overlap-hours` while the new
/// public key is installed on every edge.
pub async fn rotate_project_jwt_key(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Project(access): Project,
    Path(project_id): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let scope = access.scope;
    let key = state.jwt_keys.public_keys(&project_id).await.map_err(ApiError::internal)?;
    let mut entry = audit_entry(
        &user,
        Some(&scope),
        AuditAction::JwtKeyRotate,
        "jwt_key",
        &project_id,
        json!({"previous": key.first().map(|k| k.file_name.clone())}),
    );
    entry.resource_id = project_id.clone();
    let new_key = state.jwt_keys.rotate(&project_id, &entry).await.map_err(|e| match e {
        crate::jwt_keys::KeyError::Store(err) => ApiError::from(err),
        other => ApiError::new(ErrorCode::JwtKeyRotationConflict, other.to_string()),
    })?;
    Ok((StatusCode::CREATED, Json(json!(new_key))))
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(ErrorCode::RouteNotFound, format!("no route {}", uri.path()))
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, "this route does not take that method")
}

/// What a route takes (`null` when nothing, which the document then leaves out).
fn request_body(body: crate::routes::Body) -> Value {
    use crate::routes::Body;
    let schema = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    match body {
        Body::NoBody => Value::Null,
        Body::Json(name) => json!({"required": true, "content": {"application/json": {"schema": schema(name)}}}),
        Body::JsonList(name) => json!({"required": true, "content": {
            "application/json": {"schema": {"type": "array", "items": schema(name)}},
            "text/csv": {"schema": {"type": "string"}}
        }}),
        Body::Form => json!({"required": true, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["name", "file"],
            "properties": {"name": {"type": "string"}, "description": {"type": "string"}, "file": {"type": "string", "format": "binary"}}
        }}}}),
    }
}

/// What a route answers: its success shape (from the route table) and the shared error shape.
fn responses(shape: crate::routes::Shape) -> Value {
    use crate::routes::Shape;
    let schema = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    let json_body = |schema: Value| json!({"application/json": {"schema": schema}});
    let success = match shape {
        Shape::One(name) => json!({"description": name, "content": json_body(schema(name))}),
        Shape::List(name) => json!({"description": format!("a page of {name}"), "content": json_body(json!({
            "type": "object", "required": ["items", "total"],
            "properties": {"items": {"type": "array", "items": schema(name)}, "total": {"type": "integer"},
                           "total_estimated": {"type": "boolean", "description": "true when `total` is an estimate"}}
        }))}),
        Shape::Empty => json!({"description": "done; no body"}),
        Shape::Other => json!({"description": "success"}),
    };
    let code = if shape == Shape::Empty { "204" } else { "2XX" };
    json!({code: success, "default": {"description": "an error", "content": json_body(schema("Error"))}})
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
        let mut operation = json!({
            "summary": format!("{} {}", route.method, route.path),
            "x-access": format!("{:?}", route.access),
            "parameters": parameters,
            "security": if matches!(route.access, crate::routes::Access::Public | crate::routes::Access::SignedLink) { json!([]) } else { json!([{"bearer": []}, {"session": []}]) },
            "requestBody": request_body(route.body),
            "responses": responses(route.shape),
        });
        if let Some(fields) = operation.as_object_mut()
            && fields["requestBody"].is_null()
        {
            fields.remove("requestBody");
        }
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
            "schemas": api_types::schemas(),
        }
    }))
}
