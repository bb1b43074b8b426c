//! Login, logout, the current user and API tokens.

use axum::Json;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::crypto::{self, sha256_hex};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, CurrentUser, SESSION_COOKIE};
use crate::routes::audit_entry;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    username: String,
    password: String,
}

pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<Login>,
) -> ApiResult<Response> {
    let address = peer.ip().to_string();
    if let Some(wait) = state.throttle.blocked(&body.username, &address) {
        let mut entry = store::AuditEntry {
            actor_name: body.username.clone(),
            action: "auth.login".into(),
            resource_type: "user".into(),
            resource_name: body.username.clone(),
            outcome: "throttled".into(),
            details: json!({"address": address}),
            ..store::AuditEntry::default()
        };
        entry.outcome = "throttled".into();
        state.store.append_audit(&entry).await?;
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            format!("too many failed sign-ins; try again in {wait} s"),
        )
        .with_details(json!({"retry_after_secs": wait})));
    }
    let user = state.store.find_user_by_name(&body.username).await?;
    let hash = user.as_ref().filter(|u| !u.disabled).map(|u| u.password_hash.clone());
    let password = body.password.clone();
    let valid = tokio::task::spawn_blocking(move || crypto::verify_password(&password, hash.as_deref()))
        .await
        .map_err(ApiError::internal)?;
    let Some(user) = user.filter(|_| valid) else {
        let entry = store::AuditEntry {
            actor_name: body.username.clone(),
            action: "auth.login".into(),
            resource_type: "user".into(),
            resource_name: body.username.clone(),
            outcome: "failure".into(),
            details: json!({"address": address}),
            ..store::AuditEntry::default()
        };
        state.store.append_audit(&entry).await?;
        state.throttle.failed(&body.username, &address);
        return Err(ApiError::unauthorized("wrong username or password"));
    };
    state.throttle.succeeded(&body.username);
    let token = crypto::new_token("efs_");
    let ttl_ms = state.config.session_ttl.as_millis() as i64;
    let expires_at = store::now_ms() + ttl_ms;
    state.store.insert_token(&sha256_hex(token.as_bytes()), &user.id, "session", "login", Some(expires_at)).await?;
    state.store.append_audit(&audit_entry(&user, None, "auth.login", "user", &user.username, json!({}))).await?;
    let cookie = format!("{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}", ttl_ms / 1000);
    let body = json!({"token": token, "expires_at": expires_at, "user": user});
    Ok(([(header::SET_COOKIE, cookie)], Json(body)).into_response())
}

pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    CurrentUser(user): CurrentUser,
) -> ApiResult<Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
        .or_else(|| {
            let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
            cookies.split(';').find_map(|c| c.trim().strip_prefix(&format!("{SESSION_COOKIE}=")).map(str::to_owned))
        });
    if let Some(token) = token {
        state.store.delete_token(&sha256_hex(token.as_bytes())).await?;
    }
    state.store.append_audit(&audit_entry(&user, None, "auth.logout", "user", &user.username, json!({}))).await?;
    let clear = format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response())
}

pub async fn me(CurrentUser(user): CurrentUser) -> Json<Value> {
    Json(json!(user))
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct NewToken {
    name: String,
    /// Days until it expires; none means it lasts until revoked.
    expires_in_days: Option<u32>,
}

pub async fn create_token(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(body): ApiJson<NewToken>,
) -> ApiResult<impl IntoResponse> {
    if body.name.trim().is_empty() {
        return Err(ApiError::unprocessable(
            "invalid_token_name",
            "give the token a name, e.g. the script or pipeline that uses it",
        ));
    }
    let token = crypto::new_token("efp_");
    let expires_at = body.expires_in_days.map(|d| store::now_ms() + i64::from(d) * 86_400_000);
    let id = state.store.insert_token(&sha256_hex(token.as_bytes()), &user.id, "api", &body.name, expires_at).await?;
    state.store.append_audit(&audit_entry(&user, None, "token.create", "api_token", &body.name, json!({}))).await?;
    Ok((StatusCode::CREATED, Json(json!({"id": id, "token": token, "name": body.name, "expires_at": expires_at}))))
}

pub async fn update_me(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(patch): ApiJson<crate::routes::users::UserPatchSelf>,
) -> ApiResult<Json<Value>> {
    let id = user.id.clone();
    crate::routes::users::apply_patch(&state, &user, &id, patch.into()).await
}

pub async fn list_tokens(State(state): State<AppState>, CurrentUser(user): CurrentUser) -> ApiResult<Json<Value>> {
    let tokens = state.store.list_tokens(&user.id).await?;
    Ok(Json(json!({"items": tokens, "total": tokens.len()})))
}

pub async fn revoke_token(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.store.revoke_token(&user.id, &id).await.map_err(|e| match e {
        store::StoreError::NotFound(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "token_not_found", "no such API token of yours")
        }
        other => other.into(),
    })?;
    let mut entry = audit_entry(&user, None, "token.revoke", "api_token", "", json!({}));
    entry.resource_id = id;
    state.store.append_audit(&entry).await?;
    Ok(StatusCode::NO_CONTENT)
}
