//! Login, logout, the current user and API tokens.

use axum::Json;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::access::Outcome;
use domain::audit::AuditAction;
use serde_json::{Value, json};

use crate::AppState;
use crate::crypto::{self, sha256_hex};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiJson, CredentialHash, CurrentUser, SESSION_COOKIE, cookie_in};
use crate::routes::audit_entry;
use crate::throttle::{DeviceTokens, Verdict};
use crate::views;

use api_types::{Login, NewToken};

/// Longest username any account can have; longer ones are refused before anything is looked up
/// or written to the audit.
const MAX_USERNAME_CHARS: usize = 64;
/// The cookie (and header, for scripts) that carries a device token.
pub const DEVICE_COOKIE: &str = "edgefleet_device";
pub const DEVICE_HEADER: &str = "x-edgefleet-device";
const DEVICE_TOKEN_DAYS: i64 = 365;

pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Login>,
) -> ApiResult<Response> {
    require_json_content_type(&headers)?;
    if body.username.chars().count() > MAX_USERNAME_CHARS
        || body.password.chars().count() > crate::passwords::MAX_PASSWORD_CHARS
    {
        return Err(ApiError::new(
            ErrorCode::FieldTooLong,
            format!(
                "username is at most {MAX_USERNAME_CHARS} characters and password at most {} characters",
                crate::passwords::MAX_PASSWORD_CHARS
            ),
        ));
    }
    let address = peer.ip().to_string();
    let user = state.store.find_user_by_name(&body.username).await?;
    let devices = DeviceTokens::new(state.secrets.derive("device tokens"));
    let device = user.as_ref().and_then(|u| presented_device(&headers).and_then(|t| devices.verify(&u.id, &t)));
    if let Verdict::Wait { subject, secs } =
        state.throttle.attempt(&state.store, &body.username, &address, device.as_deref()).await?
    {
        let entry = login_audit(&body.username, Outcome::Throttled, &address);
        let window_ms = state.throttle.window.as_millis() as i64;
        state.store.note_throttled(&subject, store::now_ms(), window_ms, &entry).await?;
        return Err(ApiError::new(
            ErrorCode::TooManyAttempts,
            format!("too many failed sign-ins; try again in {secs} s"),
        )
        .with_details(json!({"retry_after_secs": secs})));
    }
    let hash = user.as_ref().filter(|u| !u.disabled).map(|u| u.password_hash.clone());
    let valid = state.passwords.verify(&body.password, hash).await?;
    let Some(user) = user.filter(|_| valid) else {
        state.store.append_audit(&login_audit(&body.username, Outcome::Failure, &address)).await?;
        state.throttle.failed(&state.store, &address, device.as_deref()).await?;
        return Err(ApiError::unauthorized("wrong username or password"));
    };
    state.throttle.succeeded(&state.store, &user.username, device.as_deref()).await?;
    let token = crypto::new_token("efs_");
    let ttl_ms = state.config.session_ttl.as_millis() as i64;
    let expires_at = store::now_ms() + ttl_ms;
    let hash = sha256_hex(token.as_bytes());
    let session = store::NewToken {
        hash: &hash,
        user_id: &user.id,
        kind: "session",
        name: "login",
        expires_at: Some(expires_at),
    };
    let entry = audit_entry(&user, None, AuditAction::AuthLogin, "user", &user.username, json!({}));
    state.store.insert_token(&session, &entry).await?;
    let device_token = devices.issue(&user.id);
    let secure = if state.config.served_over_https() { "; Secure" } else { "" };
    let session_cookie =
        format!("{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}", ttl_ms / 1000);
    let device_cookie = format!(
        "{DEVICE_COOKIE}={device_token}; HttpOnly; SameSite=Strict; Path=/api/v1/auth; Max-Age={}{secure}",
        DEVICE_TOKEN_DAYS * 86_400
    );
    let body =
        json!({"token": token, "expires_at": expires_at, "user": views::user(&user), "device_token": device_token});
    let mut response = Json(body).into_response();
    for cookie in [session_cookie, device_cookie] {
        if let Ok(value) = header::HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    Ok(response)
}

/// A sign-in must say it is JSON: a form on another site can post `text/plain` to any URL
/// without asking, but not `application/json`.
fn require_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if content_type.starts_with("application/json") {
        return Ok(());
    }
    Err(ApiError::new(ErrorCode::UnsupportedMediaType, "sign in with Content-Type: application/json"))
}

fn presented_device(headers: &HeaderMap) -> Option<String> {
    if let Some(value) = headers.get(DEVICE_HEADER).and_then(|v| v.to_str().ok()) {
        return Some(value.trim().to_owned());
    }
    cookie_in(headers, DEVICE_COOKIE)
}

fn login_audit(username: &str, outcome: Outcome, address: &str) -> store::AuditEntry {
    store::AuditEntry {
        actor_name: username.to_owned(),
        resource_type: "user".into(),
        resource_name: username.to_owned(),
        outcome,
        details: json!({"address": address}),
        ..store::AuditEntry::new(AuditAction::AuthLogin)
    }
}

pub async fn logout(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    CredentialHash(credential): CredentialHash,
) -> ApiResult<Response> {
    let entry = audit_entry(&user, None, AuditAction::AuthLogout, "user", &user.username, json!({}));
    state.store.delete_token(&credential, &entry).await?;
    let secure = if state.config.served_over_https() { "; Secure" } else { "" };
    let clear = format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}");
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response())
}

pub async fn me(CurrentUser(user): CurrentUser) -> Json<Value> {
    Json(json!(views::user(&user)))
}

pub async fn create_token(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(body): ApiJson<NewToken>,
) -> ApiResult<impl IntoResponse> {
    let name = domain::text::check_name("name: a token name", &body.name, 100).map_err(|m| {
        ApiError::new(ErrorCode::InvalidTokenName, format!("{m}; name it after the script or pipeline that uses it"))
    })?;
    let body = NewToken { name, ..body };
    let token = crypto::new_token("efp_");
    let expires_at = body.expires_in_days.map(|d| store::now_ms() + i64::from(d) * 86_400_000);
    let hash = sha256_hex(token.as_bytes());
    let api_token = store::NewToken { hash: &hash, user_id: &user.id, kind: "api", name: &body.name, expires_at };
    let entry = audit_entry(&user, None, AuditAction::TokenCreate, "api_token", &body.name, json!({}));
    let id = state.store.insert_token(&api_token, &entry).await?;
    Ok((StatusCode::CREATED, Json(json!({"id": id, "token": token, "name": body.name, "expires_at": expires_at}))))
}

pub async fn update_me(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    ApiJson(patch): ApiJson<api_types::UserPatchSelf>,
) -> ApiResult<Json<Value>> {
    // Someone who finds a signed-in console must not be able to take the account over.
    if patch.password.is_some() {
        let Some(current) = patch.current_password.as_deref() else {
            return Err(ApiError::new(
                ErrorCode::CurrentPasswordRequired,
                "current_password: give your current password to set a new one",
            ));
        };
        if current.chars().count() > crate::passwords::MAX_PASSWORD_CHARS
            || !state.passwords.verify(current, Some(user.password_hash.clone())).await?
        {
            return Err(ApiError::new(
                ErrorCode::WrongCurrentPassword,
                "current_password: that is not your current password",
            ));
        }
    }
    let id = user.id.clone();
    crate::routes::users::apply_patch(&state, &user, &id, patch.into()).await
}

pub async fn list_tokens(State(state): State<AppState>, CurrentUser(user): CurrentUser) -> ApiResult<Json<Value>> {
    let tokens = state.store.list_tokens(&user.id).await?;
    Ok(Json(json!(views::list(&tokens, tokens.len() as i64, views::token))))
}

pub async fn revoke_token(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let mut entry = audit_entry(&user, None, AuditAction::TokenRevoke, "api_token", "", json!({}));
    entry.resource_id = id.clone();
    state.store.revoke_token(&user.id, &id, &entry).await.map_err(|e| match e {
        store::StoreError::NotFound(_) => ApiError::new(ErrorCode::TokenNotFound, "no such API token of yours"),
        other => other.into(),
    })?;
    Ok(StatusCode::NO_CONTENT)
}
