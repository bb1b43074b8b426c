//! Organizations and projects (roles and memberships come with the access-control work).

use axum::Json;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, CurrentUser};
use crate::routes::{audit_entry, created, project_scope, require_admin};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewName {
    name: String,
}

fn checked_name(name: &str, what: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::unprocessable("invalid_name", format!("the {what} name must be 1 to 100 characters")));
    }
    Ok(name.to_owned())
}

pub async fn list(State(state): State<AppState>, CurrentUser(user): CurrentUser) -> ApiResult<Json<Value>> {
    require_admin(&user)?;
    let orgs = state.store.list_orgs().await?;
    Ok(Json(json!({"total": orgs.len(), "items": orgs})))
}

pub async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(body): ApiJson<NewName>,
) -> ApiResult<impl IntoResponse> {
    require_admin(&user)?;
    let name = checked_name(&body.name, "organization")?;
    let org = state.store.create_org(&name).await?;
    let mut entry = audit_entry(&user, None, "org.create", "org", &org.name, json!({}));
    entry.org_id = org.id.clone();
    entry.org_name = org.name.clone();
    entry.resource_id = org.id.clone();
    state.store.append_audit(&entry).await?;
    Ok(created(org))
}

pub async fn get_one(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    require_admin(&user).map_err(|_| ApiError::not_found("organization"))?;
    Ok(Json(json!(state.store.get_org(&id).await?)))
}

pub async fn list_projects(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    require_admin(&user).map_err(|_| ApiError::not_found("organization"))?;
    state.store.get_org(&id).await?;
    let projects = state.store.list_projects(&id).await?;
    Ok(Json(json!({"total": projects.len(), "items": projects})))
}

pub async fn create_project(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(org_id): Path<String>,
    ApiJson(body): ApiJson<NewName>,
) -> ApiResult<impl IntoResponse> {
    require_admin(&user)?;
    let name = checked_name(&body.name, "project")?;
    let project = state.store.create_project(&org_id, &name).await?;
    let scope = state.store.project_scope(&project.id).await?;
    let mut entry = audit_entry(&user, Some(&scope), "project.create", "project", &project.name, json!({}));
    entry.resource_id = project.id.clone();
    state.store.append_audit(&entry).await?;
    Ok(created(project))
}

pub async fn get_project(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let scope = project_scope(&state, &user, &id).await?;
    Ok(Json(
        json!({"id": scope.project_id, "name": scope.project_name, "org_id": scope.org_id, "org_name": scope.org_name}),
    ))
}
