//! Organizations, projects and memberships.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use domain::audit::AuditAction;
use serde_json::{Value, json};
use store::{AuditEntry, Org, StoreError, User};

use crate::AppState;
use crate::access::{OrgAccess, ProjectAccess, Role};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiJson, CurrentUser, OrgOf, Project, Query};
use crate::routes::{audit_entry, created};
use crate::views;

use api_types::{Membership, NewName, ProjectPatch};

fn checked_name(name: &str, what: &str) -> Result<String, ApiError> {
    domain::text::check_name(&format!("name: the {what} name"), name, 100)
        .map_err(|m| ApiError::new(ErrorCode::InvalidName, m))
}

fn org_entry(
    user: &User,
    org: &Org,
    action: AuditAction,
    resource_type: &str,
    name: &str,
    details: Value,
) -> AuditEntry {
    let mut entry = audit_entry(user, None, action, resource_type, name, details);
    entry.org_id = org.id.clone();
    entry.org_name = org.name.clone();
    entry
}

pub async fn list(State(state): State<AppState>, CurrentUser(user): CurrentUser) -> ApiResult<Json<Value>> {
    let orgs =
        if user.is_system_admin { state.store.list_orgs().await? } else { state.store.visible_orgs(&user.id).await? };
    Ok(Json(json!(views::list(&orgs, orgs.len() as i64, views::org))))
}

pub async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(body): ApiJson<NewName>,
) -> ApiResult<impl IntoResponse> {
    let name = checked_name(&body.name, "organization")?;
    let entry = audit_entry(&user, None, AuditAction::OrgCreate, "org", &name, json!({}));
    let org = state.store.create_org(&name, &entry).await?;
    Ok(created(views::org(&org)))
}

pub async fn get_one(OrgOf(access): OrgOf) -> ApiResult<Json<Value>> {
    let mut body = json!(views::org(&access.org));
    body["role"] = json!(access.role.as_str());
    Ok(Json(body))
}

pub async fn rename(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    OrgOf(OrgAccess { org, .. }): OrgOf,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<NewName>,
) -> ApiResult<Json<Value>> {
    let name = checked_name(&body.name, "organization")?;
    let mut entry = org_entry(&user, &org, AuditAction::OrgUpdate, "org", &name, json!({"renamed_from": org.name}));
    entry.resource_id = org.id.clone();
    state.store.rename_org(&id, &name, &entry).await?;
    Ok(Json(json!(views::org(&state.store.get_org(&id).await?))))
}

pub async fn delete(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    query: Query,
) -> ApiResult<StatusCode> {
    let force = query.only(&["force"])?.one("force").as_deref() == Some("true");
    let org = state.store.get_org(&id).await?;
    let mut entry = org_entry(&user, &org, AuditAction::OrgDelete, "org", &org.name, json!({"force": force}));
    entry.resource_id = org.id.clone();
    let shas = state.store.delete_org(&id, force, &entry).await.map_err(|err| match err {
        StoreError::Conflict { clash: store::Clash::OrgHasProjects, name } => ApiError::new(
            ErrorCode::OrgHasProjects,
            format!("the organization still has {name} projects; delete them first, or add ?force=true to delete them with it"),
        ),
        other => other.into(),
    })?;
    remove_unused_blobs(&state, &shas).await;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_projects(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    OrgOf(access): OrgOf,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let projects = if access.role >= Role::Viewer {
        state.store.list_projects(&id).await?
    } else {
        state.store.visible_projects(&id, &user.id).await?
    };
    Ok(Json(json!(views::list(&projects, projects.len() as i64, views::project))))
}

pub async fn create_project(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(org_id): Path<String>,
    ApiJson(body): ApiJson<NewName>,
) -> ApiResult<impl IntoResponse> {
    let name = checked_name(&body.name, "project")?;
    let entry = audit_entry(&user, None, AuditAction::ProjectCreate, "project", &name, json!({}));
    let project = state.store.create_project(&org_id, &name, &entry).await?;
    Ok(created(views::project(&project)))
}

pub async fn get_project(State(state): State<AppState>, Project(access): Project) -> ApiResult<Json<Value>> {
    let approvals = state.store.project_approvals(&access.scope.project_id).await?;
    Ok(Json(project_json(&access, approvals)))
}

/// A project as the caller sees it, with their role in it and its approval rule.
fn project_json(access: &ProjectAccess, approvals_required: i64) -> Value {
    let scope = &access.scope;
    json!({"id": scope.project_id, "name": scope.project_name, "org_id": scope.org_id, "org_name": scope.org_name,
           "role": access.role.as_str(), "approvals_required": approvals_required})
}

/// The most approvals a project may require of each delivery.
const MAX_APPROVALS: i64 = 10;

/// `PATCH /api/v1/projects/{id}`: rename it, set `approvals_required`, or both.
pub async fn update_project(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Project(access): Project,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ProjectPatch>,
) -> ApiResult<Json<Value>> {
    if body.name.is_none() && body.approvals_required.is_none() {
        return Err(ApiError::new(ErrorCode::EmptyPatch, "give `name`, `approvals_required`, or both"));
    }
    let mut updated = access.clone();
    if let Some(name) = &body.name {
        let name = checked_name(name, "project")?;
        let mut entry = audit_entry(
            &user,
            Some(&access.scope),
            AuditAction::ProjectUpdate,
            "project",
            &name,
            json!({"renamed_from": access.scope.project_name}),
        );
        entry.resource_id = id.clone();
        state.store.rename_project(&id, &name, &entry).await?;
        updated.scope.project_name = name;
    }
    if let Some(required) = body.approvals_required {
        if !(0..=MAX_APPROVALS).contains(&required) {
            return Err(ApiError::new(
                ErrorCode::InvalidApprovals,
                format!("approvals_required must be between 0 and {MAX_APPROVALS}, got {required}"),
            ));
        }
        let before = state.store.project_approvals(&id).await?;
        let mut entry = audit_entry(
            &user,
            Some(&updated.scope),
            AuditAction::ProjectApprovals,
            "project",
            &updated.scope.project_name,
            json!({"approvals_required": required, "before": before}),
        );
        entry.resource_id = id.clone();
        state.store.set_project_approvals(&id, required, &entry).await?;
    }
    let approvals = state.store.project_approvals(&id).await?;
    Ok(Json(project_json(&updated, approvals)))
}

pub async fn delete_project(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Project(access): Project,
    Path(id): Path<String>,
    query: Query,
) -> ApiResult<StatusCode> {
    let force = query.only(&["force"])?.one("force").as_deref() == Some("true");
    let mut entry = audit_entry(
        &user,
        Some(&access.scope),
        AuditAction::ProjectDelete,
        "project",
        &access.scope.project_name,
        json!({"force": force}),
    );
    entry.resource_id = id.clone();
    let shas = state.store.delete_project(&id, force, &entry).await.map_err(|err| match err {
        StoreError::Conflict { clash: store::Clash::ProjectNotEmpty, name } => ApiError::new(
            ErrorCode::ProjectNotEmpty,
            format!("the project still has {name} edge services, templates or plugins; delete them first, or add ?force=true to delete them with it"),
        ),
        other => other.into(),
    })?;
    remove_unused_blobs(&state, &shas).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_unused_blobs(state: &AppState, shas: &[String]) {
    for sha in shas {
        if !state.store.blob_in_use(sha).await.unwrap_or(true) {
            state.blobs.remove(sha);
        }
    }
}

fn parse_role(text: &str, allowed: &[Role]) -> Result<Role, ApiError> {
    match text.parse::<Role>() {
        Ok(role) if allowed.contains(&role) => Ok(role),
        _ => {
            let names: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
            let shown: String = text.chars().take(64).collect();
            Err(ApiError::new(
                ErrorCode::InvalidRole,
                format!("role: unknown role `{shown}`; use {}", names.join(" or ")),
            ))
        }
    }
}

pub async fn list_members(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let members = state.store.org_members(&id).await?;
    Ok(Json(json!(views::list(&members, members.len() as i64, views::member))))
}

pub async fn set_member(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    OrgOf(OrgAccess { org, .. }): OrgOf,
    Path((id, user_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<Membership>,
) -> ApiResult<Json<Value>> {
    let role = parse_role(&body.role, &[Role::Admin, Role::Viewer, Role::Member])?;
    let member = state.store.get_user(&user_id).await?;
    let mut entry = org_entry(&user, &org, AuditAction::OrgMemberSet, "user", &member.username, json!({"role": role}));
    entry.resource_id = member.id.clone();
    state.store.set_org_member(&id, &user_id, role, &entry).await?;
    Ok(Json(json!({"user_id": member.id, "username": member.username, "role": role})))
}

pub async fn remove_member(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    OrgOf(OrgAccess { org, .. }): OrgOf,
    Path((id, user_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let member = state.store.get_user(&user_id).await?;
    let mut entry = org_entry(&user, &org, AuditAction::OrgMemberRemove, "user", &member.username, json!({}));
    entry.resource_id = member.id.clone();
    state.store.remove_org_member(&id, &user_id, &entry).await.map_err(|e| match e {
        StoreError::NotFound(_) => {
            ApiError::new(ErrorCode::MemberNotFound, format!("{} is not a member of the organization", member.username))
        }
        other => other.into(),
    })?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_project_members(
    State(state): State<AppState>,
    Path(project_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let members = state.store.project_members(&project_id).await?;
    Ok(Json(json!(views::list(&members, members.len() as i64, views::member))))
}

/// A user joins a project only after joining its organization.
pub async fn set_project_member(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Project(access): Project,
    Path((project_id, user_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<Membership>,
) -> ApiResult<Json<Value>> {
    let role = parse_role(&body.role, &[Role::Admin, Role::Viewer])?;
    let member = state.store.get_user(&user_id).await?;
    if state.store.org_role(&access.scope.org_id, &user_id).await?.is_none() {
        return Err(ApiError::new(
            ErrorCode::NotOrgMember,
            format!(
                "{} is not a member of organization {}; add them to it first",
                member.username, access.scope.org_name
            ),
        ));
    }
    let mut entry = audit_entry(
        &user,
        Some(&access.scope),
        AuditAction::ProjectMemberSet,
        "user",
        &member.username,
        json!({"role": role}),
    );
    entry.resource_id = member.id.clone();
    state.store.set_project_member(&project_id, &user_id, role, &entry).await?;
    Ok(Json(json!({"user_id": member.id, "username": member.username, "role": role})))
}

pub async fn remove_project_member(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Project(access): Project,
    Path((project_id, user_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let member = state.store.get_user(&user_id).await?;
    let mut entry =
        audit_entry(&user, Some(&access.scope), AuditAction::ProjectMemberRemove, "user", &member.username, json!({}));
    entry.resource_id = member.id.clone();
    state.store.remove_project_member(&project_id, &user_id, &entry).await.map_err(|e| match e {
        StoreError::NotFound(_) => {
            ApiError::new(ErrorCode::MemberNotFound, format!("{} is not a member of the project", member.username))
        }
        other => other.into(),
    })?;
    Ok(StatusCode::NO_CONTENT)
}
