//! The REST API. Paths are the contract of shared/DESIGN.md; `P` = `/api/v1/projects/{project_id}`.

mod audit;
mod auth;
mod deliveries;
mod edges;
mod ops;
mod orgs;
mod plugins;
mod templates;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::Value;
use store::{AuditEntry, ProjectScope, User};

use crate::AppState;
use crate::error::ApiError;

pub fn router(state: AppState) -> Router {
    let body_limit = state.config.max_body_bytes;
    let project = Router::new()
        .route("/edge-services", get(edges::list).post(edges::create))
        .route("/edge-services/import", post(edges::import))
        .route("/edge-services/{id}", get(edges::get_one).patch(edges::update).delete(edges::delete))
        .route("/edge-services/{id}/probe", post(edges::probe))
        .route("/templates", get(templates::list).post(templates::create))
        .route("/templates/{id}", get(templates::get_one).put(templates::update).delete(templates::delete))
        .route("/templates/{id}/versions", get(templates::versions))
        .route("/templates/{id}/versions/{version}", get(templates::version))
        .route("/templates/{id}/export", get(templates::export))
        .route("/templates/{id}/preview", post(templates::preview))
        .route("/plugins", get(plugins::list).post(plugins::create).layer(DefaultBodyLimit::disable()))
        .route("/plugins/{id}", get(plugins::get_one).delete(plugins::delete))
        .route("/plugins/{id}/package", get(plugins::package))
        .route("/deliveries", get(deliveries::list).post(deliveries::create))
        .route("/deliveries/{id}", get(deliveries::get_one))
        .route("/deliveries/{id}/targets", get(deliveries::targets))
        .route("/deliveries/{id}/events", get(deliveries::events))
        .route("/deliveries/{id}/cancel", post(deliveries::cancel))
        .route("/deliveries/{id}/retry", post(deliveries::retry));
    let api = Router::new()
        .route("/auth/login", post(auth::login))
        .route("/auth/logout", post(auth::logout))
        .route("/me", get(auth::me))
        .route("/me/tokens", post(auth::create_token))
        .route("/orgs", get(orgs::list).post(orgs::create))
        .route("/orgs/{id}", get(orgs::get_one))
        .route("/orgs/{id}/projects", get(orgs::list_projects).post(orgs::create_project))
        .route("/projects/{project_id}", get(orgs::get_project))
        .nest("/projects/{project_id}", project)
        .route("/audit", get(audit::list))
        .route("/jwt/public-key", get(ops::jwt_public_key));
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .route("/edge/packages/{sha256}/{expires}/{signature}/{file}", get(plugins::edge_download))
        .nest("/api/v1", api)
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// The project a request names, if the user may see it. A project the user cannot see answers
/// 404 like a missing one, so existence does not leak.
pub async fn project_scope(state: &AppState, user: &User, project_id: &str) -> Result<ProjectScope, ApiError> {
    let scope = state.store.project_scope(project_id).await?;
    if !user.is_system_admin {
        return Err(ApiError::not_found("project"));
    }
    Ok(scope)
}

/// Only admins change things or deliver.
pub fn require_admin(user: &User) -> Result<(), ApiError> {
    if user.is_system_admin { Ok(()) } else { Err(ApiError::forbidden("this needs an administrator role")) }
}

pub fn audit_entry(
    user: &User,
    scope: Option<&ProjectScope>,
    action: &str,
    resource_type: &str,
    resource_name: &str,
    details: Value,
) -> AuditEntry {
    AuditEntry {
        actor_id: user.id.clone(),
        actor_name: user.username.clone(),
        org_id: scope.map(|s| s.org_id.clone()).unwrap_or_default(),
        org_name: scope.map(|s| s.org_name.clone()).unwrap_or_default(),
        project_id: scope.map(|s| s.project_id.clone()).unwrap_or_default(),
        project_name: scope.map(|s| s.project_name.clone()).unwrap_or_default(),
        action: action.to_owned(),
        resource_type: resource_type.to_owned(),
        resource_id: String::new(),
        resource_name: resource_name.to_owned(),
        outcome: "success".to_owned(),
        details,
    }
}

pub fn created<T: serde::Serialize>(body: T) -> (StatusCode, axum::Json<T>) {
    (StatusCode::CREATED, axum::Json(body))
}
