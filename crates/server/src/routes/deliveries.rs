//! Deliveries: start (targets resolved and parameters checked before anything is sent), history,
//! results per target, live events, cancel and retry.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use domain::audit::AuditAction;
use domain::delivery::{Counts, DeliveryKind, DeliveryMode, DeliveryOptions, DeliveryState, TargetStatus};
use domain::filter::EdgeFilter;
use domain::params::{self, ParamValues};
use domain::template::{self, TemplateKind};
use serde_json::{Value, json};
use store::{Delivery, NewDelivery, NewTarget, Store};

use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::AppState;
use crate::access::Role;
use crate::crypto::sha256_hex;
use crate::engine::hub::{Batch, DeliveryEvent, Published};
use crate::engine::split_params;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiJson, CredentialHash, CurrentUser, Project, Query};
use crate::metrics::Metrics;
use crate::routes::audit_entry;
use crate::routes::templates::checked_content;
use crate::views;
use bytes::Bytes;

const TARGETS_SHAPES: &str =
    "targets: give {\"ids\": [...]}, {\"filter\": {...}} or {\"all\": true} (the last two may add \"exclude\": [ids])";

/// The most ids `targets.exclude` may list (a console's "select all matching" less a few).
const MAX_EXCLUDED: usize = 10_000;

/// At most this many examples are listed when parameters are missing for many targets.
const MISSING_EXAMPLES: usize = 20;

use api_types::NewDelivery as NewDeliveryRequest;

/// The audit record of `user` acting on `delivery` (cancel, retry, approve, pause, ...).
pub(super) fn control_entry(
    user: &store::User,
    scope: &crate::access::ProjectAccess,
    action: AuditAction,
    delivery: &Delivery,
    details: Value,
) -> store::AuditEntry {
    let mut entry = audit_entry(user, Some(&scope.scope), action, "delivery", &delivery.template_name, details);
    entry.resource_id = delivery.id.clone();
    entry
}

/// A delivery as answered: its stored counts and, when it has any, its approvals.
pub(super) async fn delivery_body(state: &AppState, delivery: &Delivery) -> Result<Value, ApiError> {
    let counts = state.store.delivery_counts(&delivery.id).await?;
    let approvals = state.store.approvals_of(&delivery.id).await?;
    Ok(json!(views::delivery(delivery, &counts, &approvals, state.config.clock.now_ms())))
}

pub async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Project(scope): Project,
    Path(project_id): Path<String>,
    ApiJson(request): ApiJson<NewDeliveryRequest>,
) -> ApiResult<impl IntoResponse> {
    let payload = match (&request.template_id, &request.plugin_id) {
        (Some(_), Some(_)) => {
            return Err(ApiError::new(ErrorCode::InvalidDelivery, "give template_id or plugin_id, not both"));
        }
        (None, None) => {
            return Err(ApiError::new(
                ErrorCode::MissingTemplate,
                "template_id: say which template (or plugin_id: which plugin) to deliver",
            ));
        }
        (Some(template_id), None) => template_payload(&state, &project_id, template_id, &request).await?,
        (None, Some(plugin_id)) => {
            if request.content.is_some() || request.version.is_some() || request.params.is_some() {
                return Err(ApiError::new(
                    ErrorCode::InvalidDelivery,
                    "a plugin delivery takes no content, version or params",
                ));
            }
            let plugin = state.store.get_plugin(&project_id, plugin_id).await?;
            Payload {
                kind: DeliveryKind::Plugin,
                template_id: None,
                plugin_id: Some(plugin.id.clone()),
                name: plugin.name.clone(),
                version: None,
                template_kind: None,
                content: plugin.manifest.to_string(),
                content_sha256: plugin.sha256.clone(),
                content_edited: false,
                normalized: None,
            }
        }
    };
    let options = checked_options(request.options.as_ref())?;
    let mode = request.mode.unwrap_or(DeliveryMode::Apply);
    if mode == DeliveryMode::Plan && request.dry_run {
        return Err(ApiError::new(
            ErrorCode::InvalidDelivery,
            "a plan writes nothing already and reads every target; dry_run (which contacts no edge) is for apply",
        ));
    }
    let start_at = checked_start_at(request.start_at.as_deref())?;
    checked_rollout(request.rollout.as_ref(), mode)?;
    ensure_room(&state, &project_id).await?;
    let params = checked_params(request.params.as_ref())?;
    let targets = resolve_targets(&state.store, &project_id, &request.targets).await?;
    let max_targets = state.config.max_targets;
    if targets.len() > max_targets {
        return Err(ApiError::new(
            ErrorCode::TooManyTargets,
            format!("{} targets; one delivery takes at most {max_targets} (split it by tag or filter)", targets.len()),
        )
        .with_details(json!({"limit": max_targets, "targets": targets.len()})));
    }
    // One check per target (up to `max_targets` of them): on the blocking pool.
    let (mut targets, params) = match payload.normalized.clone() {
        Some(normalized) => tokio::task::spawn_blocking(move || {
            check_params_cover_targets(&normalized, &params, &targets).map(|()| (targets, params))
        })
        .await
        .map_err(ApiError::internal)??,
        None => (targets, params),
    };
    // Values of `${secret:...}` parameters are stored sealed and never shown again.
    let secret_names = payload.normalized.as_ref().map(params::secret_names).unwrap_or_default();
    let params = crate::secret_params::seal(&params, &secret_names, &state.secrets);
    let id = store::new_id();
    let wave_ends = match &request.rollout {
        Some(rollout) => into_waves(&id, rollout, &mut targets),
        None => Vec::new(),
    };
    let approvals_required =
        if mode == DeliveryMode::Plan { 0 } else { state.store.project_approvals(&project_id).await? };
    let first_state = match start_at {
        _ if approvals_required > 0 => DeliveryState::AwaitingApproval,
        Some(at) if at > state.config.clock.now_ms() => DeliveryState::Scheduled,
        _ => DeliveryState::Running,
    };
    let new = NewDelivery {
        id,
        project_id: project_id.clone(),
        kind: payload.kind,
        template_id: payload.template_id.clone(),
        template_name: payload.name.clone(),
        template_version: payload.version,
        template_kind: payload.template_kind,
        plugin_id: payload.plugin_id.clone(),
        content: payload.content.clone(),
        content_sha256: payload.content_sha256.clone(),
        content_edited: payload.content_edited,
        params: params.clone(),
        options: json!(options),
        dry_run: request.dry_run,
        mode,
        plan_id: None,
        rollback_of: None,
        force: false,
        created_by: user.username.clone(),
        state: first_state,
        rollout: request.rollout.clone(),
        wave_ends: wave_ends.clone(),
        start_at,
        approvals_required,
        first_rollback_only: false,
    };
    let details = json!({
        "template_id": payload.template_id, "template_version": payload.version, "plugin_id": payload.plugin_id,
        "kind": match (payload.kind, payload.template_kind) {
            (DeliveryKind::Template, Some(kind)) => kind.as_str(),
            (kind, _) => kind.as_str(),
        },
        "content_sha256": payload.content_sha256, "content_edited": payload.content_edited, "targets": targets.len(),
        "dry_run": request.dry_run, "mode": mode, "options": options, "rollout": request.rollout,
        "wave_ends": wave_ends, "start_at": request.start_at, "approvals_required": approvals_required,
        "state": first_state,
    });
    let mut entry =
        audit_entry(&user, Some(&scope.scope), AuditAction::DeliveryStart, "delivery", &payload.name, details);
    entry.resource_id = new.id.clone();
    let delivery = state.store.create_delivery(&new, &targets, &entry).await?;
    Metrics::inc(&state.metrics.deliveries_started);
    if delivery.state == DeliveryState::Running {
        state.engine.start(&delivery.id);
    }
    Ok((StatusCode::ACCEPTED, Json(delivery_body(&state, &delivery).await?)))
}

/// Where a new delivery begins: waiting for approvals, for its start time, or running.
pub(super) fn first_state(state: &AppState, approvals_required: i64, start_at: Option<i64>) -> DeliveryState {
    match start_at {
        _ if approvals_required > 0 => DeliveryState::AwaitingApproval,
        Some(at) if at > state.config.clock.now_ms() => DeliveryState::Scheduled,
        _ => DeliveryState::Running,
    }
}

/// `rollout` checked for a delivery of `mode`: waves are for `apply` deliveries only.
pub(super) fn checked_rollout(rollout: Option<&domain::rollout::Rollout>, mode: DeliveryMode) -> Result<(), ApiError> {
    let Some(rollout) = rollout else {
        return Ok(());
    };
    if mode != DeliveryMode::Apply {
        return Err(ApiError::new(
            ErrorCode::InvalidRollout,
            "rollout: waves are for `apply` deliveries (a plan reads every target at once and writes nothing)",
        ));
    }
    rollout.check().map_err(|m| ApiError::new(ErrorCode::InvalidRollout, m))
}

/// How far ahead a delivery may be scheduled.
const MAX_SCHEDULE_AHEAD_MS: i64 = 366 * 24 * 3600 * 1000;

/// `start_at` (RFC 3339) in milliseconds; a time already past means "now".
pub(super) fn checked_start_at(start_at: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(text) = start_at else {
        return Ok(None);
    };
    let bad = |m: String| ApiError::new(ErrorCode::InvalidRollout, m);
    let ms = domain::edge::parse_time(text).map_err(|m| bad(format!("start_at: {m}")))?;
    if ms > store::now_ms() + MAX_SCHEDULE_AHEAD_MS {
        return Err(bad("start_at: at most a year ahead".into()));
    }
    Ok(Some(ms))
}

/// Puts the targets in a random order fixed by the delivery (each wave samples the fleet, and the
/// same delivery always cuts the same waves) and numbers their waves; answers where waves end.
pub(super) fn into_waves(
    delivery_id: &str,
    rollout: &domain::rollout::Rollout,
    targets: &mut [store::NewTarget],
) -> Vec<u64> {
    targets.sort_by_cached_key(|t| sha256_hex(format!("{delivery_id}/{}", t.edge_id).as_bytes()));
    let ends = rollout.wave_ends(targets.len() as u64);
    for (position, target) in targets.iter_mut().enumerate() {
        target.wave = domain::rollout::wave_of(&ends, position as u64) as i64;
    }
    ends
}

/// Refuses a new delivery while the project runs as many as it may at once.
pub(super) async fn ensure_room(state: &AppState, project_id: &str) -> Result<(), ApiError> {
    let running = state.store.running_deliveries(project_id).await?;
    let limit = state.config.max_running_deliveries;
    if running < limit {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::TooManyRunningDeliveries,
        format!("{running} deliveries of this project are running; wait for one to end (at most {limit} at once)"),
    )
    .with_details(json!({"limit": limit, "retry_after_secs": 5})))
}

/// What a delivery sends, read and checked at its start.
struct Payload {
    kind: DeliveryKind,
    template_id: Option<String>,
    plugin_id: Option<String>,
    name: String,
    version: Option<i64>,
    template_kind: Option<TemplateKind>,
    content: String,
    content_sha256: String,
    content_edited: bool,
    /// The normalized template, for the parameter check; none for plugins.
    normalized: Option<Value>,
}

async fn template_payload(
    state: &AppState,
    project_id: &str,
    template_id: &str,
    request: &NewDeliveryRequest,
) -> Result<Payload, ApiError> {
    let template = state.store.get_template(project_id, template_id).await?;
    let kind = template.kind;
    let version =
        state.store.template_version(&template.id, request.version.unwrap_or(template.current_version)).await?;
    let content = request.content.clone().unwrap_or_else(|| Value::String(version.content.clone()));
    let (checked, _) = checked_content(state, kind, content.clone())
        .await
        .map_err(|e| ApiError { message: format!("content: {}", e.message), ..e })?;
    let document =
        template::read_content(&content).map_err(|p| ApiError::new(ErrorCode::InvalidTemplate, p.to_string()))?;
    let content_text = document.to_string();
    let content_sha256 = sha256_hex(content_text.as_bytes());
    let content_edited = request.content.is_some()
        && template::read_content(&Value::String(version.content.clone())).ok() != Some(document);
    Ok(Payload {
        kind: DeliveryKind::Template,
        template_id: Some(template.id.clone()),
        plugin_id: None,
        name: template.name.clone(),
        version: Some(version.version),
        template_kind: Some(kind),
        content: content_text,
        content_sha256,
        content_edited,
        normalized: Some(checked.normalized),
    })
}

pub(super) fn checked_options(options: Option<&Value>) -> Result<DeliveryOptions, ApiError> {
    let options: DeliveryOptions = match options {
        Some(value) => serde_json::from_value(value.clone())
            .map_err(|e| ApiError::new(ErrorCode::InvalidOptions, format!("options: {e}")))?,
        None => DeliveryOptions::default(),
    };
    options.check().map_err(|m| ApiError::new(ErrorCode::InvalidOptions, m))?;
    Ok(options)
}

/// `{"defaults": {name: value}, "targets": {"<edge id or name>": {name: value}}}`.
fn checked_params(params: Option<&Value>) -> Result<Value, ApiError> {
    let Some(params) = params else {
        return Ok(json!({"defaults": {}, "targets": {}}));
    };
    let bad = |m: &str| ApiError::new(ErrorCode::InvalidParams, format!("params: {m}"));
    let object = params.as_object().ok_or_else(|| bad("must be an object with `defaults` and `targets`"))?;
    if let Some(key) = object.keys().find(|k| *k != "defaults" && *k != "targets") {
        return Err(bad(&format!("unknown key `{key}`; use `defaults` and `targets`")));
    }
    let defaults = object.get("defaults").cloned().unwrap_or(json!({}));
    if !defaults.is_object() {
        return Err(bad("`defaults` must be an object of parameter -> value"));
    }
    let targets = object.get("targets").cloned().unwrap_or(json!({}));
    let Some(per_target) = targets.as_object() else {
        return Err(bad("`targets` must be an object of edge id or name -> {parameter: value}"));
    };
    if let Some((key, _)) = per_target.iter().find(|(_, v)| !v.is_object()) {
        return Err(bad(&format!("targets.{key} must be an object of parameter -> value")));
    }
    Ok(json!({"defaults": defaults, "targets": targets}))
}

/// Targets by ids or by filter (less those in `exclude`, with `all` or `filter`), resolved once,
/// now.
pub(super) async fn resolve_targets(
    store: &Store,
    project_id: &str,
    targets: &Value,
) -> Result<Vec<NewTarget>, ApiError> {
    let mut selection = targets.as_object().cloned().unwrap_or_default();
    let Some(exclude) = selection.remove("exclude") else { return resolve_selection(store, project_id, targets).await };
    let exclude: BTreeSet<String> = serde_json::from_value(exclude)
        .map_err(|_| ApiError::new(ErrorCode::InvalidTargets, "targets.exclude: must be a list of edge-service ids"))?;
    if exclude.len() > MAX_EXCLUDED {
        return Err(ApiError::new(
            ErrorCode::InvalidTargets,
            format!("targets.exclude: {} ids; at most {MAX_EXCLUDED}", exclude.len()),
        ));
    }
    if !(selection.contains_key("all") || selection.contains_key("filter")) {
        return Err(ApiError::new(
            ErrorCode::InvalidTargets,
            "targets.exclude goes with {\"all\": true} or {\"filter\": {...}}; with ids, leave them out of the list",
        ));
    }
    let found = resolve_selection(store, project_id, &Value::Object(selection)).await?;
    let kept: Vec<NewTarget> = found.into_iter().filter(|target| !exclude.contains(&target.edge_id)).collect();
    if kept.is_empty() {
        return Err(ApiError::new(ErrorCode::NoTargetsMatch, "every edge service the targets select is excluded"));
    }
    Ok(kept)
}

async fn resolve_selection(store: &Store, project_id: &str, targets: &Value) -> Result<Vec<NewTarget>, ApiError> {
    let object = targets
        .as_object()
        .filter(|o| o.len() == 1)
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidTargets, TARGETS_SHAPES))?;
    if let Some(all) = object.get("all") {
        if all != &Value::Bool(true) {
            return Err(ApiError::new(
                ErrorCode::InvalidTargets,
                "targets.all: only `true` selects every edge service",
            ));
        }
        let found = store.targets_matching(project_id, &EdgeFilter::default()).await?;
        if found.is_empty() {
            return Err(ApiError::new(ErrorCode::NoTargetsMatch, "this project has no edge services"));
        }
        return Ok(found);
    }
    if let Some(ids) = object.get("ids") {
        let ids: Vec<String> = serde_json::from_value(ids.clone())
            .map_err(|_| ApiError::new(ErrorCode::InvalidTargets, "targets.ids: must be a list of edge-service ids"))?;
        let ids: Vec<String> = ids.into_iter().collect::<BTreeSet<_>>().into_iter().collect();
        if ids.is_empty() {
            return Err(ApiError::new(ErrorCode::NoTargets, "targets.ids is empty: pick at least one edge service"));
        }
        let found = store.targets_by_ids(project_id, &ids).await?;
        if found.len() != ids.len() {
            let known: BTreeSet<&str> = found.iter().map(|t| t.edge_id.as_str()).collect();
            let missing: Vec<&String> = ids.iter().filter(|id| !known.contains(id.as_str())).collect();
            return Err(ApiError::new(
                ErrorCode::EdgeServiceNotFound,
                format!("targets.ids: no edge service {} in this project", missing[0]),
            )
            .with_details(json!({"missing": missing})));
        }
        return Ok(found);
    }
    if let Some(filter) = object.get("filter") {
        let filter: EdgeFilter = serde_json::from_value(filter.clone())
            .map_err(|e| ApiError::new(ErrorCode::InvalidTargets, format!("targets.filter: {e}")))?;
        let filter = filter.cleaned();
        filter.check().map_err(|m| ApiError::new(ErrorCode::InvalidTargets, format!("targets.filter: {m}")))?;
        // A typo that empties a filter must not reach the whole fleet.
        if filter.is_empty() {
            return Err(ApiError::new(
                ErrorCode::EmptyFilter,
                "targets.filter is empty and would select every edge service; say {\"all\": true} to mean that",
            ));
        }
        let found = store.targets_matching(project_id, &filter).await?;
        if found.is_empty() {
            return Err(ApiError::new(
                ErrorCode::NoTargetsMatch,
                "targets.filter matches no edge service in this project",
            )
            .with_details(json!({"filter": filter})));
        }
        return Ok(found);
    }
    Err(ApiError::new(ErrorCode::InvalidTargets, TARGETS_SHAPES))
}

/// Every target must have a value for every parameter before anything is sent.
fn check_params_cover_targets(normalized: &Value, params: &Value, targets: &[NewTarget]) -> Result<(), ApiError> {
    let (defaults, per_target) = split_params(params);
    let known: BTreeSet<&str> = targets.iter().flat_map(|t| [t.edge_id.as_str(), t.edge_name.as_str()]).collect();
    if let Some(key) = per_target.keys().find(|k| !known.contains(k.as_str())) {
        return Err(ApiError::new(
            ErrorCode::InvalidParams,
            format!("params.targets: `{key}` is not one of this delivery's targets"),
        ));
    }
    let mut missing = Vec::new();
    let mut count = 0;
    for target in targets {
        let own: Option<&BTreeMap<String, Value>> =
            per_target.get(&target.edge_id).or_else(|| per_target.get(&target.edge_name));
        let values = ParamValues {
            target: own,
            defaults: Some(&defaults),
            builtins: params::edge_builtins(
                &target.edge_id,
                &target.edge_name,
                &target.endpoint,
                target.edge_version.as_deref(),
                &target.tags,
            ),
        };
        let names = params::missing(normalized, &values);
        if !names.is_empty() {
            count += 1;
            if missing.len() < MISSING_EXAMPLES {
                missing.push(json!({"edge_id": target.edge_id, "name": target.edge_name, "parameters": names}));
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let first = &missing[0];
    let names: Vec<&str> = first["parameters"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let message = format!(
        "edge service {}: no value for {} ({count} targets lack values; nothing was sent)",
        first["name"].as_str().unwrap_or_default(),
        names.join(", ")
    );
    Err(ApiError::new(ErrorCode::MissingParameters, message)
        .with_details(json!({"targets_missing": count, "missing": missing})))
}

pub async fn list(
    State(state): State<AppState>,
    Path(project_id): Path<String>,
    query: Query,
) -> ApiResult<Json<Value>> {
    let page = query.only(&["limit", "offset", "state", "template", "created_by"])?.page()?;
    let filter = store::DeliveryListFilter {
        state: query
            .one("state")
            .map(|text| text.parse())
            .transpose()
            .map_err(|m: String| ApiError::new(ErrorCode::BadQuery, format!("state: {m}")))?,
        template: query.one("template"),
        created_by: query.one("created_by"),
    };
    let (deliveries, total) = state.store.list_deliveries(&project_id, &filter, page.limit, page.offset).await?;
    // One counts query for the page, not one per delivery.
    let ids: Vec<String> = deliveries.iter().map(|d| d.id.clone()).collect();
    let counts = state.store.counts_of(&ids).await?;
    let page = views::list(&deliveries, total, |d| {
        views::delivery(d, &counts.get(&d.id).copied().unwrap_or_default(), &[], 0)
    });
    Ok(Json(json!(page)))
}

pub async fn get_one(
    State(state): State<AppState>,
    Project(access): Project,
    Path((project_id, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let delivery = state.store.get_delivery(&project_id, &id).await?;
    let mut body = delivery_body(&state, &delivery).await?;
    let content: Value = serde_json::from_str(&delivery.content).unwrap_or(Value::Null);
    body["content"] = if access.role == Role::Admin { content } else { domain::secrets::mask_credentials(&content) };
    Ok(Json(body))
}

pub async fn targets(
    State(state): State<AppState>,
    Path((project_id, id)): Path<(String, String)>,
    query: Query,
) -> ApiResult<Json<Value>> {
    state.store.get_delivery(&project_id, &id).await?;
    let query = query.only(&["status", "limit", "offset"])?;
    let status = query
        .one("status")
        .map(|s| s.parse::<TargetStatus>())
        .transpose()
        .map_err(|m| ApiError::new(ErrorCode::BadQuery, m))?;
    let page = query.page()?;
    let (items, total) = state.store.list_targets(&id, status, page.limit, page.offset).await?;
    Ok(Json(json!(views::list(&items, total, views::target))))
}

pub async fn cancel(
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
    if delivery.state != DeliveryState::Canceling {
        let entry = control_entry(&user, &scope, AuditAction::DeliveryCancel, &delivery, json!({}));
        state.store.cancel_delivery(&id, &entry).await?;
    }
    state.engine.cancel(&id).await;
    // A runner that is not in this process (or already gone) still closes the delivery.
    state.engine.start(&id);
    let delivery = state.store.get_delivery(&project_id, &id).await?;
    Ok(Json(delivery_body(&state, &delivery).await?))
}

pub async fn retry(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Project(scope): Project,
    Path((project_id, id)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let delivery = state.store.get_delivery(&project_id, &id).await?;
    if !delivery.state.is_final() {
        return Err(ApiError::new(
            ErrorCode::DeliveryRunning,
            format!("the delivery is still {}; retry failed targets once it ends", delivery.state),
        ));
    }
    let counts = state.store.delivery_counts(&id).await?;
    let entry = control_entry(&user, &scope, AuditAction::DeliveryRetry, &delivery, json!({"targets": counts.failed}));
    let retried = state.store.retry_failed(&id, &entry).await?;
    if retried == 0 {
        return Err(ApiError::new(ErrorCode::NothingToRetry, "no target of this delivery failed"));
    }
    state.engine.start(&id);
    let delivery = state.store.get_delivery(&project_id, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(delivery_body(&state, &delivery).await?)))
}

/// Server-Sent Events. A new stream starts with a consistent snapshot (the stored counts, with the
/// number of the latest result as its `id:`), then every result after it exactly once, in order,
/// each with its number as `id:`, count changes, and a `final` event whose counts are the stored
/// ones, after which the stream ends. A client that reconnects with `Last-Event-ID: N` first gets
/// every result numbered after N from the store.
pub async fn events(
    State(state): State<AppState>,
    CredentialHash(credential): CredentialHash,
    Path((project_id, id)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> ApiResult<impl IntoResponse> {
    state.store.get_delivery(&project_id, &id).await?;
    let open = state.metrics.sse_clients.load(std::sync::atomic::Ordering::Relaxed);
    if open >= state.config.max_event_streams {
        return Err(ApiError::new(
            ErrorCode::TooManyEventStreams,
            format!(
                "{open} live-event streams are open on this server; try again shortly or read GET .../deliveries/{{id}}"
            ),
        )
        .with_details(json!({"limit": state.config.max_event_streams, "retry_after_secs": 5})));
    }
    let resume_after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim().parse::<i64>().map_err(|_| {
                ApiError::new(ErrorCode::BadLastEventId, "Last-Event-ID must be the number of an event of this stream")
            })
        })
        .transpose()?
        .map(|n| n.max(0));
    // Subscribe before reading the snapshot, so nothing published in between is missed (what is
    // published before the snapshot is in it, and skipped by number).
    let receiver = state.engine.hub.subscribe(&id);
    let delivery = state.store.get_delivery(&project_id, &id).await?;
    let progress = state.store.delivery_progress(&id).await?;
    let mut watch = Watch {
        pending: std::collections::VecDeque::new(),
        receiver,
        store: state.store.clone(),
        delivery_id: id,
        sent: resume_after.unwrap_or(progress.last_result),
        done: false,
        credential,
        recheck: credential_checks(),
        quiet: false,
        next_due: None,
        guard: ClientGuard::new(Arc::clone(&state.metrics)),
    };
    if resume_after.is_some() {
        watch.catch_up(Some(progress.last_result)).await?;
    }
    watch.push(DeliveryEvent::Counts { counts: progress.counts });
    let shown = views::delivery(&delivery, &progress.counts, &[], 0);
    let standing = api_types::StateEvent {
        state: delivery.state,
        wave: shown.wave,
        waves: shown.waves,
        abort_reason: shown.abort_reason,
        waiting: progress.waiting,
    };
    watch.push(DeliveryEvent::State { state: standing });
    if delivery.state.is_final() {
        watch.finish(delivery.state).await?;
    }
    let frames = futures::stream::unfold(watch, |mut watch| async move {
        let frame = watch.next_frame().await?;
        Some((Ok::<_, Infallible>(frame), watch))
    });
    let headers =
        [(axum::http::header::CONTENT_TYPE, "text/event-stream"), (axum::http::header::CACHE_CONTROL, "no-cache")];
    Ok((headers, axum::body::Body::from_stream(frames)))
}

struct Watch {
    /// What is ready to send, oldest first.
    pending: std::collections::VecDeque<Queued>,
    receiver: tokio::sync::broadcast::Receiver<Batch>,
    store: Store,
    delivery_id: String,
    /// The number of the last result sent (or reflected in the snapshot).
    sent: i64,
    done: bool,
    /// The stream ends when this credential stops being valid (logout, user disabled, revoked).
    credential: String,
    recheck: tokio::time::Interval,
    /// Nothing was sent since the last credential check: the next one sends a keep-alive.
    quiet: bool,
    /// When the next frame may go: [`FRAME_EVERY`] after the last one, unless that one was full.
    next_due: Option<tokio::time::Instant>,
    guard: ClientGuard,
}

/// How often an open event stream checks that its viewer may still watch, and, when it sent
/// nothing since the previous check, sends a keep-alive comment.
const RECHECK_CREDENTIAL: std::time::Duration = std::time::Duration::from_secs(5);
/// Results read from the store per catch-up query.
const CATCH_UP_PAGE: i64 = 1000;
/// A frame (one write to the client) holds the events ready up to about this size.
const FRAME_BYTES: usize = 64 * 1024;
/// At most one frame per this interval while events keep coming: what arrives meanwhile joins
/// the next frame. Each frame costs the server a write and each watcher a wake-up, so a busy
/// delivery costs a watcher ten writes a second however fast results come; a person watching
/// sees them at most this much later.
const FRAME_EVERY: std::time::Duration = std::time::Duration::from_millis(100);
const KEEP_ALIVE: &[u8] = b":\n\n";

/// Something ready to send on a stream.
enum Queued {
    /// One event with its id.
    Event(Arc<Published>, i64),
    /// A batch's shared SSE text (ids included).
    Text(Bytes),
}

impl Queued {
    fn len(&self) -> usize {
        match self {
            Queued::Event(published, _) => published.written_len(),
            Queued::Text(text) => text.len(),
        }
    }
}

fn credential_checks() -> tokio::time::Interval {
    let mut checks = tokio::time::interval_at(tokio::time::Instant::now() + RECHECK_CREDENTIAL, RECHECK_CREDENTIAL);
    checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    checks
}

impl Watch {
    fn push(&mut self, event: DeliveryEvent) {
        let id = self.sent;
        self.pending.push_back(Queued::Event(Arc::new(Published::from(event)), id));
    }

    /// Queues, from the store, every result numbered after the last one sent (up to `until`).
    /// Results are numbered in the order they are committed, so what the store shows after `sent`
    /// is complete: nothing numbered lower can appear later.
    async fn catch_up(&mut self, until: Option<i64>) -> Result<(), store::StoreError> {
        loop {
            let page = self
                .store
                .results_after(&self.delivery_id, self.sent, until.unwrap_or(i64::MAX), CATCH_UP_PAGE)
                .await?;
            for target in &page {
                self.sent = target.result_seq;
                let event = DeliveryEvent::Target { target: crate::engine::hub::stored_event(target) };
                self.pending.push_back(Queued::Event(Arc::new(Published::from(event)), target.result_seq));
            }
            if (page.len() as i64) < CATCH_UP_PAGE {
                return Ok(());
            }
        }
    }

    /// Every result not sent yet, the stored counts, and the final state.
    async fn finish(&mut self, state: DeliveryState) -> Result<(), store::StoreError> {
        let counts = self.store.delivery_counts(&self.delivery_id).await?;
        self.finish_with(state, counts).await
    }

    /// `finish` with the stored counts already in hand (a `final` event carries them), so a
    /// hundred watchers do not count the delivery's targets a hundred times as it ends.
    async fn finish_with(&mut self, state: DeliveryState, counts: Counts) -> Result<(), store::StoreError> {
        self.catch_up(None).await?;
        self.push(DeliveryEvent::Counts { counts });
        self.push(DeliveryEvent::Final { state, counts });
        self.done = true;
        Ok(())
    }

    /// The next write to the client: every event ready (up to `FRAME_BYTES`), after waiting for
    /// one and for [`FRAME_EVERY`] since the last frame; a keep-alive comment after a quiet check;
    /// `None` when the stream ends. Writing what is ready as one frame costs a watcher one write
    /// per tenth of a second, not one per result or per batch of results.
    async fn next_frame(&mut self) -> Option<Bytes> {
        while self.pending.is_empty() && !self.done {
            let received = tokio::select! {
                received = self.receiver.recv() => received,
                _ = self.recheck.tick() => {
                    if !matches!(self.store.user_by_token(&self.credential).await, Ok(Some(_))) {
                        return None;
                    }
                    if std::mem::replace(&mut self.quiet, true) {
                        return Some(Bytes::from_static(KEEP_ALIVE));
                    }
                    continue;
                }
            };
            self.receive(received).await.ok()?;
        }
        if self.pending.is_empty() {
            return None;
        }
        if let Some(due) = self.next_due.filter(|_| !self.done) {
            tokio::time::sleep_until(due).await;
        }
        self.receive_ready().await.ok()?;
        self.quiet = false;
        let frame = self.frame();
        // A full frame left events behind (a catch-up, a watcher behind): they go at once.
        self.next_due = self.pending.is_empty().then(|| tokio::time::Instant::now() + FRAME_EVERY);
        Some(frame)
    }

    /// Takes every batch already published, so it joins the frame being made.
    async fn receive_ready(&mut self) -> Result<(), store::StoreError> {
        while !self.done {
            match self.receiver.try_recv() {
                Ok(batch) => self.receive(Ok(batch)).await?,
                Err(TryRecvError::Lagged(skipped)) => self.receive(Err(RecvError::Lagged(skipped))).await?,
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        Ok(())
    }

    /// Pending events, oldest first, as SSE text: up to about [`FRAME_BYTES`], in one allocation,
    /// and a batch's shared text that makes the frame alone without a copy.
    fn frame(&mut self) -> Bytes {
        let (mut taken, mut size) = (0, 0);
        for queued in &self.pending {
            if size >= FRAME_BYTES {
                break;
            }
            (taken, size) = (taken + 1, size + queued.len());
        }
        if taken == 1
            && let Some(Queued::Text(text)) = self.pending.front()
        {
            let text = text.clone();
            self.pending.pop_front();
            return text;
        }
        let mut frame = Vec::with_capacity(size);
        for queued in self.pending.drain(..taken) {
            match queued {
                Queued::Event(published, id) => published.write_to(&mut frame, id),
                Queued::Text(text) => frame.extend_from_slice(&text),
            }
        }
        Bytes::from(frame)
    }

    async fn receive(&mut self, received: Result<Batch, RecvError>) -> Result<(), store::StoreError> {
        match received {
            Ok(batch) => {
                // In step with the publisher: the batch's text, shared with every such watcher.
                if let Some(text) = batch.text.as_ref().filter(|text| !self.done && text.follows == self.sent) {
                    self.sent = text.last;
                    self.pending.push_back(Queued::Text(text.bytes.clone()));
                    return Ok(());
                }
                for published in batch.events.iter() {
                    if self.done {
                        break;
                    }
                    self.take(Arc::clone(published)).await?;
                }
                Ok(())
            }
            // A slow watcher skipped events: the store has them.
            Err(RecvError::Lagged(_)) => {
                Metrics::inc(&self.guard.0.sse_catch_ups);
                self.catch_up(None).await
            }
            Err(RecvError::Closed) => match self.store.delivery_by_id(&self.delivery_id).await? {
                delivery if delivery.state.is_final() => self.finish(delivery.state).await,
                _ => {
                    // The runner went away (another replica took over): follow the store.
                    self.receiver = tokio::sync::broadcast::channel(1).1;
                    self.done = true;
                    self.catch_up(None).await
                }
            },
        }
    }

    /// A live event: results in order, each once; a result ahead of the last one sent means some
    /// were published before this stream subscribed, or out of order, and the store has them.
    async fn take(&mut self, published: Arc<Published>) -> Result<(), store::StoreError> {
        match &published.event {
            DeliveryEvent::Target { target } if target.seq <= self.sent => Ok(()),
            DeliveryEvent::Target { target } if target.seq == self.sent + 1 => {
                self.sent = target.seq;
                self.pending.push_back(Queued::Event(Arc::clone(&published), target.seq));
                Ok(())
            }
            DeliveryEvent::Target { .. } => self.catch_up(None).await,
            DeliveryEvent::Counts { .. }
            | DeliveryEvent::Rollout { .. }
            | DeliveryEvent::State { .. }
            | DeliveryEvent::Waiting { .. } => {
                self.pending.push_back(Queued::Event(published, self.sent));
                Ok(())
            }
            DeliveryEvent::Final { state, counts } => {
                let (state, counts) = (*state, *counts);
                self.finish_with(state, counts).await
            }
        }
    }
}

struct ClientGuard(Arc<Metrics>);

impl ClientGuard {
    fn new(metrics: Arc<Metrics>) -> ClientGuard {
        Metrics::inc(&metrics.sse_clients);
        ClientGuard(metrics)
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        Metrics::dec(&self.0.sse_clients);
    }
}
