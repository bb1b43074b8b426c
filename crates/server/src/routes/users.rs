//! User accounts. Passwords are checked for strength and stored as Argon2id hashes.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use domain::audit::AuditAction;
use serde_json::{Value, json};

use crate::AppState;
use crate::access::deny;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiJson, CurrentUser, Query};
use crate::routes::{audit_entry, created};
use crate::views;
use api_types::{NewUser, UserPatch};

pub const LANGUAGES: [&str; 2] = ["en", "zh"];

/// The strength rules of `passwords::check_strength`, as an API error.
pub fn check_password(username: &str, password: &str) -> Result<(), ApiError> {
    crate::passwords::check_strength(username, password)
        .map_err(|why| ApiError::new(ErrorCode::WeakPassword, format!("password: {why}")))
}

fn check_username(username: &str) -> Result<String, ApiError> {
    let username = username.trim();
    let valid = (2..=64).contains(&username.chars().count())
        && username.chars().all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'));
    if !valid {
        return Err(ApiError::new(ErrorCode::InvalidUsername, "username: 2 to 64 letters, digits, . - _ @"));
    }
    Ok(username.to_owned())
}

pub async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    query: Query,
) -> ApiResult<Json<Value>> {
    let page = query.only(&["limit", "offset"])?.page()?;
    // System admins see everyone; other admins see the people of the organizations they work in
    // (and, for organization admins, accounts not yet in any organization, to add them).
    let visible_to = (!user.is_system_admin).then_some(user.id.as_str());
    let (users, total) = state.store.list_users(visible_to, page.limit, page.offset).await?;
    Ok(Json(json!(views::list(&users, total, views::user))))
}

pub async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(body): ApiJson<NewUser>,
) -> ApiResult<impl IntoResponse> {
    // The route lets organization admins in; only system admins make system admins.
    if body.system_admin && !user.is_system_admin {
        return deny(&state, &user, None, "creating a system admin needs the system admin role").await;
    }
    let username = check_username(&body.username)?;
    check_password(&username, &body.password)?;
    let hash = state.passwords.hash(&body.password).await?;
    let entry = audit_entry(
        &user,
        None,
        AuditAction::UserCreate,
        "user",
        &username,
        json!({"system_admin": body.system_admin}),
    );
    let created_user = state.store.create_user(&username, &hash, body.system_admin, &entry).await?;
    Ok(created(views::user(&created_user)))
}

pub async fn update(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<UserPatch>,
) -> ApiResult<Json<Value>> {
    apply_patch(&state, &user, &id, patch).await
}

/// Shared by `PATCH /users/{id}` and `PATCH /me`.
pub async fn apply_patch(state: &AppState, actor: &store::User, id: &str, patch: UserPatch) -> ApiResult<Json<Value>> {
    let target = state.store.get_user(id).await?;
    let hash = match &patch.password {
        Some(password) => {
            check_password(&target.username, password)?;
            Some(state.passwords.hash(password).await?)
        }
        None => None,
    };
    if let Some(language) = &patch.language
        && !LANGUAGES.contains(&language.as_str())
    {
        return Err(ApiError::new(ErrorCode::InvalidLanguage, format!("language: use {}", LANGUAGES.join(" or "))));
    }
    if patch.disabled == Some(true) && target.id == actor.id {
        return Err(ApiError::new(ErrorCode::CannotDisableSelf, "disabled: you cannot disable your own account"));
    }
    let details = json!({"password_changed": hash.is_some(), "disabled": patch.disabled, "language": patch.language});
    let mut entry = audit_entry(actor, None, AuditAction::UserUpdate, "user", &target.username, details);
    entry.resource_id = target.id.clone();
    state.store.update_user(id, hash.as_deref(), patch.disabled, patch.language.as_deref(), &entry).await?;
    Ok(Json(json!(views::user(&state.store.get_user(id).await?))))
}

pub async fn delete(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if id == user.id {
        return Err(ApiError::new(ErrorCode::CannotDeleteSelf, "you cannot delete your own account"));
    }
    let target = state.store.get_user(&id).await?;
    let mut entry = audit_entry(&user, None, AuditAction::UserDelete, "user", &target.username, json!({}));
    entry.resource_id = target.id.clone();
    state.store.delete_user(&id, &entry).await?;
    Ok(StatusCode::NO_CONTENT)
}
