//! Configuration templates: create, list, read, edit (each content change is a new version),
//! version history, export as a file, preview for one edge, delete.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::audit::AuditAction;
use domain::params::{self, ParamValues};
use domain::template::{self, Checked, TemplateKind};
use serde_json::{Value, json};
use store::{Template, TemplateChange};

use crate::AppState;
use crate::access::Role;
use crate::crypto::sha256_hex;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiJson, CurrentUser, Project, Query};
use crate::routes::{audit_entry, created};
use crate::views;

use api_types::{NewTemplate, PreviewRequest, TemplateEdit};

pub(super) fn checked_name(name: &str) -> Result<String, ApiError> {
    domain::text::check_name("name: a template name", name, 100).map_err(|m| ApiError::new(ErrorCode::InvalidName, m))
}

pub(super) fn checked_description(description: &str) -> Result<String, ApiError> {
    domain::import::checked_description(description)
        .map_err(|m| ApiError::new(ErrorCode::InvalidDescription, format!("description: {m}")))
}

fn parse_kind(kind: &str) -> Result<TemplateKind, ApiError> {
    kind.parse().map_err(|m: String| ApiError::new(ErrorCode::InvalidKind, format!("kind: {m}")))
}

/// Checks content for its kind and returns it with the text to store (what the user gave). The
/// size and placeholder limits come first; the checks run on the blocking pool, so a large
/// document never holds a thread that answers other requests.
pub async fn checked_content(
    state: &AppState,
    kind: TemplateKind,
    content: Value,
) -> Result<(Checked, String), ApiError> {
    let limits = (state.config.max_document_bytes, state.config.max_placeholders);
    tokio::task::spawn_blocking(move || check_blocking(kind, &content, limits)).await.map_err(ApiError::internal)?
}

fn check_blocking(
    kind: TemplateKind,
    content: &Value,
    (max_bytes, max_placeholders): (usize, usize),
) -> Result<(Checked, String), ApiError> {
    let too_large = |size: usize| {
        ApiError::new(
            ErrorCode::DocumentTooLarge,
            format!("content: {size} bytes; a template document holds at most {max_bytes} bytes"),
        )
        .with_details(json!({"limit": max_bytes, "size": size}))
    };
    // Measured before anything is copied: a hostile document is refused at the cost of one look.
    if let Value::String(text) = content
        && text.len() > max_bytes
    {
        return Err(too_large(text.len()));
    }
    let text = match content {
        Value::String(text) => text.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    };
    if text.len() > max_bytes {
        return Err(too_large(text.len()));
    }
    let count = params::placeholder_count(content, max_placeholders);
    if count > max_placeholders {
        return Err(ApiError::new(
            ErrorCode::TooManyPlaceholders,
            format!("content: more than {max_placeholders} ${{...}} placeholders; a template holds at most {max_placeholders}"),
        )
        .with_details(json!({"limit": max_placeholders})));
    }
    let checked = template::check_content(kind, content).map_err(|problems| {
        ApiError::invalid_document(ErrorCode::InvalidTemplate, &format!("invalid {kind} template"), &problems)
    })?;
    Ok((checked, text))
}

/// A template as the API shows it. `reveal` is for project admins (who edit it); everyone else
/// gets credentials written into the content masked.
pub(super) fn template_json(template: &Template, content_text: &str, reveal: bool) -> Value {
    let content: Value = serde_json::from_str(content_text).unwrap_or(Value::Null);
    let checked = template::check_content(template.kind, &content).ok();
    let shown = if reveal { content } else { domain::secrets::mask_credentials(&content) };
    json!(views::template(template, shown, checked.as_ref()))
}

pub async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Project(scope): Project,
    Path(project_id): Path<String>,
    ApiJson(body): ApiJson<NewTemplate>,
) -> ApiResult<impl IntoResponse> {
    let name = checked_name(&body.name)?;
    let description = checked_description(&body.description)?;
    let kind = parse_kind(&body.kind)?;
    let (_, text) = checked_content(&state, kind, body.content).await?;
    let sha = sha256_hex(text.as_bytes());
    let entry = audit_entry(
        &user,
        Some(&scope.scope),
        AuditAction::TemplateCreate,
        "template",
        &name,
        json!({"kind": kind.as_str(), "version": 1, "content_sha256": sha}),
    );
    let template = state
        .store
        .create_template(&project_id, &name, kind, &description, &text, &sha, &user.username, &entry)
        .await?;
    Ok(created(template_json(&template, &text, true)))
}

pub async fn list(
    State(state): State<AppState>,
    Path(project_id): Path<String>,
    query: Query,
) -> ApiResult<Json<Value>> {
    let query = query.only(&["kind", "limit", "offset"])?;
    let kind = query.one("kind").map(|k| parse_kind(&k)).transpose()?;
    let page = query.page()?;
    let (items, total) = state.store.list_templates(&project_id, kind, page.limit, page.offset).await?;
    Ok(Json(json!(views::list(&items, total, views::template_summary))))
}

pub async fn get_one(
    State(state): State<AppState>,
    Project(access): Project,
    Path((project_id, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let template = state.store.get_template(&project_id, &id).await?;
    let version = state.store.template_version(&id, template.current_version).await?;
    Ok(Json(template_json(&template, &version.content, access.role == Role::Admin)))
}

pub async fn update(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Project(scope): Project,
    Path((project_id, id)): Path<(String, String)>,
    ApiJson(edit): ApiJson<TemplateEdit>,
) -> ApiResult<Json<Value>> {
    let current = state.store.get_template(&project_id, &id).await?;
    let kind = current.kind;
    if let Some(asked) = &edit.kind
        && asked != kind.as_str()
    {
        return Err(ApiError::new(
            ErrorCode::KindImmutable,
            format!("kind: a {kind} template stays a {kind} template; create a new template instead"),
        ));
    }
    let current_version = state.store.template_version(&id, current.current_version).await?;
    let mut change = TemplateChange {
        name: edit.name.as_deref().map(checked_name).transpose()?,
        description: edit.description.as_deref().map(checked_description).transpose()?,
        content: None,
    };
    if let Some(content) = &edit.content {
        let (_, text) = checked_content(&state, kind, content.clone()).await?;
        let sha = sha256_hex(text.as_bytes());
        if sha != current_version.content_sha256 {
            change.content = Some((text, sha));
        }
    }
    let new_version = change.content.as_ref().map(|_| current.current_version + 1);
    let details = json!({
        "version": new_version.unwrap_or(current.current_version),
        "new_version": new_version.is_some(),
        "renamed_from": change.name.as_ref().filter(|n| **n != current.name).map(|_| current.name.clone()),
        "content_sha256": change.content.as_ref().map(|(_, sha)| sha.clone()),
    });
    let shown_name = change.name.clone().unwrap_or_else(|| current.name.clone());
    let mut entry =
        audit_entry(&user, Some(&scope.scope), AuditAction::TemplateUpdate, "template", &shown_name, details);
    entry.resource_id = id.clone();
    let updated = state.store.update_template(&current, &change, &user.username, &entry).await?;
    let text = change.content.map(|(text, _)| text).unwrap_or(current_version.content);
    Ok(Json(template_json(&updated, &text, true)))
}

pub async fn delete(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Project(scope): Project,
    Path((project_id, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let template = state.store.get_template(&project_id, &id).await?;
    let mut entry = audit_entry(
        &user,
        Some(&scope.scope),
        AuditAction::TemplateDelete,
        "template",
        &template.name,
        json!({"versions": template.current_version}),
    );
    entry.resource_id = id.clone();
    state.store.delete_template(&project_id, &id, &entry).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn versions(
    State(state): State<AppState>,
    Path((project_id, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    state.store.get_template(&project_id, &id).await?;
    let versions = state.store.template_versions(&id).await?;
    let items: Vec<Value> = versions
        .iter()
        .map(|v| json!({"version": v.version, "content_sha256": v.content_sha256, "created_by": v.created_by, "created_at": v.created_at}))
        .collect();
    Ok(Json(json!({"items": items, "total": items.len()})))
}

pub async fn version(
    State(state): State<AppState>,
    Project(access): Project,
    Path((project_id, id, number)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let template = state.store.get_template(&project_id, &id).await?;
    let number: i64 = number.parse().map_err(|_| ApiError::not_found(store::Resource::TemplateVersion))?;
    let version = state.store.template_version(&template.id, number).await?;
    let mut body = template_json(&template, &version.content, access.role == Role::Admin);
    body["version"] = json!(version.version);
    body["content_sha256"] = json!(version.content_sha256);
    body["created_by"] = json!(version.created_by);
    Ok(Json(body))
}

/// The content as a file, exactly as it was given (current version, or `?version=N`).
pub async fn export(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Project(scope): Project,
    Path((project_id, id)): Path<(String, String)>,
    query: Query,
) -> ApiResult<Response> {
    let query = query.only(&["version"])?;
    let template = state.store.get_template(&project_id, &id).await?;
    let number = query.int("version")?.unwrap_or(template.current_version);
    let version = state.store.template_version(&id, number).await?;
    let mut entry = audit_entry(
        &user,
        Some(&scope.scope),
        AuditAction::TemplateExport,
        "template",
        &template.name,
        json!({"version": number}),
    );
    entry.resource_id = id.clone();
    state.store.append_audit(&entry).await?;
    let file_name: String = template
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .collect();
    let disposition = format!("attachment; filename=\"{file_name}-v{number}.json\"");
    // Admins get the file exactly as given; viewers get it with credentials masked.
    let content = if scope.role == Role::Admin {
        version.content
    } else {
        let document: Value = serde_json::from_str(&version.content).unwrap_or(Value::Null);
        serde_json::to_string_pretty(&domain::secrets::mask_credentials(&document)).unwrap_or_default()
    };
    Ok(([(header::CONTENT_TYPE, "application/json".to_owned()), (header::CONTENT_DISPOSITION, disposition)], content)
        .into_response())
}

/// Renders the template for one edge, as a delivery would, without sending anything.
pub async fn preview(
    State(state): State<AppState>,
    Project(access): Project,
    Path((project_id, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<PreviewRequest>,
) -> ApiResult<Json<Value>> {
    let template = state.store.get_template(&project_id, &id).await?;
    let kind = template.kind;
    let content = match &body.content {
        Some(content) => content.clone(),
        None => {
            let version = state.store.template_version(&id, body.version.unwrap_or(template.current_version)).await?;
            Value::String(version.content)
        }
    };
    let (checked, _) = checked_content(&state, kind, content.clone()).await?;
    let edge = state.store.get_edge(&project_id, &body.edge_id).await?;
    let (defaults, targets) = crate::engine::split_params(&body.params.clone().unwrap_or(json!({})));
    let own: Option<&BTreeMap<String, Value>> = targets.get(&edge.id).or_else(|| targets.get(&edge.name));
    let values = OwnedValues {
        target: own.cloned(),
        defaults,
        builtins: params::edge_builtins(&edge.id, &edge.name, &edge.endpoint, edge.version.as_deref(), &edge.tags),
    };
    let reveal = access.role == Role::Admin;
    let (normalized, edge_name) = (checked.normalized, edge.name.clone());
    let shown = tokio::task::spawn_blocking(move || render_for_people(kind, &normalized, &values, &edge_name, reveal))
        .await
        .map_err(ApiError::internal)??;
    Ok(Json(json!({"edge_id": edge.id, "name": edge.name, "rendered": shown})))
}

/// Parameter values that can move to the blocking pool.
struct OwnedValues {
    target: Option<BTreeMap<String, Value>>,
    defaults: BTreeMap<String, Value>,
    builtins: BTreeMap<String, Value>,
}

/// Renders and checks as a delivery would, then answers what people may see: secret parameters
/// masked, and for viewers (`reveal` false) credentials written into the content too.
fn render_for_people(
    kind: TemplateKind,
    normalized: &Value,
    values: &OwnedValues,
    edge_name: &str,
    reveal: bool,
) -> Result<Value, ApiError> {
    let values = ParamValues {
        target: values.target.as_ref(),
        defaults: Some(&values.defaults),
        builtins: values.builtins.clone(),
    };
    let rendered = params::render(normalized, &values).map_err(|missing| {
        ApiError::new(
            ErrorCode::MissingParameters,
            format!("edge service {edge_name}: no value for {}", missing.join(", ")),
        )
        .with_details(json!({"missing": [{"name": edge_name, "parameters": missing}]}))
    })?;
    template::load(kind, &rendered).map_err(|problems| {
        ApiError::invalid_document(ErrorCode::InvalidRenderedTemplate, &format!("rendered for {edge_name}"), &problems)
    })?;
    let shown = params::render_masked(normalized, &values).unwrap_or(Value::Null);
    Ok(if reveal { shown } else { domain::secrets::mask_credentials(&shown) })
}
