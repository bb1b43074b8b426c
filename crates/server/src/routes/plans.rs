//! Plans, applying them, rollbacks, and one target's detail: deliveries made from deliveries.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use domain::audit::AuditAction;
use domain::delivery::{DeliveryMode, TargetStatus};
use serde_json::{Value, json};
use store::NewDelivery;

use crate::AppState;
use crate::engine::derive::derived_delivery;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiJson, CurrentUser, Project};
use crate::metrics::Metrics;
use crate::routes::audit_entry;
use crate::routes::deliveries::{
    checked_options, checked_rollout, checked_start_at, delivery_body, ensure_room, first_state, into_waves,
    resolve_targets,
};
use crate::views;

/// `POST .../deliveries/{plan_id}/apply`: a new `apply` delivery of the plan's content to the plan's
/// targets. A target whose objects changed since the plan read them fails with
/// `changed_since_plan` and nothing written, unless `force`.
pub async fn apply_plan(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Project(scope): Project,
    Path((project_id, id)): Path<(String, String)>,
    ApiJson(request): ApiJson<api_types::ApplyPlan>,
) -> ApiResult<impl IntoResponse> {
    let plan = state.store.get_delivery(&project_id, &id).await?;
    if plan.mode != DeliveryMode::Plan {
        return Err(ApiError::new(
            ErrorCode::NotAPlan,
            format!("delivery {id} is a `{}` delivery, not a plan", plan.mode),
        ));
    }
    if !plan.state.is_final() {
        return Err(ApiError::new(
            ErrorCode::DeliveryRunning,
            format!("the plan is still {}; apply it once it ends", plan.state),
        ));
    }
    let options = match &request.options {
        Some(options) => json!(checked_options(Some(options))?),
        None => plan.options.clone(),
    };
    let (targets, _) = state.store.list_targets(&id, None, i64::MAX, 0).await?;
    let ids: Vec<String> = targets.into_iter().map(|t| t.edge_id).collect();
    checked_rollout(request.rollout.as_ref(), DeliveryMode::Apply)?;
    let start_at = checked_start_at(request.start_at.as_deref())?;
    let details = json!({"plan_id": id, "force": request.force, "options": options, "rollout": request.rollout,
                         "start_at": request.start_at});
    let mut new =
        derived_delivery(&plan, DeliveryMode::Apply, options, Some(id.clone()), None, request.force, &user.username);
    // Carrying a plan out is an apply like any other: the project's approvals, a schedule, waves.
    new.approvals_required = state.store.project_approvals(&project_id).await?;
    new.start_at = start_at;
    new.state = first_state(&state, new.approvals_required, start_at);
    new.rollout = request.rollout.clone();
    start_derived(&state, &user, &scope, new, &ids, AuditAction::DeliveryApplyPlan, details).await
}

/// `POST .../deliveries/{id}/rollback`: a new `rollback` delivery that puts each chosen target
/// back as the delivery's snapshot holds it. A target changed since the delivery fails with
/// `changed_since_delivery` unless `force`.
pub async fn rollback(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Project(scope): Project,
    Path((project_id, id)): Path<(String, String)>,
    ApiJson(request): ApiJson<api_types::RollbackRequest>,
) -> ApiResult<impl IntoResponse> {
    let source = state.store.get_delivery(&project_id, &id).await?;
    if source.mode == DeliveryMode::Plan {
        return Err(ApiError::new(ErrorCode::CannotRollBack, "a plan wrote nothing; there is nothing to roll back"));
    }
    if !source.state.is_final() {
        return Err(ApiError::new(
            ErrorCode::DeliveryRunning,
            format!("the delivery is still {}; roll it back once it ends", source.state),
        ));
    }
    let recorded = state.store.targets_with_snapshots(&id).await?;
    let chosen: Vec<String> = match request.targets.as_ref().unwrap_or(&json!("all")) {
        Value::String(all) if all == "all" => recorded.into_iter().map(|(edge, _)| edge).collect(),
        Value::String(succeeded) if succeeded == "succeeded" => recorded
            .into_iter()
            .filter(|(_, status)| *status == TargetStatus::Succeeded)
            .map(|(edge, _)| edge)
            .collect(),
        Value::Array(ids) => {
            let wanted: BTreeSet<&str> = ids.iter().filter_map(Value::as_str).collect();
            if wanted.len() != ids.len() {
                return Err(ApiError::new(ErrorCode::InvalidTargets, "targets: a list of edge-service ids (text)"));
            }
            recorded.into_iter().map(|(edge, _)| edge).filter(|edge| wanted.contains(edge.as_str())).collect()
        }
        _ => {
            return Err(ApiError::new(
                ErrorCode::InvalidTargets,
                "targets: \"all\", \"succeeded\" or a list of edge-service ids",
            ));
        }
    };
    if chosen.is_empty() {
        return Err(ApiError::new(
            ErrorCode::NothingToRollBack,
            "no chosen target of this delivery recorded a snapshot (none got as far as writing)",
        ));
    }
    let details = json!({"rollback_of": id, "force": request.force, "targets": chosen.len()});
    let options = source.options.clone();
    let new = derived_delivery(
        &source,
        DeliveryMode::Rollback,
        options,
        None,
        Some(id.clone()),
        request.force,
        &user.username,
    );
    start_derived(&state, &user, &scope, new, &chosen, AuditAction::DeliveryRollback, details).await
}

/// Stores and starts a derived delivery to the edge services `edge_ids` (as they are now).
pub(super) async fn start_derived(
    state: &AppState,
    user: &store::User,
    scope: &crate::access::ProjectAccess,
    new: NewDelivery,
    edge_ids: &[String],
    action: AuditAction,
    details: Value,
) -> ApiResult<(StatusCode, Json<Value>)> {
    ensure_room(state, &new.project_id).await?;
    let mut targets = resolve_targets(&state.store, &new.project_id, &json!({"ids": edge_ids})).await?;
    let mut new = new;
    if let Some(rollout) = &new.rollout {
        new.wave_ends = into_waves(&new.id, rollout, &mut targets);
    }
    let mut entry = audit_entry(user, Some(&scope.scope), action, "delivery", &new.template_name, details);
    entry.resource_id = new.id.clone();
    let delivery = state.store.create_delivery(&new, &targets, &entry).await?;
    Metrics::inc(&state.metrics.deliveries_started);
    if delivery.state == domain::delivery::DeliveryState::Running {
        state.engine.start(&delivery.id);
    }
    Ok((StatusCode::ACCEPTED, Json(delivery_body(state, &delivery).await?)))
}

/// Targets read per page while a plan is summarized: the summary holds only groups, so a plan of
/// 100,000 targets is read in pages, never held whole.
const PLAN_PAGE: i64 = 2000;

/// `GET .../deliveries/{id}/plan`: the plan's changes, targets with the same change set grouped.
pub async fn plan(
    State(state): State<AppState>,
    Path((project_id, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let delivery = state.store.get_delivery(&project_id, &id).await?;
    if delivery.mode != DeliveryMode::Plan {
        return Err(ApiError::new(
            ErrorCode::NotAPlan,
            format!("delivery {id} is a `{}` delivery; start one with \"mode\": \"plan\" to see a plan", delivery.mode),
        ));
    }
    let mut summarizer = domain::plan::Summarizer::default();
    let mut pending = 0;
    let mut offset = 0;
    loop {
        let (page, total) = state.store.list_targets(&id, None, PLAN_PAGE, offset).await?;
        for target in &page {
            match target.status {
                TargetStatus::Succeeded => {
                    let changes: Vec<domain::plan::Change> =
                        serde_json::from_value(target.items.clone()).map_err(ApiError::internal)?;
                    summarizer.add(&target.edge_id, &target.name, Ok(&changes));
                }
                TargetStatus::Pending | TargetStatus::Running => pending += 1,
                TargetStatus::Failed | TargetStatus::Canceled | TargetStatus::Skipped => {
                    summarizer.add(&target.edge_id, &target.name, Err(&target.reason));
                }
            }
        }
        offset += page.len() as i64;
        if page.is_empty() || offset >= total {
            break;
        }
    }
    let (summary, groups, unreachable) = summarizer.finish();
    let view = api_types::PlanView { delivery_id: id, state: delivery.state, pending, summary, groups, unreachable };
    Ok(Json(json!(view)))
}

/// `GET .../deliveries/{id}/targets/{edge_id}`: one target, its snapshot opened with secret values
/// masked, and a plan target's changes.
pub async fn target(
    State(state): State<AppState>,
    Path((project_id, id, edge_id)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let delivery = state.store.get_delivery(&project_id, &id).await?;
    let Some(row) = state.store.get_target(&id, &edge_id).await? else {
        return Err(ApiError::new(ErrorCode::TargetNotFound, format!("delivery {id} has no target {edge_id}")));
    };
    let snapshot = match &row.snapshot {
        Some(Value::String(sealed)) => {
            let plain = state.secrets.open(sealed).map_err(ApiError::internal)?;
            let entries: Value = serde_json::from_str(&plain).map_err(ApiError::internal)?;
            Some(domain::secrets::mask_credentials(&entries))
        }
        Some(_) => return Err(ApiError::internal("a stored snapshot is not sealed")),
        None => None,
    };
    let changes = match (delivery.mode, row.status) {
        (DeliveryMode::Plan, TargetStatus::Succeeded) => {
            serde_json::from_value(row.items.clone()).map_err(ApiError::internal)?
        }
        _ => Vec::new(),
    };
    let detail = api_types::DeliveryTargetDetail { target: views::target(&row), snapshot, changes };
    Ok(Json(json!(detail)))
}
