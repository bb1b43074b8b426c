//! Controlling a delivery while it runs: approve, pause, resume, abort. Each is one conditional
//! change in the store with its audit record; the engine then does what the new state says.

use api_types::RolloutEvent;
use axum::Json;
use axum::extract::{Path, State};
use domain::access::Outcome;
use domain::audit::AuditAction;
use domain::delivery::DeliveryState;
use serde_json::{Value, json};
use store::Delivery;

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{CurrentUser, Project};
use crate::routes::audit_entry;
use crate::routes::deliveries::{control_entry, delivery_body};

/// `POST .../deliveries/{id}/approve`: one more project admin approves; once the project's number
/// of approvals (each valid 24 hours) is reached the delivery starts, or waits for its `start_at`.
/// The creator cannot approve their own delivery; refusals are audited.
pub async fn approve(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Project(scope): Project,
    Path((project_id, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let delivery = state.store.get_delivery(&project_id, &id).await?;
    let entry = |outcome: Outcome, details: Value| {
        let mut entry = control_entry(&user, &scope, AuditAction::DeliveryApprove, &delivery, details);
        entry.outcome = outcome;
        entry
    };
    let refuse = |code: ErrorCode, message: String| {
        let record = entry(Outcome::Denied, json!({"reason": message}));
        let state = state.clone();
        async move {
            if let Err(err) = state.store.append_audit(&record).await {
                tracing::warn!(error = %err, "cannot audit a refused approval");
            }
            Err::<Json<Value>, ApiError>(ApiError::new(code, message))
        }
    };
    if delivery.state != DeliveryState::AwaitingApproval {
        return refuse(
            ErrorCode::NotAwaitingApproval,
            format!("the delivery is {}; only a delivery awaiting approval can be approved", delivery.state),
        )
        .await;
    }
    if delivery.created_by == user.username {
        return refuse(
            ErrorCode::CreatorCannotApprove,
            "you created this delivery; another project admin must approve it".into(),
        )
        .await;
    }
    let now = state.config.clock.now_ms();
    let approvals = state.store.approvals_of(&id).await?;
    if approvals.iter().any(|a| a.user_id == user.id && a.at > now - store::APPROVAL_LIFETIME_MS) {
        return refuse(ErrorCode::AlreadyApproved, "your approval of this delivery already counts".into()).await;
    }
    let record = entry(Outcome::Success, json!({}));
    let Some(outcome) = state.store.approve_delivery(&id, &user.id, &user.username, now, &record).await? else {
        return refuse(ErrorCode::NotAwaitingApproval, "the delivery no longer awaits approval".into()).await;
    };
    let event = RolloutEvent::Approved {
        by: user.username.clone(),
        approvals: outcome.approvals,
        required: delivery.approvals_required,
        state: outcome.state,
    };
    state.engine.announce(&id, event).await;
    if outcome.state == DeliveryState::Running {
        state.engine.start(&id);
    }
    let delivery = state.store.get_delivery(&project_id, &id).await?;
    Ok(Json(delivery_body(&state, &delivery).await?))
}

/// `POST .../deliveries/{id}/pause`: no target starts until it is resumed; targets under way finish.
pub async fn pause(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Project(scope): Project,
    Path((project_id, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let delivery = state.store.get_delivery(&project_id, &id).await?;
    let wave = delivery.shown_waves().0;
    let entry = control_entry(&user, &scope, AuditAction::DeliveryPause, &delivery, json!({"wave": wave}));
    if delivery.abort_reason.is_some() || !state.store.pause_delivery(&id, None, Some(&entry)).await? {
        return Err(ApiError::new(
            ErrorCode::CannotPause,
            format!("the delivery is {}; only a running delivery can be paused", shown_state(&delivery)),
        ));
    }
    let reason = format!("paused by {}", user.username);
    state.engine.announce(&id, RolloutEvent::Paused { wave, by: user.username.clone(), reason }).await;
    let delivery = state.store.get_delivery(&project_id, &id).await?;
    Ok(Json(delivery_body(&state, &delivery).await?))
}

/// `POST .../deliveries/{id}/resume`: a paused delivery goes on (with the next wave when the
/// current one is done: a manual gate's release); a scheduled one starts now.
pub async fn resume(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Project(scope): Project,
    Path((project_id, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let delivery = state.store.get_delivery(&project_id, &id).await?;
    let entry = control_entry(
        &user,
        &scope,
        AuditAction::DeliveryResume,
        &delivery,
        json!({"from": delivery.state, "wave": delivery.shown_waves().0}),
    );
    let Some(wave) = state.store.resume_delivery(&id, &entry).await? else {
        return Err(ApiError::new(
            ErrorCode::NotPaused,
            format!("the delivery is {}; only a paused or scheduled delivery can be resumed", delivery.state),
        ));
    };
    let resumed = state.store.get_delivery(&project_id, &id).await?;
    let shown = resumed.shown_waves().0;
    state.engine.announce(&id, RolloutEvent::Resumed { wave: shown, by: user.username.clone() }).await;
    if resumed.rollout.is_some() && (wave != delivery.wave || delivery.state == DeliveryState::Scheduled) {
        let waves = resumed.wave_ends.len() as u32;
        state.engine.announce(&id, RolloutEvent::WaveStarted { wave: shown, waves }).await;
    }
    state.engine.start(&id);
    Ok(Json(delivery_body(&state, &resumed).await?))
}

/// `POST .../deliveries/{id}/abort`: targets not started end `canceled`, targets under way finish,
/// and the delivery ends `aborted` (with its rollback when its rollout says `on_abort: rollback`).
pub async fn abort(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Project(scope): Project,
    Path((project_id, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let delivery = state.store.get_delivery(&project_id, &id).await?;
    if delivery.state.is_final() {
        return Err(ApiError::new(
            ErrorCode::DeliveryFinished,
            format!("the delivery already ended ({})", delivery.state),
        ));
    }
    let wave = delivery.shown_waves().0;
    let reason = match wave {
        0 => format!("aborted by {}", user.username),
        n => format!("rollout aborted at wave {n} by {}", user.username),
    };
    let entry =
        control_entry(&user, &scope, AuditAction::DeliveryAbort, &delivery, json!({"reason": reason, "wave": wave}));
    if state.store.abort_delivery(&id, &reason, &entry).await?.is_none() {
        return Err(ApiError::new(ErrorCode::DeliveryFinished, "the delivery already ended or was aborted"));
    }
    state.engine.announce(&id, RolloutEvent::Aborted { wave, reason, by: user.username.clone() }).await;
    // A runner closes it (at once when nothing is under way), on this replica or another.
    state.engine.start(&id);
    let delivery = state.store.get_delivery(&project_id, &id).await?;
    Ok(Json(delivery_body(&state, &delivery).await?))
}

/// `running (being aborted)` reads better than a bare state in a refusal.
fn shown_state(delivery: &Delivery) -> String {
    match &delivery.abort_reason {
        Some(_) => format!("{} (being aborted)", delivery.state),
        None => delivery.state.to_string(),
    }
}

/// The most maintenance windows one project holds.
const MAX_WINDOWS: usize = 100;

/// A stored window as the API shows it, with its next opening (or the current one's end) as of `now`.
fn window_view(window: &store::MaintenanceWindow, now: i64) -> api_types::MaintenanceWindow {
    let parsed = domain::window::Window::parse(&window.cron, window.duration_minutes, &window.timezone).ok();
    let open_until = parsed.as_ref().and_then(|w| w.open_until(now));
    let next_opening = parsed.as_ref().and_then(|w| w.next_opening(now));
    api_types::MaintenanceWindow {
        id: window.id.clone(),
        name: window.name.clone(),
        tag: window.tag.clone(),
        cron: window.cron.clone(),
        duration_minutes: window.duration_minutes,
        timezone: window.timezone.clone(),
        created_by: window.created_by.clone(),
        created_at: window.created_at,
        next_opening: next_opening.map(domain::edge::utc_text),
        open_until: open_until.map(domain::edge::utc_text),
    }
}

/// `GET .../maintenance-windows`.
pub async fn list_windows(State(state): State<AppState>, Path(project_id): Path<String>) -> ApiResult<Json<Value>> {
    let windows = state.store.windows(&project_id).await?;
    let now = state.config.clock.now_ms();
    let items: Vec<api_types::MaintenanceWindow> = windows.iter().map(|w| window_view(w, now)).collect();
    Ok(Json(json!({"items": items, "total": items.len()})))
}

/// `POST .../maintenance-windows`: checked (cron, duration, time zone, name, tag) before it is stored.
pub async fn create_window(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Project(scope): Project,
    Path(project_id): Path<String>,
    crate::extract::ApiJson(body): crate::extract::ApiJson<api_types::NewMaintenanceWindow>,
) -> ApiResult<(axum::http::StatusCode, Json<Value>)> {
    let invalid = |m: String| ApiError::new(ErrorCode::InvalidWindow, m);
    let name = domain::text::check_name("name: a window name", &body.name, 100).map_err(invalid)?;
    let tag = match body.tag.as_deref().filter(|t| !t.is_empty()) {
        Some(tag) => domain::import::checked_tags(&[tag.to_owned()]).map_err(invalid)?.remove(0),
        None => String::new(),
    };
    let timezone = body.timezone.clone().unwrap_or_else(|| "UTC".into());
    if body.cron.len() > 100 {
        return Err(invalid("cron: at most 100 characters".into()));
    }
    domain::window::Window::parse(&body.cron, body.duration_minutes, &timezone).map_err(invalid)?;
    if state.store.windows(&project_id).await?.len() >= MAX_WINDOWS {
        return Err(ApiError::new(
            ErrorCode::TooManyWindows,
            format!("a project holds at most {MAX_WINDOWS} maintenance windows"),
        ));
    }
    let window = store::MaintenanceWindow {
        id: store::new_id(),
        project_id: project_id.clone(),
        name,
        tag,
        cron: body.cron.split_whitespace().collect::<Vec<_>>().join(" "),
        duration_minutes: body.duration_minutes,
        timezone,
        created_by: user.username.clone(),
        created_at: state.config.clock.now_ms(),
    };
    let details = json!({"tag": window.tag, "cron": window.cron, "duration_minutes": window.duration_minutes,
                         "timezone": window.timezone});
    let mut entry =
        audit_entry(&user, Some(&scope.scope), AuditAction::WindowCreate, "maintenance_window", &window.name, details);
    entry.resource_id = window.id.clone();
    state.store.create_window(&window, &entry).await?;
    Ok(crate::routes::created(json!(window_view(&window, state.config.clock.now_ms()))))
}

/// `DELETE .../maintenance-windows/{id}`.
pub async fn delete_window(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Project(scope): Project,
    Path((project_id, id)): Path<(String, String)>,
) -> ApiResult<axum::http::StatusCode> {
    let name = state.store.windows(&project_id).await?.into_iter().find(|w| w.id == id).map(|w| w.name);
    let mut entry = audit_entry(
        &user,
        Some(&scope.scope),
        AuditAction::WindowDelete,
        "maintenance_window",
        name.as_deref().unwrap_or(""),
        json!({}),
    );
    entry.resource_id = id.clone();
    state.store.delete_window(&project_id, &id, &entry).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
