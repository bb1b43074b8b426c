//! Webhooks: a project's receivers of delivery and drift events, their test button and the log of
//! their calls. Sending is `crate::webhooks`; enqueueing is the store's, with each change.

use api_types::{NewWebhook, WebhookCall};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use domain::audit::AuditAction;
use domain::webhook::Subscription;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiJson, CurrentUser, Project, Query};
use crate::routes::{audit_entry, created};
use crate::views;

/// The most webhooks one project holds.
const MAX_WEBHOOKS: usize = 20;
const MAX_URL: usize = 2048;
const SECRET_LENGTH: std::ops::RangeInclusive<usize> = 16..=256;

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidWebhook, message)
}

fn webhook_view(hook: &store::Webhook, secret: Option<String>) -> api_types::Webhook {
    api_types::Webhook {
        id: hook.id.clone(),
        url: hook.url.clone(),
        events: hook.subscription.names(),
        created_by: hook.created_by.clone(),
        created_at: hook.created_at,
        secret,
    }
}

fn call_view(call: &store::WebhookCall) -> WebhookCall {
    WebhookCall {
        id: call.id.clone(),
        event: call.event,
        state: call.state,
        attempts: call.attempts,
        status_code: call.last_status,
        error: call.last_error.clone(),
        created_at: call.created_at,
        // A new call is stored due "at once" (0): it is due from when it was made. An ended
        // call has none.
        next_at: call.next_at.map(|at| at.max(call.created_at)),
        finished_at: call.finished_at,
        body: serde_json::from_str(&call.body).unwrap_or(Value::Null),
    }
}

/// `GET .../webhooks`.
pub async fn list(State(state): State<AppState>, Path(project_id): Path<String>) -> ApiResult<Json<Value>> {
    let hooks = state.store.webhooks(&project_id).await?;
    Ok(Json(json!(views::list(&hooks, hooks.len() as i64, |h| webhook_view(h, None)))))
}

/// `POST .../webhooks`: checked (URL and its network policy, secret, events) before it is stored;
/// the answer holds the secret, the only time it is shown.
pub async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Project(scope): Project,
    Path(project_id): Path<String>,
    ApiJson(body): ApiJson<NewWebhook>,
) -> ApiResult<(StatusCode, Json<api_types::Webhook>)> {
    let url = checked_url(&state, &body.url).await?;
    let secret = match body.secret {
        Some(secret) if SECRET_LENGTH.contains(&secret.chars().count()) => secret,
        Some(_) => return Err(invalid("secret: 16 to 256 characters (or leave it out to get one made)")),
        None => crate::crypto::new_token("whsec_"),
    };
    let subscription = Subscription::parse(&body.events).map_err(invalid)?;
    if state.store.webhooks(&project_id).await?.len() >= MAX_WEBHOOKS {
        return Err(ApiError::new(
            ErrorCode::TooManyWebhooks,
            format!("a project holds at most {MAX_WEBHOOKS} webhooks"),
        ));
    }
    let hook = store::Webhook {
        id: store::new_id(),
        project_id,
        url,
        secret_sealed: state.secrets.seal(&secret),
        subscription,
        created_by: user.username.clone(),
        created_at: state.config.clock.now_ms(),
    };
    let details = json!({"url": hook.url, "events": hook.subscription.names()});
    let mut entry = audit_entry(&user, Some(&scope.scope), AuditAction::WebhookCreate, "webhook", &hook.url, details);
    entry.resource_id = hook.id.clone();
    state.store.create_webhook(&hook, &entry).await?;
    Ok(created(webhook_view(&hook, Some(secret))))
}

/// An `http(s)` URL whose host the network policy allows (its addresses as they resolve now; the
/// sender checks again on every call).
async fn checked_url(state: &AppState, text: &str) -> ApiResult<String> {
    let text = text.trim();
    if text.len() > MAX_URL {
        return Err(invalid(format!("url: at most {MAX_URL} characters")));
    }
    let url = url::Url::parse(text).map_err(|e| invalid(format!("url: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid("url: an http:// or https:// address with a host"));
    }
    crate::network::check_endpoint(state.engine.client().policy(), url.as_str()).await.map_err(|refused| {
        let reason = refused.message.strip_prefix("endpoint: ").unwrap_or(&refused.message).to_owned();
        invalid(format!("url: {reason}")).with_details(json!({"field": "url"}))
    })?;
    Ok(url.to_string())
}

/// `DELETE .../webhooks/{id}`: calls not sent yet are dropped with it.
pub async fn delete(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Project(scope): Project,
    Path((project_id, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let hook = state.store.webhook(&project_id, &id).await?;
    let mut entry = audit_entry(&user, Some(&scope.scope), AuditAction::WebhookDelete, "webhook", &hook.url, json!({}));
    entry.resource_id = id.clone();
    state.store.delete_webhook(&project_id, &id, &entry).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST .../webhooks/{id}/test`: sends a `ping` now and answers how it went (it is not tried
/// again; it is listed with the webhook's calls).
pub async fn test(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Project(scope): Project,
    Path((project_id, id)): Path<(String, String)>,
) -> ApiResult<Json<WebhookCall>> {
    let hook = state.store.webhook(&project_id, &id).await?;
    // Not appended to the audit: the ping's own call log records it.
    let details = json!({"events": hook.subscription.names()});
    let mut about = audit_entry(&user, Some(&scope.scope), AuditAction::WebhookTest, "webhook", &hook.url, details);
    about.resource_id = hook.id.clone();
    let call = state.store.add_ping(&hook, &about).await?;
    let call_id = call.id.clone();
    let due = store::DueCall { call, url: hook.url.clone(), secret_sealed: hook.secret_sealed.clone() };
    let done = crate::webhooks::try_call(&state, &due, false).await;
    state.store.record_webhook_try(&call_id, &done).await?;
    Ok(Json(call_view(&state.store.webhook_call(&call_id).await?)))
}

/// `GET .../webhooks/{id}/deliveries`: the webhook's calls, newest first.
pub async fn calls(
    State(state): State<AppState>,
    Path((project_id, id)): Path<(String, String)>,
    query: Query,
) -> ApiResult<Json<Value>> {
    let page = query.only(&["limit", "offset"])?.page()?;
    let hook = state.store.webhook(&project_id, &id).await?;
    let (calls, total) = state.store.webhook_calls(&hook.id, page.limit, page.offset).await?;
    Ok(Json(json!(views::list(&calls, total, call_view))))
}
