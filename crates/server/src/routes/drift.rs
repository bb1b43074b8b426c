//! Drift: what each edge holds of what was last delivered to it, checking it now, putting it back
//! (re-apply), keeping the edge's version instead (a template from the edge), and the inventory of
//! what every edge holds.

use std::collections::BTreeMap;

use api_types::{DriftReport, ObjectDrift, Reapplied, ReapplyRequest, TemplateFromEdge};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use domain::audit::AuditAction;
use domain::delivery::DeliveryMode;
use domain::drift::{InventoryKind, documents_of};
use domain::plan::ObjectRef;
use domain::secrets::mask_credentials;
use domain::template::TemplateKind;
use edge_client::Edge;
use serde_json::{Value, json};
use store::{CheckTarget, EdgeService, ExpectedObject, TemplateChange};

use crate::AppState;
use crate::crypto::sha256_hex;
use crate::engine::derive::derived_delivery;
use crate::engine::drift;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiJson, CurrentUser, OptionalJson, Project, Query};
use crate::routes::deliveries::{checked_options, first_state};
use crate::routes::plans::start_derived;
use crate::routes::templates::{checked_content, checked_description, checked_name, template_json};
use crate::routes::{audit_entry, created};
use crate::views;

/// Most objects one template from an edge may name.
const MAX_FROM_EDGE_OBJECTS: usize = 500;
/// Longest object name accepted (eKuiper and Neuron names are far shorter).
const MAX_OBJECT_NAME: usize = 255;

/// `GET .../edge-services/{id}/drift`.
pub async fn report(
    State(state): State<AppState>,
    Path((project_id, id)): Path<(String, String)>,
) -> ApiResult<Json<DriftReport>> {
    let edge = state.store.get_edge(&project_id, &id).await?;
    Ok(Json(drift_report(&state, &edge).await?))
}

/// `POST .../edge-services/{id}/check`: reads the edge now (whatever the prober found) and answers
/// the report.
pub async fn check(
    State(state): State<AppState>,
    Path((project_id, id)): Path<(String, String)>,
) -> ApiResult<Json<DriftReport>> {
    let edge = state.store.get_edge(&project_id, &id).await?;
    let target = CheckTarget {
        id: edge.id.clone(),
        project_id: edge.project_id.clone(),
        endpoint: edge.endpoint.clone(),
        auth: edge.auth.clone(),
        reach: edge.reach.clone(),
        status: edge.status,
    };
    drift::check_and_record(&state, &target).await?;
    let edge = state.store.get_edge(&project_id, &id).await?;
    Ok(Json(drift_report(&state, &edge).await?))
}

async fn drift_report(state: &AppState, edge: &EdgeService) -> Result<DriftReport, ApiError> {
    let rows = state.store.expected_objects(&edge.id).await?;
    let objects = rows.iter().map(|row| object_drift(state, row)).collect::<Result<_, _>>()?;
    Ok(DriftReport {
        state: edge.config_state,
        checked_at: edge.config_checked_at,
        reason: edge.config_reason.clone(),
        objects,
    })
}

/// One kept object as answered: credentials masked in what was delivered (what was read and the
/// patch were stored masked).
fn object_drift(state: &AppState, row: &ExpectedObject) -> Result<ObjectDrift, ApiError> {
    let object_ref: ObjectRef = serde_json::from_str(&row.object).map_err(ApiError::internal)?;
    let expected: Value = serde_json::from_str(&state.secrets.open(&row.expected).map_err(ApiError::internal)?)
        .map_err(ApiError::internal)?;
    let live: Option<Value> = match &row.live {
        Some(text) => serde_json::from_str(text).map_err(ApiError::internal)?,
        None => None,
    };
    Ok(ObjectDrift {
        object: object_ref.to_string(),
        object_ref,
        expected: mask_credentials(&expected),
        live: live.filter(|value| !value.is_null()),
        diff: serde_json::from_str(&row.diff).map_err(ApiError::internal)?,
        drifted: row.drifted,
        checked: row.live.is_some(),
        delivery_id: row.delivery_id.clone(),
        template_id: row.template_id.clone(),
        plugin_id: row.plugin_id.clone(),
        delivered_at: row.delivered_at,
    })
}

/// `POST .../edge-services/{id}/reapply`: delivers again, to this edge alone, the last delivery
/// of each template or plugin whose objects drifted (of every one when none did): the same
/// content and parameters, as a normal delivery (plans, snapshots, approvals apply).
pub async fn reapply(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Project(scope): Project,
    Path((project_id, id)): Path<(String, String)>,
    OptionalJson(request): OptionalJson<ReapplyRequest>,
) -> ApiResult<impl IntoResponse> {
    let edge = state.store.get_edge(&project_id, &id).await?;
    let rows = state.store.expected_objects(&edge.id).await?;
    if rows.is_empty() {
        return Err(ApiError::new(
            ErrorCode::NothingDelivered,
            format!("nothing was delivered to {} yet, so there is nothing to re-apply", edge.name),
        ));
    }
    let mode = request.mode.unwrap_or(DeliveryMode::Apply);
    if mode == DeliveryMode::Rollback {
        return Err(ApiError::new(ErrorCode::InvalidDelivery, "mode: a re-apply is `apply` or `plan`"));
    }
    let options = request.options.as_ref().map(|o| checked_options(Some(o))).transpose()?;
    let mut sources = Vec::new();
    for delivery_id in source_deliveries(&rows) {
        let source = state.store.get_delivery(&project_id, &delivery_id).await?;
        if source.mode == DeliveryMode::Rollback {
            return Err(ApiError::new(
                ErrorCode::ReapplyAfterRollback,
                format!(
                    "the last delivery of {} to {} was rollback {}; deliver the template again or roll back again",
                    source.template_name, edge.name, source.id
                ),
            ));
        }
        sources.push(source);
    }
    let approvals_required =
        if mode == DeliveryMode::Apply { state.store.project_approvals(&project_id).await? } else { 0 };
    let mut started = Vec::new();
    for source in &sources {
        let options = options.as_ref().map(|o| json!(o)).unwrap_or_else(|| source.options.clone());
        let mut new = derived_delivery(source, mode, options, None, None, false, &user.username);
        new.approvals_required = approvals_required;
        new.state = first_state(&state, approvals_required, None);
        let details = json!({"edge_id": edge.id, "edge_name": edge.name, "source_delivery": source.id, "mode": mode,
                             "config_state": edge.config_state});
        let (_, Json(body)) = start_derived(
            &state,
            &user,
            &scope,
            new,
            std::slice::from_ref(&edge.id),
            AuditAction::EdgeReapply,
            details,
        )
        .await?;
        started.push(body);
    }
    let mut started = started.into_iter();
    let first = started.next().ok_or_else(|| ApiError::internal("a re-apply started no delivery"))?;
    let also = started.filter_map(|body| body.get("id").and_then(Value::as_str).map(str::to_owned)).collect();
    let delivery = serde_json::from_value(first).map_err(ApiError::internal)?;
    Ok((StatusCode::ACCEPTED, Json(Reapplied { delivery, also })))
}

/// The delivery that last left objects of each template or plugin, for the sources with a drifted
/// object (all sources when none drifted).
fn source_deliveries(rows: &[ExpectedObject]) -> Vec<String> {
    let source = |row: &ExpectedObject| row.template_id.clone().or_else(|| row.plugin_id.clone()).unwrap_or_default();
    let any_drifted = rows.iter().any(|row| row.drifted);
    let chosen: std::collections::BTreeSet<String> =
        rows.iter().filter(|row| row.drifted || !any_drifted).map(source).collect();
    let mut latest: BTreeMap<String, (i64, String)> = BTreeMap::new();
    for row in rows.iter().filter(|row| chosen.contains(&source(row))) {
        let entry = latest.entry(source(row)).or_insert((row.delivered_at, row.delivery_id.clone()));
        if row.delivered_at > entry.0 {
            *entry = (row.delivered_at, row.delivery_id.clone());
        }
    }
    let mut ids: Vec<String> = latest.into_values().map(|(_, id)| id).collect();
    ids.dedup();
    ids
}

/// `POST .../templates/from-edge`: a new template, or a new version of `template_id` (adopting
/// the edge's version of drifted objects), holding the named objects as the edge holds them now.
pub async fn from_edge(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Project(scope): Project,
    Path(project_id): Path<String>,
    ApiJson(request): ApiJson<TemplateFromEdge>,
) -> ApiResult<impl IntoResponse> {
    let kind = from_edge_kind(&request)?;
    let edge = state.store.get_edge(&project_id, &request.edge_id).await?;
    let existing = match &request.template_id {
        Some(template_id) => Some(state.store.get_template(&project_id, template_id).await?),
        None => None,
    };
    if let Some(template) = &existing
        && template.kind != kind
    {
        return Err(ApiError::new(
            ErrorCode::KindImmutable,
            format!("template {} holds {} objects; these are {kind} objects", template.name, template.kind),
        ));
    }
    let name = match (&existing, &request.name) {
        (_, Some(name)) => Some(checked_name(name)?),
        (Some(_), None) => None,
        (None, None) => {
            return Err(ApiError::new(
                ErrorCode::InvalidFromEdge,
                "name: a new template needs a name (or give template_id)",
            ));
        }
    };
    let description = request.description.as_deref().map(checked_description).transpose()?;
    let objects = read_live(&state, &edge, &request.objects).await?;
    let documents = documents_of(&objects);
    let content = match kind {
        TemplateKind::Rule => documents.rule,
        TemplateKind::Driver => documents.driver,
    }
    .ok_or_else(|| ApiError::new(ErrorCode::InvalidFromEdge, "objects: none of them makes template content"))?;
    let (_, text) = checked_content(&state, kind, content).await?;
    let sha = sha256_hex(text.as_bytes());
    let names: Vec<String> = objects.iter().map(|(object, _)| object.to_string()).collect();
    let details = json!({"edge_id": edge.id, "edge_name": edge.name, "objects": names, "content_sha256": sha});
    match existing {
        Some(current) => {
            let version = current.current_version + 1;
            let mut details = details;
            details["version"] = json!(version);
            let shown = name.clone().unwrap_or_else(|| current.name.clone());
            let mut entry =
                audit_entry(&user, Some(&scope.scope), AuditAction::TemplateAdopt, "template", &shown, details);
            entry.resource_id = current.id.clone();
            let change = TemplateChange { name, description, content: Some((text.clone(), sha)) };
            let updated = state.store.update_template(&current, &change, &user.username, &entry).await?;
            Ok((StatusCode::OK, Json(template_json(&updated, &text, true))))
        }
        None => {
            let name = name.unwrap_or_default();
            let entry =
                audit_entry(&user, Some(&scope.scope), AuditAction::TemplateFromEdge, "template", &name, details);
            let description = description.unwrap_or_default();
            let template = state
                .store
                .create_template(&project_id, &name, kind, &description, &text, &sha, &user.username, &entry)
                .await?;
            Ok(created(template_json(&template, &text, true)))
        }
    }
}

/// A template holds one kind: rule objects (streams, tables, rules) or driver nodes.
fn from_edge_kind(request: &TemplateFromEdge) -> Result<TemplateKind, ApiError> {
    let o = &request.objects;
    let lists = [&o.streams, &o.tables, &o.rules, &o.nodes];
    let count: usize = lists.iter().map(|list| list.len()).sum();
    if count > MAX_FROM_EDGE_OBJECTS {
        return Err(ApiError::new(
            ErrorCode::InvalidFromEdge,
            format!("objects: {count} named; one template takes at most {MAX_FROM_EDGE_OBJECTS}"),
        ));
    }
    for name in lists.iter().flat_map(|list| list.iter()) {
        if name.is_empty() || name.chars().count() > MAX_OBJECT_NAME || name.chars().any(char::is_control) {
            return Err(ApiError::new(
                ErrorCode::InvalidFromEdge,
                format!(
                    "objects: `{}` is not an object name (1 to {MAX_OBJECT_NAME} characters, no control characters)",
                    name.chars().take(40).collect::<String>()
                ),
            ));
        }
    }
    let rules = !(o.streams.is_empty() && o.tables.is_empty() && o.rules.is_empty());
    match (rules, !o.nodes.is_empty()) {
        (true, false) => Ok(TemplateKind::Rule),
        (false, true) => Ok(TemplateKind::Driver),
        (true, true) => Err(ApiError::new(
            ErrorCode::InvalidFromEdge,
            "objects: a template holds rule objects (streams, tables, rules) or driver nodes, not both",
        )),
        (false, false) => Err(ApiError::new(ErrorCode::InvalidFromEdge, "objects: name at least one object")),
    }
}

/// The named objects as the edge holds them, in normal form: a node with its groups, tags and the
/// subscriptions to it. Every named object must be there.
async fn read_live(
    state: &AppState,
    edge: &EdgeService,
    named: &api_types::EdgeObjects,
) -> Result<Vec<(ObjectRef, Value)>, ApiError> {
    let address = crate::engine::EdgeAddress {
        project_id: &edge.project_id,
        edge_id: &edge.id,
        endpoint: &edge.endpoint,
        auth: &edge.auth,
        reach: &edge.reach,
    };
    let target =
        state.engine.edge_target(address, "read").await.map_err(|m| ApiError::new(ErrorCode::EdgeUnreadable, m))?;
    let client = state.engine.client().edge(&target);
    let unreadable =
        |e: edge_client::EdgeError| ApiError::new(ErrorCode::EdgeUnreadable, format!("{}: {e}", edge.name));
    let mut refs: Vec<ObjectRef> = Vec::new();
    refs.extend(named.streams.iter().map(|name| ObjectRef::Stream { name: name.clone() }));
    refs.extend(named.tables.iter().map(|name| ObjectRef::Table { name: name.clone() }));
    refs.extend(named.rules.iter().map(|id| ObjectRef::Rule { id: id.clone() }));
    refs.extend(node_objects(&client, &named.nodes).await.map_err(unreadable)?);
    let live = client.read_objects(&refs).await.map_err(unreadable)?;
    let missing: Vec<String> =
        refs.iter().zip(&live).filter(|(_, live)| live.is_none()).map(|(object, _)| object.to_string()).collect();
    if !missing.is_empty() {
        return Err(ApiError::new(
            ErrorCode::ObjectNotOnEdge,
            format!("{} does not hold {}", edge.name, missing.join(", ")),
        )
        .with_details(json!({"objects": missing})));
    }
    Ok(refs.into_iter().zip(live).filter_map(|(object, live)| Some((object, live?))).collect())
}

/// Each node, its groups and their tags, and the subscriptions of apps to its groups. A node that
/// is not there stays in the list (the read finds it absent).
async fn node_objects(edge: &Edge<'_>, nodes: &[String]) -> Result<Vec<ObjectRef>, edge_client::EdgeError> {
    let mut refs = Vec::new();
    if nodes.is_empty() {
        return Ok(refs);
    }
    let apps = edge.list_nodes(2).await?;
    let mut subscriptions = Vec::new();
    for app in apps.iter().filter_map(|app| app.get("name").and_then(Value::as_str)) {
        for sub in edge.list_subscriptions(app).await?.into_iter().flatten() {
            let (Some(driver), Some(group)) = (sub["driver"].as_str(), sub["group"].as_str()) else { continue };
            subscriptions.push(ObjectRef::Subscription {
                app: app.to_owned(),
                driver: driver.to_owned(),
                group: group.to_owned(),
            });
        }
    }
    for node in nodes {
        refs.push(ObjectRef::Node { name: node.clone() });
        let groups = match edge.list_groups(node).await {
            Ok(groups) => groups,
            Err(err) if edge_client::is_absent(&err) => Vec::new(),
            Err(err) => return Err(err),
        };
        for group in groups.iter().filter_map(|g| g.get("name").and_then(Value::as_str)) {
            refs.push(ObjectRef::Group { node: node.clone(), group: group.to_owned() });
            refs.push(ObjectRef::Tags { node: node.clone(), group: group.to_owned() });
        }
        refs.extend(
            subscriptions
                .iter()
                .filter(|sub| matches!(sub, ObjectRef::Subscription { driver, .. } if driver == node))
                .cloned(),
        );
    }
    Ok(refs)
}

/// `GET .../inventory?kind=&name=`: which objects the project's edges held at their last check.
pub async fn inventory(
    State(state): State<AppState>,
    Path(project_id): Path<String>,
    query: Query,
) -> ApiResult<Json<Value>> {
    let query = query.only(&["kind", "name", "limit", "offset"])?;
    let kind: Option<InventoryKind> = query
        .one("kind")
        .filter(|k| !k.is_empty())
        .map(|k| k.parse())
        .transpose()
        .map_err(|m: String| ApiError::new(ErrorCode::BadQuery, format!("kind: {m}")))?;
    let name = query.one("name").filter(|n| !n.is_empty());
    if name.as_ref().is_some_and(|n| n.chars().count() > MAX_OBJECT_NAME) {
        return Err(ApiError::new(ErrorCode::BadQuery, format!("name: at most {MAX_OBJECT_NAME} characters")));
    }
    let page = query.page()?;
    let (items, total) = state.store.inventory(&project_id, kind, name.as_deref(), page.limit, page.offset).await?;
    Ok(Json(json!(views::list(&items, total, views::inventory_item))))
}
